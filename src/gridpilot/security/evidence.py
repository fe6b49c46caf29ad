"""Evidence bundles: a signed zip an auditor checks offline.

Layout (``FORMAT``)::

    manifest.json       scope, counts, the sha256 of every other file, the
                        audit chain proof, the signing key (base64, fingerprint)
    manifest.sig        base64 Ed25519 signature over manifest.json's bytes
    dispatches.json/csv the dispatches in scope, each with its telemetry evidence
    transitions.json/csv their timelines (dispatch_transitions)
    late_acks.json/csv  what agents reported after a dispatch had ended
    audit.json/csv      a contiguous segment of the audit log's hash chain

JSON is the record; each CSV is the same rows rendered by :func:`csv_bytes`
(a verifier re-renders it and compares). The audit segment runs from the
first to the last audit row in scope, every row in between included, so the
chain can be walked: ``audit_chain.anchor`` is the row before the segment
(its id and stored hash: the first row's ``prev_hash`` must equal it) and
``audit_chain.head`` the log's newest row at export time (for ``gridpilot
audit verify --expect-head`` against the live log). A row of another tenant
in the segment is *redacted* to its id, ``prev_hash`` and ``hash``: its link
is checked, its content (not shown) cannot be. ``security/evidence_verify.py``
checks a bundle.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .audit import HASHED_FIELDS
from .signing import ALGORITHM, EvidenceSigner, raw_public

FORMAT = "gridpilot-evidence/1"
MANIFEST, SIGNATURE = "manifest.json", "manifest.sig"

# The columns of each table's CSV, in order (JSON rows carry the same keys).
COLUMNS: dict[str, tuple[str, ...]] = {
    "dispatches": (
        "id",
        "tenant_id",
        "kind",
        "parent_id",
        "asset_id",
        "site_id",
        "p_kw",
        "q_kvar",
        "duration_s",
        "start_at",
        "end_at",
        "deliver_by",
        "state",
        "reason",
        "detail",
        "applied_p_kw",
        "policy",
        "allocation",
        "warnings",
        "submitted_by",
        "created_at",
        "updated_at",
        "priority",
        "superseded_by",
        "source",
        "trace_id",
        "evidence",
    ),
    "transitions": (
        "dispatch_id",
        "seq",
        "tenant_id",
        "from_state",
        "to_state",
        "at",
        "reason",
        "detail",
        "actor",
    ),
    "late_acks": ("dispatch_id", "tenant_id", "state", "at", "reason", "detail", "gateway_id"),
    "audit": (*HASHED_FIELDS, "hash", "redacted"),
}
TABLES = tuple(COLUMNS)
REDACTED_KEYS = ("id", "prev_hash", "hash", "redacted")


@dataclass
class EvidenceData:
    """What goes in a bundle, read by ``store/evidence.py``."""

    tenant_id: str
    scope: dict[str, Any]
    dispatches: list[dict[str, Any]] = field(default_factory=list)
    transitions: list[dict[str, Any]] = field(default_factory=list)
    late_acks: list[dict[str, Any]] = field(default_factory=list)
    audit: list[dict[str, Any]] = field(default_factory=list)  # id order, contiguous
    anchor: dict[str, Any] | None = None  # {id, hash} of the row before the segment
    head: dict[str, Any] | None = None  # {id, hash} of the log's newest row
    in_scope: list[int] = field(default_factory=list)  # audit ids the scope selected


def jsonable(value: Any) -> Any:
    """Datetimes as UTC ISO 8601 (as the audit hash reads them), the rest as is."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def audit_row(row: Mapping[str, Any], visible: bool) -> dict[str, Any]:
    """An audit row as exported: whole, or redacted to its chain links."""
    if not visible:
        return {
            "id": row["id"],
            "prev_hash": row["prev_hash"],
            "hash": row["hash"],
            "redacted": True,
        }
    out = {k: jsonable(row[k]) for k in (*HASHED_FIELDS, "hash")}
    out["redacted"] = False
    return out


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def csv_bytes(table: str, rows: Sequence[Mapping[str, Any]]) -> bytes:
    """The CSV of a table's JSON rows (a header, then one line per row)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    columns = COLUMNS[table]
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row.get(c)) for c in columns])
    return buf.getvalue().encode()


def json_bytes(value: Any) -> bytes:
    return (json.dumps(value, sort_keys=True, indent=1, ensure_ascii=False) + "\n").encode()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def build(data: EvidenceData, signer: EvidenceSigner, created_by: str, now: datetime) -> bytes:
    """The bundle (zip bytes), signed."""
    tables = {
        "dispatches": [jsonable(r) for r in data.dispatches],
        "transitions": [jsonable(r) for r in data.transitions],
        "late_acks": [jsonable(r) for r in data.late_acks],
        "audit": data.audit,
    }
    files: dict[str, bytes] = {}
    for name, rows in tables.items():
        files[f"{name}.json"] = json_bytes(rows)
        files[f"{name}.csv"] = csv_bytes(name, rows)
    manifest = {
        "format": FORMAT,
        "created_at": jsonable(now),
        "created_by": created_by,
        "tenant_id": data.tenant_id,
        "scope": jsonable(data.scope),
        "counts": {name: len(rows) for name, rows in tables.items()},
        "files": {
            name: {"sha256": sha256(body), "bytes": len(body)}
            for name, body in sorted(files.items())
        },
        "audit_chain": {
            "first_id": data.audit[0]["id"] if data.audit else None,
            "last_id": data.audit[-1]["id"] if data.audit else None,
            "anchor": data.anchor,
            "head": data.head,
            "in_scope": data.in_scope,
            "redacted": sum(1 for r in data.audit if r["redacted"]),
        },
        "signature": {
            "algorithm": ALGORITHM,
            "public_key": base64.b64encode(raw_public(signer.public_key)).decode(),
            "key_fingerprint": signer.fingerprint,
            "signed": MANIFEST,
        },
    }
    manifest_bytes = json_bytes(manifest)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(MANIFEST, manifest_bytes)
        z.writestr(SIGNATURE, base64.b64encode(signer.sign(manifest_bytes)) + b"\n")
        for name, body in sorted(files.items()):
            z.writestr(name, body)
    return out.getvalue()
