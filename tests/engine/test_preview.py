"""Tests for gristmill.engine.preview: what a run would do, and that saying it writes nothing.

Each preview is checked against what the run then does (the same decision), and every
run directory against a snapshot of its files taken before the preview.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from gristmill.dsl.workflow import Workflow
from gristmill.engine.plan import RunOptions, make_plan
from gristmill.engine.preview import Preview, Reason, preview_plan
from gristmill.engine.runner import RunResult, run_workflow
from gristmill.errors import GraphError, RunDirError
from gristmill.resources import Policy, Resources
from gristmill.states import NodeState
from gristmill.store.db import STORE_NAME, Store


def snapshot(directory: Path) -> dict[str, tuple[int, int, bytes]]:
    """Every file under ``directory`` (hidden ones too): (size, mtime_ns, content)."""
    return {
        str(p.relative_to(directory)): (p.stat().st_size, p.stat().st_mtime_ns, p.read_bytes())
        for p in sorted(directory.rglob("*")) if p.is_file()
    }


def preview(wf: Workflow, run_dir: Path, **options: Any) -> Preview:
    list_nodes = options.pop("list_nodes", False)
    return preview_plan(make_plan(wf, RunOptions(**options)), run_dir, list_nodes=list_nodes)


def reasons(found: Preview) -> dict[str, dict[Reason, int]]:
    return {t.task: dict(t.reasons) for t in found.tasks}


def ran(path: Path) -> Counter[str]:
    return Counter(path.read_text().split()) if path.exists() else Counter()


def checked_preview(wf: Workflow, run_dir: Path, **options: Any) -> Preview:
    """The preview, after checking that it left ``run_dir`` exactly as it was."""
    before = snapshot(run_dir)
    found = preview(wf, run_dir, **options)
    assert snapshot(run_dir) == before
    return found


def test_a_new_run_is_all_new_and_its_root_is_not_made(et: ModuleType, tmp_path: Path) -> None:
    found = preview(et.staged(path=str(tmp_path / "out")), tmp_path / "runs")
    assert not (tmp_path / "runs").exists()
    assert not found.existing
    assert found.run_dir == tmp_path / "runs"
    assert reasons(found) == {"append_line": {Reason.NEW: 5}}
    assert (found.total.nodes, found.total.kept, found.total.runs) == (5, 0, 5)


def test_failed_and_unfinished_nodes_are_told_apart_and_done_ones_kept(
    et: ModuleType, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    first = run_workflow(et.diamond_with_failure(path=str(out)), run_dir=tmp_path / "runs")
    assert first.counts == {"DONE": 4, "FAILED": 1, "UPSTREAM_FAILED": 2}
    found = checked_preview(et.diamond_with_failure(path=str(out)), first.run_dir)
    assert found.existing
    assert reasons(found) == {"exit_with": {Reason.FAILED: 1},
                              "append_line": {Reason.UNFINISHED: 2}}
    by_task = {t.task: (t.nodes, t.kept, t.runs) for t in found.tasks}
    assert by_task == {"exit_with": (1, 0, 1), "append_line": (6, 4, 2)}
    assert found.nodes == ()


def test_changed_arguments_their_downstream_and_new_nodes(et: ModuleType, tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = run_workflow(et.staged(path=str(out)), run_dir=tmp_path / "runs")
    found = checked_preview(et.staged(path=str(out), root=1), first.run_dir, list_nodes=True)
    assert reasons(found) == {"append_line": {Reason.ARGUMENTS: 1, Reason.UPSTREAM: 3}}
    assert sorted((n.job_name, n.reason) for n in found.nodes) == [
        ("append_line_1", Reason.ARGUMENTS), ("append_line_10", Reason.UPSTREAM),
        ("append_line_11", Reason.UPSTREAM), ("append_line_20", Reason.UPSTREAM),
    ]
    again = run_workflow(et.staged(path=str(out), root=1), run_dir=first.run_dir)
    assert again.ok
    assert sum(ran(out).values()) == 5 + found.total.runs  # the preview said what ran

    more = run_workflow(et.fix_and_resume(path=str(tmp_path / "more"), control="x", n=2),
                        run_dir=tmp_path / "runs")
    grown = checked_preview(et.fix_and_resume(path=str(tmp_path / "more"), control="x", n=4),
                            more.run_dir)
    assert reasons(grown) == {"append_line": {Reason.NEW: 2}, "flaky": {}}  # elements 2, 3


def test_forced_nodes_and_their_downstream(et: ModuleType, tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = run_workflow(et.staged(path=str(out)), run_dir=tmp_path / "runs")
    found = checked_preview(et.staged(path=str(out)), first.run_dir,
                            rerun=("append_line_10",), list_nodes=True)
    assert reasons(found) == {"append_line": {Reason.FORCED: 2}}
    assert sorted(n.job_name for n in found.nodes) == ["append_line_10", "append_line_20"]
    with pytest.raises(GraphError, match="--rerun nope"):
        preview(et.staged(path=str(out)), first.run_dir, rerun=("nope",))


def test_a_node_that_ran_out_of_memory_at_its_cap_runs_with_raised_resources(
    et: ModuleType, tmp_path: Path
) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text("tasks:\n  hog: {on_oom: {mem: x1.5, max: 200M}}\n")
    first = run_workflow(et.one_hog(mb=200), run_dir=tmp_path / "runs", spec=spec)
    assert first.counts == {"FAILED": 1}
    same = checked_preview(et.one_hog(mb=200), first.run_dir, spec=spec)
    assert reasons(same) == {"hog": {Reason.FAILED: 1}}
    raised = checked_preview(et.one_hog(mb=200), first.run_dir, spec=spec,
                             resources=Resources(mem="1G"))
    assert reasons(raised) == {"hog": {Reason.RAISED: 1}}
    again = run_workflow(et.one_hog(mb=200), run_dir=first.run_dir, spec=spec,
                         resources=Resources(mem="1G"), policy=Policy(retries=0))
    assert again.counts == {"DONE": 1}


def test_a_job_left_running_by_a_dead_engine_is_still_running(
    et: ModuleType, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    first = run_workflow(et.staged(path=str(out)), run_dir=tmp_path / "runs")
    store = Store.open(first.run_dir, readonly=True)
    try:
        identity = store.identities()[4]
    finally:
        store.close()
    with sqlite3.connect(first.run_dir / STORE_NAME) as conn:
        conn.execute("UPDATE attempts SET ended = NULL, state = 'RUNNING' WHERE identity = ?",
                     (identity,))
        conn.execute("UPDATE nodes SET state = ? WHERE id = 4", (int(NodeState.RUNNING),))
    conn.close()
    found = checked_preview(et.staged(path=str(out)), first.run_dir)
    assert reasons(found) == {"append_line": {Reason.RUNNING: 1}}


def test_changes_still_in_the_write_ahead_log_are_read_through_a_copy(
    et: ModuleType, tmp_path: Path
) -> None:
    """An engine killed between checkpoints leaves its last commits in ``-wal``: reading
    them must not make SQLite write beside the store, nor lose them."""
    out = tmp_path / "out"
    first = run_workflow(et.staged(path=str(out)), run_dir=tmp_path / "runs")
    db = first.run_dir / STORE_NAME
    subprocess.run([sys.executable, "-c", (
        "import os, sqlite3, sys\n"
        "conn = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
        "conn.execute('PRAGMA wal_autocheckpoint=0')\n"
        f"conn.execute('UPDATE nodes SET state = {int(NodeState.FAILED)} WHERE id = 0')\n"
        "os._exit(0)\n"  # dies holding the log: it stays, with the change in it
    ), str(db)], check=True)
    wal = db.with_name(db.name + "-wal")
    assert wal.stat().st_size > 0
    found = checked_preview(et.staged(path=str(out)), first.run_dir)
    assert reasons(found) == {"append_line": {Reason.FAILED: 1}}  # the change in the log


def test_what_a_run_would_refuse_a_preview_refuses(et: ModuleType, tmp_path: Path) -> None:
    out = tmp_path / "out"
    first: RunResult = run_workflow(et.staged(path=str(out)), run_dir=tmp_path / "runs")
    with pytest.raises(RunDirError, match="holds a run of workflow 'staged'"):
        checked_preview(et.one_exit(), first.run_dir)
    with pytest.raises(Exception, match="nosuch"):
        checked_preview(et.staged(path=str(out)), first.run_dir, backend="nosuch")
