"""The jobmon backend against a real jobmon server (jobmon-server 3.2.2, SQLite, 127.0.0.1).

A module-scoped fixture starts it with ``ci/jobmon/start.sh`` (which makes the server's
own venv on first use: the server pins jobmon-core 3.2.2, the client needs 3.4) and
stops it at the end. Workflows run through the engine on jobmon's own ``sequential`` and
``multiprocess`` clusters; every engine run in this process is bounded (a SIGINT at its
deadline makes the engine cancel its jobs).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from cluster_testing import GRISTMILL, lines, selected, wait_until
from gm_testing import SRC, attempts, pid_gone, run_within, subprocess_env

from gristmill.backends.base import JobRequest
from gristmill.backends.jobmon.backend import JobmonBackend
from gristmill.backends.registry import make_backend
from gristmill.engine.runner import RunResult, run_workflow
from gristmill.errors import BackendError, SpecError
from gristmill.resources import Resources
from gristmill.spec.load import Spec
from gristmill.states import JobState
from gristmill.worker.result import read_result

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
KIT = SRC.parent / "ci" / "jobmon"
EXAMPLE = SRC.parent / "examples" / "seiir_like"


pytestmark = pytest.mark.jobmon


@pytest.fixture(scope="module", autouse=True)
def _jobmon_selected(request: pytest.FixtureRequest) -> None:
    """Only with ``-m jobmon`` (they start a server); then a missing client fails, not skips."""
    if not selected(request, "jobmon"):
        pytest.skip("jobmon tests run only with -m jobmon (nox -s jobmon)")
    try:
        import jobmon.client  # noqa: F401
    except ImportError as exc:
        pytest.fail(f"-m jobmon selected, but jobmon-client is not installed ({exc}): pip "
                    "install 'gristmill[jobmon]' (jobmon-client==3.3.0, jobmon-core>=3.4.7)")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of a jobmon server of this module's own (ci/jobmon/start.sh)."""
    env = {**os.environ, "JOBMON_KIT_DIR": str(tmp_path_factory.mktemp("jobmon-server"))}
    started = subprocess.run(["bash", str(KIT / "start.sh")], env=env, capture_output=True,
                             text=True, timeout=600, check=False)
    if started.returncode != 0:
        pytest.fail(f"ci/jobmon/start.sh failed:\n{started.stderr}")
    (url,) = [line.partition("=")[2] for line in started.stdout.splitlines()
              if line.startswith("export JOBMON__HTTP__SERVICE_URL=")]
    try:
        yield url
    finally:
        subprocess.run(["bash", str(KIT / "stop.sh")], env=env, capture_output=True, check=False)


@pytest.fixture
def et(et: ModuleType, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The engine's fixture tasks; a server that stops answering fails a driver in
    seconds, not jobmon's 5 minutes."""
    monkeypatch.setenv("JOBMON__HTTP__RETRIES_TIMEOUT", "20")
    return et


def run_on(server: str, wf: Any, run_dir: Path, seconds: float = 120, **options: Any) -> RunResult:
    """Run ``wf`` on jobmon through the engine, SIGINT at ``seconds``; wait for the driver."""
    backend_options = {"service_url": server, "cluster": "sequential", **options.pop("jm", {})}
    result: RunResult = run_within(seconds, wf, backend="jobmon", run_dir=run_dir,
                                   poll_interval=0.5, backend_options=backend_options,
                                   **options)
    driver = json.loads((result.run_dir / "jobmon" / "driver.json").read_text())
    assert pid_gone(driver["pid"], 30), "the jobmon driver outlived its workflow"
    return result


def jobmon_states(server: str, run_dir: Path) -> dict[str, str]:
    """Task name -> status letter, as the server has them."""
    backend = JobmonBackend(service_url=server)
    workflow_id = json.loads((run_dir / "jobmon" / "workflow.json").read_text())["workflow_id"]
    from gristmill.backends.jobmon.translate import parse_workflow_tasks

    return parse_workflow_tasks(backend._get(f"/workflow/{workflow_id}/workflow_tasks"))


def test_options_come_as_text_and_bad_ones_say_what_to_give(
    server: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    backend = make_backend("jobmon", service_url=server, fail_fast="yes", max_concurrent="5",
                           cluster="multiprocess")
    assert isinstance(backend, JobmonBackend)
    assert (backend.fail_fast, backend.max_concurrent, backend.cluster) == (True, 5, "multiprocess")
    assert backend.capabilities.dag
    with pytest.raises(SpecError, match="fail_fast='maybe': give true or false"):
        JobmonBackend(service_url=server, fail_fast="maybe")
    with pytest.raises(SpecError, match="max_concurrent='0'"):
        JobmonBackend(service_url=server, max_concurrent="0")
    with pytest.raises(BackendError, match="bad option"):
        make_backend("jobmon", service_url=server, colour="red")
    monkeypatch.delenv("JOBMON__HTTP__SERVICE_URL", raising=False)
    empty = tmp_path / "jobmon.yaml"
    empty.write_text("{}\n")
    monkeypatch.setenv("JOBMON__CONFIG_FILE", str(empty))
    with pytest.raises(BackendError, match="no server URL; set JOBMON__HTTP__SERVICE_URL"):
        JobmonBackend()


def test_a_graph_runs_with_jobmon_retrying_and_skipping_below_a_failure(
    server: str, et: ModuleType, tmp_path: Path
) -> None:
    path, marker = tmp_path / "out", tmp_path / "marker"
    spec = Spec.from_dict({"tasks": {"exit_with": {"retries": 1}}})
    result = run_on(server, et.layered(path=str(path), marker=str(marker)), tmp_path / "runs",
                    spec=spec)
    assert result.counts == {"DONE": 6, "FAILED": 1, "UPSTREAM_FAILED": 1}
    assert sorted(lines(path), key=int) == ["1", "2", "3", "4", "5", "6"]
    assert lines(marker) == ["exit_with 3", "exit_with 3"]  # jobmon tried twice
    records = {r.task + (r.job_name if r.task == "append_line" else ""): r
               for r in attempts(result.run_dir)}
    failed = records["exit_with"]
    assert (failed.state, failed.exit_code, failed.attempt) == ("FAILED", 3, 1)
    assert Path(failed.result_path + ".try1").exists()  # the first try, moved aside
    assert Path(failed.stderr + ".try1").exists()
    assert read_result(failed.result_path, key=failed.key) is not None
    assert "upstream node" in records["append_lineappend_line_7"].reason
    states = sorted(jobmon_states(server, result.run_dir).values())
    assert states == ["D"] * 6 + ["F", "G"]  # the node below the failure never ran


def test_a_resumed_run_resumes_the_same_jobmon_workflow(
    server: str, et: ModuleType, tmp_path: Path
) -> None:
    path, control = tmp_path / "out", tmp_path / "control"
    control.write_text("fail")
    wf = et.fix_and_resume(path=str(path), control=str(control))
    jm = {"cluster": "multiprocess"}
    first = run_on(server, wf, tmp_path / "runs", jm=jm)
    assert first.counts == {"DONE": 4, "FAILED": 1}
    before = json.loads((first.run_dir / "jobmon" / "workflow.json").read_text())
    control.unlink()
    second = run_on(server, et.fix_and_resume(path=str(path), control=str(control)),
                    first.run_dir, jm=jm)
    assert second.ok
    assert second.counts == {"DONE": 5}
    assert sorted(lines(path)) == ["0", "1", "2", "3", "flaky"]  # nothing ran twice
    after = json.loads((first.run_dir / "jobmon" / "workflow.json").read_text())
    assert after == {"workflow_id": before["workflow_id"], "generation": 2}
    flaky = [r for r in attempts(first.run_dir) if r.task == "flaky"]
    assert [(r.attempt, r.state) for r in flaky] == [(1, "FAILED"), (2, "SUCCEEDED")]
    assert sorted(jobmon_states(server, first.run_dir).values()) == ["D"] * 5


def test_cancel_stops_the_driver_and_the_running_task(server: str, tmp_path: Path) -> None:
    logs, pidfile = tmp_path / "logs" / "sleep", tmp_path / "pid"
    logs.mkdir(parents=True)  # as the engine makes each task's folder of its run
    job = JobRequest(
        key="s1.1", task="sleep", job_name="sleep", resources=Resources(),
        argv=("/bin/sh", "-c", f"echo $$ > {pidfile}; exec sleep 60"),
        stdout=logs / "sleep.1.out", stderr=logs / "sleep.1.err",
        result_path=logs / "sleep.1.result.json")
    backend = JobmonBackend(service_url=server, cluster="multiprocess")
    (handle,) = backend.submit([job])
    wait_until(lambda: pidfile.exists() and bool(pidfile.read_text()), 60, "the task to start")
    wait_until(lambda: backend.poll([handle])[handle].state is JobState.RUNNING, 20,
               "jobmon to say RUNNING")
    task_pid = int(pidfile.read_text())
    backend.cancel([handle])
    assert pid_gone(task_pid, 10)
    driver = json.loads((tmp_path / "jobmon" / "driver.json").read_text())
    assert pid_gone(driver["pid"], 10)
    assert backend.poll([handle])[handle].state is JobState.CANCELLED
    result = read_result(job.result_path, key=job.key)
    assert result is not None
    assert (result.state, result.key) == (JobState.CANCELLED, job.key)
    assert json.loads((tmp_path / "jobmon" / "driver-1.exit.json").read_text())["status"] == "S"
    workflow_id = json.loads((tmp_path / "jobmon" / "workflow.json").read_text())["workflow_id"]
    assert backend._get(f"/workflow/{workflow_id}/is_resumable")["workflow_is_resumable"]


def test_a_killed_engines_jobmon_run_goes_on_and_is_reattached(
    server: str, et: ModuleType, tmp_path: Path
) -> None:
    root, path = tmp_path / "runs", tmp_path / "out"
    script = ("import engine_tasks; from gristmill.engine.runner import run_workflow; run_workflow("
              f"engine_tasks.appends(path={str(path)!r}, n=8, pause=0.3), backend='jobmon', "
              f"run_dir={str(root)!r}, backend_options={{'service_url': {server!r}}})")
    engine = subprocess.Popen([sys.executable, "-c", script], env=subprocess_env(FIXTURES),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: len(lines(path)) >= 2, 60, "two tasks to finish")
    finally:
        engine.kill()
        engine.wait()
    run_dir = next(root.glob("20*"))
    driver = json.loads((run_dir / "jobmon" / "driver.json").read_text())
    assert not pid_gone(driver["pid"], 0.2)  # the jobmon run outlived its engine
    result = run_on(server, et.appends(path=str(path), n=8, pause=0.3), run_dir)
    assert result.ok
    assert sorted(map(int, lines(path))) == list(range(8))  # each exactly once
    assert {(r.attempt, r.state) for r in attempts(run_dir)} == {(1, "SUCCEEDED")}
    assert json.loads((run_dir / "jobmon" / "driver.json").read_text())["generation"] == 1


def test_a_dead_driver_is_lost_and_a_new_one_resumes_the_workflow(
    server: str, et: ModuleType, tmp_path: Path
) -> None:
    pidfile, release = tmp_path / "pid", tmp_path / "release"
    killed: list[int] = []

    def kill_the_driver() -> None:
        wait_until(lambda: Path(f"{pidfile}.0").exists(), 60, "the sleeper to start")
        run_dir = next((tmp_path / "runs").glob("20*"))
        pid = json.loads((run_dir / "jobmon" / "driver.json").read_text())["pid"]
        os.killpg(pid, signal.SIGKILL)  # the driver, its distributor and worker
        killed.append(pid)
        release.touch()

    helper = threading.Thread(target=kill_the_driver)
    helper.start()
    wf = et.sleepers(pidfile=str(pidfile), n=1, pause=60.0, release=str(release))
    result = run_on(server, wf, tmp_path / "runs", seconds=90)
    helper.join()
    assert killed
    assert result.ok, result.counts
    first, second = sorted(attempts(result.run_dir), key=lambda r: r.attempt)
    assert first.state == "LOST"
    assert "the jobmon driver ended" in first.reason
    assert second.state == "SUCCEEDED"
    assert json.loads((result.run_dir / "jobmon" / "driver.json").read_text())["generation"] == 2


def test_the_example_pipeline_runs_end_to_end_and_status_reads_it(
    server: str, tmp_path: Path
) -> None:
    pipeline = pytest.importorskip("seiir_like.pipeline")
    out = tmp_path / "out"
    wf = pipeline.seiir(version="jobmon", output_root=str(out), n_draws=4, location_ids=[6, 102])
    result = run_on(server, wf, tmp_path / "runs", seconds=120,
                    spec=EXAMPLE / "specs" / "laptop.yaml", jm={"cluster": "multiprocess"})
    assert result.ok, result.counts
    assert result.counts == {"DONE": 8}
    assert sorted(p.name for p in (out / "fit").iterdir()) == [f"draw_{i}.csv" for i in range(4)]
    assert (out / "diagnostics" / "summary.csv").read_text().count("\n") >= 3
    shown = subprocess.run([*GRISTMILL, "status", str(result.run_dir)], capture_output=True,
                           text=True, env=subprocess_env(), timeout=60, check=False)
    assert shown.returncode == 0, shown.stderr
    for task in ("fit", "validate", "forecast", "diagnostics"):
        assert task in shown.stdout


def test_an_interrupted_run_stops_jobmon_and_leaves_nothing_running(
    server: str, et: ModuleType, tmp_path: Path
) -> None:
    pidfile = tmp_path / "pid"
    sleeper = Path(f"{pidfile}.0")

    def interrupt_once_it_runs() -> None:
        wait_until(lambda: sleeper.exists() and bool(sleeper.read_text()), 60, "the sleeper")
        os.kill(os.getpid(), signal.SIGINT)

    helper = threading.Thread(target=interrupt_once_it_runs)
    helper.start()
    try:
        result = run_workflow(et.sleepers(pidfile=str(pidfile), n=1, pause=60.0),
                              backend="jobmon", run_dir=tmp_path / "runs", poll_interval=0.5,
                              backend_options={"service_url": server, "cluster": "multiprocess"})
    finally:
        helper.join()
    assert result.interrupted
    assert pid_gone(int(sleeper.read_text()), 10)
    driver = json.loads((result.run_dir / "jobmon" / "driver.json").read_text())
    assert pid_gone(driver["pid"], 10)
    (record,) = attempts(result.run_dir)
    assert record.state == "CANCELLED"
    assert result.counts == {"CANCELLED": 1}


def test_jobmon_fail_fast_stops_the_run_and_what_it_left_is_cancelled(
    server: str, et: ModuleType, tmp_path: Path
) -> None:
    """Tasks released only after the failure must never run: jobmon stopped scheduling."""
    path, marker = tmp_path / "out", tmp_path / "failed"
    result = run_on(server, et.gated_failure(path=str(path), marker=str(marker),
                                             pidfile=str(tmp_path / "gate.pid")),
                    tmp_path / "runs", jm={"fail_fast": "true"})
    assert not result.ok
    assert result.counts["FAILED"] == 1
    assert lines(path) == [], "tasks released after the failure ran: fail_fast was ignored"
    appenders = [r for r in attempts(result.run_dir) if r.task == "append_line"]
    assert all(r.state == "CANCELLED" for r in appenders), appenders
    assert result.counts.get("DONE", 0) <= 2  # at most the two gate tasks


def test_gristmill_limit_reaches_the_running_jobmon_workflow(
    server: str, et: ModuleType, tmp_path: Path
) -> None:
    """jobmon runs the DAG itself: ``gristmill limit --max-concurrent`` is passed to its
    live limit (what ``jobmon concurrency_limit`` sets), and the run goes on."""
    stamps = tmp_path / "stamps"
    told: list[subprocess.CompletedProcess[str]] = []

    def steer() -> None:
        wait_until(lambda: stamps.exists(), 60, "the first task to start")
        run_dir = next((tmp_path / "runs").glob("20*"))
        told.append(subprocess.run([*GRISTMILL, "limit", str(run_dir), "--max-concurrent", "3"],
                                   capture_output=True, text=True, env=subprocess_env(),
                                   timeout=60, check=False))

    helper = threading.Thread(target=steer)
    helper.start()
    result = run_on(server, et.spans(stamps=str(stamps), n=3, pause=1.0), tmp_path / "runs",
                    jm={"max_concurrent": 1})
    helper.join()
    assert result.ok, result.counts
    assert told[0].returncode == 0, told[0].stderr
    assert "took it" in told[0].stdout
    backend = JobmonBackend(service_url=server)
    workflow_id = json.loads((result.run_dir / "jobmon" / "workflow.json").read_text())[
        "workflow_id"]
    metadata = backend._get(f"/workflow/{workflow_id}/fetch_workflow_metadata")["workflow"]
    assert metadata[2] == 3  # (workflow_id, dag_id, max_concurrently_running)
