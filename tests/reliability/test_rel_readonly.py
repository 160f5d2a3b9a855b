"""Runs the reader cannot write: a read-only bind mount, a ``chmod -R a-w`` copy, read by root
and by ``nobody``.

``status``, ``tasks`` and ``logs`` read them (the store's integrity check included) and
leave every file as it was; ``resume`` refuses at once, saying the directory is not
writable or on a read-only file system, who owns it and what to do, never that the store
is corrupt. A run whose engine was killed (changes still in its write-ahead log, its
``-shm`` left behind) reads on a read-only mount too: SQLite uses the ``-shm`` read-only.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from click.testing import CliRunner
from gm_users import as_nobody, shared_tmp
from rel_support import Mounts, digest, gristmill, latest

from gristmill.cli.app import main
from gristmill.store.db import STORE_NAME


@pytest.fixture
def shared() -> Iterator[Path]:
    yield from shared_tmp()


def outcome(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def finished_run(shared: Path) -> Path:
    done = gristmill("run", "rel_tasks:stages", "--path", str(shared / "effects"), "--n", "3",
                     "--run-dir", str(shared / "runs"))
    assert done.returncode == 0, done.stderr
    return latest(shared / "runs")


def read_only_mount(mounts: Mounts, source: Path, target: Path) -> Path:
    mounts.mount(target, "--bind", str(source))
    mounts.remount(target, "bind,ro")
    return target


def files(run_dir: Path) -> dict[Path, str]:
    return {p: digest(p) for p in run_dir.rglob("*") if p.is_file()}


def reads_alike(run_dir: Path, *, nobody: bool = True) -> str:
    """status, tasks and logs of ``run_dir``: exit 0, the same for root and nobody; status."""
    for args in (["status", str(run_dir)], ["tasks", str(run_dir)],
                 ["logs", str(run_dir), "quick_effect_0_0.076"]):
        as_root = outcome(*args)
        assert as_root[0] == 0, as_root
        if nobody:
            assert as_nobody(functools.partial(outcome, *args)) == as_root
    return outcome("status", str(run_dir))[1]


def test_a_run_on_a_read_only_mount_reads_for_everyone_and_refuses_to_resume(
    rt: ModuleType, shared: Path, mounts: Mounts
) -> None:
    run_dir = read_only_mount(mounts, finished_run(shared), shared / "mounted")
    before = files(run_dir)
    status = reads_alike(run_dir)
    assert "quick_effect │    3 │     3" in status
    assert "no engine running" in status
    for resume in (functools.partial(outcome, "resume", str(run_dir)),
                   lambda: as_nobody(functools.partial(outcome, "resume", str(run_dir)))):
        code, out, err = resume()
        assert (code, out) == (2, ""), err
        assert err.startswith(f"error: the run directory {run_dir} (owned by root) is on a "
                              "read-only file system, so the run cannot continue there; "
                              "nothing was changed; copy it to storage you can write"), err
    assert files(run_dir) == before


def test_a_read_only_copy_reads_for_another_user_and_refuses_to_resume(
    rt: ModuleType, shared: Path
) -> None:
    copy = shared / "copy"
    shutil.copytree(finished_run(shared), copy)
    subprocess.run(["chmod", "-R", "a-w", str(copy)], check=True, timeout=30)
    before = files(copy)
    status = reads_alike(copy)
    assert "quick_effect │    3 │     3" in status
    code, out, err = as_nobody(functools.partial(outcome, "resume", str(copy)))
    assert (code, out) == (2, ""), err
    assert err.startswith(f"error: the run directory {copy} is not writable by you (nobody): "
                          "it belongs to root (mode dr-xr-xr-x); nothing was changed; continue "
                          "it as root, or copy it"), err
    assert files(copy) == before
    assert "corrupt" not in err


def test_a_killed_engines_run_on_a_read_only_mount_reads_from_its_log(
    rt: ModuleType, shared: Path, mounts: Mounts
) -> None:
    """Killed mid-run (SIGKILL at its third store write): its last changes are in its log,
    beside the -shm it left; nobody reads on the read-only mount what root reads where the
    run could be written."""
    killed = gristmill("run", "rel_tasks:stages", "--path", str(shared / "effects"), "--n", "3",
                       "--run-dir", str(shared / "runs"),
                       env={"GRISTMILL_FAULT": "status:3"})
    assert killed.returncode == -9, killed.stderr
    source = latest(shared / "runs")
    assert {p.name for p in source.iterdir()} >= {STORE_NAME, f"{STORE_NAME}-wal",
                                                  f"{STORE_NAME}-shm"}
    expected = outcome("status", str(source))[1]  # read where it could be written
    run_dir = read_only_mount(mounts, source, shared / "mounted")
    store = [run_dir / f"{STORE_NAME}{suffix}" for suffix in ("", "-wal", "-shm")]
    before = [digest(path) for path in store]  # (the orphaned tasks may still end meanwhile)
    code, seen, err = as_nobody(functools.partial(outcome, "status", str(run_dir)))
    assert code == 0, err
    assert seen == expected.replace(str(source), str(run_dir))
    assert "quick_effect │" in seen
    assert [digest(path) for path in store] == before
    assert os.path.getsize(run_dir / f"{STORE_NAME}-wal") > 0
