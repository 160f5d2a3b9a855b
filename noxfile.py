"""Development sessions: ``nox -s tests lint typecheck`` (CI), ``bench``, ``slurm``, ``sge``,
``jobmon``.

Sessions use the interpreter nox runs under and the standard library's venv;
pass ``--default-venv-backend uv`` to nox to use uv instead where it is installed.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import nox

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["tests", "lint", "typecheck"]

ROOT = Path(__file__).parent
EXAMPLE = "examples/seiir_like"
LINTED = ("src", "tests", "benchmarks", "examples", "noxfile.py")


@nox.session
def tests(session: nox.Session) -> None:
    """Run pytest (extra arguments are passed through: ``nox -s tests -- -k spec -x``).

    The dask extra is installed: its backend's tests start a real scheduler and workers; so is
    covid-shared, whose layer's tests run a pipeline that reads a location hierarchy with pandas.
    """
    session.install("-e", ".[test,dask,covid-shared]", "-e", EXAMPLE)
    # Only exit code 0 counts: 5 ("no tests collected") is a failure, not a pass.
    session.run("pytest", *session.posargs, success_codes=[0])


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
    session.install("-e", ".", "mypy", "types-PyYAML")
    session.run("mypy", "--strict", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """Run every benchmarks/bench_*.py script; each prints ratios against its own floor."""
    scripts = sorted((ROOT / "benchmarks").glob("bench_*.py"))
    if not scripts:
        session.skip("no benchmarks/bench_*.py scripts")
    session.install("-e", ".[test,dask]", "-e", EXAMPLE)
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
    session.install("-e", ".[test,jobmon]", "-e", EXAMPLE)
    session.run("pytest", "-m", "jobmon", "tests/backends/test_jobmon.py", *session.posargs,
                success_codes=[0])
    session.run("pytest", "tests/backends/test_jobmon_translate.py", *session.posargs,
                success_codes=[0])


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
    session.install("-e", ".[test]", "-e", EXAMPLE)
    _on_cluster(session, "slurm", "SLURM_CONF", "SLURM_KIT_KEEP")


@nox.session
def sge(session: nox.Session) -> None:
    """The Grid Engine backend on a single-node Grid Engine (ci/sge/start.sh, as root).

    SGE_KEEP=1 leaves the cluster running afterwards.
    """
    session.install("-e", ".[test]")
    _on_cluster(session, "sge", "SGE_ROOT", "SGE_KEEP")
