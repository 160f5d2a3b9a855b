"""The Slurm backend against the REAL single-node cluster that ci/slurm/start.sh runs.

``nox -s slurm`` starts it and runs ``pytest -m slurm tests/backends``; by hand:
``eval "$(sudo bash ci/slurm/start.sh)"`` then ``pytest -m slurm tests/backends``.
Without ``-m slurm``, without ``SLURM_CONF``, or when ``scontrol ping`` fails, every
test here is skipped.

Tasks come from tests/fixtures/slurm_tasks.py; the batch jobs import it through
PYTHONPATH (sbatch exports the submitting environment), and every task leaves its
side effect in a file, so the tests prove how often each node really ran.
Tests that need another memory-enforcement or accounting mode restart the
cluster in it and put it back (about 15 s each way). Every wait is bounded: an
engine run in this process gets a SIGINT at its deadline (the engine then
cancels its jobs), subprocesses get timeouts.
"""

from __future__ import annotations

import collections
import os
import shlex
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import cluster_testing
import pytest
from cluster_testing import GRISTMILL, by_node, gristmill, lines, wait_until
from gm_testing import attempts

from gristmill.backends.base import JobHandle, JobRequest
from gristmill.backends.slurm.backend import SACCT_FORMAT, SlurmBackend, parse_sacct, parse_scontrol
from gristmill.engine.runner import RunResult
from gristmill.errors import BackendError
from gristmill.resources import Resources
from gristmill.spec.load import Spec
from gristmill.states import JobState
from gristmill.store.db import AttemptRecord
from gristmill.worker.result import AttemptResult, write_result

pytestmark = [pytest.mark.slurm, pytest.mark.usefixtures("job_env")]

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
SRC = ROOT / "src"
START = ROOT / "ci" / "slurm" / "start.sh"
#: The knobs the cluster was started with (nox passes them on); restored after a mode test.
KNOBS = {k: v for k, v in os.environ.items() if k.startswith("SLURM_KIT_")}
LIVE = {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED"}


def _cluster_problem() -> str | None:
    if "SLURM_CONF" not in os.environ:
        return "SLURM_CONF is not set: start the test cluster with ci/slurm/start.sh"
    try:
        ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=20,
                              check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"scontrol ping failed: {exc}"
    if ping.returncode != 0 or "UP" not in ping.stdout:
        return f"slurmctld does not answer: {ping.stdout.strip()} {ping.stderr.strip()}"
    return None


@pytest.fixture(scope="module", autouse=True)
def cluster(request: pytest.FixtureRequest) -> None:
    """Skip unless asked for (``-m slurm``: minutes, and it restarts the cluster) and up."""
    cluster_testing.require_cluster(request, "slurm", _cluster_problem)


# -- helpers --------------------------------------------------------------------------------


def restart(**knobs: str) -> float:
    """(Re)start the cluster with ``knobs`` on top of the original ones; returns seconds taken."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_KIT_")}
    env.update(KNOBS)
    env.update(knobs)
    start = time.monotonic()
    done = subprocess.run(["bash", str(START)], env=env, capture_output=True, text=True,
                          timeout=240, check=False)
    assert done.returncode == 0, f"start.sh {knobs} failed:\n{done.stderr[-3000:]}"
    return time.monotonic() - start


@contextmanager
def cluster_mode(**knobs: str) -> Iterator[None]:
    """Run the block on a cluster restarted with ``knobs``; always restart it as it was."""
    if os.geteuid() != 0:
        pytest.skip("switching the cluster's mode runs ci/slurm/start.sh, which needs root")
    try:
        restart(**knobs)
        yield
    finally:
        restart()


def scontrol_job(job_id: str) -> dict[str, str]:
    """``scontrol show job`` of one job (array element ``A_T`` included) as a dict."""
    out = subprocess.run(["scontrol", "--oneliner", "show", "job", job_id], capture_output=True,
                         text=True, timeout=30, check=True).stdout
    return dict(word.split("=", 1) for word in out.split() if "=" in word)


def scontrol_config() -> dict[str, str]:
    out = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True,
                         timeout=30, check=True).stdout
    return {k.strip(): v.strip() for k, _, v in (line.partition("=") for line in out.splitlines())}


def requested_mem(job_id: str) -> str:
    """The ``--mem`` the job was submitted with, as scontrol shows it (``164M``)."""
    return scontrol_job(job_id)["MinMemoryNode"]


def squeue_states(job_ids: Sequence[str]) -> dict[str, str]:
    arrays = sorted({j.split("_")[0] for j in job_ids})
    out = subprocess.run(
        ["squeue", "--noheader", "--array", "--states=all", "--format=%i|%T",
         f"--jobs={','.join(arrays)}"], capture_output=True, text=True, timeout=30, check=False,
    ).stdout
    wanted = set(job_ids)
    return {j: s for j, _, s in (line.partition("|") for line in out.split()) if j in wanted}


def run_bounded(
    wf: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seconds: float, **options: Any
) -> tuple[RunResult, SlurmBackend]:
    """Run ``wf`` on Slurm in this process; SIGINT at ``seconds`` (the engine cancels its jobs)."""
    options.setdefault("poll_min", 1)  # the shared-cluster floor (5 s) would only slow tests
    result, backend = cluster_testing.run_bounded(
        wf, "slurm", tmp_path, monkeypatch, seconds, poll_interval=2, **options
    )
    assert isinstance(backend, SlurmBackend)
    return result, backend


def array_of(record: AttemptRecord) -> str:
    assert record.job_id, record
    assert "_" in record.job_id, record
    return record.job_id.split("_")[0]


def requests(
    root: Path, n: int, argv: tuple[str, ...], res: Resources, first: int = 0
) -> list[JobRequest]:
    """Attempts for the backend itself (as the engine makes them); keys from ``first`` on."""
    log_dir = root / "logs" / "direct"
    log_dir.mkdir(parents=True, exist_ok=True)
    return [
        JobRequest(
            key=f"direct{i:05d}.1", task="direct", job_name=f"direct_{i}", argv=argv,
            resources=res, stdout=log_dir / f"direct_{i}.1.out",
            stderr=log_dir / f"direct_{i}.1.err", result_path=log_dir / f"direct_{i}.1.result.json",
        )
        for i in range(first, first + n)
    ]


# -- submission -------------------------------------------------------------------------------


def test_ten_thousand_ready_jobs_cost_ten_sbatch_calls_and_one_squeue(tmp_path: Path) -> None:
    """10,000 requests of ``true`` → 10 arrays; polled with one squeue; one scancel.

    ``--hold`` (a site flag passed through) keeps them from running: only the
    submission, the status query and the cancel are under test.
    """
    backend = SlurmBackend(sbatch_flags="--hold")
    jobs = requests(tmp_path, 10_000, ("true",), Resources(cores=1, mem="10M"))
    start = time.monotonic()
    handles = list(backend.submit(jobs))
    submit_s = time.monotonic() - start
    try:
        assert backend.calls["sbatch"] == 10
        assert len({h.job_id for h in handles}) == 10_000
        arrays = collections.Counter(h.job_id.split("_")[0] for h in handles)
        assert sorted(arrays.values()) == [1000] * 10
        start = time.monotonic()
        statuses = backend.poll(handles)
        poll_s = time.monotonic() - start
        assert backend.calls["squeue"] == 1
        assert collections.Counter(s.state for s in statuses.values()) == {JobState.QUEUED: 10_000}
        assert {s.reason for s in statuses.values()} == {"JobHeldUser"}
    finally:
        start = time.monotonic()
        backend.cancel(handles)
        cancel_s = time.monotonic() - start
    assert backend.calls["scancel"] == 1

    def all_cancelled() -> bool:
        states = collections.Counter(s.state for s in backend.poll(handles).values())
        return states == {JobState.CANCELLED: 10_000}

    wait_until(all_cancelled, 30, "the 10,000 held jobs to be cancelled")
    print(f"10,000 jobs: submit {submit_s:.2f} s, poll {poll_s:.2f} s, cancel {cancel_s:.2f} s")


def test_arrays_split_where_the_clusters_max_array_size_says(tmp_path: Path) -> None:
    backend = SlurmBackend(sbatch_flags=["--hold"], batch_size=5000)
    limit = int(scontrol_config()["MaxArraySize"])
    assert backend.max_array_size == limit  # 1001 on the test cluster: indices 0-1000
    handles = list(backend.submit(requests(tmp_path, limit + 2, ("true",), Resources(cores=1))))
    try:
        sizes = collections.Counter(h.job_id.split("_")[0] for h in handles)
        assert sorted(sizes.values(), reverse=True) == [limit, 2]
        assert backend.calls["sbatch"] == 2
        assert max(int(h.job_id.split("_")[1]) for h in handles) == limit - 1
    finally:
        backend.cancel(handles)


def test_a_submission_slurm_refuses_is_an_error_with_sbatchs_reason(tmp_path: Path) -> None:
    backend = SlurmBackend(sbatch_flags="--hold")
    (job,) = requests(tmp_path, 1, ("true",), Resources(cores=1, gpus=1))  # the node has none
    with pytest.raises(BackendError, match="Invalid generic resource"):
        backend.submit([job])


def test_nodes_of_one_task_and_resources_share_one_array(
    tasks: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "shared"
    result, backend = run_bounded(tasks.two_shapes(path=str(path), n=6), tmp_path, monkeypatch, 120)
    assert result.ok, result.counts
    assert sorted(lines(path)) == sorted(
        [str(i) for i in range(6)] + [f"big {i}" for i in range(6)] + ["-1"]
    )
    assert lines(path)[-1] == "-1"  # the fan-in ran after both arrays
    assert backend.calls["sbatch"] == 3  # small array, big array, the fan-in
    nodes = by_node(attempts(result.run_dir))
    small = {array_of(nodes[f"record_{i}"][0]) for i in range(6)}
    big = {array_of(nodes[f"record_big_{i}"][0]) for i in range(6)}
    assert len(small) == 1
    assert len(big) == 1
    assert small != big
    indices = sorted(int(str(nodes[f"record_{i}"][0].job_id).split("_")[1]) for i in range(6))
    assert indices == list(range(6))
    (a,), (b,) = small, big
    # Resources became sbatch options: memory plus the wrapper's 64M, the runtime, a name.
    assert requested_mem(f"{a}_0") == "164M"
    assert requested_mem(f"{b}_0") == "264M"
    job = scontrol_job(f"{a}_0")
    assert (job["TimeLimit"], job["JobName"], job["NumCPUs"]) == ("00:05:00", "record", "1")
    assert job["StdOut"] == str(result.run_dir / "logs" / "record" / f"slurm-{a}_0.out")
    assert Path(job["StdOut"]).exists()


def test_retried_elements_go_into_new_arrays_grouped_the_same_way(
    tasks: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "marker"
    result, backend = run_bounded(tasks.flakies(marker=str(marker), n=6), tmp_path, monkeypatch,
                                  120)
    assert result.ok, result.counts
    assert collections.Counter(lines(marker)) == {str(i): 2 for i in range(6)}
    records = attempts(result.run_dir)
    first = {array_of(r) for r in records if r.attempt == 1}
    retries = collections.Counter(array_of(r) for r in records if r.attempt == 2)
    assert len(first) == 1
    assert not first & set(retries)  # a retry never joins an array of first attempts
    assert sum(retries.values()) == 6
    assert len(retries) <= 2, retries  # they failed together: one array (two at a poll boundary)
    assert backend.calls["sbatch"] == 1 + len(retries)
    assert {r.state for r in records if r.attempt == 1} == {"FAILED"}
    assert {r.exit_code for r in records if r.attempt == 1} == {1}


def state_of(backend: SlurmBackend, handle: JobHandle) -> JobState | None:
    status = backend.poll([handle]).get(handle)
    return status.state if status else None


def check_status_sources(tmp_path: Path) -> None:
    """A job Slurm has no record of: LOST after the grace time, or as its result file says."""
    backend = SlurmBackend(lost_after=0)
    (job,) = requests(tmp_path, 1, ("true",), Resources(cores=1, mem="10M"))
    (live,) = backend.submit([job])
    wait_until(lambda: state_of(backend, live) is JobState.SUCCEEDED, 60, "the job to finish")
    backend.runner.calls.clear()
    ghost = JobHandle("slurm", "999999_0", "ghost.1", str(tmp_path / "ghost.result.json"))
    statuses = backend.poll([live, ghost])
    assert statuses[live].state is JobState.SUCCEEDED
    assert statuses[ghost].state is JobState.LOST
    assert backend.calls == ({"squeue": 1, "sacct": 1} if backend.accounting
                             else {"squeue": 1, "scontrol": 1})
    write_result(ghost.result_path, AttemptResult(JobState.FAILED, 5, None, None, 1.0, "vm",
                                                  1.0, 2.0, "exit code 5"), key=ghost.key)
    status = backend.poll([ghost])[ghost]
    assert (status.state, status.exit_code) == (JobState.FAILED, 5)


def test_status_comes_from_one_squeue_per_poll_and_sacct_for_jobs_that_left(
    tmp_path: Path,
) -> None:
    check_status_sources(tmp_path)


def test_cancel_is_one_scancel_for_many_jobs(tmp_path: Path) -> None:
    """Five sleepers in one array throttled to three (``%3``); one scancel stops them all."""
    backend = SlurmBackend(max_concurrent=3)
    argv = ("sh", "-c", "echo started; exec sleep 600")
    jobs = requests(tmp_path, 5, argv, Resources(cores=1, mem="10M"))
    handles = list(backend.submit(jobs))

    def three_started() -> bool:
        return sum(j.stdout.exists() and j.stdout.read_text() == "started\n" for j in jobs) == 3

    try:
        wait_until(three_started, 60, "3 sleepers to start")
        statuses = backend.poll(handles)
        assert collections.Counter(s.state for s in statuses.values()) == {
            JobState.RUNNING: 3, JobState.QUEUED: 2}
        assert {s.reason for s in statuses.values() if s.state is JobState.QUEUED} == {
            "JobArrayTaskLimit"}
    finally:
        backend.cancel(handles)
    assert backend.calls["scancel"] == 1

    def ended() -> bool:
        statuses = backend.poll(handles)
        return len(statuses) == 5 and all(s.state.finished for s in statuses.values())

    wait_until(ended, 30, "the sleepers to end")
    assert {s.state for s in backend.poll(handles).values()} == {JobState.CANCELLED}
    started = [j for j in jobs if j.stdout.exists()]
    assert len(started) == 3
    for job in started:  # the wrapper's own record agrees: cancelled, not failed
        assert '"state":"CANCELLED"' in job.result_path.read_text()


# -- outcomes in each mode -------------------------------------------------------------------


def check_outcomes(
    tasks: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, oom_factor: float,
    spec: Spec | None = None,
) -> None:
    """success / exit 3 / OOM-then-escalated, as the engine records them."""
    path, marker = tmp_path / "shared", tmp_path / "marker"
    result, _ = run_bounded(tasks.outcomes(path=str(path), marker=str(marker), mb=250),
                            tmp_path, monkeypatch, 150, spec=spec)
    assert not result.ok
    assert lines(path) == ["1"]
    assert collections.Counter(lines(marker)) == {"fail": 1, "hog": 2}
    nodes = by_node(attempts(result.run_dir))
    (ok,) = nodes["record"]  # a node alone in its task is named after the task
    assert (ok.state, ok.exit_code) == ("SUCCEEDED", 0)
    (failed,) = nodes["fail"]
    assert (failed.state, failed.exit_code) == ("FAILED", 3)
    first, second = nodes["hog"]
    assert first.state == "OOM", first
    assert "memory" in first.reason.lower(), first.reason
    assert second.state == "SUCCEEDED", second
    grown = int(200 * oom_factor)
    assert (first.resources["mem"], second.resources["mem"]) == (200 * 2**20, grown * 2**20)
    assert requested_mem(str(first.job_id)) == "264M"
    assert requested_mem(str(second.job_id)) == f"{grown + 64}M"


def finish_two_jobs(tmp_path: Path) -> tuple[list[JobHandle], list[JobRequest]]:
    """An array of ``exit 0`` and ``exit 3``, run to the end (then the cluster restarts)."""
    backend = SlurmBackend()
    jobs = [*requests(tmp_path, 1, ("true",), Resources(cores=1, mem="10M")),
            *requests(tmp_path, 1, ("sh", "-c", "exit 3"), Resources(cores=1, mem="10M"), 1)]
    handles = list(backend.submit(jobs))

    def done() -> bool:
        statuses = backend.poll(handles)
        return len(statuses) == 2 and all(s.state.finished for s in statuses.values())

    wait_until(done, 60, "two jobs to finish")
    return handles, jobs


def check_after_restart(handles: list[JobHandle], accounting: bool) -> None:
    """Finished jobs outlive a restart in squeue; sacct or scontrol also have them.

    With accounting, the backend asks sacct about finished jobs for what they used; for
    their outcome it needs sacct (scontrol without accounting) only once squeue no
    longer lists them, which takes MinJobAge (300 s); so the live outputs of those two
    are parsed here directly, as the backend would.
    """
    backend = SlurmBackend()
    statuses = backend.poll(handles)
    assert [s.state for s in statuses.values()] == [JobState.SUCCEEDED, JobState.FAILED]
    # One squeue; the configuration once (is accounting on?); and, with accounting, one
    # sacct for what the finished jobs used (CPU time, peak memory).
    assert backend.calls == {"squeue": 1, "scontrol": 1, **({"sacct": 1} if accounting else {})}
    array = handles[0].job_id.split("_")[0]
    if accounting:
        argv = ["sacct", "--parsable2", "--noheader", f"--format={SACCT_FORMAT}",
                f"--jobs={array}"]
        parse = parse_sacct
    else:
        argv = ["scontrol", "--oneliner", "show", "job"]
        parse = parse_scontrol
        sacct = subprocess.run(["sacct", f"--jobs={array}"], capture_output=True, text=True,
                               timeout=30, check=False)
        assert sacct.returncode == 1
        assert "accounting storage is disabled" in sacct.stderr
    records: dict[str, Any] = {}

    def both_listed() -> bool:  # slurmdbd may get the jobs' ends only after the restart
        records.update(parse(subprocess.run(argv, capture_output=True, text=True, timeout=30,
                                            check=True).stdout))
        return all(h.job_id in records for h in handles)

    wait_until(both_listed, 60, f"{argv[0]} to list both jobs")
    ok, bad = (records[h.job_id] for h in handles)
    assert (ok.state, ok.exit_code, bad.state, bad.exit_code) == (
        JobState.SUCCEEDED, 0, JobState.FAILED, 3)


def test_outcomes_with_cgroup_memory_enforcement(
    tasks: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The default mode: the kernel's OOM killer, Slurm says OUT_OF_MEMORY; memory x1.5."""
    if "task/cgroup" not in scontrol_config().get("TaskPlugin", ""):
        pytest.skip("the cluster does not enforce memory with cgroups here (no cgroup v1?)")
    check_outcomes(tasks, tmp_path, monkeypatch, oom_factor=1.5)


def test_outcomes_with_jobacct_memory_enforcement(
    tasks: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """jobacct: FAILED/JobLaunchFailure, "exceeded memory limit" in the log; the spec's on_oom."""
    spec = Spec.from_dict({"tasks": {"hog": {"on_oom": {"mem": "x3"}}}})
    handles, _ = finish_two_jobs(tmp_path / "before")
    with cluster_mode(SLURM_KIT_MEM_ENFORCE="jobacct"):
        check_after_restart(handles, accounting=True)
        check_outcomes(tasks, tmp_path, monkeypatch, oom_factor=3, spec=spec)


def test_outcomes_without_accounting(
    tasks: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No slurmdbd: sacct fails, so finished jobs come from squeue/scontrol and result files."""
    handles, _ = finish_two_jobs(tmp_path / "before")
    with cluster_mode(SLURM_KIT_ACCOUNTING="0"):
        assert not SlurmBackend().accounting
        check_after_restart(handles, accounting=False)
        check_outcomes(tasks, tmp_path / "wf", monkeypatch, oom_factor=1.5)
        check_status_sources(tmp_path)


@pytest.mark.slow
def test_a_timeout_is_retried_with_twice_the_runtime(
    tasks: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--time=1 (minute); Slurm kills 60-90 s after start; the retry gets --time=2."""
    marker = tmp_path / "marker"
    result, _ = run_bounded(tasks.slows(marker=str(marker)), tmp_path, monkeypatch, 200)
    assert result.ok, result.counts
    assert lines(marker) == ["slow", "slow"]
    first, second = by_node(attempts(result.run_dir))["slow"]
    assert first.state == "TIMEOUT", first
    assert "time limit" in first.reason
    assert first.elapsed is not None
    assert first.elapsed >= 55
    assert second.state == "SUCCEEDED"
    assert (first.resources["runtime"], second.resources["runtime"]) == (60, 120)
    assert scontrol_job(str(first.job_id))["TimeLimit"] == "00:01:00"
    assert scontrol_job(str(second.job_id))["TimeLimit"] == "00:02:00"


# -- the CLI: interrupt and reattach ---------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_on_gristmill_run_cancels_every_live_job(
    tmp_path: Path, engines: list[subprocess.Popen[bytes]], signum: int
) -> None:
    marker = tmp_path / "marker"
    proc = gristmill(
        engines, "run", "slurm_tasks:sleepers", "--marker", str(marker), "--n", "12",
        "--backend", "slurm", "--run-dir", str(tmp_path / "runs"),
        "--poll-interval", "1", "--slurm-poll-min", "1",
    )  # the node has 8 CPUs: 8 run, 4 wait in the queue
    wait_until(lambda: len(lines(marker)) >= 8 or proc.poll() is not None, 60,
               "eight sleepers to start")
    assert proc.poll() is None, proc.communicate()[1].decode()[-2000:]
    os.kill(proc.pid, signum)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err.decode()[-2000:]
    run_dir = (tmp_path / "runs" / "latest").resolve()
    ids = [str(r.job_id) for r in attempts(run_dir)]
    assert len(ids) == 12

    def none_live() -> bool:
        return not set(squeue_states(ids).values()) & LIVE

    wait_until(none_live, 30, "squeue to show no live job of the run")
    states = squeue_states(ids)
    assert set(states.values()) == {"CANCELLED"}, states
    assert not [line for line in lines(marker) if line.startswith("end")]


def test_kill_9_then_resume_adopts_live_jobs_and_runs_each_node_once(
    tmp_path: Path, engines: list[subprocess.Popen[bytes]]
) -> None:
    shared = tmp_path / "shared"
    proc = gristmill(
        engines, "run", "slurm_tasks:staged", "--path", str(shared), "--n", "12", "--pause",
        "6", "--backend", "slurm", "--run-dir", str(tmp_path / "runs"),
        "--poll-interval", "1", "--slurm-poll-min", "1",
    )  # the node has 8 CPUs: 8 run, 4 wait in the queue when the engine dies
    wait_until(lambda: len(lines(shared)) >= 2 or proc.poll() is not None, 60,
               "the first jobs to start")
    assert proc.poll() is None, proc.communicate()[1].decode()[-2000:]
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    run_dir = (tmp_path / "runs" / "latest").resolve()
    before = {r.job_name: r.job_id for r in attempts(run_dir)}
    assert len(before) == 12
    assert all(before.values())
    states = squeue_states([str(j) for j in before.values()])
    assert set(states.values()) & LIVE, f"nothing left to adopt: {states}"
    done = subprocess.run([*GRISTMILL, "resume", str(run_dir), "--poll-interval", "1",
                           "--slurm-poll-min", "1"], capture_output=True, timeout=180)
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    seen = collections.Counter(lines(shared))
    assert seen == {str(i): 1 for i in [*range(12), *range(100, 112)]}
    records = attempts(run_dir)
    assert len(records) == 24
    assert {r.attempt for r in records} == {1}
    assert {r.job_name: r.job_id for r in records if r.job_name in before} == before
    assert {r.state for r in records} == {"SUCCEEDED"}


def test_the_sbatch_argv_is_what_runs(tmp_path: Path) -> None:
    """The rendered script and options are accepted by the real sbatch, quoting included."""
    odd = tmp_path / "a dir with 'quotes' and $dollars"
    backend = SlurmBackend(partition="debug")
    (job,) = requests(odd, 1, ("sh", "-c", "echo \"$0 $1\"", "it's", "$HOME"),
                      Resources(cores=2, mem="50M", runtime="2m", extra={"comment": "gm-test"}))
    (handle,) = backend.submit([job])
    wait_until(lambda: (state_of(backend, handle) or JobState.QUEUED).finished, 60,
               "the job to finish")
    assert state_of(backend, handle) is JobState.SUCCEEDED
    assert job.stdout.read_text() == "it's $HOME\n"
    fields = scontrol_job(handle.job_id)
    assert (fields["NumCPUs"], fields["TimeLimit"], fields["Comment"]) == (
        "2", "00:02:00", "gm-test")
    assert (fields["Partition"], fields["MinMemoryNode"]) == ("debug", "114M")
    script = (job.stdout.parent / f"array-{job.key}.sh").read_text()
    assert str(job.stdout.parent / f"array-{job.key}.json") in shlex.split(script)


# -- a controller that does not answer --------------------------------------------------------


def slurmctld_pid() -> int:
    """The test cluster's slurmctld (its pid file under SLURM_KIT_DIR)."""
    kit = Path(os.environ.get("SLURM_KIT_DIR", "/tmp/gristmill-slurm"))
    return int((kit / "run" / "slurmctld.pid").read_text().split()[0])


def test_a_controller_that_stops_answering_pauses_the_run_and_nothing_fails(
    tasks: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """slurmctld is stopped (SIGSTOP, not killed: the cluster is shared) for 30 s while the
    first stage runs; squeue hangs meanwhile. The engine warns once, keeps waiting, and
    when slurmctld answers again every node ends DONE, each task having run once."""
    import threading

    from loguru import logger

    path = tmp_path / "shared"
    pid = slurmctld_pid()
    times: dict[str, float] = {}
    messages: list[tuple[float, str]] = []
    logger.enable("gristmill")
    sink = logger.add(lambda m: messages.append((time.monotonic(), m.record["message"])),
                      level="WARNING")

    def outage() -> None:
        wait_until(lambda: len(lines(path)) >= 1, 120, "the first stage to start")
        times["stop"] = time.monotonic()
        os.kill(pid, signal.SIGSTOP)
        try:
            time.sleep(30)  # the outage itself: a fixed length is what is under test
        finally:
            os.kill(pid, signal.SIGCONT)
            times["cont"] = time.monotonic()

    stopper = threading.Thread(target=outage, daemon=True)
    begun = time.monotonic()
    stopper.start()
    try:
        result, backend = run_bounded(
            tasks.staged(path=str(path), n=4, pause=15.0), tmp_path, monkeypatch, 400,
            poll_min=1, poll_max=5, command_timeout=20)
    finally:
        stopper.join(60)
        os.kill(pid, signal.SIGCONT)  # never leave the shared controller stopped
        logger.remove(sink)
    ended = time.monotonic()
    assert "cont" in times, "the outage never happened: the first stage did not start"
    assert result.counts == {"DONE": 8}, result.counts
    assert sorted(lines(path)) == sorted([str(i) for i in range(4)] +
                                         [str(i) for i in range(100, 104)])  # each once
    records = attempts(result.run_dir)
    assert len(records) == 8
    assert {r.state for r in records} == {"SUCCEEDED"}
    failed = [(t, m) for t, m in messages if m.startswith("polling slurm failed")]
    assert len(failed) == 1, messages
    back = [(t, m) for t, m in messages if "answers again" in m]
    assert len(back) == 1, messages
    assert times["stop"] <= failed[0][0] <= times["cont"] + 25
    assert back[0][0] >= times["cont"]
    print(f"outage: stopped {times['cont'] - times['stop']:.0f} s; first failed poll "
          f"{failed[0][0] - times['stop']:.1f} s after the stop; answered again "
          f"{back[0][0] - times['cont']:.1f} s after SIGCONT; run {ended - begun:.0f} s; "
          f"calls {dict(backend.calls)}")


def test_two_thousand_nodes_cost_two_sbatch_calls_and_squeues_by_time_not_by_nodes(
    tasks: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """2,000 nodes of one task: two arrays of 1,000 (batch_size; MaxArraySize is 1001, so
    indices 0-999 fit), and one squeue per poll, so at most the run's wall time over the
    poll floor (plus the first poll), however many nodes. Minutes: Slurm starts a few
    jobs a second here."""
    path = tmp_path / "shared"
    begun = time.monotonic()
    result, backend = cluster_testing.run_bounded(
        tasks.records(path=str(path), n=2000), "slurm", tmp_path, monkeypatch, 3000,
        poll_interval=None, poll_min=5, poll_max=60)
    wall = time.monotonic() - begun
    assert result.counts == {"DONE": 2000}, result.counts
    assert len(lines(path)) == 2000
    calls = dict(backend.calls)
    assert calls["sbatch"] <= 2, calls
    assert calls["squeue"] <= wall / 5 + 1, (calls, wall)
    assert calls.get("sacct", 0) <= calls["squeue"], calls
    print(f"2,000 nodes in {wall:.0f} s: {calls}")
