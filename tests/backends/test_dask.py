"""The dask backend against a real ``dask scheduler`` and two ``dask worker`` processes.

A module-scoped fixture starts them (``python -m distributed.cli.dask_scheduler`` and
``...dask_worker``, in sessions of their own, killed at the end whatever happens):
worker ``big`` declares ``cores=2 memory=2G`` and runs 2 threads, worker ``small``
``cores=1 memory=512M`` with 1 thread. Each exports ``WORKER_NAME``, so an attempt can
say where it ran, and finds the engine's fixture tasks through ``PYTHONPATH``. Engine runs
in this process are bounded (a SIGINT at their deadline), as on the other real clusters.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

distributed = pytest.importorskip("distributed")

from cluster_testing import lines  # noqa: E402 -- after the importorskip
from gm_testing import SRC, pid_gone, run_within, subprocess_env, wait_for  # noqa: E402
from loguru import logger  # noqa: E402

from gristmill.backends.base import Backend, JobHandle, JobRequest, JobStatus  # noqa: E402
from gristmill.backends.dask.backend import DaskBackend, dask_key  # noqa: E402
from gristmill.backends.dask.resources import WorkerInfo, refusal, restrictions  # noqa: E402
from gristmill.backends.registry import make_backend  # noqa: E402
from gristmill.engine.runner import RunResult, run_workflow  # noqa: E402
from gristmill.errors import BackendError, SpecError  # noqa: E402
from gristmill.resources import Policy, Resources  # noqa: E402
from gristmill.states import JobState  # noqa: E402
from gristmill.store.db import STORE_NAME, Store  # noqa: E402
from gristmill.worker.result import read_result  # noqa: E402

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
EXAMPLE = SRC.parent / "examples" / "seiir_like"
M, G = 2**20, 2**30


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A dask scheduler with workers ``big`` and ``small`` (module doc): its address and
    its scheduler file."""
    tmp = tmp_path_factory.mktemp("dask-cluster")
    info = tmp / "scheduler.json"
    procs: list[subprocess.Popen[bytes]] = []

    def start(name: str, module: str, *args: str) -> None:
        with open(tmp / f"{name}.log", "wb") as log:
            procs.append(subprocess.Popen(
                [sys.executable, "-m", f"distributed.cli.{module}", *args], stdout=log,
                stderr=subprocess.STDOUT, env={**subprocess_env(), "WORKER_NAME": name},
                start_new_session=True,
            ))

    try:
        start("scheduler", "dask_scheduler", "--host", "127.0.0.1", "--port", "0",
              "--no-dashboard", "--scheduler-file", str(info))
        wait_for(info.exists, 30, "the dask scheduler to start")
        address: str = json.loads(info.read_text())["address"]
        for name, cores, mem in (("big", 2, 2 * G), ("small", 1, 512 * M)):
            start(name, "dask_worker", address, "--name", name, "--nthreads", str(cores),
                  "--resources", f"cores={cores} memory={mem}", "--no-nanny",
                  "--no-dashboard", "--local-directory", str(tmp), "--death-timeout", "30")
        with distributed.Client(address, set_as_default=False) as client:
            client.wait_for_workers(2, timeout=60)
        yield address, info
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@pytest.fixture(scope="module")
def scheduler(cluster: tuple[str, Path]) -> str:
    return cluster[0]


def request(tmp: Path, key: str, argv: Sequence[str], task: str = "t", **res: Any) -> JobRequest:
    return JobRequest(
        key=key, task=task, job_name=key, argv=tuple(argv), resources=Resources(**res),
        stdout=tmp / "logs" / f"{key}.out", stderr=tmp / "logs" / f"{key}.err",
        result_path=tmp / "results" / f"{key}.json",
    )


def run_all(
    backend: DaskBackend, handles: Sequence[JobHandle], timeout: float = 30
) -> dict[JobHandle, JobStatus]:
    """Wait and poll until every handle is reported finished; their final statuses."""
    final: dict[JobHandle, JobStatus] = {}
    deadline = time.monotonic() + timeout
    while len(final) < len(handles):
        assert time.monotonic() < deadline, f"still running: {set(handles) - set(final)}"
        backend.wait(0.5)
        for handle, status in backend.poll([h for h in handles if h not in final]).items():
            if status.state.finished:
                final[handle] = status
    return final


def attempt_rows(run_dir: Path) -> list[dict[str, Any]]:
    conn = sqlite3.connect(run_dir / STORE_NAME)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(row) for row in conn.execute("SELECT * FROM attempts ORDER BY attempt")]
    finally:
        conn.close()


def run_on(
    scheduler: str | None, wf: Any, run_dir: Path, seconds: float = 30, **options: Any
) -> RunResult:
    """Run ``wf`` through the engine on the dask backend; a SIGINT at ``seconds`` (the engine
    then cancels its jobs) keeps a broken run from hanging the suite."""
    backend_options = {} if scheduler is None else {"scheduler": scheduler}
    result: RunResult = run_within(seconds, wf, backend="dask", run_dir=run_dir,
                                   poll_interval=0.5, backend_options=backend_options,
                                   **options)
    return result


# -- pure parts ---------------------------------------------------------------------------


def test_attempts_ask_for_declared_resources_and_always_for_gpus() -> None:
    both = {"cores", "memory"}
    assert restrictions(Resources(cores=2, mem="1G"), both) == ({"cores": 2, "memory": G}, [])
    assert restrictions(Resources(cores=2, mem="1G"), {"cores"}) == ({"cores": 2}, ["memory"])
    assert restrictions(Resources(), set()) == ({}, ["cores"])
    assert restrictions(Resources(gpus=1), both) == ({"cores": 1, "gpus": 1}, [])
    workers = [WorkerInfo("tcp://a:1", {"cores": 4, "memory": 8 * G}, 4)]
    assert refusal("fit", {"cores": 4, "memory": 8 * G}, workers, "tcp://s:1") is None
    why = refusal("train", {"cores": 1, "gpus": 1}, workers, "tcp://s:1")
    assert why is not None
    assert "asks for cores=1, gpus=1" in why
    assert "gpus=0" in why


def test_dask_keys_name_the_task_and_differ_between_runs(tmp_path: Path) -> None:
    one = request(tmp_path / "run1", "abc.1", ["true"], task="fit")
    two = request(tmp_path / "run2", "abc.1", ["true"], task="fit")
    assert dask_key(one).startswith("fit-abc.1-")
    assert dask_key(one) != dask_key(two)
    assert dask_key(one) == dask_key(request(tmp_path / "run1", "abc.1", ["false"], task="fit"))


# -- the backend on the real cluster --------------------------------------------------------


def test_it_is_a_backend_taking_its_options_as_text(cluster: tuple[str, Path]) -> None:
    scheduler, scheduler_file = cluster
    with DaskBackend(scheduler=scheduler, grace="0.5", lost_after="2", max_inflight="8") as b:
        assert isinstance(b, Backend)
        assert (b.name, b.address, b.grace) == ("dask", scheduler, 0.5)
        assert (b.capabilities.reattach, b.capabilities.max_inflight) == (True, 8)
    with DaskBackend(scheduler=str(scheduler_file)) as b:
        assert b.address == scheduler
        assert b.capabilities.max_inflight == 16  # 4 x the cluster's 3 threads, at least 16
    with pytest.raises(SpecError, match="n_workers, cores and memory size its own"):
        DaskBackend(scheduler=scheduler, n_workers="2")
    with pytest.raises(SpecError, match="grace='soon'"):
        DaskBackend(scheduler=scheduler, grace="soon")
    with pytest.raises(BackendError, match="bad option"):
        make_backend("dask", scheduler=scheduler, colour="red")
    with pytest.raises(BackendError, match=r"cannot connect to the dask scheduler at tcp://"):
        DaskBackend(scheduler="tcp://127.0.0.1:9", connect_timeout="0.5")


def test_a_workflow_runs_through_the_engine(
    et: ModuleType, scheduler: str, tmp_path: Path
) -> None:
    path = tmp_path / "appended"
    result = run_on(scheduler, et.appends(path=str(path), n=8, pause=0.0), tmp_path / "runs")
    assert result.ok
    assert result.counts == {"DONE": 8}
    assert sorted(map(int, lines(path))) == list(range(8))
    order = list(map(int, lines(path)))
    assert set(order[:6]) == set(range(6))  # the last quarter ran after the rest
    rows = attempt_rows(result.run_dir)
    assert {row["state"] for row in rows} == {"SUCCEEDED"}
    assert all(row["job_id"].endswith(f"@{scheduler}") for row in rows)


def test_the_dask_scheduler_flag_of_gristmill_run_sends_the_jobs_to_that_scheduler(
    et: ModuleType, scheduler: str, tmp_path: Path
) -> None:
    """``gristmill run --backend dask --dask-scheduler ADDRESS``: the tasks run on that
    cluster's workers (each appends the WORKER_NAME they export), not on a cluster of the
    engine's own, and the run keeps the address for its resume."""
    path, root = tmp_path / "where", tmp_path / "runs"
    done = subprocess.run(
        [sys.executable, "-c", "from gristmill.cli.app import main; main()", "run",
         "engine_tasks:wheres", "--path", str(path), "--n", "3", "--backend", "dask",
         "--dask-scheduler", scheduler, "--poll-interval", "0.5", "--run-dir", str(root)],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr
    assert len(lines(path)) == 3
    assert set(lines(path)) <= {"big", "small"}, lines(path)
    run_dir = (root / "latest").resolve()
    store = Store.open(run_dir, readonly=True)
    try:
        assert store.meta()["backend_options"]["scheduler"] == scheduler
    finally:
        store.close()
    assert {row["job_id"].rpartition("@")[2] for row in attempt_rows(run_dir)} == {scheduler}


def test_exit_code_oom_and_timeout_come_from_the_wrapper(
    et: ModuleType, scheduler: str, tmp_path: Path
) -> None:
    result = run_on(scheduler, et.three_failures(), tmp_path / "runs", policy=Policy(retries=0))
    assert result.counts == {"FAILED": 3}
    rows = {row["task"]: row for row in attempt_rows(result.run_dir)}
    assert (rows["exit_with"]["state"], rows["exit_with"]["exit_code"]) == ("FAILED", 3)
    assert "about to exit with code 3" in Path(rows["exit_with"]["stderr"]).read_text()
    assert rows["hog"]["state"] == "OOM"
    assert rows["hog"]["reason"].startswith("exceeded memory limit 200M")
    assert rows["hog"]["peak_rss"] > 200 * M
    assert (rows["slow"]["state"], rows["slow"]["reason"]) == ("TIMEOUT",
                                                                "exceeded runtime 00:00:01")


def test_resources_place_attempts_and_an_impossible_request_fails_at_once(
    scheduler: str, tmp_path: Path
) -> None:
    where = ["sh", "-c", 'echo "$WORKER_NAME"']
    jobs = [request(tmp_path, f"two{i}", where, cores=2) for i in range(3)]
    jobs.append(request(tmp_path, "mem", where, mem="1G"))
    jobs.append(request(tmp_path, "huge", ["true"], task="forecast", cores=20, mem="25G"))
    with DaskBackend(scheduler=scheduler) as backend:
        handles = backend.submit(jobs)
        final = run_all(backend, handles)
    for job in jobs[:4]:  # only the big worker has 2 cores, or 1G of memory
        assert job.stdout.read_text() == "big\n"
    assert [final[h].state for h in handles[:4]] == [JobState.SUCCEEDED] * 4
    refused = final[handles[4]]
    assert refused.state is JobState.FAILED
    assert refused.reason.startswith("task 'forecast' asks for cores=20, memory=25G, more than")
    assert "(the most any worker declares: cores=2, memory=2G)" in refused.reason
    assert f'--resources "cores=20 memory={25 * G}"' in refused.reason
    on_disk = read_result(jobs[4].result_path, key=jobs[4].key)
    assert on_disk is not None
    assert (on_disk.reason, on_disk.key) == (refused.reason, jobs[4].key)
    assert not jobs[4].stdout.exists()  # never ran


def test_workers_declaring_no_resources_run_everything_after_one_warning(
    tmp_path: Path
) -> None:
    messages: list[str] = []
    logger.enable("gristmill")
    logger.add(messages.append, level="WARNING", format="{message}")
    bare = distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                    dashboard_address="127.0.0.1:0")  # no resources
    with bare, DaskBackend(scheduler=bare.scheduler_address) as backend:
        jobs = [request(tmp_path, f"j{i}", ["true"], cores=64, mem="1T") for i in range(2)]
        final = run_all(backend, backend.submit(jobs))
    assert {status.state for status in final.values()} == {JobState.SUCCEEDED}
    undeclared = [m for m in messages if "declares a" in m]
    assert len(undeclared) == 2  # once for cores, once for memory
    assert "declares a 'cores' resource, so tasks are placed without regard to it" in (
        undeclared[0])


def test_cancel_stops_running_and_queued_attempts(scheduler: str, tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    running = request(tmp_path, "running", ["sh", "-c", f"echo $$ > {pidfile}; exec sleep 60"],
                      cores=2)
    queued = request(tmp_path, "queued", ["sh", "-c", f"touch {tmp_path}/ran; sleep 60"],
                     cores=2)
    with DaskBackend(scheduler=scheduler, grace="1") as backend:
        handles = list(backend.submit([running]))
        seen: dict[JobHandle, JobStatus] = {}

        def started() -> bool:
            backend.wait(0.1)
            seen.update(backend.poll(handles))
            return handles[0] in seen and pidfile.exists() and bool(pidfile.read_text())

        wait_for(started, 20, "the first attempt to start")
        handles += backend.submit([queued])
        seen.update(backend.poll(handles))
        assert seen[handles[0]].state is JobState.RUNNING
        assert handles[1] not in seen  # still queued behind it for the big worker's 2 cores
        pid = int(pidfile.read_text())
        backend.cancel(handles)
        assert pid_gone(pid, 5), "the cancelled attempt's process still runs"
        final = run_all(backend, handles)
    assert [final[h].state for h in handles] == [JobState.CANCELLED] * 2
    wait_for(lambda: read_result(running.result_path, key=running.key) is not None, 10,
             "the result file")
    result = read_result(running.result_path, key=running.key)
    assert result is not None
    assert result.state is JobState.CANCELLED
    time.sleep(0.5)
    assert not (tmp_path / "ran").exists()  # the queued one never started


def test_a_second_backend_adopts_jobs_a_closed_one_left_running(
    scheduler: str, tmp_path: Path
) -> None:
    release = tmp_path / "release"
    victim_pid = tmp_path / "victim.pid"
    waiters = [request(tmp_path, f"w{i}", ["sh", "-c", f"until [ -e {release} ]; do sleep "
                                                       f"0.05; done; echo done {i}"])
               for i in range(2)]
    victim = request(tmp_path, "victim", ["sh", "-c", f"echo $$ > {victim_pid}; exec sleep 60"])
    first = DaskBackend(scheduler=scheduler)
    handles = list(first.submit([victim]))
    wait_for(lambda: victim_pid.exists() and bool(victim_pid.read_text()), 20, "the victim")
    handles = [*first.submit(waiters), *handles]
    first.close()  # no cancel: the jobs run on
    pid = int(victim_pid.read_text())
    assert not pid_gone(pid, 0.5)
    unknown = JobHandle("dask", f"t-gone.1-0@{scheduler}", "gone.1", str(tmp_path / "gone.json"))
    with DaskBackend(scheduler=scheduler, lost_after="1", grace="1") as second:
        second.attach([*handles, unknown])
        second.cancel([handles[2]])
        assert pid_gone(pid, 5), "cancel through the adopting backend did not stop the job"
        release.touch()
        final = run_all(second, [*handles, unknown])
    assert [final[h].state for h in handles] == [JobState.SUCCEEDED] * 2 + [JobState.CANCELLED]
    assert [w.stdout.read_text() for w in waiters] == ["done 0\n", "done 1\n"]
    assert final[unknown].state is JobState.LOST
    assert "does not know task t-gone.1-0" in final[unknown].reason


def test_without_a_scheduler_it_runs_on_its_own_local_cluster(
    et: ModuleType, tmp_path: Path
) -> None:
    path = tmp_path / "appended"
    result = run_on(None, et.appends(path=str(path), n=6, pause=0.0), tmp_path / "runs")
    assert result.ok
    assert sorted(map(int, lines(path))) == list(range(6))
    assert all("@inproc://" in row["job_id"] for row in attempt_rows(result.run_dir))


def test_closing_it_stops_what_still_runs_on_its_own_cluster(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    job = request(tmp_path, "sleeper", ["sh", "-c", f"echo $$ > {pidfile}; exec sleep 60"])
    backend = DaskBackend(grace="1")
    try:
        backend.submit([job])
        wait_for(lambda: pidfile.exists() and bool(pidfile.read_text()), 20, "the job")
    finally:
        backend.close()
    assert pid_gone(int(pidfile.read_text()), 0.5), "close() left the job running"
    result = read_result(job.result_path, key=job.key)
    assert result is not None
    assert result.state is JobState.CANCELLED


def test_an_interrupted_run_leaves_nothing_running_on_its_own_cluster(
    et: ModuleType, tmp_path: Path
) -> None:
    pidfile = tmp_path / "pid"
    pids = Path(f"{pidfile}.0")
    wf = et.sleepers(pidfile=str(pidfile), n=1, pause=60.0, release="")
    stopper = threading.Thread(target=lambda: (
        wait_for(lambda: pids.exists() and bool(pids.read_text()), 20, "the sleeper"),
        os.kill(os.getpid(), signal.SIGINT)))
    stopper.start()
    try:
        result = run_workflow(wf, backend="dask", run_dir=tmp_path / "runs",
                              backend_options={"grace": "1"})
    finally:
        stopper.join()
    assert result.interrupted
    assert pid_gone(int(pids.read_text()), 0.5), "the run returned with its task still running"
    (row,) = attempt_rows(result.run_dir)
    assert row["state"] == "CANCELLED"


def test_jobs_of_a_killed_engines_local_cluster_are_stopped_and_rerun(
    et: ModuleType, tmp_path: Path
) -> None:
    root, pidfile, release = tmp_path / "runs", tmp_path / "pid", tmp_path / "release"
    args = {"pidfile": str(pidfile), "n": 1, "pause": 60.0, "release": str(release)}
    script = ("import engine_tasks; from gristmill.engine.runner import run_workflow; run_workflow("
              f"engine_tasks.sleepers(**{args!r}), backend='dask', run_dir={str(root)!r})")
    engine = subprocess.Popen([sys.executable, "-c", script], env=subprocess_env(),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pids = Path(f"{pidfile}.0")
    try:
        wait_for(lambda: pids.exists() and bool(pids.read_text()), 30, "the sleeper to start")
    finally:
        engine.kill()
        engine.wait()
    orphan = int(pids.read_text())
    assert not pid_gone(orphan, 0.3)  # it outlived its engine and its LocalCluster
    stopped: list[bool] = []

    def release_the_rerun() -> None:
        try:
            stopped.append(pid_gone(orphan, 15))
            wait_for(lambda: len(pids.read_text().split()) == 2, 30, "the rerun to start")
        finally:
            release.touch()

    helper = threading.Thread(target=release_the_rerun)
    helper.start()
    run_dir = next(root.glob("20*"))
    result = run_on(None, et.sleepers(**args), run_dir)
    helper.join()
    assert result.ok
    assert stopped == [True]
    first, second = attempt_rows(run_dir)
    assert first["state"] == "LOST"
    assert "LocalCluster ended with that engine" in first["reason"]
    assert f"[{orphan}] were still running: killed" in first["reason"]
    assert second["state"] == "SUCCEEDED"


def test_the_example_pipeline_runs_end_to_end(
    scheduler: str, tmp_path: Path
) -> None:
    pipeline = pytest.importorskip("seiir_like.pipeline")
    out = tmp_path / "out"
    wf = pipeline.seiir(version="dask", output_root=str(out), n_draws=4, location_ids=[6, 102])
    result = run_on(scheduler, wf, tmp_path / "runs", seconds=45,
                    spec=EXAMPLE / "specs" / "laptop.yaml")
    assert result.ok, result.counts
    assert result.counts == {"DONE": 8}
    assert sorted(p.name for p in (out / "fit").iterdir()) == [f"draw_{i}.csv" for i in range(4)]
    assert (out / "diagnostics" / "summary.csv").read_text().count("\n") >= 3
