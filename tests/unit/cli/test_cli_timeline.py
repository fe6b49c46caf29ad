"""`gridpilot dispatch show` names the dispatch's trace: the trace UI's link
when the headend has one configured, else the trace id."""

from __future__ import annotations

from typing import Any

from gridpilot.cli.dispatch import timeline

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


def _dispatch(**extra: Any) -> dict[str, Any]:
    return {
        "id": "dsp-1",
        "asset_id": "bess-1",
        "site_id": "site-1",
        "p_kw": 25.0,
        "duration_s": 300,
        "submitted_by": "token:op",
        "start_at": "2026-12-06T06:00:00Z",
        "end_at": "2026-12-06T06:05:00Z",
        "state": "active",
        "reason": None,
        **extra,
    }


def test_show_names_the_trace_link_or_id_and_nothing_untraced() -> None:
    linked = _dispatch(trace_id=TRACE_ID, trace_url=f"http://jaeger/trace/{TRACE_ID}")
    assert f"  trace      http://jaeger/trace/{TRACE_ID}" in timeline(linked).splitlines()
    assert f"  trace      {TRACE_ID}" in timeline(_dispatch(trace_id=TRACE_ID)).splitlines()
    assert "trace" not in timeline(_dispatch(trace_id=None))
