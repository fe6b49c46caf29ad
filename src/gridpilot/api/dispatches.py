"""Every /api/v1/dispatches route: each converts its input, calls the
dispatch service or the store's reads, and converts the output."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Query, Request, Response

from gridpilot.core.errors import NotFound, ValidationFailed
from gridpilot.core.lifecycle import DispatchState
from gridpilot.store import reads as store_reads

from . import admin, quotas
from .auth import principal_of
from .dispatch_service import DispatchService
from .inputs import Instant
from .schemas import CancelBody, DispatchCreate, DispatchView, SplitPreview

router = APIRouter(prefix="/api/v1", tags=["dispatches"])


def _service(request: Request) -> DispatchService:
    service: DispatchService = request.app.state.deps.dispatches
    return service


def _principal(request: Request) -> str:
    """The caller, as AuthMiddleware authenticated it (e.g. ``token:alice``)."""
    return principal_of(request.state).name


async def dispatch_view(request: Request, dispatch_id: str) -> dict[str, Any]:
    """One dispatch with its transitions, children, evidence and late acks,
    and the link to its trace when a trace UI is configured."""
    found = await store_reads.dispatch_detail(request.app.state.engine, dispatch_id)
    if found is None:
        raise NotFound(f"dispatch {dispatch_id} does not exist", field="dispatch_id")
    template = request.app.state.deps.trace_ui_url
    if template and found.get("trace_id"):
        found["trace_url"] = template.replace("{trace_id}", found["trace_id"])
    return found


@router.post("/dispatches", response_model=DispatchView, status_code=201)
async def submit_dispatch(
    request: Request,
    response: Response,
    body: DispatchCreate,
    idempotency_key: Annotated[
        str | None,
        Header(
            max_length=200,
            pattern=r"^[\x20-\x7e]+$",
            description="retry-safe key (printable ASCII), scoped to the caller",
        ),
    ] = None,
) -> dict[str, Any]:
    quotas.submit(request)  # dispatch_submits_per_min: 429 before anything is done
    dispatch_id, created = await _service(request).submit(
        body, idempotency_key, _principal(request), admin.actor(request)
    )
    if not created:
        response.status_code = 200
    response.headers["Location"] = f"/api/v1/dispatches/{dispatch_id}"
    return await dispatch_view(request, dispatch_id)


@router.post("/dispatches/preview", response_model=SplitPreview)
async def preview_dispatch(request: Request, body: DispatchCreate) -> SplitPreview:
    return await _service(request).preview(body)


@router.post("/dispatches/{dispatch_id}/cancel", response_model=DispatchView, status_code=202)
async def cancel_dispatch(
    request: Request, dispatch_id: str, body: CancelBody | None = None
) -> dict[str, Any]:
    await _service(request).cancel(
        dispatch_id, _principal(request), body.detail if body else "", admin.actor(request)
    )
    return await dispatch_view(request, dispatch_id)


NEXT_PAGE = {
    "Link": {
        "description": 'the next (older) page, `<...&before=ID>; rel="next"`; absent on the last',
        "schema": {"type": "string"},
    }
}


@router.get(
    "/dispatches",
    response_model=list[DispatchView],
    responses={200: {"headers": NEXT_PAGE}},
)
async def list_dispatches(
    request: Request,
    response: Response,
    state: DispatchState | None = None,
    asset_id: str | None = None,
    site_id: str | None = None,
    since: Annotated[Instant | None, Query(description="created at or after")] = None,
    until: Annotated[Instant | None, Query(description="created before")] = None,
    source: Annotated[
        Literal["cloud", "local"] | None,
        Query(description="cloud (this API) or local (written on site)"),
    ] = None,
    parent_id: Annotated[
        str | None, Query(description="the children of this site dispatch")
    ] = None,
    tree: Annotated[
        bool,
        Query(
            description="families: a site dispatch then its children, listed when any of "
            "them matches, counted once against limit and never split across pages"
        ),
    ] = False,
    before: Annotated[
        str | None,
        Query(
            max_length=200,
            description="the page after this dispatch (the last one, or with tree the last "
            "family's parent, of the previous page): the Link header gives it",
        ),
    ] = None,
    limit: Annotated[
        int, Query(ge=1, le=1000, description="dispatches (with tree: families) per page")
    ] = 100,
) -> list[dict[str, Any]]:
    """Newest first. Pages follow the `Link: rel="next"` header."""
    if since is not None and until is not None and until <= since:
        raise ValidationFailed("until must be after since", field="until")
    where = store_reads.DispatchFilter(
        state, asset_id, site_id, since, source, limit, until, before, tree, parent_id
    )
    try:
        rows, after = await store_reads.dispatch_page(request.app.state.engine, where)
    except store_reads.UnknownCursor:
        raise ValidationFailed(
            f"before: dispatch {before} does not exist", field="before"
        ) from None
    if after is not None:
        url = request.url.include_query_params(before=after)
        response.headers["Link"] = f'<{url.path}?{url.query}>; rel="next"'
    return rows


@router.get("/dispatches/{dispatch_id}", response_model=DispatchView)
async def get_dispatch(request: Request, dispatch_id: str) -> dict[str, Any]:
    return await dispatch_view(request, dispatch_id)
