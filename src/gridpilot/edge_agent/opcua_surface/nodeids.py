"""The address space's NodeId scheme (pure: no asyncua).

Every node of the surface lives in the agent's namespace (registered first,
so ``ns=2``; a client should resolve it by URI: ``nsu=<namespace_uri>``) and
has a *string* NodeId that is its browse path below ``Objects``, joined with
``/``::

    Sites
    Sites/<site_id>
    Sites/<site_id>/Agent/{GatewayId, CloudConnected, Arbitration}
    Sites/<site_id>/<asset_id>
    Sites/<site_id>/<asset_id>/Telemetry/<field>            (p_kw, soc_pct, …)
    Sites/<site_id>/<asset_id>/Control/{SetpointKw, SetpointActualKw,
                                         ActiveDispatchId, CommandStatus, Mode, Release}

Site and asset ids are identifiers (letters, digits, ``.``, ``_``, ``-``:
never ``/``), so a NodeId string names exactly one path, and the same config
gives the same ids after every restart: SCADA tag paths stay valid. Each
segment is also the node's BrowseName (in the agent namespace) and its
DisplayName.
"""

from __future__ import annotations

from enum import StrEnum

ROOT = "Sites"
AGENT = "Agent"
TELEMETRY = "Telemetry"
CONTROL = "Control"
RESERVED_ASSET_IDS = frozenset({AGENT})  # would collide with Sites/<site>/Agent


class AgentNode(StrEnum):
    GATEWAY_ID = "GatewayId"
    CLOUD_CONNECTED = "CloudConnected"
    ARBITRATION = "Arbitration"


class ControlNode(StrEnum):
    SETPOINT_KW = "SetpointKw"
    SETPOINT_ACTUAL_KW = "SetpointActualKw"
    ACTIVE_DISPATCH_ID = "ActiveDispatchId"
    COMMAND_STATUS = "CommandStatus"
    MODE = "Mode"
    RELEASE = "Release"


WRITABLE_CONTROLS = frozenset({ControlNode.SETPOINT_KW, ControlNode.RELEASE})


def path_id(*segments: str) -> str:
    return "/".join(segments)


def site_id(site: str) -> str:
    return path_id(ROOT, site)


def agent_id(site: str, node: AgentNode | None = None) -> str:
    return path_id(ROOT, site, AGENT) if node is None else path_id(ROOT, site, AGENT, node)


def asset_id(site: str, asset: str) -> str:
    return path_id(ROOT, site, asset)


def telemetry_id(site: str, asset: str, field: str | None = None) -> str:
    base = path_id(ROOT, site, asset, TELEMETRY)
    return base if field is None else path_id(base, field)


def control_id(site: str, asset: str, node: ControlNode | None = None) -> str:
    base = path_id(ROOT, site, asset, CONTROL)
    return base if node is None else path_id(base, node)


def parse_control_id(node_id: str) -> tuple[str, str, ControlNode] | None:
    """(site, asset, control) of a control variable's NodeId string, else None."""
    parts = node_id.split("/")
    if len(parts) != 5 or parts[0] != ROOT or parts[3] != CONTROL:
        return None
    try:
        return parts[1], parts[2], ControlNode(parts[4])
    except ValueError:
        return None
