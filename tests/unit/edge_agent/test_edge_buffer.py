"""The telemetry buffer (SQLite) and the ack outbox: bounded, counted, acked away."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gridpilot.core.telemetry import Sample
from gridpilot.edge_agent.control.acks import Ack, AckHistory, AckOutbox, AckState
from gridpilot.edge_agent.telemetry.buffer import Batch, DropPolicy, StoredBatch
from gridpilot.edge_agent.telemetry.buffer_sqlite import MEMORY, BufferLocked, SqliteTelemetryBuffer
from gridpilot.wire import agent as wire
from gridpilot.wire.agent import batch_to_bytes

TS = datetime(2026, 1, 1, tzinfo=UTC)


def batch(seq: int, samples: int = 1) -> Batch:
    return Batch(
        seq,
        tuple(Sample(f"a{i}", TS, p_kw=float(seq), details={"x": 1.5}) for i in range(samples)),
    )


SIZE = len(batch_to_bytes(batch(10)))  # every 2-digit seq: same size


def stored(b: Batch) -> StoredBatch:
    """What the buffer hands back for ``b``: its serialized TelemetryBatch."""
    return StoredBatch(b.seq, batch_to_bytes(b))


def seqs(batches: list[StoredBatch]) -> list[int]:
    return [b.seq for b in batches]


def buffer(
    path: Path | str = MEMORY,
    batches: int = 100,
    policy: DropPolicy = DropPolicy.DROP_OLDEST,
    **kw: object,
) -> SqliteTelemetryBuffer:
    kw.setdefault("max_age_s", 3600)
    return SqliteTelemetryBuffer(path, max_bytes=batches * SIZE, policy=policy, **kw)  # type: ignore[arg-type]


def test_a_batch_comes_back_as_it_went_in() -> None:
    buf = buffer()
    b = Batch(11, (Sample("bess", TS, p_kw=-3.5, soc_pct=50.0, state="ok", details={"t": 21.0}),))
    buf.put(b)
    assert buf.next_after(0) == stored(b)
    assert buf.stats().bytes == len(batch_to_bytes(b))


def test_a_stored_batch_goes_up_as_the_message_the_batch_makes() -> None:
    """The buffer hands over the bytes it stored (the same format as ever, so
    an existing buffer file reads back); framed, they are the same message as
    the batch encoded from its samples, and decode to the same samples."""
    b = Batch(12, (Sample("bess", TS, p_kw=-3.5, soc_pct=50.0, details={"t": 21.0}),))
    buf = buffer()
    buf.put(b)
    held = buf.next_after(0)
    assert held is not None
    message = wire.stored_batch(held.payload)
    assert message == wire.batch(b)
    assert wire.batch_from_bytes(message.telemetry.SerializeToString()) == b


def test_drop_oldest_when_full_drops_the_oldest_and_counts_them() -> None:
    buf = buffer(batches=3)
    assert [buf.put(batch(s, 1)) for s in (10, 11, 12)] == [0, 0, 0]
    assert buf.put(batch(13)) == 1
    assert buf.put(batch(14)) == 1
    assert seqs(buf.pending()) == [12, 13, 14]
    st = buf.stats()
    assert (st.batches, st.bytes) == (3, 3 * SIZE)
    assert (st.dropped_batches, st.dropped_samples) == (2, 2)
    assert (st.stored_batches, st.stored_samples) == (5, 5)


def test_drop_newest_when_full_refuses_the_new_batch_and_counts_it() -> None:
    buf = buffer(batches=3, policy=DropPolicy.DROP_NEWEST)
    for s in (10, 11, 12):
        buf.put(batch(s))
    assert buf.put(batch(13)) == 1
    assert seqs(buf.pending()) == [10, 11, 12]  # the history is kept
    assert buf.stats().dropped_batches == 1
    assert buf.last_seq == 13  # the seq is used up all the same
    buf.ack(10)
    assert buf.put(batch(14)) == 0  # room again
    assert seqs(buf.pending()) == [11, 12, 14]


def test_drop_oldest_frees_as_many_small_batches_as_a_big_one_needs() -> None:
    small = buffer(batches=4)
    for s in (10, 11, 12, 13):
        small.put(batch(s))
    big = batch(14, samples=3)  # about three small batches' bytes
    dropped = small.put(big)
    assert small.stats().bytes <= 4 * SIZE
    assert dropped >= 2 and small.pending()[-1] == stored(big)
    assert small.stats().dropped_samples == dropped


def test_a_batch_bigger_than_the_whole_buffer_is_dropped_and_counted() -> None:
    buf = buffer(batches=2)
    buf.put(batch(10))
    assert buf.put(batch(11, samples=5)) == 1
    assert seqs(buf.pending()) == [10]
    assert (buf.stats().dropped_batches, buf.stats().dropped_samples) == (1, 5)


def test_batches_older_than_max_age_are_dropped_and_counted() -> None:
    clock = [1000.0]
    buf = buffer(max_age_s=60, now=lambda: clock[0])
    buf.put(batch(10, 2))
    clock[0] += 30
    buf.put(batch(11))
    clock[0] += 31  # seq 10 is 61 s old now
    assert buf.expire() == 1
    assert seqs(buf.pending()) == [11]
    clock[0] += 100
    assert buf.put(batch(12)) == 1  # put expires too
    assert seqs(buf.pending()) == [12]
    assert (buf.stats().dropped_batches, buf.stats().dropped_samples) == (2, 3)


def test_ack_removes_exactly_that_batch() -> None:
    buf = buffer()
    for s in (1, 2, 3):
        buf.put(batch(s))
    assert buf.ack(2) is True
    assert buf.ack(2) is False  # already gone: harmless
    assert buf.ack(99) is False
    assert seqs(buf.pending()) == [1, 3]
    assert len(buf) == 2


def test_pending_after_and_next_after_walk_oldest_first() -> None:
    buf = buffer()
    for s in (5, 6, 9):
        buf.put(batch(s))
    assert seqs(buf.pending(after=5)) == [6, 9]
    assert buf.next_after(0) == stored(batch(5))
    assert buf.next_after(6) == stored(batch(9))
    assert buf.next_after(9) is None


def test_batch_seq_must_increase() -> None:
    buf = buffer()
    buf.put(batch(5))
    with pytest.raises(ValueError, match="not above"):
        buf.put(batch(5))
    with pytest.raises(ValueError):
        SqliteTelemetryBuffer(MEMORY, max_bytes=0, max_age_s=1)


def test_contents_and_counters_survive_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "gw.telemetry.sqlite3"
    buf = buffer(path, batches=2)
    for s in (10, 11, 12):
        buf.put(batch(s))
    buf.ack(12)
    buf.close()
    again = buffer(path, batches=2)
    assert seqs(again.pending()) == [11]
    st = again.stats()
    assert (st.batches, st.bytes, st.stored_batches, st.dropped_batches) == (1, SIZE, 3, 1)
    assert again.last_seq == 12


def test_a_second_agent_on_the_same_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "gw.telemetry.sqlite3"
    first = buffer(path)
    with pytest.raises(BufferLocked, match="another agent"):
        buffer(path)
    first.close()
    buffer(path).close()  # free again once the first is closed


def test_what_put_returned_survives_a_kill_9_of_the_agent(tmp_path: Path) -> None:
    path = tmp_path / "gw.telemetry.sqlite3"
    code = textwrap.dedent(
        f"""
        import os, signal, sys
        from datetime import UTC, datetime
        from gridpilot.core.telemetry import Sample
        from gridpilot.edge_agent.telemetry.buffer import Batch
        from gridpilot.edge_agent.telemetry.buffer_sqlite import SqliteTelemetryBuffer
        buf = SqliteTelemetryBuffer({str(path)!r}, max_bytes=10**6, max_age_s=3600)
        ts = datetime(2026, 1, 1, tzinfo=UTC)
        for seq in range(1, 201):
            buf.put(Batch(seq, (Sample("a", ts, p_kw=float(seq)),)))
            if seq % 3 == 0:
                buf.ack(seq)
        print("put", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert run.returncode == -signal.SIGKILL, run.stderr
    assert run.stdout.strip() == "put"
    assert os.path.exists(str(path) + "-wal")  # the WAL was never checkpointed by a close
    buf = buffer(path)  # the lock died with its holder
    assert seqs(buf.pending()) == [s for s in range(1, 201) if s % 3]
    assert buf.stats().stored_batches == 200 and buf.last_seq == 200


def ack(dispatch_id: str, state: AckState = AckState.ACCEPTED) -> Ack:
    return Ack(dispatch_id, "a", state, TS)


def test_ack_outbox_is_bounded_and_counts_drops() -> None:
    box = AckOutbox(max_acks=2)
    for d in ("d1", "d2", "d3"):
        box.put(ack(d))
    assert box.dropped == 1 and len(box) == 2
    first = box.peek()
    assert first is not None and first.dispatch_id == "d2"
    assert box.pop().dispatch_id == "d2"


def test_ack_history_keeps_the_latest_per_dispatch_bounded() -> None:
    history = AckHistory(max_dispatches=2)
    history.record(ack("d1"))
    history.record(ack("d1", AckState.APPLIED))
    history.record(ack("d2"))
    latest = history.latest("d1")
    assert latest is not None and latest.state is AckState.APPLIED
    history.record(ack("d3"))
    assert history.latest("d1") is None  # least recently updated goes first
    assert history.latest("d3") is not None


def test_where_the_buffer_lives(tmp_path: Path) -> None:
    from gridpilot.edge_agent.config import SiteConfig
    from gridpilot.edge_agent.runtime import buffer_path

    site = {
        "version": 1,
        "gateway_id": "gw-9",
        "site": {"id": "s"},
        "headend": {"address": "127.0.0.1:1", "insecure": True},
        "assets": [
            {
                "id": "pv",
                "type": "pv",
                "limits": {"p_min_kw": 0, "p_max_kw": 1},
                "default_p_kw": 1,
                "device": {"kind": "simulated"},
            }
        ],
    }
    cfg = SiteConfig.model_validate(site)
    assert buffer_path(cfg, tmp_path) == tmp_path / "gw-9.telemetry.sqlite3"  # --state-dir
    assert buffer_path(cfg, None) == MEMORY  # embedded without a state dir: not durable
    pinned = SiteConfig.model_validate({**site, "buffer": {"path": str(tmp_path / "b.db")}})
    assert buffer_path(pinned, tmp_path / "other") == tmp_path / "b.db"  # the config wins
