"""What a run writes keeps the user's umask: a group-shared run directory stays shared;
and stays inside the run directory, whatever its tasks are called."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from gm_hostile_names import HOSTILE_NAMES
from gm_testing import attempts, fixtures_importable

from gristmill.engine.runner import run_workflow
from gristmill.graph.names import task_dir
from gristmill.store.lock import LOCK_NAME
from gristmill.store.paths import confined


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
    result = run_workflow(et.one_chatty(nbytes=4096), run_dir=tmp_path / "runs")
    assert result.ok
    paths = [p for p in result.run_dir.rglob("*") if not p.is_symlink()]
    names = {p.name for p in paths}
    assert {"gristmill.db", ".gristmill.lock", "run_metadata.yaml"} <= names
    assert any(n.endswith(".out") for n in names)  # made by the supervisor when written
    for path in [result.run_dir, *paths]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode & 0o020, f"{path} is {oct(mode)}: the umask 002 lets the group write"
        assert not mode & 0o002, f"{path} is {oct(mode)}: the umask forbids others to write"


def test_no_task_name_puts_a_file_outside_the_run_directory_or_hides_one(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Tasks named ``../x``, ``/abs``, ``..``, ``.hidden``, with NUL, control characters or
    5,000 characters all run; every file lands in ``logs/<task dir>/`` of the run."""
    fixtures_importable(monkeypatch)
    import gm_hostile_names

    root = tmp_path / "a" / "b" / "runs"
    result = run_workflow(gm_hostile_names.hostile_names(), run_dir=root)
    assert result.counts == {"DONE": len(HOSTILE_NAMES)}
    run_dir = result.run_dir
    # Nothing beside the run: not in the folders above it, nor where absolute names point.
    assert {p for p in tmp_path.rglob("*") if root not in (p, *p.parents)} == {
        tmp_path / "a", tmp_path / "a" / "b"}
    assert not Path("/tmp/gm-absolute").exists()
    assert not Path("/tmp/gm-escape").exists()
    for path in run_dir.rglob("*"):
        assert confined(run_dir, path), path
        hidden = [part for part in path.relative_to(run_dir).parts if part.startswith(".")]
        assert hidden in ([], [LOCK_NAME]), path
    tried = attempts(run_dir)
    assert sorted(a.task for a in tried) == sorted(HOSTILE_NAMES)
    for attempt in tried:
        folder = run_dir / "logs" / task_dir(attempt.task)
        for file in (attempt.stdout, attempt.stderr, attempt.result_path):
            assert Path(file).parent == folder  # made only when needed, but only there
        assert Path(attempt.stdout).read_text().startswith("task ")  # it ran, and wrote there
    assert len({task_dir(a.task) for a in tried}) == len(HOSTILE_NAMES)
