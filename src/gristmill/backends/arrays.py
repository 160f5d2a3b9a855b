"""Job arrays shared by the scheduler backends (Slurm, Grid Engine).

Ready jobs of one task that ask for the same resources are packed into one
array submission. Each array gets a small manifest file (JSON) that maps the
array index to the attempt's command, logs and result path; the batch script
runs ``python -m gristmill.backends.arrays MANIFEST INDEX``, which looks its
element up and runs it under the worker wrapper. Indices always start at 0, so
a site's ``MaxArraySize`` (a limit on the largest *index*) only bounds the
number of elements per array, never which nodes can be packed.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import attrs

from gristmill.backends.base import JobRequest, JobState
from gristmill.errors import BackendError
from gristmill.resources import Resources

MANIFEST_VERSION = 1


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


def write_manifest(array: Array, path: Path, *, runtime: bool = False) -> None:
    """Write the manifest atomically (the scheduler may start an element at once).

    With ``runtime`` each entry carries its task's runtime and the worker wrapper
    enforces it itself (TIMEOUT, SIGTERM then SIGKILL to the task's process group),
    for schedulers whose own limit kills only the job's process group.
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
    data = json.dumps({"version": MANIFEST_VERSION, "task": array.task, "jobs": entries})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp.{os.getpid()}")
    tmp.write_text(data)
    os.replace(tmp, path)


def read_entry(path: str | os.PathLike[str], index: int) -> dict[str, Any]:
    with open(path) as fh:
        data = json.load(fh)
    if data.get("version") != MANIFEST_VERSION:
        raise ValueError(f"{path}: manifest version {data.get('version')} is not supported")
    jobs = data["jobs"]
    if not 0 <= index < len(jobs):
        raise IndexError(f"{path}: no element {index} (the array has {len(jobs)})")
    entry: dict[str, Any] = jobs[index]
    return entry


def element_command(python: str, manifest: Path, index_var: str, first: int = 0) -> str:
    """The batch-script line that runs one element (``index_var`` is a shell variable).

    ``first`` is the scheduler's first array index: Grid Engine numbers tasks from 1,
    so its element ``$SGE_TASK_ID`` is manifest entry ``$((SGE_TASK_ID - 1))``.
    """
    import shlex

    index = f"${{{index_var}}}" if first == 0 else f"$(( {index_var} - {int(first)} ))"
    return (
        f"exec {shlex.quote(python)} -m gristmill.backends.arrays "
        f"{shlex.quote(str(manifest))} \"{index}\""
    )


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m gristmill.backends.arrays MANIFEST INDEX``: run one array element."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2:
        sys.stderr.write("usage: python -m gristmill.backends.arrays MANIFEST INDEX\n")
        return 2
    try:
        entry = read_entry(args[0], int(args[1]))
    except (OSError, ValueError, IndexError, KeyError) as exc:
        sys.stderr.write(f"gristmill: cannot read array element: {exc}\n")
        return 2
    # The handle marker tells a restarted engine which job this attempt is, even when
    # the engine died before it recorded the job id.
    job_id = os.environ.get("SLURM_ARRAY_JOB_ID") or os.environ.get("JOB_ID")
    task_id = os.environ.get("SLURM_ARRAY_TASK_ID") or os.environ.get("SGE_TASK_ID")
    if job_id and task_id:
        marker = entry["result"] + ".handle"
        try:
            with open(marker, "w") as fh:
                fh.write(f"{job_id}_{task_id}\n")
        except OSError:
            pass
    for key, value in (entry.get("env") or {}).items():
        os.environ[key] = value
    if entry.get("cwd"):
        os.chdir(entry["cwd"])
    from gristmill import worker

    limits = ["--runtime", str(entry["runtime"])] if entry.get("runtime") else []
    code = worker.main(
        ["--result", entry["result"], "--stdout", entry["stdout"], "--stderr", entry["stderr"],
         *limits, "--", *entry["argv"]]
    )
    explain_signal(entry["result"], Path(args[0]).parent)
    return code


def explain_signal(result_path: str, log_dir: Path) -> None:
    """Turn "stopped by a signal" in the attempt's result into the scheduler's reason.

    At a time limit, as on ``scancel``, Slurm sends SIGTERM to every process of
    the job: the wrapper records CANCELLED, or FAILED "killed by SIGTERM" when
    the task died before the wrapper saw its own signal. Only the scheduler knows
    which it was, and the result file is what the engine believes, so correct it
    now, before the job ends (the wrapper ignores SIGTERM; the scheduler's SIGKILL
    comes KillWait seconds later).
    """
    job_id = os.environ.get("SLURM_ARRAY_JOB_ID")
    task_id = os.environ.get("SLURM_ARRAY_TASK_ID")
    if not (job_id and task_id):
        return
    from gristmill.attempt import read_result, write_result

    try:
        result = read_result(result_path)
    except BackendError:  # a corrupt result is the engine's to report
        return
    if result is None or not (
        result.state is JobState.CANCELLED or result.signal == signal.SIGTERM
    ):
        return
    from gristmill.backends.slurm import job_log, why_stopped

    verdict = why_stopped(job_log(log_dir, f"{job_id}_{task_id}"))
    if verdict is None or verdict[0] is result.state:
        return
    state, reason = verdict
    write_result(result_path, attrs.evolve(result, state=state, reason=reason))


if __name__ == "__main__":
    sys.exit(main())
