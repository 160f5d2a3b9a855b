"""Settings given to ``gristmill run`` (flags, the spec file) reach the engine and the jobs.

Each case runs a real workflow on the local backend and reads the evidence its tasks left
(files they append to, start/end stamps), the run's store, and the job requests the
backend was handed, not only the engine's counts.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from click.testing import CliRunner, Result
from gm_testing import attempts, fixtures_importable, max_overlap

import gristmill.engine.runner
from gristmill.backends.base import JobHandle, JobRequest
from gristmill.backends.local.backend import LocalBackend
from gristmill.cli.app import main


def cli(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def lines(path: Path) -> list[str]:
    return sorted(path.read_text().split()) if path.exists() else []


def latest(root: Path) -> Path:
    return (root / "latest").resolve()


class Recording(LocalBackend):
    """The local backend, keeping every job request it was handed."""

    handed: list[JobRequest]

    def submit(self, jobs: Sequence[JobRequest]) -> Sequence[JobHandle]:
        self.handed.extend(jobs)
        return super().submit(jobs)


@pytest.fixture
def handed(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[JobRequest]]:
    """The job requests the runs of this test handed their (local) backend."""
    requests: list[JobRequest] = []
    made: list[Recording] = []

    def make(name: str, **options: Any) -> Recording:
        assert name == "local", name
        backend = Recording(**options)
        backend.handed = requests
        made.append(backend)
        return backend

    monkeypatch.setattr(gristmill.engine.runner, "make_backend", make)
    yield requests
    for backend in made:
        backend.shutdown(cancel=True)


# -- fail_fast -----------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["flag", "spec"])
def test_fail_fast_from_the_flag_or_the_spec_submits_no_independent_branch(
    et: ModuleType, tmp_path: Path, where: str
) -> None:
    """``gated_failure`` is not fail_fast itself: the flag or the spec makes it so.

    Its appenders wait only for a gate released after the failure, so without fail_fast
    they run (the next test); with it they are never submitted.
    """
    out, marker = tmp_path / "out", tmp_path / "marker"
    spec = tmp_path / "spec.yaml"
    spec.write_text("workflow: {fail_fast: true}\n")
    given = ["--fail-fast"] if where == "flag" else ["--spec", str(spec)]
    result = cli("run", "engine_tasks:gated_failure", "--path", str(out), "--marker",
                 str(marker), "--pidfile", str(tmp_path / "gate"), *given,
                 "--run-dir", str(tmp_path / "runs"))
    assert result.exit_code == 1, result.output
    assert "fail_fast: stopping after the first failure" in result.stderr
    assert not out.exists()  # neither appender ran
    tried = {a.task for a in attempts(latest(tmp_path / "runs"))}
    assert "append_line" not in tried  # nor was submitted
    assert "exit_with" in tried


def test_no_fail_fast_on_the_command_line_beats_the_spec(et: ModuleType, tmp_path: Path) -> None:
    out, marker = tmp_path / "out", tmp_path / "marker"
    spec = tmp_path / "spec.yaml"
    spec.write_text("workflow: {fail_fast: true}\n")
    result = cli("run", "engine_tasks:gated_failure", "--path", str(out), "--marker",
                 str(marker), "--pidfile", str(tmp_path / "gate"), "--pause", "0.2",
                 "--spec", str(spec), "--no-fail-fast", "--run-dir", str(tmp_path / "runs"))
    assert result.exit_code == 1, result.output
    assert "fail_fast: stopping" not in result.stderr
    assert lines(out) == ["20", "21"]  # the independent branch ran to its end


# -- resources from the command line -------------------------------------------------------------


def test_cores_queue_and_project_flags_reach_every_job_and_the_store(
    et: ModuleType, tmp_path: Path, handed: list[JobRequest]
) -> None:
    stamps = tmp_path / "stamps"
    result = cli("run", "engine_tasks:spans", "--stamps", str(stamps), "--n", "3",
                 "--pause", "0.3", "--cores", "2", "--queue", "long.q", "--project", "proj_x",
                 "--max-cores", "2", "--run-dir", str(tmp_path / "runs"))
    assert result.exit_code == 0, result.output
    assert len(handed) == 3
    assert {(j.resources.cores, j.resources.queue, j.resources.project) for j in handed} == {
        (2, "long.q", "proj_x")}
    stored = attempts(latest(tmp_path / "runs"))
    assert [(a.resources["cores"], a.resources["queue"], a.resources["project"])
            for a in stored] == [(2, "long.q", "proj_x")] * 3
    assert max_overlap(stamps) == 1  # 2 cores each on a 2-core backend: one at a time


def test_without_the_cores_flag_the_same_tasks_share_the_backends_cores(
    et: ModuleType, tmp_path: Path, handed: list[JobRequest]
) -> None:
    """The control of the test above: the one-at-a-time came from ``--cores``."""
    stamps = tmp_path / "stamps"
    result = cli("run", "engine_tasks:spans", "--stamps", str(stamps), "--n", "2",
                 "--pause", "3", "--max-cores", "2", "--run-dir", str(tmp_path / "runs"))
    assert result.exit_code == 0, result.output
    assert {(j.resources.cores, j.resources.queue, j.resources.project) for j in handed} == {
        (1, None, None)}
    assert max_overlap(stamps) == 2


# -- chunk ---------------------------------------------------------------------------------------


def test_chunk_reaches_the_requests_of_its_task_only_on_a_backend_that_packs(
    et: ModuleType, tmp_path: Path, handed: list[JobRequest]
) -> None:
    """The local backend declares no chunks: its requests carry 1 whatever --chunk says,
    and the run is stored with it, so resume applies it again."""
    stamps = tmp_path / "stamps"
    result = cli("run", "engine_tasks:spans", "--stamps", str(stamps), "--n", "3",
                 "--chunk", "span=50", "--run-dir", str(tmp_path / "runs"))
    assert result.exit_code == 0, result.output
    assert {j.chunk for j in handed} == {1}
    from gristmill.store.db import Store

    store = Store.open(latest(tmp_path / "runs"), readonly=True)
    try:
        assert store.meta()["settings"]["chunk"] == {"span": 50}
    finally:
        store.close()


@pytest.mark.parametrize(("given", "message"), [
    ("span", "--chunk 'span': write it as TASK=N"),
    ("span=0", "--chunk 'span=0': '0' is not a whole number of at least 1"),
    ("span=x", "--chunk 'span=x': 'x' is not a whole number of at least 1"),
    ("nosuch=5", "--chunk nosuch=5: the workflow has no task 'nosuch'"),
])
def test_a_bad_chunk_flag_is_refused_before_anything_runs(
    et: ModuleType, tmp_path: Path, given: str, message: str
) -> None:
    result = cli("run", "engine_tasks:spans", "--stamps", str(tmp_path / "s"), "--n", "1",
                 "--chunk", given, "--run-dir", str(tmp_path / "runs"))
    assert result.exit_code != 0
    assert message in result.output + result.stderr


# -- launch: fork ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("given", "forked"), [([], True), (["--launch", "act=exec"], False),
                                               (["--launch", "act=fork"], True)])
def test_launch_from_the_decorator_or_the_flag_reaches_the_jobs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, handed: list[JobRequest],
    given: list[str], forked: bool,
) -> None:
    """``act`` says ``launch="fork"``; ``--launch act=exec`` beats it: each node then
    imports the task itself, where forks share one import."""
    fixtures_importable(monkeypatch)
    imports = tmp_path / "imports"
    monkeypatch.setenv("GM_FORK_IMPORTS", str(imports))
    result = cli("run", "gm_fork_tasks:acts", "--n", "3", *given, "--max-cores", "2",
                 "--run-dir", str(tmp_path / "runs"))
    assert result.exit_code == 0, result.output
    assert {j.fork_entry for j in handed} == {"gm_fork_tasks:act" if forked else None}
    others = [pid for pid in lines(imports) if int(pid) != os.getpid()]  # not the CLI's own
    assert len(others) == (1 if forked else 3)


@pytest.mark.parametrize(("flag", "message"), [
    ("act=spawn", "launch: 'spawn' is not a launch mode; use one of exec, fork"),
    ("act", "--launch 'act': write TASK=MODE, e.g. --launch fit=fork"),
    ("fit=fork", "fit"),
])
def test_a_bad_launch_flag_is_refused_before_anything_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, flag: str, message: str
) -> None:
    fixtures_importable(monkeypatch)
    result = cli("run", "gm_fork_tasks:acts", "--n", "1", "--launch", flag,
                 "--run-dir", str(tmp_path / "runs"))
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not (tmp_path / "runs").exists()
