"""/readyz tells the truth about Temporal: a real dev server stopped under a
running headend makes it 503 naming ``temporal``; started again, ready again."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from gp_testing import TestPki, own_temporal, running_headend, wait_for

pytestmark = pytest.mark.integration


async def test_readyz_is_503_naming_temporal_while_it_is_down(
    database_url: str, task_queue: str, test_pki: TestPki, tmp_path: Path
) -> None:
    async with own_temporal(tmp_path / "temporal.db") as temporal:
        async with running_headend(database_url, temporal.address, task_queue, test_pki) as h:
            r = await h.api.get("/readyz")
            assert r.status_code == 200, r.text
            assert r.json()["not_ready"] == [] and r.json()["checks"]["temporal"] == "ok"

            # Nothing is waiting on Temporal (no acks, no submits): only the
            # probe can tell it is gone.
            temporal.stop()

            async def not_ready() -> Any:
                r = await h.api.get("/readyz")
                return r if r.status_code == 503 else None

            r = await wait_for(not_ready, timeout=30)
            body = r.json()
            assert body["status"] == "degraded" and body["not_ready"] == ["temporal"], body
            assert body["checks"]["temporal"].startswith("unreachable"), body
            assert body["checks"]["database"] == "ok"

            temporal.start(timeout=60)

            async def ready() -> bool:
                return (await h.api.get("/readyz")).status_code == 200

            await wait_for(ready, timeout=60)
