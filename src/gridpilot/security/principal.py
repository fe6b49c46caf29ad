"""Who calls the REST API, what roles they hold, and what each role may do."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from gridpilot.schema.tables import DEFAULT_TENANT
from gridpilot.schema.tenancy import SYSTEM

from .audit import Actor


class Role(StrEnum):
    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"
    AUDITOR = "auditor"
    # The service operator's, above tenants: manages tenants, reads and
    # administers every tenant; never dispatches (docs/security.md, Tenancy).
    PLATFORM_ADMIN = "platform-admin"


class Permission(StrEnum):
    PUBLIC = "public"  # no credential needed
    AUTHENTICATED = "authenticated"  # any valid credential, whatever its role
    READ = "read"  # assets, agents, telemetry, dispatches
    DISPATCH = "dispatch"  # submit, preview, cancel
    AUDIT = "audit"  # the audit log
    ADMIN = "admin"  # tokens, gateways, certificates, bindings
    TENANTS = "tenants"  # create, list, suspend and resume tenants (platform admin)


# The permissions a role grants (PUBLIC and AUTHENTICATED need no role), in
# the order /api/v1/me lists them.
GRANTABLE = (
    Permission.READ,
    Permission.DISPATCH,
    Permission.AUDIT,
    Permission.ADMIN,
    Permission.TENANTS,
)

GRANTS: dict[Role, frozenset[Permission]] = {
    Role.VIEWER: frozenset({Permission.READ}),
    Role.OPERATOR: frozenset({Permission.READ, Permission.DISPATCH}),
    Role.AUDITOR: frozenset({Permission.READ, Permission.AUDIT}),
    Role.ADMIN: frozenset(
        {Permission.READ, Permission.DISPATCH, Permission.AUDIT, Permission.ADMIN}
    ),
    Role.PLATFORM_ADMIN: frozenset(
        {Permission.READ, Permission.AUDIT, Permission.ADMIN, Permission.TENANTS}
    ),
}


@dataclass(frozen=True)
class Principal:
    name: str  # token:<name>, oidc:<subject>
    roles: frozenset[Role]
    method: str  # token | oidc | none
    token_id: str | None = None
    tenant_id: str = DEFAULT_TENANT

    @property
    def platform(self) -> bool:
        """A platform admin: acts above tenants, for every one of them."""
        return Role.PLATFORM_ADMIN in self.roles

    @property
    def scope(self) -> str:
        """Whose rows this principal's requests see (schema/tenancy.py)."""
        return SYSTEM if self.platform else self.tenant_id

    def sees(self, tenant_id: str) -> bool:
        """Whether an object of ``tenant_id`` exists for this principal."""
        return self.platform or tenant_id == self.tenant_id

    @property
    def authenticated(self) -> bool:
        return self.method != "none"

    @property
    def role_label(self) -> str:
        return ",".join(sorted(self.roles))

    def can(self, permission: Permission) -> bool:
        if permission is Permission.PUBLIC:
            return True
        if not self.authenticated:
            return False
        if permission is Permission.AUTHENTICATED:
            return True
        return any(permission in GRANTS[r] for r in self.roles)

    def actor(self, request_id: str = "") -> Actor:
        return Actor(self.name, self.role_label, self.method, request_id)


ANONYMOUS = Principal("anonymous", frozenset(), "none")


class AuthError(Exception):
    """A credential was missing or did not verify (HTTP 401). The message never
    contains the credential."""
