"""What `gridpilot dev timescaledb` reads before it builds: the source's
version (tarball or directory) and which build tools are missing."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from gridpilot.ops import timescale
from gridpilot.ops.timescale import TimescaleInstallError, missing_tools, source_version

CONFIG = b"version = 2.29.2\nprevious_version = 2.29.1\n"


def tarball(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_the_version_comes_from_version_config_in_a_tarball_or_a_directory(
    tmp_path: Path,
) -> None:
    src = tarball(tmp_path / "ts.tar.gz", {"timescaledb-2.29.2/version.config": CONFIG})
    assert source_version(src) == "2.29.2"
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "version.config").write_bytes(b"version = 2.30.0-dev\n")
    assert source_version(tmp_path / "dir") == "2.30.0-dev"


@pytest.mark.parametrize(
    ("files", "says"),
    [
        ({"x/README": b"hi"}, "no version.config"),
        ({"x/version.config": b"nothing here\n"}, "names no version"),
        ({"x/sub/deeper/version.config": CONFIG}, "no version.config"),
    ],
)
def test_a_source_that_is_not_timescaledb_is_refused_saying_why(
    tmp_path: Path, files: dict[str, bytes], says: str
) -> None:
    with pytest.raises(TimescaleInstallError, match=says):
        source_version(tarball(tmp_path / "x.tar.gz", files))


def test_a_missing_source_or_a_file_that_is_no_tarball_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TimescaleInstallError, match="does not exist"):
        source_version(tmp_path / "nope.tar.gz")
    (tmp_path / "junk.tar.gz").write_bytes(b"not a tarball")
    with pytest.raises(TimescaleInstallError, match="not a readable tarball"):
        source_version(tmp_path / "junk.tar.gz")


def test_missing_tools_names_each_missing_build_tool(monkeypatch: pytest.MonkeyPatch) -> None:
    present = {"gcc", "make"}
    monkeypatch.setattr(
        timescale.shutil, "which", lambda n: f"/usr/bin/{n}" if n in present else None
    )
    assert missing_tools() == ["cmake"]
    present.clear()
    assert missing_tools() == ["cmake", "a C compiler", "make"]
