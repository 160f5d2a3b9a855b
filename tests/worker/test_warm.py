"""Warm launches (``launch: fork``) on the local backend, with real processes.

Each node is a fork of one interpreter that imported the task once, yet a process of its
own: its own pid and process group, logs, limits and exit status; a crash of one node
touches neither the others nor the warm interpreter; an import error or a fork that
hangs fails the nodes with a message that says what to do.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from gm_testing import fixtures_importable, pid_gone

from gristmill.backends.base import JobHandle, JobRequest, JobStatus
from gristmill.backends.local.backend import LocalBackend
from gristmill.resources import Resources
from gristmill.states import JobState
from gristmill.worker.warm import START_TIMEOUT, task_args

ACT = "gm_fork_tasks:act"


def node(tmp: Path, key: str, args: Sequence[str], entry: str = ACT, *, fork: bool = True,
         **res: object) -> JobRequest:
    argv = (sys.executable, "-m", "gristmill.dsl.exec", entry, "-v", *args)
    return JobRequest(key=key, task="act", job_name=key, argv=argv,
                      resources=Resources(**res),  # type: ignore[arg-type]
                      stdout=tmp / "logs" / f"{key}.out", stderr=tmp / "logs" / f"{key}.err",
                      result_path=tmp / f"{key}.json", fork_entry=entry if fork else None,
                      env=(("GM_FORK_VALUE", key),))


def run_all(backend: LocalBackend, handles: Sequence[JobHandle],
            timeout: float = 60) -> dict[str, JobStatus]:
    final: dict[str, JobStatus] = {}
    deadline = time.monotonic() + timeout
    while len(final) < len(handles):
        assert time.monotonic() < deadline, f"still running: {set(handles) - set(final)}"
        backend.wait(1.0)
        for handle, status in backend.poll([h for h in handles if h.key not in final]).items():
            if status.state.finished:
                final[handle.key] = status
    return final


def fields(path: Path) -> dict[str, str]:
    first = path.read_text().splitlines()[0]
    return dict(part.split("=", 1) for part in first.split())


@pytest.fixture
def imports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The file each interpreter that imports gm_fork_tasks appends its pid to."""
    fixtures_importable(monkeypatch)
    path = tmp_path / "imports"
    monkeypatch.setenv("GM_FORK_IMPORTS", str(path))
    return path


@pytest.fixture
def backend(imports: Path) -> Iterator[LocalBackend]:
    instance = LocalBackend(max_cores=2, grace=0.5)
    yield instance
    instance.shutdown(cancel=True)


def test_task_args_are_what_follows_the_script_or_the_exec_module() -> None:
    assert task_args(["/bin/gm-act", "-v", "--i", "1"], ACT) == ["-v", "--i", "1"]
    assert task_args(["py", "-m", "gristmill.dsl.exec", ACT, "-v"], ACT) == ["-v"]


def test_each_node_is_a_process_of_its_own_forked_from_one_import(
    tmp_path: Path, backend: LocalBackend, imports: Path
) -> None:
    modes = ["ok", "exit3", "os_exit", "raise", "segv", "ok"]
    jobs = [node(tmp_path, f"n{i}", ["--mode", mode]) for i, mode in enumerate(modes)]
    final = run_all(backend, backend.submit(jobs))
    got = {key: (s.state, s.exit_code, s.signal) for key, s in final.items()}
    assert got == {
        "n0": (JobState.SUCCEEDED, 0, None), "n1": (JobState.FAILED, 3, None),
        "n2": (JobState.FAILED, 4, None), "n3": (JobState.FAILED, 1, None),
        "n4": (JobState.FAILED, None, signal.SIGSEGV), "n5": (JobState.SUCCEEDED, 0, None),
    }
    warm = imports.read_text().split()
    assert len(warm) == 1  # six nodes, one import
    logs = tmp_path / "logs"
    seen = {key: fields(logs / f"{key}.out") for key in ("n0", "n1", "n3", "n4", "n5")}
    for key, values in seen.items():
        assert values["pid"] == values["pgid"]  # leads its own process group
        assert values["pid"] != warm[0]
        assert values["ppid"] != warm[0]  # reparented to the supervisor, which reaps it
        assert values["env"] == key  # the job's environment
        assert values["seen"] == "False"  # module state a node changed is not the next's
    assert len({v["pid"] for v in seen.values()}) == 5
    assert (logs / "n0.err").read_text() == "to stderr ok\n"
    assert not (logs / "n2.out").exists()  # os._exit: its buffered print was never flushed
    assert "RuntimeError: the task failed" in (logs / "n3.err").read_text()
    assert final["n0"].cpu_time is not None
    assert final["n0"].peak_rss is not None


def test_limits_apply_to_a_forked_node_and_cancel_reaches_it(
    tmp_path: Path, backend: LocalBackend
) -> None:
    marker = tmp_path / "sleeping"
    jobs = [node(tmp_path, "hog", ["--mode", "hog"], mem="200M"),
            node(tmp_path, "slow", ["--mode", "sleep"], runtime=2),
            node(tmp_path, "cancelled", ["--mode", "sleep", "--out", str(marker)])]
    handles = backend.submit(jobs)
    deadline = time.monotonic() + 60
    while not marker.exists() or not marker.read_text():
        assert time.monotonic() < deadline, "the node to cancel never started"
        time.sleep(0.05)
    backend.cancel([handles[2]])
    final = run_all(backend, handles)
    assert final["hog"].state is JobState.OOM
    assert final["hog"].reason.startswith("exceeded memory limit 200M")
    assert final["slow"].state is JobState.TIMEOUT
    assert final["cancelled"].state is JobState.CANCELLED
    assert pid_gone(int(marker.read_text()), timeout=5.0)


def test_a_task_that_cannot_be_imported_fails_each_node_with_the_error(
    tmp_path: Path, backend: LocalBackend
) -> None:
    entry = "gm_fork_broken:never"
    jobs = [node(tmp_path, f"b{i}", [], entry) for i in range(3)]
    jobs.append(node(tmp_path, "after", ["--mode", "ok"]))
    final = run_all(backend, backend.submit(jobs))
    for key in ("b0", "b1", "b2"):
        assert final[key].state is JobState.FAILED
        assert final[key].reason == (
            "launch: fork: cannot import 'gm_fork_broken' for task 'gm_fork_broken:never': "
            "gm_fork_broken cannot be imported: a missing dependency")
        err = (tmp_path / "logs" / f"{key}.err").read_text()
        assert "Traceback" in err
        assert "a missing dependency" in err
    assert final["after"].state is JobState.SUCCEEDED  # the supervisor goes on


def test_a_fork_that_hangs_on_a_lock_fails_naming_launch_exec(
    tmp_path: Path, backend: LocalBackend
) -> None:
    entry = "gm_fork_threaded:pooled"
    start = time.monotonic()
    final = run_all(backend, backend.submit([node(tmp_path, "stuck", [], entry),
                                             node(tmp_path, "fine", ["--mode", "ok"])]))
    assert time.monotonic() - start < START_TIMEOUT + 30
    stuck = final["stuck"]
    assert stuck.state is JobState.FAILED
    assert "launch: fork" in stuck.reason
    assert "did not start within" in stuck.reason
    assert "pool-keeper" in stuck.reason  # the thread that was running
    assert "Use launch: exec for this task" in stuck.reason
    assert "launch: exec" in (tmp_path / "logs" / "stuck.err").read_text()
    assert final["fine"].state is JobState.SUCCEEDED  # another task's warm interpreter


def test_without_fork_entry_the_node_runs_its_argv(
    tmp_path: Path, backend: LocalBackend, imports: Path
) -> None:
    final = run_all(backend, backend.submit([node(tmp_path, "e", ["--mode", "ok"], fork=False)]))
    assert final["e"].state is JobState.SUCCEEDED
    values = fields(tmp_path / "logs" / "e.out")
    assert imports.read_text().split() == [values["pid"]]  # it imported the task itself
    assert os.getpid() != int(values["pid"])


def test_many_quick_nodes_all_succeed(tmp_path: Path, backend: LocalBackend) -> None:
    """A node may end before the supervisor has read that it started: it is then a zombie
    child of the supervisor that no attempt leads yet, and must be left for its attempt
    to reap (taken for a stray, it was reaped and its exit status lost)."""
    jobs = [node(tmp_path, f"q{i}", ["--mode", "ok", "--out", f"unused{i}"]) for i in range(150)]
    final = run_all(backend, backend.submit(jobs), timeout=120)
    assert {s.state for s in final.values()} == {JobState.SUCCEEDED}
