"""Resume re-adopting open attempts (``engine/adopt.py``): only an attempt's own result
finishes it.

Each test makes a real run on the local backend, then makes the store look as if the
engine had died with one attempt open (its job id never recorded), changes that
attempt's result file, and resumes. The side-effect file says whether the node ran again.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from types import ModuleType

from gm_testing import attempts, unconfirm

from gristmill.engine.runner import run_workflow
from gristmill.store.db import STORE_NAME, Store


def lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def first_run(et: ModuleType, tmp_path: Path) -> tuple[Path, Path]:
    out = tmp_path / "out"
    result = run_workflow(et.appends(path=str(out), n=2, pause=0.0), run_dir=tmp_path / "runs",
                          max_cores=2)
    assert result.ok
    assert sorted(lines(out)) == ["0", "1"]
    return result.run_dir, out


def resume(et: ModuleType, run_dir: Path, out: Path) -> list[tuple[int, str]]:
    """Resume; the attempts of node 0 afterwards, as (attempt, state)."""
    again = run_workflow(et.appends(path=str(out), n=2, pause=0.0), run_dir=run_dir)
    assert again.ok
    store = Store.open(run_dir, readonly=True)
    try:
        identity = store.identities()[0]
    finally:
        store.close()
    return [(a.attempt, a.state) for a in attempts(run_dir) if a.identity == identity]


def rewrite(path: str, **changes: object) -> None:
    """Change fields of a result file; ``None`` removes one."""
    data = {**json.loads(Path(path).read_text()), **changes}
    Path(path).write_text(json.dumps({k: v for k, v in data.items() if k not in changes
                                      or changes[k] is not None}))


def test_its_own_result_finishes_an_adopted_attempt(et: ModuleType, tmp_path: Path) -> None:
    run_dir, out = first_run(et, tmp_path)
    record = unconfirm(run_dir, 0)
    assert json.loads(Path(record.result_path).read_text())["key"] == record.key
    assert resume(et, run_dir, out) == [(1, "SUCCEEDED")]
    assert sorted(lines(out)) == ["0", "1"]  # taken from the result: not run again


def test_a_result_naming_another_attempt_is_not_the_adopted_attempts(
    et: ModuleType, tmp_path: Path
) -> None:
    """A result file of node 1's attempt at node 0's path: node 0's attempt is LOST (its
    submission unconfirmed, nothing of its own on disk) and node 0 runs again."""
    run_dir, out = first_run(et, tmp_path)
    mine = unconfirm(run_dir, 0)
    (other,) = [a for a in attempts(run_dir) if a.key != mine.key]
    rewrite(mine.result_path, key=other.key)
    assert resume(et, run_dir, out) == [(1, "LOST"), (2, "SUCCEEDED")]
    assert sorted(lines(out)) == ["0", "0", "1"]


def test_a_result_naming_no_attempt_counts_where_its_path_is_the_attempts_alone(
    et: ModuleType, tmp_path: Path
) -> None:
    """gristmill 0.1 wrote no key: at a path no other attempt was given, the result is
    the attempt's (an old run resumes without rerunning what finished)."""
    run_dir, out = first_run(et, tmp_path)
    record = unconfirm(run_dir, 0)
    rewrite(record.result_path, key=None)
    assert resume(et, run_dir, out) == [(1, "SUCCEEDED")]
    assert sorted(lines(out)) == ["0", "1"]


def test_a_result_naming_no_attempt_at_a_path_two_attempts_shared_is_lost(
    et: ModuleType, tmp_path: Path
) -> None:
    """0.1 gave two nodes one file name: a keyless result there cannot be told apart, so
    the attempt is LOST and its node runs again rather than take the other's outcome."""
    run_dir, out = first_run(et, tmp_path)
    mine = unconfirm(run_dir, 0)
    (other,) = [a for a in attempts(run_dir) if a.key != mine.key]
    with sqlite3.connect(run_dir / STORE_NAME) as conn:
        conn.execute("UPDATE attempts SET result_path = ? WHERE key = ?",
                     (mine.result_path, other.key))
    conn.close()
    rewrite(mine.result_path, key=None)
    assert resume(et, run_dir, out) == [(1, "LOST"), (2, "SUCCEEDED")]
    assert sorted(lines(out)) == ["0", "0", "1"]
