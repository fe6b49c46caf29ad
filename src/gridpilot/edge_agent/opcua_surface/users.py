"""Who may log in to the surface, and what each may do.

Replaces asyncua's default ``PermissiveUserManager`` (which ignores
passwords and makes anyone named ``admin`` an administrator). Every session
gets asyncua's ``UserRole.User`` (so its ruleset lets it read, browse,
subscribe and send Write requests at all) plus our own :class:`Access`, which
the write handler checks: only ``operator`` changes anything.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import structlog
from asyncua import ua
from asyncua.common.utils import ServiceError
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.server.user_managers import UserManager

from gridpilot.security.passwords import (
    PasswordHash,
    hash_password,
    parse_password_hash,
    verify_password,
)

from ..config.opcua_server import OpcuaUser

log = structlog.get_logger(__name__)

ANONYMOUS = "anonymous"


class Access(StrEnum):
    OPERATOR = "operator"  # reads and writes setpoints
    VIEWER = "viewer"  # reads only


@dataclass
class SurfaceUser(User):
    access: Access = Access.VIEWER


def access_of(user: Any) -> Access | None:
    """Our access level of an asyncua session user (None: not one of ours,
    e.g. the server's internal admin session)."""
    return user.access if isinstance(user, SurfaceUser) else None


class SurfaceUserManager(UserManager):
    """asyncua's user manager protocol: ``get_user`` is called synchronously
    in the event loop at ActivateSession, and returns a user or None (the
    client gets BadUserAccessDenied).

    It is also the one place that sees every session's channel: asyncua
    accepts sessions on a None-security channel even when no None endpoint
    is offered (the channel a client opens for discovery), and checks client
    certificates only when the client repeats its certificate in
    CreateSession. So first: a session on a None channel (no peer
    certificate) is refused with BadSecurityModeRejected unless ``None`` is
    configured, and a channel certificate that ``channel_trusted`` does not
    accept is refused with BadCertificateUntrusted.

    A password check costs one scrypt (~70 ms in the loop that also runs the
    agent), so failed checks are rate-limited: after ``max_failures`` within
    ``window_s`` further attempts are refused without hashing until the
    window moves on. A successful check is remembered (keyed by an HMAC with
    a per-process key) so a SCADA reconnecting does not pay again.
    """

    def __init__(
        self,
        users: list[OpcuaUser],
        *,
        anonymous: bool,
        allow_no_security: bool = False,
        channel_trusted: Callable[[bytes], bool] | None = None,
        max_failures: int = 5,
        window_s: float = 10.0,
    ) -> None:
        self._users: dict[str, tuple[Access, PasswordHash]] = {
            u.name: (Access(u.role), parse_password_hash(u.password_hash)) for u in users
        }
        self._anonymous = anonymous
        self._allow_no_security = allow_no_security
        self._channel_trusted = channel_trusted
        self._max_failures = max_failures
        self._window_s = window_s
        self._failures: deque[float] = deque()
        self._key = secrets.token_bytes(32)
        self._known: set[bytes] = set()
        self._dummy = parse_password_hash(hash_password(secrets.token_urlsafe(16)))

    def get_user(
        self,
        iserver: Any,
        username: str | None = None,
        password: str | None = None,
        certificate: Any = None,
    ) -> User | None:
        self._check_channel(certificate)
        if username is None:
            if not self._anonymous:
                return None  # only reached with an X509 token (not offered) or a bug
            return SurfaceUser(role=UserRole.User, name=ANONYMOUS, access=Access.VIEWER)
        entry = self._users.get(username)
        memo = hmac.new(self._key, f"{username}\0{password}".encode(), hashlib.sha256).digest()
        if entry is not None and memo in self._known:
            return SurfaceUser(role=UserRole.User, name=username, access=entry[0])
        if self._throttled():
            log.warning("opcua login refused: too many failed logins", user=username)
            return None
        # an unknown name costs the same hash as a wrong password: no name probing
        stored = entry[1] if entry is not None else self._dummy
        if not verify_password(password or "", stored) or entry is None:
            self._failed(username)
            return None
        self._known.add(memo)
        return SurfaceUser(role=UserRole.User, name=username, access=entry[0])

    def _check_channel(self, certificate: Any) -> None:
        if not certificate:  # a None channel has none (asyncua gives b"")
            if not self._allow_no_security:
                log.warning("opcua session refused: no security on its channel")
                raise ServiceError(ua.StatusCodes.BadSecurityModeRejected)
            return
        if self._channel_trusted is not None and not self._channel_trusted(bytes(certificate)):
            raise ServiceError(ua.StatusCodes.BadCertificateUntrusted)

    def _throttled(self) -> bool:
        now = time.monotonic()
        while self._failures and self._failures[0] < now - self._window_s:
            self._failures.popleft()
        return len(self._failures) >= self._max_failures

    def _failed(self, username: str) -> None:
        self._failures.append(time.monotonic())
        log.warning("opcua login failed", user=username)
