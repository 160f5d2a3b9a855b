"""One pass from a workflow to a plan: what the plan holds, and that a run builds it once."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import gristmill.graph.resolved as resolved
from gristmill.engine.plan import RunOptions, make_plan
from gristmill.engine.rebuild import rebuild_workflow
from gristmill.engine.runner import run_workflow
from gristmill.errors import SpecError
from gristmill.resources import Resources
from gristmill.spec.load import Spec, load_spec


def spec_file(tmp_path: Path, text: str) -> Spec:
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    return load_spec(path)


def test_the_plan_layers_engine_and_backend_settings(et: ModuleType, tmp_path: Path) -> None:
    wf = et.appends(path=str(tmp_path / "out"), n=4, pause=0.0)
    spec = spec_file(tmp_path, "workflow: {backend: local, max_concurrent: 7, fail_fast: true,"
                     " poll_interval: 3, options: {max_cores: 2}}\n")
    plan = make_plan(wf, RunOptions(spec=spec))
    assert (plan.backend, plan.config.max_concurrent, plan.config.fail_fast) == ("local", 7, True)
    assert plan.config.poll_max == 3
    assert {k: str(v) for k, v in plan.backend_options.items()} == {"max_cores": "2"}
    mine = make_plan(wf, RunOptions(spec=spec, backend="dask", max_concurrent=2,
                                    fail_fast=False, backend_options={"max_cores": 1}))
    assert (mine.backend, mine.config.max_concurrent, mine.config.fail_fast) == ("dask", 2, False)
    assert mine.backend_options == {"max_cores": 1}  # the caller's beat the spec's
    bare = make_plan(wf, RunOptions())
    # No ceiling given: the backend's own (Slurm: 60 s), else the engine's 30 s.
    assert (bare.backend, bare.config.fail_fast, bare.config.poll_max) == ("local", False, None)


def test_the_plan_holds_one_settings_row_per_unit_and_the_store_rows(
    et: ModuleType, tmp_path: Path
) -> None:
    wf = et.appends(path=str(tmp_path / "out"), n=8, pause=0.0)
    plan = make_plan(wf, RunOptions(resources=Resources(mem="64M")))
    assert len(plan.units) == len(wf.units) == 2
    assert {u.resources.mem for u in plan.units} == {64 * 2**20}
    rows = plan.unit_rows()
    assert [(r[0], r[4], r[5], r[6]) for r in rows] == [(0, 6, 0, 6), (1, 2, 6, 2)]
    assert list(plan.unit_of_nodes()) == [0] * 6 + [1] * 2
    assert [d for _, _, d in plan.layout()] == plan.graph.unit_digests()
    meta = plan.meta("local")
    assert (meta["function"], meta["nodes"], meta["backend"]) == (wf.function, 8, "local")
    assert meta["settings"]["resources"]["mem"] == 64 * 2**20


def test_bad_input_fails_in_the_plan_before_a_run_dir_exists(
    et: ModuleType, tmp_path: Path
) -> None:
    wf = et.appends(path=str(tmp_path / "out"), n=2, pause=0.0)
    with pytest.raises(SpecError, match="nosuch"):
        make_plan(wf, RunOptions(spec=spec_file(tmp_path, "tasks: {nosuch: {mem: 1G}}\n")))
    assert not (tmp_path / "runs").exists()


def test_a_run_and_its_resume_hash_each_unit_once(
    et: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The runner, the store and the engine share the plan's identities: none rehashes."""
    calls: list[Any] = []
    real = resolved.identify

    def counting(*args: Any) -> Any:
        calls.append(args)
        return real(*args)

    monkeypatch.setattr(resolved, "identify", counting)
    wf = et.appends(path=str(tmp_path / "out"), n=8, pause=0.0)
    result = run_workflow(wf, run_dir=tmp_path / "runs")
    assert result.ok
    assert len(calls) == 1  # every node and unit at once, for the run's one identity version
    calls.clear()
    rebuilt, _ = rebuild_workflow(result.run_dir)
    again = run_workflow(rebuilt, run_dir=result.run_dir)
    assert again.counts == {"DONE": 8}
    assert len(calls) == 1


@pytest.mark.parametrize("interval", [0.0, 0.01, -5.0, float("inf"), float("nan"), 1e12])
def test_a_poll_interval_the_engine_would_spin_on_or_overflow_is_refused(
    et: ModuleType, tmp_path: Path, interval: float
) -> None:
    wf = et.appends(path=str(tmp_path / "out"), n=2, pause=0.0)
    with pytest.raises(SpecError, match=r"--poll-interval = .*give seconds between 0.1"):
        make_plan(wf, RunOptions(poll_interval=interval))
    assert make_plan(wf, RunOptions(poll_interval=0.1)).config.poll_max == 0.1
