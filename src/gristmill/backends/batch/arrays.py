"""Job arrays shared by the scheduler backends (Slurm, Grid Engine).

Ready jobs of one task that ask for the same resources are packed into one
array submission. Each array gets a small manifest file (JSON) that maps the
array index to the attempt's command, logs and result path; the batch script
runs ``python -m gristmill.backends.batch.element MANIFEST INDEX``
(:mod:`.element`), which looks its element up and runs it under the worker
wrapper. Indices always start at 0, so a site's ``MaxArraySize`` (a limit on the
largest *index*) only bounds the number of elements per array, never which nodes
can be packed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from gristmill.backends.base import JobRequest
from gristmill.backends.batch.element import MANIFEST_VERSION
from gristmill.backends.isolated import boot
from gristmill.resources import Resources
from gristmill.worker.atomic import write_atomic


@attrs.frozen
class Array:
    """One array submission: jobs of one task with identical resources."""

    task: str
    resources: Resources
    jobs: tuple[JobRequest, ...]

    @property
    def size(self) -> int:
        return len(self.jobs)

    @property
    def log_dir(self) -> Path:
        """Where the array's manifest and scheduler-side logs go (the task's log folder)."""
        return self.jobs[0].stdout.parent


def pack(jobs: Sequence[JobRequest], *, max_elements: int) -> Iterator[Array]:
    """Group by (task, resources) keeping first-seen order, then split at ``max_elements``."""
    if max_elements < 1:
        raise ValueError(f"max_elements must be at least 1, got {max_elements}")
    groups: dict[tuple[str, Resources], list[JobRequest]] = {}
    for job in jobs:
        groups.setdefault((job.task, job.resources), []).append(job)
    for (task, resources), members in groups.items():
        for start in range(0, len(members), max_elements):
            yield Array(task, resources, tuple(members[start : start + max_elements]))


def throttle(max_concurrent: int | None, size: int) -> int | None:
    """The ``%N`` / ``-tc N`` throttle for an array, or None when it would not bind."""
    if max_concurrent is None or max_concurrent >= size:
        return None
    return max(1, max_concurrent)


def write_manifest(
    array: Array, path: Path, *, runtime: bool = False,
    scheduler: Mapping[str, Any] | None = None,
) -> None:
    """Write the manifest atomically (the scheduler may start an element at once).

    With ``runtime`` each entry carries its task's runtime and the worker wrapper
    enforces it itself (TIMEOUT, SIGTERM then SIGKILL to the task's process group),
    for schedulers whose own limit kills only the job's process group. ``scheduler``
    is what the element runner needs to know of the scheduler (see :mod:`.element`).
    """
    entries = [
        {
            "key": job.key,
            "runtime": job.resources.runtime if runtime else None,
            "argv": list(job.argv),
            "stdout": str(job.stdout),
            "stderr": str(job.stderr),
            "result": str(job.result_path),
            "env": dict(job.env),
            "cwd": str(job.cwd) if job.cwd is not None else None,
        }
        for job in array.jobs
    ]
    data = {"version": MANIFEST_VERSION, "task": array.task, "jobs": entries,
            "scheduler": dict(scheduler or {})}
    write_atomic(path, json.dumps(data))


def element_command(python: str, manifest: Path, index_var: str, first: int = 0) -> str:
    """The batch-script line that runs one element (``index_var`` is a shell variable).

    ``first`` is the scheduler's first array index: Grid Engine numbers tasks from 1,
    so its element ``$SGE_TASK_ID`` is manifest entry ``$((SGE_TASK_ID - 1))``.
    """
    import shlex

    index = f"${{{index_var}}}" if first == 0 else f"$(( {index_var} - {int(first)} ))"
    return (
        f"exec {shlex.quote(python)} -I -c {shlex.quote(element_boot())} "
        f"{shlex.quote(str(manifest))} \"{index}\""
    )


def element_boot() -> str:
    """The ``python -I -c`` program that runs an array element (see :mod:`..isolated`)."""
    return boot("gristmill.backends.batch.element")
