"""``gridpilot up``: the embedded demo stack, wired in one place.

Starts, in order: embedded PostgreSQL, the Temporal dev server with its UI,
a headend and a simulated site's edge agent (each a child process), waits
until the agent is connected and telemetry flows, writes ``up.json`` and
prints the URLs. Then it supervises the headend and the agent (a child that
exits is restarted with backoff, see supervise.py). Ctrl-C (or SIGTERM) stops
everything in reverse order; so does a crash loop, saying so.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import platformdirs
import psycopg
import yaml

from gridpilot.schema import db
from gridpilot.schema.roles import APP_ROLE
from gridpilot.workflows.constants import SEARCH_ATTRIBUTES

from .embedded import (
    EmbeddedPostgres,
    EmbeddedStackError,
    TemporalDevServer,
    stack_lock,
)
from .processes import free_port, port_open
from .supervise import Child, CrashLoop, Supervisor
from .up_security import (
    ensure_admin_token,
    ensure_app_login,
    ensure_demo_enrollment,
    ensure_demo_opcua,
    ensure_demo_tls,
)

DEMO_CONFIG = Path(__file__).parent / "demo" / "demo-site.yaml"
DATABASE = "gridpilot"


@dataclass(frozen=True)
class UpOptions:
    data_dir: Path | None = None
    api_port: int = 8080
    grpc_port: int = 50051
    temporal_port: int = 7233
    ui_port: int = 8233
    opcua_port: int = 4840
    pg_port: int = 0
    ready_timeout_s: float = 90.0


class UpError(Exception):
    pass


def default_data_dir() -> Path:
    return platformdirs.user_data_path("gridpilot") / "demo"


def _ensure_database(pg: EmbeddedPostgres) -> str:
    with psycopg.connect(pg.url("postgres"), autocommit=True) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)
        ).fetchone()
        if exists is None:
            conn.execute(f'CREATE DATABASE "{DATABASE}"')
    return pg.url(DATABASE)


def _check_ports(opts: UpOptions) -> None:
    for name, port in (
        ("--api-port", opts.api_port),
        ("--grpc-port", opts.grpc_port),
        ("--temporal-port", opts.temporal_port),
        ("--ui-port", opts.ui_port),
        ("--opcua-port", opts.opcua_port),
    ):
        if port_open("127.0.0.1", port):
            raise UpError(f"port {port} ({name}) is already in use; choose another with {name}")


def _wait(what: str, check: Any, timeout: float, children: list[Child]) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for c in children:
            if not c.alive():
                raise UpError(f"{c.name} exited while waiting for {what}:\n{c.tail()}")
        with contextlib.suppress(httpx.HTTPError, KeyError, ValueError):
            result = check()
            if result:
                return result
        time.sleep(0.5)
    raise UpError(f"timed out waiting for {what}")


def run_up(opts: UpOptions) -> int:
    data_dir = (opts.data_dir or default_data_dir()).expanduser().resolve()
    data_dir.mkdir(parents=True, exist_ok=True)

    def on_signal(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    # Installed explicitly: a shell that starts `up` in the background leaves
    # SIGINT ignored, and Ctrl-C / `kill -INT` must still stop the stack.
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        with stack_lock(data_dir):
            return _run_locked(opts, data_dir)
    except (UpError, EmbeddedStackError) as exc:
        print(f"gridpilot up: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0


def _run_locked(opts: UpOptions, data_dir: Path) -> int:
    logs = data_dir / "logs"
    logs.mkdir(exist_ok=True)
    up_json = data_dir / "up.json"
    up_json.unlink(missing_ok=True)
    _check_ports(opts)
    started = time.monotonic()
    pg = EmbeddedPostgres(data_dir / "postgres", opts.pg_port or free_port())
    temporal = TemporalDevServer(
        port=opts.temporal_port,
        ui_port=opts.ui_port,
        db_file=data_dir / "temporal.db",
        search_attributes={k.name: "Keyword" for k in SEARCH_ATTRIBUTES},
        log_file=logs / "temporal.log",
    )
    children: list[Child] = []
    try:
        print(f"gridpilot up: data in {data_dir}", flush=True)
        pg.start(timeout=60)
        timescaledb = pg.timescaledb_version  # preloaded when `gridpilot dev timescaledb` ran
        database_url = _ensure_database(pg)
        # Secure by default: mTLS between agent and headend, a bearer token on REST.
        config = yaml.safe_load(DEMO_CONFIG.read_text())
        tls = ensure_demo_tls(data_dir / "pki", config["gateway_id"])
        token_file = data_dir / "admin-token"
        token = ensure_admin_token(database_url, token_file)  # migrates the database
        ensure_demo_enrollment(database_url, config["site"]["id"], config["gateway_id"])
        # Migrated as the owner; the headend runs as the app role, which may
        # not change or remove audit rows (docs/security.md).
        app_database_url = ensure_app_login(database_url, APP_ROLE, data_dir / "db-app-password")
        opcua = ensure_demo_opcua(data_dir, config["gateway_id"], opts.opcua_port)
        auth = {"Authorization": f"Bearer {token}"}
        temporal.start(timeout=60)
        env = {
            **os.environ,
            "GRIDPILOT_DATABASE_URL": app_database_url,
            "GRIDPILOT_DB_APP_ROLE": APP_ROLE,
            "GRIDPILOT_TEMPORAL_ADDRESS": temporal.address,
            # the console's link to each dispatch's workflow
            **({"GRIDPILOT_TEMPORAL_UI_URL": temporal.ui_url} if temporal.ui_url else {}),
            "GRIDPILOT_API_PORT": str(opts.api_port),
            "GRIDPILOT_GRPC_LISTEN": f"127.0.0.1:{opts.grpc_port}",
            "GRIDPILOT_HEADEND_ID": "demo-headend",
            "GRIDPILOT_ENVIRONMENT": "dev",
            # signs evidence exports (GET /api/v1/audit/export)
            "GRIDPILOT_EVIDENCE_KEY_FILE": str(data_dir / "pki" / "evidence.key"),
            **tls.headend_env(),
        }
        api = f"http://127.0.0.1:{opts.api_port}"
        gp = [sys.executable, "-m", "gridpilot"]
        children.append(Child("headend", [*gp, "headend"], env, logs / "headend.log"))
        _wait("the headend", lambda: httpx.get(f"{api}/readyz").status_code == 200, 60, children)
        config["headend"] = {
            "address": f"127.0.0.1:{opts.grpc_port}",
            "ca_file": str(tls.ca_file),
            "cert_file": str(tls.agent_cert),
            "key_file": str(tls.agent_key),
        }
        config["opcua_server"] = opcua.server  # the agent's OPC UA surface for a SCADA
        site_yaml = data_dir / "demo-site.yaml"
        site_yaml.write_text(yaml.safe_dump(config, sort_keys=False))
        children.append(
            Child("agent", [*gp, "agent", "--config", str(site_yaml)], env, logs / "agent.log")
        )
        asset_ids = [a["id"] for a in config["assets"]]
        _wait(
            "the demo agent and its telemetry",
            lambda: (
                all(
                    httpx.get(f"{api}/api/v1/assets/{a}/telemetry/latest", headers=auth).status_code
                    == 200
                    for a in asset_ids
                )
                and any(
                    x["connected"] for x in httpx.get(f"{api}/api/v1/agents", headers=auth).json()
                )
                and port_open("127.0.0.1", opts.opcua_port)
            ),
            opts.ready_timeout_s,
            children,
        )
        info = {
            "console_url": f"{api}/",
            "api_url": f"{api}/api/v1",
            "openapi_url": f"{api}/openapi.json",
            "temporal_ui_url": temporal.ui_url,
            "temporal_address": temporal.address,
            "grpc_address": f"127.0.0.1:{opts.grpc_port}",
            "database_url": database_url,
            "timescaledb": timescaledb or False,
            "telemetry_storage": db.telemetry_backend(database_url) or "postgresql",
            "app_database_url": app_database_url,
            "data_dir": str(data_dir),
            "logs_dir": str(logs),
            "admin_token_file": str(token_file),
            "site_id": config["site"]["id"],
            "gateway_id": config["gateway_id"],
            "asset_ids": asset_ids,
            "opcua": opcua.connect,
            "pids": {
                "up": os.getpid(),
                "postgres": pg.pid,
                "temporal": temporal.pid,
                **{c.name: c.proc.pid for c in children},
            },
            "ready_after_s": round(time.monotonic() - started, 1),
        }
        pids: dict[str, int | None] = info["pids"]

        def write_up_json(restarted: Child | None = None) -> None:
            if restarted is not None:
                pids[restarted.name] = restarted.proc.pid
            # Atomic: the CLI and scripts may read it at any moment.
            tmp = up_json.with_suffix(".json.tmp")
            tmp.write_text(json.dumps(info, indent=2))
            tmp.replace(up_json)

        write_up_json()
        print(
            "\nGridPilot is up "
            f"({info['ready_after_s']} s)\n"
            f"  console      {info['console_url']}\n"
            f"  REST API     {info['api_url']}  (docs: {api}/docs)\n"
            f"  Temporal UI  {info['temporal_ui_url']}\n"
            f"  admin token  {token}  (in {token_file}; paste it into the console)\n"
            f"  database     PostgreSQL, telemetry on {info['telemetry_storage']}"
            f"{'' if timescaledb else ' (install TimescaleDB: gridpilot dev timescaledb)'}\n"
            f"  demo site    {info['site_id']}: {', '.join(asset_ids)}\n"
            f"  OPC UA       {opcua.connect['endpoint_url']}  (Basic256Sha256 SignAndEncrypt, "
            f"user {opcua.connect['username']}, password in {opcua.connect['password_file']}; "
            "client certificate in up.json)\n"
            f"  data         {data_dir}  (logs in {logs})\n"
            "Press Ctrl-C to stop.",
            flush=True,
        )
        # A child that exits is restarted (an outage can be rehearsed); only
        # Ctrl-C or a crash loop stops the stack.
        supervisor = Supervisor(children, on_restart=write_up_json)
        try:
            while True:
                supervisor.tick()
                time.sleep(0.5)
        except CrashLoop as exc:
            print(f"gridpilot up: {exc}", file=sys.stderr, flush=True)
            return 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the stop
        print("gridpilot up: stopping", file=sys.stderr, flush=True)
        for child in reversed(children):
            child.stop()
        temporal.stop()
        pg.stop()
        up_json.unlink(missing_ok=True)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        print("gridpilot up: stopped", file=sys.stderr, flush=True)
