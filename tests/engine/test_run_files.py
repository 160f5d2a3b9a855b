"""What a run writes keeps the user's umask: a group-shared run directory stays shared."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from gristmill.engine.runner import run_workflow


@pytest.fixture
def group_umask() -> Iterator[None]:
    old = os.umask(0o002)
    try:
        yield
    finally:
        os.umask(old)


@pytest.mark.usefixtures("group_umask")
def test_every_file_and_directory_of_a_run_follows_the_umask(
    et: ModuleType, tmp_path: Path
) -> None:
    result = run_workflow(et.appends(path=str(tmp_path / "out"), n=2, pause=0.0),
                          run_dir=tmp_path / "runs")
    assert result.ok
    paths = [p for p in result.run_dir.rglob("*") if not p.is_symlink()]
    names = {p.name for p in paths}
    assert {"gristmill.db", ".gristmill.lock", "run_metadata.yaml"} <= names
    assert any(n.endswith(".result.json") for n in names)
    assert any(n.endswith(".out") for n in names)
    for path in [result.run_dir, *paths]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode & 0o020, f"{path} is {oct(mode)}: the umask 002 lets the group write"
        assert not mode & 0o002, f"{path} is {oct(mode)}: the umask forbids others to write"
