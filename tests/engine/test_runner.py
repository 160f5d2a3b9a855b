"""From a workflow to a run: input checked before anything is written, run dirs, resume."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest
import yaml
from loguru import logger

import gristmill as gm
from gristmill.engine.plan import resolve_spec, unit_plans
from gristmill.engine.rebuild import rebuild_workflow
from gristmill.engine.runner import RunResult, prepare_run_dir, run_workflow
from gristmill.errors import BackendError, RunDirError, SpecError, StoreError
from gristmill.resources import Policy, Resources
from gristmill.spec.load import Spec, load_spec
from gristmill.states import NodeState
from gristmill.store.db import STORE_NAME, Store

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
SRC = Path(__file__).resolve().parents[2] / "src"
M = 2**20
Mount = Callable[[str, str], Path]


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Mount]:
    """``mount(name, options)``: a tmpfs under tmp_path (root only), unmounted afterwards."""
    mounted: list[Path] = []

    def mount(name: str, options: str) -> Path:
        target = tmp_path / name
        target.mkdir()
        if os.geteuid() != 0:
            pytest.skip("mounting a tmpfs needs root")
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)],
                              capture_output=True, text=True, timeout=10)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
        mounted.append(target)
        return target

    yield mount
    for target in reversed(mounted):
        subprocess.run(["umount", "-l", str(target)], capture_output=True, timeout=10)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


# -- bad input leaves nothing behind -----------------------------------------------------------


def test_a_spec_naming_an_unknown_task_writes_nothing(et: ModuleType, tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text("tasks:\n  exit_wiht: {mem: 1G}\n")
    root = tmp_path / "runs"
    with pytest.raises(SpecError, match=r"unknown task 'exit_wiht'.*did you mean 'exit_with'"):
        run_workflow(et.one_exit(code=0), run_dir=root, spec=spec)
    assert not root.exists()


def test_an_unknown_backend_writes_nothing(et: ModuleType, tmp_path: Path) -> None:
    root = tmp_path / "runs"
    with pytest.raises(BackendError, match="unknown backend 'slurrm'"):
        run_workflow(et.one_exit(code=0), run_dir=root, backend="slurrm")
    assert not root.exists()


def test_a_run_dir_that_is_a_file_or_under_a_file_is_refused(tmp_path: Path) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    with pytest.raises(RunDirError, match="is a file; give a directory"):
        prepare_run_dir(a_file, resume=True)
    with pytest.raises(RunDirError, match="Not a directory"):
        prepare_run_dir(a_file / "runs", resume=True)
    assert a_file.read_text() == ""


def test_a_read_only_run_root_is_refused_with_the_reason(tmpfs: Mount) -> None:
    readonly = tmpfs("ro", "ro,size=1m")
    for root, reason in ((readonly, "is not writable"), (readonly / "runs", "Read-only file")):
        with pytest.raises(RunDirError, match=reason) as info:
            prepare_run_dir(root, resume=True)
        assert str(root) in str(info.value)


def test_an_existing_run_is_resumed_only_when_asked(et: ModuleType, tmp_path: Path) -> None:
    first = run_workflow(et.one_exit(code=0), run_dir=tmp_path / "runs")
    assert first.ok
    assert prepare_run_dir(first.run_dir, resume=True) == (first.run_dir, True)
    with pytest.raises(RunDirError, match="already holds a run; resume it"):
        prepare_run_dir(first.run_dir, resume=False)
    new, existing = prepare_run_dir(tmp_path / "runs", resume=True)  # a root: a new run
    assert not existing
    assert new.parent == first.run_dir.parent
    assert new != first.run_dir


def test_on_finish_hooks_get_the_result_while_the_run_is_still_locked(
    et: ModuleType, tmp_path: Path
) -> None:
    from gristmill.store.lock import is_locked

    seen: list[tuple[RunResult, bool]] = []
    wf = et.one_exit(code=3)
    wf.on_finish.append(lambda result: seen.append((result, is_locked(result.run_dir))))
    failed = run_workflow(wf, run_dir=tmp_path / "runs")
    assert seen == [(failed, True)]
    assert not failed.ok
    assert not is_locked(failed.run_dir)


# -- a store that cannot be trusted is never written ---------------------------------------------


def _corrupt(path: Path) -> None:
    path.write_bytes(b"this is no sqlite database" * 200)


def _newer(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    conn.close()


@pytest.mark.parametrize(("damage", "message"), [(_corrupt, "corrupt"), (_newer, "newer")])
def test_resuming_a_bad_store_changes_nothing(
    et: ModuleType, tmp_path: Path, damage: Callable[[Path], None], message: str
) -> None:
    done = run_workflow(et.one_exit(code=0), run_dir=tmp_path / "runs")
    store, metadata = done.run_dir / STORE_NAME, done.run_dir / "run_metadata.yaml"
    damage(store)
    before = (digest(store), digest(metadata))
    with pytest.raises(StoreError, match=message):
        run_workflow(et.one_exit(code=0), run_dir=done.run_dir)
    assert (digest(store), digest(metadata)) == before


def test_a_store_that_cannot_be_created_is_not_left_half_made(
    et: ModuleType, tmpfs: Mount
) -> None:
    """A store is made whole (tables, meta, the DAG) under a draft name and then renamed:
    a disk too full for that leaves no store and no draft, so status says "not a run",
    not "corrupt"."""
    tiny = tmpfs("tiny", "size=16k")
    with pytest.raises(StoreError, match=r"cannot create the run store .*disk is full"):
        run_workflow(et.one_exit(code=0), run_dir=tiny / "runs")
    (run_dir,) = (tiny / "runs").glob("2*")
    assert sorted(p.name for p in run_dir.iterdir()) == [".gristmill.lock"]


def test_a_disk_filled_by_task_logs_is_reported_and_the_run_resumes(
    et: ModuleType, tmpfs: Mount
) -> None:
    disk = tmpfs("disk", "size=512k")
    with pytest.raises(StoreError, match=r"disk is full.*can be resumed"):
        run_workflow(et.one_chatty(nbytes=2_000_000), run_dir=disk / "runs")
    subprocess.run(["mount", "-o", "remount,size=8m", str(disk)], check=True, timeout=10)
    run_dir = (disk / "runs" / "latest").resolve()
    result = run_workflow(et.one_chatty(nbytes=2_000_000), run_dir=run_dir)
    assert result.ok
    store = Store.open(run_dir, readonly=True)
    try:
        states = [(a.attempt, a.state) for a in store.attempts()]
    finally:
        store.close()
    assert states == [(1, "LOST"), (2, "SUCCEEDED")]
    (out,) = (run_dir / "logs" / "chatty").glob("chatty.*.2.out")  # <job>.<key>.out
    assert out.stat().st_size >= 1_990_000


# -- settings ----------------------------------------------------------------------------


@gm.workflow
def layered() -> None:
    from engine_tasks import hog, slow

    hog(mb=1)
    hog(mb=2, resources=gm.Resources(mem="400M"))
    slow(pause=0.0)


def test_resources_and_policy_layer_in_the_documented_order(et: ModuleType, tmp_path: Path) -> None:
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(
        "default: {mem: 1G, retries: 5, queue: all.q}\n"
        "tasks:\n"
        "  hog: {mem: 300M, on_oom: {mem: x2, max: 2G}}\n"
    )
    wf = layered()
    spec = resolve_spec(wf, load_spec(spec_path))
    plain, per_call, slow = unit_plans(wf, spec, None, None)
    assert plain.resources.mem == 300 * M  # spec task > spec default > decorator (200M)
    assert per_call.resources.mem == 400 * M  # per-call resources= > spec
    assert slow.resources.mem == 1024 * M  # spec default > nothing in the decorator
    assert slow.resources.runtime == 1  # decorator, untouched by the spec
    assert (plain.resources.queue, plain.resources.cores) == ("all.q", 1)
    assert plain.policy.retries == 5  # spec default > decorator (2)
    assert plain.policy.on_oom is not None
    assert plain.policy.on_oom.cap == 2 * 2**30
    cli = unit_plans(wf, spec, Resources(mem="50M"), Policy(retries=0))
    assert {p.resources.mem for p in cli} == {50 * M}  # CLI flags beat everything
    assert {p.policy.retries for p in cli} == {0}


def test_an_escalation_rule_that_can_never_apply_is_warned_about(
    et: ModuleType, tmp_path: Path
) -> None:
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text("tasks:\n  exit_with: {on_timeout: {runtime: x2}}\n")
    warnings: list[str] = []
    logger.enable("gristmill")
    logger.add(lambda m: warnings.append(m.record["message"]), level="WARNING",
               filter=lambda r: "retries" in r["message"])

    assert run_workflow(et.one_exit(code=0), run_dir=tmp_path / "runs", spec=spec_path).ok
    assert warnings == [
        "task 'exit_with': on_timeout (runtime x2) does nothing while retries is 0, as it grows "
        "the resources of a retry; set retries (e.g. `retries: 2` under tasks.exit_with in the "
        "spec, or --retries 2)"
    ]
    warnings.clear()
    assert run_workflow(et.one_exit(code=0), run_dir=tmp_path / "runs", spec=spec_path,
                        policy=Policy(retries=1)).ok
    assert warnings == []


# -- resume --------------------------------------------------------------------------------


def test_a_run_with_other_arguments_on_a_run_dir_reuses_done_nodes_by_identity(
    et: ModuleType, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    first = run_workflow(et.appends(path=str(out), n=3, pause=0.0), run_dir=tmp_path / "runs")
    assert first.ok
    again = run_workflow(et.appends(path=str(out), n=5, pause=0.0), run_dir=first.run_dir)
    assert again.ok
    assert again.counts == {"DONE": 5}
    # 0 and 1 did not run again; 2 did: it waited for 0 and 1 when n=3 (the last quarter),
    # and is a first-stage node now, so what it waits for changed.
    assert sorted(lines(out)) == ["0", "1", "2", "2", "3", "4"]
    rebuilt, meta = rebuild_workflow(first.run_dir)  # what `gristmill resume` would run
    assert rebuilt.args["n"] == 5
    assert meta["nodes"] == 5
    assert [n.identity for n in rebuilt.nodes()] == [
        n.identity for n in et.appends(path=str(out), n=5, pause=0.0).nodes()
    ]


def _store_rows(run_dir: Path, sql: str) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(run_dir / STORE_NAME)
    try:
        return [tuple(row) for row in conn.execute(sql)]
    finally:
        conn.close()


def _store_write(run_dir: Path, *statements: tuple[str, tuple[object, ...]]) -> None:
    conn = sqlite3.connect(run_dir / STORE_NAME)
    try:
        with conn:
            for sql, args in statements:
                conn.execute(sql, args)
    finally:
        conn.close()


def test_resuming_the_same_workflow_trusts_the_unit_digests_and_reads_only_states(
    et: ModuleType, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    first = run_workflow(et.appends(path=str(out), n=4, pause=0.0), run_dir=tmp_path / "runs")
    definitions = _store_rows(first.run_dir, "SELECT definition FROM units ORDER BY id")
    digests = et.appends(path=str(out), n=4, pause=0.0).graph().unit_digests()
    assert [json.loads(str(d))["digest"] for (d,) in definitions] == digests
    failed, running = int(NodeState.FAILED), int(NodeState.RUNNING)
    _store_write(
        first.run_dir,
        # The digests vouch for every identity, so this one is never read back.
        ("UPDATE nodes SET identity = 'never read' WHERE id = 0", ()),
        ("UPDATE nodes SET state = ? WHERE id IN (1, 2)", (failed,)),
        ("UPDATE nodes SET state = ? WHERE id = 3", (running,)),
    )
    again = run_workflow(et.appends(path=str(out), n=4, pause=0.0), run_dir=first.run_dir)
    assert again.counts == {"DONE": 4}
    assert sorted(lines(out)) == ["0", "1", "1", "2", "2", "3", "3"]  # node 0 did not run again
    assert _store_rows(
        first.run_dir, "SELECT node_lo, node_hi, state FROM events WHERE note = 'resume'"
    ) == [(1, 3, int(NodeState.PENDING))]  # one range for the three nodes put back


def test_a_store_without_unit_digests_is_matched_by_identity_and_gets_them(
    et: ModuleType, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    first = run_workflow(et.appends(path=str(out), n=4, pause=0.0), run_dir=tmp_path / "runs")
    stripped = []
    for unit, definition in _store_rows(first.run_dir, "SELECT id, definition FROM units"):
        data = json.loads(str(definition))
        del data["digest"]
        stripped.append(("UPDATE units SET definition = ? WHERE id = ?", (json.dumps(data), unit)))
    _store_write(first.run_dir, *stripped, (
        "UPDATE nodes SET state = ? WHERE id = 1", (int(NodeState.FAILED),)
    ))
    again = run_workflow(et.appends(path=str(out), n=4, pause=0.0), run_dir=first.run_dir)
    assert again.counts == {"DONE": 4}
    assert sorted(lines(out)) == ["0", "1", "1", "2", "3"]
    definitions = _store_rows(first.run_dir, "SELECT definition FROM units ORDER BY id")
    digests = et.appends(path=str(out), n=4, pause=0.0).graph().unit_digests()
    assert [json.loads(str(d))["digest"] for (d,) in definitions] == digests


def test_workflow_run_is_the_same_runner(et: ModuleType, tmp_path: Path) -> None:
    result = et.one_exit(code=0).run("local", run_dir=tmp_path / "runs", max_cores=1)
    assert isinstance(result, RunResult)
    assert result.ok
    assert result.run_dir.parent == tmp_path / "runs"
    assert result.counts == {"DONE": 1}


def test_run_metadata_records_how_the_run_ended(et: ModuleType, tmp_path: Path) -> None:
    ok = run_workflow(et.one_exit(code=0), run_dir=tmp_path / "runs")
    failed = run_workflow(et.one_exit(code=4), run_dir=tmp_path / "runs")
    assert isinstance(ok, RunResult)
    assert (ok.ok, ok.failed, failed.ok, failed.failed) == (True, 0, False, 1)
    for result, status in ((ok, "succeeded"), (failed, "failed")):
        data = yaml.safe_load((result.run_dir / "run_metadata.yaml").read_text())
        assert data["status"] == status
        assert data["counts"] == dict(result.counts)


def test_rebuild_reads_the_bare_bytes_an_older_version_stored_in_the_spec(
    et: ModuleType, tmp_path: Path
) -> None:
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text("tasks:\n  exit_with: {mem: 0.3G}\n")  # not a whole KiB
    first = run_workflow(et.one_exit(code=0), run_dir=tmp_path / "runs", spec=spec_path)
    store = Store.open(first.run_dir, check=False)
    try:
        assert store.meta()["spec"] == {"tasks": {"exit_with": {"mem": "322122548B"}}}
        with store.transaction() as cur:  # what versions before units were required wrote
            store.set_meta(cur, "spec", {"tasks": {"exit_with": {"mem": 322122548}}})
    finally:
        store.close()

    _, meta = rebuild_workflow(first.run_dir)

    assert meta["spec"] == {"tasks": {"exit_with": {"mem": "322122548B"}}}
    assert Spec.from_dict(meta["spec"]).tasks["exit_with"].resources.mem == 322122548


def test_rebuild_needs_an_importable_workflow(tmp_path: Path) -> None:
    store = Store.create(tmp_path, {"function": "no_such_module_xyz:wf", "args": {}})
    store.close()
    with pytest.raises(RunDirError, match="cannot import 'no_such_module_xyz'"):
        rebuild_workflow(tmp_path)


def test_attempt_paths_are_absolute_and_do_not_go_through_latest(
    et: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    first = run_workflow(et.appends(path=str(tmp_path / "out"), n=2, pause=0.0), run_dir="runs")
    assert first.ok
    assert first.run_dir.is_absolute()
    again = run_workflow(et.appends(path=str(tmp_path / "out"), n=3, pause=0.0),
                         run_dir="runs/latest")
    assert again.run_dir == first.run_dir  # the run latest pointed at, not the link
    store = Store.open(first.run_dir, readonly=True)
    try:
        paths = [p for a in store.attempts() for p in (a.stdout, a.stderr, a.result_path)]
    finally:
        store.close()
    assert len(paths) == 12  # 2 attempts, then 2: node 1 lost its upstream (n=3), node 2 is new
    assert all(Path(p).is_absolute() and "latest" not in Path(p).parts for p in paths)
