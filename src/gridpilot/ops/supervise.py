"""The child processes of ``gridpilot up``, supervised.

A child that exits is logged with why (exit code or signal, the last lines of
its log) and restarted after a backoff that doubles up to a cap, so an outage
can be rehearsed by killing the demo agent or the headend. A child that keeps
crashing (``max_crashes`` exits within ``window_s``) is a crash loop: the
supervisor gives up, says so, and ``up`` stops everything.
"""

from __future__ import annotations

import contextlib
import ctypes
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import IO, TextIO


def _die_with_parent() -> None:
    """Linux: a child gets SIGTERM when `up` dies, even by kill -9 (no orphans)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Child:
    """One child process, its output appended to ``log_path``."""

    def __init__(self, name: str, cmd: list[str], env: dict[str, str], log_path: Path) -> None:
        self.name = name
        self.cmd = cmd
        self.env = env
        self.log_path = log_path
        self._log: IO[bytes] = open(log_path, "ab")
        self.proc = subprocess.Popen(
            cmd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def again(self) -> Child:
        """A new process of the same command (the old one has exited)."""
        self._log.close()
        return Child(self.name, self.cmd, self.env, self.log_path)

    def stop(self, timeout: float = 15) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()

    def exit_reason(self) -> str:
        code = self.proc.returncode
        if code is None:
            return "running"
        if code < 0:
            with contextlib.suppress(ValueError):
                return f"killed by {signal.Signals(-code).name}"
            return f"killed by signal {-code}"
        return f"exit code {code}"

    def tail(self, size: int = 2000) -> str:
        with contextlib.suppress(OSError), open(self.log_path, "rb") as f:
            f.seek(max(f.seek(0, 2) - size, 0))
            return f.read().decode(errors="replace")
        return ""

    def last_lines(self, n: int = 5) -> list[str]:
        return [line for line in self.tail().splitlines() if line.strip()][-n:]


class CrashLoop(Exception):
    """A child exited too often in too short a time; restarting it again is pointless."""


class Supervisor:
    """Restarts exited children with backoff; call ``tick()`` periodically.

    The backoff starts at ``first_delay_s`` and doubles per crash up to
    ``max_delay_s``; it starts over once a child has run for ``window_s``.
    """

    def __init__(
        self,
        children: list[Child],
        *,
        max_crashes: int = 5,
        window_s: float = 120.0,
        first_delay_s: float = 1.0,
        max_delay_s: float = 30.0,
        on_restart: Callable[[Child], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        out: TextIO | None = None,
    ) -> None:
        self.children = children
        self.max_crashes = max_crashes
        self.window_s = window_s
        self.first_delay_s = first_delay_s
        self.max_delay_s = max_delay_s
        self._on_restart = on_restart
        self._clock = clock
        self._out = out
        self._crashes: dict[str, deque[float]] = {c.name: deque() for c in children}
        self._started: dict[str, float] = {c.name: clock() for c in children}
        self._restart_at: dict[str, float] = {}
        self.restarts = 0

    def _say(self, text: str) -> None:
        print(f"gridpilot up: {text}", file=self._out or sys.stderr, flush=True)

    def tick(self) -> None:
        """Notice exits, restart the children whose backoff has passed; raises
        CrashLoop when one exited ``max_crashes`` times within ``window_s``."""
        now = self._clock()
        for i, child in enumerate(self.children):
            if child.alive():
                continue
            if child.name not in self._restart_at:
                self._restart_at[child.name] = now + self._crashed(child, now)
            elif now >= self._restart_at[child.name]:
                del self._restart_at[child.name]
                self.children[i] = child.again()
                self._started[child.name] = now
                self.restarts += 1
                self._say(f"{child.name} restarted (pid {self.children[i].proc.pid})")
                if self._on_restart is not None:
                    self._on_restart(self.children[i])

    def _crashed(self, child: Child, now: float) -> float:
        crashes = self._crashes[child.name]
        if now - self._started[child.name] >= self.window_s:
            crashes.clear()  # it ran a good while: this is a new incident
        crashes.append(now)
        while crashes and now - crashes[0] > self.window_s:
            crashes.popleft()
        lines = "".join(f"\n    {line}" for line in child.last_lines())
        if len(crashes) >= self.max_crashes:
            self._say(f"{child.name} exited ({child.exit_reason()}){lines}")
            raise CrashLoop(
                f"{child.name} exited {len(crashes)} times within {self.window_s:g} s; "
                f"stopping everything (see {child.log_path})"
            )
        delay = min(self.first_delay_s * 2 ** (len(crashes) - 1), self.max_delay_s)
        self._say(
            f"{child.name} exited ({child.exit_reason()}); restarting in {delay:g} s"
            f" (see {child.log_path}){lines}"
        )
        return delay
