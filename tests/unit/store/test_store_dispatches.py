"""The dispatch store's pure parts: the row, the insert's conflict clause, the
evidence of an active window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.dialects import postgresql

from gridpilot.core.lifecycle import TERMINAL, TERMINAL_VALUES
from gridpilot.store.dispatches import dispatch_row, insert_dispatch
from gridpilot.store.reads import active_window, evidence
from gridpilot.workflows.models import DispatchInput

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _inp(**over: object) -> DispatchInput:
    values: dict[str, object] = {
        "dispatch_id": "dsp-1",
        "kind": "asset",
        "asset_id": "bess-1",
        "p_kw": 10.0,
        "duration_s": 60,
        "start_at": T0,
        "end_at": T0 + timedelta(seconds=60),
        "deliver_by": T0 + timedelta(seconds=30),
        **over,
    }
    return DispatchInput.model_validate(values)


def test_dispatch_row_carries_the_input_and_no_submit_seq_as_null() -> None:
    row = dispatch_row(_inp(priority=3, source="local", warnings=["w"]), "submitted")
    assert row["id"] == "dsp-1" and row["state"] == "submitted"
    assert (row["priority"], row["source"], row["warnings"]) == (3, "local", ["w"])
    assert row["submit_seq"] is None  # 0: submitted before the order was recorded
    assert dispatch_row(_inp(submit_seq=7), "submitted")["submit_seq"] == 7


def test_insert_dispatch_does_nothing_on_any_conflict_without_a_target() -> None:
    # No conflict target: a second writer may collide on the id or on the
    # caller's Idempotency-Key, and either must be a no-op (the CI fix).
    sql = str(insert_dispatch(_inp()).compile(dialect=postgresql.dialect()))
    assert sql.rstrip().endswith("ON CONFLICT DO NOTHING")
    assert "ON CONFLICT (" not in sql


def test_terminal_values_are_the_terminal_states_in_declaration_order() -> None:
    assert TERMINAL_VALUES == ("complete", "expired", "failed", "cancelled")
    assert set(TERMINAL_VALUES) == {s.value for s in TERMINAL}


def _tr(to: str, at_s: float) -> dict[str, object]:
    return {"to_state": to, "at": T0 + timedelta(seconds=at_s)}


def test_active_window_runs_from_active_to_the_end_state_or_end_at() -> None:
    row = {"kind": "asset", "end_at": T0 + timedelta(seconds=60)}
    now = T0 + timedelta(hours=1)
    assert active_window(row, [_tr("submitted", 0), _tr("sent", 1)], now) is None
    assert active_window({**row, "kind": "site"}, [_tr("active", 2)], now) is None
    ended = [_tr("active", 2), _tr("cancelled", 20)]
    assert active_window(row, ended, now) == (T0 + timedelta(seconds=2), T0 + timedelta(seconds=20))
    # Still active: now, but never past end_at.
    assert active_window(row, [_tr("active", 2)], now) == (
        T0 + timedelta(seconds=2),
        T0 + timedelta(seconds=60),
    )


def test_evidence_measures_against_the_applied_setpoint_within_tolerance() -> None:
    row = {"p_kw": 10.0, "applied_p_kw": 8.0}
    window = (T0, T0 + timedelta(seconds=10))
    samples = [(T0 + timedelta(seconds=s), p) for s, p in ((1, 0.0), (3, 7.7), (5, 8.2))]
    got = evidence(row, window, samples)
    assert got["setpoint_kw"] == 8.0 and got["tolerance_kw"] == 0.5
    assert got["samples"] == 3 and got["time_to_target_s"] == 3.0
    assert got["max_abs_deviation_kw"] == 8.0
    assert abs(got["mean_p_kw"] - 15.9 / 3) < 1e-9


def test_evidence_without_samples_says_none_measured() -> None:
    got = evidence({"p_kw": -200.0, "applied_p_kw": None}, (T0, T0), [])
    assert got["tolerance_kw"] == 4.0  # 2 % of the setpoint
    assert got["samples"] == 0 and got["mean_p_kw"] is None and got["time_to_target_s"] is None
