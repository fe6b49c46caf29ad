"""Telemetry ingest benchmark: end-to-end over real gRPC vs raw binary COPY.

    .venv/bin/python bench/ingest.py [--backend plain|timescaledb]

No arguments needed (``--backend`` defaults to plain PostgreSQL;
``timescaledb`` needs `gridpilot dev timescaledb` first); starts what it
needs in a temp dir (embedded PostgreSQL with its normal durability, the
Temporal dev server, a headend as a child process), then:

1. N simulated agents x M assets (one asyncio client process, batches
   pre-encoded so the client costs little CPU) stream as fast as their acks
   allow, each with a window of W unacked batches, over gRPC with mutual TLS
   (a throwaway PKI; plain text if this build has no PKI) into a fresh
   database: rows/s committed and acked, p50/p99 sample -> commit latency
   (a batch's write to its TelemetryAck, which the headend sends after the
   commit), the headend's peak RSS, and the CPU seconds the headend,
   PostgreSQL and the agents used meanwhile (where the 2 cores went);
2. the same rows, binary COPY in 5,000-row transactions from one
   connection into an identical (freshly migrated) table: rows/s.

With ``--backend timescaledb`` the telemetry table is a hypertable in both
runs (the raw COPY goes into the same kind of table), and two more figures
follow: 3. end-to-end rows/s of a second day of rows while the first day's
chunk is being compressed (``compress_chunk`` on another connection), and
4. the disk size (table + indexes) of one day of the demo site's telemetry
(3 assets at 1 sample/s, as ``gridpilot up`` sends) before and after
compression.

The last line is ``ingest_vs_copy_ratio <x>`` (end-to-end rows/s over raw
COPY rows/s). Figures vary by +-20 % from run to run on a shared 2-core box.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import random
import statistics
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import grpc
import psycopg
from _stack import cpu_seconds, pct, stack
from psycopg.types.json import Jsonb

from gridpilot.core.telemetry import CORE_FIELDS
from gridpilot.ingest.pipeline import COLUMNS, COPY_TYPES
from gridpilot.schema import db
from gridpilot.schema.pb import agent_pb2 as pb

AGENTS = 4
ASSETS = 50  # per agent
SAMPLES_PER_BATCH = 500  # 10 readings of each of the 50 assets
BATCHES = 400  # per agent: 4 x 400 x 500 = 800,000 rows
WINDOW = 8  # unacked batches in flight per agent
COPY_ROWS = 5000
CONNECT = "/gridpilot.v1.AgentGateway/Connect"


@dataclass
class Reading:
    asset_id: str
    ts: datetime
    values: dict[str, float]
    state: str
    details: dict[str, Any]


def readings(agent: int, batch: int, t0: datetime) -> list[Reading]:
    """One batch of an agent: every asset's next 10 readings (deterministic)."""
    rng = random.Random(agent * 1_000_003 + batch)
    out = []
    steps = SAMPLES_PER_BATCH // ASSETS
    for step in range(steps):
        ts = t0 + timedelta(milliseconds=100 * (batch * steps + step))
        for a in range(ASSETS):
            out.append(
                Reading(
                    f"bench{agent}-bess-{a}",
                    ts,
                    {
                        "p_kw": rng.uniform(-250, 250),
                        "q_kvar": rng.uniform(-20, 20),
                        "soc_pct": rng.uniform(5, 95),
                        "available_charge_kw": 250.0,
                        "available_discharge_kw": 250.0,
                        "voltage_v": rng.gauss(400, 2),
                        "frequency_hz": rng.gauss(50, 0.02),
                    },
                    "ok",
                    {"soh_pct": 98.0, "temperature_c": round(rng.uniform(20, 30), 1)},
                )
            )
    return out


def encode(agent: int, seq: int, rows: list[Reading]) -> bytes:
    batch = pb.TelemetryBatch(batch_seq=seq)
    for r in rows:
        s = batch.samples.add(asset_id=r.asset_id, state=r.state, **r.values)
        s.ts.FromDatetime(r.ts)
        s.details.update(r.details)
    return pb.AgentMessage(telemetry=batch).SerializeToString()


def hello(agent: int) -> pb.AgentMessage:
    return pb.AgentMessage(
        hello=pb.Hello(
            gateway_id=f"bench{agent}",
            site_id=f"bench-site-{agent}",
            agent_version="bench",
            assets=[
                pb.AssetInfo(
                    asset_id=f"bench{agent}-bess-{a}",
                    asset_type=pb.ASSET_TYPE_BESS,
                    p_min_kw=-250,
                    p_max_kw=250,
                    capacity_kwh=500,
                )
                for a in range(ASSETS)
            ],
        )
    )


@dataclass
class AgentRun:
    accepted: int = 0
    latencies: list[float] = field(default_factory=list)
    first_send: float = 0.0
    last_ack: float = 0.0


async def run_agent(
    agent: int,
    address: str,
    creds: grpc.ChannelCredentials | None,
    batches: list[bytes],
    first_seq: int = 1,
) -> AgentRun:
    run = AgentRun()
    options = [("grpc.max_send_message_length", 8 * 1024 * 1024)]
    channel = (
        grpc.aio.secure_channel(address, creds, options=options)
        if creds is not None
        else grpc.aio.insecure_channel(address, options=options)
    )
    call = channel.stream_stream(
        CONNECT, request_serializer=lambda b: b, response_deserializer=pb.HeadendMessage.FromString
    )()
    await call.write(hello(agent).SerializeToString())
    welcome = await call.read()
    assert welcome.WhichOneof("body") == "welcome", welcome
    window = asyncio.Semaphore(WINDOW)
    sent_at: dict[int, float] = {}
    done = asyncio.Event()

    async def reader() -> None:
        while True:
            msg = await call.read()
            if msg is grpc.aio.EOF:
                raise RuntimeError(f"agent {agent}: stream ended")
            if msg.WhichOneof("body") == "telemetry_ack":
                now = time.perf_counter()
                ack = msg.telemetry_ack
                run.latencies.append(now - sent_at.pop(ack.batch_seq))
                run.accepted += ack.accepted
                run.last_ack = now
                window.release()
                if not sent_at and len(run.latencies) == len(batches):
                    done.set()

    task = asyncio.create_task(reader())
    run.first_send = time.perf_counter()
    for seq, payload in enumerate(batches, start=first_seq):
        await window.acquire()
        sent_at[seq] = time.perf_counter()
        await call.write(payload)
    await asyncio.wait([task, asyncio.create_task(done.wait())], return_when="FIRST_COMPLETED")
    if task.done():
        task.result()
    task.cancel()
    call.cancel()
    await channel.close()
    return run


def raw_copy(url: str, t0: datetime) -> tuple[int, float]:
    """The same rows, binary COPY straight into ``telemetry``; (rows, seconds
    spent in COPY + commit, tuple building excluded)."""
    received = datetime.now(UTC)
    rows: list[tuple[Any, ...]] = []
    total, spent = 0, 0.0
    with psycopg.connect(url) as conn:

        def flush() -> float:
            start = time.perf_counter()
            with (
                conn.cursor() as cur,
                cur.copy(
                    f"COPY telemetry ({', '.join(COLUMNS)}) FROM STDIN (FORMAT BINARY)"
                ) as copy,
            ):
                copy.set_types(COPY_TYPES)
                for row in rows:
                    copy.write_row(row)
            conn.commit()
            return time.perf_counter() - start

        for agent in range(AGENTS):
            for b in range(BATCHES):
                for r in readings(agent, b, t0):
                    core = [r.values.get(c) for c in CORE_FIELDS]
                    rows.append((r.asset_id, r.ts, received, *core, r.state, Jsonb(r.details)))
                    if len(rows) == COPY_ROWS:
                        spent += flush()
                        total += len(rows)
                        rows.clear()
        if rows:
            spent += flush()
            total += len(rows)
    return total, spent


def compress_day(url: str, before: datetime) -> tuple[int, float]:
    """Compress every chunk that ends by ``before``; (chunks, seconds)."""
    with psycopg.connect(url, autocommit=True) as conn:
        start = time.perf_counter()
        row = conn.execute(
            "SELECT count(compress_chunk(c, if_not_compressed => true)) "
            "FROM show_chunks('telemetry', older_than => %s) c",
            (before,),
        ).fetchone()
        return (row[0] if row else 0), time.perf_counter() - start


def demo_day(day: datetime) -> list[tuple[Any, ...]]:
    """A day of the demo site (BESS, PV, EV charger at 1 sample/s), as smooth
    as real devices: values at their registers' resolution, a little noise."""
    rng = random.Random(7)
    received = datetime.now(UTC)
    rows: list[tuple[Any, ...]] = []
    soc = 50.0
    for second in range(86_400):
        ts = day + timedelta(seconds=second)
        hour = second / 3600
        bess = (100.0 if int(hour) % 4 < 2 else -100.0) + rng.gauss(0, 0.5)
        soc = min(95.0, max(5.0, soc - bess / 3600 / 5))
        pv = max(0.0, 250 * math.sin(math.pi * (hour - 6) / 12)) if 6 < hour < 18 else 0.0
        ev = -22.0 if 8 <= hour < 17 else 0.0
        volts, hz = round(rng.gauss(400, 1), 1), round(rng.gauss(50, 0.02), 3)
        temp = {"temperature_c": round(25 + abs(bess) / 50, 1)}
        for asset, p, charge_pct in (
            ("demo-bess", bess, soc),
            ("demo-pv", pv + rng.gauss(0, 0.3) * (pv > 0), None),
            ("demo-ev", ev, None),
        ):
            rows.append(
                (
                    asset,
                    ts,
                    received,
                    round(p, 1),
                    0.0,
                    None if charge_pct is None else round(charge_pct, 2),
                    250.0,
                    250.0,
                    volts,
                    hz,
                    "online",
                    Jsonb(temp if asset == "demo-bess" else {}),
                )
            )
    return rows


def demo_day_sizes(url: str) -> tuple[int, int, int]:
    """(rows, bytes before, bytes after compression) of a day of the demo site."""
    day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    rows = demo_day(day - timedelta(days=3))
    with psycopg.connect(url) as conn:
        with (
            conn.cursor() as cur,
            cur.copy(f"COPY telemetry ({', '.join(COLUMNS)}) FROM STDIN (FORMAT BINARY)") as copy,
        ):
            copy.set_types(COPY_TYPES)
            for row in rows:
                copy.write_row(row)
        conn.commit()
    size = "SELECT hypertable_size('telemetry')"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE telemetry")
        before = conn.execute(size).fetchone()[0]  # type: ignore[index]
    compress_day(url, day)
    with psycopg.connect(url, autocommit=True) as conn:
        after = conn.execute(size).fetchone()[0]  # type: ignore[index]
    return len(rows), int(before), int(after)


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def postgres_cpu_seconds(postmaster: int) -> float:
    """The postmaster, its live backends and workers, and the exited ones."""
    total = cpu_seconds(postmaster)
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            if int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1]) == postmaster:
                total += cpu_seconds(int(proc.name), children=False)
    return total


def stream(
    address: str, creds: list[Any], payloads: list[list[bytes]], first_seq: int = 1
) -> list[AgentRun]:
    async def run() -> list[AgentRun]:
        return await asyncio.gather(
            *(run_agent(a, address, creds[a], payloads[a], first_seq) for a in range(AGENTS))
        )

    return asyncio.run(run())


def rows_per_s(runs: list[AgentRun], url: str, before: int = 0) -> tuple[int, float, int]:
    """(rows committed, seconds from first send to last ack, rows acked)."""
    elapsed = max(r.last_ack for r in runs) - min(r.first_send for r in runs)
    with psycopg.connect(url) as conn:
        committed = conn.execute("SELECT count(*) FROM telemetry").fetchone()[0]  # type: ignore[index]
    return committed - before, elapsed, sum(r.accepted for r in runs)


def with_compression(url: str, address: str, creds: list[Any], t0: datetime) -> None:
    """A second day of rows streamed while the first day's chunk is compressed."""
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    t1 = max(datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10), today)
    payloads = [
        [encode(a, BATCHES + b + 1, readings(a, b, t1)) for b in range(BATCHES)]
        for a in range(AGENTS)
    ]
    done: list[tuple[int, float]] = []
    with psycopg.connect(url) as conn:
        before = conn.execute("SELECT count(*) FROM telemetry").fetchone()[0]  # type: ignore[index]
    compressor = threading.Thread(target=lambda: done.append(compress_day(url, today)))
    compressor.start()
    runs = stream(address, creds, payloads, BATCHES + 1)  # the agents' next batches
    compressor.join()
    committed, elapsed, _ = rows_per_s(runs, url, before)
    chunks, seconds = done[0] if done else (0, float("nan"))
    print(f"compressing_chunks        {chunks} ({seconds:.1f} s, day of {t0:%Y-%m-%d})")
    print(f"rows_per_s_compressing    {committed / elapsed:.0f}  ({committed} rows)")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--backend",
        choices=("plain", "timescaledb"),
        default="plain",
        help="telemetry on plain PostgreSQL (default) or a TimescaleDB hypertable "
        "(install it first: gridpilot dev timescaledb --source PATH)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    timescale = args.backend == "timescaledb"
    started = time.monotonic()
    sites = {f"bench{a}": f"bench-site-{a}" for a in range(AGENTS)}
    with stack(
        "bench-ingest",
        sites,
        database="ingest",
        databases=("rawcopy", "demoday"),
        timescaledb=timescale,
    ) as s:
        pg, headend, e2e_url, raw_url = s.pg, s.headend, s.database_url, s.pg.url("rawcopy")
        creds = [s.credentials(gateway) for gateway in sites]
        t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
        print(
            f"encoding {AGENTS} x {BATCHES} batches of {SAMPLES_PER_BATCH} samples ...", flush=True
        )
        payloads = [
            [encode(a, b + 1, readings(a, b, t0)) for b in range(BATCHES)] for a in range(AGENTS)
        ]
        mean_bytes = statistics.mean(len(p) for p in payloads[0]) / SAMPLES_PER_BATCH
        address = s.grpc_address

        postmaster = pg.pid or 0
        cpu0 = cpu_seconds(headend.pid), postgres_cpu_seconds(postmaster), time.process_time()
        wall0 = time.perf_counter()
        runs = stream(address, creds, payloads)
        cpu = [
            after - before
            for after, before in zip(
                (cpu_seconds(headend.pid), postgres_cpu_seconds(postmaster), time.process_time()),
                cpu0,
                strict=True,
            )
        ]
        wall = time.perf_counter() - wall0
        payloads.clear()  # free the encoded batches before the raw COPY
        committed, elapsed, acked = rows_per_s(runs, e2e_url)
        rss = peak_rss_mb(headend.pid)
        latencies = [x for r in runs for x in r.latencies]

        db.upgrade(raw_url)
        db.maintain_partitions(raw_url)
        raw_rows, raw_s = raw_copy(raw_url, t0)

        e2e_rate = committed / elapsed
        raw_rate = raw_rows / raw_s
        print(
            f"setup: {AGENTS} agents x {ASSETS} assets, {SAMPLES_PER_BATCH} samples/batch, "
            f"window {WINDOW} batches/agent, gRPC mutual TLS, {mean_bytes:.0f} B/sample on the wire"
        )
        print(f"end_to_end_rows           {committed}")
        print(f"end_to_end_seconds        {elapsed:.2f}")
        print(f"rows_committed_per_s      {e2e_rate:.0f}")
        print(f"rows_acked_per_s          {acked / elapsed:.0f}")
        print(f"latency_p50_ms            {pct(latencies, 50) * 1000:.0f}")
        print(f"latency_p99_ms            {pct(latencies, 99) * 1000:.0f}")
        print(f"headend_peak_rss_mb       {rss:.0f}")
        print(
            f"cpu_seconds               headend {cpu[0]:.1f}, postgres {cpu[1]:.1f}, "
            f"agents {cpu[2]:.1f} (in {wall:.1f} s, {os.cpu_count()} cores)"
        )
        print(f"raw_copy_rows             {raw_rows}")
        print(f"raw_copy_rows_per_s       {raw_rate:.0f}")
        if timescale:
            print(f"backend                   {db.telemetry_backend(e2e_url)} (hypertable)")
            with_compression(e2e_url, address, creds, t0)
            db.upgrade(pg.url("demoday"))
            rows, before, after = demo_day_sizes(pg.url("demoday"))
            print(f"demo_day_rows             {rows}")
            print(f"demo_day_bytes            {before} uncompressed, {after} compressed")
            print(f"demo_day_compression      {before / after:.1f}x")
        print(f"bench_wall_seconds        {time.monotonic() - started:.0f}")
        if committed != AGENTS * BATCHES * SAMPLES_PER_BATCH or acked != committed:
            print(
                f"WARNING: expected {AGENTS * BATCHES * SAMPLES_PER_BATCH} rows, "
                f"committed {committed}, acked {acked}"
            )
        print(f"ingest_vs_copy_ratio {e2e_rate / raw_rate:.2f}")


if __name__ == "__main__":
    main()
