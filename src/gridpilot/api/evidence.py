"""Evidence exports (auditor, admin): a signed zip of the dispatches of a time
range or one dispatch, their timelines and evidence, and the audit chain
segment that covers them (``security/evidence.py`` describes the bundle;
``gridpilot audit verify-export`` checks it offline)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field

from gridpilot.core.errors import Refused, ValidationFailed
from gridpilot.security import evidence
from gridpilot.security.signing import ALGORITHM, EvidenceSigner, public_pem
from gridpilot.store import evidence as store

from .admin import SecurityDeps, actor
from .inputs import Instant
from .tenant import caller_tenant

router = APIRouter(prefix="/api/v1", tags=["security"])

ZIP = "application/zip"


class ExportKeyView(BaseModel):
    algorithm: str = Field(description="Ed25519")
    fingerprint: str = Field(description="sha256:<hex> of the raw public key")
    public_key_pem: str = Field(
        description="pin this (a file for `gridpilot audit verify-export --key`)"
    )


def _signer(request: Request) -> EvidenceSigner:
    deps: SecurityDeps = request.app.state.security
    if deps.evidence_signer is None:
        raise Refused(
            "evidence export has no signing key on this API (GRIDPILOT_EVIDENCE_KEY_FILE "
            "or GRIDPILOT_PKI_DIR)",
            code="evidence_not_configured",
            status=404,
        )
    return deps.evidence_signer


@router.get(
    "/audit/export",
    response_class=Response,
    responses={
        200: {
            "content": {ZIP: {"schema": {"type": "string", "format": "binary"}}},
            "description": "The signed evidence bundle (zip; docs/security.md).",
        }
    },
)
async def export_evidence(
    request: Request,
    start: Annotated[
        Instant | None, Query(alias="from", description="dispatches created at or after")
    ] = None,
    end: Annotated[Instant | None, Query(alias="to", description="... and before this")] = None,
    dispatch_id: Annotated[
        str | None, Query(max_length=200, description="one dispatch (a site's with its children)")
    ] = None,
) -> Response:
    """A signed evidence bundle, for a time range (``from`` and ``to``) or one
    dispatch (``dispatch_id``), as a zip: manifest.json (+ manifest.sig), and
    JSON + CSV of the dispatches with their evidence, their transitions, late
    acks and the audit chain segment. Check it with ``gridpilot audit
    verify-export``."""
    signer = _signer(request)
    deps: SecurityDeps = request.app.state.security
    tenant, who = caller_tenant(request), actor(request)
    if dispatch_id is not None and (start is not None or end is not None):
        raise ValidationFailed("give dispatch_id, or from and to, not both", field="dispatch_id")
    if dispatch_id is None and (start is None or end is None):
        missing = "from" if start is None else "to"
        raise ValidationFailed("give from and to (a time range), or dispatch_id", field=missing)
    target = dispatch_id or f"{start.isoformat() if start else ''}/{end.isoformat() if end else ''}"
    async with deps.audit.action(who, "audit.export", target) as act:
        if dispatch_id is not None:
            data = await store.gather_dispatch(deps.audit.engine, tenant, dispatch_id)
            name = dispatch_id
        else:
            assert start is not None and end is not None
            data = await store.gather_range(deps.audit.engine, tenant, start, end)
            name = f"{start:%Y%m%dT%H%M%S}-{end:%Y%m%dT%H%M%S}"
        body = evidence.build(data, signer, who.name, datetime.now(UTC))
        act.detail.update(
            dispatches=len(data.dispatches), audit_rows=len(data.audit), key=signer.fingerprint
        )
    return Response(
        body,
        media_type=ZIP,
        headers={"Content-Disposition": f'attachment; filename="gridpilot-evidence-{name}.zip"'},
    )


@router.get("/audit/export/key", response_model=ExportKeyView)
async def export_key(request: Request) -> ExportKeyView:
    """The public key evidence bundles are signed with, to pin for offline checks."""
    signer = _signer(request)
    return ExportKeyView(
        algorithm=ALGORITHM,
        fingerprint=signer.fingerprint,
        public_key_pem=public_pem(signer.public_key).decode(),
    )
