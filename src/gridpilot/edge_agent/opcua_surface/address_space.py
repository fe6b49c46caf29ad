"""Builds the surface's nodes (scheme: :mod:`.nodeids`) in one AddNodes call.

Everything is in the agent namespace with string NodeIds and BrowseNames in
that namespace (asyncua's ``add_variable(nodeid, "Name")`` would put the
BrowseName in namespace 0, breaking browse paths). Telemetry variables are
typed from the field catalogue (Double, String, Boolean), read-only, and
numeric ones carry an ``EngineeringUnits`` property (UN/CEFACT code).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from asyncua import ua

from gridpilot.core.assets import Asset
from gridpilot.core.telemetry_fields import FIELDS, FieldSpec

from . import nodeids as ids
from ._ua import std_node, str_node
from .nodeids import AgentNode, ControlNode
from .units import CEFACT_NAMESPACE_URI, unit_for

VARIANT = {
    "number": ua.VariantType.Double,
    "text": ua.VariantType.String,
    "bool": ua.VariantType.Boolean,
}

_CONTROL_TYPES: dict[ControlNode, tuple[ua.VariantType, str]] = {
    ControlNode.SETPOINT_KW: (
        ua.VariantType.Double,
        "write a power setpoint in kW (> 0 exports); becomes a local dispatch",
    ),
    ControlNode.SETPOINT_ACTUAL_KW: (ua.VariantType.Double, "the power last written to the device"),
    ControlNode.ACTIVE_DISPATCH_ID: (ua.VariantType.String, "the dispatch driving the asset"),
    ControlNode.COMMAND_STATUS: (ua.VariantType.String, "the latest command and its outcome"),
    ControlNode.MODE: (ua.VariantType.String, "who drives the asset: default, cloud or local"),
    ControlNode.RELEASE: (ua.VariantType.Boolean, "write true to end the local dispatch"),
}
_AGENT_TYPES: dict[AgentNode, tuple[ua.VariantType, str]] = {
    AgentNode.GATEWAY_ID: (ua.VariantType.String, "the agent's gateway id"),
    AgentNode.CLOUD_CONNECTED: (ua.VariantType.Boolean, "the link to the headend is up"),
    AgentNode.ARBITRATION: (ua.VariantType.String, "local vs cloud: the site's policy"),
}


@dataclass(frozen=True, slots=True)
class TelemetryNode:
    asset_id: str
    spec: FieldSpec
    node_id: ua.NodeId
    variant: ua.VariantType


@dataclass
class AddressSpace:
    """What the surface keeps of the nodes it built."""

    ns: int
    telemetry: list[TelemetryNode] = field(default_factory=list)
    # (asset_id, control) -> node id, and back
    controls: dict[tuple[str, ControlNode], ua.NodeId] = field(default_factory=dict)
    control_of: dict[ua.NodeId, tuple[str, ControlNode]] = field(default_factory=dict)
    agent: dict[AgentNode, ua.NodeId] = field(default_factory=dict)

    def node(self, path: str) -> ua.NodeId:
        return str_node(path, self.ns)


def telemetry_fields(asset: Asset) -> list[FieldSpec]:
    """The catalogue fields an asset of this type shows (not the reserved ones)."""
    return [
        f
        for f in FIELDS
        if not f.reserved
        and f.kind in VARIANT
        and (f.asset_types is None or asset.asset_type in f.asset_types)
    ]


def build(ns: int, site_id: str, assets: list[Asset]) -> tuple[AddressSpace, list[ua.AddNodesItem]]:
    """The nodes to add (parents first) and what the surface keeps of them."""
    space = AddressSpace(ns)
    items: list[ua.AddNodesItem] = []
    root = space.node(ids.ROOT)
    items.append(_object(root, ids.ROOT, std_node(ua.ObjectIds.ObjectsFolder), ns, folder=True))
    site = space.node(ids.site_id(site_id))
    items.append(_object(site, site_id, root, ns))

    agent = space.node(ids.agent_id(site_id))
    items.append(_object(agent, ids.AGENT, site, ns))
    for agent_node, (variant, text) in _AGENT_TYPES.items():
        node_id = space.node(ids.agent_id(site_id, agent_node))
        items.append(_variable(node_id, agent_node, agent, ns, variant, text))
        space.agent[agent_node] = node_id

    for asset in assets:
        a = asset.asset_id
        asset_node = space.node(ids.asset_id(site_id, a))
        items.append(_object(asset_node, a, site, ns, description=asset.name or a))
        telemetry = space.node(ids.telemetry_id(site_id, a))
        items.append(_object(telemetry, ids.TELEMETRY, asset_node, ns, folder=True))
        for spec in telemetry_fields(asset):
            path = ids.telemetry_id(site_id, a, spec.name)
            node_id = space.node(path)
            variant = VARIANT[spec.kind]
            unit = unit_for(spec.unit)
            description = f"{spec.description} [{spec.unit}]" if spec.unit else spec.description
            items.append(
                _variable(
                    node_id, spec.name, telemetry, ns, variant, description, analog=bool(unit)
                )
            )
            if unit is not None:
                items.append(_units(space, path, spec.unit))
            space.telemetry.append(TelemetryNode(a, spec, node_id, variant))
        control = space.node(ids.control_id(site_id, a))
        items.append(_object(control, ids.CONTROL, asset_node, ns, folder=True))
        for name, (variant, text) in _CONTROL_TYPES.items():
            path = ids.control_id(site_id, a, name)
            node_id = space.node(path)
            writable = name in ids.WRITABLE_CONTROLS
            items.append(_variable(node_id, name, control, ns, variant, text, writable=writable))
            if name in (ControlNode.SETPOINT_KW, ControlNode.SETPOINT_ACTUAL_KW):
                items.append(_units(space, path, "kW"))
            if name is ControlNode.SETPOINT_KW:  # what a write may ask for
                limits = ua.Range(Low=asset.limits.p_min_kw, High=asset.limits.p_max_kw)
                items.append(_property(space, path, "EURange", limits, ua.ObjectIds.Range))
            space.controls[(a, name)] = node_id
            space.control_of[node_id] = (a, name)
    return space, items


# ------------------------------------------------------------ AddNodes items


def _object(
    node_id: ua.NodeId,
    name: str,
    parent: ua.NodeId,
    ns: int,
    *,
    folder: bool = False,
    description: str = "",
) -> ua.AddNodesItem:
    item = ua.AddNodesItem()
    item.RequestedNewNodeId = node_id
    item.BrowseName = ua.QualifiedName(name, ua.UInt16(ns))
    item.NodeClass = ua.NodeClass.Object
    item.ParentNodeId = parent
    item.ReferenceTypeId = std_node(ua.ObjectIds.Organizes if folder else ua.ObjectIds.HasComponent)
    item.TypeDefinition = std_node(
        ua.ObjectIds.FolderType if folder else ua.ObjectIds.BaseObjectType
    )
    attrs = ua.ObjectAttributes()
    attrs.DisplayName = ua.LocalizedText(name)
    attrs.Description = ua.LocalizedText(description or name)
    attrs.EventNotifier = 0
    item.NodeAttributes = attrs
    return item


def _variable(
    node_id: ua.NodeId,
    name: str,
    parent: ua.NodeId,
    ns: int,
    variant: ua.VariantType,
    description: str,
    *,
    writable: bool = False,
    analog: bool = False,
) -> ua.AddNodesItem:
    item = ua.AddNodesItem()
    item.RequestedNewNodeId = node_id
    item.BrowseName = ua.QualifiedName(name, ua.UInt16(ns))
    item.NodeClass = ua.NodeClass.Variable
    item.ParentNodeId = parent
    item.ReferenceTypeId = std_node(ua.ObjectIds.HasComponent)
    item.TypeDefinition = std_node(
        ua.ObjectIds.BaseAnalogType if analog else ua.ObjectIds.BaseDataVariableType
    )
    attrs = ua.VariableAttributes()
    attrs.DisplayName = ua.LocalizedText(name)
    attrs.Description = ua.LocalizedText(description)
    attrs.DataType = std_node(variant.value)  # builtin types: DataType i=<VariantType>
    attrs.Value = ua.Variant()  # null until the first update (typed by DataType)
    attrs.ValueRank = ua.ValueRank.Scalar
    attrs.WriteMask = 0
    attrs.UserWriteMask = 0
    attrs.Historizing = False
    access = ua.AccessLevel.CurrentRead.mask
    if writable:
        access |= ua.AccessLevel.CurrentWrite.mask
    attrs.AccessLevel = access
    attrs.UserAccessLevel = access
    attrs.MinimumSamplingInterval = 0.0
    item.NodeAttributes = attrs
    return item


def _units(space: AddressSpace, parent: str, unit_text: str) -> ua.AddNodesItem:
    unit = unit_for(unit_text)
    assert unit is not None, unit_text
    eu = ua.EUInformation(
        NamespaceUri=CEFACT_NAMESPACE_URI,
        UnitId=unit.unit_id,
        DisplayName=ua.LocalizedText(unit.symbol),
        Description=ua.LocalizedText(unit.description),
    )
    return _property(space, parent, "EngineeringUnits", eu, ua.ObjectIds.EUInformation)


def _property(
    space: AddressSpace, parent: str, name: str, value: object, datatype: int
) -> ua.AddNodesItem:
    """A standard property of ``parent`` (NodeId ``<parent>/<name>``; the
    BrowseName in namespace 0, as Part 8 names it)."""
    item = ua.AddNodesItem()
    item.RequestedNewNodeId = space.node(ids.path_id(parent, name))
    item.BrowseName = ua.QualifiedName(name, ua.Int16(0))
    item.NodeClass = ua.NodeClass.Variable
    item.ParentNodeId = space.node(parent)
    item.ReferenceTypeId = std_node(ua.ObjectIds.HasProperty)
    item.TypeDefinition = std_node(ua.ObjectIds.PropertyType)
    attrs = ua.VariableAttributes()
    attrs.DisplayName = ua.LocalizedText(name)
    attrs.Description = ua.LocalizedText(name)
    attrs.DataType = std_node(datatype)
    attrs.Value = ua.Variant(value, ua.VariantType.ExtensionObject)
    attrs.ValueRank = ua.ValueRank.Scalar
    attrs.AccessLevel = ua.AccessLevel.CurrentRead.mask
    attrs.UserAccessLevel = ua.AccessLevel.CurrentRead.mask
    item.NodeAttributes = attrs
    return item
