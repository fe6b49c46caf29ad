"""Which refused attempts reach the audit log: each distinct cause once per window.

A refusal's cause is a tuple such as (credential hint, route, status). The
first refusal of a cause in a window is audited, with the number of refusals
that were not audited since the previous audited one; repeats of a cause, and
causes beyond ``max_causes`` in one window, are only counted. So a flood of
refusals writes at most ``max_causes`` rows per window, and memory stays bounded
by the same number, whatever the attacker varies.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

from .tokens import TOKEN_PREFIX

_API_TOKEN = re.compile(rf"^{re.escape(TOKEN_PREFIX)}[A-Za-z0-9_-]{{20,200}}$")
_JWT = re.compile(r"^[A-Za-z0-9_-]{4,4096}\.[A-Za-z0-9_-]{4,8192}\.[A-Za-z0-9_-]{0,4096}$")


def credential_hint(authorization: str | None) -> str | None:
    """A printable name for a token-shaped bearer credential (a GridPilot API
    token's public prefix, or a JWT's fingerprint), never the secret; None when
    the header holds no token-shaped credential (no header, garbage)."""
    if not authorization:
        return None
    scheme, _, credential = authorization.partition(" ")
    credential = credential.strip()
    if scheme.lower() != "bearer":
        return None
    if _API_TOKEN.match(credential):
        return "credential:" + credential[: len(TOKEN_PREFIX) + 6]
    if _JWT.match(credential):
        return "credential:jwt-sha256-" + hashlib.sha256(credential.encode()).hexdigest()[:16]
    return None


@dataclass
class RefusalLimiter:
    window_s: float = 60.0
    max_causes: int = 200
    clock: Callable[[], float] = time.monotonic
    _started: float = field(default=-1.0, init=False)
    _seen: set[Hashable] = field(default_factory=set, init=False)
    _unrecorded: int = field(default=0, init=False)

    def admit(self, cause: Hashable) -> int | None:
        """None: only count this refusal. Else audit it, and say that this many
        refusals before it were not audited."""
        now = self.clock()
        if self._started < 0 or now - self._started >= self.window_s:
            self._started = now
            self._seen.clear()
        if cause in self._seen or len(self._seen) >= self.max_causes:
            self._unrecorded += 1
            return None
        self._seen.add(cause)
        skipped, self._unrecorded = self._unrecorded, 0
        return skipped

    @property
    def unrecorded(self) -> int:
        return self._unrecorded
