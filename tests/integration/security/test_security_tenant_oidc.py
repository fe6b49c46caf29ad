"""An OIDC principal of a suspended tenant is refused like a token of it; a
platform admin's is not (its tenant is only where its token is kept)."""

from __future__ import annotations

import pytest

from gridpilot.schema import db
from gridpilot.security.audit import Actor, AuditLog
from gridpilot.security.authn import Authenticator
from gridpilot.security.principal import AuthError, Principal, Role
from gridpilot.security.tenants import TenantStore
from gridpilot.security.tokens import TokenStore

pytestmark = pytest.mark.integration


class IdpSays:
    """A verifier standing for the IdP (the JWT checks: tests/unit/security)."""

    def __init__(self) -> None:
        self.principal = Principal("oidc:alice", frozenset({Role.OPERATOR}), "oidc")

    def verify(self, token: str) -> Principal:
        return self.principal


async def test_a_suspended_tenants_oidc_principal_is_refused(database_url: str) -> None:
    db.upgrade(database_url)
    engine = db.async_engine(database_url)
    try:
        audit = AuditLog(engine)
        tenants = TenantStore(engine, audit)
        await tenants.create("acme", "Acme", Actor("test"))
        idp = IdpSays()
        authn = Authenticator(TokenStore(engine, audit), idp, tenants)  # type: ignore[arg-type]
        idp.principal = Principal("oidc:alice", frozenset({Role.OPERATOR}), "oidc", None, "acme")
        assert (await authn.authenticate("Bearer eyJ.x.y")).tenant_id == "acme"
        await tenants.set_suspended("acme", True, Actor("test"))
        with pytest.raises(AuthError, match="^tenant acme is suspended$"):
            await authn.authenticate("Bearer eyJ.x.y")
        idp.principal = Principal("oidc:bob", frozenset({Role.OPERATOR}), "oidc", None, "nope")
        with pytest.raises(AuthError, match="^tenant nope does not exist$"):
            await authn.authenticate("Bearer eyJ.x.y")
        idp.principal = Principal(
            "oidc:ops", frozenset({Role.PLATFORM_ADMIN}), "oidc", None, "acme"
        )
        assert (await authn.authenticate("Bearer eyJ.x.y")).platform
        await tenants.set_suspended("acme", False, Actor("test"))
        idp.principal = Principal("oidc:alice", frozenset({Role.OPERATOR}), "oidc", None, "acme")
        assert (await authn.authenticate("Bearer eyJ.x.y")).tenant_id == "acme"
    finally:
        await engine.dispose()
