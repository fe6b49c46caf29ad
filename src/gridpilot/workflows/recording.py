"""How a dispatch workflow records its transitions: checked against
``core.lifecycle``, kept in the workflow's state, written to the database,
set as its ``DispatchState`` search attribute and, for a site's child, told to
its parent. Workflow code, mixed into ``DispatchWorkflow`` (which holds the state).

Patch ``lean-records`` cuts the round trips a dispatch makes (each written
transition is a scheduled activity, a workflow task more):

- the dispatch row and its first transition (submitted) are one local activity
  (``record_submission``): it is the first thing every run does, so it cannot
  depend on the path (see ``calls.py``); the claim that follows is local too,
  so a dispatch reaches its delivery in one workflow task;
- transitions decided in one workflow task (the agent's ACCEPTED and APPLIED,
  handled together; the states on a path) are written by one activity
  (``record_transitions``), in order, in one transaction;
- a child tells its parent only what the parent follows (acked, active, its end:
  ``site_rules.next_state``, ``outcome.child_result``), with the time it went
  active, and the signal goes out beside the write, not after it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from gridpilot.activities.records import RecordActivities
    from gridpilot.core.lifecycle import DispatchState, ReasonCode, check_transition, path_to

    from .calls import PATCH_LEAN_RECORDS, on_database
    from .constants import SA_DISPATCH_STATE, SIGNAL_CHILD_STATE
    from .dispatch_rules import result_of
    from .models import (
        ChildState,
        DispatchInput,
        DispatchResult,
        SubmissionRecord,
        TransitionBatch,
        TransitionRecord,
    )

S = DispatchState
# What a parent follows of its children (lean: the only states told to it).
TOLD_TO_PARENT = frozenset({S.ACKED, S.ACTIVE}) | {s for s in S if s.terminal}


class Recorder:
    """The recording half of ``DispatchWorkflow``; its ``__init__`` sets these."""

    inp: DispatchInput
    state: DispatchState | None
    transitions: list[TransitionRecord]
    applied_p_kw: float | None
    lean: bool  # patch "lean-records", decided at the start of the run
    unwritten: list[TransitionRecord]  # lean: decided, not yet written
    batching: bool  # lean: _to only decides; _write writes them together

    async def _submit(self) -> None:
        """The dispatch's row and its submitted transition."""
        inp = self.inp
        self.lean = workflow.patched(PATCH_LEAN_RECORDS)
        if not self.lean:
            await on_database(RecordActivities.record_dispatch, inp)
            await self._to(S.SUBMITTED, actor=inp.submitted_by)
            return
        record = self._decide(S.SUBMITTED, None, "", inp.submitted_by)
        self.unwritten.clear()
        await on_database(
            RecordActivities.record_submission, SubmissionRecord(dispatch=inp, submitted=record)
        )
        workflow.upsert_search_attributes([SA_DISPATCH_STATE.value_set(S.SUBMITTED.value)])

    async def _end(
        self, state: DispatchState, reason: ReasonCode | None, detail: str, actor: str = "headend"
    ) -> DispatchResult:
        await self._to(state, reason=reason, detail=detail, actor=actor)
        return self._result()

    def _result(self) -> DispatchResult:
        assert self.state is not None
        return result_of(self.inp, self.state, self.transitions[-1], self.applied_p_kw)

    async def _through(
        self, target: DispatchState, detail: str = "", actor: str = "headend"
    ) -> None:
        """Every state on the way to ``target`` (``core.lifecycle.path_to``)."""
        with self._batch():
            for state in path_to(self.state or S.SUBMITTED, target):
                await self._to(state, detail=detail, actor=actor)
        if not self.batching:  # else the enclosing batch writes them
            await self._write()

    @contextlib.contextmanager
    def _batch(self) -> Iterator[None]:
        """Lean: the transitions decided in the body are written by the next
        ``_write``, together (the body must call nothing else that awaits)."""
        was, self.batching = self.batching, self.lean
        try:
            yield
        finally:
            self.batching = was

    def _decide(
        self, state: DispatchState, reason: ReasonCode | None, detail: str, actor: str
    ) -> TransitionRecord:
        return self._take(self._next(state, reason, detail, actor))

    def _next(
        self, state: DispatchState, reason: ReasonCode | None, detail: str, actor: str
    ) -> TransitionRecord:
        """The next transition, checked; not taken yet."""
        try:
            check_transition(self.state, state, reason)
        except Exception as exc:  # a bug, not bad input: fail loudly, never record it
            raise ApplicationError(str(exc), type="IllegalTransition", non_retryable=True) from exc
        return TransitionRecord(
            dispatch_id=self.inp.dispatch_id,
            seq=len(self.transitions) + 1,
            from_state=self.state,
            to_state=state,
            at=workflow.now(),
            reason=reason,
            detail=detail,
            actor=actor,
            applied_p_kw=self.applied_p_kw,
        )

    def _take(self, record: TransitionRecord, written: bool = False) -> TransitionRecord:
        # The workflow's own state moves first: a cancel that lands while the record
        # is being written must not make the next transition reuse this seq.
        self.transitions.append(record)
        self.state = record.to_state
        if written:  # by the activity that made it happen (the delivery)
            workflow.upsert_search_attributes([SA_DISPATCH_STATE.value_set(record.to_state.value)])
        elif self.lean:
            self.unwritten.append(record)
        return record

    async def _to(
        self,
        state: DispatchState,
        reason: ReasonCode | None = None,
        detail: str = "",
        actor: str = "headend",
    ) -> None:
        record = self._decide(state, reason, detail, actor)
        if self.lean:
            if not self.batching:
                await self._write()
            return
        await on_database(RecordActivities.record_transition, record)
        workflow.upsert_search_attributes([SA_DISPATCH_STATE.value_set(state.value)])
        await self._tell_parent(record)

    async def _write(self) -> None:
        """Lean: write the transitions decided since the last write, and tell
        the parent the last one it follows, beside the write."""
        records, self.unwritten = self.unwritten, []
        if not records:
            return
        workflow.upsert_search_attributes([SA_DISPATCH_STATE.value_set(records[-1].to_state.value)])
        if len(records) == 1:
            write = on_database(RecordActivities.record_transition, records[0])
        else:
            write = on_database(
                RecordActivities.record_transitions, TransitionBatch(records=records)
            )
        told = [r for r in records if r.to_state in TOLD_TO_PARENT]
        if not told or not self.inp.parent_id:
            await write
            return
        await asyncio.gather(write, self._tell_parent(told[-1]))

    async def _tell_parent(self, record: TransitionRecord) -> None:
        if not (self.inp.parent_id and self.inp.asset_id):
            return
        active = next((r.at for r in self.transitions if r.to_state is S.ACTIVE), None)
        # By name: the parent's class (site.py) imports this module (constants.py).
        parent = workflow.get_external_workflow_handle(self.inp.parent_id)
        try:
            await parent.signal(
                SIGNAL_CHILD_STATE,
                ChildState(
                    dispatch_id=self.inp.dispatch_id,
                    asset_id=self.inp.asset_id,
                    state=record.to_state,
                    reason=record.reason,
                    applied_p_kw=self.applied_p_kw,
                    at=record.at,
                    active_at=active if self.lean else None,
                ),
            )
        except Exception:  # parent already closed: nothing to tell
            workflow.logger.info("parent %s not reachable", self.inp.parent_id)
