"""SiteDispatchWorkflow: a site target split over its assets, one DispatchWorkflow child each."""

from __future__ import annotations

import pytest
from gp_testing import mixed_site_assets
from temporalio.client import WorkflowExecutionStatus

from gridpilot.core.assets import Asset, AssetType, PowerLimits
from gridpilot.core.lifecycle import DispatchState, ReasonCode
from gridpilot.core.split import POLICY, Available, split
from gridpilot.workflows.dispatch import DispatchWorkflow
from gridpilot.workflows.models import CancelRequest, SplitInputs

pytestmark = pytest.mark.integration

S = DispatchState
SITE = "site-1"
TARGET_KW = 150.0
# bess-2's fresh telemetry says it can only discharge 20 kW: it is clamped and
# what it cannot take is re-spread over the others.
SITE_ASSETS = mixed_site_assets()
ASSET_IDS = [a.asset_id for a in SITE_ASSETS]


def expected_split(target_kw: float):
    assets = [
        Asset(a.asset_id, SITE, AssetType(a.asset_type), PowerLimits(a.p_min_kw, a.p_max_kw))
        for a in SITE_ASSETS
    ]
    available = {
        a.asset_id: Available(a.available_charge_kw, a.available_discharge_kw) for a in SITE_ASSETS
    }
    return split(target_kw, assets, available)


def _site(harness) -> None:
    b = harness.backend
    b.split_inputs[SITE] = SplitInputs(site_id=SITE, assets=SITE_ASSETS)
    for asset_id in ASSET_IDS:
        b.online(asset_id)


async def _start_site(harness, duration_s: int = 30):
    inp = await harness.dispatch_input(
        asset_id=None, site_id=SITE, p_kw=TARGET_KW, duration_s=duration_s
    )
    return inp, await harness.start(inp)


def child_id(parent: str, asset_id: str) -> str:
    return f"{parent}.{asset_id}"


async def test_site_dispatch_splits_into_children_and_follows_them_to_complete(
    dev, record_histories
):
    b = dev.backend
    _site(dev)
    inp, parent = await _start_site(dev)
    children = [child_id(parent.id, a) for a in ASSET_IDS]
    for child in children:
        await b.wait_state(child, S.SENT)
    await b.wait_state(parent.id, S.SENT)

    # the split is core.split's, recorded with its policy before any child starts
    want = expected_split(TARGET_KW)
    assert want.unallocated_kw == 0.0
    assert sorted(a.clamped for a in want.allocations) == [False, False, True]
    (allocation,) = b.allocations
    assert (allocation.policy, allocation.version) == (POLICY, 1)
    assert POLICY == "capacity_weighted_clamped/v1"
    assert allocation.dispatch_id == parent.id
    assert (allocation.target_kw, allocation.allocated_kw) == (TARGET_KW, want.allocated_kw)
    assert [(x.asset_id, x.p_kw, x.clamped, x.child_dispatch_id) for x in allocation.lines] == [
        (a.asset_id, a.p_kw, a.clamped, child_id(parent.id, a.asset_id)) for a in want.allocations
    ]
    first_child_call = min(
        i
        for i, c in enumerate(b.calls)
        if c.name == "record_submission" and c.arg.dispatch.parent_id
    )
    allocation_call = next(i for i, c in enumerate(b.calls) if c.name == "record_allocation")
    assert allocation_call < first_child_call
    # each child is a DispatchWorkflow with id <parent>.<asset_id> and its share
    shares = {a.asset_id: a.p_kw for a in want.allocations}
    delivered = {c.arg.dispatch_id: c.arg for c in b.called("deliver_setpoint")}
    assert sorted(delivered) == sorted(children)
    for asset_id in ASSET_IDS:
        cid = child_id(parent.id, asset_id)
        assert delivered[cid].asset_id == asset_id
        assert delivered[cid].p_kw == shares[asset_id]
        child_inp = b.dispatches[cid]
        assert (child_inp.kind, child_inp.parent_id, child_inp.p_kw) == (
            "asset",
            parent.id,
            shares[asset_id],
        )
        desc = await dev.client.get_workflow_handle(cid).describe()
        assert desc.workflow_type == "DispatchWorkflow"
        assert desc.parent_id == parent.id

    # the parent follows its children: acked when all are, active when any is
    await b.ack(children[0], "accepted", asset_id=ASSET_IDS[0])
    await b.ack(children[1], "accepted", asset_id=ASSET_IDS[1])
    await b.wait_state(children[1], S.ACKED)
    assert b.states(parent.id) == [S.SUBMITTED, S.SENT]
    await b.ack(children[2], "accepted", asset_id=ASSET_IDS[2])
    await b.wait_state(parent.id, S.ACKED)
    await b.ack(children[0], "applied", asset_id=ASSET_IDS[0], applied_p_kw=shares["bess-1"])
    await b.wait_state(parent.id, S.ACTIVE)
    for cid, asset_id in zip(children[1:], ASSET_IDS[1:], strict=True):
        await b.ack(cid, "applied", asset_id=asset_id, applied_p_kw=shares[asset_id])
    assert b.states(parent.id) == [S.SUBMITTED, S.SENT, S.ACKED, S.ACTIVE]
    for cid, asset_id in zip(children, ASSET_IDS, strict=True):
        await b.ack(cid, "completed", asset_id=asset_id, applied_p_kw=shares[asset_id])

    result = await dev.result(parent)

    assert result.state is S.COMPLETE
    assert result.requested_kw == TARGET_KW
    assert result.delivered_kw == pytest.approx(sum(shares.values()))
    recorded = b.transitions[parent.id]
    assert [r.to_state for r in recorded] == [S.SUBMITTED, S.SENT, S.ACKED, S.ACTIVE, S.COMPLETE]
    assert [r.seq for r in recorded] == [1, 2, 3, 4, 5]
    for cid in children:
        assert b.states(cid) == [S.SUBMITTED, S.SENT, S.ACKED, S.ACTIVE, S.COMPLETE]
        child = dev.client.get_workflow_handle_for(DispatchWorkflow.run, cid)
        assert (await child.result()).state is S.COMPLETE
    # site_fanout.json is the path before patch "children-together" (one child a task)
    await record_histories(
        site_children_together=parent,
        site_fanout_child=dev.client.get_workflow_handle(children[0]),
    )


async def test_cancelling_site_dispatch_cancels_every_child(dev, record_histories):
    b = dev.backend
    _site(dev)
    b.agent_replies = ["accepted", "applied"]
    inp, parent = await _start_site(dev)
    await b.wait_state(parent.id, S.ACTIVE)
    for asset_id in ASSET_IDS:
        await b.wait_state(child_id(parent.id, asset_id), S.ACTIVE)

    await parent.signal(DispatchWorkflow.cancel, CancelRequest(actor="op-bob", detail="storm"))
    result = await dev.result(parent)

    assert result.state is S.CANCELLED
    assert result.reason is ReasonCode.CANCELLED_BY_OPERATOR
    # they ran at their shares until the cancel (site-outcome: what was delivered, not 0)
    assert result.delivered_kw == TARGET_KW
    assert 0 < result.delivered_kwh < result.requested_kwh
    last = b.transitions[parent.id][-1]
    assert (last.to_state, last.actor) == (S.CANCELLED, "op-bob")
    for asset_id in ASSET_IDS:
        cid = child_id(parent.id, asset_id)
        assert b.states(cid)[-1] is S.CANCELLED
        assert b.transitions[cid][-1].actor == "op-bob"
    released = {c.arg.asset_id: c.arg.reason for c in b.called("deliver_release")}
    assert released == {a: ReasonCode.CANCELLED_BY_OPERATOR for a in ASSET_IDS}
    await record_histories(site_cancelled=parent)


async def test_cancelling_site_dispatch_after_one_child_ended_cancels_the_others(dev):
    """One child failed (rejected); the operator then cancels the site dispatch."""
    b = dev.backend
    _site(dev)
    inp, parent = await _start_site(dev)
    children = [child_id(parent.id, a) for a in ASSET_IDS]
    for child in children:
        await b.wait_state(child, S.SENT)
    await b.ack(
        children[2], "rejected", asset_id=ASSET_IDS[2], reason=ReasonCode.DEVICE_UNREACHABLE
    )
    await b.wait_state(children[2], S.FAILED)

    await parent.signal(DispatchWorkflow.cancel, CancelRequest(actor="op-bob"))
    result = await dev.result(parent)

    assert result.state is S.CANCELLED
    assert result.reason is ReasonCode.CANCELLED_BY_OPERATOR
    assert b.states(parent.id)[-1] is S.CANCELLED
    assert [b.states(c)[-1] for c in children] == [S.CANCELLED, S.CANCELLED, S.FAILED]
    # ended by their own code, each execution status telling its outcome (outcome-status)
    statuses = [(await dev.client.get_workflow_handle(c).describe()).status for c in children]
    assert statuses == [
        WorkflowExecutionStatus.CANCELED,
        WorkflowExecutionStatus.CANCELED,
        WorkflowExecutionStatus.FAILED,
    ]


async def test_site_without_assets_fails_with_unknown_asset(dev):
    inp = await dev.dispatch_input(asset_id=None, site_id="site-empty", p_kw=TARGET_KW)
    parent = await dev.start(inp)

    result = await dev.result(parent)

    assert result.state is S.FAILED
    assert result.reason is ReasonCode.UNKNOWN_ASSET
    assert dev.backend.called("deliver_setpoint") == []
    desc = await parent.describe()
    assert desc.status == WorkflowExecutionStatus.FAILED  # outcome-status
