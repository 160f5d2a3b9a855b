"""Which dask worker resources an attempt asks for, and whether any worker can ever hold it.

Dask resources are abstract counters a worker declares (``dask worker ADDRESS --nthreads
8 --resources "cores=8 memory=34359738368"``) and a task consumes while it runs; a task
asking more than every worker declares waits forever in dask's ``no-worker`` state. So
the dask backend asks for :data:`CORES` (the task's cores), :data:`MEMORY` (its ``mem``,
bytes) and :data:`GPUS`, and refuses up front what no worker can hold. A resource no
worker declares is not asked for (the cluster does not manage it), except GPUs: a GPU
task must not run where nobody said there is a GPU.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

import attrs

from gristmill.resources import Resources, format_memory

#: Names of the dask worker resources attempts ask for.
CORES, MEMORY, GPUS = "cores", "memory", "gpus"


@attrs.frozen
class WorkerInfo:
    """What one dask worker offers, as the scheduler reports it."""

    address: str
    resources: Mapping[str, float]
    nthreads: int


def workers_from_info(info: Mapping[str, Any]) -> list[WorkerInfo]:
    """The workers of a ``Client.scheduler_info()`` answer."""
    return [
        WorkerInfo(address, dict(w.get("resources") or {}), int(w.get("nthreads") or 0))
        for address, w in (info.get("workers") or {}).items()
    ]


def restrictions(
    resources: Resources, declared: Collection[str]
) -> tuple[dict[str, float], list[str]]:
    """The dask resources an attempt asks for, and those it would but no worker declares."""
    wanted = {CORES: resources.cores or 1, MEMORY: resources.mem or 0,
              GPUS: resources.gpus or 0}
    need: dict[str, float] = {}
    undeclared = []
    for name, amount in wanted.items():
        if not amount:
            continue
        if name in declared or name == GPUS:
            need[name] = amount
        else:
            undeclared.append(name)
    return need, undeclared


def _show(name: str, amount: float) -> str:
    return format_memory(int(amount)) if name == MEMORY and amount >= 1 else f"{amount:g}"


def refusal(
    task: str, need: Mapping[str, float], workers: Sequence[WorkerInfo], address: str
) -> str | None:
    """Why no worker can ever run an attempt needing ``need``; ``None`` when one can."""
    if not need or any(all(w.resources.get(r, 0) >= v for r, v in need.items())
                       for w in workers):
        return None
    asked = ", ".join(f"{r}={_show(r, v)}" for r, v in need.items())
    most = ", ".join(
        f"{r}={_show(r, max((w.resources.get(r, 0) for w in workers), default=0))}"
        for r in need
    )
    declare = " ".join(f"{r}={int(v)}" for r, v in need.items())
    return (f"task {task!r} asks for {asked}, more than any worker of the dask cluster at "
            f"{address} has (the most any worker declares: {most}); start a worker with "
            f"--resources \"{declare}\" or lower the task's resources (spec file, resources= "
            "or the command line)")
