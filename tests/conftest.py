"""Shared fixtures: importable task modules, subprocess environments, an installed package.

``tests/fixtures`` holds plain task and workflow modules (importable, never
installed) and ``gm_fixture_pkg``, a tiny package that one session-scoped
fixture installs with pip into a temporary prefix, so that the console-script
tests see real entry-point metadata and real scripts on ``PATH``.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
if str(FIXTURES) not in sys.path:
    sys.path.insert(0, str(FIXTURES))

from gm_testing import (  # noqa: E402 -- needs FIXTURES on sys.path
    FIXTURE_PKG,
    SCHEDULER_COMMANDS,
    SRC,
    InstalledPackage,
    fixtures_importable,
)


@pytest.fixture(scope="session")
def installed_pkg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InstalledPackage]:
    """``gm_fixture_pkg`` installed with pip into a private prefix, once per session.

    The prefix's ``bin`` goes first on ``PATH`` and its site-packages on
    ``sys.path`` and ``PYTHONPATH``, so the scripts and their entry-point
    metadata are found exactly as after ``pip install`` into the environment,
    without touching the environment itself.
    """
    prefix = tmp_path_factory.mktemp("gm_fixture_prefix")
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
               "--disable-pip-version-check", "--no-warn-script-location", "--prefix",
               str(prefix)]
    if importlib.util.find_spec("hatchling") is not None:
        command.append("--no-build-isolation")  # offline and fast
    start = time.perf_counter()
    # Build from a copy so that no build artefact lands in the source tree.
    source = tmp_path_factory.mktemp("gm_fixture_src") / "gm_fixture_pkg"
    shutil.copytree(FIXTURE_PKG, source, ignore=shutil.ignore_patterns("__pycache__"))
    done = subprocess.run(
        [*command, str(source)], capture_output=True, text=True, check=False, timeout=300
    )
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        pytest.fail(f"pip could not install the fixture package:\n{done.stdout}\n{done.stderr}")
    # Where pip put things depends on the install scheme (Debian adds local/, dist-packages).
    script = "gm-fixture-pkg-fx-echo"
    installed = {p.name: p for p in prefix.rglob("*") if p.name in (script, "gm_fixture_pkg")}
    assert installed.keys() == {script, "gm_fixture_pkg"}, sorted(prefix.rglob("*"))[:20]
    site_packages = installed["gm_fixture_pkg"].parent
    bin_dir = installed[script].parent
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
        mp.setenv(
            "PYTHONPATH",
            os.pathsep.join(
                filter(None, [str(site_packages), str(SRC), os.environ.get("PYTHONPATH")])
            ),
        )
        mp.syspath_prepend(str(site_packages))
        from gristmill.dsl import scripts as entrypoints

        entrypoints.refresh()
        yield InstalledPackage(prefix, bin_dir, site_packages, seconds)
    entrypoints.refresh()


_GUARD_STUB = """#!/bin/sh
echo "$(basename "$0") $*" >> "${GM_SCHEDULER_GUARD_LOG:-/dev/null}"
echo "gristmill tests: a unit test reached the real scheduler command $(basename "$0"); \
fake it (see tests/backends/test_slurm.py)" >&2
exit 127
"""


@pytest.fixture(scope="session")
def _scheduler_guard_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    bin_dir = tmp_path_factory.mktemp("scheduler_guard")
    for name in SCHEDULER_COMMANDS:
        stub = bin_dir / name
        stub.write_text(_GUARD_STUB)
        stub.chmod(0o755)
    return bin_dir


@pytest.fixture(autouse=True)
def _no_real_scheduler(
    request: pytest.FixtureRequest, _scheduler_guard_dir: Path, tmp_path_factory:
    pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch,
) -> Iterator[None]:
    """Outside the cluster sessions, every scheduler client on PATH is a stub that fails.

    A unit test fakes each command it calls, ahead of these on PATH; one it forgot to fake
    reaches the stub, which records it, and the test fails at teardown, whether or not a
    real Slurm or Grid Engine is installed on the machine.
    """
    if any(request.node.get_closest_marker(m) for m in ("slurm", "sge")):
        yield
        return
    log = tmp_path_factory.mktemp("guard") / "calls"
    monkeypatch.setenv("PATH", f"{_scheduler_guard_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("GM_SCHEDULER_GUARD_LOG", str(log))
    yield
    if log.exists() and log.read_text().strip():
        pytest.fail(f"the test ran real scheduler commands it should have faked:\n"
                    f"{log.read_text()}")


@pytest.fixture(autouse=True)
def _reset_loguru() -> Iterator[None]:
    """Undo what a task or CLI command run in-process did to loguru's global state.

    Task commands and ``gristmill`` itself remove every sink, add one on the
    stderr they saw (CliRunner's, closed after the call) and enable gristmill's
    records; later tests must not log into a closed stream.
    """
    yield
    from loguru import logger

    logger.remove()
    logger.disable("gristmill")


@pytest.fixture
def engines() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Engines (``gristmill`` processes) a test started; any still running at the end are
    killed and reaped, so a failing test never leaves one behind or hangs."""
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=30)


@pytest.fixture
def et(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The engine's fixture tasks (tests/fixtures/engine_tasks.py), importable here and,
    through PYTHONPATH, in every task process."""
    fixtures_importable(monkeypatch)
    import engine_tasks

    return engine_tasks


#: A process that takes a run directory's lock (as an engine does) and holds it.
HOLD = (
    "import sys; from pathlib import Path; from gristmill.store.lock import RunLock\n"
    "with RunLock(Path(sys.argv[1])):\n"
    "    print('held', flush=True)\n"
    "    sys.stdin.read()\n"
)


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process holding the lock of ``tmp_path`` until its stdin closes."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(tmp_path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "held\n"
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)


@pytest.fixture
def victim() -> Iterator[subprocess.Popen[bytes]]:
    """An innocent process of this user, which a forged lock file names."""
    proc = subprocess.Popen(["sleep", "60"])
    yield proc
    proc.kill()
    proc.wait()
