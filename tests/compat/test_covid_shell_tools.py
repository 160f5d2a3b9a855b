"""shell_tools: directories with an exact mode; archives unpacked and removed; no shell."""

from __future__ import annotations

import os
import shutil
import zipfile
from pathlib import Path

import pytest

from gristmill.compat.covid_shared import shell_tools


def test_mkdir_gives_what_it_creates_the_mode_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        shell_tools.mkdir(tmp_path / "x" / "y", mode=0o775, parents=True)
        assert os.umask(0o077) == 0o077  # the process umask is left as it was
    finally:
        os.umask(old)
    assert (tmp_path / "x").stat().st_mode & 0o777 == 0o775
    assert (tmp_path / "x" / "y").stat().st_mode & 0o777 == 0o775
    (tmp_path / "x").chmod(0o700)
    shell_tools.mkdir(tmp_path / "x", exists_ok=True)  # an existing directory keeps its mode
    assert (tmp_path / "x").stat().st_mode & 0o777 == 0o700
    with pytest.raises(FileExistsError):
        shell_tools.mkdir(tmp_path / "x")
    with pytest.raises(FileNotFoundError):
        shell_tools.mkdir(tmp_path / "missing" / "z")


@pytest.mark.skipif(shutil.which("unzip") is None, reason="unzip is not installed")
def test_an_archive_with_a_space_in_its_path_is_unpacked_and_deleted(tmp_path: Path) -> None:
    archive = tmp_path / "my data.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("inner/file.txt", "hello")
    out = tmp_path / "out dir"
    shell_tools.unzip_and_delete_archive(archive, out)
    assert (out / "inner" / "file.txt").read_text() == "hello"
    assert not archive.exists()


def test_a_missing_program_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="wget is not on PATH"):
        shell_tools.wget("http://example.invalid/x", tmp_path / "x")
