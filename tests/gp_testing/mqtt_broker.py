"""A Mosquitto broker for MQTT tests: our own `mosquitto -p <free port>`
when the binary exists, else one already answering on 127.0.0.1:1883, else
the tests skip (saying why)."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from .waiting import wait_for_sync


def _answers(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
        return True
    return False


def _binary() -> str | None:
    return shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if Path(p).exists()), None
    )


@contextlib.contextmanager
def mosquitto(tmp: Path, port: int) -> Iterator[int]:
    """Yield the port of a broker that allows anonymous clients."""
    binary = _binary()
    if binary is None:
        if _answers(1883):
            yield 1883
            return
        pytest.skip("no mosquitto binary and nothing answers on 127.0.0.1:1883")
    conf = tmp / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    proc = subprocess.Popen(
        [binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )

    def answers() -> bool:
        if proc.poll() is not None:
            err = proc.stderr.read().decode() if proc.stderr else ""
            raise RuntimeError(f"mosquitto exited {proc.returncode}: {err}")
        return _answers(port)

    try:
        wait_for_sync(answers, what=f"mosquitto on port {port}", interval=0.05)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
