"""Site enrollment: a site belongs to the gateways an admin enrolled for it (or
whose certificate names it). A Hello for another site is refused and audited,
a Hello never renames a site, and assets a Hello declares beyond the
enrollment's bound are held (not split over, previewed or counted) until an
admin approves them."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from gp_testing import RunningHeadend, ScriptedAgent, demo_assets, wait_for

from gridpilot.schema.pb import agent_pb2 as pb

pytestmark = pytest.mark.integration

PHANTOM = pb.AssetInfo(
    asset_id="phantom-1",
    name="Phantom",
    asset_type=pb.ASSET_TYPE_BESS,
    p_min_kw=-1_000_000,
    p_max_kw=1_000_000,
    capacity_kwh=1,
)


async def _audit(headend: RunningHeadend, action: str, outcome: str = "ok") -> list[dict[str, Any]]:
    r = await headend.api.get("/api/v1/audit", params={"action": action})
    assert r.status_code == 200, r.text
    return [row for row in r.json() if row["outcome"] == outcome]


async def _site(headend: RunningHeadend, site_id: str) -> dict[str, Any]:
    [site] = [s for s in (await headend.api.get("/api/v1/sites")).json() if s["id"] == site_id]
    return site


async def _connect(agent: ScriptedAgent, assets: list[Any]) -> grpc.RpcError | None:
    try:
        await agent.connect(assets)
        return agent.error
    finally:
        await agent.close()


async def test_hello_for_a_site_the_gateway_is_not_enrolled_for_is_refused_and_audited(
    headend: RunningHeadend, scripted_agent: ScriptedAgent
) -> None:
    await scripted_agent.connect(demo_assets())
    # A valid certificate, never enrolled: the site is not its to join.
    intruder = headend.agent(enroll=False, gateway_id="gw-evil", site_name="Owned")
    error = await _connect(intruder, [PHANTOM])
    assert error is not None and error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "not enrolled for site 'site-1'" in (error.details() or "")
    # Enrolled elsewhere is no better.
    await headend.enroll("gw-evil", "site-9")
    error = await _connect(headend.agent(enroll=False, gateway_id="gw-evil"), [PHANTOM])
    assert error is not None and error.code() == grpc.StatusCode.PERMISSION_DENIED

    # A site id no enrollment can name is bad input, not a refusal to audit.
    odd = headend.agent(enroll=False, gateway_id="gw-evil", site_id="x" * 5000)
    error = await _connect(odd, [PHANTOM])
    assert error is not None and error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "hello.site_id" in (error.details() or "")

    [refused] = await _audit(headend, "gateway.site_refused", "refused")  # one a minute per cause
    assert (refused["actor"], refused["target"], refused["outcome"]) == (
        "gateway:gw-evil",
        "site-1",
        "refused",
    )
    site = await _site(headend, "site-1")
    assert site["name"] == "Site-1" and site["asset_ids"] == ["bess-1", "ev-1", "pv-1"]
    r = await headend.api.get("/api/v1/assets/phantom-1")
    assert r.status_code == 404
    agents = (await headend.api.get("/api/v1/agents")).json()
    assert [a["gateway_id"] for a in agents] == ["gw-1"]


async def test_hello_never_renames_a_site(
    headend: RunningHeadend, scripted_agent: ScriptedAgent
) -> None:
    await scripted_agent.connect(demo_assets())
    # Even an enrolled gateway of the site cannot rename it.
    other = headend.agent(gateway_id="gw-2", site_name="Renamed")
    own = pb.AssetInfo(asset_id="pv-2", asset_type=pb.ASSET_TYPE_PV, p_min_kw=0, p_max_kw=10)
    assert await _connect(other, [own]) is None
    site = await _site(headend, "site-1")
    assert site["name"] == "Site-1"
    assert "pv-2" in site["asset_ids"]


async def test_phantom_asset_is_held_out_of_the_split_until_an_admin_approves_it(
    headend: RunningHeadend, scripted_agent: ScriptedAgent
) -> None:
    await scripted_agent.connect(demo_assets())  # bess ±100, pv 0..50, ev -22..0
    r = await headend.api.post(
        "/api/v1/sites/site-1/gateways", json={"gateway_id": "gw-2", "max_asset_kw": 500}
    )
    assert r.status_code == 201, r.text
    second = headend.agent(enroll=False, gateway_id="gw-2")
    try:
        await second.connect([PHANTOM])
        assert second.error is None  # enrolled: accepted, but its phantom is held
        held = (await headend.api.get("/api/v1/sites/site-1/held-assets")).json()
        assert [a["id"] for a in held] == ["phantom-1"]
        assert "beyond the enrollment's 500 kW" in held[0]["held_reason"]
        [audit] = await _audit(headend, "asset.held", "refused")
        assert (audit["actor"], audit["target"]) == ("gateway:gw-2", "phantom-1")

        site = await _site(headend, "site-1")
        assert site["asset_ids"] == ["bess-1", "ev-1", "pv-1"]
        assert site["p_max_kw"] == 150 and site["p_min_kw"] == -122
        preview = await headend.api.post(
            "/api/v1/dispatches/preview",
            json={"site_id": "site-1", "p_kw": 400, "duration_s": 60},
        )
        assert preview.status_code == 200, preview.text
        split = {line["asset_id"]: line["p_kw"] for line in preview.json()["allocations"]}
        assert "phantom-1" not in split and sum(split.values()) <= 150
        direct = await headend.api.post(
            "/api/v1/dispatches", json={"asset_id": "phantom-1", "p_kw": 10, "duration_s": 60}
        )
        assert direct.status_code == 409 and direct.json()["field"] == "asset_id"

        operator = headend.client(await headend.token("operator"))
        async with operator:
            r = await operator.post("/api/v1/assets/phantom-1/approve", json={})
            assert r.status_code == 403
        r = await headend.api.post("/api/v1/assets/phantom-1/approve", json={"reason": "checked"})
        assert r.status_code == 200, r.text
        assert r.json()["held_reason"] is None
        [approved] = await _audit(headend, "asset.approve")
        assert approved["actor"] == "token:test-admin" and approved["detail"]["reason"] == "checked"
        assert "phantom-1" in (await _site(headend, "site-1"))["asset_ids"]
        again = await headend.api.post("/api/v1/assets/phantom-1/approve")
        assert again.status_code == 409
        [refused] = await _audit(headend, "asset.approve", "refused")
        assert refused["target"] == "phantom-1"
        unknown = await headend.api.post("/api/v1/assets/nope/approve")
        assert unknown.status_code == 404 and unknown.json()["field"] == "asset_id"
    finally:
        await second.close()


async def test_assets_within_the_bound_count_and_no_bound_holds_every_new_asset(
    headend: RunningHeadend,
) -> None:
    small = pb.AssetInfo(asset_id="pv-s", asset_type=pb.ASSET_TYPE_PV, p_min_kw=0, p_max_kw=40)
    await headend.enroll("gw-b", "site-b", max_asset_kw=50)
    assert (
        await _connect(headend.agent(enroll=False, gateway_id="gw-b", site_id="site-b"), [small])
        is None
    )
    assert (await _site(headend, "site-b"))["asset_ids"] == ["pv-s"]
    # The same asset re-declared with limits beyond the bound is held again.
    grown = pb.AssetInfo(asset_id="pv-s", asset_type=pb.ASSET_TYPE_PV, p_min_kw=0, p_max_kw=400)
    assert (
        await _connect(headend.agent(enroll=False, gateway_id="gw-b", site_id="site-b"), [grown])
        is None
    )
    assert (await _site(headend, "site-b"))["asset_ids"] == []

    await headend.enroll("gw-n", "site-n", max_asset_kw=None)
    tiny = pb.AssetInfo(asset_id="pv-n", asset_type=pb.ASSET_TYPE_PV, p_min_kw=0, p_max_kw=1)
    assert (
        await _connect(headend.agent(enroll=False, gateway_id="gw-n", site_id="site-n"), [tiny])
        is None
    )
    held = (await headend.api.get("/api/v1/sites/site-n/held-assets")).json()
    assert [a["id"] for a in held] == ["pv-n"]
    assert "no max_asset_kw" in held[0]["held_reason"]


async def test_a_certificate_naming_its_site_enrolls_the_gateway_for_that_site_only(
    headend: RunningHeadend,
) -> None:
    assert headend.pki is not None
    issued = headend.pki.pki.issue_gateway("gw-c", site_id="site-c")
    creds = headend.pki.credentials(
        cert_pem=issued.cert_file.read_bytes(), key_pem=issued.key_file.read_bytes()
    )
    asset = pb.AssetInfo(asset_id="pv-c", asset_type=pb.ASSET_TYPE_PV, p_min_kw=0, p_max_kw=10)
    own = ScriptedAgent(
        headend.grpc_address, gateway_id="gw-c", site_id="site-c", credentials=creds
    )
    assert await _connect(own, [asset]) is None
    # No bound set by an admin: its new asset waits for approval.
    held = (await headend.api.get("/api/v1/sites/site-c/held-assets")).json()
    assert [a["id"] for a in held] == ["pv-c"]

    other = ScriptedAgent(
        headend.grpc_address, gateway_id="gw-c", site_id="site-1", credentials=creds
    )
    error = await _connect(other, [asset])
    assert error is not None and error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "its certificate names site 'site-c'" in (error.details() or "")


async def test_enroll_list_remove_are_admin_only_audited_and_removal_refuses_the_next_hello(
    headend: RunningHeadend,
) -> None:
    operator = headend.client(await headend.token("operator"))
    async with operator:
        r = await operator.post("/api/v1/sites/site-r/gateways", json={"gateway_id": "gw-r"})
        assert r.status_code == 403
        assert (await operator.get("/api/v1/gateways")).status_code == 403
    r = await headend.api.post(
        "/api/v1/sites/site-r/gateways", json={"gateway_id": "gw-r", "max_asset_kw": 100}
    )
    assert r.status_code == 201, r.text
    assert r.json()["enrolled_by"] == "token:test-admin" and r.json()["max_asset_kw"] == 100
    listed = (await headend.api.get("/api/v1/sites/site-r/gateways")).json()
    assert [(e["site_id"], e["gateway_id"]) for e in listed] == [("site-r", "gw-r")]
    everywhere = (await headend.api.get("/api/v1/gateways", params={"gateway_id": "gw-r"})).json()
    assert [e["site_id"] for e in everywhere] == ["site-r"]
    asset = pb.AssetInfo(asset_id="pv-r", asset_type=pb.ASSET_TYPE_PV, p_min_kw=0, p_max_kw=10)
    live = headend.agent(enroll=False, gateway_id="gw-r", site_id="site-r")
    try:
        await live.connect([asset])
        assert live.error is None
        r = await headend.api.delete("/api/v1/sites/site-r/gateways/gw-r")
        assert r.status_code == 204, r.text
        # The live stream is ended within a guard interval (0.5 s here).
        await wait_for(lambda: live.ended, timeout=10)
        assert live.error is not None
        assert live.error.code() == grpc.StatusCode.PERMISSION_DENIED
    finally:
        await live.close()
    error = await _connect(
        headend.agent(enroll=False, gateway_id="gw-r", site_id="site-r"), [asset]
    )
    assert error is not None and error.code() == grpc.StatusCode.PERMISSION_DENIED
    r = await headend.api.delete("/api/v1/sites/site-r/gateways/gw-r")
    assert r.status_code == 404 and r.json()["field"] == "gateway_id"

    [enrolled] = await _audit(headend, "gateway.enroll")
    assert enrolled["target"] == "gw-r" and enrolled["detail"] == {
        "site_id": "site-r",
        "max_asset_kw": 100,
    }
    [removed] = await _audit(headend, "gateway.unenroll")
    assert removed["target"] == "gw-r" and removed["detail"] == {"site_id": "site-r"}
    # A gateway already bound to a site cannot be enrolled for another.
    r = await headend.api.post("/api/v1/sites/site-x/gateways", json={"gateway_id": "gw-r"})
    assert r.status_code == 409 and r.json()["field"] == "gateway_id"


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/v1/sites/site-1/gateways", {"gateway_id": "bad id"}, "gateway_id"),
        ("/api/v1/sites/site-1/gateways", {"gateway_id": "g\u0000"}, "gateway_id"),
        ("/api/v1/sites/site-1/gateways", {"gateway_id": "g", "max_asset_kw": -1}, "max_asset_kw"),
        (
            "/api/v1/sites/site-1/gateways",
            {"gateway_id": "g", "max_asset_kw": 1e308},
            "max_asset_kw",
        ),
        ("/api/v1/sites/site-1/gateways", {"gateway_id": "g", "extra": 1}, "extra"),
        ("/api/v1/sites/bad%20site/gateways", {"gateway_id": "g"}, "site_id"),
    ],
)
async def test_bad_enrollment_input_is_a_422_naming_the_field(
    headend: RunningHeadend, path: str, body: dict[str, Any], field: str
) -> None:
    r = await headend.api.post(path, json=body)
    assert r.status_code == 422, r.text
    assert r.json()["field"] == field


async def test_rebind_accepts_an_enrolled_gateway_and_refuses_an_unknown_one(
    headend: RunningHeadend, scripted_agent: ScriptedAgent
) -> None:
    await scripted_agent.connect(demo_assets())
    r = await headend.api.put("/api/v1/assets/bess-1/gateway", json={"gateway_id": "gw-ghost"})
    assert r.status_code == 404 and r.json()["field"] == "gateway_id"
    agents = (await headend.api.get("/api/v1/agents")).json()
    assert [a["gateway_id"] for a in agents] == ["gw-1"]  # no phantom agent

    await headend.enroll("gw-spare", "site-1")  # enrolled, never connected
    r = await headend.api.put("/api/v1/assets/bess-1/gateway", json={"gateway_id": "gw-spare"})
    assert r.status_code == 200, r.text
    assert r.json()["previous_gateway_id"] == "gw-1"
