"""The local backend on real processes: states, limits, resources, cancel, reattach."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from gm_testing import DAEMONIZE, kill_if_alive, pid_gone
from loguru import logger

import gristmill
from gristmill.backends.base import Backend, JobHandle, JobRequest, JobStatus
from gristmill.backends.local.backend import LocalBackend
from gristmill.errors import BackendError, SpecError
from gristmill.resources import Resources
from gristmill.states import JobState
from gristmill.worker.result import read_result

MB = 2**20
# Appends "<start> <end>" (epoch seconds) to argv[1] around a sleep of argv[2] seconds.
TIMED = 'a=$(date +%s.%N); sleep "$1"; echo "$a $(date +%s.%N)" >> "$0"'


def request(
    tmp: Path, key: str, argv: Sequence[str], task: str = "t", **res: object
) -> JobRequest:
    resources = Resources(**res)  # type: ignore[arg-type]
    return JobRequest(
        key=key, task=task, job_name=key, argv=tuple(argv), resources=resources,
        stdout=tmp / "logs" / f"{key}.out", stderr=tmp / "logs" / f"{key}.err",
        result_path=tmp / "results" / f"{key}.json",
    )


def timed(tmp: Path, key: str, seconds: float = 0.3, task: str = "t", **res: object) -> JobRequest:
    argv = ["sh", "-c", TIMED, str(tmp / f"{key}.times"), str(seconds)]
    return request(tmp, key, argv, task, **res)


def spans(tmp: Path, keys: Sequence[str]) -> dict[str, tuple[float, float]]:
    out = {}
    for key in keys:
        start, end = (tmp / f"{key}.times").read_text().split()
        out[key] = (float(start), float(end))
    return out


def max_overlap(intervals: Sequence[tuple[float, float]]) -> int:
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    return peak


def run_all(
    backend: LocalBackend, handles: Sequence[JobHandle], timeout: float = 20
) -> dict[JobHandle, JobStatus]:
    final: dict[JobHandle, JobStatus] = {}
    deadline = time.monotonic() + timeout
    while len(final) < len(handles):
        assert time.monotonic() < deadline, f"still running: {set(handles) - set(final)}"
        backend.wait(1.0)
        for handle, status in backend.poll([h for h in handles if h not in final]).items():
            if status.state.finished:
                final[handle] = status
    return final


def wait_for(
    backend: LocalBackend, handle: JobHandle, state: JobState, timeout: float = 10
) -> JobStatus:
    deadline = time.monotonic() + timeout
    while True:
        status = backend.poll([handle]).get(handle)
        if status is not None and status.state is state:
            return status
        assert status is None or not status.state.finished, status
        assert time.monotonic() < deadline, f"{handle.key} never reached {state}"
        backend.wait(0.5)


@pytest.fixture
def backend() -> Iterator[LocalBackend]:
    instance = LocalBackend(max_cores=2, grace=0.5)
    yield instance
    instance.shutdown(cancel=True)


def test_it_is_a_backend_with_its_capabilities() -> None:
    with LocalBackend(max_cores=1) as instance:
        assert isinstance(instance, Backend)
        assert instance.name == "local"
        caps = instance.capabilities
        assert (caps.reattach, caps.dag, caps.poll_min, caps.max_inflight) == (
            True, False, 0.0, 16)  # the window: 4 x its cores, at least 16
        assert LocalBackend(max_cores=8).capabilities.max_inflight == 32
        assert instance.max_mem > 0


def test_bad_limits_are_refused() -> None:
    with pytest.raises(SpecError, match="max_cores=0"):
        LocalBackend(max_cores=0)


def test_exit_codes_signals_and_result_files(tmp_path: Path, backend: LocalBackend) -> None:
    jobs = [request(tmp_path, "ok", ["true"]), request(tmp_path, "no", ["false"]),
            request(tmp_path, "three", ["sh", "-c", "exit 3"]),
            request(tmp_path, "killed", ["sh", "-c", "kill -9 $$"]),
            request(tmp_path, "missing", ["/nonexistent/program"])]
    handles = backend.submit(jobs)
    assert [h.key for h in handles] == ["ok", "no", "three", "killed", "missing"]
    final = run_all(backend, handles)
    got = {h.key: (s.state, s.exit_code, s.signal, s.reason) for h, s in final.items()}
    assert got == {
        "ok": (JobState.SUCCEEDED, 0, None, "exit code 0"),
        "no": (JobState.FAILED, 1, None, "exit code 1"),
        "three": (JobState.FAILED, 3, None, "exit code 3"),
        "killed": (JobState.FAILED, None, 9, "killed by SIGKILL"),
        "missing": (JobState.FAILED, 127, None, "command not found: /nonexistent/program"),
    }
    # The results came over the pipe: while the engine lives, no result file is written.
    assert not (tmp_path / "results").exists()
    # Asked again: the same answer until the engine acknowledged it (a later wait or
    # submit), then nothing (unchanged); never another state.
    again = backend.poll(handles)
    assert all(status == final[handle] for handle, status in again.items())
    # Only what a task wrote has a log file: `missing` has gristmill's own line.
    logs = tmp_path / "logs"
    assert sorted(p.name for p in logs.iterdir()) == ["missing.err"]
    assert (logs / "missing.err").read_text() == (
        "gristmill: command not found: /nonexistent/program\n")


def test_each_status_carries_the_cpu_time_its_attempt_burned(
    tmp_path: Path, backend: LocalBackend
) -> None:
    """Measured by the supervisor's monitor, child processes included, and said to be."""
    burn = ("import sys, time\nend = time.process_time() + 0.5\n"
            "while time.process_time() < end:\n    pass\n")
    child = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {burn!r}])"
    jobs = [request(tmp_path, "busy", [sys.executable, "-c", burn]),
            request(tmp_path, "child", [sys.executable, "-c", child]),
            request(tmp_path, "idle", ["sleep", "0.5"])]
    final = run_all(backend, backend.submit(jobs))
    cpu = {h.key: s.cpu_time for h, s in final.items()}
    assert {h.key: s.usage_source for h, s in final.items()} == dict.fromkeys(cpu, "worker")
    assert cpu["busy"] is not None
    assert cpu["busy"] >= 0.5
    assert cpu["child"] is not None
    assert cpu["child"] >= 0.5
    assert cpu["idle"] is not None
    assert cpu["idle"] < 0.2


def test_memory_and_runtime_limits(tmp_path: Path, backend: LocalBackend) -> None:
    hog = "x = bytearray(300 << 20); import time; time.sleep(30)"
    jobs = [request(tmp_path, "hog", [sys.executable, "-c", hog], mem="100M"),
            request(tmp_path, "slow", ["sleep", "30"], runtime=1)]
    start = time.monotonic()
    final = {h.key: s for h, s in run_all(backend, backend.submit(jobs)).items()}
    assert time.monotonic() - start < 5
    assert final["hog"].state is JobState.OOM
    assert final["hog"].reason.startswith("exceeded memory limit 100M")
    assert final["slow"].state is JobState.TIMEOUT
    assert final["slow"].reason == "exceeded runtime 00:00:01"


def test_concurrency_stays_within_cores_in_fifo_order(tmp_path: Path) -> None:
    keys = ["a", "b", "wide", "c", "d", "e"]
    with LocalBackend(max_cores=2) as backend:
        jobs = [timed(tmp_path, k, cores=2 if k == "wide" else 1) for k in keys]
        final = run_all(backend, backend.submit(jobs))
    assert all(s.state is JobState.SUCCEEDED for s in final.values())
    times = spans(tmp_path, keys)
    assert max_overlap(list(times.values())) == 2  # parallel, never more than the cores
    others = [v for k, v in times.items() if k != "wide"]
    assert max_overlap([times["wide"], *others]) == 2
    assert all(max_overlap([times["wide"], o]) == 1 for o in others)  # the 2-core job ran alone
    # FIFO: the 2-core job waits for a and b, and nothing after it overtakes it.
    assert times["wide"][0] > max(times["a"][1], times["b"][1])
    assert min(times[k][0] for k in ("c", "d", "e")) > times["wide"][1]


def test_memory_is_a_resource_too(tmp_path: Path) -> None:
    keys = ["m1", "m2", "m3"]
    with LocalBackend(max_cores=4, max_mem=1000 * MB) as backend:
        jobs = [timed(tmp_path, k, 0.2, mem="600M") for k in keys]
        final = run_all(backend, backend.submit(jobs))
    assert all(s.state is JobState.SUCCEEDED for s in final.values())
    assert max_overlap(list(spans(tmp_path, keys).values())) == 1


def test_an_oversized_job_runs_alone_with_one_warning(tmp_path: Path) -> None:
    messages: list[str] = []
    logger.enable("gristmill")
    sink = logger.add(lambda m: messages.append(str(m)), level="WARNING", format="{message}")
    try:
        with LocalBackend(max_cores=2) as backend:
            jobs = [timed(tmp_path, "s1"), timed(tmp_path, "big1", task="big", cores=8),
                    timed(tmp_path, "big2", task="big", cores=8, mem="1P"), timed(tmp_path, "s2")]
            final = run_all(backend, backend.submit(jobs))
    finally:
        logger.remove(sink)
        logger.disable("gristmill")
    assert all(s.state is JobState.SUCCEEDED for s in final.values())
    times = spans(tmp_path, ["s1", "big1", "big2", "s2"])
    for big in ("big1", "big2"):
        assert all(max_overlap([times[big], v]) == 1 for k, v in times.items() if k != big)
    assert len(messages) == 1
    assert "task 'big' asks for cores=8 (the local backend has 2)" in messages[0]
    assert "alone on the whole machine" in messages[0]


def test_strict_resources_refuses_an_oversized_job(tmp_path: Path) -> None:
    with LocalBackend(max_cores=2, max_mem=2**30, strict_resources=True) as backend:
        with pytest.raises(BackendError) as info:
            backend.submit([request(tmp_path, "ok", ["true"]),
                            request(tmp_path, "x", ["true"], task="fit", mem="4G")])
        message = str(info.value)
        assert "task 'fit' asks for mem=4G (the local backend has 1G)" in message
        assert "lower its resources" in message
        assert "--strict-resources" in message
        assert not (tmp_path / "results").exists()  # nothing of the batch was submitted


def test_cancel_running_and_queued_jobs(tmp_path: Path) -> None:
    with LocalBackend(max_cores=1, grace=0.3) as backend:
        ready = tmp_path / "trap.set"  # written after the trap: RUNNING alone is too early
        stubborn, queued = backend.submit([
            request(tmp_path, "stubborn",
                    ["sh", "-c", "trap '' TERM; touch \"$0\"; sleep 30", str(ready)]),
            request(tmp_path, "queued", ["true"]),
        ])
        wait_for(backend, stubborn, JobState.RUNNING)
        deadline = time.monotonic() + 10
        while not ready.exists():
            assert time.monotonic() < deadline, "the stubborn job never set its trap"
            time.sleep(0.01)
        assert queued not in backend.poll([queued])  # unchanged: still queued
        backend.cancel([queued])
        cancelled = wait_for(backend, queued, JobState.CANCELLED, timeout=2)
        start = time.monotonic()
        backend.cancel([stubborn])
        final = run_all(backend, [stubborn], timeout=5)
        assert 0.2 < time.monotonic() - start < 3  # SIGTERM ignored, SIGKILL after the grace
    assert final[stubborn].state is JobState.CANCELLED
    assert final[stubborn].signal == signal.SIGKILL
    assert cancelled.state is JobState.CANCELLED
    assert cancelled.reason == "cancelled before it started"
    assert not (tmp_path / "logs" / "queued.out").exists()


def test_children_left_behind_are_killed(tmp_path: Path, backend: LocalBackend) -> None:
    pid_file = tmp_path / "bg.pid"
    job = request(tmp_path, "fork", ["sh", "-c", 'sleep 1000 & echo $! > "$0"', str(pid_file)])
    final = run_all(backend, backend.submit([job]))
    assert next(iter(final.values())).state is JobState.SUCCEEDED
    assert pid_gone(int(pid_file.read_text()), timeout=3.0)


def test_a_daemon_dies_when_the_last_attempt_that_may_have_left_it_ends(
    tmp_path: Path
) -> None:
    """Daemons with no process group and no environment (``setsid``, ``env -i``), left by
    two attempts that overlap. Y's daemon, older than attempt X, survives X's end (X cannot
    have started it); once Y ends too, both daemons are gone."""
    go = tmp_path / "go"
    y_pid, x_pid = tmp_path / "y.pid", tmp_path / "x.pid"
    wait_go = f'while [ ! -e "{go}" ]; do sleep 0.01; done'
    with LocalBackend(max_cores=2) as backend:
        (y,) = backend.submit([request(tmp_path, "y", ["sh", "-c", f"{DAEMONIZE}; {wait_go}",
                                                        "sh", str(y_pid)])])
        deadline = time.monotonic() + 20
        while not y_pid.exists():
            assert time.monotonic() < deadline, "attempt y never left its daemon"
            backend.wait(0.05)
        (x,) = backend.submit([request(tmp_path, "x", ["sh", "-c", DAEMONIZE, "sh",
                                                        str(x_pid)])])
        daemons = [int(y_pid.read_text())]
        try:
            assert run_all(backend, [x])[x].state is JobState.SUCCEEDED
            daemons.append(int(x_pid.read_text()))
            assert not pid_gone(daemons[0], timeout=0.5), "x's end killed y's daemon"
            go.touch()
            assert run_all(backend, [y])[y].state is JobState.SUCCEEDED
            assert [pid for pid in daemons if not pid_gone(pid, timeout=10)] == []
        finally:
            go.touch()
            for pid in daemons:
                kill_if_alive(pid)


def _lowest_free_fd(pid: int) -> int:
    used = {int(name) for name in os.listdir(f"/proc/{pid}/fd")}
    return min(set(range(len(used) + 1)) - used)


def test_jobs_wait_for_file_descriptors_and_start_once_they_return(tmp_path: Path) -> None:
    """The supervisor out of descriptors (its limit lowered to what it holds): no job
    fails; they wait, the engine is told once, and they run when the limit is back."""
    messages: list[str] = []
    logger.enable("gristmill")
    sink = logger.add(lambda m: messages.append(str(m)), level="INFO", format="{message}")
    try:
        with LocalBackend(max_cores=4) as backend:
            run_all(backend, backend.submit([request(tmp_path, "boot", ["true"])]))
            pid = backend.supervisor_pid
            limits = resource.prlimit(pid, resource.RLIMIT_NOFILE)
            resource.prlimit(pid, resource.RLIMIT_NOFILE, (_lowest_free_fd(pid), limits[1]))
            try:
                handles = backend.submit(
                    [request(tmp_path, f"j{i}", ["sh", "-c", "echo ran"]) for i in range(3)])
                deadline = time.monotonic() + 20
                while not any("cannot start yet" in m for m in messages):
                    assert time.monotonic() < deadline, f"no word of waiting: {messages}"
                    backend.wait(0.1)
                    assert not any(s.state.finished for s in backend.poll(handles).values())
            finally:
                resource.prlimit(pid, resource.RLIMIT_NOFILE, limits)
            final = run_all(backend, handles)
    finally:
        logger.remove(sink)
        logger.disable("gristmill")
    assert {h.key: s.state for h, s in final.items()} == dict.fromkeys(
        ("j0", "j1", "j2"), JobState.SUCCEEDED)
    for i in range(3):
        assert (tmp_path / "logs" / f"j{i}.out").read_text() == "ran\n"
    (waiting,) = [m for m in messages if "cannot start yet" in m]
    assert "Too many open files" in waiting
    assert "the task's retries are not spent" in waiting
    assert any(m.startswith("job j0 started after waiting") for m in messages)


def test_argv_env_and_cwd_reach_the_program(tmp_path: Path, backend: LocalBackend) -> None:
    out = tmp_path / "argv.json"
    tricky = ["a b", "it's", '"quoted"', "x;y", "$(touch pwned)", "line\nbreak", "*", ""]
    code = "import sys, json; json.dump(sys.argv[2:], open(sys.argv[1], 'w'))"
    (tmp_path / "wd").mkdir()
    jobs = [
        request(tmp_path, "argv", [sys.executable, "-c", code, str(out), *tricky]),
        JobRequest(key="env", task="t", job_name="env", argv=("sh", "-c", 'echo "$GM_X"; pwd'),
                   resources=Resources(), stdout=tmp_path / "env.out", stderr=tmp_path / "env.err",
                   result_path=tmp_path / "env.json", env=(("GM_X", "a b"),), cwd=tmp_path / "wd"),
    ]
    final = run_all(backend, backend.submit(jobs))
    assert all(s.state is JobState.SUCCEEDED for s in final.values())
    assert json.loads(out.read_text()) == tricky
    assert not list(tmp_path.rglob("pwned"))
    assert (tmp_path / "env.out").read_text() == f"a b\n{tmp_path / 'wd'}\n"


def test_close_lets_submitted_jobs_finish(tmp_path: Path) -> None:
    backend = LocalBackend(max_cores=1)
    (handle,) = backend.submit([request(tmp_path, "late", ["sh", "-c", "sleep 0.3; echo done"])])
    backend.close()
    with pytest.raises(BackendError, match="closed"):
        backend.submit([request(tmp_path, "more", ["true"])])
    assert run_all(backend, [handle], timeout=10)[handle].state is JobState.SUCCEEDED
    result = read_result(handle.result_path, key=handle.key)
    assert result is not None
    assert result.state is JobState.SUCCEEDED
    assert (tmp_path / "logs" / "late.out").read_text() == "done\n"
    deadline = time.monotonic() + 5
    while os.waitpid(backend.supervisor_pid, os.WNOHANG)[0] == 0:  # then it exits
        assert time.monotonic() < deadline, "the supervisor did not exit"
        time.sleep(0.02)


def test_a_result_file_of_another_attempt_is_lost_not_its_outcome(tmp_path: Path) -> None:
    """After close (and for adopted jobs) the result file answers: one naming another
    attempt is LOST, however it says that attempt ended."""
    backend = LocalBackend(max_cores=1)
    (handle,) = backend.submit([request(tmp_path, "mine.1", ["sh", "-c", "exit 3"])])
    backend.close()
    assert run_all(backend, [handle], timeout=10)[handle].state is JobState.FAILED
    text = Path(handle.result_path).read_text()
    Path(handle.result_path).write_text(text.replace('"FAILED"', '"SUCCEEDED"').replace(
        '"mine.1"', '"other.1"'))
    status = backend.poll([handle])[handle]
    assert status.state is JobState.LOST
    assert "of attempt other.1, not of attempt mine.1" in status.reason


def test_cancel_after_close_still_reaches_the_jobs(tmp_path: Path) -> None:
    backend = LocalBackend(max_cores=1, grace=0.3)
    (handle,) = backend.submit([request(tmp_path, "long", ["sleep", "30"])])
    wait_for(backend, handle, JobState.RUNNING)
    backend.close()
    backend.cancel([handle])
    assert run_all(backend, [handle], timeout=5)[handle].state is JobState.CANCELLED


def test_a_dead_supervisor_makes_its_jobs_lost(tmp_path: Path) -> None:
    pid_file = tmp_path / "task.pid"
    backend = LocalBackend(max_cores=1)
    argv = ["sh", "-c", 'echo $$ > "$0"; exec sleep 30', str(pid_file)]
    (handle,) = backend.submit([request(tmp_path, "x", argv)])
    wait_for(backend, handle, JobState.RUNNING)
    deadline = time.monotonic() + 5
    while not pid_file.exists() or not pid_file.read_text():
        assert time.monotonic() < deadline
        time.sleep(0.01)
    os.kill(backend.supervisor_pid, signal.SIGKILL)
    status = run_all(backend, [handle], timeout=5)[handle]
    assert status.state is JobState.LOST
    assert f"pid {backend.supervisor_pid}" in status.reason
    assert pid_gone(int(pid_file.read_text()), timeout=3.0)  # not left running unsupervised
    with pytest.raises(BackendError, match="supervisor"):
        backend.submit([request(tmp_path, "y", ["true"])])
    backend.close()


def test_sigterm_to_the_supervisor_cancels_its_jobs(tmp_path: Path) -> None:
    backend = LocalBackend(max_cores=1, grace=0.3)
    running, queued = backend.submit([request(tmp_path, "r", ["sleep", "30"]),
                                      request(tmp_path, "q", ["true"])])
    wait_for(backend, running, JobState.RUNNING)
    os.kill(backend.supervisor_pid, signal.SIGTERM)
    final = run_all(backend, [running, queued], timeout=5)
    assert {s.state for s in final.values()} == {JobState.CANCELLED}
    backend.close()


def test_unknown_or_dead_handles_read_as_lost(tmp_path: Path, backend: LocalBackend) -> None:
    dead = JobHandle("local", "999999999.1.1", "dead", str(tmp_path / "dead.json"))
    bad = JobHandle("local", "unknown", "bad", str(tmp_path / "bad.json"))
    with pytest.raises(BackendError, match="'slurm' backend"):
        backend.attach([JobHandle("slurm", "123", "k", str(tmp_path / "k.json"))])
    backend.attach([dead, bad])
    statuses = backend.poll([dead, bad])
    assert statuses[dead].state is JobState.LOST
    assert str(tmp_path / "dead.json") in statuses[dead].reason
    assert statuses[bad].state is JobState.LOST


#: The start of a script that drives a LocalBackend in a process of its own (argv[1]: a
#: folder): ``job(key, *argv)`` makes a request, ``backend`` takes them.
DRIVER = """
import json, os, sys, time
from pathlib import Path
from gristmill.backends.base import JobRequest
from gristmill.backends.local.backend import LocalBackend
from gristmill.resources import Resources

tmp = Path(sys.argv[1])
def job(key, *argv):
    return JobRequest(key=key, task="t", job_name=key, argv=argv, resources=Resources(),
                      stdout=tmp / f"{key}.out", stderr=tmp / f"{key}.err",
                      result_path=tmp / f"{key}.json")
backend = LocalBackend(max_cores=2)
"""

ENGINE = DRIVER + """
handles = backend.submit([job("a", "sh", "-c", "sleep 2; echo x"), job("b", "sleep", "30")])
print(json.dumps([[h.backend, h.job_id, h.key, h.result_path] for h in handles]), flush=True)
os.kill(os.getpid(), 9)
"""


def test_a_new_engine_reattaches_after_a_crash(tmp_path: Path) -> None:
    src = str(Path(gristmill.__file__).resolve().parent.parent)
    path = os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path}
    engine = subprocess.run([sys.executable, "-c", ENGINE, str(tmp_path)], env=env,
                            capture_output=True, text=True, timeout=20, check=False)
    assert engine.returncode == -signal.SIGKILL, engine.stderr
    a, b = (JobHandle(*fields) for fields in json.loads(engine.stdout))
    old_pid = int(a.job_id.split(".")[0])
    with LocalBackend() as backend:
        backend.attach([a, b])
        statuses = backend.poll([a, b])
        assert statuses[a].state is JobState.RUNNING
        marker = Path(b.result_path + ".handle")  # left for an engine that lost the ids
        deadline = time.monotonic() + 5
        while not marker.exists():
            assert time.monotonic() < deadline, "no .handle marker"
            time.sleep(0.01)
        assert marker.read_text().strip() == b.job_id
        backend.cancel([b])
        final = run_all(backend, [a, b], timeout=10)
    assert final[a].state is JobState.SUCCEEDED
    assert (tmp_path / "a.out").read_text() == "x\n"
    assert final[b].state is JobState.CANCELLED
    assert not marker.exists()
    assert pid_gone(old_pid, timeout=3.0)  # the orphaned supervisor exits once its jobs are done


def test_a_shadowing_module_in_the_working_directory_is_not_imported_by_the_supervisor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A project's types.py (or json.py) in the cwd or on PYTHONPATH never runs inside
    the supervisor: it is started isolated (-I), with gristmill passed by path."""
    project = tmp_path / "project"
    project.mkdir()
    marker = tmp_path / "shadow-imported"
    for name in ("types", "json", "select"):
        (project / f"{name}.py").write_text(
            f"open({str(marker)!r}, 'a').write({name!r})\nraise SystemExit('shadowed')\n")
    monkeypatch.chdir(project)
    monkeypatch.setenv("PYTHONPATH", f"{project}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    with LocalBackend(max_cores=1) as backend:
        final = run_all(backend, backend.submit([request(tmp_path, "plain", ["true"])]))
    assert [s.state for s in final.values()] == [JobState.SUCCEEDED]
    assert not marker.exists()


UNACKED = DRIVER + """
recorded, reported = backend.submit([job("recorded", "true"), job("reported", "false")])
done = {}
while "recorded" not in done:  # poll, then wait: the engine recorded what the poll said
    backend.wait(1.0)
    done.update({h.key: s.state.value for h, s in backend.poll([recorded]).items()
                 if s.state.finished})
backend.wait(0.0)  # acknowledges `recorded`
while "reported" not in done:  # reported by a poll, then the engine dies before a wait
    time.sleep(0.05)
    done.update({h.key: s.state.value for h, s in backend.poll([reported]).items()
                 if s.state.finished})
print(json.dumps(done), flush=True)
os.kill(os.getpid(), 9)
"""


def test_a_result_the_engine_did_not_acknowledge_is_written_when_it_dies(tmp_path: Path) -> None:
    """While the engine lives, results travel over the pipe only; one it was told but may
    not have recorded (no ``wait``/``submit`` since) is written to its file when it dies."""
    src = str(Path(gristmill.__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [
        src, os.environ.get("PYTHONPATH")]))}
    engine = subprocess.run([sys.executable, "-c", UNACKED, str(tmp_path)], env=env,
                            capture_output=True, text=True, timeout=20, check=False)
    assert engine.returncode == -signal.SIGKILL, engine.stderr
    assert json.loads(engine.stdout) == {"recorded": "SUCCEEDED", "reported": "FAILED"}
    written = tmp_path / "reported.json"
    deadline = time.monotonic() + 10
    while not written.exists():
        assert time.monotonic() < deadline, "the orphaned supervisor wrote no result file"
        time.sleep(0.02)
    result = read_result(written, key="reported")
    assert result is not None
    assert (result.state, result.exit_code) == (JobState.FAILED, 1)
    assert not (tmp_path / "recorded.json").exists()  # acknowledged: never needed a file


def test_logs_are_made_only_when_written_and_a_lost_log_fails_the_job(
    tmp_path: Path, backend: LocalBackend
) -> None:
    """A log file appears with the first byte (stdout and stderr apart, or one file for
    both); output that cannot be written makes the attempt FAILED, naming the file."""
    readonly = tmp_path / "a-file"  # not a directory: no log can be made in it
    readonly.write_text("")
    jobs = [request(tmp_path, "quiet", ["true"]),
            request(tmp_path, "talks", ["sh", "-c", "echo hello; echo oops >&2"]),
            JobRequest(key="one", task="t", job_name="one",
                       argv=("sh", "-c", "echo a; echo b >&2; echo c"), resources=Resources(),
                       stdout=tmp_path / "logs" / "one.log", stderr=tmp_path / "logs" / "one.log",
                       result_path=tmp_path / "one.json"),
            JobRequest(key="big", task="t", job_name="big",
                       argv=("sh", "-c", "head -c 3000000 /dev/zero"), resources=Resources(),
                       stdout=tmp_path / "logs" / "big.out", stderr=tmp_path / "logs" / "big.err",
                       result_path=tmp_path / "big.json"),
            JobRequest(key="lost", task="t", job_name="lost", argv=("echo", "x"),
                       resources=Resources(), stdout=readonly / "lost.out",
                       stderr=readonly / "lost.err", result_path=tmp_path / "lost.json")]
    final = {h.key: s for h, s in run_all(backend, backend.submit(jobs)).items()}
    logs = tmp_path / "logs"
    assert {k: s.state for k, s in final.items()} == {
        "quiet": JobState.SUCCEEDED, "talks": JobState.SUCCEEDED, "one": JobState.SUCCEEDED,
        "big": JobState.SUCCEEDED, "lost": JobState.FAILED}
    assert not (logs / "quiet.out").exists()
    assert not (logs / "quiet.err").exists()
    assert (logs / "talks.out").read_text() == "hello\n"
    assert (logs / "talks.err").read_text() == "oops\n"
    assert (logs / "one.log").read_text() == "a\nb\nc\n"
    assert (logs / "big.out").stat().st_size == 3_000_000
    assert not (logs / "big.err").exists()
    assert final["lost"].exit_code == 0
    assert final["lost"].reason.startswith("exit code 0; its stdout could not be written to "
                                           f"{readonly / 'lost.out'}: ")
