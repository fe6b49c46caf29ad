"""TimescaleDB for the embedded PostgreSQL: build it from source once, install it from a cache.

``gridpilot dev timescaledb --source PATH`` builds the extension (a source tarball or directory)
against the embedded server's ``pg_config`` with the machine's cmake, C compiler and make, keeps
the installed files under ``<user cache>/gridpilot/timescaledb/<version>-pg<major>/`` and copies
them into the embedded ``pginstall``. The next install of the same versions (another clone, a CI
run, a fresh venv) only copies: it is built once per machine. Nothing here downloads anything.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import platformdirs

from .pginstall import TIMESCALEDB, EmbeddedStackError, PgLayout
from .processes import log_tail

BUILD_TOOLS = {"cmake": ("cmake",), "a C compiler": ("cc", "gcc", "clang"), "make": ("make",)}
_VERSION = re.compile(r"^\s*version\s*=\s*([0-9][0-9A-Za-z.\-]*)\s*$", re.MULTILINE)
_BOOTSTRAP = (
    "-DREGRESS_CHECKS=OFF",
    "-DTAP_CHECKS=OFF",
    "-DWARNINGS_AS_ERRORS=OFF",
    "-DSEND_TELEMETRY_DEFAULT=NO",  # no phoning home
    "-DUSE_OPENSSL=OFF",
)


class TimescaleInstallError(RuntimeError):
    """The extension could not be built or installed; the message says what to do."""


@dataclass(frozen=True)
class InstallResult:
    version: str
    cache_dir: Path
    built: bool  # False: the cached build was reused


def cache_root() -> Path:
    return platformdirs.user_cache_path("gridpilot") / "timescaledb"


def missing_tools() -> list[str]:
    """The build tools not on PATH, e.g. ``["cmake"]``."""
    return [what for what, names in BUILD_TOOLS.items() if not any(map(shutil.which, names))]


def source_version(source: Path) -> str:
    """The version a TimescaleDB source tarball or directory says it is (``version.config``)."""
    if source.is_dir():
        config = source / "version.config"
        if not config.exists():
            raise TimescaleInstallError(f"{source} is not a TimescaleDB source: no version.config")
        text = config.read_text()
    elif source.is_file():
        try:
            with tarfile.open(source) as tar:
                member = next(
                    (
                        m
                        for m in tar
                        if m.isfile()
                        and m.name.count("/") <= 1
                        and m.name.endswith("version.config")
                    ),
                    None,
                )
                if member is None:
                    raise TimescaleInstallError(
                        f"{source} is not a TimescaleDB source tarball: no version.config"
                    )
                handle = tar.extractfile(member)
                text = handle.read().decode() if handle else ""
        except tarfile.TarError as exc:
            raise TimescaleInstallError(f"{source} is not a readable tarball: {exc}") from None
    else:
        raise TimescaleInstallError(f"--source {source} does not exist")
    found = _VERSION.search(text)
    if found is None:
        raise TimescaleInstallError(f"{source}: version.config names no version")
    return found.group(1)


def install(source: Path, *, cache: Path | None = None, jobs: int | None = None) -> InstallResult:
    """Install TimescaleDB from ``source`` into the embedded PostgreSQL, building it only when
    the cache holds no build of the same TimescaleDB and PostgreSQL versions."""
    source = source.expanduser().resolve()
    try:
        layout = PgLayout.embedded()
    except EmbeddedStackError as exc:
        raise TimescaleInstallError(str(exc)) from None
    version = source_version(source)
    root = cache or cache_root()
    target = root / f"{version}-pg{layout.major}"
    root.mkdir(parents=True, exist_ok=True)
    built = False
    with _locked(root / f".{target.name}.lock"):
        if not (target / "COMPLETE").exists():
            _build(source, layout, target, jobs or os.cpu_count() or 2)
            built = True
        _copy_into(target, layout)
    return InstallResult(version, target, built)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One build per cache entry at a time (parallel CI jobs, test sessions)."""
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _build(source: Path, layout: PgLayout, target: Path, jobs: int) -> None:
    missing = missing_tools()
    if missing:
        raise TimescaleInstallError(
            f"cannot build TimescaleDB: {', '.join(missing)} not found on PATH "
            "(Debian/Ubuntu: apt-get install cmake gcc make)"
        )
    with tempfile.TemporaryDirectory(prefix=".build-", dir=target.parent) as tmp:
        work = Path(tmp)
        tree = source if source.is_dir() else _extract(source, work / "src")
        build = work / "build"
        stage = work / "stage"
        log = work / "build.log"
        _run(
            [
                "cmake",
                "-S",
                str(tree),
                "-B",
                str(build),
                f"-DPG_CONFIG={layout.pg_config}",
                *_BOOTSTRAP,
            ],
            log,
        )
        _run(["make", "-C", str(build), f"-j{jobs}"], log)
        _run(["make", "-C", str(build), "install"], log, env={"DESTDIR": str(stage)})
        staged = work / "result"
        _collect(stage / layout.pkglibdir.relative_to("/"), staged / "lib")
        _collect(stage / layout.extension_dir.relative_to("/"), staged / "extension")
        (staged / "COMPLETE").write_text(f"{source}\n")
        shutil.rmtree(target, ignore_errors=True)
        staged.rename(target)


def _extract(tarball: Path, into: Path) -> Path:
    into.mkdir(parents=True)
    with tarfile.open(tarball) as tar:
        tar.extractall(into, filter="data")
    entries = list(into.iterdir())
    return entries[0] if len(entries) == 1 and entries[0].is_dir() else into


def _run(command: list[str], log: Path, env: dict[str, str] | None = None) -> None:
    with open(log, "ab") as out:
        run = subprocess.run(
            command, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
        )
    if run.returncode != 0:
        raise TimescaleInstallError(
            f"`{' '.join(command)}` failed ({run.returncode}):\n{log_tail(log)}"
        )


def _collect(src: Path, dst: Path) -> None:
    dst.mkdir(parents=True)
    for path in src.glob(f"{TIMESCALEDB}*"):
        shutil.copy2(path, dst / path.name)
    if not any(dst.iterdir()):
        raise TimescaleInstallError(f"the build installed nothing under {src}")


def _copy_into(cached: Path, layout: PgLayout) -> None:
    for sub, dest in (("lib", layout.pkglibdir), ("extension", layout.extension_dir)):
        for path in (cached / sub).iterdir():
            tmp = dest / f".{path.name}.tmp"
            shutil.copy2(path, tmp)
            tmp.replace(dest / path.name)  # atomic: a running server never sees half a file
