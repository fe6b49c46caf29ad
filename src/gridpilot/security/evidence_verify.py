"""Check an evidence bundle offline (``gridpilot audit verify-export``).

In order, stopping at the first failure, which is named:

1. the bundle is a zip with ``manifest.json`` and ``manifest.sig``;
2. the signature: with a pinned key (``--key``), its fingerprint must be the
   manifest's and the signature must verify with it; without one, it is
   checked against the key the bundle carries (integrity only: anyone can
   sign with a key of their own, so the result says the key was not pinned);
3. every file the manifest lists has its sha256, none is missing or extra;
4. each CSV is its JSON rendered again, row counts are the manifest's;
5. the audit segment: ids contiguous, the first row's ``prev_hash`` is the
   anchor's hash, each ``prev_hash`` the hash of the row before, each whole
   row hashes to its ``hash`` (a redacted row's content cannot be checked, its
   links are), and the last row is ``last_id``.
"""

from __future__ import annotations

import base64
import binascii
import json
import zipfile
from dataclasses import dataclass, field
from io import BytesIO
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from .audit import GENESIS, row_hash
from .evidence import FORMAT, MANIFEST, SIGNATURE, TABLES, csv_bytes, sha256
from .signing import SigningKeyError, fingerprint, load_public_key, verify


class BundleInvalid(Exception):
    """What failed, in one line: the file, the row, or the signature."""


@dataclass
class VerifyReport:
    manifest: dict[str, Any]
    key_fingerprint: str
    key_pinned: bool
    counts: dict[str, int]
    audit_rows: int
    redacted: int
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        scope = self.manifest.get("scope", {})
        what = ", ".join(f"{n} {k}" for k, n in self.counts.items())
        chain = self.manifest.get("audit_chain", {})
        span = (
            f"audit ids {chain.get('first_id')}..{chain.get('last_id')}"
            if self.audit_rows
            else "no audit rows"
        )
        key = self.key_fingerprint + ("" if self.key_pinned else " (NOT pinned: pass --key)")
        return (
            f"evidence bundle ok: {scope.get('kind')} {_scope_text(scope)}; {what}; "
            f"{span} chain intact ({self.redacted} redacted); signed by {key}"
        )


def _scope_text(scope: dict[str, Any]) -> str:
    if scope.get("kind") == "dispatch":
        return str(scope.get("dispatch_id"))
    return f"{scope.get('from')} .. {scope.get('to')}"


def verify_bundle(data: bytes, key: Ed25519PublicKey | None = None) -> VerifyReport:
    """The report of a bundle that verifies; raises :class:`BundleInvalid` naming what failed."""
    try:
        z = zipfile.ZipFile(BytesIO(data))
        files = {i.filename: z.read(i) for i in z.infolist()}
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError) as exc:
        raise BundleInvalid(f"not an evidence bundle (zip): {exc}") from None
    except (zipfile.error, ValueError) as exc:  # CRC errors: a byte of a member changed
        raise BundleInvalid(f"the zip is damaged: {exc}") from None
    for name in (MANIFEST, SIGNATURE):
        if name not in files:
            raise BundleInvalid(f"{name} is missing")
    manifest_bytes = files[MANIFEST]
    try:
        manifest = json.loads(manifest_bytes)
    except ValueError as exc:
        raise BundleInvalid(f"{MANIFEST} is not JSON: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BundleInvalid(f"{MANIFEST}: not a {FORMAT} manifest")
    used, pinned = _check_signature(manifest, manifest_bytes, files[SIGNATURE], key)
    tables = _check_files(manifest, files)
    redacted = _check_chain(manifest, tables["audit"])
    return VerifyReport(
        manifest,
        fingerprint(used),
        pinned,
        {k: len(v) for k, v in tables.items()},
        len(tables["audit"]),
        redacted,
    )


def _check_signature(
    manifest: dict[str, Any], signed: bytes, sig_file: bytes, key: Ed25519PublicKey | None
) -> tuple[Ed25519PublicKey, bool]:
    sig = manifest.get("signature") or {}
    try:
        carried = load_public_key(str(sig.get("public_key", "")).encode())
    except SigningKeyError as exc:
        raise BundleInvalid(f"signature: the bundle's public key is unusable: {exc}") from None
    if fingerprint(carried) != sig.get("key_fingerprint"):
        raise BundleInvalid("signature: the bundle's public key does not match its fingerprint")
    if key is not None and fingerprint(key) != fingerprint(carried):
        raise BundleInvalid(
            f"signature: the bundle was signed by key {fingerprint(carried)}, "
            f"not by the given key {fingerprint(key)}"
        )
    try:
        signature = base64.b64decode(sig_file.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise BundleInvalid(f"bad signature: {SIGNATURE} is not base64") from None
    used = key or carried
    if not verify(used, signature, signed):
        raise BundleInvalid(
            f"bad signature: {MANIFEST} was changed after signing, or not signed by "
            f"{fingerprint(used)}"
        )
    return used, key is not None


def _check_files(manifest: dict[str, Any], files: dict[str, bytes]) -> dict[str, list[Any]]:
    listed: dict[str, Any] = manifest.get("files") or {}
    extra = sorted(set(files) - set(listed) - {MANIFEST, SIGNATURE})
    if extra:
        raise BundleInvalid(f"{extra[0]}: a file the manifest does not list")
    for name, meta in sorted(listed.items()):
        if name not in files:
            raise BundleInvalid(f"{name}: missing from the bundle")
        if sha256(files[name]) != meta.get("sha256"):
            raise BundleInvalid(
                f"{name}: content changed (sha256 {sha256(files[name])[:16]}… is not the "
                f"signed {str(meta.get('sha256'))[:16]}…)"
            )
    tables: dict[str, list[Any]] = {}
    counts = manifest.get("counts") or {}
    for table in TABLES:
        for suffix in ("json", "csv"):
            if f"{table}.{suffix}" not in listed:
                raise BundleInvalid(f"{table}.{suffix}: not in the manifest")
        rows = json.loads(files[f"{table}.json"])
        if not isinstance(rows, list):
            raise BundleInvalid(f"{table}.json: not a list of rows")
        if len(rows) != counts.get(table):
            raise BundleInvalid(
                f"{table}.json: {len(rows)} rows, the manifest says {counts.get(table)}"
            )
        if csv_bytes(table, rows) != files[f"{table}.csv"]:
            raise BundleInvalid(f"{table}.csv: does not match {table}.json")
        tables[table] = rows
    return tables


def _check_chain(manifest: dict[str, Any], rows: list[dict[str, Any]]) -> int:
    chain = manifest.get("audit_chain") or {}
    if not rows:
        return 0
    anchor = chain.get("anchor")
    prev = GENESIS if anchor is None else anchor.get("hash")
    expected_id = rows[0]["id"] if anchor is None else anchor.get("id", 0) + 1
    if anchor is None and rows[0]["id"] != 1:
        raise BundleInvalid(f"audit chain: row {rows[0]['id']} has no anchor (the row before)")
    if rows[0]["id"] != chain.get("first_id"):
        raise BundleInvalid(f"audit chain: starts at row {rows[0]['id']}, not first_id")
    redacted = 0
    for row in rows:
        rid = row.get("id")
        if rid != expected_id:
            raise BundleInvalid(f"audit row {expected_id} is missing (next is {rid})")
        if row.get("prev_hash") != prev:
            raise BundleInvalid(
                f"audit row {rid}: broken chain (prev_hash is not the hash of row {rid - 1})"
            )
        if row.get("redacted"):
            redacted += 1
        else:
            try:
                computed = row_hash(row)
            except KeyError as exc:
                raise BundleInvalid(f"audit row {rid}: field {exc} is missing") from None
            if computed != row.get("hash"):
                raise BundleInvalid(
                    f"audit row {rid}: changed (its content does not match its hash)"
                )
        prev, expected_id = row.get("hash"), expected_id + 1
    if rows[-1]["id"] != chain.get("last_id"):
        raise BundleInvalid(f"audit chain: ends at row {rows[-1]['id']}, not last_id")
    head = chain.get("head")
    if head and head.get("id") == rows[-1]["id"] and head.get("hash") != prev:
        raise BundleInvalid("audit chain: the last row differs from the head recorded at export")
    return redacted
