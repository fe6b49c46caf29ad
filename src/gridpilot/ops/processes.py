"""Child processes and ports for the embedded stack and the tests: a free port, a
port that answers, a log's tail, a process group stopped, a server run as `with`."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import IO, Self


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (another process may still take it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_open(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


def log_tail(log: Path | IO[bytes] | None, size: int = 3000) -> str:
    """The end of a log. An open log is read with pread: its writer shares the file offset."""
    if log is None:
        return "(no log)"
    with contextlib.suppress(OSError, ValueError):
        with open(log, "rb") if isinstance(log, Path) else contextlib.nullcontext(log) as file:
            end = os.fstat(file.fileno()).st_size
            return os.pread(file.fileno(), size, max(0, end - size)).decode(errors="replace")
    return "(no log)"


def pid_alive(pid: int, name: str) -> bool:
    """Whether `pid` is a live process whose command line mentions `name`."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    cmdline = Path(f"/proc/{pid}/cmdline")
    if not cmdline.exists():  # not Linux: trust kill(0)
        return True
    with contextlib.suppress(OSError):
        return name in cmdline.read_bytes().decode(errors="replace")
    return False


def kill_group(pid: int, exited: Callable[[], bool], timeout: float) -> None:
    """SIGTERM the process group led by `pid`; SIGKILL it if still there after `timeout`."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while not exited() and time.monotonic() < deadline:
            time.sleep(0.05)
        if not exited():
            os.killpg(pid, signal.SIGKILL)


class Managed:
    """`with server:` starts it and always stops it."""

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
