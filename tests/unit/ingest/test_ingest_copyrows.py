"""The batch encoder (the ingest hot path) against the path it replaced:
``sample_from_pb`` + ``sample_problem`` per sample, then psycopg's own binary
dumpers per row. Same rows byte for byte, same rejections, same latest row."""

from __future__ import annotations

import math
import random
import struct
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import psycopg
import pytest
from psycopg.adapt import AdaptersMap, PyFormat, Transformer
from psycopg.types.json import JsonbBinaryDumper

from gridpilot.core.telemetry import CORE_FIELDS, Sample, sample_problem
from gridpilot.ingest.copyrows import (
    COPY_TYPES,
    EncodedBatch,
    encode_batch,
    encode_samples,
    merge_latest,
)
from gridpilot.schema.pb import agent_pb2 as pb
from gridpilot.wire.telemetry import sample_from_pb, sample_to_pb

NOW = datetime(2026, 3, 1, 12, 0, 0, 250000, tzinfo=UTC)
RECEIVED = NOW + timedelta(microseconds=7)
SKEW = timedelta(minutes=5)
KNOWN = frozenset({"bess-1", "pv-1", "ev-ü"})


class _OldJsonbDumper(JsonbBinaryDumper):
    """What the writer registered for ``details`` before the encoder."""

    def dump(self, obj: Any) -> bytes:
        return b"\x01" + orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS)


class _Context:
    def __init__(self) -> None:
        self.adapters = AdaptersMap(psycopg.adapters)
        self.adapters.register_dumper(dict, _OldJsonbDumper)
        self.connection = None


def _psycopg_row(row: Sequence[Any]) -> bytes:
    tx = Transformer(_Context())
    oids = [psycopg.adapters.types[name].oid for name in COPY_TYPES]
    tx.set_dumper_types(oids, psycopg.pq.Format.BINARY)
    fields = tx.dump_sequence(row, [PyFormat.BINARY] * len(row))
    out = struct.pack(">h", len(fields))
    for f in fields:
        out += b"\xff\xff\xff\xff" if f is None else struct.pack(">i", len(f)) + bytes(f)
    return out


def _reference(samples: Sequence[pb.TelemetrySample]) -> tuple[list[bytes], list[str]]:
    """The replaced path: the servicer's loop, then the writer's rows."""
    rows, rejections = [], []
    for i, raw in enumerate(samples):
        if raw.asset_id not in KNOWN:
            rejections.append(f"{i}: asset {raw.asset_id!r} is not one of this gateway's")
            continue
        s = sample_from_pb(raw)
        problem = sample_problem(s, NOW, SKEW)
        if problem is not None:
            rejections.append(f"{i}: {problem}")
            continue
        core = [getattr(s, name) for name in CORE_FIELDS]
        rows.append(_psycopg_row((s.asset_id, s.ts, RECEIVED, *core, s.state, s.details)))
    return rows, rejections


def _pb(asset_id: str, ts: datetime, **fields: Any) -> pb.TelemetrySample:
    details = fields.pop("details", None)
    out = pb.TelemetrySample(asset_id=asset_id, **fields)
    out.ts.FromDatetime(ts)
    if details is not None:
        out.details.update(details)
    return out


def _encode(samples: Sequence[pb.TelemetrySample]) -> EncodedBatch:
    # Through the wire format, as the servicer gets them.
    batch = pb.TelemetryBatch(batch_seq=1, samples=samples)
    wire = pb.TelemetryBatch.FromString(batch.SerializeToString())
    return encode_batch(wire.samples, KNOWN, RECEIVED, NOW, SKEW)


def _assert_same_as_reference(samples: Sequence[pb.TelemetrySample]) -> EncodedBatch:
    rows, rejections = _reference(samples)
    got = _encode(samples)
    assert got.rejections == rejections
    assert got.rows.count == len(rows)
    assert got.rows.payload == b"".join(rows)
    return got


T = NOW - timedelta(seconds=30)
FULL = {name: 1.5 + i for i, name in enumerate(CORE_FIELDS)}


def test_accepted_rows_are_byte_for_byte_what_psycopg_made_of_them() -> None:
    _assert_same_as_reference(
        [
            _pb("bess-1", T, state="charging", details={"soh_pct": 98.5, "temp": 21.0}, **FULL),
            _pb("bess-1", T + timedelta(microseconds=1), **FULL),  # no state, no details
            _pb("pv-1", T, p_kw=0.0, soc_pct=-0.0),  # zero is a value, unset is NULL
            _pb("pv-1", T + timedelta(seconds=1), state=""),  # empty state is not NULL
            _pb("ev-ü", T, state="plugged-ü", details={"ü": "ö", "n": None, "b": False}),
            _pb(
                "bess-1",
                T + timedelta(seconds=2),
                details={"nested": {"cells": [3.3, 3.31, None, True], "x": {"y": "z"}}},
                p_kw=-250.0,
            ),
            _pb("bess-1", T + timedelta(seconds=3), details={"zero": 0.0, "neg": -0.0, "s": ""}),
            _pb("bess-1", T + timedelta(seconds=4), details={}),
            _pb("bess-1", NOW + SKEW),  # exactly at the skew limit: accepted
            _pb("bess-1", datetime(1, 1, 1, tzinfo=UTC)),  # the earliest datetime
        ]
    )


def test_rejections_are_the_same_with_the_same_messages() -> None:
    nan, inf = math.nan, math.inf
    got = _assert_same_as_reference(
        [
            _pb("bess-1", T, p_kw=1.0),
            _pb("bess-9", T, p_kw=1.0),  # not this gateway's
            _pb("", T),
            _pb("bess-1", T + timedelta(seconds=1), q_kvar=nan),
            _pb("bess-1", T + timedelta(seconds=2), frequency_hz=-inf, p_kw=inf),
            _pb("bess-1", NOW + SKEW + timedelta(microseconds=1)),  # beyond the skew
            _pb("bess-1", T + timedelta(seconds=3), state="ok\x00"),
            _pb("bess-1", T + timedelta(seconds=4), details={"t": nan}),
            _pb("bess-1", T + timedelta(seconds=5), details={"t": [1.0, {"u": inf}]}),
            _pb("bess-1", T + timedelta(seconds=6), details={"k\x00": 1.0}),
            _pb("bess-1", T + timedelta(seconds=7), details={"k": "v\x00"}),
            _pb("bess-1", T + timedelta(seconds=8), details={"k": {"deep\x00": 1.0}}),
            _pb("pv-1", T, p_kw=2.0),
        ]
    )
    assert [r.split(":")[0] for r in got.rejections] == [str(i) for i in range(1, 12)]
    assert got.foreign == {"bess-9", ""}
    assert got.rows.count == 2


def test_a_ts_no_datetime_can_hold_is_rejected_not_raised() -> None:
    far_future = pb.TelemetrySample(asset_id="bess-1")
    far_future.ts.seconds = 400_000_000_000  # year ~14,600
    far_past = pb.TelemetrySample(asset_id="bess-1")
    far_past.ts.seconds = -70_000_000_000  # before year 1
    got = _encode([far_future, far_past, _pb("bess-1", T)])
    assert got.rows.count == 1
    assert got.rejections == [
        "0: ts 400000000000s from the Unix epoch is out of range",
        "1: ts -70000000000s from the Unix epoch is out of range",
    ]


def test_latest_is_the_newest_row_per_asset_first_one_on_a_tie() -> None:
    samples = [
        _pb("bess-1", T + timedelta(seconds=2), p_kw=2.0),
        _pb("bess-1", T + timedelta(seconds=5), p_kw=5.0),
        _pb("bess-1", T + timedelta(seconds=5), p_kw=6.0),  # same key, later in the batch
        _pb("pv-1", T, p_kw=1.0),
        _pb("bess-1", T + timedelta(seconds=1), p_kw=1.0),
    ]
    rows, _ = _reference(samples)
    got = _encode(samples)
    assert {aid: row for aid, (_, row) in got.rows.latest.items()} == {
        "bess-1": rows[1],
        "pv-1": rows[3],
    }
    older = _encode([_pb("bess-1", T, p_kw=0.5)]).rows
    assert merge_latest([older, got.rows]) == [rows[1], rows[3]]
    assert merge_latest([got.rows, older]) == [rows[1], rows[3]]


def test_encoding_samples_directly_gives_the_same_rows() -> None:
    samples = [
        Sample("bess-1", T, p_kw=1.0, state="ok", details={"a": [1.0, "x"]}),
        Sample("pv-1", T, soc_pct=0.0),
    ]
    rows = encode_samples(samples, RECEIVED)
    expected = [
        _psycopg_row(
            (s.asset_id, s.ts, RECEIVED, *[getattr(s, n) for n in CORE_FIELDS], s.state, s.details)
        )
        for s in samples
    ]
    assert rows.payload == b"".join(expected) and rows.count == 2
    assert rows.payload == _encode([sample_to_pb(s) for s in samples]).rows.payload


@pytest.mark.parametrize("seed", range(5))
def test_random_batches_match_the_reference(seed: int) -> None:
    rng = random.Random(seed)
    specials = [0.0, -0.0, math.nan, math.inf, -math.inf, 1e308, -5e-324, 123.456]

    def number() -> float:
        return rng.choice(specials) if rng.random() < 0.1 else rng.uniform(-500, 500)

    def detail_value(depth: int = 0) -> Any:
        kind = rng.random()
        if kind < 0.5:
            return number()
        if kind < 0.6:
            return rng.choice(["", "on", "x\x00y", "ü"])
        if kind < 0.7:
            return rng.choice([True, False, None])
        if depth < 2 and kind < 0.85:
            return {f"k{j}": detail_value(depth + 1) for j in range(rng.randint(0, 3))}
        if depth < 2:
            return [detail_value(depth + 1) for _ in range(rng.randint(0, 3))]
        return number()

    samples = []
    for _ in range(400):
        fields: dict[str, Any] = {n: number() for n in CORE_FIELDS if rng.random() < 0.8}
        if rng.random() < 0.8:
            fields["state"] = rng.choice(["ok", "", "charging", "fault\x00"])
        if rng.random() < 0.7:
            fields["details"] = {
                rng.choice(["soh_pct", "temp", "mode", "k\x00"]): detail_value()
                for _ in range(rng.randint(0, 4))
            }
        ts = NOW + timedelta(seconds=rng.uniform(-86400, 400))
        asset = rng.choice([*sorted(KNOWN), "other"])
        samples.append(_pb(asset, ts, **fields))
    got = _assert_same_as_reference(samples)
    assert 0 < got.rows.count < 400
