"""Fan-out benchmark: one site dispatch split over a 100-asset site.

    .venv/bin/python bench/fanout.py

No arguments; starts what it needs in a temp dir (embedded PostgreSQL, the
Temporal dev server, a headend child process with mutual TLS, and one
scripted agent in this process speaking for a site of ASSETS batteries that
accepts and applies every setpoint at once), then ROUNDS times: a site
dispatch over REST, and the time from the submit to the first child's
Setpoint on the agent's stream, to the last one, and to all children
recorded ``active``; the dispatch is then cancelled and the next round waits
for it to end. The goal is all active in < 10 s and the first child < 1 s.

The last line is ``fanout_all_active_s <x>`` (the median over the rounds).
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx
import psycopg
from _stack import ScriptedAgent, Stack, stack

ASSETS = 100
ROUNDS = 3
DURATION_S = 120
DEADLINE_S = 90
FINAL = ("complete", "expired", "failed", "cancelled")


async def ended(api: httpx.AsyncClient, dispatch_id: str) -> None:
    for _ in range(DEADLINE_S * 5):
        if (await api.get(f"/api/v1/dispatches/{dispatch_id}")).json()["state"] in FINAL:
            return
        await asyncio.sleep(0.2)
    raise SystemExit(f"{dispatch_id} did not end within {DEADLINE_S} s of its cancel")


async def rounds(s: Stack, agent: ScriptedAgent) -> list[dict[str, float]]:
    ready = asyncio.Event()
    stream = asyncio.create_task(agent.run(s.grpc_address, s.credentials(agent.gateway_id), ready))
    await asyncio.wait_for(ready.wait(), 60)
    out = []
    async with (
        s.client() as api,
        await psycopg.AsyncConnection.connect(s.database_url, autocommit=True) as db,
    ):
        for _ in range(ROUNDS):
            seen: list[float] = []
            agent.on_setpoint = lambda sp, at, seen=seen: seen.append(at)  # type: ignore[misc]
            start = time.perf_counter()
            r = await api.post(
                "/api/v1/dispatches",
                json={"site_id": agent.site_id, "p_kw": 5.0 * ASSETS, "duration_s": DURATION_S},
            )
            if r.status_code != 201:
                raise SystemExit(f"submit refused: {r.status_code} {r.text}")
            parent = r.json()["id"]
            active = 0
            while time.perf_counter() - start < DEADLINE_S:
                row: Any = await (
                    await db.execute(
                        "SELECT count(*) FILTER (WHERE state = 'active'), count(*) "
                        "FROM dispatches WHERE parent_id = %s",
                        (parent,),
                    )
                ).fetchone()
                active, children = row
                if children and active == children == ASSETS:
                    break
                await asyncio.sleep(0.05)
            all_active = time.perf_counter() - start
            if active < ASSETS:
                raise SystemExit(f"only {active} of {ASSETS} children active after {DEADLINE_S} s")
            await api.post(f"/api/v1/dispatches/{parent}/cancel", json={"detail": "bench round"})
            await ended(api, parent)
            out.append(
                {
                    "first": min(seen) - start,
                    "last": max(seen) - start,
                    "all_active": all_active,
                }
            )
            print(
                f"round {len(out)}: first setpoint {out[-1]['first']:.2f} s, "
                f"last {out[-1]['last']:.2f} s, all {ASSETS} active {all_active:.2f} s",
                flush=True,
            )
    stream.cancel()
    return out


def main() -> None:
    started = time.monotonic()
    agent = ScriptedAgent("benchgw0", "bench-site-0", [f"bench-bess-{a}" for a in range(ASSETS)])
    with stack("bench-fanout", {agent.gateway_id: agent.site_id}) as s:
        got = asyncio.run(rounds(s, agent))
    median = {k: statistics.median(r[k] for r in got) for k in ("first", "last", "all_active")}
    print(f"setup: one agent, a site of {ASSETS} batteries, {ROUNDS} site dispatches")
    print(f"fanout_first_setpoint_s     {median['first']:.2f} (median)")
    print(f"fanout_last_setpoint_s      {median['last']:.2f} (median)")
    print(f"bench_wall_seconds          {time.monotonic() - started:.0f}")
    print(f"fanout_all_active_s {median['all_active']:.2f}")


if __name__ == "__main__":
    main()
