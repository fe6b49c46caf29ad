"""Replay the committed histories of real dispatch runs against today's workflow code.

A workflow change that would break dispatches already running (a new activity,
timer or signal in a different place without ``workflow.patched``) fails here.

The histories are recorded by the integration tests themselves (``record_histories``
in conftest.py). To refresh them after an intended, patched change:

    GRIDPILOT_RECORD_HISTORIES=1 .venv/bin/pytest tests/integration/workflows

Keep the old files too when a change is patched: running workflows still have them.
A patch that changes every history (``db-local-activities``) keeps the set from
before it in a subdirectory (``histories/pre_db_local/``), replayed as well.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio import workflow
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer
from temporalio.workflow import NondeterminismError

from gridpilot.workflows.dispatch import DispatchWorkflow
from gridpilot.workflows.models import DispatchInput, DispatchResult
from gridpilot.workflows.site import SiteDispatchWorkflow

with workflow.unsafe.imports_passed_through():
    # This module holds a workflow (below): the sandbox re-imports it per run.
    from gridpilot.ops import temporal

HISTORIES_DIR = Path(__file__).with_name("histories")
# Every branch a running dispatch can be in; each must have a committed history.
REQUIRED = (
    "complete",
    "ended_by_headend",
    "expired_agent_offline",
    "expired_deadline_passed",
    "failed_rejected",
    "failed_unknown_asset",
    "cancelled_active",
    "cancelled_before_delivery",
    "late_ack_while_ending",
    "delivered_after_offline",
    "redelivered_after_dead_headend",
    "site_fanout",
    "site_fanout_child",
    "site_cancelled",
    # lifecycle rails (patches "claim-asset", "scheduled-start", "site-respread")
    "superseded",
    "superseding",
    "priority_conflict",
    "scheduled_start",
    "site_respread",
    # patch "supersede-at-handover": a sent dispatch ends when the agent hands over
    # (superseded.json above is the pre-patch path: ended at the new one's claim)
    "superseded_at_handover",
    "superseded_never_taken_over",
    # supersede order (core.supersede): an older one loses at its claim; patch
    # "cancel-before-delivery": one superseded after its claim is refused at delivery
    "superseded_at_claim",
    "superseded_at_delivery",
    # patch "outcome-status": the execution ends failed / cancelled as the dispatch did
    "outcome_failed",
    "outcome_expired",
    "outcome_cancelled",
    # patch "site-outcome": the site's end from what its children delivered
    "outcome_site_failed",
    "outcome_site_superseded",
    # patch "children-together": an allocation's children start in one workflow task
    "site_children_together",
    "site_respread_together",
)
# Histories from before a patch that changed all of them, still replayed:
# dispatches started then may still be running. "db-local-activities": the
# database calls were scheduled activities.
# "db-writes-scheduled": every database call was local (db_local_all/).
# "lean-records": the row and its first transition were two writes, each
# transition its own write, and a child told its parent every state (pre_lean/).
EARLIER = ("pre_db_local", "db_local_all", "pre_lean")
NAMES = sorted(
    set(REQUIRED)
    | {p.stem for p in HISTORIES_DIR.glob("*.json")}
    | {f"{d}/{p.stem}" for d in EARLIER for p in (HISTORIES_DIR / d).glob("*.json")}
)


def _history(name: str) -> WorkflowHistory:
    path = HISTORIES_DIR / f"{name}.json"
    if not path.exists():
        pytest.fail(
            f"missing history {path}: record it with GRIDPILOT_RECORD_HISTORIES=1 "
            "pytest tests/integration/workflows"
        )
    return WorkflowHistory.from_json(f"replay-{name}", path.read_text())


def _replayer(*workflows: type, tracing: bool = False) -> Replayer:
    # The same workflows, data converter, sandbox and interceptors as the headend's worker.
    return Replayer(
        workflows=list(workflows),
        data_converter=pydantic_data_converter,
        workflow_runner=temporal.workflow_runner(),
        interceptors=temporal.interceptors(tracing),
    )


@pytest.mark.parametrize("tracing", [False, True], ids=["untraced", "traced"])
@pytest.mark.parametrize("name", NAMES)
async def test_recorded_dispatch_history_replays_on_current_workflow_code(name: str, tracing: bool):
    history = _history(name)
    assert len(history.events) > 5, f"{name}.json holds no real run"

    replayer = _replayer(DispatchWorkflow, SiteDispatchWorkflow, tracing=tracing)
    result = await replayer.replay_workflow(history)

    assert result.replay_failure is None


@workflow.defn(name="DispatchWorkflow")
class _DispatchWorkflowWithUnpatchedTimer(DispatchWorkflow):
    """What a careless change looks like: a new timer before the first activity."""

    @workflow.run
    async def run(self, inp: DispatchInput) -> DispatchResult:
        await workflow.sleep(timedelta(seconds=1))
        return await super().run(inp)


async def test_replay_rejects_a_workflow_change_that_breaks_running_dispatches():
    """The replay test has teeth: the same history fails on an incompatible change."""
    history = _history("complete")

    with pytest.raises(NondeterminismError):
        await _replayer(_DispatchWorkflowWithUnpatchedTimer).replay_workflow(history)


def test_every_required_history_is_committed():
    """No silent pass on an empty or half-recorded directory."""
    missing = [n for n in REQUIRED if not (HISTORIES_DIR / f"{n}.json").exists()]
    assert missing == [], f"record them with GRIDPILOT_RECORD_HISTORIES=1: {missing}"


def test_recorded_histories_run_only_the_path_free_database_calls_as_local_activities():
    """Patch "db-writes-scheduled" (pre_lean/): the dispatch row is a local
    activity (a marker), each transition a scheduled activity (run only once
    its decision is committed). The sets from before it still replay: all
    scheduled (pre_db_local), all local (db_local_all)."""
    now = _history("pre_lean/complete")  # "lean-records" made the claim local too
    all_local = _history("db_local_all/complete")
    before = _history("pre_db_local/complete")

    def scheduled(history: WorkflowHistory) -> list[str]:
        return [
            e.activity_task_scheduled_event_attributes.activity_type.name
            for e in history.events
            if e.HasField("activity_task_scheduled_event_attributes")
        ]

    def markers(history: WorkflowHistory) -> list[str]:
        return [
            e.marker_recorded_event_attributes.marker_name
            for e in history.events
            if e.HasField("marker_recorded_event_attributes")
        ]

    assert "record_dispatch" in scheduled(before)
    assert "record_transition" in scheduled(before)
    assert not [a for a in scheduled(all_local) if a.startswith(("record_", "claim_"))]
    assert "record_transition" in scheduled(now) and "claim_asset" in scheduled(now)
    assert "record_dispatch" not in scheduled(now)
    assert "core_local_activity" in markers(now)


def _activities(history: WorkflowHistory) -> list[str]:
    """The activities a run called, scheduled or local, in order."""
    names = []
    for e in history.events:
        if e.HasField("activity_task_scheduled_event_attributes"):
            names.append(e.activity_task_scheduled_event_attributes.activity_type.name)
        elif e.HasField("marker_recorded_event_attributes"):
            data = e.marker_recorded_event_attributes.details.get("data")
            if data is not None and b'"activity_type"' in data.payloads[0].data:
                names.append(json.loads(data.payloads[0].data)["activity_type"])
    return names


def _scheduled(history: WorkflowHistory) -> list[str]:
    return [
        e.activity_task_scheduled_event_attributes.activity_type.name
        for e in history.events
        if e.HasField("activity_task_scheduled_event_attributes")
    ]


def _signals_to_parent(history: WorkflowHistory) -> int:
    return sum(
        1
        for e in history.events
        if e.HasField("signal_external_workflow_execution_initiated_event_attributes")
    )


def test_recorded_histories_make_fewer_round_trips_since_lean_records():
    """Patch "lean-records" is live in today's histories: the row and its
    submitted transition are one local activity, so is the claim, the delivery
    writes SENT, acks in hand are written together, and a child tells its
    parent only acked, active and its end. The set from before still replays
    (pre_lean/)."""
    now, before = _history("complete"), _history("pre_lean/complete")
    # the row with its first transition, the claim and the route: local, one task
    assert _activities(now)[:3] == ["record_submission", "claim_asset", "resolve_route"]
    assert "claim_asset" not in _scheduled(now)
    assert _activities(before)[:2] == ["record_dispatch", "record_transition"]
    # the delivery writes SENT: acked, active and complete are left
    assert _scheduled(now) == ["deliver_setpoint_sent", *["record_transition"] * 3]
    assert _scheduled(before).count("record_transition") == 5
    assert len(now.events) < len(before.events) * 0.75
    # acks in hand together (here: those that came while it resolved the route
    # again) are written by one activity
    assert "record_transitions" in _activities(_history("delivered_after_offline"))
    assert "record_transitions" not in _activities(_history("pre_lean/delivered_after_offline"))

    child, child_before = _history("site_fanout_child"), _history("pre_lean/site_fanout_child")
    told = ['"acked"', '"active"', '"complete"']
    assert _states(child) == _states(child_before) == ['"submitted"', '"sent"', *told]
    assert _signals_to_parent(child_before) == 5
    assert _signals_to_parent(child) == len(told)


def _states(history: WorkflowHistory) -> list[str]:
    """The DispatchState search attribute's values, in order."""
    out = []
    for e in history.events:
        if e.HasField("upsert_workflow_search_attributes_event_attributes"):
            fields = e.upsert_workflow_search_attributes_event_attributes.search_attributes
            if "DispatchState" in fields.indexed_fields:
                out.append(fields.indexed_fields["DispatchState"].data.decode())
    return out
