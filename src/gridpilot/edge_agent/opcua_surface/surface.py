"""The agent's OPC UA server: the site's telemetry and setpoints for a local
SCADA (docs/opcua-surface.md).

Every insecure asyncua default is replaced: only the configured security
policies are offered (no NoSecurity unless listed), client certificates must
be trusted (:mod:`.certs`), passwords are checked against hashes and remote
admin is off (:mod:`.users`), anonymous sessions exist only when configured
and never write. A write to ``Control/SetpointKw`` becomes a local dispatch
through the agent's local desk (same rails and queue as a cloud one);
the client gets a per-item status (:mod:`.status`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol
from urllib.parse import urlparse

import structlog
from asyncua import Server, ua
from asyncua.crypto.permission_rules import User

from gridpilot import __version__
from gridpilot.core.assets import Asset
from gridpilot.core.telemetry import Sample

from ..clock import Clock, SystemClock
from ..config.opcua_server import OpcuaServerConfig
from ..control.local_control import ControlView, LocalResult
from . import address_space
from ._ua import status, ua_time
from .certs import TrustListValidator, ensure_server_certificate
from .nodeids import RESERVED_ASSET_IDS, WRITABLE_CONTROLS, AgentNode, ControlNode
from .status import PointValue, setpoint_problem, telemetry_point, write_status
from .users import Access, SurfaceUserManager, access_of
from .writes import ControlWriteRouter

log = structlog.get_logger(__name__)

POLICIES: dict[str, ua.SecurityPolicyType] = {
    "Basic256Sha256_Sign": ua.SecurityPolicyType.Basic256Sha256_Sign,
    "Basic256Sha256_SignAndEncrypt": ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt,
    "Aes128Sha256RsaOaep_SignAndEncrypt": ua.SecurityPolicyType.Aes128Sha256RsaOaep_SignAndEncrypt,
    "Aes256Sha256RsaPss_SignAndEncrypt": ua.SecurityPolicyType.Aes256Sha256RsaPss_SignAndEncrypt,
    "None": ua.SecurityPolicyType.NoSecurity,
}


class HasLatest(Protocol):
    @property
    def latest(self) -> Sample | None: ...


class ControlDesk(Protocol):
    """What the surface uses of the agent's local control desk
    (:class:`~gridpilot.edge_agent.control.local_desk.LocalDesk`)."""

    async def setpoint(
        self, asset_id: str, p_kw: float, actor: str, wait_s: float, channel: str
    ) -> LocalResult: ...
    async def release(self, asset_id: str, actor: str, wait_s: float) -> LocalResult: ...
    def view(self, asset_id: str) -> ControlView: ...
    def add_listener(self, callback: Callable[[str], None]) -> None: ...


class OpcuaSurface:
    """``await start()`` after the agent's controllers run, ``await stop()``
    before its devices close. Construction checks the config and where the
    certificate lives (ValueError when there is no state_dir for a generated
    one) but does no I/O."""

    def __init__(
        self,
        config: OpcuaServerConfig,
        *,
        site_id: str,
        gateway_id: str,
        assets: Mapping[str, Asset],
        pollers: Mapping[str, HasLatest],
        desk: ControlDesk,
        link_up: Callable[[], bool],
        state_dir: Path | None,
        write_wait_s: float = 5.0,
        clock: Clock | None = None,
    ) -> None:
        self._config = config
        self._site_id = site_id
        self._gateway_id = gateway_id
        self._assets = assets
        self._pollers = pollers
        self._desk = desk
        self._link_up = link_up
        self.namespace_uri = config.namespace_for(gateway_id)
        self.application_uri = config.application_uri_for(gateway_id)
        self.paths = config.state_paths(state_dir)
        reserved = sorted(RESERVED_ASSET_IDS & set(assets))
        if reserved:
            raise ValueError(
                f"opcua_server: asset id {reserved[0]!r} would collide with the "
                f"Sites/{self._site_id}/{reserved[0]} node of the agent; rename the asset"
            )
        self._write_wait_s = write_wait_s
        self._clock = clock or SystemClock()
        self._server: Server | None = None
        self._space: address_space.AddressSpace | None = None
        self._router: ControlWriteRouter | None = None
        self._values: dict[ua.NodeId, PointValue | object] = {}
        self._locks = {asset_id: asyncio.Lock() for asset_id in assets}
        self._dirty: set[str] = set()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._log = log.bind(gateway_id=self._gateway_id, site_id=self._site_id)

    # ------------------------------------------------------------- public

    @property
    def port(self) -> int | None:
        """The port listened on (after start; useful with port 0)."""
        return self._server.bserver.port if self._server and self._server.bserver else None

    @property
    def endpoint_url(self) -> str:
        """The configured endpoint with the real port (after start)."""
        url = urlparse(self._config.endpoint)
        port = self.port or url.port
        return url._replace(netloc=f"{url.hostname}:{port}").geturl()

    @property
    def server_certificate(self) -> Path:
        return self.paths.certificate

    async def start(self) -> None:
        if self._server is not None:
            raise RuntimeError("OpcuaSurface.start() can only be called once")
        cfg = self._config
        await ensure_server_certificate(self.paths, self.application_uri)
        validator = TrustListValidator(self.paths.trusted_dir, self.paths.rejected_dir)
        await validator.load()
        users = SurfaceUserManager(
            list(cfg.users),
            anonymous=cfg.anonymous,
            allow_no_security="None" in cfg.security_policies,
            channel_trusted=validator.channel_trusted,
        )
        server = Server(user_manager=users)
        self._server = server
        await server.init()
        server.set_endpoint(cfg.endpoint)
        server.set_server_name(f"GridPilot edge agent {self._gateway_id}")
        server.product_uri = "urn:gridpilot:edge-agent"
        await server.set_application_uri(self.application_uri)
        await server.set_build_info(
            "urn:gridpilot:edge-agent",
            "GridPilot",
            "GridPilot edge agent",
            __version__,
            __version__,
            datetime.now(UTC),
        )
        await server.load_certificate(str(self.paths.certificate))
        await server.load_private_key(str(self.paths.private_key))
        server.set_security_policy([POLICIES[p] for p in cfg.security_policies])
        tokens: list[type] = [ua.UserNameIdentityToken]
        if cfg.anonymous:
            tokens.append(ua.AnonymousIdentityToken)
        server.set_identity_tokens(tokens)
        server.allow_remote_admin(False)
        server.set_certificate_validator(validator)

        ns = await server.register_namespace(self.namespace_uri)
        if ns != 2:
            self._log.warning("opcua agent namespace is not ns=2", ns=ns, uri=self.namespace_uri)
        space, items = address_space.build(ns, self._site_id, list(self._assets.values()))
        results = await server.iserver.isession.add_nodes(items)
        bad = [(i.RequestedNewNodeId, r.StatusCode) for i, r in zip(items, results, strict=True)]
        bad = [(n, s) for n, s in bad if not s.is_good()]
        if bad:
            raise RuntimeError(f"opcua address space: {len(bad)} node(s) not added, first {bad[0]}")
        self._space = space
        await self._write_agent_nodes(initial=True)
        for asset_id in self._assets:
            await self._refresh_control(asset_id)
        await self._publish_telemetry()

        writable = {n for n, (_, c) in space.control_of.items() if c in WRITABLE_CONTROLS}
        self._router = ControlWriteRouter(
            server.iserver.attribute_service, writable, self._on_write
        )
        self._router.install()
        self._desk.add_listener(self._on_control_change)
        await server.start()
        self._tasks = [
            asyncio.create_task(self._publish_loop(), name="opcua-publish"),
            asyncio.create_task(self._control_loop(), name="opcua-control"),
        ]
        self._log.info(
            "opcua server surface listening",
            endpoint=self.endpoint_url,
            namespace_uri=self.namespace_uri,
            policies=",".join(cfg.security_policies),
            anonymous=cfg.anonymous,
            users=len(cfg.users),
            certificate=str(self.paths.certificate),
            trusted_dir=str(self.paths.trusted_dir),
        )

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if self._router is not None:
            self._router.uninstall()
        if self._server is not None:
            server, self._server = self._server, None
            try:
                await server.stop()
            except Exception:  # stopping must go on (the agent is shutting down)
                self._log.exception("opcua server did not stop cleanly")
            self._log.info("opcua server surface stopped")

    # ------------------------------------------------------------ updates

    async def _publish_loop(self) -> None:
        interval = self._config.publish_interval_s
        while True:
            await asyncio.sleep(interval)
            try:
                await self._publish_telemetry()
                await self._write_agent_nodes()
            except Exception:  # a bug: keep serving, show it
                self._log.exception("opcua telemetry update failed")

    async def _publish_telemetry(self) -> None:
        space = self._require_space()
        now = self._clock.now()
        stale_after = self._config.stale_after_s
        for node in space.telemetry:
            poller = self._pollers.get(node.asset_id)
            sample = poller.latest if poller is not None else None
            previous = self._values.get(node.node_id)
            prev = previous if isinstance(previous, PointValue) else None
            point = telemetry_point(node.spec, sample, prev, now, stale_after)
            if not point.same_as(prev):
                await self._write(
                    node.node_id, node.variant, point.value, point.status, point.source_ts
                )
                self._values[node.node_id] = point

    async def _write_agent_nodes(self, *, initial: bool = False) -> None:
        space = self._require_space()
        values = {
            AgentNode.GATEWAY_ID: (ua.VariantType.String, self._gateway_id),
            AgentNode.CLOUD_CONNECTED: (ua.VariantType.Boolean, self._link_up()),
            AgentNode.ARBITRATION: (ua.VariantType.String, str(self._config.arbitration)),
        }
        for name, (variant, value) in values.items():
            node_id = space.agent[name]
            if initial or self._values.get(node_id) != value:
                await self._write(node_id, variant, value)
                self._values[node_id] = value

    def _on_control_change(self, asset_id: str) -> None:
        """The desk's listener: called synchronously, so only note it."""
        self._dirty.add(asset_id)
        self._wake.set()

    async def _control_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            dirty, self._dirty = self._dirty, set()
            for asset_id in sorted(dirty):
                try:
                    await self._refresh_control(asset_id)
                except Exception:
                    self._log.exception("opcua control update failed", asset_id=asset_id)

    async def _refresh_control(self, asset_id: str) -> None:
        if asset_id not in self._assets:
            return
        view = self._desk.view(asset_id)
        asset = self._assets[asset_id]
        target = view.setpoint_kw if view.setpoint_kw is not None else asset.default_p_kw
        nodes: list[tuple[ControlNode, ua.VariantType, object]] = [
            (ControlNode.SETPOINT_KW, ua.VariantType.Double, float(target)),
            (ControlNode.SETPOINT_ACTUAL_KW, ua.VariantType.Double, view.setpoint_actual_kw),
            (ControlNode.ACTIVE_DISPATCH_ID, ua.VariantType.String, view.active_dispatch_id),
            (ControlNode.COMMAND_STATUS, ua.VariantType.String, view.command_status),
            (ControlNode.MODE, ua.VariantType.String, str(view.mode)),
            (ControlNode.RELEASE, ua.VariantType.Boolean, False),
        ]
        space = self._require_space()
        for name, variant, value in nodes:
            node_id = space.controls[(asset_id, name)]
            if node_id in self._values and self._values[node_id] == value:
                continue
            status = (
                ua.StatusCodes.BadWaitingForInitialData if value is None else ua.StatusCodes.Good
            )
            await self._write(node_id, variant, value, status)
            self._values[node_id] = value

    async def _write(
        self,
        node_id: ua.NodeId,
        variant: ua.VariantType,
        value: object,
        code: int = ua.StatusCodes.Good,
        source_ts: datetime | None = None,
    ) -> None:
        """An internal update: straight into the address space (subscriptions
        see it; the write router and any write callbacks do not)."""
        assert self._server is not None
        now = self._clock.now()
        dv = ua.DataValue(
            Value=ua.Variant(value, variant) if value is not None else ua.Variant(),
            StatusCode=status(code),
            SourceTimestamp=ua_time(source_ts or now),
            ServerTimestamp=ua_time(now),
        )
        await self._server.write_attribute_value(node_id, dv)

    def _require_space(self) -> address_space.AddressSpace:
        assert self._space is not None, "the surface is not started"
        return self._space

    # ------------------------------------------------------------- writes

    async def _on_write(self, item: ua.WriteValue, user: User) -> ua.StatusCode:
        """One client write to SetpointKw or Release (see :mod:`.writes`)."""
        space = self._require_space()
        asset_id, control = space.control_of[item.NodeId]
        who = user.name or "?"
        if access_of(user) is not Access.OPERATOR:
            self._log.warning(
                "opcua write refused: not an operator", user=who, asset_id=asset_id, node=control
            )
            return status(ua.StatusCodes.BadUserAccessDenied)
        if item.IndexRange:
            return status(ua.StatusCodes.BadIndexRangeInvalid)
        variant = item.Value.Value if item.Value is not None else None
        vtype = variant.VariantType if variant is not None else None
        value = variant.Value if variant is not None else None
        actor = f"opcua:{who}"
        if control is ControlNode.SETPOINT_KW:
            limits = self._assets[asset_id].limits
            problem = setpoint_problem(vtype, value, limits.p_min_kw, limits.p_max_kw)
            if problem is not None:
                self._log.warning(
                    "opcua setpoint refused",
                    user=who,
                    asset_id=asset_id,
                    value=repr(value),
                    status=status(problem).name,
                )
                return status(problem)
            assert isinstance(value, float)
            async with self._locks[asset_id]:  # in arrival order, one at a time per asset
                result = await self._desk.setpoint(
                    asset_id, value, actor, self._write_wait_s, "opcua"
                )
            code = write_status(result)
            if status(code).is_good():
                await self._write(space.controls[(asset_id, control)], ua.VariantType.Double, value)
                self._values[space.controls[(asset_id, control)]] = value
        else:  # Release
            if vtype != ua.VariantType.Boolean:
                return status(ua.StatusCodes.BadTypeMismatch)
            if not value:
                return status(ua.StatusCodes.Good)  # momentary: false does nothing
            async with self._locks[asset_id]:
                result = await self._desk.release(asset_id, actor, self._write_wait_s)
            code = write_status(result, release=True)
        self._log.info(
            "opcua local command",
            user=who,
            asset_id=asset_id,
            node=str(control),
            value=value,
            outcome=str(result.outcome),
            reason=str(result.reason) if result.reason else None,
            dispatch_id=result.dispatch_id,
            status=status(code).name,
        )
        self._on_control_change(asset_id)
        return status(code)
