"""The activities keep their type names (recorded histories replay by them)
and hand each call to the dispatch store."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from temporalio import activity

from gridpilot.activities.delivery import DeliveryActivities
from gridpilot.activities.outcome import request_own_cancel
from gridpilot.activities.records import RecordActivities
from gridpilot.workflows.models import ClaimRequest, ClaimResult, Route, SplitInputs

NAMES = {
    RecordActivities.record_dispatch: "record_dispatch",
    RecordActivities.record_submission: "record_submission",
    RecordActivities.record_transition: "record_transition",
    RecordActivities.record_transitions: "record_transitions",
    RecordActivities.record_allocation: "record_allocation",
    RecordActivities.record_late_ack: "record_late_ack",
    RecordActivities.resolve_route: "resolve_route",
    RecordActivities.claim_asset: "claim_asset",
    RecordActivities.load_split_inputs: "load_split_inputs",
    DeliveryActivities.deliver_setpoint: "deliver_setpoint",
    DeliveryActivities.deliver_setpoint_sent: "deliver_setpoint_sent",
    DeliveryActivities.deliver_release: "deliver_release",
    request_own_cancel: "request_own_cancel",
}


@pytest.mark.parametrize(("fn", "name"), NAMES.items(), ids=NAMES.values())
def test_activity_type_names_do_not_change(fn: Any, name: str) -> None:
    assert activity._Definition.must_from_callable(fn).name == name


class FakeStore:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    async def resolve_route(self, asset_id: str) -> Route:
        self.calls.append(("resolve_route", asset_id))
        return Route(asset_id=asset_id, known=True, gateway_id="gw-1", task_queue="q")

    async def claim(self, req: ClaimRequest) -> ClaimResult:
        self.calls.append(("claim", req.dispatch_id))
        return ClaimResult(superseded=["dsp-old"])

    async def split_inputs(self, site_id: str, now: datetime) -> SplitInputs:
        self.calls.append(("split_inputs", (site_id, now.tzinfo)))
        return SplitInputs(site_id=site_id, assets=[])


async def test_record_activities_answer_with_what_the_store_says() -> None:
    store = FakeStore()
    acts = RecordActivities(store)  # type: ignore[arg-type]
    route = await acts.resolve_route("bess-1")
    assert route.task_queue == "q"
    now = datetime.now(UTC)
    req = ClaimRequest(
        dispatch_id="dsp-new", asset_id="bess-1", priority=0, start_at=now, end_at=now
    )
    assert (await acts.claim_asset(req)).superseded == ["dsp-old"]
    assert (await acts.load_split_inputs("site-1")).site_id == "site-1"
    assert store.calls == [
        ("resolve_route", "bess-1"),
        ("claim", "dsp-new"),
        ("split_inputs", ("site-1", UTC)),  # asked at an aware "now"
    ]
