"""What an agent sends that the database cannot store, or that is no value at
all, is refused naming the field (or made storable, for free text): never a
database error that ends the stream, to be re-sent and fail again forever."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from gridpilot.core.dispatch import LOCAL_DISPATCH_PREFIX
from gridpilot.core.errors import ValidationFailed
from gridpilot.ingest.local_dispatches import LocalDispatchRefused, local_dispatch_input
from gridpilot.schema.pb import agent_pb2 as pb
from gridpilot.wire.dispatch import ack_problem
from gridpilot.wire.session import check_hello_text
from gridpilot.wire.text import clean_text
from gridpilot.wire.times import ts_to_pb


@pytest.mark.parametrize(
    ("hello", "field"),
    [
        (pb.Hello(gateway_id="gw-1", site_id="site\x001"), "hello.site_id"),
        (pb.Hello(gateway_id="gw-1", site_id="s", site_name="x" * 201), "hello.site_name"),
        (pb.Hello(gateway_id="gw-1", site_id="s", agent_version="1\x00"), "hello.agent_version"),
        (
            pb.Hello(gateway_id="gw-1", site_id="s", assets=[pb.AssetInfo(asset_id="a\x00")]),
            "hello.assets[0].asset_id",
        ),
        (
            pb.Hello(gateway_id="gw-1", site_id="s", assets=[pb.AssetInfo(name="\x00")]),
            "hello.assets[0].name",
        ),
    ],
)
def test_hello_text_the_database_cannot_store_is_refused_naming_the_field(
    hello: pb.Hello, field: str
) -> None:
    with pytest.raises(ValidationFailed) as err:
        check_hello_text(hello)
    assert err.value.field == field and field in err.value.message


def test_a_storable_hello_passes() -> None:
    check_hello_text(pb.Hello(gateway_id="gw-1", site_id="site-1", site_name="Site Ünïcode"))


@pytest.mark.parametrize(
    ("ack", "problem"),
    [
        (pb.DispatchAck(dispatch_id="d\x00"), "dispatch_ack.dispatch_id"),
        (pb.DispatchAck(dispatch_id="d" * 201), "dispatch_ack.dispatch_id"),
        (pb.DispatchAck(dispatch_id="d", reason=999), "dispatch_ack.reason 999"),  # type: ignore[arg-type]
        (pb.DispatchAck(dispatch_id="d", time={"seconds": 10**12}), "dispatch_ack.time"),
        (pb.DispatchAck(dispatch_id="d", time={"seconds": -(10**12)}), "dispatch_ack.time"),
    ],
)
def test_an_ack_that_is_no_value_is_refused(ack: pb.DispatchAck, problem: str) -> None:
    found = ack_problem(ack)
    assert found is not None and found.startswith(problem)


def test_a_good_ack_has_no_problem() -> None:
    ack = pb.DispatchAck(
        dispatch_id="d-1", reason=pb.REASON_CODE_OUT_OF_LIMITS, time=ts_to_pb(datetime.now(UTC))
    )
    assert ack_problem(ack) is None


def test_free_text_is_made_storable() -> None:
    assert clean_text("bad\x00detail", 1000) == "bad\ufffddetail"
    assert clean_text("x" * 2000, 1000) == "x" * 1000


def _local(**kw: object) -> pb.LocalDispatch:
    now = datetime.now(UTC)
    fields: dict[str, object] = {
        "dispatch_id": f"{LOCAL_DISPATCH_PREFIX}1",
        "asset_id": "bess-1",
        "p_kw": 10.0,
        "start": ts_to_pb(now),
        "end": ts_to_pb(now + timedelta(minutes=5)),
        "actor": "opcua:op",
    }
    return pb.LocalDispatch(**{**fields, **kw})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (_local(dispatch_id=f"{LOCAL_DISPATCH_PREFIX}\x00"), "dispatch_id"),
        (_local(start={"seconds": 10**12}), "start"),
        (_local(end={"seconds": 10**12}), "end"),
    ],
)
def test_a_local_dispatch_that_cannot_be_stored_is_refused(
    raw: pb.LocalDispatch, field: str
) -> None:
    with pytest.raises(LocalDispatchRefused) as err:
        local_dispatch_input(raw, "gw-1", "site-1", {"bess-1"})
    assert err.value.field == field


def test_a_local_dispatchs_actor_is_made_storable() -> None:
    inp = local_dispatch_input(_local(actor="op\x00x"), "gw-1", "site-1", {"bess-1"})
    assert inp.submitted_by == "op\ufffdx@gw-1"
