"""The control journal: leases and unconfirmed local reports on disk."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from gridpilot.core.lifecycle import ReasonCode
from gridpilot.edge_agent.control.acks import Ack, AckState, LocalReport, PendingReports
from gridpilot.edge_agent.control.commands import Lease, SetpointCommand
from gridpilot.edge_agent.control.journal import ControlJournal
from gridpilot.edge_agent.control.local_control import Source

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def _lease(dispatch_id: str, start_s: float = 0, **kw: object) -> Lease:
    start = T0 + timedelta(seconds=start_s)
    return Lease(dispatch_id, 42.5, start, start + timedelta(minutes=30), **kw)  # type: ignore[arg-type]


def _report(dispatch_id: str) -> LocalReport:
    return LocalReport(dispatch_id, "bess", -7.5, T0, T0 + timedelta(hours=1), "opcua:op", "opcua")


def test_leases_reports_and_the_link_mark_survive_reopening(tmp_path: Path) -> None:
    path = str(tmp_path / "agent.sqlite3")
    journal = ControlJournal(path)
    later = _lease("d-2", start_s=60, ramp_kw_per_s=5.0, trace_context={"traceparent": "00-x"})
    local = _lease("loc-1", source=Source.LOCAL, actor="opcua:op")
    journal.hold("bess", later)
    journal.hold("pv", local)
    journal.hold("ev", _lease("d-gone"))
    journal.drop("d-gone")
    for name in ("loc-2", "loc-1", "loc-3"):
        journal.report_added(_report(name))
    journal.report_done("loc-1")
    journal.mark_link_seen(T0)
    journal.close()

    again = ControlJournal(path)
    assert [(h.asset_id, h.lease) for h in again.leases()] == [("pv", local), ("bess", later)]
    assert [r.dispatch_id for r in again.reports()] == ["loc-2", "loc-3"]  # made order
    assert again.reports()[0] == _report("loc-2")
    assert again.link_seen() == T0
    again.report_added(_report("loc-4"))  # numbering goes on after a reopen
    assert [r.dispatch_id for r in again.reports()] == ["loc-2", "loc-3", "loc-4"]
    assert again.errors == 0


def test_a_write_that_fails_is_counted_and_never_raises(tmp_path: Path) -> None:
    journal = ControlJournal(str(tmp_path / "agent.sqlite3"))
    journal.close()  # every write now fails
    journal.hold("bess", _lease("d-1"))
    journal.report_added(_report("loc-1"))
    assert journal.errors == 2


def test_pending_reports_are_kept_in_the_journal_and_read_back(tmp_path: Path) -> None:
    path = str(tmp_path / "agent.sqlite3")
    journal = ControlJournal(path)
    pending = PendingReports(max_reports=2, journal=journal)
    for name in ("loc-1", "loc-2", "loc-3"):
        pending.add(_report(name))
    assert pending.dropped == 1  # the oldest went, from the journal too
    assert pending.recorded("loc-2") is not None
    journal.close()

    reread = PendingReports(journal=ControlJournal(path))
    assert len(reread) == 1 and reread.recorded("loc-3") == _report("loc-3")


def test_a_resumed_lease_starts_now_unless_it_starts_later() -> None:
    running = SetpointCommand.resuming("bess", _lease("d-1"), now=T0 + timedelta(minutes=1))
    assert running.start is None and running.resumed and running.p_kw == 42.5
    scheduled = SetpointCommand.resuming("bess", _lease("d-2", start_s=600), now=T0)
    assert scheduled.start == T0 + timedelta(seconds=600)
    local = SetpointCommand.resuming("pv", _lease("loc-1", source=Source.LOCAL, actor="a"), T0)
    assert (local.source, local.actor) == (Source.LOCAL, "a")


def test_acks_are_kept_in_the_order_made_until_confirmed(tmp_path: Path) -> None:
    path = str(tmp_path / "agent.sqlite3")
    journal = ControlJournal(path)
    accepted = Ack("d-1", "bess", AckState.ACCEPTED, T0, trace_context={"traceparent": "00-y"})
    applied = Ack("d-1", "bess", AckState.APPLIED, T0 + timedelta(seconds=1), applied_p_kw=42.5)
    released = Ack(
        "d-1", "bess", AckState.RELEASED, T0 + timedelta(seconds=2), ReasonCode.SUPERSEDED, "by d-2"
    )
    for ack in (accepted, applied, released):
        journal.ack_made(ack)
    journal.report_added(_report("loc-1"))  # one numbering for reports and acks
    journal.ack_done("d-1", AckState.APPLIED, T0 + timedelta(seconds=1))
    journal.close()

    again = ControlJournal(path)
    assert again.acks() == [accepted, released]
    assert again.acks(newest=1) == [released]
