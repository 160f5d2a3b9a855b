"""Tests for gristmill.engine.reconcile: what a run in an existing run directory keeps.

A node is kept when the store holds a DONE node of its identity and nothing it waits
for changed or was forced; everything else runs. Real runs on the local backend, a real
store; ``staged`` (tests/fixtures/engine_tasks.py) appends each node's ident to a file.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from pathlib import Path
from types import ModuleType

import attrs
import pytest

from gristmill.engine.plan import RunOptions, make_plan
from gristmill.engine.rebuild import rebuild_workflow
from gristmill.engine.runner import run_plan, run_workflow
from gristmill.errors import GraphError, RunDirError
from gristmill.store.db import STORE_NAME, Store


def ran(path: Path) -> Counter[str]:
    """How many times each ident was appended (each line is one run of one node)."""
    return Counter(path.read_text().split()) if path.exists() else Counter()


def identities(run_dir: Path) -> list[str]:
    store = Store.open(run_dir, readonly=True)
    try:
        return store.identities()
    finally:
        store.close()


def snapshot(directory: Path) -> dict[str, tuple[int, int, bytes]]:
    """Every file under ``directory``: (size, mtime_ns, content)."""
    return {
        str(p.relative_to(directory)): (p.stat().st_size, p.stat().st_mtime_ns, p.read_bytes())
        for p in sorted(directory.rglob("*")) if p.is_file()
    }


def test_a_changed_upstream_reruns_what_waits_for_it_and_nothing_else(
    et: ModuleType, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    first = run_workflow(et.staged(path=str(out)), run_dir=tmp_path / "runs")
    assert first.ok
    assert ran(out) == Counter({"0": 1, "10": 1, "11": 1, "20": 1, "30": 1})
    again = run_workflow(et.staged(path=str(out), root=1), run_dir=first.run_dir)
    assert again.ok
    assert again.run_dir == first.run_dir
    assert again.counts == {"DONE": 5}
    # the new root, the map and the fan-in after it ran; the independent node did not
    assert ran(out) == Counter({"0": 1, "1": 1, "10": 2, "11": 2, "20": 2, "30": 1})
    same = run_workflow(et.staged(path=str(out), root=1), run_dir=first.run_dir)
    assert same.counts == {"DONE": 5}
    assert ran(out) == Counter({"0": 1, "1": 1, "10": 2, "11": 2, "20": 2, "30": 1})


def test_resume_after_the_workflow_changed_reruns_downstream(
    et: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What ``gristmill resume`` does when the workflow's code changed the root's arguments."""
    out = tmp_path / "out"
    first = run_workflow(et.staged(path=str(out)), run_dir=tmp_path / "runs")
    monkeypatch.setenv(et.STAGED_ROOT, "7")
    rebuilt, _ = rebuild_workflow(first.run_dir)
    again = run_workflow(rebuilt, run_dir=first.run_dir)
    assert again.ok
    assert ran(out) == Counter({"0": 1, "7": 1, "10": 2, "11": 2, "20": 2, "30": 1})


def old_store(et: ModuleType, out: Path, root: Path) -> Path:
    """A finished run whose store looks made by gristmill before identities covered
    upstream nodes: identities of version 1, and no ``identity_version`` in its meta."""
    plan = attrs.evolve(make_plan(et.staged(path=str(out)), RunOptions()), identity_version=1)
    result = run_plan(plan, root)
    assert result.ok
    conn = sqlite3.connect(result.run_dir / STORE_NAME)
    with conn:
        conn.execute("DELETE FROM meta WHERE key = 'identity_version'")
        conn.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    conn.close()
    return result.run_dir


def test_an_old_store_keeps_its_identities_and_its_done_nodes(
    et: ModuleType, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    run_dir = old_store(et, out, tmp_path / "runs")
    before = identities(run_dir)
    again = run_workflow(et.staged(path=str(out)), run_dir=run_dir)
    assert again.counts == {"DONE": 5}
    assert ran(out) == Counter({"0": 1, "10": 1, "11": 1, "20": 1, "30": 1})  # nothing reran
    assert identities(run_dir) == before


def test_an_old_store_still_reruns_what_waits_for_a_changed_node(
    et: ModuleType, tmp_path: Path
) -> None:
    """Its identities do not cover upstream nodes; the closure over changed nodes does."""
    out = tmp_path / "out"
    run_dir = old_store(et, out, tmp_path / "runs")
    again = run_workflow(et.staged(path=str(out), root=1), run_dir=run_dir)
    assert again.ok
    assert ran(out) == Counter({"0": 1, "1": 1, "10": 2, "11": 2, "20": 2, "30": 1})
    store = Store.open(run_dir, readonly=True)
    try:
        assert "identity_version" not in store.meta() or store.meta()["identity_version"] == 1
    finally:
        store.close()


def test_a_store_of_an_unknown_identity_version_is_refused_untouched(
    et: ModuleType, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    first = run_workflow(et.staged(path=str(out)), run_dir=tmp_path / "runs")
    conn = sqlite3.connect(first.run_dir / STORE_NAME)
    with conn:
        conn.execute("UPDATE meta SET value = '3' WHERE key = 'identity_version'")
    conn.close()
    before = snapshot(first.run_dir)
    with pytest.raises(RunDirError, match="version 3 of gristmill's identities"):
        run_workflow(et.staged(path=str(out)), run_dir=first.run_dir)
    assert snapshot(first.run_dir) == before


def test_rerun_forces_a_task_a_job_name_or_an_identity_and_their_downstream(
    et: ModuleType, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    wf = et.staged(path=str(out))
    first = run_workflow(wf, run_dir=tmp_path / "runs")
    again = run_workflow(et.staged(path=str(out)), run_dir=first.run_dir,
                         rerun=["append_line_11"])
    assert again.ok
    assert ran(out) == Counter({"0": 1, "10": 1, "11": 2, "20": 2, "30": 1})
    node_30 = next(n for n in wf.nodes() if n.args["ident"] == 30)
    run_workflow(et.staged(path=str(out)), run_dir=first.run_dir, rerun=node_30.identity[:10])
    assert ran(out) == Counter({"0": 1, "10": 1, "11": 2, "20": 2, "30": 2})
    run_workflow(et.staged(path=str(out)), run_dir=first.run_dir, rerun=["append_line"])
    assert ran(out) == Counter({"0": 2, "10": 2, "11": 3, "20": 3, "30": 3})
    forced = attempts_of(first.run_dir, "append_line_11")
    assert [a.attempt for a in forced] == [1, 2, 3]  # attempts go on: no file is reused


def attempts_of(run_dir: Path, job_name: str) -> list[object]:
    store = Store.open(run_dir, readonly=True)
    try:
        return [a for a in store.attempts() if a.job_name == job_name]
    finally:
        store.close()


def test_a_rerun_that_names_nothing_is_refused_before_anything_is_written(
    et: ModuleType, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    with pytest.raises(GraphError, match=r"--rerun nosuch: .* its tasks are append_line"):
        run_workflow(et.staged(path=str(out)), run_dir=tmp_path / "runs", rerun=["nosuch"])
    assert not (tmp_path / "runs").exists()
    first = run_workflow(et.staged(path=str(out)), run_dir=tmp_path / "runs")
    before = snapshot(first.run_dir)
    with pytest.raises(GraphError, match="--rerun abcdef0: "):
        run_workflow(et.staged(path=str(out)), run_dir=first.run_dir, rerun=["abcdef0"])
    assert snapshot(first.run_dir) == before


def test_another_workflow_is_refused_on_a_run_directory_which_is_left_as_it_was(
    et: ModuleType, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    first = run_workflow(et.staged(path=str(out)), run_dir=tmp_path / "runs")
    before = snapshot(first.run_dir)
    with pytest.raises(RunDirError) as refused:
        run_workflow(et.fix_and_resume(path=str(out), control="x"), run_dir=first.run_dir)
    message = str(refused.value)
    for part in ("engine_tasks:staged", "engine_tasks:fix_and_resume", "nothing was changed",
                 f"--run-dir {first.run_dir.parent}", f"gristmill resume {first.run_dir}"):
        assert part in message
    assert snapshot(first.run_dir) == before
    assert ran(out) == Counter({"0": 1, "10": 1, "11": 1, "20": 1, "30": 1})
