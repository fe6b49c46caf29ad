"""The control journal: what the agent must not forget when it dies.

An accepted lease (cloud or local) is written before its ACCEPTED ack leaves
and deleted when its end is acked (COMPLETED, RELEASED, FAILED); a local
dispatch report is written before it is queued and deleted when the headend
confirms it; so is every ack (until DispatchAckReceived). All live in the
telemetry buffer's SQLite file (its lock keeps one agent per file), each
write its own ``synchronous=FULL`` transaction, so what was written
survives a kill -9 of the agent.

On start the agent reads it back (:func:`.resume.leases_to_resume`): an unexpired lease
is applied again, through the rails, instead of the asset staying at its
default while the cloud believes it runs; a cloud lease only if the headend
link was seen within the fail-safe timeout. Pending reports and acks are
sent again, in the order they were made.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import structlog

from gridpilot.core.lifecycle import ReasonCode

from .acks import Ack, AckState, LocalReport
from .commands import Lease
from .local_control import Source

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS control_leases ("
    " dispatch_id TEXT PRIMARY KEY, asset_id TEXT NOT NULL, body TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS control_reports ("
    " dispatch_id TEXT PRIMARY KEY, added INTEGER NOT NULL, body TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS control_marks (name TEXT PRIMARY KEY, at REAL NOT NULL)",
    "CREATE TABLE IF NOT EXISTS control_acks ("
    " key TEXT PRIMARY KEY, added INTEGER NOT NULL, body TEXT NOT NULL)",
)
LINK_SEEN = "link_seen"
log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class HeldLease:
    """A lease the agent held when it last stopped or died."""

    asset_id: str
    lease: Lease


class ControlJournal:
    """Writes never raise: a journal that cannot be written (disk full) must
    not stop control; the agent then only remembers in memory, and says so
    in the log (``errors`` counts it)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.errors = 0
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA busy_timeout=5000")  # the buffer writes the same file
        for ddl in SCHEMA:
            self._db.execute(ddl)
        self._added = self._db.execute(
            "SELECT max(coalesce((SELECT max(added) FROM control_reports), 0),"
            " coalesce((SELECT max(added) FROM control_acks), 0))"
        ).fetchone()[0]

    # -------------------------------------------------------------- leases

    def hold(self, asset_id: str, lease: Lease) -> None:
        self._write(
            "INSERT OR REPLACE INTO control_leases (dispatch_id, asset_id, body) VALUES (?, ?, ?)",
            (lease.dispatch_id, asset_id, _dump(lease)),
        )

    def drop(self, dispatch_id: str) -> None:
        self._write("DELETE FROM control_leases WHERE dispatch_id = ?", (dispatch_id,))

    def leases(self) -> list[HeldLease]:
        """Every lease held, oldest start first."""
        rows = self._db.execute("SELECT asset_id, body FROM control_leases")
        held = [HeldLease(asset_id, _lease_from(json.loads(body))) for asset_id, body in rows]
        return sorted(held, key=lambda h: h.lease.start)

    # ------------------------------------------------------------- reports

    def report_added(self, report: LocalReport) -> None:
        self._added += 1
        self._write(
            "INSERT OR REPLACE INTO control_reports (dispatch_id, added, body) VALUES (?, ?, ?)",
            (report.dispatch_id, self._added, _dump(report)),
        )

    def report_done(self, dispatch_id: str) -> None:
        self._write("DELETE FROM control_reports WHERE dispatch_id = ?", (dispatch_id,))

    def reports(self) -> list[LocalReport]:
        """Unconfirmed local reports, in the order they were made."""
        rows = self._db.execute("SELECT body FROM control_reports ORDER BY added").fetchall()
        return [_report_from(json.loads(body)) for (body,) in rows]

    # ---------------------------------------------------------------- acks

    def ack_made(self, ack: Ack) -> None:
        self._added += 1
        self._write(
            "INSERT OR REPLACE INTO control_acks (key, added, body) VALUES (?, ?, ?)",
            (_ack_key(ack.dispatch_id, ack.state, ack.time), self._added, _dump(ack)),
        )

    def ack_done(self, dispatch_id: str, state: AckState, time: datetime) -> None:
        self._write("DELETE FROM control_acks WHERE key = ?", (_ack_key(dispatch_id, state, time),))

    def acks(self, newest: int = 10_000) -> list[Ack]:
        """Unconfirmed acks, in the order they were made (at most the newest N)."""
        rows = self._db.execute(
            "SELECT body FROM (SELECT added, body FROM control_acks ORDER BY added DESC LIMIT ?)"
            " ORDER BY added",
            (newest,),
        ).fetchall()
        return [_ack_from(json.loads(body)) for (body,) in rows]

    # --------------------------------------------------------------- marks

    def mark_link_seen(self, at: datetime) -> None:
        self._write(
            "INSERT OR REPLACE INTO control_marks (name, at) VALUES (?, ?)",
            (LINK_SEEN, at.timestamp()),
        )

    def link_seen(self) -> datetime | None:
        row = self._db.execute("SELECT at FROM control_marks WHERE name = ?", (LINK_SEEN,))
        found = row.fetchone()
        return datetime.fromtimestamp(found[0], UTC) if found else None

    def close(self) -> None:
        self._db.close()

    def _write(self, sql: str, args: tuple[object, ...]) -> None:
        try:
            self._db.execute(sql, args)
        except sqlite3.Error as exc:
            self.errors += 1
            log.error(
                "control journal write failed; this is remembered in memory only",
                file=self.path,
                error=str(exc),
            )


def _dump(record: Lease | LocalReport | Ack) -> str:
    """A journal row's body: the dataclass's fields, times in ISO 8601."""
    return json.dumps(asdict(record), default=_encode)


def _encode(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Mapping):  # e.g. a trace context that is not a dict
        return dict(value)
    raise TypeError(f"{type(value).__name__} does not go in the control journal")


def _lease_from(body: dict[str, Any]) -> Lease:
    return Lease(
        **{
            **body,
            "start": datetime.fromisoformat(body["start"]),
            "end": datetime.fromisoformat(body["end"]),
            "source": Source(body["source"]),
        }
    )


def _ack_key(dispatch_id: str, state: AckState, time: datetime) -> str:
    return f"{dispatch_id}|{state}|{time.isoformat()}"


def _ack_from(body: dict[str, Any]) -> Ack:
    reason = body["reason"]
    return Ack(
        **{
            **body,
            "state": AckState(body["state"]),
            "time": datetime.fromisoformat(body["time"]),
            "reason": ReasonCode(reason) if reason else None,
        }
    )


def _report_from(body: dict[str, Any]) -> LocalReport:
    return LocalReport(
        **{
            **body,
            "start": datetime.fromisoformat(body["start"]),
            "end": datetime.fromisoformat(body["end"]),
        }
    )
