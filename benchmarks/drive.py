"""Drive a backend through the protocol alone, as the engine would, and insist on success.

The backend benchmarks submit every job at once, then wait and poll until each one has
finished. A job that failed, was lost or was cancelled also "finishes", often faster than
a real one, so counting finished jobs would time a broken run as a fast one: only
SUCCEEDED counts, and any other end stops the benchmark with the states and reasons.
"""

from __future__ import annotations

import collections
from collections.abc import Sequence

from gristmill.backends.base import Backend, JobRequest
from gristmill.states import JobState


class JobsFailed(SystemExit):
    """Some jobs of a benchmark did not succeed: its figures mean nothing (exit status 1)."""


def drive(backend: Backend, jobs: Sequence[JobRequest], wait: float) -> int:
    """Submit ``jobs``, wait and poll until all have finished; how many polls it took.

    Raises :class:`JobsFailed` naming the states and the first reasons unless every job
    ended SUCCEEDED.
    """
    live = set(backend.submit(jobs))
    ended: collections.Counter[JobState] = collections.Counter()
    failures: list[str] = []
    polls = 0
    while live:
        backend.wait(wait)
        polls += 1
        for handle, status in backend.poll(list(live)).items():
            if not status.state.finished:
                continue
            live.discard(handle)
            ended[status.state] += 1
            if status.state is not JobState.SUCCEEDED and len(failures) < 3:
                failures.append(f"{handle.job_id}: {status.state.name}, {status.reason}")
    if ended[JobState.SUCCEEDED] != len(jobs):
        counts = ", ".join(f"{state.name} {n}" for state, n in ended.most_common())
        raise JobsFailed(f"{backend.name}: only {ended[JobState.SUCCEEDED]} of {len(jobs)} jobs "
                         f"succeeded ({counts}); first failures: {'; '.join(failures)}")
    return polls
