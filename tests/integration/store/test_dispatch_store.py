"""DispatchStore and the store's reads against a real PostgreSQL (migrated)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
import pytest_asyncio
from gp_testing import wait_for
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from gridpilot.core.assets import Asset, AssetType, PowerLimits
from gridpilot.core.lifecycle import DispatchState, ReasonCode
from gridpilot.ingest.registry import GatewayStore
from gridpilot.schema import db
from gridpilot.store import reads
from gridpilot.store.dispatches import DispatchStore
from gridpilot.workflows.dispatch_rules import claim_request
from gridpilot.workflows.models import (
    AgentAck,
    AllocationRecord,
    DispatchInput,
    TransitionRecord,
)

pytestmark = pytest.mark.integration
NOW = datetime.now(UTC).replace(microsecond=0)
S = DispatchState


@dataclass
class Db:
    engine: AsyncEngine
    store: DispatchStore
    gateways: GatewayStore


@pytest_asyncio.fixture(loop_scope="session")
async def dbs(database_url: str) -> AsyncIterator[Db]:
    db.upgrade(database_url)
    engine = db.async_engine(database_url)
    gateways = GatewayStore(engine)
    assets = [
        Asset("bess-1", "site-1", AssetType.BESS, PowerLimits(-50.0, 50.0)),
        Asset("pv-1", "site-1", AssetType.PV, PowerLimits(0.0, 30.0)),
    ]
    await gateways.register("gw-1", "site-1", "Site 1", "test", assets)
    try:
        yield Db(engine, DispatchStore(engine), gateways)
    finally:
        await engine.dispose()


def _inp(dispatch_id: str, **over: object) -> DispatchInput:
    values: dict[str, object] = {
        "dispatch_id": dispatch_id,
        "kind": "asset",
        "asset_id": "bess-1",
        "site_id": "site-1",
        "p_kw": 10.0,
        "duration_s": 600,
        "start_at": NOW,
        "end_at": NOW + timedelta(minutes=10),
        "deliver_by": NOW + timedelta(minutes=1),
        "submitted_by": "token:alice",
        **over,
    }
    return DispatchInput.model_validate(values)


def _transition(dispatch_id: str, seq: int, to: DispatchState, **over: object) -> TransitionRecord:
    values: dict[str, object] = {
        "dispatch_id": dispatch_id,
        "seq": seq,
        "from_state": None,
        "to_state": to,
        "at": NOW + timedelta(seconds=seq),
        "actor": "headend",
        **over,
    }
    return TransitionRecord.model_validate(values)


async def _end(store: DispatchStore, dispatch_id: str, state: DispatchState) -> None:
    await store.record_transitions(_transition(dispatch_id, 1, S.SUBMITTED))
    reason = None if state is S.COMPLETE else ReasonCode.CANCELLED_BY_OPERATOR
    await store.record_transitions(_transition(dispatch_id, 2, state, reason=reason))


async def test_a_second_write_of_a_dispatch_does_nothing_even_on_another_unique_key(
    dbs: Db,
) -> None:
    first = _inp("dsp-1", idempotency_key="k-1", request_hash="h")
    await dbs.store.insert(first)
    await dbs.store.record(first)  # the workflow's write of the same row
    # Another id with the caller's same key collides on the Idempotency-Key index,
    # which is not the id's: no conflict target, so this too does nothing.
    await dbs.store.insert(_inp("dsp-2", idempotency_key="k-1", request_hash="h"))
    assert await dbs.store.by_idempotency_key("token:alice", "k-1") == ("dsp-1", "h")
    assert await dbs.store.by_idempotency_key("token:bob", "k-1") is None
    assert await dbs.store.dispatch_target("dsp-2") is None


async def test_record_fills_an_asset_dispatchs_site_from_its_asset(dbs: Db) -> None:
    await dbs.store.record(_inp("dsp-site", site_id=None))
    target = await dbs.store.cancel_target("dsp-site")
    assert target is not None and target.site_id == "site-1"
    assert target.state is S.SUBMITTED and target.source == "cloud"


async def test_transitions_move_the_row_once_and_a_retry_is_a_no_op(dbs: Db) -> None:
    await dbs.store.insert(_inp("dsp-t"))
    await dbs.store.record_transitions(_transition("dsp-t", 1, S.SUBMITTED))
    sent = _transition("dsp-t", 2, S.SENT, from_state=S.SUBMITTED, detail="gateway gw-1")
    await dbs.store.record_transitions(sent)
    await dbs.store.record_transitions(sent)  # a retried activity
    active = _transition("dsp-t", 3, S.ACTIVE, from_state=S.SENT, applied_p_kw=9.5)
    await dbs.store.record_transitions(active)
    assert await dbs.store.dispatch_target("dsp-t") == ("bess-1", S.ACTIVE)
    detail = await reads.dispatch_detail(dbs.engine, "dsp-t")
    assert detail is not None
    assert [x["to_state"] for x in detail["transitions"]] == ["submitted", "sent", "active"]
    assert detail["applied_p_kw"] == 9.5 and detail["state"] == "active"
    assert detail["evidence"] is not None and detail["evidence"]["samples"] == 0


async def test_a_late_retry_of_an_earlier_transition_does_not_move_the_row_back(
    dbs: Db,
) -> None:
    await dbs.store.insert(_inp("dsp-r"))
    await dbs.store.record_transitions(_transition("dsp-r", 1, S.SUBMITTED))
    sent = _transition("dsp-r", 2, S.SENT, from_state=S.SUBMITTED)
    await dbs.store.record_transitions(sent)
    await dbs.store.record_transitions(_transition("dsp-r", 3, S.ACTIVE, from_state=S.SENT))
    await dbs.store.record_transitions(sent)  # its activity retried after the next one ran
    assert await dbs.store.dispatch_target("dsp-r") == ("bess-1", S.ACTIVE)


async def test_a_submission_writes_the_row_with_its_first_transition(dbs: Db) -> None:
    first = _transition("dsp-sub", 1, S.SUBMITTED, actor="token:alice")
    await dbs.store.record(_inp("dsp-sub"), first)
    await dbs.store.record(_inp("dsp-sub"), first)  # a retried local activity
    detail = await reads.dispatch_detail(dbs.engine, "dsp-sub")
    assert detail is not None and detail["state"] == "submitted"
    assert [(x["seq"], x["to_state"]) for x in detail["transitions"]] == [(1, "submitted")]


async def test_transitions_decided_together_are_written_in_order_in_one_go(dbs: Db) -> None:
    await dbs.store.record(_inp("dsp-b"), _transition("dsp-b", 1, S.SUBMITTED))
    await dbs.store.record_transitions(_transition("dsp-b", 2, S.SENT, from_state=S.SUBMITTED))
    acked = _transition("dsp-b", 3, S.ACKED, from_state=S.SENT, actor="agent")
    active = _transition("dsp-b", 4, S.ACTIVE, from_state=S.ACKED, applied_p_kw=9.0)
    await dbs.store.record_transitions(acked, active)
    await dbs.store.record_transitions(acked, active)  # the activity retried
    assert await dbs.store.dispatch_target("dsp-b") == ("bess-1", S.ACTIVE)
    detail = await reads.dispatch_detail(dbs.engine, "dsp-b")
    assert detail is not None and detail["applied_p_kw"] == 9.0
    assert [x["to_state"] for x in detail["transitions"]] == [
        "submitted",
        "sent",
        "acked",
        "active",
    ]


async def test_late_acks_are_kept_once_and_shown_with_the_dispatch(dbs: Db) -> None:
    await dbs.store.insert(_inp("dsp-late"))
    await _end(dbs.store, "dsp-late", S.COMPLETE)
    ack = AgentAck(dispatch_id="dsp-late", state="released", at=NOW, gateway_id="gw-1")
    await dbs.store.record_late_ack(ack)
    await dbs.store.record_late_ack(ack)
    detail = await reads.dispatch_detail(dbs.engine, "dsp-late")
    assert detail is not None
    assert [(a["state"], a["gateway_id"]) for a in detail["late_acks"]] == [("released", "gw-1")]
    assert await reads.dispatch_detail(dbs.engine, "dsp-none") is None


async def test_a_claim_supersedes_an_older_equal_priority_dispatch(dbs: Db) -> None:
    old, new = _inp("dsp-old", submit_seq=1), _inp("dsp-new", submit_seq=2)
    for inp in (old, new):
        await dbs.store.insert(inp)
    claim = await dbs.store.claim(claim_request(new))
    assert claim.superseded == ["dsp-old"] and claim.refused_by is None
    # The older one, claiming late, loses to the one that superseded it.
    again = await dbs.store.claim(claim_request(old))
    assert again.superseded_by == "dsp-new"


async def test_a_delivery_holds_the_claim_lock_and_is_told_who_superseded_it(dbs: Db) -> None:
    old = _inp("dsp-send-old", asset_id="pv-1", p_kw=5.0, submit_seq=10_001)
    new = _inp("dsp-send-new", asset_id="pv-1", p_kw=5.0, submit_seq=10_002)
    for inp in (old, new):
        await dbs.store.insert(inp)
    async with dbs.store.held_for_delivery("pv-1", old.dispatch_id) as winner:
        assert winner is None  # not superseded: the caller sends now
        claiming = asyncio.create_task(dbs.store.claim(claim_request(new)))
        # The newer claim waits on the asset's lock while the send is under way.
        await wait_for(lambda: _advisory_waiters(dbs.engine), 30, "the claim waiting on the lock")
        assert not claiming.done()
    assert (await claiming).superseded == [old.dispatch_id]
    async with dbs.store.held_for_delivery("pv-1", old.dispatch_id) as winner:
        assert winner == new.dispatch_id  # superseded first: never sent


async def test_a_delivery_writes_its_sent_transition_only_once_it_has_sent(dbs: Db) -> None:
    inp = _inp("dsp-sent")
    await dbs.store.record(inp, _transition("dsp-sent", 1, S.SUBMITTED))
    sent = _transition("dsp-sent", 2, S.SENT, from_state=S.SUBMITTED, detail="gateway gw-1")
    with pytest.raises(RuntimeError):  # the send failed (the agent's stream is gone)
        async with dbs.store.held_for_delivery("bess-1", inp.dispatch_id, sent):
            raise RuntimeError("no stream")
    assert await dbs.store.dispatch_target("dsp-sent") == ("bess-1", S.SUBMITTED)
    async with dbs.store.held_for_delivery("bess-1", inp.dispatch_id, sent) as winner:
        assert winner is None
        # not yet committed: another connection does not see it sent
        assert await dbs.store.dispatch_target("dsp-sent") == ("bess-1", S.SUBMITTED)
    assert await dbs.store.dispatch_target("dsp-sent") == ("bess-1", S.SENT)
    detail = await reads.dispatch_detail(dbs.engine, "dsp-sent")
    assert detail is not None
    assert [x["to_state"] for x in detail["transitions"]] == ["submitted", "sent"]


async def _advisory_waiters(engine: AsyncEngine) -> int:
    waiting = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
    async with engine.connect() as conn:
        return int((await conn.execute(text(waiting))).scalar_one())


async def test_a_higher_priority_live_dispatch_refuses_a_claim_until_it_ends(dbs: Db) -> None:
    high, low = _inp("dsp-high", priority=5, submit_seq=1), _inp("dsp-low", submit_seq=2)
    for inp in (high, low):
        await dbs.store.insert(inp)
    claim = await dbs.store.claim(claim_request(low))
    assert (claim.refused_by, claim.refused_priority) == ("dsp-high", 5)
    end = NOW + timedelta(minutes=10)
    assert await dbs.store.higher_priority_holder("bess-1", 0, NOW, end) == ("dsp-high", 5)
    assert await dbs.store.higher_priority_holder("bess-1", 5, NOW, end) is None
    # A window that does not overlap does not compete.
    later = end + timedelta(minutes=1)
    assert await dbs.store.higher_priority_holder("bess-1", 0, later, later) is None
    await _end(dbs.store, "dsp-high", S.CANCELLED)
    assert await dbs.store.higher_priority_holder("bess-1", 0, NOW, end) is None
    assert (await dbs.store.claim(claim_request(low))).refused_by is None


async def test_local_dispatches_are_not_counted_by_claims(dbs: Db) -> None:
    await dbs.store.insert(_inp("loc-1", source="local", priority=9))
    await dbs.store.insert(_inp("dsp-c", submit_seq=3))
    claim = await dbs.store.claim(claim_request(_inp("dsp-c", submit_seq=3)))
    assert claim.refused_by is None and claim.superseded == []


async def test_route_says_unknown_offline_or_the_live_sessions_queue(dbs: Db) -> None:
    assert not (await dbs.store.resolve_route("nope")).known
    offline = await dbs.store.resolve_route("bess-1")
    assert (offline.known, offline.gateway_id, offline.task_queue) == (True, "gw-1", None)
    assert (offline.p_min_kw, offline.p_max_kw) == (-50.0, 50.0)
    await dbs.gateways.open_session("s-1", "gw-1", "site-1", "h-1", "q-h-1", "peer", "test")
    assert (await dbs.store.resolve_route("bess-1")).task_queue == "q-h-1"


async def test_split_inputs_and_allocation(dbs: Db) -> None:
    loaded = await dbs.store.split_inputs("site-1", NOW)
    assert [a.asset_id for a in loaded.assets] == ["bess-1", "pv-1"]
    assert all(a.available_discharge_kw is None for a in loaded.assets)  # no telemetry
    assert (await dbs.store.split_inputs("site-none", NOW)).assets == []
    await dbs.store.insert(_inp("dsp-s", kind="site", asset_id=None))
    alloc = AllocationRecord(
        dispatch_id="dsp-s",
        policy="capacity_weighted_clamped/v1",
        version=1,
        target_kw=10.0,
        allocated_kw=10.0,
        unallocated_kw=0.0,
        lines=[],
    )
    await dbs.store.record_allocation(alloc)
    await dbs.store.insert(_inp("dsp-s.bess-1", parent_id="dsp-s"))
    detail = await reads.dispatch_detail(dbs.engine, "dsp-s")
    assert detail is not None and detail["policy"] == "capacity_weighted_clamped/v1"
    assert detail["allocation"]["version"] == 1 and detail["children"] == ["dsp-s.bess-1"]
    assert detail["evidence"] is None  # a site dispatch has none of its own


async def test_list_filters_and_submit_seq_order(dbs: Db) -> None:
    await dbs.store.insert(_inp("dsp-a"))
    await dbs.store.insert(_inp("dsp-b", asset_id="pv-1", source="local"))
    both = await reads.list_dispatches(dbs.engine, reads.DispatchFilter())
    assert {d["id"] for d in both} == {"dsp-a", "dsp-b"}
    local = await reads.list_dispatches(dbs.engine, reads.DispatchFilter(source="local"))
    assert [d["id"] for d in local] == ["dsp-b"]
    on_pv = reads.DispatchFilter(asset_id="pv-1", state=S.SUBMITTED, limit=1)
    assert [d["id"] for d in await reads.list_dispatches(dbs.engine, on_pv)] == ["dsp-b"]
    first, second = await dbs.store.next_submit_seq(), await dbs.store.next_submit_seq()
    assert second > first
    row = await reads.asset_row(dbs.engine, "bess-1")
    assert row is not None and row["gateway_id"] == "gw-1"
    assert await reads.asset_row(dbs.engine, "nope") is None
