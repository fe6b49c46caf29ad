"""Dispatch benchmark: full dispatch lifecycles/s vs a minimal Temporal workflow.

    .venv/bin/python bench/dispatch.py

No arguments; starts what it needs in a temp dir (embedded PostgreSQL, the
Temporal dev server, a headend child process with mutual TLS, and scripted
agents in this process that accept and apply every setpoint at once and
complete it at its lease's end), then:

1. TOTAL per-asset dispatches of DURATION_S seconds over REST, IN_FLIGHT at a
   time, each to an asset with no live dispatch (no supersede): full
   lifecycles/s (submit -> complete), how many did not end complete, the
   latency from the REST submit to the Setpoint on the agent's stream, from
   the agent's ACCEPTED to the recorded ``acked``, and from submit to the
   recorded ``active``; CPU seconds of the headend and the Temporal server
   per lifecycle.
2. The baseline on the same Temporal server: a workflow with one activity and
   one signal (bench/_minimal.py), TOTAL of them IN_FLIGHT at a time, on a
   sandboxed worker in this process: workflows/s.

The lease (DURATION_S) is part of every lifecycle, so the dispatch rate can
never pass IN_FLIGHT / DURATION_S ({ceiling}/s here); the baseline has no
lease. The last line is ``dispatch_vs_workflow_ratio <x>`` (lifecycles/s over
baseline workflows/s); the goal is >= 0.7 with none expired. Figures vary by
+-20 % from run to run on a shared 2-core box.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import psycopg
from _minimal import TASK_QUEUE, MinimalWorkflow, touch
from _stack import ScriptedAgent, Stack, cpu_seconds, pct, stack
from temporalio.client import Client
from temporalio.worker import Worker

GATEWAYS = 4
ASSETS = 25  # per gateway: 100 assets
TOTAL = 240
IN_FLIGHT = 32
DURATION_S = 2
SUBMITTERS = 8  # REST clients submitting side by side
FINAL = ("complete", "expired", "failed", "cancelled")

__doc__ = (__doc__ or "").format(ceiling=IN_FLIGHT // DURATION_S)


def agents() -> list[ScriptedAgent]:
    return [
        ScriptedAgent(
            f"benchgw{g}", f"bench-site-{g}", [f"bench{g}-bess-{a}" for a in range(ASSETS)]
        )
        for g in range(GATEWAYS)
    ]


async def lifecycles(s: Stack, fleet: list[ScriptedAgent]) -> dict[str, Any]:
    ready = [asyncio.Event() for _ in fleet]
    streams = [
        asyncio.create_task(a.run(s.grpc_address, s.credentials(a.gateway_id), r))
        for a, r in zip(fleet, ready, strict=True)
    ]
    await asyncio.wait_for(asyncio.gather(*(r.wait() for r in ready)), 60)
    free: asyncio.Queue[str] = asyncio.Queue()
    for a in fleet:
        for asset in a.asset_ids:
            free.put_nowait(asset)
    slots = asyncio.Semaphore(IN_FLIGHT)
    submitted: dict[str, float] = {}
    pending: dict[str, str] = {}  # dispatch id -> asset
    ended: dict[str, str] = {}
    last_end = 0.0
    all_submitted = asyncio.Event()

    async def watch(db: psycopg.AsyncConnection[Any]) -> None:
        nonlocal last_end
        while not (all_submitted.is_set() and not pending):
            await asyncio.sleep(0.1)
            if not pending:
                continue
            rows = await (
                await db.execute(
                    "SELECT id, state FROM dispatches WHERE id = ANY(%s) AND state = ANY(%s)",
                    (list(pending), list(FINAL)),
                )
            ).fetchall()
            for dispatch_id, state in rows:
                ended[dispatch_id] = state
                free.put_nowait(pending.pop(dispatch_id))
                slots.release()
                last_end = time.perf_counter()

    async with (
        s.client() as api,
        await psycopg.AsyncConnection.connect(s.database_url, autocommit=True) as db,
    ):
        watcher = asyncio.create_task(watch(db))
        first = time.perf_counter()
        to_submit = iter(range(TOTAL))

        async def submitter() -> None:
            # Several at once: one client submitting in turn would cap the
            # rate at 1 / (REST latency), not at what the headend can do.
            for _ in to_submit:
                await slots.acquire()
                asset = await free.get()
                at = time.perf_counter()
                r = await api.post(
                    "/api/v1/dispatches",
                    json={"asset_id": asset, "p_kw": 50.0, "duration_s": DURATION_S},
                )
                if r.status_code != 201:
                    raise SystemExit(f"submit refused: {r.status_code} {r.text}")
                dispatch_id = r.json()["id"]
                submitted[dispatch_id] = at
                pending[dispatch_id] = asset

        await asyncio.gather(*(submitter() for _ in range(SUBMITTERS)))
        all_submitted.set()
        await asyncio.wait_for(watcher, 120 + TOTAL * DURATION_S)
        wall = last_end - first
        times = await (
            await db.execute(
                "SELECT t.dispatch_id, t.to_state, t.at, d.created_at FROM dispatch_transitions t "
                "JOIN dispatches d ON d.id = t.dispatch_id WHERE t.dispatch_id = ANY(%s)",
                (list(submitted),),
            )
        ).fetchall()
        endings = await (
            await db.execute(
                "SELECT state, coalesce(reason, '-'), count(*) FROM dispatches "
                "WHERE id = ANY(%s) AND state <> 'complete' GROUP BY 1, 2 ORDER BY 3 DESC",
                (list(submitted),),
            )
        ).fetchall()
    for task in streams:
        task.cancel()
    received = {k: v for a in fleet for k, v in a.received.items()}
    accepted = {k: v for a in fleet for k, v in a.accepted_sent.items()}
    to_setpoint = [received[d] - at for d, at in submitted.items() if d in received]
    to_acked = [
        (at - accepted[d]).total_seconds()
        for d, st, at, _ in times
        if st == "acked" and d in accepted
    ]
    to_active = [(at - created).total_seconds() for _, st, at, created in times if st == "active"]
    return {
        "rate": len(ended) / wall,
        "wall": wall,
        "not_complete": sum(1 for st in ended.values() if st != "complete"),
        "endings": ", ".join(f"{st}/{reason} {n}" for st, reason, n in endings),
        "to_setpoint": to_setpoint,
        "to_acked": to_acked,
        "to_active": to_active,
    }


async def baseline(s: Stack) -> float:
    client = await Client.connect(s.temporal.address)
    async with Worker(
        client, task_queue=TASK_QUEUE, workflows=[MinimalWorkflow], activities=[touch]
    ):
        slots = asyncio.Semaphore(IN_FLIGHT)

        async def one(i: int) -> None:
            async with slots:
                handle = await client.start_workflow(
                    MinimalWorkflow.run,
                    f"min-{i}",
                    id=f"bench-minimal-{i}",
                    task_queue=TASK_QUEUE,
                    execution_timeout=timedelta(minutes=5),
                )
                await handle.signal(MinimalWorkflow.ack)
                await handle.result()

        start = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(TOTAL)))
        return TOTAL / (time.perf_counter() - start)


def main() -> None:
    global TOTAL, IN_FLIGHT
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--total", type=int, default=TOTAL, help="dispatches (and baseline runs)")
    parser.add_argument("--in-flight", type=int, default=IN_FLIGHT, help="at a time, <= 100")
    args = parser.parse_args()
    TOTAL, IN_FLIGHT = args.total, min(args.in_flight, GATEWAYS * ASSETS)
    started = time.monotonic()
    fleet = agents()
    with stack("bench-dispatch", {a.gateway_id: a.site_id for a in fleet}) as s:
        headend_pid, temporal_pid = s.headend.pid, s.temporal.pid or 0
        cpu0 = cpu_seconds(headend_pid), cpu_seconds(temporal_pid)
        print(f"dispatching {TOTAL} x {DURATION_S} s, {IN_FLIGHT} in flight ...", flush=True)
        got = asyncio.run(lifecycles(s, fleet))
        cpu = [cpu_seconds(headend_pid) - cpu0[0], cpu_seconds(temporal_pid) - cpu0[1]]
        print("baseline: minimal workflow (1 activity + 1 signal) ...", flush=True)
        base = asyncio.run(baseline(s))
    ms = 1000
    print(
        f"setup: {GATEWAYS} agents x {ASSETS} assets, {TOTAL} per-asset dispatches of "
        f"{DURATION_S} s, {IN_FLIGHT} in flight (lease ceiling {IN_FLIGHT / DURATION_S:.0f}/s)"
    )
    print(f"dispatch_lifecycles_per_s   {got['rate']:.2f} (in {got['wall']:.1f} s)")
    endings = f" ({got['endings']})" if got["endings"] else ""
    print(f"dispatch_not_complete       {got['not_complete']} of {TOTAL}{endings}")
    for name in ("to_setpoint", "to_acked", "to_active"):
        values = got[name]
        print(
            f"{'submit_' if name != 'to_acked' else 'accepted_'}{name}_ms".ljust(28)
            + f"p50 {pct(values, 50) * ms:.0f}, p99 {pct(values, 99) * ms:.0f} (n={len(values)})"
        )
    print(
        f"cpu_ms_per_lifecycle        headend {cpu[0] / TOTAL * ms:.0f}, "
        f"temporal {cpu[1] / TOTAL * ms:.0f}"
    )
    print(f"baseline_workflows_per_s    {base:.2f}")
    print(f"bench_wall_seconds          {time.monotonic() - started:.0f}")
    print(f"dispatch_vs_workflow_ratio {got['rate'] / base:.2f}")


if __name__ == "__main__":
    main()
