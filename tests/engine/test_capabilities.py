"""The engine honours every field of a backend's Capabilities, and nothing else.

Each run uses real tasks on the real local backend, seen through :class:`Declared`: a
backend that declares the capabilities a test gives it and records what the engine
asks of it (how many jobs it had handed over at once, when it polled, what it had to
re-adopt).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import attrs
import pytest
from gm_testing import attempts, max_overlap

import gristmill.engine.runner
from gristmill.backends.base import (
    Capabilities,
    JobHandle,
    JobRequest,
    JobStatus,
    SubmitLimitError,
)
from gristmill.backends.local.backend import LocalBackend
from gristmill.backends.registry import BACKENDS
from gristmill.cli.run import cancel_orphans
from gristmill.engine.runner import run_workflow
from gristmill.errors import BackendError
from gristmill.spec.load import Spec
from gristmill.states import JobState, NodeState
from gristmill.store.db import STORE_NAME, AttemptRecord, Store


class Declared:
    """The local backend under capabilities a test declares, recording the engine's calls."""

    name = "local"
    settings = ()

    def __init__(self, capabilities: Capabilities, **options: Any) -> None:
        self.inner = LocalBackend(**options)
        self.capabilities = capabilities
        self.attached: list[JobHandle] = []
        self.polled: list[float] = []
        self.outstanding: set[str] = set()
        self.most_outstanding = 0
        self.polls_seen: dict[str, int] = {}

    #: A scheduler's submit limit: a submission taking the jobs handed over and not yet
    #: reported finished past it is refused whole (SubmitLimitError), as sbatch does.
    max_submit: int | None = None
    refusals = 0
    #: Jobs reported QUEUED with this reason for their first ``queued_polls`` polls.
    queued_reason = ""
    queued_polls = 0

    def submit_limit(self) -> int | None:
        return self.max_submit if self.capabilities.submit_limit else None

    def submit(self, jobs: Sequence[JobRequest]) -> Sequence[JobHandle]:
        if self.max_submit is not None and len(self.outstanding) + len(jobs) > self.max_submit:
            self.refusals += 1
            raise SubmitLimitError("AssocMaxSubmitJobLimit")
        handles = self.inner.submit(jobs)
        self.polls_seen.update({h.key: 0 for h in handles})
        self.outstanding.update(h.key for h in handles)
        self.most_outstanding = max(self.most_outstanding, len(self.outstanding))
        return handles

    def poll(self, handles: Sequence[JobHandle]) -> Mapping[JobHandle, JobStatus]:
        self.polled.append(time.monotonic())
        statuses = dict(self.inner.poll(handles))
        for handle in handles:
            self.polls_seen[handle.key] = self.polls_seen.get(handle.key, 0) + 1
            if self.polls_seen[handle.key] <= self.queued_polls:
                statuses[handle] = JobStatus(JobState.QUEUED, reason=self.queued_reason)
            elif self.queued_polls:  # as a scheduler says of a job it runs (local: nothing)
                statuses.setdefault(handle, JobStatus(JobState.RUNNING))
        self.outstanding.difference_update(h.key for h, s in statuses.items() if s.state.finished)
        return statuses

    def cancel(self, handles: Sequence[JobHandle]) -> None:
        self.inner.cancel(handles)

    def attach(self, handles: Sequence[JobHandle]) -> None:
        assert self.capabilities.reattach, "attach was called on a backend that cannot reattach"
        self.attached.extend(handles)
        self.inner.attach(handles)

    def wait(self, timeout: float) -> None:
        self.inner.wait(timeout)  # wakes as soon as an attempt ends: any floor is the engine's

    def close(self) -> None:
        self.inner.close()


@attrs.define
class Backends:
    """The capabilities the next run's backend declares, and every backend made."""

    next: Capabilities = attrs.Factory(Capabilities)
    made: list[Declared] = attrs.Factory(list)
    max_submit: int | None = None
    queued_reason: str = ""
    queued_polls: int = 0


@pytest.fixture
def backends(et: ModuleType, monkeypatch: pytest.MonkeyPatch) -> Iterator[Backends]:
    state = Backends()

    def make(name: str, **options: Any) -> Declared:
        made = Declared(state.next, **{"max_cores": 4, **options})
        made.max_submit = state.max_submit
        made.queued_reason, made.queued_polls = state.queued_reason, state.queued_polls
        state.made.append(made)
        return made

    monkeypatch.setattr(gristmill.engine.runner, "make_backend", make)
    yield state
    for backend in state.made:
        backend.inner.shutdown(cancel=True)


def lines(path: Path) -> list[str]:
    return sorted(path.read_text().split()) if path.exists() else []


def reopen(run_dir: Path, node: int) -> AttemptRecord:
    """Make the store look as if the engine died while ``node``'s job ran: its attempt
    open, with its job id, and no result file."""
    store = Store.open(run_dir, readonly=True)
    try:
        (record,) = store.attempts(identity=store.identities()[node])
    finally:
        store.close()
    with sqlite3.connect(run_dir / STORE_NAME) as conn:
        conn.execute("UPDATE attempts SET ended = NULL, state = 'RUNNING' WHERE key = ?",
                     (record.key,))
        conn.execute("UPDATE nodes SET state = ? WHERE id = ?", (int(NodeState.RUNNING), node))
    conn.close()
    Path(record.result_path).unlink()
    return record


@pytest.mark.parametrize("reattach", [False, True])
def test_only_a_backend_that_can_reattach_is_asked_to_and_open_attempts_rerun(
    et: ModuleType, backends: Backends, tmp_path: Path, reattach: bool
) -> None:
    backends.next = Capabilities(reattach=reattach)
    out = tmp_path / "out"
    first = run_workflow(et.appends(path=str(out), n=2, pause=0.0), run_dir=tmp_path / "runs")
    assert first.ok
    record = reopen(first.run_dir, 1)
    again = run_workflow(et.appends(path=str(out), n=2, pause=0.0), run_dir=first.run_dir)
    assert again.ok, again.counts
    assert lines(out) == ["0", "1", "1"]  # node 1 ran again; node 0 stayed done
    mine = [a for a in attempts(first.run_dir) if a.identity == record.identity]
    assert [(a.attempt, a.state) for a in mine] == [(1, "LOST"), (2, "SUCCEEDED")]
    resumed = backends.made[1]
    if reattach:  # the local backend re-adopts it, finds its supervisor gone: LOST
        assert [h.key for h in resumed.attached] == [record.key]
    else:
        assert resumed.attached == []
        assert "cannot re-adopt" in mine[0].reason


def test_cancel_without_an_engine_says_a_backend_that_cannot_reattach_cannot_cancel(
    et: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(BACKENDS, "dagtest", "gm_dag_backend:DagLocalBackend")
    first = run_workflow(et.appends(path=str(tmp_path / "out"), n=2, pause=0.0),
                         backend="dagtest", run_dir=tmp_path / "runs")
    assert first.ok
    reopen(first.run_dir, 1)
    with pytest.raises(BackendError, match="backend dagtest cannot re-adopt the 1 job"):
        cancel_orphans(first.run_dir)


@pytest.mark.parametrize(("window", "flow", "most"), [
    (1, "spans", 1), (2, "spans", 2),
    (3, "spans_wf_limited", 2),  # the workflow's max_concurrent=2 is the smaller limit
])
def test_the_engine_hands_over_at_most_max_inflight_jobs(
    et: ModuleType, backends: Backends, tmp_path: Path, window: int, flow: str, most: int
) -> None:
    """Never more than the window submitted and not yet reported finished, and the tasks
    themselves never overlapped more: 4 cores would have run 4 at once."""
    backends.next = Capabilities(max_inflight=window)
    stamps = tmp_path / "stamps"
    result = run_workflow(getattr(et, flow)(stamps=str(stamps), n=6, pause=0.3),
                          run_dir=tmp_path / "runs")
    assert result.ok
    assert backends.made[0].most_outstanding == most
    assert max_overlap(stamps) <= most
    assert len(attempts(result.run_dir)) == 6


@pytest.mark.parametrize(("chunks", "most", "chunk_seen"), [(True, 6, 3), (False, 2, 1)])
def test_a_chunked_node_takes_a_chunks_share_of_the_window_on_a_backend_that_packs(
    et: ModuleType, backends: Backends, tmp_path: Path, chunks: bool, most: int,
    chunk_seen: int, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``chunk: 3`` with a window of 2 jobs: 6 nodes in flight where chunks are packed
    (2 jobs' worth), 2 where they are not; requests carry the chunk only to the former."""
    backends.next = Capabilities(max_inflight=2, chunks=chunks)
    handed: list[JobRequest] = []
    original = Declared.submit

    def keep(self: Declared, jobs: Sequence[JobRequest]) -> Sequence[JobHandle]:
        handed.extend(jobs)
        return original(self, jobs)

    monkeypatch.setattr(Declared, "submit", keep)
    result = run_workflow(et.spans(stamps=str(tmp_path / "stamps"), n=6, pause=0.3),
                          run_dir=tmp_path / "runs",
                          spec=Spec.from_dict({"tasks": {"span": {"chunk": 3}}}))
    assert result.ok
    assert backends.made[0].most_outstanding == most
    assert {job.chunk for job in handed} == {chunk_seen}


def test_polls_are_never_closer_than_poll_min_even_when_the_backend_wakes_early(
    et: ModuleType, backends: Backends, tmp_path: Path
) -> None:
    backends.next = Capabilities(poll_min=0.4)
    result = run_workflow(et.appends(path=str(tmp_path / "out"), n=8, pause=0.0),
                          run_dir=tmp_path / "runs")
    assert result.ok
    polled = backends.made[0].polled
    gaps = [b - a for a, b in zip(polled, polled[1:])]
    assert gaps, polled
    assert min(gaps) >= 0.4 - 0.01, gaps


def test_capabilities_refuse_what_the_engine_could_not_honour() -> None:
    with pytest.raises(ValueError, match="a dag backend is handed every node"):
        Capabilities(dag=True, max_inflight=4)
    with pytest.raises(ValueError, match="poll_min=-1"):
        Capabilities(poll_min=-1)
    with pytest.raises(ValueError, match="max_inflight=0"):
        Capabilities(max_inflight=0)
    assert Capabilities() == Capabilities(reattach=False, dag=False, poll_min=0.0,
                                          max_inflight=None)  # claims nothing by default


@pytest.mark.parametrize("declared", [True, False])
def test_a_submit_limit_throttles_the_run_and_never_fails_a_node(
    et: ModuleType, backends: Backends, tmp_path: Path, declared: bool
) -> None:
    """Declared, the limit is never hit; unknown, the refusals teach it. Either way every
    node runs once, each with one recorded attempt: a refused submission leaves none."""
    backends.next = Capabilities(submit_limit=declared)
    backends.max_submit = 3
    out = tmp_path / "out"
    result = run_workflow(et.appends(path=str(out), n=12, pause=0.0), run_dir=tmp_path / "runs")
    assert result.ok, result.counts
    backend = backends.made[0]
    assert backend.most_outstanding <= 3
    assert lines(out) == sorted(str(i) for i in range(12))
    assert sorted((a.attempt, a.state) for a in attempts(result.run_dir)) == [
        (1, "SUCCEEDED")] * 12
    if declared:
        assert backend.refusals == 0
    else:
        assert backend.refusals >= 1  # learnt from the first refusal, then held to it


def test_a_pending_reason_is_written_once_per_change_and_cleared_when_the_job_runs(
    et: ModuleType, backends: Backends, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three polls saying "Resources" make one write per job, and its start one more."""
    backends.queued_reason, backends.queued_polls = "Resources", 3
    written: list[tuple[str, str]] = []
    original = Store.set_pending_reasons

    def counting(self: Store, cur: sqlite3.Cursor, pairs: Sequence[tuple[str, str]]) -> None:
        written.extend(pairs)
        original(self, cur, pairs)

    monkeypatch.setattr(Store, "set_pending_reasons", counting)
    # Each task runs 3 s: polls after the third see it RUNNING.
    result = run_workflow(et.appends(path=str(tmp_path / "out"), n=3, pause=3.0),
                          run_dir=tmp_path / "runs")
    assert result.ok
    keys = sorted(a.key for a in attempts(result.run_dir))
    assert sorted(written) == sorted([(k, "Resources") for k in keys] + [(k, "") for k in keys])
    # An ended attempt keeps the reason it ended with, never a stale pending one.
    assert all(a.reason != "Resources" for a in attempts(result.run_dir))
