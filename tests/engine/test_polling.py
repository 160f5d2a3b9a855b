"""The adaptive poll interval: its sequence alone, then as the engine's loop follows it.

The loop's test records what the engine did each cycle (how many jobs it submitted, how
many a poll saw end, the interval it then waited) on the real local backend, with the
waits cut short: the sequence is asserted, never a wall-clock time.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from loguru import logger

import gristmill.engine.runner
from gristmill.backends.base import Capabilities, JobHandle, JobStatus
from gristmill.backends.local.backend import LocalBackend
from gristmill.engine.loop import Engine
from gristmill.engine.polling import FACTOR, POLL_MAX, PollSchedule
from gristmill.engine.runner import run_workflow
from gristmill.errors import BackendError


def test_the_interval_starts_at_the_floor_and_grows_by_half_to_the_ceiling() -> None:
    schedule = PollSchedule(5.0, 60.0)
    seen = [schedule.interval]
    for _ in range(8):
        schedule.polled(0)
        seen.append(schedule.interval)
    assert seen == pytest.approx([5, 7.5, 11.25, 16.875, 25.3125, 37.96875, 56.953125, 60, 60])
    assert FACTOR == 1.5


def test_a_submission_or_a_poll_that_saw_jobs_end_brings_it_back_to_the_floor() -> None:
    schedule = PollSchedule(5.0, 60.0)
    for _ in range(6):
        schedule.polled(0)
    assert schedule.interval > 30
    schedule.submitted()
    assert schedule.interval == 5
    for _ in range(3):
        schedule.polled(0)
    assert schedule.interval == pytest.approx(16.875)
    schedule.polled(3)
    assert schedule.interval == 5


def test_a_zero_floor_still_grows_and_a_ceiling_below_the_floor_is_the_floor() -> None:
    schedule = PollSchedule(0.0, 1.0)
    schedule.polled(0)
    assert schedule.interval == pytest.approx(0.075)
    assert PollSchedule(10.0, 2.0).ceiling == 10.0


@pytest.mark.parametrize(("engine_max", "backend_max", "ceiling"), [
    (None, None, POLL_MAX),  # nobody says: the engine's default
    (None, 60.0, 60.0),  # the backend's declared ceiling (Slurm, Grid Engine)
    (12.0, 60.0, 12.0),  # --poll-interval wins
])
def test_floor_and_ceiling_come_from_the_engine_and_the_backend(
    engine_max: float | None, backend_max: float | None, ceiling: float
) -> None:
    schedule = PollSchedule.of(engine_min=0.2, engine_max=engine_max, backend_min=5.0,
                               backend_max=backend_max)
    assert (schedule.floor, schedule.ceiling) == (5.0, ceiling)


class Scheduled:
    """The real local backend declared as a polled scheduler (floor 1 s, ceiling 8 s), whose
    polls fail while ``down`` is set (a controller that does not answer)."""

    name = "local"
    settings = ()
    capabilities = Capabilities(poll_min=1.0, poll_max=8.0)

    def __init__(self, **options: Any) -> None:
        self.inner = LocalBackend(**options)
        self.down = 0  # how many of the next polls fail
        self.polls = 0

    def submit(self, jobs: Any) -> Any:
        return self.inner.submit(jobs)

    def poll(self, handles: Any) -> dict[JobHandle, JobStatus]:
        self.polls += 1
        if self.down:
            self.down -= 1
            raise BackendError("squeue failed once, not retried: timed out after 60 s")
        return dict(self.inner.poll(handles))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest.fixture
def recorded(et: ModuleType, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """Each cycle's (submitted, finished, interval waited), with the waits cut short."""
    record: dict[str, Any] = {"cycles": [], "backends": [], "down": 0}
    cycle: dict[str, Any] = {"submitted": 0}
    dispatch, collect = Engine.dispatch, Engine.collect

    def make(name: str, **options: Any) -> Scheduled:
        backend = Scheduled(max_cores=2)
        backend.down = record["down"]
        record["backends"].append(backend)
        return backend

    def counted_dispatch(self: Engine) -> int:
        cycle["submitted"] += dispatch(self)
        return cycle["submitted"]  # type: ignore[no-any-return]

    def pause(self: Engine, interval: float) -> None:
        cycle["interval"] = interval
        self.backend.wait(0.05)  # the jobs run meanwhile; the interval is only recorded

    def counted_collect(self: Engine) -> int:
        finished = collect(self)
        record["cycles"].append((cycle["submitted"], finished, cycle.pop("interval", None)))
        cycle["submitted"] = 0
        return finished

    monkeypatch.setattr(gristmill.engine.runner, "make_backend", make)
    monkeypatch.setattr(Engine, "dispatch", counted_dispatch)
    monkeypatch.setattr(Engine, "_pause", pause)
    monkeypatch.setattr(Engine, "collect", counted_collect)
    yield record
    for backend in record["backends"]:
        backend.inner.shutdown(cancel=True)


def check_sequence(cycles: list[tuple[int, int, float | None]]) -> None:
    """Floor 1, ceiling 8: the floor after a submission or a poll that saw an end, else x1.5."""
    previous: tuple[int, int, float | None] | None = None
    for submitted, _, interval in cycles:
        assert interval is not None
        if submitted or previous is None or previous[1]:
            assert interval == 1.0, cycles
        else:
            assert previous[2] is not None
            assert interval == pytest.approx(min(8.0, previous[2] * 1.5)), cycles
        previous = (submitted, _, interval)


def test_the_loop_polls_at_the_floor_after_each_submission_and_end_and_backs_off_between(
    et: ModuleType, recorded: dict[str, Any], tmp_path: Path
) -> None:
    """Two stages of tasks that take 0.3 s: several polls see nothing end."""
    result = run_workflow(et.appends(path=str(tmp_path / "out"), n=4, pause=0.3),
                          run_dir=tmp_path / "runs")
    assert result.ok, result.counts
    cycles = recorded["cycles"]
    check_sequence(cycles)
    assert sum(s for s, _, _ in cycles) == 4
    assert len([s for s, _, _ in cycles if s]) == 2  # one submission per stage
    assert max(i for _, _, i in cycles if i is not None) > 1.0  # it did back off
    assert sum(f for _, f, _ in cycles) == 4


def test_polls_that_fail_warn_once_and_the_run_goes_on_when_they_answer(
    et: ModuleType, recorded: dict[str, Any], tmp_path: Path
) -> None:
    messages: list[str] = []
    logger.enable("gristmill")
    sink = logger.add(lambda m: messages.append(m.record["message"]), level="WARNING")
    recorded["down"] = 6  # the first six polls fail
    try:
        result = run_workflow(et.appends(path=str(tmp_path / "out"), n=4, pause=0.0),
                              run_dir=tmp_path / "runs")
    finally:
        logger.remove(sink)
    assert result.counts == {"DONE": 4}
    (backend,) = recorded["backends"]
    assert backend.polls > 6
    failed = [m for m in messages if "polling local failed" in m]
    assert len(failed) == 1, messages
    assert "nothing fails meanwhile" in failed[0]
    assert len([m for m in messages if "answers again" in m]) == 1, messages
    cycles = recorded["cycles"]
    assert [f for _, f, _ in cycles[:6]] == [0] * 6  # nothing concluded while it failed
    intervals = [i for _, _, i in cycles[:7]]
    assert intervals == sorted(intervals)  # backing off while it does not answer
