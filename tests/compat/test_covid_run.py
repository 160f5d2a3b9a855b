"""WorkflowTemplate.run on the local backend: results, failures, resume, metadata, rebuild."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import pytest
import yaml
from cs_flows import (
    CheckSpecification,
    CheckTemplate,
    FailFastFlow,
    FitSpecification,
    FitTemplate,
    Flow,
    FlowSpecification,
    build,
    lines,
)

from gristmill import runs
from gristmill.compat.covid_shared import workflow
from gristmill.engine.rebuild import rebuild_workflow
from gristmill.engine.runner import run_workflow
from gristmill.errors import BackendError
from gristmill.graph.names import task_dir
from gristmill.store.db import Store

G = 2**30


def test_run_executes_every_task_after_its_upstream(tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    flow = build(tmp_path / "v1", out, n_draws=3)
    result = flow.run()
    assert result.ok
    assert result.counts == {"DONE": 4}
    assert flow.result is result
    done = lines(out)
    assert sorted(done[:3]) == ["fit 0", "fit 1", "fit 2"]
    assert done[3] == "check"
    assert result.run_dir.parent == tmp_path / "v1" / "gristmill"


def test_running_again_resumes_and_skips_finished_tasks(tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    first = build(tmp_path / "v1", out, n_draws=2).run()
    again = build(tmp_path / "v1", out, n_draws=2).run()  # a new process would do the same
    assert again.run_dir == first.run_dir
    assert again.ok
    assert len(lines(out)) == 3  # nothing ran twice
    fresh = build(tmp_path / "v1", out, n_draws=2).run(resume=False)
    assert fresh.run_dir != first.run_dir
    assert len(lines(out)) == 6


def test_a_resumed_run_reruns_only_what_failed(tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    with pytest.raises(workflow.WorkflowRunError) as caught:
        build(tmp_path / "v1", out, n_draws=3, failing=[1]).run()
    error = caught.value
    assert error.status == "failed"
    assert error.result.counts == {"DONE": 2, "FAILED": 1, "UPSTREAM_FAILED": 1}
    assert "status FAILED" in str(error)
    assert str(error.result.run_dir) in str(error)
    assert isinstance(error, RuntimeError)  # what covid_shared raised
    assert sorted(lines(out)) == ["fit 0", "fit 1", "fit 2"]
    # The same workflow again (say the fix was in the data): only the failed draw reruns.
    out.write_text("")
    with pytest.raises(workflow.WorkflowRunError) as again:
        build(tmp_path / "v1", out, n_draws=3, failing=[1]).run()
    assert again.value.result.run_dir == error.result.run_dir
    assert lines(out) == ["fit 1"]


@pytest.mark.parametrize(("cls", "done"), [(FailFastFlow, 0), (Flow, 5)])
def test_fail_fast_stops_submitting_after_the_first_failure(
    tmp_path: Path, cls: type[Flow], done: int
) -> None:
    """One task at a time (max_concurrent from the specification): draw 0 fails first."""
    out = tmp_path / "out.txt"
    spec = FlowSpecification.from_dict({"max_concurrent": 1})
    flow = build(tmp_path / "v1", out, n_draws=6, failing=[0], spec=spec, cls=cls)
    with pytest.raises(workflow.WorkflowRunError) as caught:
        flow.run()
    assert caught.value.result.counts.get("DONE", 0) == done
    assert len(lines(out)) == done + 1


def test_the_backend_comes_from_the_specification_unless_given(tmp_path: Path) -> None:
    spec = FlowSpecification.from_dict({"backend": "no-such-backend"})
    flow = build(tmp_path / "v1", tmp_path / "out.txt", spec=spec)
    with pytest.raises(BackendError, match="no-such-backend"):
        flow.run()
    assert not (tmp_path / "v1").exists()  # nothing written for bad input
    assert flow.run(backend="local").ok


def test_the_tool_is_recorded_in_the_run_metadata(tmp_path: Path) -> None:
    result = build(tmp_path / "v1", tmp_path / "out.txt").run()
    metadata = runs.load_run_metadata(result.run_dir)
    assert metadata.extra["jobmon_tool"] == {
        "name": "cs_flows", "version": "1.2.3", "jobmon_tool_version": "7",
    }
    assert metadata.jobmon_tool_version == "7"
    assert metadata.package == "cs_flows"
    assert metadata.status == "succeeded"


def test_the_attempts_ask_for_the_overridden_resources(tmp_path: Path) -> None:
    spec = FlowSpecification.from_dict({"tasks": {"fit": {"m_mem_free": "3G"}}})
    result = build(tmp_path / "v1", tmp_path / "out.txt", n_draws=1, spec=spec).run()
    store = Store.open(result.run_dir, readonly=True)
    try:
        asked = {a.task: dict(a.resources) for a in store.attempts()}
    finally:
        store.close()
    assert asked["fit"]["mem"] == 3 * G
    assert asked["check"]["mem"] == 2 * G
    assert asked["check"]["cores"] == 2


def test_gristmill_resume_rebuilds_the_workflow_from_its_store(tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    flow = build(tmp_path / "v1", out, n_draws=2)
    result = flow.run()
    rebuilt, meta = rebuild_workflow(result.run_dir)
    assert meta["function"] == "cs_flows:Flow.from_recorded"
    original = flow.to_gristmill()
    assert [n.identity for n in rebuilt.nodes()] == [n.identity for n in original.nodes()]
    assert [n.argv for n in rebuilt.nodes()] == [n.argv for n in original.nodes()]
    assert rebuilt.name == original.name
    again = run_workflow(rebuilt, run_dir=result.run_dir)
    assert again.counts == {"DONE": 3}
    assert len(lines(out)) == 3


def test_each_attempt_log_is_under_the_task_name(tmp_path: Path) -> None:
    result = build(tmp_path / "v1", tmp_path / "out.txt", n_draws=1).run()
    store = Store.open(result.run_dir, readonly=True)
    try:
        logs = sorted(Path(a.stdout).relative_to(result.run_dir / "logs").as_posix()
                      for a in store.attempts())
    finally:
        store.close()
    # <task>/<job name>.<attempt key: identity[:16].attempt>.out
    assert [re.sub(r"\.[0-9a-f]{16}\.", ".<id>.", log) for log in logs] == [
        "check/check.<id>.1.out", "fit/fit_0.<id>.1.out"]
    # A log file is made only when its task writes, and then at the recorded path.
    written = {p.relative_to(result.run_dir / "logs").as_posix()
               for p in (result.run_dir / "logs").rglob("*.out")}
    assert written <= set(logs)
    meta = yaml.safe_load((result.run_dir / runs.METADATA_FILE).read_text())
    assert meta["extra"]["workflow"] == f"flow-{tmp_path / 'v1'}"


def test_templates_named_like_paths_keep_their_files_in_the_run(tmp_path: Path) -> None:
    """covid_shared names a task by its key in ``task_template_classes``: any text. A name
    that climbs (``../..``) or hides (``.check``) still writes only under the run's logs."""
    climbing, hidden = "../../fit", ".check"

    class OddSpecification(workflow.WorkflowSpecification):
        tasks = {climbing: FitSpecification, hidden: CheckSpecification}

    class OddFlow(Flow):
        task_template_classes = {climbing: FitTemplate, hidden: CheckTemplate}

        def attach_tasks(self, out: str, n_draws: int, failing: Iterable[int] = ()) -> None:
            check = self.task_templates[hidden].get_task(out=out)
            self.workflow.add_task(check)
            for draw in range(n_draws):
                fit = self.task_templates[climbing].get_task(out=out, draw=draw, code=0)
                fit.add_downstream(check)
                self.workflow.add_task(fit)

    out = tmp_path / "out.txt"
    flow = OddFlow(str(tmp_path / "v1"), OddSpecification())
    flow.attach_tasks(out=str(out), n_draws=2)
    result = flow.run()
    assert result.counts == {"DONE": 3}
    logs = result.run_dir / "logs"
    folders = sorted(p.name for p in logs.iterdir())
    assert folders == sorted([task_dir(climbing), task_dir(hidden)])
    assert not any(name.startswith(".") for name in folders)
    # Nothing two levels above the logs, where "../../fit" would have pointed.
    assert not (result.run_dir / "fit").exists()
    store = Store.open(result.run_dir, readonly=True)
    try:
        for attempt in store.attempts():
            assert Path(attempt.stdout).parent == logs / task_dir(attempt.task)
    finally:
        store.close()
