"""Settings of the headend and the CLI, from ``GRIDPILOT_*`` variables.

Built once in the composition root and passed down as arguments; nothing
deeper reads ``os.environ``.
"""

from __future__ import annotations

import socket
import sys
from enum import StrEnum
from typing import NoReturn

from pydantic import Field, ValidationError, field_validator
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
    reset_db: bool = Field(
        False, description="drop and re-create the schema at headend start (dev only)"
    )
    temporal_address: str = Field("127.0.0.1:7233", description="host:port of Temporal")
    temporal_namespace: str = "default"
    task_queue: str = Field("gridpilot-dispatch", description="shared workflow task queue")
    headend_id: str = Field(
        default_factory=lambda: f"{socket.gethostname()}-{__import__('os').getpid()}",
        description="unique per headend replica; names its delivery task queue",
    )
    roles: str = Field("grpc,api,worker", description="comma list of grpc, api, worker")
    grpc_listen: str = Field("127.0.0.1:50051", description="host:port of the AgentGateway")
    grpc_insecure: bool = Field(
        True, description="plain-text gRPC (dev only until mTLS is configured)"
    )
    api_host: str = "127.0.0.1"
    api_port: int = Field(8080, ge=1, le=65535)
    telemetry_queue_batches: int = Field(
        256, ge=1, description="bounded ingest queue length, in batches"
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
        name = "GRIDPILOT_" + "_".join(str(p) for p in err["loc"]).upper()
        given = err.get("input")
        shown = "" if isinstance(given, dict) else f" (got {given!r})"
        print(f"gridpilot: {name}: {err['msg']}{shown}", file=sys.stderr)
    raise SystemExit(2)
