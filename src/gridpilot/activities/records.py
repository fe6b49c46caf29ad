"""Database activities of the dispatch workflows; each is idempotent. The SQL
is the dispatch store's (``gridpilot.store``); these only give it activity names."""

from __future__ import annotations

from datetime import UTC, datetime

from temporalio import activity

from gridpilot.store.dispatches import DispatchStore
from gridpilot.workflows.models import (
    AgentAck,
    AllocationRecord,
    ClaimRequest,
    ClaimResult,
    DispatchInput,
    Route,
    SplitInputs,
    SubmissionRecord,
    TransitionBatch,
    TransitionRecord,
)


class RecordActivities:
    def __init__(self, store: DispatchStore) -> None:
        self._store = store

    @activity.defn(name="record_dispatch")
    async def record_dispatch(self, inp: DispatchInput) -> None:
        await self._store.record(inp)

    @activity.defn(name="record_submission")
    async def record_submission(self, rec: SubmissionRecord) -> None:
        """The dispatch row with its first transition (submitted), in one
        transaction: the workflow's first write (patch "lean-records")."""
        await self._store.record(rec.dispatch, rec.submitted)

    @activity.defn(name="record_transition")
    async def record_transition(self, rec: TransitionRecord) -> None:
        await self._store.record_transitions(rec)

    @activity.defn(name="record_transitions")
    async def record_transitions(self, batch: TransitionBatch) -> None:
        """Transitions decided in one workflow task, in order, in one transaction."""
        await self._store.record_transitions(*batch.records)

    @activity.defn(name="record_allocation")
    async def record_allocation(self, rec: AllocationRecord) -> None:
        await self._store.record_allocation(rec)

    @activity.defn(name="record_late_ack")
    async def record_late_ack(self, ack: AgentAck) -> None:
        """An ack that came while the dispatch was ending: kept with those that
        came after its end (``dispatch_late_acks``), once."""
        await self._store.record_late_ack(ack)

    @activity.defn(name="resolve_route")
    async def resolve_route(self, asset_id: str) -> Route:
        return await self._store.resolve_route(asset_id)

    @activity.defn(name="claim_asset")
    async def claim_asset(self, req: ClaimRequest) -> ClaimResult:
        """At most one live dispatch per asset (``DispatchStore.claim``)."""
        return await self._store.claim(req)

    @activity.defn(name="load_split_inputs")
    async def load_split_inputs(self, site_id: str) -> SplitInputs:
        return await self._store.split_inputs(site_id, datetime.now(UTC))
