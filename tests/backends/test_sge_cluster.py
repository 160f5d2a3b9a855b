"""The Grid Engine backend against the REAL single-node cluster that ci/sge/start.sh runs.

``nox -s sge`` starts it and runs ``pytest -m sge tests/backends``; by hand (as root):
``eval "$(bash ci/sge/start.sh)"`` then ``pytest -m sge tests/backends``. Without
``-m sge``, without ``SGE_ROOT``, or when ``qstat`` does not answer, every test here
is skipped.

Tasks come from tests/fixtures/slurm_tasks.py (nothing in it is Slurm-specific):
qsub ``-V`` exports PYTHONPATH to the jobs, and each task leaves its side effect
in a file, so the tests prove how often each node really ran. Every wait is
bounded: an engine run gets a SIGINT at its deadline (the engine then deletes its
jobs), subprocesses get timeouts.
"""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cluster_testing
import pytest
from cluster_testing import by_node, gristmill, lines, wait_until
from gm_testing import attempts

from gristmill.backends.base import JobRequest
from gristmill.backends.sge.backend import SgeBackend, parse_qstat_xml
from gristmill.engine.runner import RunResult
from gristmill.resources import Resources
from gristmill.spec.load import Spec
from gristmill.states import JobState

pytestmark = [pytest.mark.sge, pytest.mark.usefixtures("job_env")]

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
SRC = ROOT / "src"


def _cluster_problem() -> str | None:
    if "SGE_ROOT" not in os.environ:
        return "SGE_ROOT is not set: start the test cluster with ci/sge/start.sh"
    try:
        qstat = subprocess.run(["qstat"], capture_output=True, text=True, timeout=20,
                               check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"qstat failed: {exc}"
    if qstat.returncode != 0:
        return f"sge_qmaster does not answer: {qstat.stderr.strip()}"
    return None


@pytest.fixture(scope="module", autouse=True)
def cluster(request: pytest.FixtureRequest) -> None:
    """Skip unless asked for (``-m sge``) and the cluster answers."""
    cluster_testing.require_cluster(request, "sge", _cluster_problem)


def qacct_field(job_id: str, field: str) -> str:
    """One field of a finished task's accounting record (qacct lags the job's end by ~2 s)."""
    job, _, task = job_id.partition("_")
    out = ""

    def recorded() -> bool:
        nonlocal out
        proc = subprocess.run(["qacct", "-j", job, "-t", task], capture_output=True, text=True,
                              timeout=30, check=False)
        out = proc.stdout
        return proc.returncode == 0

    wait_until(recorded, 20, f"qacct to have job {job_id}")
    return next(line.split(None, 1)[1].strip() for line in out.splitlines()
                if line.startswith(field + " "))


def run_bounded(
    wf: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seconds: float, **options: Any
) -> tuple[RunResult, SgeBackend]:
    """Run ``wf`` on Grid Engine in this process; SIGINT at ``seconds``."""
    options.setdefault("poll_min", 1)  # the shared-cluster floor (5 s) would only slow tests
    result, backend = cluster_testing.run_bounded(
        wf, "sge", tmp_path, monkeypatch, seconds, poll_interval=1, **options
    )
    assert isinstance(backend, SgeBackend)
    return result, backend


def test_one_array_per_task_and_resources(
    tasks: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "shared"
    result, backend = run_bounded(tasks.records(path=str(path), n=6), tmp_path, monkeypatch, 60)
    assert result.ok, result.counts
    assert sorted(lines(path), key=int) == [str(i) for i in range(6)]
    records = [r for rs in by_node(attempts(result.run_dir)).values() for r in rs]
    assert {str(r.job_id).split("_")[0] for r in records} == {str(records[0].job_id)[:-2]}
    assert sorted(str(r.job_id).split("_")[1] for r in records) == ["1", "2", "3", "4", "5", "6"]
    assert backend.calls["qsub"] == 1
    assert "qacct" not in backend.calls  # every job left a result file


def test_success_exit_3_and_memory_then_escalated(
    tasks: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """h_vmem=200M+256M: a 500 MB allocation fails (MemoryError) -> OOM; x3 then succeeds."""
    path, marker = tmp_path / "shared", tmp_path / "marker"
    spec = Spec.from_dict({"tasks": {"hog": {"on_oom": {"mem": "x3"}}}})
    result, _ = run_bounded(tasks.outcomes(path=str(path), marker=str(marker), mb=500),
                            tmp_path, monkeypatch, 90, spec=spec)
    assert not result.ok
    assert lines(path) == ["1"]
    assert collections.Counter(lines(marker)) == {"fail": 1, "hog": 2}
    nodes = by_node(attempts(result.run_dir))
    (ok,) = nodes["record"]
    assert (ok.state, ok.exit_code) == ("SUCCEEDED", 0)
    (failed,) = nodes["fail"]
    assert (failed.state, failed.exit_code) == ("FAILED", 3)
    assert qacct_field(str(failed.job_id), "exit_status") == "3"
    first, second = nodes["hog"]
    assert first.state == "OOM", first
    assert "h_vmem" in first.reason, first.reason
    assert second.state == "SUCCEEDED", second
    assert (first.resources["mem"], second.resources["mem"]) == (200 * 2**20, 600 * 2**20)


def test_memory_as_m_mem_free_a_consumable_as_univa_sites_request_it(
    tasks: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ci/sge/start.sh defines m_mem_free as a consumable of the host's memory."""
    path = tmp_path / "shared"
    spec = Spec.from_dict({"tasks": {"record": {"mem": "300M"}}})
    result, backend = run_bounded(tasks.records(path=str(path), n=2), tmp_path, monkeypatch, 60,
                                  spec=spec, backend_options={"memory_resource": "m_mem_free"})
    assert result.ok, result.counts
    assert sorted(lines(path), key=int) == ["0", "1"]
    assert backend.memory_resource == "m_mem_free"
    (record, _) = attempts(result.run_dir)
    category = qacct_field(str(record.job_id), "category")
    assert "m_mem_free=556M" in category, category  # 300M + the wrapper's 256M
    assert "h_vmem" not in category


def test_a_runtime_overrun_is_a_timeout_then_the_retry_gets_twice_the_runtime(
    tasks: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reap: Path
) -> None:
    """The wrapper stops the task at its runtime (h_rt, with its margin, is a backstop)."""
    marker = reap
    spec = Spec.from_dict({"tasks": {"slow": {"runtime": "5s"}}})
    result, backend = run_bounded(tasks.slows(marker=str(marker)), tmp_path, monkeypatch, 90,
                                  spec=spec)
    assert result.ok, result.counts
    assert lines(marker) == ["slow", "slow"]
    first, second = by_node(attempts(result.run_dir))["slow"]
    assert (first.state, first.signal) == ("TIMEOUT", signal.SIGTERM), first
    assert "exceeded runtime 00:00:05" in first.reason
    assert first.elapsed is not None
    assert 5 <= first.elapsed < 30
    assert second.state == "SUCCEEDED"
    assert (first.resources["runtime"], second.resources["runtime"]) == (5, 10)
    assert qacct_field(str(first.job_id), "failed").startswith("0")
    assert qacct_field(str(first.job_id), "exit_status").split()[0] == str(128 + signal.SIGTERM)
    assert "h_rt=65" in qacct_field(str(first.job_id), "category")
    assert "qacct" not in backend.calls  # the wrapper's result said it all


def survivors(marker: Path) -> list[int]:
    """Processes whose command line names ``marker``: tasks a kill did not reach."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and str(marker).encode() in (proc / "cmdline").read_bytes():
                found.append(int(proc.name))
        except OSError:
            continue
    return found


@pytest.fixture
def reap(tmp_path: Path) -> Iterator[Path]:
    """Kill (by pid) any task process a test left behind that names its marker."""
    marker = tmp_path / "marker"
    yield marker
    for pid in survivors(marker):
        os.kill(pid, signal.SIGKILL)


def test_a_runtime_overrun_leaves_no_task_process_behind(
    tasks: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reap: Path
) -> None:
    spec = Spec.from_dict({"tasks": {"slow": {"runtime": "3s"}}})
    result, _ = run_bounded(tasks.slows(marker=str(reap)), tmp_path, monkeypatch, 60, spec=spec)
    assert result.ok, result.counts
    time.sleep(1)
    assert survivors(reap) == []


def test_a_task_grid_engine_puts_in_error_state_fails_with_why_and_leaves_the_queue(
    tasks: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An output file Grid Engine cannot open puts the task in Eqw, where it would stay."""
    path = tmp_path / "shared"
    result, backend = run_bounded(
        tasks.records(path=str(path), n=2), tmp_path, monkeypatch, 60,
        backend_options={"qsub_flags": "-o /nonexistent/gristmill/out"},
    )
    assert not result.ok
    assert result.counts == {"FAILED": 2}
    records = attempts(result.run_dir)
    assert {r.state for r in records} == {"FAILED"}
    for record in records:
        assert "error state (Eqw)" in record.reason, record.reason
        assert "can't open output file" in record.reason, record.reason
    assert not qstat_ids() & {str(r.job_id) for r in records}, "a task was left in Eqw"
    assert backend.calls["qdel"] == 1
    assert lines(path) == []


def test_cancel_is_one_qdel_for_running_and_pending_tasks(tmp_path: Path) -> None:
    backend = SgeBackend(max_concurrent=2)
    logs = tmp_path / "logs" / "sleep"
    jobs = [JobRequest(f"s{i}.1", "sleep", f"s{i}", ("sleep", "300"), Resources(runtime=600),
                       logs / f"s{i}.1.out", logs / f"s{i}.1.err", logs / f"s{i}.1.result.json")
            for i in range(4)]
    handles = list(backend.submit(jobs))
    assert [h.job_id.split("_")[1] for h in handles] == ["1", "2", "3", "4"]

    def two_running() -> bool:
        states = [s.state for s in backend.poll(handles).values()]
        return states.count(JobState.RUNNING) == 2

    wait_until(two_running, 30, "two tasks to run (-tc 2)")
    backend.cancel(handles)
    assert backend.calls["qdel"] == 1
    final: dict[str, JobState] = {}

    def all_cancelled() -> bool:
        final.update({h.job_id: s.state for h, s in backend.poll(handles).items()})
        return len(final) == 4 and all(s.finished for s in final.values())

    wait_until(all_cancelled, 30, "every task to be reported finished")
    assert set(final.values()) == {JobState.CANCELLED}
    assert qacct_field(handles[0].job_id, "failed").startswith("100")


# -- the CLI: reattach -------------------------------------------------------------------------



def qstat_ids() -> set[str]:
    """``<job>_<task>`` of every array task Grid Engine still holds (queued or running)."""
    out = subprocess.run(["qstat", "-xml"], capture_output=True, text=True, timeout=30,
                         check=True).stdout
    return set(parse_qstat_xml(out))


def test_kill_9_then_resume_adopts_live_jobs_and_runs_each_node_once(
    tmp_path: Path, engines: list[subprocess.Popen[bytes]]
) -> None:
    shared = tmp_path / "shared"
    proc = gristmill(
        engines, "run", "slurm_tasks:staged", "--path", str(shared), "--n", "12", "--pause",
        "6", "--backend", "sge", "--run-dir", str(tmp_path / "runs"),
        "--poll-interval", "1", "--sge-poll-min", "1",
    )  # all.q has 8 slots: 8 run, 4 wait in the queue when the engine dies
    wait_until(lambda: len(lines(shared)) >= 2 or proc.poll() is not None, 60,
               "the first jobs to start")
    assert proc.poll() is None, proc.communicate()[1].decode()[-2000:]
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    run_dir = (tmp_path / "runs" / "latest").resolve()
    before = {r.job_name: r.job_id for r in attempts(run_dir)}
    assert len(before) == 12
    assert all(before.values())
    assert qstat_ids() & {str(j) for j in before.values()}, "nothing left to adopt"
    done = subprocess.run([*cluster_testing.GRISTMILL, "resume", str(run_dir),
                           "--poll-interval", "1", "--sge-poll-min", "1"],
                          capture_output=True, timeout=180)
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    seen = collections.Counter(lines(shared))
    assert seen == {str(i): 1 for i in [*range(12), *range(100, 112)]}
    records = attempts(run_dir)
    assert len(records) == 24
    assert {r.attempt for r in records} == {1}
    assert {r.job_name: r.job_id for r in records if r.job_name in before} == before
    assert {r.state for r in records} == {"SUCCEEDED"}
