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

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from gridpilot.core.quotas import QuotaLimits
from gridpilot.schema.telemetry_ddl import TelemetryPolicy


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
    temporal_namespace: str = Field(
        "default", description="Temporal namespace (Temporal Cloud: <namespace>.<account id>)"
    )
    temporal_tls: bool = Field(
        False,
        description="TLS to Temporal with the system's CAs (on by itself when a "
        "GRIDPILOT_TEMPORAL_TLS_* file is set); Temporal Cloud needs it",
    )
    temporal_tls_cert_file: Path | None = Field(
        None, description="PEM client certificate for mTLS to Temporal (Temporal Cloud)"
    )
    temporal_tls_key_file: Path | None = Field(
        None, description="PEM private key of GRIDPILOT_TEMPORAL_TLS_CERT_FILE"
    )
    temporal_tls_ca_file: Path | None = Field(
        None,
        description="PEM CA that Temporal's server certificate must chain to "
        "(default: the system's)",
    )
    temporal_tls_server_name: str | None = Field(
        None,
        description="the name to verify Temporal's server certificate against "
        "(default: the host of GRIDPILOT_TEMPORAL_ADDRESS)",
    )
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
    pki_dir: Path | None = Field(
        None,
        description="a `gridpilot pki` directory (pki.json, ca.pem, ca.key) whose CA signs "
        "gateway certificates at enrollment (POST /api/v1/enroll); unset: enrollment answers 404",
    )
    evidence_key_file: Path | None = Field(
        None,
        description="Ed25519 private key (PEM, created 0600 when missing) that signs evidence "
        "exports (GET /api/v1/audit/export); default: <pki_dir>/evidence.key; neither set: "
        "exports answer 404",
    )
    enroll_token_ttl_s: int = Field(
        3600,
        ge=60,
        le=7 * 86_400,
        description="default lifetime of a one-time enrollment token (seconds)",
    )
    gateway_cert_days: int = Field(
        90, ge=1, le=397, description="validity of gateway certificates signed at enrollment"
    )
    revocation_check_s: float = Field(
        30.0,
        gt=0,
        le=600,
        description="how often every live agent stream is re-checked for revocation, withdrawn "
        "enrollment and re-bound assets, in case an announcement (PostgreSQL NOTIFY, acted on "
        "at once) was missed",
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
    oidc_tenant_claim: str = Field(
        "tenant", description="JWT claim naming the caller's tenant (absent: 'default')"
    )
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
    telemetry_compress_after_days: int = Field(
        7,
        ge=0,
        le=36_500,
        description="TimescaleDB: compress telemetry chunks older than this (0 = never); "
        "applied by the table's owner (`gridpilot db upgrade`, a headend that owns it)",
    )
    telemetry_retention_days: int = Field(
        365,
        ge=0,
        le=36_500,
        description="TimescaleDB: drop raw telemetry older than this (0 = keep it all); "
        "the 1-minute and 1-hour rollups are kept",
    )
    quota_api_requests_per_s: float = Field(
        500.0, ge=0, description="REST requests per second per API token (burst: 2 s); 0 = off"
    )
    quota_dispatch_submits_per_min: float = Field(
        3000.0, ge=0, description="dispatch submits per minute per tenant (burst: 1 min); 0 = off"
    )
    quota_telemetry_samples_per_s: float = Field(
        100_000.0,
        ge=0,
        description="telemetry samples per second per gateway (burst: 10 s); over it a batch "
        "is refused before its ack (the agent keeps it and resends); 0 = off",
    )
    # Off by default: one tenant's fleet may be as large as a headend holds
    # (10,000 agents, docs/operations.md); a SaaS operator sets them per tenant.
    quota_max_assets: int = Field(0, ge=0, description="assets per tenant; 0 = off (default)")
    quota_max_gateways: int = Field(0, ge=0, description="gateways per tenant; 0 = off (default)")
    quota_enroll_requests_per_min: float = Field(
        60.0,
        ge=0,
        description="requests to the public enrollment routes per minute per client address "
        "(burst: 1 min); 0 = off",
    )
    tenant_quotas: dict[str, dict[str, float]] = Field(
        default_factory=dict,
        description='per-tenant overrides of the quota_* defaults, JSON: {"acme": '
        '{"dispatch_submits_per_min": 60, "max_assets": 500}} (docs/usage.md)',
    )
    usage_flush_s: float = Field(
        60.0,
        gt=0,
        le=3600,
        description="how often each headend adds what it metered (samples, bytes, API calls, "
        "active assets) to usage_hourly and pushes closed hours to the usage webhook",
    )
    usage_webhook_url: str | None = Field(
        None,
        description="POST each closed hour's usage per tenant here (signed, retried, at least "
        "once, Idempotency-Key; docs/usage.md); unset: no push",
    )
    usage_webhook_secret: SecretStr | None = Field(
        None, description="HMAC-SHA256 key of the usage webhook's X-GridPilot-Signature"
    )
    audit_retention_min_days: int = Field(
        365,
        ge=30,
        le=36_500,
        description="the least audit retention a tenant may set (PUT /api/v1/retention)",
    )
    retention_check_s: float = Field(
        3600.0,
        gt=0,
        description="how often each tenant's telemetry older than its retention is deleted "
        "(none of a tenant on legal hold)",
    )
    max_future_skew_s: float = Field(
        300.0, gt=0, description="samples further in the future are rejected"
    )
    delivery_timeout_s: float = Field(
        60.0, gt=0, description="default: how long a dispatch may wait for its agent"
    )
    ack_timeout_s: float = Field(30.0, gt=0, description="how long to wait for the agent's ack")
    log_level: str = "info"
    trace_ui_url: str | None = Field(
        None,
        description="link to a dispatch's trace in a trace UI (Jaeger, Tempo, ...), with "
        "{trace_id} where the id goes, e.g. http://jaeger:16686/trace/{trace_id}; shown in "
        "GET /dispatches/{id} (trace_url) and the console. Tracing itself is configured by "
        "the standard OTEL_* variables (docs/tracing.md)",
    )
    trace_telemetry_ratio: float = Field(
        0.01,
        ge=0,
        le=1,
        description="share of telemetry commits that get a span (telemetry.commit) when "
        "tracing is on; 0 = none, 1 = every commit",
    )

    @field_validator("database_url")
    @classmethod
    def _pg_url(cls, v: str) -> str:
        if not v.startswith(("postgresql://", "postgres://")):
            raise ValueError("expected a postgresql:// URL")
        return v

    @field_validator("trace_ui_url")
    @classmethod
    def _trace_ui_url(cls, v: str | None) -> str | None:
        if not v:
            return None
        if "{trace_id}" not in v or not v.startswith(("http://", "https://")):
            raise ValueError("expected an http(s) URL with {trace_id} in it")
        return v

    @field_validator("tenant_quotas")
    @classmethod
    def _tenant_quotas(cls, v: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
        from gridpilot.core.quotas import QuotaLimits

        for tenant, overrides in v.items():
            try:
                QuotaLimits().replace(overrides)
            except ValueError as exc:
                raise ValueError(f"tenant {tenant!r}: {exc}") from None
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
        if (self.temporal_tls_cert_file is None) != (self.temporal_tls_key_file is None):
            raise ValueError(
                "GRIDPILOT_TEMPORAL_TLS_CERT_FILE and GRIDPILOT_TEMPORAL_TLS_KEY_FILE go together"
            )
        if self.usage_webhook_url and self.usage_webhook_secret is None:
            raise ValueError("usage_webhook_url needs usage_webhook_secret (its signing key)")
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
    def temporal_uses_tls(self) -> bool:
        files = (self.temporal_tls_cert_file, self.temporal_tls_ca_file)
        return self.temporal_tls or any(f is not None for f in files)

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
    def telemetry_policy(self) -> TelemetryPolicy:
        return TelemetryPolicy(self.telemetry_compress_after_days, self.telemetry_retention_days)

    @property
    def quota_limits(self) -> tuple[QuotaLimits, dict[str, QuotaLimits]]:
        """The default limits, and each tenant's with its overrides."""
        default = QuotaLimits(
            api_requests_per_s=self.quota_api_requests_per_s,
            dispatch_submits_per_min=self.quota_dispatch_submits_per_min,
            telemetry_samples_per_s=self.quota_telemetry_samples_per_s,
            max_assets=self.quota_max_assets,
            max_gateways=self.quota_max_gateways,
            enroll_requests_per_min=self.quota_enroll_requests_per_min,
        )
        return default, {t: default.replace(o) for t, o in self.tenant_quotas.items()}

    @property
    def evidence_key_path(self) -> Path | None:
        if self.evidence_key_file is not None:
            return self.evidence_key_file
        return None if self.pki_dir is None else self.pki_dir / "evidence.key"

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
