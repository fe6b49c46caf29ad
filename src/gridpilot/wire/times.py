"""google.protobuf.Timestamp <-> aware UTC datetimes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# What google.protobuf.Timestamp may hold (0001-01-01 to 9999-12-31), and Python too.
_TS_SECONDS = range(-62_135_596_800, 253_402_300_800)


def ts_to_pb(dt: datetime) -> Timestamp:
    out = Timestamp()
    out.FromDatetime(dt.astimezone(UTC))
    return out


def ts_from_pb(ts: Timestamp) -> datetime:
    """Exact to the microsecond (nanoseconds are cut); OverflowError beyond
    what a datetime holds (:func:`ts_problem` says so first)."""
    return _EPOCH + timedelta(seconds=ts.seconds, microseconds=ts.nanos // 1000)


def optional_ts(msg: Any, name: str) -> datetime | None:
    """The Timestamp field ``name`` of ``msg``, None when it is not set."""
    return ts_from_pb(getattr(msg, name)) if msg.HasField(name) else None


def ts_problem(ts: Timestamp) -> str | None:
    """Why this Timestamp is no time (None: it is one)."""
    if ts.seconds not in _TS_SECONDS or not 0 <= ts.nanos < 1_000_000_000:
        return "is outside 0001-01-01..9999-12-31"
    return None
