"""Console first-render benchmark: each page, 100 assets, 10,000 dispatches.

    .venv/bin/python bench/console.py

No arguments; starts what it needs in a temp dir (embedded PostgreSQL, the
Temporal dev server, a headend as a child process), seeds the database
directly (5 sites x 20 assets with a latest sample each and an hour of
telemetry on one asset; 10,000 dispatches over the last week: 100 site
dispatches with 5 children each, the rest per asset; 3 transitions each),
then opens each console page in Debian's chromium (Playwright, no download),
signed in, and times from navigation to the page's first complete draw (its
"updated" stamp), 5 times per page after one warm-up. Prints the median and
the worst per page; the last line is ``console_first_render_ms_max <x>``
(the worst median; the goal is under 300 ms).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psycopg
from psycopg.types.json import Jsonb

from gridpilot.ops.embedded import EmbeddedPostgres, TemporalDevServer
from gridpilot.ops.processes import free_port
from gridpilot.ops.up_security import ensure_admin_token

SITES, ASSETS_PER_SITE = 5, 20
DISPATCHES, SITE_DISPATCHES, CHILDREN = 10_000, 100, 5
RUNS = 5
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]


def seed(url: str) -> tuple[str, str]:
    """The fleet and its history; returns a site dispatch id and an asset id."""
    now = datetime.now(UTC)
    assets = [
        (f"site-{s}", f"gw-{s}", f"site-{s}-bess-{a}")
        for s in range(SITES)
        for a in range(ASSETS_PER_SITE)
    ]
    with psycopg.connect(url, autocommit=True) as conn:
        for s in range(SITES):
            conn.execute("INSERT INTO sites (id, name) VALUES (%s, %s)", (f"site-{s}", f"Site {s}"))
            conn.execute(
                "INSERT INTO gateways (id, site_id, agent_version) VALUES (%s, %s, 'bench')",
                (f"gw-{s}", f"site-{s}"),
            )
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO assets (id, site_id, gateway_id, name, asset_type, p_min_kw,"
                " p_max_kw, capacity_kwh) VALUES (%s, %s, %s, %s, 'bess', -100, 100, 200)",
                [(a, s, g, a) for s, g, a in assets],
            )
            cur.executemany(
                "INSERT INTO telemetry_latest (asset_id, ts, p_kw, soc_pct, details)"
                " VALUES (%s, %s, %s, %s, %s)",
                [(a, now, 10.0, 50.0, Jsonb({"soh_pct": 97.0})) for _, _, a in assets],
            )
            first = assets[0][2]
            cur.executemany(
                "INSERT INTO telemetry (asset_id, ts, p_kw, soc_pct) VALUES (%s, %s, %s, %s)",
                [(first, now - timedelta(seconds=10 * i), float(i % 50), 50.0) for i in range(360)],
            )
        rows, transitions = [], []
        site_ids = []
        n = 0
        while n < DISPATCHES:
            created = now - timedelta(seconds=60 * (DISPATCHES - n))
            site = n < SITE_DISPATCHES * (CHILDREN + 1) and n % (CHILDREN + 1) == 0
            s = (n // (CHILDREN + 1)) % SITES
            if site:
                parent = f"dsp-bench-{n:05d}"
                site_ids.append(parent)
                rows.append((parent, "site", None, None, f"site-{s}", created))
                for c in range(CHILDREN):
                    asset = f"site-{s}-bess-{c}"
                    rows.append((f"{parent}.{asset}", "asset", parent, asset, f"site-{s}", created))
                n += CHILDREN + 1
            else:
                s, a = n % SITES, n % ASSETS_PER_SITE
                rows.append(
                    (
                        f"dsp-bench-{n:05d}",
                        "asset",
                        None,
                        f"site-{s}-bess-{a}",
                        f"site-{s}",
                        created,
                    )
                )
                n += 1
        with conn.cursor() as cur:
            with cur.copy(
                "COPY dispatches (id, kind, parent_id, asset_id, site_id, p_kw, duration_s,"
                " start_at, end_at, deliver_by, state, submitted_by, created_at, updated_at)"
                " FROM STDIN"
            ) as copy:
                for i, kind, parent, asset, site, created in rows:
                    end = created + timedelta(seconds=300)
                    copy.write_row(
                        (
                            i,
                            kind,
                            parent,
                            asset,
                            site,
                            50.0,
                            300,
                            created,
                            end,
                            created + timedelta(seconds=60),
                            "complete",
                            "token:bench",
                            created,
                            end,
                        )
                    )
                    for seq, (a, b) in enumerate(
                        [(None, "submitted"), ("submitted", "sent"), ("sent", "complete")], 1
                    ):
                        transitions.append((i, seq, a, b, created + timedelta(seconds=seq)))
            with cur.copy(
                "COPY dispatch_transitions (dispatch_id, seq, from_state, to_state, at, actor)"
                " FROM STDIN"
            ) as copy:
                for i, seq, a, b, at in transitions:
                    copy.write_row((i, seq, a, b, at, "bench"))
        conn.execute("ANALYZE")
    return site_ids[-1], assets[0][2]


async def measure(base: str, token: str, pages: dict[str, str]) -> dict[str, list[float]]:
    from playwright.async_api import async_playwright

    out: dict[str, list[float]] = {}
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = await (await browser.new_context(viewport={"width": 1440, "height": 900})).new_page()
        await page.goto(f"{base}/")
        await page.fill("#token", token)
        await page.click("#login-form button[type=submit]")
        drawn = page.locator("#updated").filter(has_text=re.compile("^updated "))
        await drawn.wait_for(timeout=60_000)
        for name, path in pages.items():
            times = []
            for run in range(RUNS + 1):
                t0 = time.perf_counter()
                await page.goto(base + path)
                await drawn.wait_for(timeout=60_000)
                if run:  # the first is a warm-up
                    times.append((time.perf_counter() - t0) * 1000)
            out[name] = times
        await browser.close()
    return out


def main() -> None:
    if not Path(CHROMIUM).exists():
        raise SystemExit(f"{CHROMIUM} is needed (apt-get install chromium)")
    work = Path(tempfile.mkdtemp(prefix="gridpilot-bench-console-"))
    pg = EmbeddedPostgres(work / "pg", free_port())
    temporal = TemporalDevServer(port=free_port(), ui_port=None)
    headend: subprocess.Popen[bytes] | None = None
    try:
        pg.start(timeout=60)
        temporal.start(timeout=60)
        with psycopg.connect(pg.url(), autocommit=True) as conn:
            conn.execute("CREATE DATABASE console")
        url = pg.url("console")
        token = ensure_admin_token(url, work / "admin-token")  # migrates
        t0 = time.monotonic()
        site_dispatch, asset = seed(url)
        print(
            f"seeded {DISPATCHES} dispatches, {SITES * ASSETS_PER_SITE} assets "
            f"in {time.monotonic() - t0:.1f} s",
            flush=True,
        )
        api_port = free_port()
        env = {
            **os.environ,
            "GRIDPILOT_DATABASE_URL": url,
            "GRIDPILOT_TEMPORAL_ADDRESS": temporal.address,
            "GRIDPILOT_API_PORT": str(api_port),
            "GRIDPILOT_GRPC_LISTEN": f"127.0.0.1:{free_port()}",
            "GRIDPILOT_GRPC_INSECURE": "true",
            "GRIDPILOT_HEADEND_ID": "bench",
            "GRIDPILOT_LOG_LEVEL": "warning",
        }
        log = open(work / "headend.log", "wb")
        headend = subprocess.Popen(
            [sys.executable, "-m", "gridpilot", "headend"], env=env, stdout=log, stderr=log
        )
        base = f"http://127.0.0.1:{api_port}"
        deadline = time.monotonic() + 90
        while True:
            if headend.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"headend did not start:\n{(work / 'headend.log').read_text()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/readyz").status_code == 200:
                    break
            time.sleep(0.3)
        pages = {
            "overview": "/",
            "dispatches": "/console/dispatches",
            "dispatch": f"/console/dispatches/{site_dispatch}",
            "agents": "/console/agents",
            "site": "/console/sites/site-0",
            "asset": f"/console/assets/{asset}",
        }
        results = asyncio.run(measure(base, token, pages))
        for name, times in results.items():
            print(
                f"{name:<11} median {statistics.median(times):6.0f} ms  worst {max(times):6.0f} ms"
            )
        worst = max(statistics.median(t) for t in results.values())
        print(f"console_first_render_ms_max {worst:.0f}")
    finally:
        if headend is not None:
            headend.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                headend.wait(15)
        temporal.stop()
        pg.stop()


if __name__ == "__main__":
    main()
