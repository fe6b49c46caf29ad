"""Password hashes for local logins (the agent's OPC UA server users).

A hash is one self-describing string, ``scrypt$<n>$<r>$<p>$<salt>$<hash>``
(salt and hash in unpadded URL-safe base64), so the cost parameters can rise
later without breaking stored hashes. Only hashes live in config files; the
plain password never does (``gridpilot agent hash-password`` makes one).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

SCHEME = "scrypt"
# scrypt cost: n=2**15, r=8 takes ~50-100 ms and 32 MiB per check: a login
# costs that once per session, a guesser pays it per guess.
DEFAULT_N = 2**15
DEFAULT_R = 8
DEFAULT_P = 1
SALT_BYTES = 16
HASH_BYTES = 32
_MAX_N = 2**20  # refuse hashes that would make one login take seconds

_FORMAT = re.compile(
    r"^scrypt\$(?P<n>\d{1,8})\$(?P<r>\d{1,3})\$(?P<p>\d{1,3})\$"
    r"(?P<salt>[A-Za-z0-9_-]{16,128})\$(?P<hash>[A-Za-z0-9_-]{32,128})$"
)


@dataclass(frozen=True, slots=True)
class PasswordHash:
    n: int
    r: int
    p: int
    salt: bytes
    digest: bytes

    def __str__(self) -> str:
        return f"{SCHEME}${self.n}${self.r}${self.p}${_b64(self.salt)}${_b64(self.digest)}"


def hash_password(
    password: str, *, n: int = DEFAULT_N, r: int = DEFAULT_R, p: int = DEFAULT_P
) -> str:
    """A fresh salted hash of ``password`` in the self-describing format."""
    if not password:
        raise ValueError("the password is empty")
    salt = secrets.token_bytes(SALT_BYTES)
    return str(PasswordHash(n, r, p, salt, _scrypt(password, salt, n, r, p, HASH_BYTES)))


def parse_password_hash(text: str) -> PasswordHash:
    """The parts of a stored hash; raises ValueError saying what is wrong."""
    match = _FORMAT.match(text)
    if match is None:
        raise ValueError(
            "not a password hash (expected scrypt$n$r$p$salt$hash, "
            "made by 'gridpilot agent hash-password')"
        )
    n, r, p = int(match["n"]), int(match["r"]), int(match["p"])
    if n < 2 or n & (n - 1) or n > _MAX_N:
        raise ValueError(f"scrypt n={n} must be a power of two between 2 and {_MAX_N}")
    if not 1 <= r <= 32 or not 1 <= p <= 16:
        raise ValueError(f"scrypt r={r}, p={p} out of range (r 1..32, p 1..16)")
    try:
        salt, digest = _unb64(match["salt"]), _unb64(match["hash"])
    except ValueError:
        raise ValueError("salt or hash is not valid base64") from None
    return PasswordHash(n, r, p, salt, digest)


def verify_password(password: str, stored: str | PasswordHash) -> bool:
    """True when ``password`` matches; a malformed hash never matches.
    The comparison takes the same time wherever the digests differ."""
    try:
        parsed = stored if isinstance(stored, PasswordHash) else parse_password_hash(stored)
    except ValueError:
        return False
    candidate = _scrypt(password, parsed.salt, parsed.n, parsed.r, parsed.p, len(parsed.digest))
    return hmac.compare_digest(candidate, parsed.digest)


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, dklen: int) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8"),
        salt=salt,
        n=n,
        r=r,
        p=p,
        maxmem=256 * r * (n + p + 2),  # what it needs plus headroom (default is 32 MiB)
        dklen=dklen,
    )


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
