"""Per-task figures from SQLite equal the one-pass Python definition, exactly, on real runs
with retries and failures; the median's bracket is used where it holds and its misses
still give the exact median."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from gm_runstore import build_run

from gristmill.engine.runner import run_workflow
from gristmill.report import aggregate
from gristmill.report.aggregate import TaskFigures, flag, median_ranks, task_figures
from gristmill.report.attempts import iter_attempts
from gristmill.report.stats import gather
from gristmill.store.db import Store


def _reference(store: Store) -> dict[str, TaskFigures]:
    return {task: s.figures() for task, s in gather(iter_attempts(store)).tasks.items()}


@pytest.fixture(scope="module")
def big_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8,000 nodes: about 160 OOM retries, 40 TIMEOUT retries, 16 nodes failing twice."""
    run_dir = tmp_path_factory.mktemp("aggregate") / "run"
    build_run(run_dir, 8_000)
    return run_dir


@pytest.fixture
def big_store(big_run: Path) -> Iterator[Store]:
    store = Store.open(big_run, readonly=True)
    statements: list[str] = []
    store.conn.set_trace_callback(statements.append)
    store.statements = statements  # type: ignore[attr-defined]
    try:
        yield store
    finally:
        store.close()


def _fallbacks(store: Store) -> int:
    """Statements that read every run time of some tasks (the median's slow way)."""
    return sum("task IN (" in s for s in store.statements)  # type: ignore[attr-defined]


def test_the_figures_of_a_real_run_equal_the_python_pass(mixed_run: Path) -> None:
    store = Store.open(mixed_run, readonly=True)
    try:
        found, expected = task_figures(store), _reference(store)
    finally:
        store.close()
    assert found == expected
    hog = found["hog"]
    assert (hog.attempts, hog.ooms, dict(hog.retries), hog.mem_flag()) == (
        2, 1, {"OOM": 1}, "under")
    assert hog.mem_requested == 300 * 2**20  # the largest request, not the first
    assert dict(found["exit_with"].retries) == {"exit code": 1}
    assert found["append_line"].mem_requested is None  # asked for no memory


def test_the_figures_of_a_large_run_equal_the_python_pass(big_store: Store) -> None:
    found = task_figures(big_store)
    assert _fallbacks(big_store) == 0  # the median came from its bracket
    expected = _reference(big_store)
    assert found == expected
    fit = found["fit"]
    assert fit.ooms > 100
    assert fit.timeouts > 20
    assert set(fit.retries) == {"OOM", "TIMEOUT", "exit code"}
    assert fit.wall is not None
    assert fit.wall[0] < fit.wall[1] < fit.wall[2] == 3600  # the timeouts ran an hour
    assert fit.runtime_pct == 100.0
    assert fit.ok_peak is not None
    assert fit.peak is not None
    assert fit.ok_peak < fit.peak  # the OOMs peaked higher than any success


def test_a_bracket_that_misses_the_median_still_gives_the_exact_median(
    big_store: Store, monkeypatch: pytest.MonkeyPatch,
) -> None:
    expected = _reference(big_store)
    for wrong in [(3000.0, 3600.0), (0.0, 1.0)]:  # above and below the median
        monkeypatch.setattr(aggregate, "_brackets", lambda store, wrong=wrong: {"fit": wrong})
        before = _fallbacks(big_store)
        assert task_figures(big_store) == expected
        assert _fallbacks(big_store) == before + 1


def test_tasks_too_small_to_sample_are_read_whole(big_store: Store,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aggregate, "MIN_SAMPLED", 10**9)
    assert task_figures(big_store) == _reference(big_store)
    assert _fallbacks(big_store) == 1


def test_a_run_without_attempts_has_no_figures(tmp_path: Path) -> None:
    Store.create(tmp_path, {"workflow": "empty"}).close()
    store = Store.open(tmp_path, readonly=True)
    try:
        assert task_figures(store) == {}
    finally:
        store.close()


@pytest.mark.parametrize(("n", "ranks"), [(1, (0, 0, 0.0)), (2, (0, 1, 0.5)),
                                          (5, (2, 3, 0.0)), (6, (2, 3, 0.5))])
def test_median_ranks(n: int, ranks: tuple[int, int, float]) -> None:
    assert median_ranks(n) == ranks


@pytest.mark.parametrize(("exceeded", "top", "expected"), [
    (1, 10.0, "under"), (0, 95.0, "under"), (0, 45.0, "over"), (0, 60.0, ""), (0, None, ""),
])
def test_flag(exceeded: int, top: float | None, expected: str) -> None:
    assert flag(exceeded, top) == expected


def test_cpu_efficiency_is_cpu_time_over_run_time_and_cores(
    et: ModuleType, tmp_path: Path
) -> None:
    """A task that burns CPU the whole time is efficient; one that sleeps is not. From the
    CPU time each attempt records (the local backend's worker measures it)."""
    figures = {}
    for name, workflow in (("busy", et.burn_once(cpu=1.5, pause=0.0)),
                           ("idle", et.burn_once(cpu=0.0, pause=1.5))):
        result = run_workflow(workflow, run_dir=tmp_path / name)
        assert result.ok
        store = Store.open(result.run_dir, readonly=True)
        try:
            (figures[name],) = task_figures(store).values()
            assert task_figures(store) == _reference(store)
        finally:
            store.close()
    busy, idle = figures["busy"].cpu_eff, figures["idle"].cpu_eff
    assert busy is not None
    assert idle is not None
    assert busy > 2 * idle
    assert busy <= 100.5
