"""Commands run when a run ends (``--on-success`` / ``--on-failure``), for real."""

from __future__ import annotations

import json
import time
from pathlib import Path
from types import ModuleType

from click.testing import CliRunner
from gm_testing import pid_gone

from gristmill.cli.app import main
from gristmill.engine.hooks import Hooks, hook_env, run_hook
from gristmill.engine.runner import run_workflow

RECORD = 'printf "%s %s %s %s %s\\n" "$GRISTMILL_STATUS" "$GRISTMILL_DONE" "$GRISTMILL_FAILED" '\
    '"$GRISTMILL_NODES" "$GRISTMILL_RUN_DIR" >> {out}'


def test_the_environment_names_the_run_and_its_counts(tmp_path: Path) -> None:
    env = hook_env(tmp_path, "failed", "wf", {"DONE": 3, "FAILED": 1, "UPSTREAM_FAILED": 2})
    assert env["GRISTMILL_RUN_DIR"] == str(tmp_path)
    assert (env["GRISTMILL_STATUS"], env["GRISTMILL_WORKFLOW"]) == ("failed", "wf")
    assert (env["GRISTMILL_NODES"], env["GRISTMILL_DONE"], env["GRISTMILL_FAILED"]) == (
        "6", "3", "3")
    assert json.loads(env["GRISTMILL_COUNTS"]) == {"DONE": 3, "FAILED": 1, "UPSTREAM_FAILED": 2}


def test_the_hook_for_the_outcome_runs_and_its_exit_code_is_returned(tmp_path: Path) -> None:
    def call(hooks: Hooks, status: str) -> int | None:
        return run_hook(hooks, run_dir=tmp_path, status=status, workflow="wf",
                        counts={"DONE": 1})

    hooks = Hooks(on_success="exit 0", on_failure="exit 7")
    assert call(hooks, "succeeded") == 0
    assert call(hooks, "failed") == 7
    assert call(hooks, "cancelled") == 7
    assert call(Hooks(), "failed") is None


def test_a_hook_that_outlives_its_timeout_is_killed_with_its_children(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    hooks = Hooks(on_success=f"sleep 60 & echo $! > {pids}; wait")
    began = time.monotonic()
    assert run_hook(hooks, run_dir=tmp_path, status="succeeded", workflow="wf", counts={},
                    timeout=1.0) is None
    assert time.monotonic() - began < 30
    assert pid_gone(int(pids.read_text()), 10)


def test_run_and_resume_run_the_hooks_they_are_given(et: ModuleType, tmp_path: Path) -> None:
    out = tmp_path / "hook.out"
    failed = CliRunner().invoke(main, [
        "run", "engine_tasks:one_exit", "--code", "3", "--run-dir", str(tmp_path / "runs"),
        "--on-failure", RECORD.format(out=out), "--on-success", f"echo wrong >> {out}"])
    assert failed.exit_code == 1, failed.output
    run_dir = (tmp_path / "runs" / "latest").resolve()
    assert out.read_text() == f"failed 0 1 1 {run_dir}\n"
    broken = CliRunner().invoke(main, ["resume", str(run_dir), "--on-failure", "exit 9"])
    assert broken.exit_code == 1, broken.output  # a failing hook changes nothing
    assert out.read_text() == f"failed 0 1 1 {run_dir}\n"


def test_spec_hooks_run_but_are_not_run_again_from_the_stored_spec(
    et: ModuleType, tmp_path: Path
) -> None:
    out = tmp_path / "hook.out"
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"workflow:\n  on_success: '{RECORD.format(out=out)}'\n")
    first = run_workflow(et.one_exit(code=0), run_dir=tmp_path / "runs", spec=spec)
    assert first.ok
    assert out.read_text() == f"succeeded 1 0 1 {first.run_dir}\n"
    again = CliRunner().invoke(main, ["resume", str(first.run_dir)])
    assert again.exit_code == 0, again.output
    assert out.read_text() == f"succeeded 1 0 1 {first.run_dir}\n"  # data, never code
    given = CliRunner().invoke(main, ["resume", str(first.run_dir), "--spec", str(spec)])
    assert given.exit_code == 0, given.output
    assert out.read_text().count("succeeded") == 2
