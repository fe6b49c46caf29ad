"""docs/pilot-guide.md, run as a new customer would run it: every block
marked ``<!-- pilot-guide: run -->`` in order, in one shell session (what a
block exports is there for the next), the ``background`` ones started and
left running (the headend, the agent), against a fresh embedded PostgreSQL
and a Temporal dev server with nothing registered. The guide and this test
cannot drift: the test reads its commands from the guide."""

from __future__ import annotations

import os
import re
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from gridpilot.ops.embedded import TemporalDevServer
from gridpilot.ops.processes import free_port

pytestmark = pytest.mark.e2e

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "pilot-guide.md"
BLOCK = re.compile(r"<!-- pilot-guide: ([a-z]+)(?: ([\w-]+))? -->\n```sh\n(.*?)```", re.S)
BLOCK_TIMEOUT_S = 300  # a busy machine: imports, migrations and a 15 s dispatch


@dataclass(frozen=True)
class Block:
    kind: str  # env | run | background
    name: str
    script: str


def guide_blocks() -> list[Block]:
    return [Block(k, n or "", s) for k, n, s in BLOCK.findall(GUIDE.read_text())]


def test_the_guide_marks_its_steps() -> None:
    blocks = guide_blocks()
    kinds = [b.kind for b in blocks]
    assert kinds[0] == "env" and set(kinds) == {"env", "run", "background"}
    assert [b.name for b in blocks if b.kind == "background"] == ["headend", "agent"]
    text = "\n".join(b.script for b in blocks)
    for step in ("gridpilot agent enroll", "gridpilot agent check --connect", "dispatch submit"):
        assert step in text
    # Every marker is followed by its sh block (a typo would silently skip a step).
    markers = re.findall(r"^<!-- pilot-guide:", GUIDE.read_text(), re.MULTILINE)
    assert len(markers) == len(blocks)


class Session:
    """One shell session across blocks: the exported variables are saved in
    ``env.sh`` after each block and sourced before the next."""

    def __init__(self, workdir: Path, variables: dict[str, str]) -> None:
        self.workdir = workdir
        self.state = workdir / "env.sh"
        self.state.write_text("".join(f"export {k}='{v}'\n" for k, v in variables.items()))
        self.background: dict[str, tuple[subprocess.Popen[bytes], Path]] = {}
        base = {k: v for k, v in os.environ.items() if not k.startswith("GRIDPILOT_")}
        bindir = str(Path(sys.executable).parent)  # the installed package's gridpilot
        self.env = {**base, "PATH": f"{bindir}:{base.get('PATH', '')}", "PYTHONUNBUFFERED": "1"}

    def run(self, block: Block) -> str:
        script = f"source {self.state}\n{block.script}\nexport -p > {self.state}\n"
        try:
            done = subprocess.run(
                ["bash", "-euo", "pipefail", "-c", script],
                cwd=self.workdir,
                env=self.env,
                capture_output=True,
                text=True,
                timeout=BLOCK_TIMEOUT_S,
            )
        except subprocess.TimeoutExpired as exc:
            pytest.fail(f"timed out:\n{block.script}\n{exc.stdout}\n{exc.stderr}\n{self.logs()}")
        if done.returncode != 0:
            pytest.fail(
                f"exit {done.returncode}:\n{block.script}\n--- stdout\n{done.stdout[-3000:]}\n"
                f"--- stderr\n{done.stderr[-3000:]}\n{self.logs()}"
            )
        return done.stdout

    def start(self, block: Block) -> None:
        log = self.workdir / f"{block.name}.log"
        with log.open("ab") as out:
            proc = subprocess.Popen(
                ["bash", "-eu", "-c", f"source {self.state}\nexec {block.script.strip()}"],
                cwd=self.workdir,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.background[block.name] = (proc, log)

    def value(self, name: str) -> str:
        out = subprocess.run(
            ["bash", "-c", f'source {self.state}; printf %s "${name}"'],
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
        )
        return out.stdout

    def logs(self) -> str:
        return "".join(
            f"--- {name} (exit {proc.poll()})\n{log.read_text(errors='replace')[-3000:]}\n"
            for name, (proc, log) in self.background.items()
        )

    def stop(self) -> None:
        for proc, _ in reversed(list(self.background.values())):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(10)


@pytest.fixture
def temporal(tmp_path: Path) -> Iterator[TemporalDevServer]:
    """A bare Temporal dev server: the guide registers the search attributes."""
    import asyncio

    server = TemporalDevServer(free_port(), ui_port=None, log_file=tmp_path / "temporal.log")
    server.start()
    try:
        asyncio.run(server.wait_ready(60))
        yield server
    finally:
        server.stop()


def test_the_pilot_guide_runs_end_to_end(
    database_url: str, temporal: TemporalDevServer, tmp_path: Path
) -> None:
    api_port, grpc_port = free_port(), free_port()
    variables = {
        "PILOT": str(tmp_path / "pilot"),
        "HEADEND_HOST": "localhost",
        "GRIDPILOT_DATABASE_URL": database_url,
        "GRIDPILOT_TEMPORAL_ADDRESS": temporal.address,
        "GRIDPILOT_API_HOST": "127.0.0.1",
        "GRIDPILOT_API_PORT": str(api_port),
        "GRIDPILOT_GRPC_LISTEN": f"127.0.0.1:{grpc_port}",
        "API": f"http://127.0.0.1:{api_port}",
        "GRPC": f"localhost:{grpc_port}",
    }
    blocks = guide_blocks()
    documented = set(re.findall(r"export ([A-Z_]+)=", blocks[0].script))
    documented |= set(re.findall(r" ([A-Z_]+)=", blocks[0].script))
    assert documented == set(variables), "the guide's variables and the test's differ"
    session = Session(tmp_path, variables)
    try:
        for block in blocks[1:]:
            if block.kind == "background":
                session.start(block)
            else:
                session.run(block)
        # What the guide promised, checked here too.
        token, dispatch = session.value("GRIDPILOT_TOKEN"), session.value("DISPATCH")
        headers = {"Authorization": f"Bearer {token}"}
        api = variables["API"]
        d = httpx.get(f"{api}/api/v1/dispatches/{dispatch}", headers=headers, timeout=30).json()
        assert d["state"] == "complete", d
        states = [t["to_state"] for t in d["transitions"]]
        assert states[-1] == "complete" and "active" in states, states
        agents = httpx.get(f"{api}/api/v1/agents", headers=headers, timeout=30).json()
        assert [(a["gateway_id"], a["site_id"], a["connected"]) for a in agents] == [
            ("site1-gw", "site1", True)
        ]
        key = tmp_path / "pilot" / "gateway" / "tls" / "gateway.key"
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
        for name, (proc, _) in session.background.items():
            assert proc.poll() is None, f"{name} exited:\n{session.logs()}"
    finally:
        session.stop()
