"""GET /api/v1/dispatches: filters, pages that follow the Link header, and
families (a site dispatch with its children) that never split across pages."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from gp_testing import RunningHeadend

pytestmark = pytest.mark.integration
NEXT = re.compile(r'^<(/api/v1/dispatches\?[^>]+)>; rel="next"$')


async def _pages(api: httpx.AsyncClient, url: str) -> list[list[str]]:
    """Every page's ids, following rel="next" to the end."""
    pages: list[list[str]] = []
    next_url: str | None = url
    while next_url:
        r = await api.get(next_url)
        assert r.status_code == 200, r.text
        pages.append([d["id"] for d in r.json()])
        link = r.headers.get("link")
        next_url = NEXT.match(link).group(1) if link else None  # type: ignore[union-attr]
    return pages


async def test_tree_pages_keep_each_family_whole_and_follow_the_link(
    headend: RunningHeadend, family: dict[str, Any]
) -> None:
    pages = await _pages(headend.api, "/api/v1/dispatches?tree=true&limit=2")
    assert pages == [
        [family["last"], family["site"], *family["children"]],
        [family["first"]],
    ]
    # Without tree, a page is `limit` rows and every dispatch comes exactly once.
    flat = await _pages(headend.api, "/api/v1/dispatches?limit=2")
    assert all(len(p) <= 2 for p in flat) and len(flat) == 3
    everyone = [family["first"], family["site"], *family["children"], family["last"]]
    assert sorted(i for p in flat for i in p) == sorted(everyone)


async def test_tree_filters_match_a_family_by_any_member(
    headend: RunningHeadend, family: dict[str, Any]
) -> None:
    on_bess = await _pages(headend.api, "/api/v1/dispatches?tree=true&asset_id=bess-1")
    assert on_bess == [[family["site"], *family["children"], family["first"]]]
    flat = await _pages(headend.api, "/api/v1/dispatches?asset_id=bess-1")
    bess_child = [c for c in family["children"] if c.endswith("bess-1")]
    assert sorted(flat[0]) == sorted([family["first"], *bess_child])
    assert await _pages(headend.api, "/api/v1/dispatches?tree=true&source=local") == [[]]
    on_site_2 = await _pages(headend.api, "/api/v1/dispatches?tree=true&site_id=site-2")
    assert on_site_2 == [[family["last"]]]
    r = await headend.api.get("/api/v1/dispatches", params={"tree": "true"})
    created = [d["created_at"] for d in r.json() if d["parent_id"] is None]
    assert len(created) == 3 and created == sorted(created, reverse=True)
    window = {"since": created[1], "until": created[0], "tree": "true"}
    r = await headend.api.get("/api/v1/dispatches", params=window)
    assert [d["id"] for d in r.json()] == [family["site"], *family["children"]]


async def test_parent_id_lists_a_site_dispatchs_children(
    headend: RunningHeadend, family: dict[str, Any]
) -> None:
    r = await headend.api.get("/api/v1/dispatches", params={"parent_id": family["site"]})
    assert r.status_code == 200, r.text
    assert sorted(d["id"] for d in r.json()) == sorted(family["children"])
    r = await headend.api.get("/api/v1/dispatches", params={"parent_id": family["first"]})
    assert r.json() == []


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("state=bogus", "state"),
        ("source=satellite", "source"),
        ("tree=maybe", "tree"),
        ("since=yesterday", "since"),
        ("since=2026-01-02T00:00:00Z&until=2026-01-01T00:00:00Z", "until"),
        ("before=dsp-nobody", "before"),
    ],
)
async def test_a_bad_list_parameter_is_a_422_naming_it(
    headend: RunningHeadend, query: str, field: str
) -> None:
    r = await headend.api.get(f"/api/v1/dispatches?{query}")
    assert r.status_code == 422, r.text
    assert r.json()["field"] == field, r.json()


async def test_the_list_parameters_and_next_link_are_in_the_openapi(
    headend: RunningHeadend,
) -> None:
    spec = (await headend.api.get("/openapi.json")).json()
    op = spec["paths"]["/api/v1/dispatches"]["get"]
    params = {p["name"] for p in op["parameters"]}
    assert {"state", "asset_id", "site_id", "source", "since", "until"} <= params
    assert {"tree", "before", "limit"} <= params
    assert "Link" in op["responses"]["200"]["headers"]
