"""Regenerate the checked-in protobuf/gRPC code from proto/.

    python scripts/gen_proto.py            # writes src/gridpilot/schema/pb/
    python scripts/gen_proto.py --out DIR  # writes elsewhere (the drift test)

protoc names the generated import after the proto path (`gridpilot.v1`),
which would shadow our own package, so the import in *_grpc.py is rewritten
to a relative one.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
PROTOS = ["gridpilot/v1/agent.proto"]
DEFAULT_OUT = ROOT / "src" / "gridpilot" / "schema" / "pb"


def generate(out: Path) -> list[Path]:
    import grpc_tools
    from grpc_tools import protoc

    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "_gen"
    tmp.mkdir(exist_ok=True)
    include = str(Path(grpc_tools.__file__).parent / "_proto")
    args = [
        "protoc",
        f"-I{PROTO_DIR}",
        f"-I{include}",
        f"--python_out={tmp}",
        f"--pyi_out={tmp}",
        f"--grpc_python_out={tmp}",
        *[str(PROTO_DIR / p) for p in PROTOS],
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    written = []
    for src in sorted((tmp / "gridpilot" / "v1").glob("*.py*")):
        text = src.read_text()
        text = re.sub(
            r"^from gridpilot\.v1 import (\w+) as", r"from . import \1 as", text, flags=re.M
        )
        dst = out / src.name
        dst.write_text(text)
        written.append(dst)
    for p in sorted(tmp.rglob("*"), reverse=True):
        p.unlink() if p.is_file() else p.rmdir()
    tmp.rmdir()
    init = out / "__init__.py"
    init.write_text(
        '"""Generated from proto/gridpilot/v1 by scripts/gen_proto.py; do not edit."""\n'
    )
    written.append(init)
    return written


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ns = ap.parse_args()
    for p in generate(ns.out):
        print(p.relative_to(ns.out.parent) if p.is_relative_to(ns.out.parent) else p)


if __name__ == "__main__":
    sys.exit(main())
