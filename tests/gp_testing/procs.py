"""GridPilot's own processes for fault tests: a headend and edge agents run as
`python -m gridpilot ...`, so kill -9 means kill -9, and what an agent has
buffered is read from its SQLite file the way an on-call engineer would."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx
import psycopg
import yaml

from gridpilot.ops.processes import free_port

from .waiting import wait_for_sync


def _rss_kb(pid: int, key: str = "VmRSS") -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


class Proc:
    """A child process with its output in a log file."""

    def __init__(self, name: str, cmd: list[str], env: dict[str, str], log: Path) -> None:
        self.name = name
        self.log = log
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                cmd,
                env={**env, "PYTHONFAULTHANDLER": "1"},
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self, timeout: float = 20) -> int:
        """SIGTERM, wait; SIGKILL if it does not go. Returns the exit code."""
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                # Hung: SIGABRT makes Python's faulthandler (PYTHONFAULTHANDLER,
                # set below) write every thread's stack into the log first.
                self.proc.send_signal(signal.SIGABRT)
                try:
                    self.proc.wait(5)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(5)
        return int(self.proc.returncode)

    def tail(self, size: int = 4000) -> str:
        with contextlib.suppress(OSError):
            return self.log.read_bytes()[-size:].decode(errors="replace")
        return ""


# `python -c` for AgentProcess.start(held=True): the CLI and the agent imported,
# a line in the log, then the command runs once the go file is there.
_HELD_START = """
import pathlib, sys, time
from gridpilot.cli.main import app
print("held", flush=True)
go = pathlib.Path(sys.argv[1])
while not go.exists():
    time.sleep(0.01)
sys.argv = ["gridpilot", *sys.argv[2:]]
app()
"""


@dataclass
class HeadendProcess:
    """`python -m gridpilot headend` configured by GRIDPILOT_* variables."""

    database_url: str
    temporal_address: str
    workdir: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    api_port: int = field(default_factory=free_port)
    grpc_port: int = field(default_factory=free_port)
    headend_id: str = field(default_factory=lambda: f"h-{uuid4().hex[:8]}")
    task_queue: str = field(default_factory=lambda: f"tq-{uuid4().hex}")
    proc: Proc | None = None
    starts: int = 0

    @property
    def grpc_address(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def start(self, wait: bool = True) -> None:
        self.starts += 1
        env = {
            **os.environ,
            "GRIDPILOT_DATABASE_URL": self.database_url,
            "GRIDPILOT_TEMPORAL_ADDRESS": self.temporal_address,
            "GRIDPILOT_API_PORT": str(self.api_port),
            "GRIDPILOT_GRPC_LISTEN": self.grpc_address,
            "GRIDPILOT_HEADEND_ID": self.headend_id,
            "GRIDPILOT_TASK_QUEUE": self.task_queue,
            "GRIDPILOT_ENVIRONMENT": "dev",
            "GRIDPILOT_GRPC_INSECURE": "true",  # these tests are about data, not identity
            "GRIDPILOT_METRICS_PUBLIC": "true",
            "GRIDPILOT_AGENT_SILENCE_S": "3600",  # a SIGSTOPped headend must not end agents
            **self.extra_env,
        }
        cmd = [sys.executable, "-m", "gridpilot", "headend"]
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = self.workdir / f"headend-{self.starts}.log"
        self.proc = Proc("headend", cmd, env, log)
        if wait:
            self.wait_ready()

    def wait_ready(self, timeout: float = 60) -> None:
        def ready() -> bool:
            with contextlib.suppress(httpx.HTTPError):
                return httpx.get(f"{self.api}/readyz", timeout=5).status_code == 200
            return False

        self.wait(ready, timeout, "headend /readyz")

    def wait(self, check: Any, timeout: float, what: str, interval: float = 0.2) -> Any:
        """``wait_for_sync``, failing at once if the headend exits meanwhile."""

        def alive_and_met() -> Any:
            assert self.proc is not None and self.proc.alive(), (
                f"headend exited while waiting for {what}:\n{self.proc and self.proc.tail()}"
            )
            return check()

        return wait_for_sync(alive_and_met, timeout, what, interval=interval)

    def token(self, role: str = "viewer") -> str:
        """A bearer token for the API (made with `gridpilot token create`)."""
        env = {**os.environ, "GRIDPILOT_DATABASE_URL": self.database_url}
        cmd = [sys.executable, "-m", "gridpilot", "token", "create"]
        cmd += ["--name", f"test-{uuid4().hex[:6]}", "--role", role]
        run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
        assert run.returncode == 0, run.stderr
        return run.stdout.strip().splitlines()[-1]  # the secret is the last line

    def metric(self, name: str, **labels: str) -> float | None:
        text = httpx.get(f"{self.api}/metrics", timeout=5).text
        want = name + (
            "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}" if labels else ""
        )
        for line in text.splitlines():
            if line.startswith(want + " "):
                return float(line.split()[-1])
        return None


@dataclass
class AgentProcess:
    """`python -m gridpilot agent --config site.yaml --state-dir DIR` for a site
    of simulated batteries."""

    gateway_id: str
    headend_address: str
    workdir: Path
    assets: int = 10
    interval_s: float = 0.1
    buffer: dict[str, Any] = field(default_factory=dict)
    failover_addresses: list[str] = field(default_factory=list)  # other headend replicas
    failsafe_timeout_s: float = 600
    extra_env: dict[str, str] = field(default_factory=dict)
    proc: Proc | None = None
    starts: int = 0

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config = self.workdir / "site.yaml"
        site = {
            "version": 1,
            "gateway_id": self.gateway_id,
            "site": {"id": f"site-{self.gateway_id}", "timezone": "UTC"},
            "headend": {
                "address": self.headend_address,
                "failover_addresses": self.failover_addresses,
                "insecure": True,
            },
            "telemetry_interval_s": self.interval_s,
            "heartbeat_interval_s": 0.5,
            "failsafe_timeout_s": self.failsafe_timeout_s,
            "buffer": self.buffer,
            "assets": [
                {
                    "id": self.asset_id(i),
                    "type": "bess",
                    "limits": {"p_min_kw": -100, "p_max_kw": 100},
                    "default_p_kw": 0,
                    "capacity_kwh": 200,
                    "device": {"kind": "simulated"},
                }
                for i in range(self.assets)
            ],
        }
        self.config.write_text(yaml.safe_dump(site, sort_keys=False))

    def asset_id(self, i: int) -> str:
        return f"{self.gateway_id}-bess-{i}"

    @property
    def buffer_path(self) -> Path:
        return self.workdir / f"{self.gateway_id}.telemetry.sqlite3"

    def start(self, held: bool = False) -> None:
        """Start the agent; `held`: import everything, then wait for `release()`
        before running, so a test can time the agent's start to the moment
        without counting Python's imports (seconds on a busy machine)."""
        self.starts += 1
        args = ["agent", "--config", str(self.config), "--state-dir", str(self.workdir)]
        if held:
            cmd = [sys.executable, "-c", _HELD_START, str(self._go_file), *args]
        else:
            cmd = [sys.executable, "-m", "gridpilot", *args]
        env = {**os.environ, **self.extra_env}
        self.proc = Proc("agent", cmd, env, self.workdir / f"agent-{self.starts}.log")
        if held:
            wait_for_sync(lambda: self.proc is not None and "held" in self.proc.tail(), 120, "held")

    def release(self) -> None:
        """Let an agent started `held` run."""
        self._go_file.touch()

    def log_lines(self, *words: str) -> list[str]:
        """Lines of every run's log that hold all of ``words``."""
        text = "".join(
            p.read_text(errors="replace") for p in sorted(self.workdir.glob("agent-*.log"))
        )
        return [line for line in text.splitlines() if all(w in line for w in words)]

    @property
    def _go_file(self) -> Path:
        return self.workdir / f"go-{self.starts}"

    def counters(self) -> dict[str, int]:
        """The buffer's persistent counters plus what it holds now (zeros
        until the agent has made its buffer)."""
        zeros = {"batches": 0, "samples": 0, "dropped_batches": 0, "stored_samples": 0}
        if not self.buffer_path.exists():
            return zeros
        with _read(self.buffer_path) as db:
            made = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'counters'"
            if db.execute(made).fetchone() is None:
                return zeros  # the file is there, its tables not yet (counters come last)
            out = dict(db.execute("SELECT name, value FROM counters").fetchall())
            batches, samples, size = db.execute(
                "SELECT count(*), coalesce(sum(samples), 0), coalesce(sum(bytes), 0) FROM batches"
            ).fetchone()
        return {**out, "batches": batches, "samples": samples, "bytes": size}

    def buffered_samples(self) -> set[tuple[str, datetime]]:
        """(asset_id, ts) of every sample held in the buffer file right now."""
        from gridpilot.schema.pb import agent_pb2 as pb

        with _read(self.buffer_path) as db:
            payloads = [r[0] for r in db.execute("SELECT payload FROM batches")]
        out = set()
        for payload in payloads:
            for s in pb.TelemetryBatch.FromString(payload).samples:
                out.add((s.asset_id, s.ts.ToDatetime(tzinfo=UTC)))
        return out


@contextlib.contextmanager
def running(*procs: HeadendProcess | AgentProcess) -> Iterator[None]:
    """Start these in order; stop every one that started, whatever happens."""
    try:
        for p in procs:
            p.start()
        yield
    finally:
        for p in procs:
            if p.proc is not None:
                p.proc.stop()


@contextlib.contextmanager
def _read(path: Path) -> Any:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)  # never creates it
    try:
        yield db
    finally:
        db.close()


def stored_samples(database_url: str, prefix: str = "") -> set[tuple[str, datetime]]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT asset_id, ts FROM telemetry WHERE asset_id LIKE %s", (prefix + "%",)
        ).fetchall()
    return {(a, ts.astimezone(UTC)) for a, ts in rows}


def count_rows(database_url: str) -> tuple[int, int]:
    """(rows, distinct (asset_id, ts)) of the telemetry table."""
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT count(*), count(DISTINCT (asset_id, ts)) FROM telemetry"
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def longest_gap_s(
    samples: set[tuple[str, datetime]], asset_id: str, start: float, end: float
) -> float:
    """The longest time without a sample of ``asset_id`` between two epoch times."""
    times = sorted(
        ts.timestamp() for a, ts in samples if a == asset_id and start <= ts.timestamp() <= end
    )
    edges = [start, *times, end]
    return max(b - a for a, b in zip(edges, edges[1:], strict=False))


class RssSampler:
    """Samples a process's RSS every ``interval`` s in a thread; notes if it died."""

    def __init__(self, proc: Proc, interval: float = 0.25) -> None:
        self.proc = proc
        self.interval = interval
        self.samples: list[tuple[float, int]] = []  # (monotonic, kB)
        self.died_at: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self.proc.alive():
                self.died_at = time.monotonic()
                return
            self.samples.append((time.monotonic(), _rss_kb(self.proc.pid)))
            self._stop.wait(self.interval)

    def peak_mb(self, since: float = 0.0) -> float:
        return max((kb for t, kb in self.samples if t >= since), default=0) / 1024

    def hwm_mb(self) -> float:
        """The kernel's own peak RSS of the process (VmHWM)."""
        return _rss_kb(self.proc.pid, "VmHWM") / 1024
