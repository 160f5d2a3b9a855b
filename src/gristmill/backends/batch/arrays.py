"""Job arrays shared by the scheduler backends (Slurm, Grid Engine).

Ready jobs of one task that ask for the same resources are packed into one
array submission. Each array gets a small manifest file (JSON) that maps the
array index to the attempt's command, logs and result path; the batch script
runs ``python -m gristmill.backends.batch.element MANIFEST INDEX``
(:mod:`.element`), which looks its element up and runs it under the worker
wrapper. Indices always start at 0, so a site's ``MaxArraySize`` (a limit on the
largest *index*) only bounds the number of elements per array, never which nodes
can be packed.

A task with ``chunk: N`` (:attr:`JobRequest.chunk`) puts up to N jobs in each element
(:attr:`Array.per_element`): the element runs them one after another, each under the
worker wrapper with its own files and limits, and asks the scheduler for one job's
cores and memory and for the sum of their runtimes, capped by the partition's time
limit (the chunk shrinks until it fits). Such a manifest is version 3: a header line,
then one line ``{"nodes": [job entry, ...]}`` per element (:func:`chunk_manifest`;
docs/chunks.md). A job of a ``launch: fork`` task carries ``fork`` in its entry: the
element runs such jobs as forks of one warm interpreter (docs/launch.md).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from gristmill.backends.base import JobRequest
from gristmill.backends.batch.element import CHUNK_MANIFEST_VERSION, MANIFEST_VERSION
from gristmill.backends.isolated import boot
from gristmill.resources import Resources
from gristmill.worker.atomic import write_atomic

#: A scheduler's time limit for jobs that ask for these resources (their partition's or
#: queue's), in seconds; None when it has none or it cannot be read.
TimeLimit = Callable[[Resources], "int | None"]


@attrs.frozen
class Array:
    """One array submission: jobs of one task with identical resources.

    Element ``i`` runs ``jobs[i * per_element : (i + 1) * per_element]``, one after
    another; ``per_element`` is 1 unless the task asked for chunks.
    """

    task: str
    resources: Resources
    jobs: tuple[JobRequest, ...]
    per_element: int = 1
    #: The partition's limit this array was fitted into (caps :attr:`runtime`).
    time_limit: int | None = None

    @property
    def size(self) -> int:
        """How many elements the array has (what the scheduler is asked for)."""
        return -(-len(self.jobs) // self.per_element)

    @property
    def chunked(self) -> bool:
        return self.per_element > 1

    def element(self, index: int) -> tuple[JobRequest, ...]:
        """The jobs element ``index`` (from 0) runs."""
        return self.jobs[index * self.per_element : (index + 1) * self.per_element]

    @property
    def runtime(self) -> int | None:
        """The runtime one element asks for: its jobs' runtimes added up, within the limit."""
        one = self.resources.runtime
        if one is None or not self.chunked:
            return one
        total = one * self.per_element
        return total if self.time_limit is None else min(total, max(one, self.time_limit))

    @property
    def log_dir(self) -> Path:
        """Where the array's manifest and scheduler-side logs go (the task's log folder)."""
        return self.jobs[0].stdout.parent


def fit_chunk(chunk: int, runtime: int | None, limit: int | None) -> int:
    """How many jobs of ``runtime`` seconds one element may run within ``limit`` (≥ 1)."""
    if chunk <= 1 or runtime is None or limit is None or runtime <= 0:
        return max(1, chunk)
    return max(1, min(chunk, limit // runtime))


def pack(jobs: Sequence[JobRequest], *, max_elements: int,
         time_limit: TimeLimit | None = None) -> Iterator[Array]:
    """Group by (task, resources, chunk) keeping first-seen order, then split at
    ``max_elements`` elements of up to ``chunk`` jobs each.

    ``time_limit`` is asked only for chunked groups: the chunk shrinks so that its jobs'
    runtimes added up fit in the partition's limit.
    """
    if max_elements < 1:
        raise ValueError(f"max_elements must be at least 1, got {max_elements}")
    groups: dict[tuple[str, Resources, int], list[JobRequest]] = {}
    for job in jobs:
        groups.setdefault((job.task, job.resources, job.chunk), []).append(job)
    for (task, resources, chunk), members in groups.items():
        limit = time_limit(resources) if chunk > 1 and time_limit is not None else None
        per_element = fit_chunk(chunk, resources.runtime, limit)
        step = max_elements * per_element
        for start in range(0, len(members), step):
            yield Array(task, resources, tuple(members[start : start + step]), per_element,
                        limit)


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
    if array.chunked:
        write_atomic(path, chunk_manifest(array, scheduler))
        return
    entries = [_entry(job, runtime=runtime, mem=False) for job in array.jobs]
    data = {"version": MANIFEST_VERSION, "task": array.task, "jobs": entries,
            "scheduler": dict(scheduler or {})}
    write_atomic(path, json.dumps(data))


def chunk_manifest(array: Array, scheduler: Mapping[str, Any] | None) -> bytes:
    """A chunked array's manifest (version 3): a header line, then one line per element.

    An element reads the header and its own line only (the header holds each line's
    offset): 100,000 jobs make a manifest of tens of megabytes, which every element
    parsing whole would pay for in time and in memory its job never asked for. Each job
    carries its own limits, enforced by the wrapper per job: the scheduler's apply to
    the whole element (the sum of the runtimes; one job's memory).
    """
    lines = [json.dumps({"nodes": [_entry(job, runtime=True, mem=True)
                                   for job in array.element(i)]}).encode() + b"\n"
             for i in range(array.size)]
    offsets, at = [], 0
    for line in lines:
        offsets.append(at)
        at += len(line)
    header = json.dumps({"version": CHUNK_MANIFEST_VERSION, "task": array.task,
                         "scheduler": dict(scheduler or {}), "offsets": offsets})
    return b"".join([header.encode(), b"\n", *lines])


def _entry(job: JobRequest, *, runtime: bool, mem: bool) -> dict[str, Any]:
    """One job's manifest entry (``mem`` only in chunks: the wrapper's own limit; so is
    ``fork``, the task's ``module:qualname`` under ``launch: fork``)."""
    entry: dict[str, Any] = {
        "key": job.key,
        "runtime": job.resources.runtime if runtime else None,
        "argv": list(job.argv),
        "stdout": str(job.stdout),
        "stderr": str(job.stderr),
        "result": str(job.result_path),
        "env": dict(job.env),
        "cwd": str(job.cwd) if job.cwd is not None else None,
    }
    if mem and job.resources.mem is not None:
        entry["mem"] = job.resources.mem
    if mem and job.fork_entry is not None:
        # A chunk forks such jobs from one warm interpreter; without the key (or in an
        # element runner that does not read it) a job starts as its argv says.
        entry["fork"] = job.fork_entry
    return entry


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
