"""The engine end to end: real tasks in real processes on the local backend.

Tasks (tests/fixtures/engine_tasks.py) leave evidence in files: lines appended
with O_APPEND, start/end stamps, pid files. Assertions compare that evidence with
what the store recorded, so a test fails when either the work or the record is wrong.
"""

from __future__ import annotations

import collections
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from gm_testing import attempts, max_overlap, pid_gone, unconfirm, wait_for

from gristmill.engine.runner import RunResult, run_workflow
from gristmill.errors import RunDirError
from gristmill.states import JobState, NodeState
from gristmill.store.db import Store
from gristmill.worker.result import AttemptResult

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
SRC = Path(__file__).resolve().parents[2] / "src"
#: ``gristmill`` run as this interpreter (the console-script shim may be another one).
GRISTMILL = [sys.executable, "-c", "import sys; from gristmill.cli.app import main; main()"]


def written(path: Path) -> bool:
    """The file holds a whole line: tasks write it while the test polls."""
    try:
        return path.read_text().endswith("\n")
    except FileNotFoundError:
        return False


def run(wf: Any, tmp_path: Path, **options: Any) -> RunResult:
    options.setdefault("max_cores", 4)
    return run_workflow(wf, run_dir=tmp_path / "runs", **options)


def counts(run_dir: Path) -> dict[tuple[str, str], int]:
    store = Store.open(run_dir, readonly=True)
    try:
        return store.counts()
    finally:
        store.close()


def lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def start_engine(procs: list[subprocess.Popen[bytes]], *args: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [*GRISTMILL, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    procs.append(proc)
    return proc


# -- concurrency ------------------------------------------------------------------------


def test_max_concurrent_of_the_workflow_decorator(et: ModuleType, tmp_path: Path) -> None:
    stamps = tmp_path / "stamps"
    result = run(et.spans_wf_limited(stamps=str(stamps), n=5, pause=0.6), tmp_path, max_cores=8)
    assert result.ok
    assert max_overlap(stamps) == 2


def test_max_concurrent_per_task_from_the_decorator(et: ModuleType, tmp_path: Path) -> None:
    stamps = tmp_path / "stamps"
    result = run(et.spans_task_limited(stamps=str(stamps), n=5, pause=0.6), tmp_path, max_cores=8)
    assert result.ok
    assert max_overlap(stamps, range(0, 5)) == 2  # span_limited: max_concurrent=2
    assert max_overlap(stamps) > 2  # unlimited span nodes ran beside them


def test_max_concurrent_per_task_from_the_spec(et: ModuleType, tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text("tasks:\n  span: {max_concurrent: 1}\n")
    stamps = tmp_path / "stamps"
    result = run(et.spans(stamps=str(stamps), n=3, pause=0.3), tmp_path, spec=spec, max_cores=8)
    assert result.ok
    assert max_overlap(stamps) == 1


class SubmitSpy:
    """A real backend that also records the size of every ``submit`` call."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.name = inner.name
        self.capabilities = inner.capabilities
        self.batches: list[int] = []

    def submit(self, jobs: Any) -> Any:
        self.batches.append(len(jobs))
        return self.inner.submit(jobs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_ready_nodes_are_submitted_in_batches_and_every_transition_is_recorded(
    et: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gristmill.backends.registry import make_backend

    spies: list[SubmitSpy] = []

    def spying(name: str, **options: Any) -> Any:
        spies.append(SubmitSpy(make_backend(name, **options)))
        return spies[-1]

    monkeypatch.setattr("gristmill.engine.runner.make_backend", spying)
    result = run(et.appends(path=str(tmp_path / "out"), n=12, pause=0.0), tmp_path)
    assert result.ok
    assert spies[0].batches == [9, 3]  # each released group in one call, not one per node
    store = Store.open(result.run_dir, readonly=True)
    try:
        events = store.conn.execute(
            "SELECT ts, node_lo, node_hi, state FROM events ORDER BY rowid"
        ).fetchall()
    finally:
        store.close()
    assert (0, 8, int(NodeState.READY)) in [tuple(e)[1:] for e in events]  # one range event
    for node in (0, 11):
        mine = [(e["ts"], NodeState(e["state"]).name) for e in events
                if e["node_lo"] <= node <= e["node_hi"]]
        names = [name for _, name in mine if name != "RUNNING"]  # RUNNING if polled in time
        assert names == ["READY", "SUBMITTED", "DONE"]
        assert [ts for ts, _ in mine] == sorted(ts for ts, _ in mine)


def test_each_attempt_records_the_cpu_time_it_burned(et: ModuleType, tmp_path: Path) -> None:
    result = run(et.busy_and_idle(cpu=0.5), tmp_path)
    assert result.ok
    store = Store.open(result.run_dir, readonly=True)
    try:
        records = store.attempts()
    finally:
        store.close()
    cpu = {a.argv[a.argv.index("--cpu") + 1]: a.cpu_time for a in records}
    assert {a.usage_source for a in records} == {"worker"}
    busy, idle = cpu["0.5"], cpu["0.0"]
    assert busy is not None
    assert busy >= 0.5
    assert idle is not None
    assert idle < busy - 0.3


# -- failures, retries and escalation ---------------------------------------------------------


class ForgingBackend(SubmitSpy):
    """A real backend, whose first finished job's result file is then replaced by one
    naming another attempt, and saying SUCCEEDED: what a second node writing the same
    file name left there before gristmill gave every attempt files of its own."""

    forged: list[str] = []

    def poll(self, handles: Any) -> Any:
        statuses = self.inner.poll(handles)
        for handle, status in statuses.items():
            if status.state.finished and not self.forged:
                # (The local backend writes no result file for a job its engine records:
                # the forgery is written whole.)
                forged = AttemptResult(JobState.SUCCEEDED, 0, None, None, 0.1, "h", 1.0, 1.1,
                                       "exit code 0", key="ffffffffffffffff.1")
                Path(handle.result_path).write_text(forged.to_json())
                self.forged.append(handle.key)
        return statuses


def test_a_result_file_naming_another_attempt_is_lost_never_a_success(
    et: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The engine believes a result file only for the attempt it names: the forged
    SUCCEEDED makes attempt 1 LOST (rerun), and the task's real failure stands."""
    from gristmill.backends.registry import make_backend

    forging: list[ForgingBackend] = []

    def make(name: str, **options: Any) -> Any:
        forging.append(ForgingBackend(make_backend(name, **options)))
        forging[-1].forged = []
        return forging[-1]

    monkeypatch.setattr("gristmill.engine.runner.make_backend", make)
    result = run(et.one_exit(code=3), tmp_path)
    assert not result.ok
    assert result.counts == {"FAILED": 1}
    tried = [(a.attempt, a.state) for a in attempts(result.run_dir)]
    assert tried == [(1, "LOST"), (2, "FAILED")]
    (lost,) = [a for a in attempts(result.run_dir) if a.state == "LOST"]
    assert lost.key == forging[0].forged[0]
    assert f"of attempt ffffffffffffffff.1, not of attempt {lost.key}" in lost.reason



def test_retries_rerun_a_failing_task_then_give_up(et: ModuleType, tmp_path: Path) -> None:
    from gristmill.resources import Policy

    marker = tmp_path / "marker"
    result = run(et.one_exit(code=3, marker=str(marker)), tmp_path, policy=Policy(retries=2))
    assert not result.ok
    assert result.counts == {"FAILED": 1}
    assert lines(marker).count("3") == 3  # the first attempt and two retries
    records = attempts(result.run_dir)
    assert [(a.attempt, a.state, a.exit_code) for a in records] == [
        (1, "FAILED", 3), (2, "FAILED", 3), (3, "FAILED", 3),
    ]  # fmt: skip
    for record in records:  # each attempt has its own logs
        assert "about to exit with code 3" in Path(record.stderr).read_text()
        assert record.stderr.endswith(f"/exit_with.{record.key}.err")
        assert record.key == f"{record.identity[:16]}.{record.attempt}"


def test_oom_is_retried_with_more_memory(et: ModuleType, tmp_path: Path) -> None:
    result = run(et.one_hog(mb=200, marker=str(tmp_path / "marker")), tmp_path)
    assert result.ok, attempts(result.run_dir)
    first, second = attempts(result.run_dir)
    assert (first.state, second.state) == ("OOM", "SUCCEEDED")
    assert first.resources["mem"] == 200 * 2**20
    assert second.resources["mem"] == 300 * 2**20  # x1.5, the default on_oom rule
    assert "exceeded memory limit" in first.reason
    assert first.peak_rss is not None
    assert first.peak_rss > 200 * 2**20
    assert second.peak_rss is not None
    assert 200 * 2**20 < second.peak_rss < 300 * 2**20
    assert first.signal == signal.SIGKILL
    assert second.exit_code == 0
    assert lines(tmp_path / "marker") == ["hog", "hog"]
    for record in (first, second):  # what the worker measured is in the store
        assert record.host
        assert record.elapsed
        assert record.ended
        assert record.job_id


def test_oom_at_the_cap_is_not_retried(et: ModuleType, tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text("tasks:\n  hog: {on_oom: {mem: x1.5, max: 200M}}\n")
    result = run(et.one_hog(mb=200, marker=str(tmp_path / "marker")), tmp_path, spec=spec)
    assert result.counts == {"FAILED": 1}
    (only,) = attempts(result.run_dir)
    assert only.state == "OOM"
    assert only.resources["mem"] == 200 * 2**20
    assert lines(tmp_path / "marker") == ["hog"]


def test_timeout_is_retried_with_twice_the_runtime(et: ModuleType, tmp_path: Path) -> None:
    result = run(et.one_slow(pause=1.5, marker=str(tmp_path / "marker")), tmp_path)
    assert result.ok, attempts(result.run_dir)
    first, second = attempts(result.run_dir)
    assert (first.state, first.resources["runtime"]) == ("TIMEOUT", 1)
    assert (second.state, second.resources["runtime"]) == ("SUCCEEDED", 2)
    assert "exceeded runtime" in first.reason
    assert first.elapsed is not None
    assert 1.0 <= first.elapsed < 1.5


def test_a_task_killed_by_a_signal_fails_with_that_signal(et: ModuleType, tmp_path: Path) -> None:
    result = run(et.one_kill(signum=int(signal.SIGKILL)), tmp_path)
    assert result.counts == {"FAILED": 1}
    (only,) = attempts(result.run_dir)
    assert (only.state, only.signal, only.exit_code) == ("FAILED", signal.SIGKILL, None)
    assert "SIGKILL" in only.reason


def test_upstream_failure_blocks_descendants_only(et: ModuleType, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run(et.diamond_with_failure(path=str(out), code=3), tmp_path)
    assert not result.ok
    assert result.counts == {"FAILED": 1, "UPSTREAM_FAILED": 2, "DONE": 4}
    assert sorted(lines(out), key=int) == ["10", "11", "12", "13"]  # the other branch ran
    assert counts(result.run_dir) == {
        ("exit_with", "FAILED"): 1, ("append_line", "UPSTREAM_FAILED"): 2,
        ("append_line", "DONE"): 4,
    }  # fmt: skip
    assert len(attempts(result.run_dir)) == 5  # the blocked nodes were never submitted


def test_fail_fast_cancels_running_work_and_submits_nothing_more(
    et: ModuleType, tmp_path: Path
) -> None:
    pidfile, out = tmp_path / "pid", tmp_path / "out"
    started = time.monotonic()
    result = run(et.fail_fast_flow(pidfile=str(pidfile), path=str(out)), tmp_path)
    assert time.monotonic() - started < 15  # the 30 s sleeper did not hold the run
    assert not result.ok
    assert result.counts == {"FAILED": 1, "CANCELLED": 2, "UPSTREAM_FAILED": 5, "PENDING": 5}
    assert not out.exists()  # no appender ever ran
    states = sorted((a.task, a.state) for a in attempts(result.run_dir))
    assert states == [("exit_with", "FAILED"), ("sleeper", "CANCELLED"), ("sleeper", "CANCELLED")]
    for path in (pidfile, pidfile.with_name("pid.gate")):
        wait_for(path.exists, 5, f"{path} (the sleepers started before the failure)")
        assert pid_gone(int(path.read_text())), "a cancelled sleeper is still running"


def test_a_task_module_the_child_cannot_import_fails_clearly(
    et: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", str(SRC))  # the fallback runner cannot find engine_tasks
    result = run(et.one_exit(code=0), tmp_path)
    assert result.counts == {"FAILED": 1}
    (only,) = attempts(result.run_dir)
    assert only.argv[1:4] == ("-m", "gristmill.dsl.exec", "engine_tasks:exit_with")
    log = Path(only.stderr).read_text()
    assert "No module named 'engine_tasks'" in log, log
    assert only.exit_code == 2


def test_a_missing_console_script_falls_back_to_gristmill_exec(
    et: ModuleType, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    result = run(et.appends(path=str(out), n=4, pause=0.0), tmp_path)
    assert result.ok
    assert sorted(lines(out), key=int) == ["0", "1", "2", "3"]
    record = attempts(result.run_dir)[0]
    assert record.argv[:4] == (
        sys.executable, "-m", "gristmill.dsl.exec", "engine_tasks:append_line")


def test_a_node_in_two_units_waits_for_both_and_runs_once(et: ModuleType, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run(et.overlapping(path=str(out)), tmp_path)
    assert result.ok
    assert result.counts == {"DONE": 4}
    seen = lines(out)
    assert sorted(seen) == ["0", "1", "100", "2"]
    assert seen.index("1") > seen.index("100")  # it waited for the gate of its second unit


def test_a_submission_the_backend_refuses_fails_the_node_with_its_reason(
    et: ModuleType, tmp_path: Path
) -> None:
    from gristmill.resources import Resources

    result = run(et.one_exit(code=0), tmp_path, resources=Resources(cores=64),
                 strict_resources=True, max_cores=2)
    assert result.counts == {"FAILED": 1}
    (only,) = attempts(result.run_dir)
    assert only.state == "FAILED"
    assert "cores=64" in only.reason
    assert "strict-resources" in only.reason


# -- resume, reattach, lock ---------------------------------------------------------------------


def test_run_on_an_existing_run_dir_reruns_only_what_did_not_finish(
    et: ModuleType, tmp_path: Path
) -> None:
    out, control = tmp_path / "out", tmp_path / "control"
    control.touch()
    wf = et.fix_and_resume(path=str(out), control=str(control), n=4)
    first = run(wf, tmp_path)
    assert first.counts == {"DONE": 4, "FAILED": 1}
    control.unlink()
    second = run_workflow(
        et.fix_and_resume(path=str(out), control=str(control), n=4), run_dir=first.run_dir
    )
    assert second.ok
    assert second.run_dir == first.run_dir
    assert sorted(lines(out)) == ["0", "1", "2", "3", "flaky"]  # each exactly once
    flaky = [a for a in attempts(first.run_dir) if a.task == "flaky"]
    assert [(a.attempt, a.state) for a in flaky] == [(1, "FAILED"), (2, "SUCCEEDED")]


def test_resume_takes_the_result_of_an_attempt_whose_job_id_was_never_recorded(
    et: ModuleType, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    first = run(et.appends(path=str(out), n=2, pause=0.0), tmp_path)
    record = unconfirm(first.run_dir, 0)
    again = run_workflow(et.appends(path=str(out), n=2, pause=0.0), run_dir=first.run_dir)
    assert again.ok
    assert sorted(lines(out)) == ["0", "1"]  # its result was on disk: it did not run again
    mine = [a for a in attempts(first.run_dir) if a.identity == record.identity]
    assert [(a.attempt, a.state) for a in mine] == [(1, "SUCCEEDED")]


def test_resume_reruns_an_unconfirmed_attempt_that_left_no_result(
    et: ModuleType, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    first = run(et.appends(path=str(out), n=2, pause=0.0), tmp_path)
    record = unconfirm(first.run_dir, 1)
    Path(record.result_path).unlink()
    again = run_workflow(et.appends(path=str(out), n=2, pause=0.0), run_dir=first.run_dir)
    assert again.ok
    mine = [a for a in attempts(first.run_dir) if a.identity == record.identity]
    assert [(a.attempt, a.state) for a in mine] == [(1, "LOST"), (2, "SUCCEEDED")]
    assert "not confirmed" in mine[0].reason


def test_a_second_engine_on_a_locked_run_dir_is_refused(
    et: ModuleType, tmp_path: Path, engines: list[subprocess.Popen[bytes]]
) -> None:
    pidfile, release = tmp_path / "pid", tmp_path / "release"
    proc = start_engine(
        engines, "run", "engine_tasks:sleepers", "--pidfile", str(pidfile),
        "--release", str(release), "--run-dir", str(tmp_path / "runs"),
    )
    wait_for(lambda: written(tmp_path / "pid.0"), 15, "the first engine's task")
    run_dir = (tmp_path / "runs" / "latest").resolve()
    wf = et.sleepers(pidfile=str(pidfile), release=str(release))
    with pytest.raises(RunDirError) as info:
        run_workflow(wf, run_dir=run_dir)
    message = str(info.value)
    assert f"pid {proc.pid}" in message
    assert f"host {os.uname().nodename}" in message
    release.touch()
    assert proc.wait(timeout=20) == 0


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_to_the_engine_cancels_live_jobs_and_resume_finishes(
    et: ModuleType, tmp_path: Path, engines: list[subprocess.Popen[bytes]], signum: int
) -> None:
    pidfile, release = tmp_path / "pid", tmp_path / "release"
    proc = start_engine(
        engines, "run", "engine_tasks:sleepers", "--pidfile", str(pidfile), "--n", "2",
        "--release", str(release), "--run-dir", str(tmp_path / "runs"), "--max-cores", "2",
    )
    pidfiles = [tmp_path / "pid.0", tmp_path / "pid.1"]
    wait_for(lambda: all(written(p) for p in pidfiles), 15, "both sleepers to start")
    os.kill(proc.pid, signum)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 130, err.decode()
    assert b"gristmill resume" in err
    for path in pidfiles:
        assert pid_gone(int(path.read_text())), "a sleeper outlived its cancelled run"
    run_dir = (tmp_path / "runs" / "latest").resolve()
    assert counts(run_dir) == {("sleeper", "CANCELLED"): 2}
    assert {a.state for a in attempts(run_dir)} == {"CANCELLED"}
    release.touch()
    done = subprocess.run(
        [*GRISTMILL, "resume", str(run_dir)], capture_output=True, timeout=30
    )
    assert done.returncode == 0, done.stderr.decode()
    assert counts(run_dir) == {("sleeper", "DONE"): 2}


def test_an_idle_engine_uses_almost_no_cpu(
    et: ModuleType, tmp_path: Path, engines: list[subprocess.Popen[bytes]]
) -> None:
    pidfile, release = tmp_path / "pid", tmp_path / "release"
    proc = start_engine(
        engines, "run", "engine_tasks:sleepers", "--pidfile", str(pidfile),
        "--release", str(release), "--run-dir", str(tmp_path / "runs"),
    )
    wait_for(lambda: written(tmp_path / "pid.0"), 15, "the sleeper to start")
    time.sleep(0.3)  # past the engine's own start-up

    def cpu_seconds() -> float:
        with open(f"/proc/{proc.pid}/stat") as fh:
            fields = fh.read().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    cpu0, wall0 = cpu_seconds(), time.monotonic()
    time.sleep(2.0)
    used, wall = cpu_seconds() - cpu0, time.monotonic() - wall0
    print(f"idle engine: {used:.3f} s CPU over {wall:.2f} s wall ({100 * used / wall:.1f}%)")
    assert used < 0.05 * wall
    release.touch()
    assert proc.wait(timeout=20) == 0


@pytest.mark.slow
def test_kill_9_at_random_moments_then_resume_runs_each_task_exactly_once(
    et: ModuleType, tmp_path: Path, engines: list[subprocess.Popen[bytes]]
) -> None:
    """THE resume test: 200 tasks, the engine killed -9 three times, each task runs once.

    The kills are chained: the first hits ``run``, the next ones hit the ``resume``
    that followed, so later engines re-adopt jobs that earlier engines submitted.
    """
    n, seed = 200, 20261129
    rng = random.Random(seed)
    shared = tmp_path / "shared"
    kill_at = sorted(rng.sample(range(20, n - 20), 3))  # lines written when each kill fires
    command = [
        "run", "engine_tasks:appends", "--path", str(shared), "--n", str(n), "--pause", "-1",
        "--seed", str(seed), "--run-dir", str(tmp_path / "runs"), "--max-cores", "4",
    ]
    run_dir: Path | None = None
    for point in kill_at:
        proc = start_engine(engines, *command)
        wait_for(lambda: len(lines(shared)) >= point or proc.poll() is not None, 60,  # noqa: B023
                 f"{point} lines")
        time.sleep(rng.uniform(0.0, 0.05))
        assert proc.poll() is None, proc.communicate()[1].decode()
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        if run_dir is None:
            run_dir = (tmp_path / "runs" / "latest").resolve()
            command = ["resume", str(run_dir), "--max-cores", "4"]
    assert run_dir is not None
    done = subprocess.run([*GRISTMILL, *command], capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()
    seen = collections.Counter(lines(shared))
    assert sorted(seen, key=int) == [str(i) for i in range(n)]
    assert {ident: k for ident, k in seen.items() if k != 1} == {}
    assert counts(run_dir) == {("append_line", "DONE"): n}


# -- submission failures ---------------------------------------------------------------------


class FlakySubmit:
    """The real local backend, whose first ``failures`` submissions are refused."""

    def __init__(self, failures: int, *, transient: bool) -> None:
        from gristmill.backends.local.backend import LocalBackend

        self.inner = LocalBackend(max_cores=2)
        self.name, self.capabilities = self.inner.name, self.inner.capabilities
        self.failures, self.transient, self.calls = failures, transient, 0
        self.times: list[float] = []

    def submit(self, jobs: Any) -> Any:
        from gristmill.errors import BackendError

        self.calls += 1
        self.times.append(time.monotonic())
        if self.calls <= self.failures:
            raise BackendError("sbatch: Socket timed out", transient=self.transient)
        return self.inner.submit(jobs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_a_transient_submission_failure_is_retried_after_a_pause(
    et: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gristmill.engine.runner

    flaky = FlakySubmit(2, transient=True)
    monkeypatch.setattr(gristmill.engine.runner, "make_backend", lambda name, **_: flaky)
    out = tmp_path / "out"
    result = run(et.appends(path=str(out), n=3, pause=0.0), tmp_path)
    assert result.ok, result.counts
    assert sorted(lines(out)) == ["0", "1", "2"]
    assert flaky.calls >= 3  # two refusals, then the first batch; later ones after it
    gaps = [b - a for a, b in zip(flaky.times, flaky.times[1:])]
    assert gaps[0] >= 2 - 0.1, gaps  # paused 2 s after the first refusal
    assert gaps[1] >= 4 - 0.1, gaps  # then 4 s
    failed = [a for a in attempts(result.run_dir) if a.state == "FAILED"]
    assert len(failed) == 2 * 2  # the two ready nodes, refused twice
    assert all("Socket timed out" in a.reason for a in failed)


def test_a_permanent_submission_refusal_fails_the_nodes_at_once(
    et: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gristmill.engine.runner

    flaky = FlakySubmit(1, transient=False)
    monkeypatch.setattr(gristmill.engine.runner, "make_backend", lambda name, **_: flaky)
    result = run(et.appends(path=str(tmp_path / "out"), n=3, pause=0.0), tmp_path)
    assert not result.ok
    assert result.counts == {"FAILED": 2, "UPSTREAM_FAILED": 1}  # two ready, one after them
    assert flaky.calls == 1


class Preempting:
    """The real local backend as a cluster that preempts (or loses the node of) attempts.

    The first ``len(ends)`` attempts submitted are really stopped at once (cancelled, as
    a scheduler stops a preempted job), and when they end the backend reports the
    scheduler's word for it, ``ends[i]``, as Slurm reports PREEMPTED or NODE_FAIL.
    """

    def __init__(self, ends: list[Any]) -> None:
        from gristmill.backends.local.backend import LocalBackend

        self.inner = LocalBackend(max_cores=2)
        self.name, self.capabilities = self.inner.name, self.inner.capabilities
        self.ends = list(ends)
        self.stopped: dict[str, Any] = {}  # attempt key -> what the "scheduler" says

    def submit(self, jobs: Any) -> Any:
        handles = self.inner.submit(jobs)
        for handle in handles:
            if self.ends:
                self.stopped[handle.key] = self.ends.pop(0)
                self.inner.cancel([handle])
        return handles

    def poll(self, handles: Any) -> Any:
        import attrs

        statuses = dict(self.inner.poll(handles))
        for handle, status in statuses.items():
            if status.state.finished and handle.key in self.stopped:
                statuses[handle] = attrs.evolve(
                    status, state=self.stopped[handle.key],
                    reason=f"the cluster says {self.stopped[handle.key].value}")
        return statuses

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_preempted_and_node_failed_attempts_rerun_as_they_were_without_spending_retries(
    et: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """hog has ``retries=2``: four ends that are the cluster's fault do not use them up,
    and none grows the memory request (as an OOM would)."""
    import gristmill.engine.runner
    from gristmill.states import JobState

    pre, node = JobState.PREEMPTED, JobState.NODE_FAIL
    cluster = Preempting([pre, node, pre, pre])
    monkeypatch.setattr(gristmill.engine.runner, "make_backend", lambda name, **_: cluster)
    result = run(et.one_hog(mb=10), tmp_path)
    assert result.ok, attempts(result.run_dir)
    records = attempts(result.run_dir)
    assert [(a.attempt, a.state) for a in records] == [
        (1, "PREEMPTED"), (2, "NODE_FAIL"), (3, "PREEMPTED"), (4, "PREEMPTED"), (5, "SUCCEEDED"),
    ]
    assert {a.resources["mem"] for a in records} == {200 * 2**20}  # never escalated
    assert records[1].reason == "the cluster says NODE_FAIL"  # the cause is on record


def test_preemptions_past_their_cap_spend_the_tasks_retries(
    et: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gristmill.engine.outcome
    import gristmill.engine.runner
    from gristmill.states import JobState

    monkeypatch.setattr(gristmill.engine.outcome, "PREEMPT_RETRIES", 2)
    cluster = Preempting([JobState.PREEMPTED] * 20)
    monkeypatch.setattr(gristmill.engine.runner, "make_backend", lambda name, **_: cluster)
    result = run(et.one_hog(mb=10), tmp_path)
    assert result.counts == {"FAILED": 1}
    records = attempts(result.run_dir)
    # Two free reruns (the cap), then hog's two retries, then the failure is final.
    assert [a.state for a in records] == ["PREEMPTED"] * 5
    assert len(cluster.ends) == 15
