"""Bearer credential → principal: static API tokens, else OIDC JWTs when configured."""

from __future__ import annotations

import asyncio

from .oidc import JwtVerifier
from .principal import AuthError, Principal
from .tenants import TenantStore, TenantSuspended
from .tokens import TOKEN_PREFIX, TokenStore


class Authenticator:
    """``tenants`` checks an OIDC principal's tenant (an API token's is
    checked with the token); without it, OIDC principals are not checked."""

    def __init__(
        self,
        tokens: TokenStore,
        jwt_verifier: JwtVerifier | None = None,
        tenants: TenantStore | None = None,
    ) -> None:
        self._tokens = tokens
        self._jwt = jwt_verifier
        self._tenants = tenants

    async def authenticate(self, authorization: str | None) -> Principal:
        if not authorization:
            raise AuthError("a bearer token is required (Authorization: Bearer <token>)")
        scheme, _, credential = authorization.partition(" ")
        credential = credential.strip()
        if scheme.lower() != "bearer" or not credential:
            raise AuthError("the Authorization header must be 'Bearer <token>'")
        if credential.startswith(TOKEN_PREFIX):
            principal = await self._tokens.authenticate(credential)
            if principal is None:
                raise AuthError("unknown, revoked or expired API token")
            return principal
        if self._jwt is None:
            raise AuthError("not a GridPilot API token (and OIDC is not configured)")
        principal = await asyncio.to_thread(self._jwt.verify, credential)
        if self._tenants is not None and not principal.platform:
            try:
                await self._tenants.check_active(principal.tenant_id)
            except TenantSuspended as exc:
                raise AuthError(str(exc)) from None
        return principal
