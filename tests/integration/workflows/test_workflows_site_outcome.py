"""A site dispatch's end state comes from what its children delivered (patch
``site-outcome``, rule in ``core.site_outcome``): mostly failed is not
``complete``; superseded after running is ``cancelled / SUPERSEDED`` with what
it delivered; an operator's cancel of one child is not re-spread."""

from __future__ import annotations

import pytest
from gp_testing import mixed_site_assets
from temporalio.client import WorkflowExecutionStatus

from gridpilot.core.lifecycle import DispatchState, ReasonCode
from gridpilot.workflows.dispatch import DispatchWorkflow
from gridpilot.workflows.models import CancelRequest, SplitInputs

pytestmark = pytest.mark.integration

S = DispatchState
SITE = "site-1"
TARGET_KW = 150.0
DURATION_S = 30
# split of 150 kW: bess-1 81.25, bess-2 20 (its available power), pv-1 48.75
SITE_ASSETS = mixed_site_assets()
ASSET_IDS = [a.asset_id for a in SITE_ASSETS]
REQUESTED_KWH = TARGET_KW * DURATION_S / 3600


async def _site_input(harness):
    b = harness.backend
    b.split_inputs[SITE] = SplitInputs(site_id=SITE, assets=SITE_ASSETS)
    for asset_id in ASSET_IDS:
        b.online(asset_id)
    return await harness.dispatch_input(
        asset_id=None, site_id=SITE, p_kw=TARGET_KW, duration_s=DURATION_S
    )


async def test_site_whose_children_mostly_failed_is_failed_not_complete(dev, record_histories):
    b = dev.backend
    inp = await _site_input(dev)
    p = inp.dispatch_id
    for asset_id in ("bess-1", "pv-1"):  # the agent refuses them, re-spread ones too
        for suffix in ("", ".v2", ".v3"):
            b.agent_rejects[f"{p}.{asset_id}{suffix}"] = ReasonCode.DEVICE_UNREACHABLE
    b.agent_replies = ["accepted", "applied", "completed"]  # bess-2 runs its 20 kW
    parent = await dev.start(inp)

    result = await dev.result(parent)

    assert (result.state, result.reason) == (S.FAILED, ReasonCode.DEVICE_UNREACHABLE)
    assert result.requested_kw == TARGET_KW
    assert result.delivered_kw == pytest.approx(20.0)
    assert result.requested_kwh == pytest.approx(REQUESTED_KWH)
    assert 0 < result.delivered_kwh <= 20.0 * DURATION_S / 3600 + 1e-6
    assert (await parent.describe()).status == WorkflowExecutionStatus.FAILED
    detail = b.transitions[p][-1].detail
    assert "bess-1=failed DEVICE_UNREACHABLE" in detail
    assert "bess-2=complete" in detail
    assert f"of {REQUESTED_KWH:.3f} kWh" in detail
    await record_histories(outcome_site_failed=parent)


async def test_site_superseded_after_running_is_cancelled_with_what_it_delivered(
    dev, record_histories
):
    b = dev.backend
    b.agent_replies = ["accepted", "applied"]
    inp = await _site_input(dev)
    parent = await dev.start(inp)
    children = [f"{parent.id}.{a}" for a in ASSET_IDS]
    for cid in children:
        await b.wait_state(cid, S.ACTIVE)

    for cid, asset_id in zip(children, ASSET_IDS, strict=True):  # a newer dispatch takes over
        await b.ack(
            cid, "released", asset_id=asset_id, reason=ReasonCode.SUPERSEDED, detail="newer"
        )
    result = await dev.result(parent)

    assert (result.state, result.reason) == (S.CANCELLED, ReasonCode.SUPERSEDED)
    assert result.delivered_kw == pytest.approx(TARGET_KW)  # it ran, at its target
    assert 0 < result.delivered_kwh < result.requested_kwh
    assert [len(a.lines) for a in b.allocations] == [3]  # a supersede is not re-spread
    assert (await parent.describe()).status == WorkflowExecutionStatus.CANCELED
    await record_histories(outcome_site_superseded=parent)


async def test_operator_cancel_of_one_child_is_not_respread_and_the_site_completes(dev):
    b = dev.backend
    b.agent_replies = ["accepted", "applied"]
    inp = await _site_input(dev)
    parent = await dev.start(inp)
    children = {a: f"{parent.id}.{a}" for a in ASSET_IDS}
    for cid in children.values():
        await b.wait_state(cid, S.ACTIVE)

    await dev.client.get_workflow_handle(children["bess-2"]).signal(
        DispatchWorkflow.cancel, CancelRequest(actor="op-bob", detail="maintenance")
    )
    await b.wait_state(children["bess-2"], S.CANCELLED)
    for asset_id in ("bess-1", "pv-1"):
        await b.ack(children[asset_id], "completed", asset_id=asset_id)
    result = await dev.result(parent)

    assert result.state is S.COMPLETE  # 130 of 150 kW ran their window
    assert [a.version for a in b.allocations] == [1]  # no re-spread
    assert not [d for d in b.dispatches if d.endswith(".v2")]  # no .v2 child
    last = b.transitions[parent.id][-1]
    assert "bess-2=cancelled CANCELLED_BY_OPERATOR" in last.detail
