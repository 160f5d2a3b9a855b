"""Development sessions: ``nox -s tests lint typecheck`` (CI), ``bench``, ``slurm``, ``sge``,
``jobmon``, ``report``.

``GM_HIDE_SCHEDULERS=1 nox -s tests`` runs the tests as on a machine without Slurm or
Grid Engine: every scheduler client (tests/data/scheduler_commands.txt) is hidden from
their PATH. CI (.ci/run) runs it so; the cluster sessions still see the clients.

Sessions use the interpreter nox runs under and the standard library's venv;
pass ``--default-venv-backend uv`` to nox to use uv instead where it is installed.
"""

from __future__ import annotations

import os
import shlex
import shutil
import tempfile
from pathlib import Path

import nox

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["tests", "lint", "typecheck"]

ROOT = Path(__file__).parent
EXAMPLE = "examples/seiir_like"
LINTED = ("src", "tests", "benchmarks", "examples", "noxfile.py")
SCHEDULER_COMMANDS = ROOT / "tests" / "data" / "scheduler_commands.txt"


def _scheduler_clients() -> frozenset[str]:
    """The names in tests/data/scheduler_commands.txt (the tests' guard reads it too)."""
    lines = SCHEDULER_COMMANDS.read_text().splitlines()
    return frozenset(s for s in (x.strip() for x in lines) if s and not s.startswith("#"))


def _path_without(names: frozenset[str], search: str, views: Path) -> str:
    """``search`` (a PATH) with each directory that holds one of ``names`` replaced by a
    directory of links to all its other entries, made under ``views``.

    The clients usually sit in /usr/bin beside everything else the tests run (sh, git,
    python), so the directory itself cannot be dropped from PATH.
    """
    parts = []
    for number, folder in enumerate(search.split(os.pathsep)):
        try:
            entries = os.listdir(folder or ".")
        except OSError:
            parts.append(folder)
            continue
        if names.isdisjoint(entries):
            parts.append(folder)
            continue
        view = views.absolute() / str(number)
        view.mkdir(parents=True)
        for entry in entries:
            if entry not in names:
                (view / entry).symlink_to(Path(folder or ".", entry).absolute())
        parts.append(str(view))
    return os.pathsep.join(parts)


def install_example(session: nox.Session) -> None:
    """The example builds with gristmill's own build hook, so its build needs this gristmill
    (and hatchling, from the test extra): no build isolation, which would look for them on
    an index."""
    session.install("--no-build-isolation", "-e", EXAMPLE)


@nox.session
def tests(session: nox.Session) -> None:
    """Run pytest (extra arguments are passed through: ``nox -s tests -- -k spec -x``).

    The dask extra is installed: its backend's tests start a real scheduler and workers; so is
    covid-shared, whose layer's tests run a pipeline that reads a location hierarchy with pandas.
    With ``GM_HIDE_SCHEDULERS=1`` no Slurm or Grid Engine client is on the tests' PATH
    (tests/test_scheduler_guard.py then checks that none can be found).
    """
    session.install("-e", ".[test,dask,covid-shared]")
    install_example(session)
    if os.environ.get("GM_HIDE_SCHEDULERS") != "1":
        # Only exit code 0 counts: 5 ("no tests collected") is a failure, not a pass.
        session.run("pytest", *session.posargs, success_codes=[0])
        return
    names = _scheduler_clients()
    with tempfile.TemporaryDirectory(prefix="gristmill-path-") as views:
        search = _path_without(names, os.environ.get("PATH", ""), Path(views))
        left = sorted(n for n in names if shutil.which(n, path=search))
        if left:
            session.error(f"could not hide the scheduler clients {left} from PATH")
        session.log("scheduler clients hidden from the tests' PATH")
        session.run("pytest", *session.posargs, success_codes=[0], env={"PATH": search})


@nox.session
def reliability(session: nox.Session) -> None:
    """The slow fault-injection trials of tests/reliability (``-m reliability``; ~10 min).

    ``nox -s tests`` runs the rest of tests/reliability. Cases that mount file systems
    (a disk that fills or turns read-only) need root and skip without it.
    """
    session.install("-e", ".[test]")
    session.run("pytest", "-m", "reliability", "tests/reliability", *session.posargs,
                success_codes=[0])


@nox.session
def lint(session: nox.Session) -> None:
    """ruff over the library, its tests, the benchmarks and the example."""
    paths = [p for p in LINTED if (ROOT / p).exists()]  # a fresh clone may lack benchmarks/
    session.install("ruff")
    session.run("ruff", "check", *paths, *session.posargs)


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict over src/gristmill (files and settings from pyproject.toml)."""
    session.install("-e", ".", "mypy", "types-PyYAML", "hatchling")  # build/hooks.py uses it
    session.run("mypy", "--strict", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """Run every benchmarks/bench_*.py script but bench_peers.py (its own session, which
    installs the peers); each prints ratios against its own floor."""
    scripts = sorted(p for p in (ROOT / "benchmarks").glob("bench_*.py")
                     if p.name != "bench_peers.py")
    if not scripts:
        session.skip("no benchmarks/bench_*.py scripts")
    session.install("-e", ".[test,dask]")
    install_example(session)
    for script in scripts:
        session.run("python", str(script.relative_to(ROOT)), *session.posargs)


@nox.session
def bench_peers(session: nox.Session) -> None:
    """Same workloads on gristmill, Snakemake, Dask and Parsl (benchmarks/bench_peers.py).

    Optional, never part of CI: it installs the peers from PyPI into this session's own
    venv. Extra arguments go to the script (``nox -s bench_peers -- --quick``).
    """
    session.install("-e", ".", "snakemake", "dask[distributed]", "parsl")
    session.run("python", "benchmarks/bench_peers.py", *session.posargs)


@nox.session
def jobmon(session: nox.Session) -> None:
    """The jobmon backend against a real local jobmon server (SQLite).

    The tests start the server with ci/jobmon/start.sh, which builds its own venv
    (jobmon-server 3.2.2 cannot share one with jobmon-client 3.3) on first use.
    """
    session.install("-e", ".[test,jobmon]")
    install_example(session)
    session.run("pytest", "-m", "jobmon", "tests/backends/test_jobmon.py", *session.posargs,
                success_codes=[0])
    session.run("pytest", "tests/backends/test_jobmon_translate.py", *session.posargs,
                success_codes=[0])


CHROMIUM = "/usr/bin/chromium"


@nox.session
def report(session: nox.Session) -> None:
    """The HTML report opened in headless Chromium (``pytest -m browser``).

    Uses Debian's ``chromium``, installed here with apt-get when missing (as root, as CI
    runs), driven by playwright's client; playwright never downloads a browser of its own.
    Screenshots go to test-artifacts/report (``GM_TEST_ARTIFACTS`` moves them).
    """
    if not Path(CHROMIUM).exists():
        session.run("apt-get", "update", "-q", external=True)
        session.run("apt-get", "install", "-y", "-q", "--no-install-recommends", "chromium",
                    external=True, env={"DEBIAN_FRONTEND": "noninteractive"})
    session.install("-e", ".[test,browser]")
    install_example(session)
    session.run("pytest", "-m", "browser", "tests/report/test_browser.py", *session.posargs,
                success_codes=[0], env={"PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD": "1"})


def _exported_env(text: str) -> dict[str, str]:
    """The ``export K=V`` lines of a cluster kit's start.sh output as a dict; others ignored."""
    env: dict[str, str] = {}
    for line in text.splitlines():
        words = shlex.split(line, comments=True)
        if len(words) == 2 and words[0] == "export" and "=" in words[1]:
            key, _, value = words[1].partition("=")
            env[key] = value
    return env


def _on_cluster(session: nox.Session, kit: str, variable: str, keep: str) -> None:
    """Start ci/KIT/start.sh (as root), run ``pytest -m KIT tests/backends``, stop it.

    start.sh logs to stderr and prints the client environment (``export VARIABLE=...``)
    on stdout; ``KEEP=1`` in the environment leaves the cluster running afterwards.
    """
    started = session.run("bash", f"ci/{kit}/start.sh", external=True, silent=True,
                          stderr=None)
    if started is None:  # --install-only: nothing was run
        return
    env = _exported_env(str(started))
    if variable not in env:
        session.error(f"ci/{kit}/start.sh printed no 'export {variable}=...' line:\n{started}")
    session.env.update(env)
    session.log(f"{kit} test cluster up, {variable}={env[variable]}")
    try:
        session.run("pytest", "-m", kit, "tests/backends", *session.posargs, success_codes=[0])
    finally:
        if os.environ.get(keep) != "1":
            session.run("bash", f"ci/{kit}/stop.sh", external=True)


@nox.session
def slurm(session: nox.Session) -> None:
    """The Slurm backend on a single-node Slurm (ci/slurm/start.sh, as root).

    start.sh reads its knobs (SLURM_KIT_MEM_ENFORCE, SLURM_KIT_ACCOUNTING, ...) from the
    environment. SLURM_KIT_KEEP=1 leaves the cluster running (faster edit-test loops).
    """
    session.install("-e", ".[test]")
    install_example(session)
    _on_cluster(session, "slurm", "SLURM_CONF", "SLURM_KIT_KEEP")


@nox.session
def sge(session: nox.Session) -> None:
    """The Grid Engine backend on a single-node Grid Engine (ci/sge/start.sh, as root).

    SGE_KEEP=1 leaves the cluster running afterwards.
    """
    session.install("-e", ".[test]")
    _on_cluster(session, "sge", "SGE_ROOT", "SGE_KEEP")
