"""Settings of the headend and the CLI, from ``GRIDPILOT_*`` variables.

Built once in the composition root and passed down as arguments; nothing
deeper reads ``os.environ``.
"""

from __future__ import annotations

import socket
import sys
from enum import StrEnum
from pathlib import Path
from typing import NoReturn

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Environment(StrEnum):
    DEV = "dev"
    PRODUCTION = "production"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="GRIDPILOT_", env_file=".env", extra="ignore", frozen=True
    )

    environment: Environment = Field(
        Environment.DEV, description="dev or production; production refuses reset_db"
    )
    database_url: str = Field(
        "postgresql://postgres@127.0.0.1:5432/gridpilot",
        description="libpq URL of the PostgreSQL database",
    )
    db_app_role: str = Field(
        "gridpilot_app",
        description="the database role the app should run as (migrations grant it what the "
        "app needs, SELECT/INSERT only on the audit log); database_url should log in as it, "
        "and migrations run as the owner (`gridpilot db upgrade`)",
    )
    audit_head_log_s: float = Field(
        300.0,
        ge=0,
        description="how often the headend logs the audit chain's head (`audit_head`, id:hash) "
        "for `gridpilot audit verify --expect-head`; 0 = never",
    )
    reset_db: bool = Field(
        False, description="drop and re-create the schema at headend start (dev only)"
    )
    temporal_address: str = Field("127.0.0.1:7233", description="host:port of Temporal")
    temporal_namespace: str = "default"
    temporal_ui_url: str | None = Field(
        None,
        description="base URL of the Temporal UI (e.g. http://127.0.0.1:8233); the console "
        "links each dispatch to its workflow there; `gridpilot up` sets it to its UI",
    )
    temporal_connect_timeout_s: float = Field(
        30.0, gt=0, description="how long a starting headend retries an unreachable Temporal"
    )
    task_queue: str = Field("gridpilot-dispatch", description="shared workflow task queue")
    headend_id: str = Field(
        default_factory=lambda: f"{socket.gethostname()}-{__import__('os').getpid()}",
        description="unique per headend replica; names its delivery task queue",
    )
    roles: str = Field("grpc,api,worker", description="comma list of grpc, api, worker")
    grpc_listen: str = Field("127.0.0.1:50051", description="host:port of the AgentGateway")
    grpc_insecure: bool = Field(
        False,
        description="plain-text gRPC without client certificates: dev only, refused in "
        "production; identities are then taken from Hello unchecked",
    )
    grpc_tls_cert_file: Path | None = Field(
        None, description="PEM certificate (chain) of the AgentGateway, serverAuth"
    )
    grpc_tls_key_file: Path | None = Field(None, description="PEM private key of the AgentGateway")
    grpc_client_ca_file: Path | None = Field(
        None, description="PEM CA bundle that gateway client certificates must chain to"
    )
    trust_domain: str = Field(
        "gridpilot",
        description="gateway certificates name spiffe://<trust_domain>/gateway/<gateway id>",
    )
    revocation_check_s: float = Field(
        2.0, gt=0, le=60, description="how often live agent streams are re-checked for revocation"
    )
    agent_silence_s: float = Field(
        25.0,
        gt=0,
        le=86_400,
        description="an agent stream with no message (heartbeat, telemetry, ack) for this long "
        "is ended as unresponsive; keep it above 2x the agents' heartbeat_interval_s (10 s)",
    )
    metrics_public: bool = Field(
        False, description="serve /metrics without a bearer token (else any role may read it)"
    )
    oidc_jwks_url: str | None = Field(
        None, description="JWKS URL of an OIDC provider; enables JWT bearer tokens"
    )
    oidc_issuer: str | None = Field(None, description="required 'iss' of JWT bearer tokens")
    oidc_audience: str | None = Field(None, description="required 'aud' of JWT bearer tokens")
    oidc_algorithms: str = Field(
        "RS256,ES256", description="comma list of accepted JWT algorithms (asymmetric only)"
    )
    oidc_role_claim: str = Field("roles", description="JWT claim holding the role(s)")
    oidc_principal_claim: str = Field("sub", description="JWT claim naming the caller")
    oidc_role_map: str = Field(
        "", description="claim value to role, e.g. 'grid-ops=operator,grid-view=viewer'"
    )
    api_host: str = "127.0.0.1"
    api_port: int = Field(8080, ge=1, le=65535)
    api_max_body_bytes: int = Field(
        64 * 1024, ge=1024, description="larger REST request bodies are refused with 413"
    )
    telemetry_queue_bytes: int = Field(
        16 * 1024 * 1024,
        ge=64 * 1024,
        description="bound of the ingest queue in serialized telemetry bytes (queued + being "
        "written; a waiting batch takes under 4.5x this in memory); when full, agents' streams "
        "are not read (gRPC flow control)",
    )
    max_future_skew_s: float = Field(
        300.0, gt=0, description="samples further in the future are rejected"
    )
    delivery_timeout_s: float = Field(
        60.0, gt=0, description="default: how long a dispatch may wait for its agent"
    )
    ack_timeout_s: float = Field(30.0, gt=0, description="how long to wait for the agent's ack")
    log_level: str = "info"

    @field_validator("database_url")
    @classmethod
    def _pg_url(cls, v: str) -> str:
        if not v.startswith(("postgresql://", "postgres://")):
            raise ValueError("expected a postgresql:// URL")
        return v

    @field_validator("db_app_role")
    @classmethod
    def _app_role(cls, v: str) -> str:
        from gridpilot.schema.roles import check_role_name

        return check_role_name(v)

    @field_validator("trust_domain")
    @classmethod
    def _trust_domain(cls, v: str) -> str:
        from gridpilot.security.identity import check_trust_domain

        return check_trust_domain(v)

    @model_validator(mode="after")
    def _security(self) -> Settings:
        if self.grpc_insecure and self.environment is Environment.PRODUCTION:
            raise ValueError("grpc_insecure is refused in production (mutual TLS is required)")
        if self.oidc_jwks_url:
            from gridpilot.security.oidc import OidcConfig, parse_role_map

            if not (self.oidc_issuer and self.oidc_audience):
                raise ValueError("oidc_jwks_url needs oidc_issuer and oidc_audience")
            OidcConfig(
                self.oidc_jwks_url, self.oidc_issuer, self.oidc_audience, self.oidc_algorithm_list
            )
            parse_role_map(self.oidc_role_map)
        return self

    @property
    def oidc_algorithm_list(self) -> tuple[str, ...]:
        return tuple(a.strip() for a in self.oidc_algorithms.split(",") if a.strip())

    @field_validator("roles")
    @classmethod
    def _roles(cls, v: str) -> str:
        roles = {r.strip() for r in v.split(",") if r.strip()}
        unknown = roles - {"grpc", "api", "worker"}
        if unknown or not roles:
            raise ValueError(f"unknown roles {sorted(unknown)}; expected grpc, api, worker")
        return ",".join(sorted(roles))

    def has_role(self, role: str) -> bool:
        return role in self.roles.split(",")

    @property
    def headend_task_queue(self) -> str:
        return f"gridpilot-headend-{self.headend_id}"


def load_settings(**overrides: object) -> Settings:
    """Build the settings, or print one line per bad variable and exit 2."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        _die(exc)


def _die(exc: ValidationError) -> NoReturn:
    for err in exc.errors():
        loc = "_".join(str(p) for p in err["loc"]).upper()
        name = f"GRIDPILOT_{loc}" if loc else "settings"
        given = err.get("input")
        shown = "" if isinstance(given, dict) else f" (got {given!r})"
        print(f"gridpilot: {name}: {err['msg']}{shown}", file=sys.stderr)
    raise SystemExit(2)
