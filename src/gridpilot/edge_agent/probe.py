"""``gridpilot agent check --connect``: read every device once through the
same adapters the agent uses, and show the normalized values."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from gridpilot.core.telemetry import CORE_FIELDS, Sample

from .adapters import DeviceAdapter, build_adapter
from .clock import Clock, SystemClock
from .config import AssetConfig, SiteConfig


@dataclass(frozen=True, slots=True)
class ProbeResult:
    asset_id: str
    device: str
    sample: Sample | None
    error: str | None
    seconds: float

    def rows(self) -> list[tuple[str, Any, str]]:
        """(field, value, quality) for every value the sample holds."""
        s = self.sample
        if s is None:
            return []
        marks: dict[str, str] = dict(s.details.get("quality") or {})
        out: list[tuple[str, Any, str]] = []
        for name in CORE_FIELDS:
            if getattr(s, name) is not None or name in marks:
                out.append((name, getattr(s, name), marks.get(name, "good")))
        if s.state is not None:
            out.append(("state", s.state, marks.get("state", "good")))
        for name, value in s.details.items():
            if name != "quality":
                out.append((name, value, marks.get(name, "good")))
        out += [(n, None, q) for n, q in marks.items() if n not in {r[0] for r in out}]
        return out


async def probe_site(
    cfg: SiteConfig, *, timeout_s: float = 10.0, settle_s: float = 3.0, clock: Clock | None = None
) -> list[ProbeResult]:
    """Connect to and read every asset's device once, all at the same time."""
    clock = clock or SystemClock()
    tz = ZoneInfo(cfg.site.timezone) if cfg.site.timezone else None
    return list(
        await asyncio.gather(
            *(
                _probe(a, build_adapter(a, clock=clock, tz=tz), timeout_s, settle_s)
                for a in cfg.assets
            )
        )
    )


async def _probe(
    asset: AssetConfig, adapter: DeviceAdapter, timeout_s: float, settle_s: float
) -> ProbeResult:
    started = time.monotonic()
    kind = asset.device.kind
    try:
        async with asyncio.timeout(timeout_s):
            await adapter.connect()
            sample = await adapter.read()
            # push protocols (OPC UA subscription, MQTT) may need a moment for values
            deadline = time.monotonic() + settle_s
            while not _has_values(sample) and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
                sample = await adapter.read()
        return ProbeResult(asset.id, kind, sample, None, time.monotonic() - started)
    except TimeoutError:
        error = f"no answer within {timeout_s:g} s"
    except Exception as exc:
        error = str(exc) or type(exc).__name__
    finally:
        await adapter.close()
    return ProbeResult(asset.id, kind, None, error, time.monotonic() - started)


def _has_values(s: Sample) -> bool:
    return any(getattr(s, n) is not None for n in CORE_FIELDS) or bool(set(s.details) - {"quality"})
