"""The checked-in protobuf code is exactly what proto/ generates."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
CHECKED_IN = ROOT / "src" / "gridpilot" / "schema" / "pb"


def _generator():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("gen_proto", ROOT / "scripts" / "gen_proto.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _code(path: Path) -> str:
    """The generated text, without the grpcio-tools version that made it: a
    newer patch release of the tools writes the same code under its own number
    (the checked-in number is the least grpcio the code asks for at run time)."""
    return "".join(
        line
        for line in path.read_text().splitlines(keepends=True)
        if not line.startswith("GRPC_GENERATED_VERSION = ")
    )


def test_generated_code_matches_the_proto(tmp_path: Path) -> None:
    written = _generator().generate(tmp_path / "pb")
    names = sorted(p.name for p in written)
    assert names == sorted(p.name for p in CHECKED_IN.iterdir() if p.is_file())
    drift = [p.name for p in written if _code(p) != _code(CHECKED_IN / p.name)]
    assert drift == [], (
        f"{drift} differ from proto/: run `python scripts/gen_proto.py` and commit the result"
    )


def test_reason_codes_are_the_same_in_proto_and_core() -> None:
    from gridpilot.core.lifecycle import ReasonCode
    from gridpilot.schema.pb import agent_pb2 as pb

    proto = {n.removeprefix("REASON_CODE_") for n in pb.ReasonCode.keys()} - {"UNSPECIFIED"}
    assert proto == {r.value for r in ReasonCode}


def test_asset_types_are_the_same_in_proto_and_core() -> None:
    from gridpilot.core.assets import AssetType
    from gridpilot.schema.pb import agent_pb2 as pb
    from gridpilot.wire.codes import ASSET_TYPE_FROM_PB

    assert set(ASSET_TYPE_FROM_PB.values()) == set(AssetType)
    assert len(pb.AssetType.keys()) == len(AssetType) + 1  # + UNSPECIFIED
