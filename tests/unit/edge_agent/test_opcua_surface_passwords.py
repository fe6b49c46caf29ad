"""Password hashes for the OPC UA users, and the user manager that checks them."""

from __future__ import annotations

import pytest
from asyncua.common.utils import ServiceError
from asyncua.crypto.permission_rules import UserRole
from asyncua.ua import StatusCodes
from typer.testing import CliRunner

from gridpilot.cli.main import app
from gridpilot.edge_agent.config import OpcuaUser
from gridpilot.edge_agent.opcua_surface.users import Access, SurfaceUserManager, access_of
from gridpilot.security.passwords import hash_password, parse_password_hash, verify_password

FAST = 2**4  # scrypt n for tests: the format and checks, not the cost


def test_hash_is_self_describing_salted_and_verifies() -> None:
    first, second = hash_password("s3cret", n=FAST), hash_password("s3cret", n=FAST)
    assert first.startswith(f"scrypt${FAST}$8$1$") and first != second  # own salt each
    assert verify_password("s3cret", first) and verify_password("s3cret", second)
    assert not verify_password("s3cret ", first) and not verify_password("", first)
    parsed = parse_password_hash(first)
    assert (parsed.n, parsed.r, parsed.p, len(parsed.salt), len(parsed.digest)) == (
        FAST,
        8,
        1,
        16,
        32,
    )
    assert str(parsed) == first


def test_default_cost_is_the_production_one() -> None:
    assert parse_password_hash(hash_password("x")).n == 2**15


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("hunter2", "not a password hash"),
        ("bcrypt$10$abc", "not a password hash"),
        ("scrypt$1000$8$1$AAAAAAAAAAAAAAAAAAAAAA$" + "A" * 43, "power of two"),
        ("scrypt$4194304$8$1$AAAAAAAAAAAAAAAAAAAAAA$" + "A" * 43, "power of two"),
        ("scrypt$16$99$1$AAAAAAAAAAAAAAAAAAAAAA$" + "A" * 43, "out of range"),
    ],
)
def test_malformed_hashes_are_explained_and_never_match(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_password_hash(text)
    assert not verify_password("hunter2", text)


def test_empty_password_cannot_be_hashed() -> None:
    with pytest.raises(ValueError, match="empty"):
        hash_password("")


def test_cli_hash_password_reads_stdin() -> None:
    result = CliRunner().invoke(app, ["agent", "hash-password", "--stdin"], input="pa ss\n")
    assert result.exit_code == 0, result.output
    assert verify_password("pa ss", result.output.strip())
    empty = CliRunner().invoke(app, ["agent", "hash-password", "--stdin"], input="\n")
    assert empty.exit_code == 2


def users(anonymous: bool = False, **kw: int) -> SurfaceUserManager:
    return SurfaceUserManager(
        [
            OpcuaUser(name="op", role="operator", password_hash=hash_password("op-pw", n=FAST)),
            OpcuaUser(name="view", role="viewer", password_hash=hash_password("v-pw", n=FAST)),
        ],
        anonymous=anonymous,
        allow_no_security=True,  # these tests are about passwords, not channels
        **kw,  # type: ignore[arg-type]
    )


def test_user_manager_checks_hashes_and_gives_roles() -> None:
    manager = users()
    op = manager.get_user(None, "op", "op-pw")
    assert op is not None and op.role == UserRole.User and access_of(op) is Access.OPERATOR
    viewer = manager.get_user(None, "view", "v-pw")
    assert viewer is not None and access_of(viewer) is Access.VIEWER
    assert manager.get_user(None, "op", "v-pw") is None
    assert manager.get_user(None, "nobody", "op-pw") is None
    # asyncua's permissive manager makes "admin" an administrator with any password
    assert manager.get_user(None, "admin", "anything") is None
    assert manager.get_user(None, None, None) is None  # anonymous: not configured
    anon = users(anonymous=True).get_user(None, None, None)
    assert anon is not None and access_of(anon) is Access.VIEWER and anon.role == UserRole.User


def test_failed_logins_are_throttled_but_known_good_ones_are_not() -> None:
    manager = users(max_failures=3, window_s=60)
    assert manager.get_user(None, "op", "op-pw") is not None  # remembered from now on
    for _ in range(3):
        assert manager.get_user(None, "op", "guess") is None
    assert manager.get_user(None, "view", "v-pw") is None  # throttled: not even checked
    assert manager.get_user(None, "op", "op-pw") is not None  # a known good login still works


def test_sessions_need_a_secure_trusted_channel() -> None:
    trusted = {b"good-cert"}
    manager = SurfaceUserManager(
        [OpcuaUser(name="op", role="operator", password_hash=hash_password("op-pw", n=FAST))],
        anonymous=True,
        channel_trusted=lambda der: der in trusted,
    )
    for certificate in (None, b""):  # a None-security channel
        with pytest.raises(ServiceError) as refused:
            manager.get_user(None, "op", "op-pw", certificate)
        assert refused.value.code == StatusCodes.BadSecurityModeRejected
    with pytest.raises(ServiceError) as refused:
        manager.get_user(None, None, None, b"other-cert")
    assert refused.value.code == StatusCodes.BadCertificateUntrusted
    assert manager.get_user(None, "op", "op-pw", b"good-cert") is not None
