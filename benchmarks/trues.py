"""The workflow the backend benchmarks share: ``n`` nodes of a task that runs ``/bin/true``.

``program=["true"]`` runs the executable itself, so a node costs the backend and the
engine, not a Python interpreter.
"""

from __future__ import annotations

import click

import gristmill as gm


@gm.task(program=["true"])
@click.option("--i", type=int, required=True)
def noop(i: int) -> None:
    """Runs /bin/true; the option is ignored by it."""


@gm.workflow
def trues(n: int) -> None:
    noop.map(i=range(n))
