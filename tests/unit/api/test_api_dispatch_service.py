"""The dispatch service's pure steps: the body check, ids, the single-asset
preview, search attributes; and the console's vocabulary from the server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from gridpilot.api.dispatch_service import check_body, new_dispatch_id, single_asset_preview
from gridpilot.api.dispatch_workflows import search_attributes, summary
from gridpilot.api.pages import CONSOLE_DIR, CONSOLE_PAGES, build_console_page
from gridpilot.api.schemas import DispatchCreate
from gridpilot.core.assets import Asset, AssetType, PowerLimits
from gridpilot.core.dispatch import DurationBounds
from gridpilot.core.errors import ValidationFailed
from gridpilot.core.lifecycle import TERMINAL_VALUES
from gridpilot.workflows.models import DispatchInput

BOUNDS = DurationBounds(min_s=1, max_s=3600)


def _body(**over: object) -> DispatchCreate:
    values: dict[str, object] = {"asset_id": "bess-1", "p_kw": 10.0, "duration_s": 60, **over}
    return DispatchCreate.model_construct(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("over", "field"),
    [
        ({"asset_id": None}, "asset_id"),
        ({"p_kw": float("nan")}, "p_kw"),
        ({"duration_s": 0}, "duration_s"),
        ({"duration_s": 3601}, "duration_s"),
    ],
)
def test_check_body_refuses_naming_the_field(over: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationFailed) as err:
        check_body(_body(**over), BOUNDS)
    assert err.value.field == field


def test_check_body_takes_a_site_target_and_a_good_body() -> None:
    check_body(_body(), BOUNDS)
    check_body(_body(asset_id=None, site_id="site-1"), BOUNDS)


def test_an_idempotency_key_gives_the_callers_own_deterministic_id() -> None:
    alice = new_dispatch_id("token:alice", "order-1")
    assert alice == new_dispatch_id("token:alice", "order-1")
    assert alice != new_dispatch_id("token:bob", "order-1")
    assert alice.startswith("dsp-")
    assert new_dispatch_id("token:alice", None) != new_dispatch_id("token:alice", None)


def test_single_asset_preview_gives_the_whole_target_to_the_asset() -> None:
    asset = Asset("bess-1", "site-1", AssetType.BESS, PowerLimits(-40.0, 50.0))
    charge = single_asset_preview(asset, -30.0, ["w"])
    assert (charge.site_id, charge.asset_id, charge.policy) == ("site-1", "bess-1", "single_asset")
    assert charge.allocated_kw == -30.0 and charge.unallocated_kw == 0.0
    assert [(a.p_kw, a.bound_kw) for a in charge.allocations] == [(-30.0, 40.0)]
    assert single_asset_preview(asset, 20.0, []).allocations[0].bound_kw == 50.0


def test_search_attributes_name_only_the_targets_given() -> None:
    now = datetime.now(UTC)
    inp = DispatchInput(
        dispatch_id="dsp-1",
        kind="site",
        site_id="site-1",
        p_kw=1.0,
        duration_s=1,
        start_at=now,
        end_at=now + timedelta(seconds=1),
        deliver_by=now,
    )
    got = {p.key.name: p.value for p in search_attributes(inp)}
    assert got == {
        "DispatchState": "submitted",
        "DispatchKind": "site",
        "SiteId": "site-1",
        "TenantId": "default",
    }
    acme = {p.key.name: p.value for p in search_attributes(inp, "acme")}
    assert acme["TenantId"] == "acme"
    assert summary(inp) == "1 kW for 1 s on site-1 (by anonymous)"


def test_the_console_gets_the_end_states_from_the_server() -> None:
    script = (CONSOLE_DIR / "console.js").read_text()
    assert "document.body.dataset.terminalStates" in script
    assert '"cancelled"' not in script  # no copy of the vocabulary in a script
    for name in CONSOLE_PAGES:
        html = build_console_page(name)
        assert '"cancelled"' not in html, name
        assert f'<body data-terminal-states="{" ".join(TERMINAL_VALUES)}"' in html
