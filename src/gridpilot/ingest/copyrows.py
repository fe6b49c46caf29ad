"""Telemetry as binary COPY rows: validated and encoded in one pass per batch.

The ingest hot path. Every sample of every batch passes through
:func:`encode_batch`, which goes straight from the protobuf samples to the
bytes of ``COPY telemetry (...) FROM STDIN (FORMAT BINARY)``: no ``Sample``
objects, no ``datetime`` per sample, no per-row call into psycopg. The
writer then only ships prepared bytes (``copy.write``).

The checks are the gateway's own (the asset is one of the gateway's) and
those of :func:`gridpilot.core.telemetry.sample_problem`. The fast path only
*accepts* what cheap tests prove storable (finite numbers, no NUL, a ``ts``
within range and not beyond the skew, flat ``details``); anything else takes
the slow path (:func:`~gridpilot.wire.telemetry.sample_from_pb` then
``sample_problem``, the code this replaced), which rejects the sample with
the same message as before or encodes it. A ``ts`` no ``datetime`` can hold
is rejected as out of range. The rows are byte for byte what psycopg's binary
dumpers make of the same values (``tests/unit/ingest/test_ingest_copyrows.py``)."""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping, Sequence, Set
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from gridpilot.core.telemetry import CORE_FIELDS, Sample, sample_problem
from gridpilot.wire.messages import TelemetrySample
from gridpilot.wire.telemetry import sample_from_pb

COLUMNS = ("asset_id", "ts", "received_at", *CORE_FIELDS, "state", "details")
COPY_TYPES = ["text", "timestamptz", "timestamptz", *["float8"] * len(CORE_FIELDS), "text", "jsonb"]

# The binary COPY envelope (PostgreSQL docs, "COPY: Binary Format").
SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
TRAILER = b"\xff\xff"

_PG_EPOCH_US = 946_684_800 * 1_000_000  # 2000-01-01 UTC, PostgreSQL's zero
_MIN_US = -62_135_596_800 * 1_000_000  # 0001-01-01 UTC: datetime.min
_UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

_NULL = b"\xff\xff\xff\xff"
_I32 = struct.Struct(">i").pack
_HEAD = struct.Struct(">hi").pack  # field count, length of asset_id
_TS = struct.Struct(">iq").pack
_F8 = struct.Struct(">id").pack
_JSONB_HEAD = struct.Struct(">ib").pack  # length, jsonb version 1
# ts, received_at (pre-encoded), and all seven core values present: the common row.
_MID_FULL = struct.Struct(">iq12s" + "id" * len(CORE_FIELDS)).pack
_EMPTY_DETAILS = _JSONB_HEAD(3, 1) + b"{}"
_OPTS = orjson.OPT_NON_STR_KEYS


@dataclass(slots=True)
class CopyRows:
    """Encoded rows in ``COLUMNS`` order, ready for a binary COPY body
    (without :data:`SIGNATURE` and :data:`TRAILER`)."""

    payload: bytes = b""
    count: int = 0
    # asset_id -> (ts in µs, its newest row): what telemetry_latest needs.
    latest: dict[str, tuple[int, bytes]] = field(default_factory=dict)

    @property
    def nbytes(self) -> int:
        return len(self.payload) + sum(len(r) for _, r in self.latest.values())


@dataclass(slots=True)
class EncodedBatch:
    rows: CopyRows
    rejections: list[str]  # "index: reason", in sample order
    foreign: set[str]  # asset ids that are not the gateway's


def timestamp_field(dt: datetime) -> bytes:
    """A ``timestamptz`` field (length and value) for binary COPY."""
    us = (dt - _UNIX_EPOCH) // timedelta(microseconds=1)
    return _TS(8, us - _PG_EPOCH_US)


def encode_batch(
    samples: Iterable[TelemetrySample],
    known_assets: Set[str],
    received_at: datetime,
    now: datetime,
    max_future_skew: timedelta,
) -> EncodedBatch:
    """Validate and encode ``samples``: the accepted ones become COPY rows,
    the others rejections (unknown asset first, then ``sample_problem``)."""
    limit_us = (now + max_future_skew - _UNIX_EPOCH) // timedelta(microseconds=1)
    received = timestamp_field(received_at)
    heads: dict[str, bytes] = {}  # asset_id -> field count + asset_id field
    states: dict[str, bytes] = {}  # a small vocabulary: encoded once per batch
    parts: list[bytes] = []
    newest: dict[str, tuple[int, int]] = {}  # asset_id -> (ts µs, index in parts)
    rejections: list[str] = []
    foreign: set[str] = set()
    mid_full, text_field, details_field = _MID_FULL, _text_field, _details_field
    pg_epoch, min_us, ncols = _PG_EPOCH_US, _MIN_US, len(COLUMNS)

    for i, s in enumerate(samples):
        aid = s.asset_id
        head = heads.get(aid)
        if head is None:
            if aid not in known_assets:
                rejections.append(f"{i}: asset {aid!r} is not one of this gateway's")
                foreign.add(aid)
                continue
            raw = aid.encode()
            head = heads[aid] = _HEAD(ncols, len(raw)) + raw if aid and "\x00" not in aid else b""
        t = s.ts
        us = t.seconds * 1_000_000 + t.nanos // 1000
        p, q, soc = s.p_kw, s.q_kvar, s.soc_pct
        ach, adis = s.available_charge_kw, s.available_discharge_kw
        v, f = s.voltage_v, s.frequency_hz
        # Any inf or NaN makes this NaN (never 0.0); unset fields read as 0.0.
        bad = (p - p) + (q - q) + (soc - soc) + (ach - ach) + (adis - adis) + (v - v) + (f - f)
        state = s.state
        if state:
            state_b = states.get(state)
            if state_b is None:
                state_b = states[state] = text_field(state)
        elif s.HasField("state"):
            state_b = b"\x00\x00\x00\x00"
        else:
            state_b = _NULL
        fields = s.details.fields  # unset reads as empty: both are {}
        det = details_field(fields) if fields else _EMPTY_DETAILS
        if bad or not head or us > limit_us or us < min_us or not state_b or not det:
            problem, row = _slow_row(s, received_at, now, max_future_skew)
            if problem is not None:
                rejections.append(f"{i}: {problem}")
                continue
            parts.append(row)
        else:
            if p and q and soc and ach and adis and v and f:
                mid = mid_full(
                    8, us - pg_epoch, received, 8, p, 8, q, 8, soc, 8, ach, 8, adis, 8, v, 8, f
                )
            else:
                mid = _mid_sparse(s, us - pg_epoch, received, (p, q, soc, ach, adis, v, f))
            parts.append(head + mid + state_b + det)
        seen = newest.get(aid)
        if seen is None or seen[0] < us:
            newest[aid] = (us, len(parts) - 1)

    latest = {aid: (us, parts[at]) for aid, (us, at) in newest.items()}
    return EncodedBatch(CopyRows(b"".join(parts), len(parts), latest), rejections, foreign)


def encode_samples(samples: Sequence[Sample], received_at: datetime) -> CopyRows:
    """Rows for ``samples`` as they are (no checks): the general encoder, for
    samples that are already validated, and for tests."""
    received = timestamp_field(received_at)
    parts: list[bytes] = []
    newest: dict[str, tuple[int, int]] = {}
    for s in samples:
        us = (s.ts - _UNIX_EPOCH) // timedelta(microseconds=1)
        parts.append(_sample_row(s, us, received))
        seen = newest.get(s.asset_id)
        if seen is None or seen[0] < us:
            newest[s.asset_id] = (us, len(parts) - 1)
    latest = {aid: (us, parts[at]) for aid, (us, at) in newest.items()}
    return CopyRows(b"".join(parts), len(parts), latest)


def merge_latest(rows: Iterable[CopyRows]) -> list[bytes]:
    """The newest row per asset over several batches."""
    merged: dict[str, tuple[int, bytes]] = {}
    for r in rows:
        for aid, entry in r.latest.items():
            seen = merged.get(aid)
            if seen is None or seen[0] < entry[0]:
                merged[aid] = entry
    return [row for _, row in merged.values()]


# --- fields ------------------------------------------------------------------


def _text_field(value: str) -> bytes:
    """A text field, or b"" when PostgreSQL cannot store it (NUL)."""
    if "\x00" in value:
        return b""
    raw = value.encode()
    return _I32(len(raw)) + raw


def _mid_sparse(s: TelemetrySample, ts: int, received: bytes, values: tuple[float, ...]) -> bytes:
    """ts, received_at and the core values when some are zero or unset."""
    has = s.HasField
    out = [_TS(8, ts), received]
    for name, value in zip(CORE_FIELDS, values, strict=True):
        out.append(_F8(8, value) if value or has(name) else _NULL)
    return b"".join(out)


def _details_field(fields: Any) -> bytes:
    """``details`` as a jsonb field, or b"" when it needs the slow path (a
    non-finite number, a NUL, or nesting: checked there)."""
    out: dict[str, Any] = {}
    for k in fields:
        val = fields[k]
        x = val.number_value
        if x:  # non-zero (or NaN): only a number_value reads as non-zero
            if x - x:  # inf or NaN
                return b""
            out[k] = x
        else:
            kind = val.WhichOneof("kind")
            if kind == "string_value":
                text = val.string_value
                if "\x00" in text:
                    return b""
                out[k] = text
            elif kind == "number_value":
                out[k] = x
            elif kind == "bool_value":
                out[k] = val.bool_value
            elif kind is None or kind == "null_value":
                out[k] = None
            else:
                return b""
        if "\x00" in k:
            return b""
    doc = orjson.dumps(out, option=_OPTS)
    return _JSONB_HEAD(len(doc) + 1, 1) + doc


def _jsonb_field(value: Mapping[str, Any]) -> bytes:
    doc = orjson.dumps(value, option=_OPTS)
    return _JSONB_HEAD(len(doc) + 1, 1) + doc


def _sample_row(s: Sample, us: int, received: bytes) -> bytes:
    raw = s.asset_id.encode()
    out = [_HEAD(len(COLUMNS), len(raw)), raw, _TS(8, us - _PG_EPOCH_US), received]
    for name in CORE_FIELDS:
        value = getattr(s, name)
        out.append(_NULL if value is None else _F8(8, value))
    if s.state is None:
        out.append(_NULL)
    else:
        state = s.state.encode()
        out += (_I32(len(state)), state)
    out.append(_jsonb_field(s.details))
    return b"".join(out)


def _slow_row(
    raw: TelemetrySample, received_at: datetime, now: datetime, skew: timedelta
) -> tuple[str | None, bytes]:
    """(problem, b"") or (None, row): the reference checks, for what the
    fast path could not prove storable."""
    try:
        sample = sample_from_pb(raw)
    except OverflowError:  # beyond what a datetime (and the table) can hold
        return f"ts {raw.ts.seconds}s from the Unix epoch is out of range", b""
    problem = sample_problem(sample, now, skew)
    if problem is not None:
        return problem, b""
    us = (sample.ts - _UNIX_EPOCH) // timedelta(microseconds=1)
    return None, _sample_row(sample, us, timestamp_field(received_at))
