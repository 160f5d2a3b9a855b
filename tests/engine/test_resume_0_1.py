"""Resuming a run directory that gristmill 0.1 (the flat layout) wrote.

``tests/data/run_0_1`` is the working directory of one real run of
``gm_resume_flow:pipeline`` (tests/fixtures/gm_resume_flow.py) by gristmill 0.1,
commit 5da27b4, on the local backend, made with::

    cd run_0_1 && PYTHONPATH=tests/fixtures GM_RESUME_FAIL_PART=1 \\
        gristmill run gm_resume_flow:pipeline --version v1 --run-dir pipeline

It holds ``pipeline/2026_12_07.01`` (the run: ``gristmill.db``, ``logs/``,
``run_metadata.yaml``, the stale ``.gristmill.lock``), ``pipeline/latest`` (a relative
link to it) and ``work/`` (what the tasks wrote). ``prepare``, ``produce_0`` and
``produce_2`` succeeded, ``produce_1`` failed (exit 3), and the fan-in ``combine`` is
UPSTREAM_FAILED. Every stored attempt names files under the directory it was made in
(``/tmp/fixture-build/run_0_1``, gone) and a command ``.../python3 -m gristmill.exec
gm_resume_flow:...``, the module path of 0.1.

The tests copy it, leave ``GM_RESUME_FAIL_PART`` unset (the fix) and run ``gristmill``
of the code under test in a subprocess, as a user who upgraded would. Never regenerate
the fixture with newer code: its point is that an older gristmill wrote it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from gm_resume_flow import FAIL_VAR
from gm_testing import attempts, subprocess_env

from gristmill.store.db import Store

FIXTURE = Path(__file__).resolve().parents[1] / "data" / "run_0_1"
RUN = Path("pipeline", "2026_12_07.01")
#: ``gristmill`` run as this interpreter (the console-script shim may be another one).
GRISTMILL = [sys.executable, "-c", "import sys; from gristmill.cli.app import main; main()"]
#: What gristmill 0.1's run left in ``work/side_effects.log`` (one line per attempt).
FIRST_RUN = ["prepare", "produce 1", "produce 0", "produce 2"]


@pytest.fixture
def old_run(tmp_path: Path) -> Path:
    """A copy of the fixture (links kept as links); the tests run ``gristmill`` in it."""
    root = tmp_path / "run_0_1"
    shutil.copytree(FIXTURE, root, symlinks=True)
    return root


def gristmill(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = subprocess_env()
    env.pop(FAIL_VAR, None)
    return subprocess.run([*GRISTMILL, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120, check=False)


def counts(run_dir: Path) -> dict[tuple[str, str], int]:
    store = Store.open(run_dir, readonly=True)  # the full check passes on a 0.1 store too
    try:
        return store.counts()
    finally:
        store.close()


def identities(run_dir: Path) -> list[str]:
    store = Store.open(run_dir, readonly=True)
    try:
        return store.identities()
    finally:
        store.close()


def side_effects(root: Path) -> list[str]:
    return (root / "work" / "side_effects.log").read_text().splitlines()


def test_the_fixture_is_the_failed_run_of_gristmill_0_1(old_run: Path) -> None:
    """Guards the premises of the resume test against an edit of the fixture."""
    assert counts(old_run / RUN) == {
        ("prepare", "DONE"): 1, ("produce", "DONE"): 2, ("produce", "FAILED"): 1,
        ("combine", "UPSTREAM_FAILED"): 1,
    }
    assert side_effects(old_run) == FIRST_RUN
    argvs = [a.argv for a in attempts(old_run / RUN)]
    assert len(argvs) == 4
    assert all(argv[1:3] == ("-m", "gristmill.exec") for argv in argvs)
    assert (old_run / "pipeline" / "latest").resolve() == (old_run / RUN).resolve()


def test_status_reads_the_store_of_0_1(old_run: Path) -> None:
    done = gristmill(old_run, "status", "pipeline/latest")
    assert done.returncode == 0, done.stderr
    assert "produce_1 (task produce, attempt 1): FAILED — exit code 3" in done.stdout
    assert "-m gristmill.exec gm_resume_flow:produce" in done.stdout  # "rerun by hand"


def test_resume_reruns_only_what_did_not_finish(old_run: Path) -> None:
    """DONE nodes stay done (no new side effect, one attempt each); the failed node runs
    again as attempt 2 and the fan-in runs once, under the new module paths."""
    before = identities(old_run / RUN)
    done = gristmill(old_run, "resume", "pipeline/latest")
    assert done.returncode == 0, done.stderr
    assert "succeeded (DONE=5)" in done.stdout
    assert side_effects(old_run) == [*FIRST_RUN, "produce 1", "combine"]
    assert (old_run / "work" / "combined.txt").read_text() == "5\n"  # 0 + 1 + 4

    run_dir = old_run / RUN
    assert counts(run_dir) == {("prepare", "DONE"): 1, ("produce", "DONE"): 3,
                               ("combine", "DONE"): 1}
    # The same nodes: 0.1 and this version give the workflow the same identities.
    assert identities(run_dir) == before
    tried = {(a.job_name, a.attempt): a for a in attempts(run_dir)}
    assert sorted(tried) == [("combine", 1), ("prepare", 1), ("produce_0", 1), ("produce_1", 1),
                             ("produce_1", 2), ("produce_2", 1)]
    assert tried["produce_1", 1].state == "FAILED"
    for key in [("produce_1", 2), ("combine", 1)]:
        assert tried[key].state == "SUCCEEDED"
        assert tried[key].argv[1:3] == ("-m", "gristmill.dsl.exec")
    assert "status: succeeded" in (run_dir / "run_metadata.yaml").read_text()
