"""The gristmill side of bench_peers.py: tasks and workflows of the compared shapes.

A module of its own so that a peer's child process never imports gristmill.
"""

from __future__ import annotations

import click

import gristmill as gm


@gm.task(program=["true"], mem="10M")
@click.option("--i", type=int, required=True)
def noop(i: int) -> None:
    """Runs /bin/true; the option is ignored by it."""


@gm.task(program=["true"], mem="10M")
@click.option("--n", type=int, required=True)
def gather(n: int) -> None:
    """The fan-in."""


@gm.task(program=["true"], mem="10M")
@click.option("--item", type=int, required=True)
def step(item: int) -> None:
    """One individually called node."""


@gm.workflow
def fan(n: int) -> None:
    """A map of n nodes and one fan-in after all of them."""
    gather(n=n, after=noop.map(i=range(n)))


@gm.workflow
def tree(n: int) -> None:
    """n individual calls, node i after node (i - 1) // 2: one edge each, depth log2(n)."""
    nodes = [step(item=0)]
    for i in range(1, n):
        nodes.append(step(item=i, after=nodes[(i - 1) // 2]))


@gm.workflow
def chain(n: int) -> None:
    """n individual calls, each after the previous one (bench_record.py's shape)."""
    previous = step(item=0)
    for i in range(1, n):
        previous = step(item=i, after=previous)


@gm.workflow
def independent(n: int) -> None:
    """n independent ``true`` tasks (the per-task overhead workload)."""
    noop.map(i=range(n))
