"""``gridpilot doctor --site/--asset/--dispatch``: why is there no data, why
was this not applied. Reads what the agents API and /metrics read
(``store.fleet``, ``store.reads``) and says what to do next."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from temporalio.api.enums.v1 import TaskQueueType

from gridpilot.core.lifecycle import DispatchState
from gridpilot.core.sessions import EndReason
from gridpilot.store import fleet
from gridpilot.store.reads import asset_row, dispatch_detail

from .doctor import Deployment, Report, Status, ago

# Agents send a heartbeat every 10 s (heartbeat_interval_s): three missed is silence.
SILENT_AFTER = timedelta(seconds=30)
STALE_DATA_AFTER = timedelta(minutes=5)
UNAPPLIED_AFTER = timedelta(seconds=60)
NO_DATA = "docs/runbooks/no-data.md"
NOT_APPLIED = "docs/runbooks/dispatch-not-applied.md"

_ENDED_BECAUSE = {
    EndReason.CLOSED: "the agent ended its stream (stopped or restarting)",
    EndReason.NETWORK: "the connection was cut or the agent's process died",
    EndReason.UNRESPONSIVE: "the agent was unresponsive (no heartbeat in time)",
    EndReason.REVOKED: "its client certificate was revoked",
    EndReason.UNENROLLED: "its enrollment for the site was withdrawn",
    EndReason.TENANT_SUSPENDED: "its tenant was suspended",
    EndReason.HEADEND_STOPPING: "the headend holding its stream stopped",
    EndReason.HEADEND_RESTARTED: "the headend holding its stream restarted",
    EndReason.QUOTA_EXCEEDED: "it sent telemetry over its quota (telemetry_samples_per_s; "
    "docs/usage.md); the agent resends what was refused",
}
_AGENT_GONE_NEXT = (
    "on the site's host: is `gridpilot agent` running (systemctl status gridpilot-agent)? "
    "Its log says why it does not connect; it keeps buffering on disk meanwhile (" + NO_DATA + ")"
)


_AGENT_HUNG_NEXT = (
    "the agent hangs or its link stalls: on the site's host `systemctl restart "
    "gridpilot-agent`, then its log (" + NO_DATA + ")"
)


def _ended(reason: str | None) -> str:
    if reason is None:
        return "no session ended yet"
    try:
        return f"{reason}: {_ENDED_BECAUSE[EndReason(reason)]}"
    except (KeyError, ValueError):
        return reason


async def _agent(dep: Deployment, report: Report, a: Mapping[str, Any], now: datetime) -> None:
    gw = a["gateway_id"]
    if not a["connected"]:
        hung = a["last_end_reason"] == EndReason.UNRESPONSIVE
        # A hung agent went silent when it was last heard, not when the
        # headend gave up on it (GRIDPILOT_AGENT_SILENCE_S later).
        since = a["last_seen"] if hung else a["last_ended_at"] or a["last_seen"]
        report.add(
            f"agent {gw}",
            Status.FAIL,
            f"agent {'unresponsive' if hung else 'gone'} since {ago(since, now)}; session "
            f"ended {ago(a['last_ended_at'], now)}, {_ended(a['last_end_reason'])}",
            _AGENT_HUNG_NEXT if hung else _AGENT_GONE_NEXT,
        )
    elif now - a["last_seen"] > SILENT_AFTER:
        report.add(
            f"agent {gw}",
            Status.FAIL,
            f"agent unresponsive since {ago(a['last_seen'], now)}: its stream to headend "
            f"{a['headend_id']} is open but nothing came since",
            "the agent is hung or its connection half-open: restart it on the site's host; "
            f"the headend ends the stream after GRIDPILOT_AGENT_SILENCE_S ({NO_DATA})",
        )
    else:
        report.add(
            f"agent {gw}",
            Status.OK,
            f"connected since {ago(a['connected_at'], now)} from {a['peer']}, "
            f"last heard {ago(a['last_seen'], now)}",
        )
    if a["connected"]:
        pollers = await dep.pollers(a["task_queue"], TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY)
        route = f"headend {a['headend_id']}, task queue {a['task_queue']}"
        if pollers:
            report.add("route", Status.OK, f"dispatches reach {gw} via {route} ({pollers} pollers)")
        else:
            report.add(
                "route",
                Status.FAIL if pollers == 0 else Status.WARN,
                f"no delivery worker polls {route}"
                if pollers == 0
                else f"cannot ask Temporal who polls {route}",
                f"restart headend {a['headend_id']}; the agent reconnects to a live one",
            )
    buffered = (
        f"{a['buffered_batches']} batches ({a['buffered_bytes']} bytes) waiting in the agent's "
        f"buffer as its last heartbeat said ({ago(a['reported_at'], now)}); "
        f"{a['dropped_samples']} samples dropped unsent ever"
    )
    if not a["connected"]:
        buffered += "; since then it buffers on its disk (if running) and sends it on reconnect"
    dropping = a["dropped_samples"] > 0
    report.add(
        "edge buffer",
        Status.WARN if dropping or not a["connected"] or a["buffered_batches"] else Status.OK,
        buffered,
        "the buffer filled: raise buffer.max_bytes in the site's YAML or fix the uplink"
        if dropping
        else "",
    )
    if a["rejected_samples"]:
        report.add(
            "rejected samples",
            Status.WARN,
            f"{a['rejected_samples']} samples of {gw} refused, never stored; the last: "
            f"{a['last_rejection']}",
            "fix the agent's clock or point map (gridpilot agent check site.yaml --connect)",
        )
    else:
        report.add("rejected samples", Status.OK, "none refused")


def _newest(report: Report, what: str, at: datetime | None, now: datetime) -> None:
    if at is None:
        report.add("newest sample", Status.FAIL, f"no sample of {what} was ever stored", NO_DATA)
    elif now - at > STALE_DATA_AFTER:
        report.add("newest sample", Status.FAIL, f"of {what}: {ago(at, now)}", NO_DATA)
    else:
        report.add("newest sample", Status.OK, f"of {what}: {ago(at, now)}")


async def diagnose_site(
    dep: Deployment, report: Report, site_id: str, gateway_id: str | None = None
) -> None:
    async with dep.engine.connect() as conn:
        now = await fleet.database_now(conn)
        sites = await fleet.sites(conn, site_id)
        agents = await fleet.agents(conn, site_id)
    if not sites:
        report.add("site", Status.FAIL, f"no site {site_id!r}", "check the id: GET /api/v1/sites")
        return
    site = sites[0]
    report.add(
        "site",
        Status.OK,
        f"{site_id}: {site.assets} assets, {site.agents_connected} agent(s) connected",
    )
    agents = [a for a in agents if gateway_id is None or a["gateway_id"] == gateway_id]
    if not agents:
        report.add(
            "agent",
            Status.FAIL,
            "no gateway has ever connected for this site",
            "enroll the gateway (gridpilot gateway enroll) and start its agent",
        )
    for a in agents:
        await _agent(dep, report, a, now)
    if gateway_id is None:
        _newest(report, f"site {site_id}", site.newest_sample_at, now)


async def diagnose_asset(dep: Deployment, report: Report, asset_id: str) -> None:
    row = await asset_row(dep.engine, asset_id)
    if row is None:
        report.add(
            "asset", Status.FAIL, f"no asset {asset_id!r}", "check the id: GET /api/v1/assets"
        )
        return
    held = row["held_reason"]
    report.add(
        "asset",
        Status.WARN if held else Status.OK,
        f"{asset_id} ({row['asset_type']}) of site {row['site_id']}, gateway {row['gateway_id']}"
        + (f"; held for approval: {held}" if held else ""),
        "an admin approves it (docs/security.md, enrollment)" if held else "",
    )
    await diagnose_site(dep, report, row["site_id"], row["gateway_id"])
    async with dep.engine.connect() as conn:
        now = await fleet.database_now(conn)
        newest = await fleet.newest_sample(conn, asset_id)
    _newest(report, f"asset {asset_id}", newest, now)


_STUCK_NEXT = {
    DispatchState.SUBMITTED: "not delivered: see the agent and route below; workers must poll",
    DispatchState.SENT: "delivered but not acknowledged: the agent's log on the site's host",
    DispatchState.ACKED: "accepted but not applied: the device write (the agent's log, "
    "gridpilot agent check)",
}


async def diagnose_dispatch(dep: Deployment, report: Report, dispatch_id: str) -> dict[str, Any]:
    d = await dispatch_detail(dep.engine, dispatch_id)
    if d is None:
        report.add(
            "dispatch", Status.FAIL, f"no dispatch {dispatch_id!r}", "gridpilot dispatch list"
        )
        return {}
    async with dep.engine.connect() as conn:
        now = await fleet.database_now(conn)
    state = DispatchState(d["state"])
    last = d["transitions"][-1] if d["transitions"] else None
    since = ago(last["at"] if last else d["created_at"], now)
    why = " ".join(x for x in (d["reason"], d["detail"]) if x)
    if state is DispatchState.COMPLETE:
        report.add("dispatch", Status.OK, f"complete since {since}")
    elif state.terminal:
        report.add(
            "dispatch",
            Status.WARN if state is DispatchState.CANCELLED else Status.FAIL,
            f"{state.value} since {since}: {why or 'no reason recorded'}",
            NOT_APPLIED,
        )
    elif state in _STUCK_NEXT and now - d["start_at"] > UNAPPLIED_AFTER:
        report.add(
            "dispatch",
            Status.FAIL,
            f"stopped at {state.value} since {since}; it was to be active from "
            f"{ago(d['start_at'], now)}",
            f"{_STUCK_NEXT[state]} ({NOT_APPLIED})",
        )
    else:
        report.add("dispatch", Status.OK, f"{state.value} since {since}")
    if d["asset_id"]:
        row = await asset_row(dep.engine, d["asset_id"])
        if row is not None:
            await diagnose_site(dep, report, row["site_id"], row["gateway_id"])
    elif d["site_id"]:
        await diagnose_site(dep, report, d["site_id"])
    return d
