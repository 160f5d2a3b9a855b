"""Array packing, manifests, and the element runner (``python -m gristmill.backends.arrays``).

The runner tests start the real runner in a child process, as a Slurm batch
script would, with the array variables Slurm sets; it runs the element under
the real worker wrapper.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import attrs
import pytest
from gm_testing import subprocess_env

from gristmill.attempt import read_result
from gristmill.backends.arrays import (
    MANIFEST_VERSION,
    Array,
    element_command,
    pack,
    read_entry,
    throttle,
    write_manifest,
)
from gristmill.backends.base import JobRequest, JobState
from gristmill.resources import Resources

SMALL = Resources(mem="1G", cores=1)
BIG = Resources(mem="4G", cores=1)


def request(
    root: Path, i: int, task: str = "fit", res: Resources = SMALL,
    argv: tuple[str, ...] = ("true",), env: tuple[tuple[str, str], ...] = (),
    cwd: Path | None = None,
) -> JobRequest:
    stem = root / "logs" / task / f"{task}_{i}.1"
    return JobRequest(
        key=f"{task}-{i}.1", task=task, job_name=f"{task}_{i}", argv=argv, resources=res,
        stdout=Path(f"{stem}.out"), stderr=Path(f"{stem}.err"),
        result_path=Path(f"{stem}.result.json"), env=env, cwd=cwd,
    )


# -- packing ------------------------------------------------------------------------------


def test_pack_groups_by_task_and_resources_in_first_seen_order(tmp_path: Path) -> None:
    jobs = [
        request(tmp_path, 0), request(tmp_path, 1, res=BIG), request(tmp_path, 2),
        request(tmp_path, 3, task="other"), request(tmp_path, 4, res=BIG),
        request(tmp_path, 5),
    ]
    arrays = list(pack(jobs, max_elements=100))
    assert [(a.task, a.resources, [j.key for j in a.jobs]) for a in arrays] == [
        ("fit", SMALL, ["fit-0.1", "fit-2.1", "fit-5.1"]),
        ("fit", BIG, ["fit-1.1", "fit-4.1"]),
        ("other", SMALL, ["other-3.1"]),
    ]
    assert [a.size for a in arrays] == [3, 2, 1]
    assert arrays[2].log_dir == tmp_path / "logs" / "other"


def test_pack_splits_a_group_at_max_elements(tmp_path: Path) -> None:
    jobs = [request(tmp_path, i) for i in range(7)]
    arrays = list(pack(jobs, max_elements=3))
    assert [[j.key for j in a.jobs] for a in arrays] == [
        ["fit-0.1", "fit-1.1", "fit-2.1"], ["fit-3.1", "fit-4.1", "fit-5.1"], ["fit-6.1"],
    ]


def test_ten_thousand_jobs_pack_into_ten_arrays(tmp_path: Path) -> None:
    jobs = [request(tmp_path, i) for i in range(10_000)]
    assert [a.size for a in pack(jobs, max_elements=1000)] == [1000] * 10


def test_pack_of_nothing_is_nothing() -> None:
    assert list(pack([], max_elements=10)) == []


def test_pack_refuses_a_limit_below_one(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="max_elements must be at least 1, got 0"):
        list(pack([request(tmp_path, 0)], max_elements=0))


@pytest.mark.parametrize(
    ("limit", "size", "expected"),
    [(None, 10, None), (10, 10, None), (20, 10, None), (3, 10, 3), (1, 2, 1), (0, 5, 1)],
)
def test_throttle_only_where_it_binds(limit: int | None, size: int, expected: int | None) -> None:
    assert throttle(limit, size) == expected


# -- manifests ----------------------------------------------------------------------------


def test_a_manifest_maps_each_index_to_its_attempt(tmp_path: Path) -> None:
    jobs = tuple(
        request(tmp_path, i, argv=("fit", "--draw", str(i), "it's $HOME"),
                env=(("SEED", str(i)),), cwd=tmp_path if i == 1 else None)
        for i in range(3)
    )
    path = tmp_path / "m" / "array.json"
    write_manifest(Array("fit", SMALL, jobs), path)
    assert [p.name for p in path.parent.iterdir()] == ["array.json"]  # no temp file left
    for i, job in enumerate(jobs):
        entry = read_entry(path, i)
        assert entry == {
            "key": job.key, "runtime": None, "argv": list(job.argv), "stdout": str(job.stdout),
            "stderr": str(job.stderr), "result": str(job.result_path),
            "env": {"SEED": str(i)}, "cwd": str(tmp_path) if i == 1 else None,
        }


def test_an_index_past_the_end_is_an_error_naming_the_size(tmp_path: Path) -> None:
    path = tmp_path / "array.json"
    write_manifest(Array("fit", SMALL, (request(tmp_path, 0),)), path)
    with pytest.raises(IndexError, match=r"no element 1 \(the array has 1\)"):
        read_entry(path, 1)
    with pytest.raises(IndexError):
        read_entry(path, -1)


def test_a_manifest_of_another_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "array.json"
    path.write_text(json.dumps({"version": MANIFEST_VERSION + 1, "jobs": []}))
    with pytest.raises(ValueError, match=f"manifest version {MANIFEST_VERSION + 1}"):
        read_entry(path, 0)


def test_element_command_quotes_paths_and_leaves_the_index_to_the_shell() -> None:
    line = element_command("/opt/my env/python", Path("/runs/a b/m.json"), "SGE_TASK_ID")
    assert line == (
        "exec '/opt/my env/python' -m gristmill.backends.arrays '/runs/a b/m.json' "
        '"${SGE_TASK_ID}"'
    )
    out = subprocess.run(["bash", "-c", line.replace("exec ", "echo ", 1)],
                         env={"SGE_TASK_ID": "7"}, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["/opt/my", "env/python", "-m", "gristmill.backends.arrays",
                                  "/runs/a", "b/m.json", "7"]


# -- the element runner ------------------------------------------------------------------------

RUNNER = [sys.executable, "-m", "gristmill.backends.arrays"]


def manifest(tmp_path: Path, *jobs: JobRequest) -> Path:
    path = tmp_path / "logs" / jobs[0].task / "array.json"
    write_manifest(Array(jobs[0].task, SMALL, jobs), path)
    return path


def element_env(job: str = "77", task: str = "1", **extra: str) -> dict[str, str]:
    env = subprocess_env()
    env.update({"SLURM_ARRAY_JOB_ID": job, "SLURM_ARRAY_TASK_ID": task, **extra})
    return env


def test_the_runner_runs_its_element_under_the_worker(tmp_path: Path) -> None:
    script = "import os, sys; print(os.environ['SEED'], os.getcwd()); sys.exit(int(sys.argv[1]))"
    jobs = [request(tmp_path, i, argv=(sys.executable, "-c", script, str(i + 2)),
                    env=(("SEED", f"seed{i}"),), cwd=tmp_path) for i in range(2)]
    path = manifest(tmp_path, *jobs)
    done = subprocess.run([*RUNNER, str(path), "1"], env=element_env(), capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 3, done.stderr
    assert jobs[1].stdout.read_text() == f"seed1 {tmp_path}\n"
    result = read_result(jobs[1].result_path)
    assert result is not None
    assert (result.state, result.exit_code) == (JobState.FAILED, 3)
    assert Path(f"{jobs[1].result_path}.handle").read_text() == "77_1\n"
    assert not jobs[0].result_path.exists()  # only the element named by the index ran


def test_a_manifest_with_runtimes_makes_the_wrapper_stop_the_whole_task(
    tmp_path: Path,
) -> None:
    """Grid Engine's h_rt kills only the job's group: the wrapper must stop the task's."""
    res = Resources(runtime=1)
    nap = f"60.{os.getpid()}{time.monotonic_ns() % 10**6}"  # a cmdline only this test has
    job = attrs.evolve(request(tmp_path, 0, argv=("bash", "-c", f"sleep {nap} & wait")),
                       resources=res)
    path = tmp_path / "logs" / job.task / "array.json"
    write_manifest(Array(job.task, res, (job,)), path, runtime=True)
    assert read_entry(path, 0)["runtime"] == 1
    started = time.monotonic()
    done = subprocess.run([*RUNNER, str(path), "0"], env=element_env(JOB_ID="5",
                          SGE_TASK_ID="1"), capture_output=True, text=True, timeout=30)
    assert time.monotonic() - started < 20
    result = read_result(job.result_path)
    assert result is not None
    assert result.state is JobState.TIMEOUT, result
    assert done.returncode == 128 + signal.SIGTERM
    assert "exceeded runtime" in result.reason
    left = [p for p in Path("/proc").iterdir() if p.name.isdigit()
            and _cmdline(p) == f"sleep\0{nap}\0".encode()]
    assert left == [], "the task's background child outlived the timeout"


def _cmdline(proc: Path) -> bytes:
    try:
        return (proc / "cmdline").read_bytes()
    except OSError:
        return b""


def test_the_runner_succeeds_with_its_element(tmp_path: Path) -> None:
    job = request(tmp_path, 0, argv=("echo", "hello"))
    done = subprocess.run([*RUNNER, str(manifest(tmp_path, job)), "0"], env=element_env(),
                          capture_output=True, timeout=30)
    assert done.returncode == 0
    result = read_result(job.result_path)
    assert result is not None
    assert result.state is JobState.SUCCEEDED
    assert job.stdout.read_text() == "hello\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [([], "usage: python -m gristmill.backends.arrays MANIFEST INDEX"),
     (["/nonexistent/array.json", "0"], "cannot read array element"),
     (["MANIFEST", "5"], "no element 5 (the array has 1)"),
     (["MANIFEST", "x"], "cannot read array element")],
)
def test_the_runner_explains_bad_arguments(tmp_path: Path, args: list[str], message: str) -> None:
    path = manifest(tmp_path, request(tmp_path, 0))
    argv = [str(path) if a == "MANIFEST" else a for a in args]
    done = subprocess.run([*RUNNER, *argv], env=element_env(), capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 2
    assert message in done.stderr


def _wait_for(path: Path, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not (path.exists() and path.read_text().strip()):
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


KILL_LINE = "slurmstepd-vm: error: *** JOB 78 ON vm CANCELLED AT 2026-11-29T09:16:34{} ***\n"


@pytest.mark.parametrize(
    ("log", "target", "state", "reason"),
    [
        # Slurm's time limit: the line first, then SIGTERM to every process of the job.
        (KILL_LINE.format(" DUE TO TIME LIMIT"), "runner", JobState.TIMEOUT, "time limit"),
        (KILL_LINE.format(" DUE TO TIME LIMIT"), "task", JobState.TIMEOUT, "time limit"),
        # scancel: the task may die of the signal before the wrapper sees its own.
        (KILL_LINE.format(""), "task", JobState.CANCELLED, "scancel"),
        (KILL_LINE.format(""), "runner", JobState.CANCELLED, "cancelled"),
        # Somebody else's SIGTERM: no line, the wrapper's verdict stands.
        ("", "task", JobState.FAILED, "SIGTERM"),
        ("", "runner", JobState.CANCELLED, "cancelled"),
    ],
)
def test_a_signalled_element_ends_as_slurms_log_says(
    tmp_path: Path, log: str, target: str, state: JobState, reason: str
) -> None:
    pidfile = tmp_path / "task.pid"
    job = request(tmp_path, 0, argv=("sh", "-c", f"echo $$ > {pidfile}; exec sleep 30"))
    path = manifest(tmp_path, job)
    if log:
        (path.parent / "slurm-78_0.out").write_text(log)
    runner = subprocess.Popen([*RUNNER, str(path), "0"], env=element_env("78", "0"),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        _wait_for(pidfile)
        pid = runner.pid if target == "runner" else int(pidfile.read_text())
        os.kill(pid, signal.SIGTERM)
        runner.communicate(timeout=20)
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.communicate()
    result = read_result(job.result_path)
    assert result is not None
    assert result.state is state
    assert reason in result.reason
    assert result.signal == signal.SIGTERM


def test_outside_slurm_the_wrappers_verdict_stands(tmp_path: Path) -> None:
    pidfile = tmp_path / "task.pid"
    job = request(tmp_path, 0, argv=("sh", "-c", f"echo $$ > {pidfile}; exec sleep 30"))
    path = manifest(tmp_path, job)
    (path.parent / "slurm-78_0.out").write_text(KILL_LINE.format(" DUE TO TIME LIMIT"))
    env = subprocess_env()  # no SLURM_ARRAY_* variables: e.g. Grid Engine
    runner = subprocess.Popen([*RUNNER, str(path), "0"], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE)
    try:
        _wait_for(pidfile)
        os.kill(runner.pid, signal.SIGTERM)
        runner.communicate(timeout=20)
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.communicate()
    result = read_result(job.result_path)
    assert result is not None
    assert result.state is JobState.CANCELLED
    assert not Path(f"{job.result_path}.handle").exists()
