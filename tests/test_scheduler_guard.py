"""The suite's guard (tests/conftest.py): a unit test cannot reach a real scheduler client.

The guard stubs every name of tests/data/scheduler_commands.txt. These tests check that
the stubs are what a test finds, that a stub fails and is recorded, that the list names
every client the Slurm and Grid Engine backends run, and, when the suite runs as on a
machine without a scheduler (``GM_HIDE_SCHEDULERS=1 nox -s tests``), that nothing but
the stubs answers to those names.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from gm_testing import SCHEDULER_COMMANDS

import gristmill
from gristmill.backends.batch.commands import CommandRunner
from gristmill.errors import BackendError

BACKENDS = Path(gristmill.__file__).parent / "backends"


def test_every_scheduler_client_on_path_is_the_guards_stub() -> None:
    guard = {Path(str(shutil.which(name))).parent for name in SCHEDULER_COMMANDS}
    assert len(guard) == 1
    assert next(iter(guard)).name.startswith("scheduler_guard")
    assert {"sbatch", "squeue", "sacct", "scancel", "qsub", "qstat", "qacct", "qdel"} <= set(
        SCHEDULER_COMMANDS)


@pytest.mark.parametrize("command", ["sbatch", "qdel", "sacct"])
def test_a_scheduler_client_not_faked_is_a_stub_that_fails_and_is_recorded(command: str) -> None:
    log = Path(os.environ["GM_SCHEDULER_GUARD_LOG"])
    found = shutil.which(command)
    assert found is not None
    assert "scheduler_guard" in found  # ahead of any real client on PATH
    with pytest.raises(BackendError):
        CommandRunner(attempts=1).run([command, "1"])
    done = subprocess.run([command, "--version"], capture_output=True, text=True, check=False)
    assert done.returncode == 127
    assert "reached the real scheduler command" in done.stderr
    assert log.read_text().split("\n")[:2] == [f"{command} 1", f"{command} --version"]
    log.write_text("")  # this test reached it on purpose; the guard's teardown stays quiet


def commands_run_by(package: Path) -> dict[str, str]:
    """Program name -> where, for every command line the modules of ``package`` spell out:
    a list display starting with a lowercase word (``["squeue", "--noheader", ...]``) and
    every ``*_command = "..."`` assignment (``cancel_command = "scancel"``)."""
    found: dict[str, str] = {}
    for module in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(module.read_text(), str(module))):
            word = None
            if isinstance(node, ast.List) and len(node.elts) > 1:
                first = node.elts[0]
                if isinstance(first, ast.Constant) and isinstance(first.value, str):
                    word = first.value
            elif isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and any(
                    isinstance(t, ast.Name) and t.id.endswith("command") for t in node.targets):
                word = node.value.value if isinstance(node.value.value, str) else None
            if word is not None and re.fullmatch(r"[a-z]+", word):
                found.setdefault(word, f"{module.relative_to(BACKENDS)}:{node.lineno}")
    return found


@pytest.mark.parametrize("scheduler", ["slurm", "sge"])
def test_the_guard_stubs_every_client_a_scheduler_backend_runs(scheduler: str) -> None:
    run = commands_run_by(BACKENDS / scheduler)
    assert len(run) >= 4, run  # the scan sees the backend's command lines at all
    assert {name: where for name, where in run.items() if name not in SCHEDULER_COMMANDS} == {}


@pytest.mark.skipif(os.environ.get("GM_HIDE_SCHEDULERS") != "1",
                    reason="the scheduler clients are hidden only with GM_HIDE_SCHEDULERS=1")
def test_with_the_clients_hidden_only_the_stubs_answer() -> None:
    stubs = Path(str(shutil.which("sbatch"))).parent
    search = os.pathsep.join(
        p for p in os.environ["PATH"].split(os.pathsep) if p and Path(p) != stubs)
    assert {n: shutil.which(n, path=search) for n in SCHEDULER_COMMANDS
            if shutil.which(n, path=search)} == {}
