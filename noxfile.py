"""Development sessions: ``nox -s tests lint typecheck`` (what CI runs) and ``nox -s bench``.

Sessions use the interpreter nox runs under and the standard library's venv;
pass ``--default-venv-backend uv`` to nox to use uv instead where it is installed.
"""

from __future__ import annotations

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
    """Run pytest (extra arguments are passed through: ``nox -s tests -- -k spec -x``)."""
    session.install("-e", ".[test]", "-e", EXAMPLE)
    # Only exit code 0 counts: 5 ("no tests collected") is a failure, not a pass.
    session.run("pytest", *session.posargs, success_codes=[0])


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
    session.install("-e", ".[test]", "-e", EXAMPLE)
    for script in scripts:
        session.run("python", str(script.relative_to(ROOT)), *session.posargs)
