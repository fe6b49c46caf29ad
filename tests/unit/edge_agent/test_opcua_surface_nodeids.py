"""The address space: NodeId scheme, browse names, types, units, access."""

from __future__ import annotations

from asyncua import ua

from gridpilot.core.assets import Asset, AssetType, PowerLimits
from gridpilot.edge_agent.opcua_surface import address_space
from gridpilot.edge_agent.opcua_surface import nodeids as ids
from gridpilot.edge_agent.opcua_surface.nodeids import AgentNode, ControlNode
from gridpilot.edge_agent.opcua_surface.units import UNITS, unece_unit_id

BESS = Asset("bess-1", "site-1", AssetType.BESS, PowerLimits(-100, 100), default_p_kw=0)
PV = Asset("pv-1", "site-1", AssetType.PV, PowerLimits(0, 50), default_p_kw=50)


def test_node_id_strings_are_browse_paths() -> None:
    assert ids.site_id("s") == "Sites/s"
    assert ids.agent_id("s", AgentNode.CLOUD_CONNECTED) == "Sites/s/Agent/CloudConnected"
    assert ids.telemetry_id("s", "b", "p_kw") == "Sites/s/b/Telemetry/p_kw"
    assert ids.control_id("s", "b", ControlNode.SETPOINT_KW) == "Sites/s/b/Control/SetpointKw"
    assert ids.parse_control_id("Sites/s/b/Control/Release") == ("s", "b", ControlNode.RELEASE)
    for other in ("Sites/s/b/Telemetry/p_kw", "Sites/s/b/Control/Nope", "X/s/b/Control/Mode"):
        assert ids.parse_control_id(other) is None


def test_unece_unit_ids() -> None:
    assert unece_unit_id("KWT") == 0x4B5754
    assert unece_unit_id("P1") == 0x5031
    assert unece_unit_id("DD") == 17476
    assert UNITS["rpm"].unit_id == 5059638  # M46, revolution per minute
    assert UNITS["m/s"].unit_id == 5067859  # MTS


def _by_id(items: list[ua.AddNodesItem]) -> dict[str, ua.AddNodesItem]:
    return {str(i.RequestedNewNodeId.Identifier): i for i in items}


def test_build_is_deterministic_and_in_the_agent_namespace() -> None:
    space, items = address_space.build(2, "site-1", [BESS, PV])
    again = address_space.build(2, "site-1", [BESS, PV])[1]
    assert [i.RequestedNewNodeId for i in items] == [i.RequestedNewNodeId for i in again]
    assert all(i.RequestedNewNodeId.NamespaceIndex == 2 for i in items)
    by_id = _by_id(items)
    # parents come before their children
    seen: set[str] = set()
    for item in items:
        parent = item.ParentNodeId
        assert parent.NamespaceIndex == 0 or str(parent.Identifier) in seen
        seen.add(str(item.RequestedNewNodeId.Identifier))
    # browse names are in ns=2 (properties keep the standard ns=0 names)
    p = by_id["Sites/site-1/bess-1/Telemetry/p_kw"]
    assert p.BrowseName == ua.QualifiedName("p_kw", 2)
    assert p.NodeAttributes.DataType == ua.NodeId(ua.ObjectIds.Double)
    assert p.NodeAttributes.UserAccessLevel == ua.AccessLevel.CurrentRead.mask
    eu = by_id["Sites/site-1/bess-1/Telemetry/p_kw/EngineeringUnits"]
    assert eu.BrowseName == ua.QualifiedName("EngineeringUnits", 0)
    assert eu.NodeAttributes.Value.Value.UnitId == unece_unit_id("KWT")
    state = by_id["Sites/site-1/bess-1/Telemetry/state"]
    assert state.NodeAttributes.DataType == ua.NodeId(ua.ObjectIds.String)
    assert "Sites/site-1/bess-1/Telemetry/state/EngineeringUnits" not in by_id
    assert "Sites/site-1/pv-1/Telemetry/soh_pct" not in by_id  # per asset type
    assert "Sites/site-1/pv-1/Telemetry/irradiance_w_m2" in by_id
    assert "Sites/site-1/bess-1/Telemetry/quality" not in by_id  # reserved fields stay out


def test_only_setpoint_and_release_are_writable() -> None:
    space, items = address_space.build(2, "site-1", [BESS])
    by_id = _by_id(items)
    write = ua.AccessLevel.CurrentRead.mask | ua.AccessLevel.CurrentWrite.mask
    for control in ControlNode:
        attrs = by_id[ids.control_id("site-1", "bess-1", control)].NodeAttributes
        writable = control in (ControlNode.SETPOINT_KW, ControlNode.RELEASE)
        assert (attrs.AccessLevel == write) is writable, control
        assert space.control_of[space.controls[("bess-1", control)]] == ("bess-1", control)
    setpoint = ids.control_id("site-1", "bess-1", ControlNode.SETPOINT_KW)
    assert by_id[setpoint].NodeAttributes.DataType == ua.NodeId(ua.ObjectIds.Double)
    limits = by_id[f"{setpoint}/EURange"].NodeAttributes.Value.Value
    assert (limits.Low, limits.High) == (-100, 100)
    release = by_id[ids.control_id("site-1", "bess-1", ControlNode.RELEASE)]
    assert release.NodeAttributes.DataType == ua.NodeId(ua.ObjectIds.Boolean)
    assert set(space.agent) == set(AgentNode)
