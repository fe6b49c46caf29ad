"""Opening a session: the agent's Hello (its site and assets), the headend's Welcome."""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import datetime

from gridpilot import __version__
from gridpilot.core.assets import Asset, PowerLimits
from gridpilot.core.errors import ValidationFailed
from gridpilot.schema.pb import agent_pb2 as pb

from .codes import ASSET_TYPE_FROM_PB, ASSET_TYPE_TO_PB
from .text import check_text
from .times import ts_to_pb


def hello(
    gateway_id: str, site_id: str, site_name: str, assets: Iterable[Asset]
) -> pb.AgentMessage:
    infos = [
        pb.AssetInfo(
            asset_id=a.asset_id,
            name=a.name,
            asset_type=ASSET_TYPE_TO_PB[a.asset_type],
            p_min_kw=a.limits.p_min_kw,
            p_max_kw=a.limits.p_max_kw,
            capacity_kwh=a.capacity_kwh,
            default_p_kw=a.default_p_kw,
        )
        for a in assets
    ]
    return pb.AgentMessage(
        hello=pb.Hello(
            gateway_id=gateway_id,
            site_id=site_id,
            site_name=site_name,
            assets=infos,
            agent_version=__version__,
        )
    )


def check_hello_text(hello: pb.Hello) -> None:
    """Every text field of a Hello (they name rows in the database)."""
    for name in ("gateway_id", "site_id", "site_name", "agent_version"):
        check_text(f"hello.{name}", getattr(hello, name))
    for i, a in enumerate(hello.assets):
        check_text(f"hello.assets[{i}].asset_id", a.asset_id)
        check_text(f"hello.assets[{i}].name", a.name)


def asset_from_pb(info: pb.AssetInfo, site_id: str, index: int) -> Asset:
    """An AssetInfo from Hello as a core Asset; ValidationFailed names the field."""
    where = f"hello.assets[{index}]"
    if not info.asset_id:
        raise ValidationFailed(f"{where}.asset_id is empty", field=f"{where}.asset_id")
    if info.asset_type not in ASSET_TYPE_FROM_PB:
        raise ValidationFailed(f"{where}.asset_type is not set", field=f"{where}.asset_type")
    for name in ("p_min_kw", "p_max_kw", "capacity_kwh", "default_p_kw"):
        if not math.isfinite(getattr(info, name)):
            raise ValidationFailed(f"{where}.{name} is not finite", field=f"{where}.{name}")
    try:
        limits = PowerLimits(info.p_min_kw, info.p_max_kw)
    except ValueError as exc:
        raise ValidationFailed(f"{where}: {exc}", field=f"{where}.p_min_kw") from exc
    if not limits.contains(info.default_p_kw):
        raise ValidationFailed(
            f"{where}.default_p_kw is outside its limits", field=f"{where}.default_p_kw"
        )
    return Asset(
        asset_id=info.asset_id,
        site_id=site_id,
        asset_type=ASSET_TYPE_FROM_PB[info.asset_type],
        limits=limits,
        name=info.name,
        capacity_kwh=info.capacity_kwh,
        default_p_kw=info.default_p_kw,
    )


def welcome(session_id: str, server_time: datetime, last_acked_batch_seq: int) -> pb.HeadendMessage:
    return pb.HeadendMessage(
        welcome=pb.Welcome(
            session_id=session_id,
            server_time=ts_to_pb(server_time),
            last_acked_batch_seq=last_acked_batch_seq,
        )
    )
