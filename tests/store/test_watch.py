"""RunWatch: a run directory, store or lock file deleted, moved or replaced is noticed."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gristmill.errors import RunDirError, RunDirGoneError
from gristmill.store.db import STORE_NAME, Store
from gristmill.store.lock import LOCK_NAME, RunLock
from gristmill.store.watch import RunWatch


@pytest.fixture
def held(tmp_path: Path) -> Iterator[tuple[Path, RunWatch]]:
    """A run directory locked, its store open, and the watch an engine takes of them."""
    run_dir = tmp_path / "2026_11_29.01"
    run_dir.mkdir()
    with RunLock(run_dir) as lock:
        store = Store.create(run_dir, {"workflow": "w"})
        try:
            assert lock.fd is not None
            yield run_dir, RunWatch.take(run_dir, store.path, lock.path, lock.fd)
        finally:
            store.close()


def test_nothing_changed_passes(held: tuple[Path, RunWatch]) -> None:
    _, watch = held
    for _ in range(3):
        watch.check()


def _rename_dir(run_dir: Path) -> None:
    run_dir.rename(run_dir.with_name("moved"))


def _replace_dir(run_dir: Path) -> None:
    run_dir.rename(run_dir.with_name("moved"))
    run_dir.mkdir()  # a new run given the same number, say


def _remove(name: str) -> Callable[[Path], None]:
    def remove(run_dir: Path) -> None:
        (run_dir / name).unlink()

    return remove


def _replace(name: str) -> Callable[[Path], None]:
    def replace(run_dir: Path) -> None:
        shutil.copyfile(run_dir / name, run_dir / f"{name}.copy")
        os.replace(run_dir / f"{name}.copy", run_dir / name)

    return replace


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (shutil.rmtree, "the run directory {run_dir} was deleted or moved away while the engine "
                        "ran it; the engine cancelled its live jobs and stopped; if it was moved, "
                        "continue it where it is now with gristmill resume NEW_PATH"),
        (_rename_dir, "the run directory {run_dir} was deleted or moved away"),
        (_replace_dir, "the run directory {run_dir} was replaced by another one"),
        (_remove(STORE_NAME), "its run store {run_dir}/gristmill.db was deleted or moved away "
                              "while the engine ran it; the engine cancelled its live jobs and "
                              "stopped; the run cannot be resumed without it"),
        (_replace(STORE_NAME), "its run store {run_dir}/gristmill.db was replaced"),
        (_remove(LOCK_NAME), "its lock file {run_dir}/.gristmill.lock was deleted or moved away"),
        (_replace(LOCK_NAME), "its lock file {run_dir}/.gristmill.lock was replaced by another "
                              "one (moved or deleted, and something new made in its place) while "
                              "the engine ran it; the engine cancelled its live jobs and stopped; "
                              "another engine could have taken the run meanwhile"),
    ],
    ids=["deleted", "moved", "replaced", "store deleted", "store replaced", "lock deleted",
         "lock replaced"],
)
def test_a_change_is_named(
    held: tuple[Path, RunWatch], change: Callable[[Path], None], message: str
) -> None:
    run_dir, watch = held
    change(run_dir)
    with pytest.raises(RunDirGoneError) as info:
        watch.check()
    assert message.format(run_dir=run_dir) in str(info.value)
    assert info.value.exit_code == 1  # the run did not complete: not a user error
    assert isinstance(info.value, RunDirError)


def test_a_change_that_keeps_the_files_is_not_one(held: tuple[Path, RunWatch]) -> None:
    """Writes, new files and a changed mode leave every (device, inode) as it was."""
    run_dir, watch = held
    (run_dir / "logs").mkdir()
    (run_dir / LOCK_NAME).write_text("{}")
    (run_dir / STORE_NAME).chmod(0o600)
    watch.check()


def test_a_check_costs_a_few_stat_calls(held: tuple[Path, RunWatch]) -> None:
    """The engine looks once per cycle and at least once a second: it must stay cheap.

    Measured here at a few microseconds per check; the bound is 100 times that, for a
    loaded machine.
    """
    _, watch = held
    rounds = 2000
    began = time.perf_counter()
    for _ in range(rounds):
        watch.check()
    per_check = (time.perf_counter() - began) / rounds
    assert per_check < 1e-3, f"{per_check * 1e6:.1f} µs per check"
