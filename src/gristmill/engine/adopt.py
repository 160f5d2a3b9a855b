"""Resume: re-adopting the attempts an earlier engine of the run left open.

An engine that crashed or was killed leaves attempts open in the store. Each is
matched to its node by identity and then, by what is known of it: a result file
naming it (it ended while no engine watched: finish it; a file naming another
attempt is no news of this one), a job id or ``.handle`` marker (it may still run:
hand it back to the backend, when the backend can reattach), or nothing (its
submission was never confirmed: it cannot have started, run it again).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from loguru import logger

from gristmill.backends.base import JobHandle, JobStatus
from gristmill.errors import BackendError
from gristmill.resources import Resources
from gristmill.states import JobState, NodeState
from gristmill.store.db import AttemptRecord
from gristmill.store.paths import confined

if TYPE_CHECKING:
    from gristmill.engine.loop import Engine, Live


def adopt(engine: Engine, records: Sequence[AttemptRecord]) -> list[tuple[Live, JobStatus]]:
    """Re-adopt attempts an earlier engine left open (it crashed or was killed).

    Returns the adopted attempts that already ended (their result file is
    written), with how they ended; the caller finishes them once readiness is known.
    """
    if not records:
        return []
    index = {identity: node for node, identity in enumerate(engine.identities)}
    handles: list[JobHandle] = []
    arrived: list[tuple[Live, JobStatus]] = []
    orphans = 0  # open attempts a backend that cannot reattach leaves to run again
    for record in records:
        node = index.get(record.identity)
        if node is None:
            engine._attempt_ended(-1, record.key, JobStatus(JobState.CANCELLED,
                                reason="node no longer in the workflow"))
            continue
        engine.attempts[node] = max(engine.attempts[node], record.attempt)
        if not confined(engine.run_dir, record.result_path):
            # A crafted or moved store: never read, watch or mark files outside the run.
            engine._attempt_ended(node, record.key, JobStatus(
                JobState.LOST, reason=f"its files ({record.result_path}) are outside the run "
                "directory; run again"))
            engine.tracker.states[node] = NodeState.PENDING
            continue
        try:  # only the attempt's own result finishes it; another's is no news of it
            result = engine.own_result(record.key, record.result_path)
        except BackendError as exc:
            logger.warning("{}", exc)
            result = None
        job_id = record.job_id or _handle_marker(record.result_path)
        lost = ""
        if job_id is None and result is None:
            # Submitted but never confirmed: it cannot have started, so run it again.
            lost = "submission not confirmed before the engine stopped"
        elif result is None and not engine.capabilities.reattach:
            orphans += 1
            lost = (f"backend {engine.backend.name} cannot re-adopt jobs of an earlier "
                    "engine (Capabilities.reattach is False)")
        if lost:
            engine._attempt_ended(node, record.key, JobStatus(JobState.LOST, reason=lost))
            engine.tracker.states[node] = NodeState.PENDING
            continue
        handle = JobHandle(engine.backend.name, job_id or "", record.key, record.result_path)
        resources = Resources(**{k: v for k, v in record.resources.items()})
        engine.tracker.states[node] = NodeState.SUBMITTED
        engine._track(node, record.attempt, record.task, handle, resources, record.result_path,
                    adopted=True)
        if result is not None:  # nothing left to watch: no need to ask the backend
            arrived.append((engine.live[handle.key], JobStatus.from_result(result)))
        else:
            handles.append(handle)
    if orphans:
        logger.warning("backend {} cannot re-adopt jobs: {} attempt(s) an earlier engine "
                       "left open run again", engine.backend.name, orphans)
    if handles:  # only ever filled when the backend declared reattach
        logger.info("re-adopting {} job(s) left running by an earlier engine", len(handles))
        engine.backend.attach(handles)
    return arrived


def _handle_marker(result_path: str) -> str | None:
    """A backend may leave ``<result>.handle`` holding the job id as soon as a job starts."""
    try:
        with open(result_path + ".handle") as fh:
            text = fh.read().strip()
    except OSError:
        return None
    return text or None
