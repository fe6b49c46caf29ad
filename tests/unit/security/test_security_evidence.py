"""Evidence bundles: built, signed and checked offline; every kind of tampering
is named (a changed file, a dropped row, a broken chain, a bad signature)."""

from __future__ import annotations

import base64
import io
import json
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gridpilot.security.audit import GENESIS, row_hash
from gridpilot.security.evidence import EvidenceData, audit_row, build
from gridpilot.security.evidence_verify import BundleInvalid, verify_bundle
from gridpilot.security.signing import EvidenceSigner, load_public_key, public_pem

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def _chain(n: int, start_id: int = 1, prev: str = GENESIS) -> list[dict[str, Any]]:
    rows = []
    for i in range(start_id, start_id + n):
        row: dict[str, Any] = {
            "id": i,
            "tenant_id": "default",
            "at": T0 + timedelta(seconds=i),
            "actor": "token:alice",
            "actor_role": "operator",
            "auth_method": "token",
            "action": "dispatch.submit",
            "target": "dsp-1",
            "outcome": "ok",
            "request_id": f"req-{i}",
            "detail": {"p_kw": 1.5 * i, "note": "ünïcode"},
            "prev_hash": prev,
        }
        row["hash"] = prev = row_hash(row)
        rows.append(row)
    return rows


def _data(chain: list[dict[str, Any]], other_tenant: set[int] | None = None) -> EvidenceData:
    hidden = other_tenant or set()
    return EvidenceData(
        tenant_id="default",
        scope={"kind": "dispatch", "dispatch_id": "dsp-1"},
        dispatches=[
            {
                "id": "dsp-1",
                "kind": "asset",
                "asset_id": "bess-1",
                "p_kw": 20.0,
                "state": "complete",
                "created_at": T0,
                "allocation": None,
                "warnings": [],
                "evidence": {"samples": 3, "mean_p_kw": 19.9},
            }
        ],
        transitions=[
            {"dispatch_id": "dsp-1", "seq": 1, "to_state": "submitted", "at": T0, "detail": ""},
            {"dispatch_id": "dsp-1", "seq": 2, "to_state": "sent", "at": T0, "detail": 'a,"b"'},
        ],
        audit=[audit_row(r, r["id"] not in hidden) for r in chain],
        anchor=None if chain[0]["id"] == 1 else {"id": chain[0]["id"] - 1, "hash": "x"},
        head={"id": chain[-1]["id"], "hash": chain[-1]["hash"]},
        in_scope=[r["id"] for r in chain],
    )


@pytest.fixture
def signer(tmp_path: Path) -> EvidenceSigner:
    return EvidenceSigner.load_or_create(tmp_path / "evidence.key")


def _files(bundle: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(bundle)) as z:
        return {n: z.read(n) for n in z.namelist()}


def _zip(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for name, body in files.items():
            z.writestr(name, body)
    return out.getvalue()


def test_a_bundle_verifies_with_the_pinned_key(signer: EvidenceSigner, tmp_path: Path) -> None:
    bundle = build(_data(_chain(5)), signer, "token:audrey", T0)
    pinned = load_public_key(public_pem(signer.public_key))
    report = verify_bundle(bundle, pinned)
    assert report.key_pinned and report.key_fingerprint == signer.fingerprint
    assert report.counts == {"dispatches": 1, "transitions": 2, "late_acks": 0, "audit": 5}
    assert "evidence bundle ok: dispatch dsp-1" in report.summary()
    assert "NOT pinned" in verify_bundle(bundle).summary()
    # the key file is the owner's only, and loading it again gives the same key
    assert (tmp_path / "evidence.key").stat().st_mode & 0o777 == 0o600
    again = EvidenceSigner.load_or_create(tmp_path / "evidence.key")
    assert again.fingerprint == signer.fingerprint


def test_one_changed_byte_of_a_csv_is_named(signer: EvidenceSigner) -> None:
    files = _files(build(_data(_chain(3)), signer, "t", T0))
    files["transitions.csv"] = files["transitions.csv"].replace(b"sent", b"senT")
    with pytest.raises(BundleInvalid, match=r"^transitions.csv: content changed"):
        verify_bundle(_zip(files))


def test_a_dropped_json_row_is_named(signer: EvidenceSigner) -> None:
    files = _files(build(_data(_chain(3)), signer, "t", T0))
    rows = json.loads(files["audit.json"])
    files["audit.json"] = json.dumps(rows[:-1]).encode()
    with pytest.raises(BundleInvalid, match=r"^audit.json: content changed"):
        verify_bundle(_zip(files))


def test_a_changed_manifest_or_another_key_fails_the_signature(
    signer: EvidenceSigner, tmp_path: Path
) -> None:
    bundle = build(_data(_chain(3)), signer, "t", T0)
    other = EvidenceSigner.load_or_create(tmp_path / "other.key")
    with pytest.raises(BundleInvalid, match=r"signed by key sha256:.*not by the given key"):
        verify_bundle(bundle, other.public_key)
    files = _files(bundle)
    files["manifest.json"] = files["manifest.json"].replace(
        b'"created_by": "t"', b'"created_by": "u"'
    )
    with pytest.raises(BundleInvalid, match=r"^bad signature: manifest.json was changed"):
        verify_bundle(_zip(files))


def test_a_bundle_re_signed_with_a_forged_key_fails_against_the_pinned_key(
    signer: EvidenceSigner, tmp_path: Path
) -> None:
    forger = EvidenceSigner.load_or_create(tmp_path / "forger.key")
    forged = build(_data(_chain(3)), forger, "t", T0)
    verify_bundle(forged)  # consistent in itself ...
    with pytest.raises(BundleInvalid, match="not by the given key"):
        verify_bundle(forged, signer.public_key)  # ... but not signed by the pinned key


def test_an_extra_or_missing_file_is_named(signer: EvidenceSigner) -> None:
    files = _files(build(_data(_chain(2)), signer, "t", T0))
    with pytest.raises(BundleInvalid, match=r"^notes.txt: a file the manifest does not list"):
        verify_bundle(_zip({**files, "notes.txt": b"hi"}))
    del files["late_acks.csv"]
    with pytest.raises(BundleInvalid, match=r"^late_acks.csv: missing"):
        verify_bundle(_zip(files))


def test_a_changed_audit_row_is_named_even_in_a_validly_signed_bundle(
    signer: EvidenceSigner,
) -> None:
    # The database was tampered with before the export: the signature is
    # good, the chain is not.
    chain = _chain(4)
    chain[2]["actor"] = "token:mallory"
    with pytest.raises(BundleInvalid, match=r"^audit row 3: changed"):
        verify_bundle(build(_data(chain), signer, "t", T0))


def test_a_removed_or_relinked_audit_row_is_named(signer: EvidenceSigner) -> None:
    chain = _chain(4)
    del chain[1]
    with pytest.raises(BundleInvalid, match=r"^audit row 2 is missing"):
        verify_bundle(build(_data(chain), signer, "t", T0))
    chain = _chain(4)
    chain[3]["prev_hash"] = "f" * 64
    chain[3]["hash"] = row_hash(chain[3])
    with pytest.raises(BundleInvalid, match=r"^audit row 4: broken chain"):
        verify_bundle(build(_data(chain), signer, "t", T0))


def test_a_segment_is_checked_against_its_anchor_and_redacted_rows_keep_their_links(
    signer: EvidenceSigner,
) -> None:
    first = _chain(10)
    segment = first[5:]
    data = _data(segment, other_tenant={7})
    data.anchor = {"id": 5, "hash": first[4]["hash"]}
    report = verify_bundle(build(data, signer, "t", T0), signer.public_key)
    assert report.redacted == 1 and report.audit_rows == 5
    audit = json.loads(_files(build(data, signer, "t", T0))["audit.json"])
    assert audit[1] == {
        "id": 7,
        "prev_hash": first[5]["hash"],
        "hash": first[6]["hash"],
        "redacted": True,
    }
    data.anchor = {"id": 5, "hash": "0" * 64}
    with pytest.raises(BundleInvalid, match=r"^audit row 6: broken chain"):
        verify_bundle(build(data, signer, "t", T0))
    data.anchor = None
    with pytest.raises(BundleInvalid, match=r"row 6 has no anchor"):
        verify_bundle(build(data, signer, "t", T0))


def test_damaged_input_is_refused_in_one_line() -> None:
    with pytest.raises(BundleInvalid, match="not an evidence bundle"):
        verify_bundle(b"not a zip")
    with pytest.raises(BundleInvalid, match="manifest.json is missing"):
        verify_bundle(_zip({"manifest.sig": base64.b64encode(b"x")}))
