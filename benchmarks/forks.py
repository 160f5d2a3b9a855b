"""The workflows bench_fork.py runs: ``n`` nodes of a Python task that does nothing.

``noop_exec`` starts a fresh interpreter per node (its console script, or ``python -m
gristmill.dsl.exec``); ``noop_fork`` is the same task with ``launch="fork"``.
"""

from __future__ import annotations

import click

import gristmill as gm


@gm.task(mem="100M")
@click.option("--i", type=int, required=True)
def noop_exec(i: int) -> None:
    """Does nothing, from a fresh interpreter."""


@gm.task(mem="100M", launch="fork")
@click.option("--i", type=int, required=True)
def noop_fork(i: int) -> None:
    """Does nothing, forked from a warm interpreter."""


@gm.workflow
def execs(n: int) -> None:
    noop_exec.map(i=range(n))


@gm.workflow
def forks(n: int) -> None:
    noop_fork.map(i=range(n))
