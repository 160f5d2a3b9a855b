"""Chunks: ``chunk: N`` packs up to N jobs of a task into one array element.

The packing and the manifest are checked as values; the element runner runs a chunk
for real in a child process (as a batch script would, with Slurm's array variables),
under the real worker wrapper; the poll side reads what that real run left (progress
file, result files) while a scripted scheduler answers for the element as a whole.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import pytest
from gm_testing import job_request, subprocess_env, wait_for

from gristmill.backends.base import WORKER, JobHandle, JobRequest, JobStatus
from gristmill.backends.batch.arrays import Array, fit_chunk, pack, write_manifest
from gristmill.backends.batch.backend import ArrayBackend
from gristmill.backends.batch.element import (
    CHUNK_MANIFEST_VERSION,
    progress_path,
    read_manifest,
)
from gristmill.backends.slurm.backend import STOP_RULES, SlurmBackend, job_log
from gristmill.resources import Resources
from gristmill.states import JobState
from gristmill.worker.result import read_result

RUNNER = [sys.executable, "-m", "gristmill.backends.batch.element"]
ONE = Resources(mem="1G", cores=1, runtime=60)


def chunked(tmp_path: Path, n: int, chunk: int, res: Resources = ONE,
            argv: tuple[str, ...] = ("true",)) -> list[JobRequest]:
    return [attrs.evolve(job_request(tmp_path, i, argv=argv), resources=res, chunk=chunk)
            for i in range(n)]


# -- packing ---------------------------------------------------------------------------------


def test_a_chunk_puts_up_to_n_jobs_in_each_element_and_splits_arrays_by_elements(
    tmp_path: Path,
) -> None:
    jobs = chunked(tmp_path, 2500, 100)
    arrays = list(pack(jobs, max_elements=10))
    assert [(a.size, len(a.jobs), a.per_element) for a in arrays] == [
        (10, 1000, 100), (10, 1000, 100), (5, 500, 100)]
    assert arrays[2].element(4) == tuple(jobs[2400:2500])
    assert arrays[0].runtime == 100 * 60  # the element asks for its jobs' runtimes added up


def test_jobs_of_other_chunks_or_resources_never_share_an_array(tmp_path: Path) -> None:
    plain = job_request(tmp_path, 0)
    jobs = [*chunked(tmp_path, 3, 2), plain,
            attrs.evolve(chunked(tmp_path, 1, 2)[0], resources=Resources(mem="2G", cores=1))]
    arrays = list(pack(jobs, max_elements=100))
    assert [(len(a.jobs), a.per_element, a.chunked) for a in arrays] == [
        (3, 2, True), (1, 1, False), (1, 2, True)]
    assert arrays[0].size == 2
    assert arrays[1].runtime is None  # one job per element: the task's runtime, unset


def test_a_chunk_shrinks_to_fit_the_partitions_time_limit(tmp_path: Path) -> None:
    asked: list[Resources] = []

    def ten_minutes(res: Resources) -> int | None:
        asked.append(res)
        return 600

    (array,) = pack(chunked(tmp_path, 50, 50), max_elements=100, time_limit=ten_minutes)
    assert (array.per_element, array.size, array.runtime) == (10, 5, 600)
    assert asked == [ONE]  # once per group
    assert fit_chunk(50, 7200, 600) == 1  # longer than the limit alone: one per element
    assert fit_chunk(50, None, 600) == 50  # no runtime to add up: the chunk stands
    assert fit_chunk(50, 60, None) == 50  # no limit (or it could not be read)
    plain = list(pack([job_request(tmp_path, 0)], max_elements=9, time_limit=ten_minutes))
    assert plain[0].per_element == 1
    assert len(asked) == 1


def test_a_chunk_manifest_is_version_3_with_each_jobs_own_limits(tmp_path: Path) -> None:
    jobs = chunked(tmp_path, 3, 2)
    (array,) = pack(jobs, max_elements=10)
    path = tmp_path / "m.json"
    write_manifest(array, path, runtime=False, scheduler={"job_env": "A", "task_env": "B"})
    header, *lines = path.read_bytes().splitlines(keepends=True)
    data = json.loads(header)
    assert data["version"] == CHUNK_MANIFEST_VERSION
    assert len(lines) == 2  # one line per element, read alone (the header has its offset)
    assert data["offsets"] == [0, len(lines[0])]
    first, scheduler = read_manifest(path, 0)
    assert [n["key"] for n in first["nodes"]] == [jobs[0].key, jobs[1].key]
    assert {(n["runtime"], n["mem"]) for n in first["nodes"]} == {(60, 2**30)}
    assert [n["key"] for n in read_manifest(path, 1)[0]["nodes"]] == [jobs[2].key]
    assert scheduler == {"job_env": "A", "task_env": "B"}


# -- the element runner, for real ------------------------------------------------------------


def slurm_block(log_dir: Path) -> dict[str, Any]:
    return {"job_env": SlurmBackend.id_env[0], "task_env": SlurmBackend.id_env[1],
            "stop_log": str(job_log(log_dir, "{id}")), "stop_rules": STOP_RULES}


def chunk_manifest(tmp_path: Path, jobs: Sequence[JobRequest]) -> Path:
    array = Array(jobs[0].task, jobs[0].resources, tuple(jobs), per_element=len(jobs))
    path = array.log_dir / "array.json"
    write_manifest(array, path, scheduler=slurm_block(array.log_dir))
    return path


def element_env(job: str = "77", task: str = "0") -> dict[str, str]:
    env = subprocess_env()
    env.update({"SLURM_ARRAY_JOB_ID": job, "SLURM_ARRAY_TASK_ID": task})
    return env



def terminate_once_started(path: Path, env: dict[str, str], pidfile: Path,
                           what: str) -> subprocess.Popen[bytes]:
    """Run element 0 of ``path``; SIGTERM it once ``pidfile`` names a started job."""
    runner = subprocess.Popen([*RUNNER, str(path), "0"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: pidfile.exists() and pidfile.read_text().strip() != "", 30, what)
        os.kill(runner.pid, signal.SIGTERM)
        runner.communicate(timeout=30)
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.communicate()
    return runner

def counting(tmp_path: Path, body: str = "") -> tuple[str, ...]:
    """argv of a job that appends its SEED to ``seen`` (the side effect counted), then
    runs ``body``."""
    seen = tmp_path / "seen"
    return ("sh", "-c", f'echo "$SEED $(pwd)" >> {seen}; {body}')


def seeded(jobs: list[JobRequest], cwd: Path) -> list[JobRequest]:
    return [attrs.evolve(job, env=(("SEED", str(i)),), cwd=cwd) for i, job in enumerate(jobs)]


def test_a_chunk_runs_its_jobs_one_after_another_each_with_its_own_record(
    tmp_path: Path,
) -> None:
    """Each job: own env and cwd, own logs and result, own runtime limit; one failing job
    does not stop the rest; every handle marker names the one element."""
    jobs = seeded(chunked(tmp_path, 4, 4, res=attrs.evolve(ONE, runtime=2)), tmp_path)
    jobs[1] = attrs.evolve(jobs[1], argv=counting(tmp_path, "echo out; exit 3"))
    jobs[2] = attrs.evolve(jobs[2], argv=counting(tmp_path, "exec sleep 30"))
    jobs[0] = attrs.evolve(jobs[0], argv=counting(tmp_path))
    jobs[3] = attrs.evolve(jobs[3], argv=counting(tmp_path), cwd=tmp_path / "logs")
    path = chunk_manifest(tmp_path, jobs)
    done = subprocess.run([*RUNNER, str(path), "0"], env=element_env(), capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "seen").read_text().splitlines() == [
        f"0 {tmp_path}", f"1 {tmp_path}", f"2 {tmp_path}", f"3 {tmp_path / 'logs'}"]
    results = [read_result(job.result_path, key=job.key) for job in jobs]
    assert [r.state if r else None for r in results] == [
        JobState.SUCCEEDED, JobState.FAILED, JobState.TIMEOUT, JobState.SUCCEEDED]
    assert results[1] is not None
    assert results[1].exit_code == 3
    assert jobs[1].stdout.read_text() == "out\n"
    assert {Path(f"{job.result_path}.handle").read_text() for job in jobs} == {"77_0\n"}
    progress = Path(progress_path(path.parent, "77_0")).read_text().split("\n")
    assert progress == [f"{m} {job.key}" for job in jobs for m in "SE"] + [""]


def test_a_requeued_chunk_skips_the_jobs_that_already_have_a_result(tmp_path: Path) -> None:
    jobs = seeded(chunked(tmp_path, 3, 3), tmp_path)
    jobs = [attrs.evolve(job, argv=counting(tmp_path)) for job in jobs]
    path = chunk_manifest(tmp_path, jobs)
    run = [*RUNNER, str(path), "0"]
    assert subprocess.run(run, env=element_env(), timeout=60).returncode == 0
    jobs[1].result_path.unlink()  # as if the requeued run had stopped while it ran
    assert subprocess.run(run, env=element_env(), timeout=60).returncode == 0
    seen = [line.split()[0] for line in (tmp_path / "seen").read_text().splitlines()]
    assert seen == ["0", "1", "2", "1"]  # only the job without a result ran again


KILL_LINE = "slurmstepd-vm: error: *** JOB 78 ON vm CANCELLED AT 2026-11-29T09:16:34{} ***\n"


@pytest.mark.parametrize(("why", "state"), [
    (" DUE TO TIME LIMIT", JobState.LOST),  # the element's limit, not the job's own
    ("", JobState.CANCELLED),  # scancel
    (" DUE TO PREEMPTION", None),  # Slurm decides: the result is removed
])
def test_a_signalled_chunk_stops_before_its_next_job(
    tmp_path: Path, why: str, state: JobState | None,
) -> None:
    pidfile = tmp_path / "task.pid"
    jobs = chunked(tmp_path, 3, 3)
    jobs[1] = attrs.evolve(jobs[1], argv=("sh", "-c", f"echo $$ > {pidfile}; exec sleep 30"))
    path = chunk_manifest(tmp_path, jobs)
    (path.parent / "slurm-78_0.out").write_text(KILL_LINE.format(why))
    runner = terminate_once_started(path, element_env("78", "0"), pidfile,
                                    "the second job to start")
    assert runner.returncode == 128 + signal.SIGTERM
    first = read_result(jobs[0].result_path, key=jobs[0].key)
    assert first is not None
    assert first.state is JobState.SUCCEEDED
    stopped = read_result(jobs[1].result_path, key=jobs[1].key)
    assert (stopped.state if stopped else None) is state
    assert not jobs[2].result_path.exists()
    assert not Path(f"{jobs[2].result_path}.handle").exists()  # never started


# -- the poll side ----------------------------------------------------------------------------


class Scripted(ArrayBackend):
    """An array backend whose scheduler answers what the test says for each element."""

    name = "scripted"
    settings = ()

    def __init__(self) -> None:
        super().__init__()
        self.elements: dict[str, JobStatus] = {}
        self.asked: list[list[str]] = []

    @property
    def max_array_size(self) -> int:
        return 1000

    def batch_script(self, manifest: Path) -> str:
        raise NotImplementedError

    def submit_argv(self, array: Array, script: Path) -> list[str]:
        raise NotImplementedError

    def parse_job_id(self, stdout: str) -> str:
        raise NotImplementedError

    def cancel_argv(self, ids: Sequence[str]) -> list[str]:
        return ["true"]

    def statuses(self, handles: Sequence[JobHandle]) -> Mapping[JobHandle, JobStatus]:
        self.asked.append([h.job_id for h in handles])
        return {h: self.elements[h.job_id] for h in handles if h.job_id in self.elements}


def test_each_job_of_a_chunk_has_its_own_state_as_the_element_runs(tmp_path: Path) -> None:
    """Queued until it starts, RUNNING while it runs, its own result as soon as written
    (the worker's numbers, never the element's), LOST when the element ended without it."""
    release = tmp_path / "release"
    jobs = chunked(tmp_path, 3, 3)
    jobs[1] = attrs.evolve(jobs[1], argv=("sh", "-c", f"until [ -e {release} ]; do sleep 0.05;"
                                          " done; exit 4"))
    jobs[2] = attrs.evolve(jobs[2], argv=("sleep", "30"))
    path = chunk_manifest(tmp_path, jobs)
    backend = Scripted()
    handles = [JobHandle("scripted", "77_0", job.key, str(job.result_path)) for job in jobs]
    backend.attach(handles)  # three handles of one element: a chunk
    backend.elements["77_0"] = JobStatus(JobState.RUNNING, host="vm")
    runner = subprocess.Popen([*RUNNER, str(path), "0"], env=element_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: backend.poll(handles).get(handles[1]) is not None, 30,
                 "the second job to show RUNNING")
        seen = backend.poll(handles)
        assert backend.asked[-1] == ["77_0"]  # the scheduler is asked once per element
        assert seen[handles[0]].state is JobState.SUCCEEDED  # before the element ended
        assert seen[handles[0]].usage_source in (WORKER, None)
        assert seen[handles[1]] == JobStatus(JobState.RUNNING, host="vm")
        assert handles[2] not in seen  # not started: unchanged (queued)
        release.touch()
        wait_for(lambda: handles[1] in backend.poll(handles)
                 and backend.poll(handles)[handles[1]].state.finished, 30,
                 "the second job's result")
        assert backend.poll(handles)[handles[1]].exit_code == 4
        wait_for(lambda: backend.poll(handles).get(handles[2]) is not None, 30,
                 "the third job to start")
        os.kill(runner.pid, signal.SIGKILL)  # the node died under the element
        runner.communicate(timeout=30)
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.communicate()
    backend.elements["77_0"] = JobStatus(JobState.NODE_FAIL, reason="NODE_FAIL",
                                         peak_rss=9 * 2**30, cpu_time=999.0, usage_source="x")
    ended = backend.poll(handles)
    assert ended[handles[0]].state is JobState.SUCCEEDED
    assert ended[handles[0]].peak_rss != 9 * 2**30  # the element's numbers are not a job's
    assert ended[handles[2]].state is JobState.NODE_FAIL  # run again as it was
    assert "77_0" in ended[handles[2]].reason
    backend.elements["77_0"] = JobStatus(JobState.TIMEOUT, reason="TIMEOUT")
    assert backend.poll(handles[2:])[handles[2]].state is JobState.LOST


def test_a_job_stopped_by_a_signal_waits_for_the_elements_end_which_explains_it(
    tmp_path: Path,
) -> None:
    """A node failure's SIGTERM reaches the job the element runs: not its cancellation."""
    pidfile = tmp_path / "pid"
    jobs = chunked(tmp_path, 2, 2)
    jobs[0] = attrs.evolve(jobs[0], argv=("sh", "-c", f"echo $$ > {pidfile}; exec sleep 30"))
    path = chunk_manifest(tmp_path, jobs)
    backend = Scripted()
    handles = [JobHandle("scripted", "77_0", job.key, str(job.result_path)) for job in jobs]
    backend.attach(handles)
    backend.elements["77_0"] = JobStatus(JobState.RUNNING)
    terminate_once_started(path, element_env(), pidfile, "the first job to start")
    assert read_result(jobs[0].result_path, key=jobs[0].key) is not None  # CANCELLED
    # No verdict while the element is still there: the stopped job shows as running.
    assert backend.poll(handles) == {handles[0]: JobStatus(JobState.RUNNING)}
    backend.elements["77_0"] = JobStatus(JobState.NODE_FAIL, reason="NODE_FAIL")
    ended = backend.poll(handles)
    assert [ended[h].state for h in handles] == [JobState.NODE_FAIL, JobState.NODE_FAIL]
    backend.elements["77_0"] = JobStatus(JobState.CANCELLED, reason="scancel")
    assert backend.poll(handles)[handles[0]].state is JobState.CANCELLED  # its own record


def test_plain_elements_are_polled_as_before(tmp_path: Path) -> None:
    backend = Scripted()
    handles = [JobHandle("scripted", f"5_{i}", f"k{i}", str(tmp_path / f"r{i}"))
               for i in range(3)]
    backend.elements = {"5_0": JobStatus(JobState.TIMEOUT), "5_1": JobStatus(JobState.RUNNING)}
    assert backend.poll(handles) == {handles[0]: JobStatus(JobState.TIMEOUT),
                                     handles[1]: JobStatus(JobState.RUNNING)}
    assert not list(tmp_path.iterdir())  # nothing read or written for them


def test_a_poll_of_running_chunks_reads_one_progress_file_per_element(tmp_path: Path) -> None:
    """1,000 jobs in 10 running elements: ten small reads, not a thousand stats."""
    backend = Scripted()
    handles = [JobHandle("scripted", f"9_{i // 100}", f"k{i}", str(tmp_path / f"r{i}"))
               for i in range(1000)]
    backend.attach(handles)
    backend.elements = {f"9_{e}": JobStatus(JobState.RUNNING) for e in range(10)}
    Path(progress_path(tmp_path, "9_3")).write_text("S k300\nE k300\nS k301\nS k3")
    began = time.perf_counter()
    seen = backend.poll(handles)
    took = time.perf_counter() - began
    # k300 ended but its result is gone (a requeue removed it): it is not done; the line
    # still being written (k3...) is not read yet.
    assert seen == {handles[300]: JobStatus(JobState.RUNNING),
                    handles[301]: JobStatus(JobState.RUNNING)}
    assert took < 1.0
    with open(progress_path(tmp_path, "9_3"), "a") as fh:
        fh.write("02\n")
    assert handles[302] in backend.poll(handles)


# -- launch: fork inside a chunk ---------------------------------------------------------------

ACT = "gm_fork_tasks:act"


def fork_chunk(tmp_path: Path, modes: Sequence[str], *, entry: str | None = ACT,
               runtime: int = 60) -> list[JobRequest]:
    """Nodes of gm_fork_tasks' ``act`` (one ``--mode`` each) in one chunk, forked when
    ``entry`` is given (the manifest's ``fork``), each with its own ``--out``."""
    res = attrs.evolve(ONE, runtime=runtime)
    return [attrs.evolve(
        job_request(tmp_path, i, task="act", res=res, argv=(
            sys.executable, "-m", "gristmill.dsl.exec", entry or ACT, "--mode", mode,
            "--out", str(tmp_path / f"out{i}"))),
        chunk=len(modes), fork_entry=entry) for i, mode in enumerate(modes)]


def run_element(path: Path, imports: Path,
                timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = element_env()
    env["GM_FORK_IMPORTS"] = str(imports)
    return subprocess.run([*RUNNER, str(path), "0"], env=env, capture_output=True, text=True,
                          timeout=timeout)


def printed_pid(job: JobRequest) -> int:
    """The pid the node printed (``pid=... pgid=...``) and checks that it led its own group."""
    fields = dict(word.split("=", 1) for word in job.stdout.read_text().split()[:3])
    assert fields["pid"] == fields["pgid"]  # its own process group
    return int(fields["pid"])


def test_a_fork_chunk_imports_its_task_once_and_forks_each_node(tmp_path: Path) -> None:
    """Five nodes from one warm interpreter: one import, five pids, five records; a node
    that exits 3 and one that raises leave the others (and the interpreter) alone."""
    modes = ["ok", "exit3", "ok", "raise", "ok"]
    jobs = fork_chunk(tmp_path, modes)
    path = chunk_manifest(tmp_path, jobs)
    assert all(n["fork"] == ACT for n in read_manifest(path, 0)[0]["nodes"])
    imports = tmp_path / "imports"
    done = run_element(path, imports)
    assert done.returncode == 0, done.stderr
    assert len(imports.read_text().split()) == 1  # the chunk imported the task once
    results = [read_result(job.result_path, key=job.key) for job in jobs]
    assert [(r.state, r.exit_code) if r else None for r in results] == [
        (JobState.SUCCEEDED, 0), (JobState.FAILED, 3), (JobState.SUCCEEDED, 0),
        (JobState.FAILED, 1), (JobState.SUCCEEDED, 0)]
    pids = [printed_pid(job) for job in jobs]
    assert len(set(pids)) == 5
    assert int(imports.read_text()) not in pids  # forks of the importer, not it
    # Each node starts from the module as imported: no node sees what another changed.
    assert all("seen=False" in job.stdout.read_text() for job in jobs)
    assert [job.stderr.read_text().splitlines()[0] for job in jobs] == [
        f"to stderr {mode}" for mode in modes]
    assert "RuntimeError: the task failed" in jobs[3].stderr.read_text()
    assert all(r is not None and r.cpu_time is not None for r in results)
    progress = Path(progress_path(path.parent, "77_0")).read_text().split("\n")
    assert progress == [f"{m} {job.key}" for job in jobs for m in "SE"] + [""]
    assert {Path(f"{job.result_path}.handle").read_text() for job in jobs} == {"77_0\n"}


def test_without_fork_in_the_manifest_each_node_imports_its_task(tmp_path: Path) -> None:
    """An entry without ``fork`` (what runners before it wrote) runs its argv: exec."""
    jobs = fork_chunk(tmp_path, ["ok", "ok", "ok"], entry=None)
    path = chunk_manifest(tmp_path, jobs)
    assert not any("fork" in n for n in read_manifest(path, 0)[0]["nodes"])
    imports = tmp_path / "imports"
    done = run_element(path, imports)
    assert done.returncode == 0, done.stderr
    assert len(imports.read_text().split()) == 3
    assert sorted(map(int, imports.read_text().split())) == sorted(map(printed_pid, jobs))


def test_a_fork_node_keeps_its_own_runtime_and_memory_limits(tmp_path: Path) -> None:
    """A node over its runtime is a TIMEOUT, one over its memory an OOM; the next runs."""
    jobs = fork_chunk(tmp_path, ["sleep", "hog", "ok"], runtime=3)
    jobs[1] = attrs.evolve(jobs[1], resources=attrs.evolve(jobs[1].resources, mem="200M"))
    jobs = [attrs.evolve(job, resources=jobs[1].resources) if i == 0 else job
            for i, job in enumerate(jobs)]
    path = chunk_manifest(tmp_path, jobs)
    done = run_element(path, tmp_path / "imports")
    assert done.returncode == 0, done.stderr
    results = [read_result(job.result_path, key=job.key) for job in jobs]
    assert [r.state if r else None for r in results] == [
        JobState.TIMEOUT, JobState.OOM, JobState.SUCCEEDED]
    assert results[1] is not None
    assert (results[1].peak_rss or 0) > 200 * 2**20
    assert len((tmp_path / "imports").read_text().split()) == 1


def test_a_task_that_cannot_be_imported_fails_every_fork_node_of_the_chunk(
    tmp_path: Path,
) -> None:
    jobs = fork_chunk(tmp_path, ["ok"] * 3, entry="gm_fork_broken:never")
    path = chunk_manifest(tmp_path, jobs)
    began = time.monotonic()
    done = run_element(path, tmp_path / "imports", timeout=60)
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - began < 30  # no hang
    results = [read_result(job.result_path, key=job.key) for job in jobs]
    assert {r.state if r else None for r in results} == {JobState.FAILED}
    for job, result in zip(jobs, results):
        assert result is not None
        assert "gm_fork_broken cannot be imported" in result.reason
        assert "ImportError: gm_fork_broken cannot be imported" in job.stderr.read_text()


def test_a_fork_that_hangs_is_killed_naming_launch_exec(tmp_path: Path) -> None:
    """A lock held by a thread of the warm interpreter at the fork: the node never starts;
    it fails within the start timeout, and the rest of the chunk with it (they would hang
    the same way), not after each one's."""
    jobs = fork_chunk(tmp_path, ["ok"] * 3, entry="gm_fork_threaded:pooled")
    path = chunk_manifest(tmp_path, jobs)
    began = time.monotonic()
    done = run_element(path, tmp_path / "imports", timeout=90)
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - began < 60
    results = [read_result(job.result_path, key=job.key) for job in jobs]
    assert {r.state if r else None for r in results} == {JobState.FAILED}
    for job, result in zip(jobs, results):
        assert result is not None
        assert "launch: exec" in result.reason
        assert "pool-keeper" in job.stderr.read_text()
