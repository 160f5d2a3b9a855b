"""The jobmon translation layer on its own: no jobmon, no server."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import attrs
import pytest
from gm_testing import run_python
from hypothesis import given
from hypothesis import strategies as st

from gristmill.backends.base import JobRequest
from gristmill.backends.isolated import boot
from gristmill.backends.jobmon.translate import (
    ATTEMPT,
    STATES,
    WorkflowPlan,
    ancestors_failed,
    compute_resources,
    merge,
    node_and_attempt,
    parse_task_name,
    parse_workflow_tasks,
    plan_tasks,
    run_dir_of,
    task_name,
    template_for,
    templates,
    workflow_args_for,
)
from gristmill.errors import BackendError, SpecError
from gristmill.resources import Resources
from gristmill.states import JobState
from gristmill.worker.result import read_result

RUN = Path("/runs/2026_11_29.01")


def request(key: str, argv: list[str], *, task: str = "fit", job: str = "",
            after: tuple[str, ...] = (), res: Resources | None = None,
            attempts: int = 1) -> JobRequest:
    logs = RUN / "logs" / task
    name = job or f"{task}_{key}"
    return JobRequest(key=key, task=task, job_name=name, argv=tuple(argv),
                      resources=res or Resources(), stdout=logs / f"{name}.out",
                      stderr=logs / f"{name}.err", result_path=logs / f"{name}.1.result.json",
                      after=after, max_attempts=attempts)


def plan_of(jobs: list[JobRequest], cluster: str = "sequential") -> WorkflowPlan:
    tasks = merge((), plan_tasks(jobs, cluster=cluster, python="/py"))
    return WorkflowPlan("args", "wf", "tool", cluster, False, None, tasks)


def fit_argv(draw: int, version: str = "v1") -> list[str]:
    return ["/bin/fit", "-v", "--output-version", version, "--draw", str(draw)]


def test_keys_split_into_a_stable_node_and_the_attempt() -> None:
    assert node_and_attempt("3f2a9c0d1e2b4a5c.2") == ("3f2a9c0d1e2b4a5c", 2)
    assert node_and_attempt("a.b.10") == ("a.b", 10)
    assert node_and_attempt("plain") == ("plain", 0)


def test_task_names_are_legal_for_jobmon_and_parse_back() -> None:
    name = task_name("9 o'clock/run", "ab.cd.3")
    assert not any(c in name for c in "/\\'\" ")
    assert not name[0].isdigit()
    assert parse_task_name(name) == ("ab_cd", 3)
    assert parse_task_name("somebody_elses_task") is None


def test_the_run_directory_decides_the_workflow_args() -> None:
    job = request("k.1", ["true"])
    assert run_dir_of(job) == RUN.resolve()
    assert workflow_args_for(RUN) == workflow_args_for(RUN / "." ) != workflow_args_for(RUN.parent)


def test_compute_resources_use_jobmon_units_and_default_the_local_queue() -> None:
    res = Resources(mem="200M", cores=2, runtime="1h", project="proj", extra={"constraints": "x"})
    assert compute_resources(res, "multiprocess") == {
        "queue": "null.q", "cores": 2, "memory": "200M", "runtime": 3600, "project": "proj",
        "constraints": "x"}
    assert compute_resources(Resources(mem=1), "slurm", queue="all.q", project="p") == {
        "queue": "all.q", "memory": "1M", "project": "p"}
    assert compute_resources(Resources(queue="long.q"), "slurm", queue="all.q")["queue"] == "long.q"
    with pytest.raises(SpecError, match="needs a queue"):
        compute_resources(Resources(), "slurm")


def test_varying_words_are_node_args_constant_option_values_task_args() -> None:
    plan = plan_of([request(f"n{i}.1", fit_argv(i)) for i in range(3)])
    (t,) = templates(plan).values()
    assert t.node_args == ("draw",)
    assert t.task_args == ("output_version",)
    assert t.op_args == ("gm_wrapper", "gm_program")
    assert t.command_template == (
        "{gm_wrapper} -- {gm_program} -v --output-version {output_version} --draw {draw}")
    assert t.values["n1"]["draw"] == "1"
    assert t.values["n1"]["output_version"] == "v1"


@given(st.lists(st.text(min_size=0, max_size=12), min_size=1, max_size=4, unique=True))
def test_every_command_renders_back_to_wrapper_then_argv(values: list[str]) -> None:
    jobs = [request(f"n{i}.1", ["/bin/x y", "--name", v, "--{k}", "{k}", "-v"])
            for i, v in enumerate(values)]
    plan = plan_of(jobs)
    template = template_for("fit", plan.tasks)
    for task in plan.tasks:
        command = template.command_template.format(**template.values[task.node])
        assert shlex.split(command) == [*task.wrapper, "--", *task.argv]


def test_an_argument_named_like_a_create_task_parameter_is_renamed() -> None:
    jobs = [request(f"n{i}.1", ["/bin/t", "--name", str(i), "--max-attempts", "3"])
            for i in range(2)]
    template = template_for("fit", plan_of(jobs).tasks)
    assert "name" not in template.node_args
    assert "max_attempts" not in template.task_args
    assert template.node_args == ("name_2",)
    assert template.task_args == ("max_attempts_4",)


def test_commands_of_different_shapes_make_the_rest_one_node_arg() -> None:
    jobs = [request("a.1", ["/bin/t", "--x", "1"]), request("b.1", ["/bin/t", "--flag"])]
    template = template_for("fit", plan_of(jobs).tasks)
    assert template.node_args == ("gm_args",)
    assert template.values["b"]["gm_args"] == "--flag"


def test_identical_commands_get_the_node_as_an_extra_node_arg() -> None:
    template = template_for("noop", plan_of([request(f"n{i}.1", ["true"]) for i in range(3)]).tasks)
    assert template.node_args == ("gm_node",)
    assert template.command_template.startswith("{gm_wrapper} --node {gm_node} -- ")
    assert len({v["gm_node"] for v in template.values.values()}) == 3


def test_the_wrapper_carries_result_logs_limits_and_attempts() -> None:
    job = attrs.evolve(request("k.1", ["true"], res=Resources(mem="1G", runtime=90), attempts=3),
                       env=(("A", "1"),), cwd=Path("/w"))
    (task,) = plan_tasks([job], cluster="sequential", python="/py")
    words = list(task.wrapper)
    assert words[:4] == ["/py", "-I", "-c", boot(ATTEMPT)]
    assert words[words.index("--result") + 1] == str(job.result_path)
    assert words[words.index("--max-attempts") + 1] == "3"
    assert words[words.index("--mem") + 1] == str(2**30)
    assert words[words.index("--runtime") + 1] == "90"
    assert words[words.index("--env") + 1] == "A=1"
    assert words[words.index("--cwd") + 1] == "/w"


def test_the_wrapper_runs_isolated_from_a_shadowing_module_in_the_task_directory(
    tmp_path: Path,
) -> None:
    """jobmon starts each task's command in a directory of the user's: a types.py there (or
    on PYTHONPATH) must not run inside gristmill's wrapper. The task still gets the
    user's environment (PYTHONPATH included)."""
    project = tmp_path / "project"
    project.mkdir()
    marker = tmp_path / "shadow-imported"
    for name in ("types", "json", "signal"):
        (project / f"{name}.py").write_text(
            f"open({str(marker)!r}, 'a').write({name!r})\nraise SystemExit('shadowed')\n")
    job = request("k.1", ["sh", "-c", 'echo "isolated $PYTHONPATH"'])
    job = attrs.evolve(job, result_path=tmp_path / "r.json", stdout=tmp_path / "o",
                       stderr=tmp_path / "e")
    (task,) = plan_tasks([job], cluster="sequential", python=sys.executable)
    done = subprocess.run([*task.wrapper, "--", *task.argv], cwd=project,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(project)},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "o").read_text() == f"isolated {project}\n"
    assert not marker.exists()
    result = read_result(tmp_path / "r.json", key="k.1")
    assert result is not None
    assert result.state is JobState.SUCCEEDED


def test_the_driver_path_of_gristmill_0_1_still_runs_attempts(tmp_path: Path) -> None:
    """jobmon keeps each task's command in its database, and resuming a workflow that
    gristmill 0.1 made runs it: the wrapper words as 0.1's ``wrapper_argv`` wrote them."""
    logs = tmp_path / "logs"
    done = run_python(
        "-m", "gristmill.backends.jobmon_driver", "attempt", "--result", str(logs / "r.json"),
        "--stdout", str(logs / "o"), "--stderr", str(logs / "e"), "--max-attempts", "1",
        "--env", "GM_X=7", "--cwd", str(tmp_path), "--", "sh", "-c", 'echo "$GM_X $(pwd -P)"',
    )
    assert done.returncode == 0, done.stderr
    result = read_result(logs / "r.json", key=None)
    assert result is not None
    assert result.state is JobState.SUCCEEDED
    assert (logs / "o").read_text() == f"7 {tmp_path.resolve()}\n"


def test_the_driver_path_of_gristmill_0_1_prints_its_usage() -> None:
    done = run_python("-m", "gristmill.backends.jobmon_driver")
    assert done.returncode == 2
    assert done.stderr.startswith("usage: python -m gristmill.backends.jobmon.driver drive PLAN")


def test_after_keys_become_upstream_nodes_and_must_be_in_the_call() -> None:
    a, b = request("a.1", ["t", "1"]), request("b.2", ["t", "2"], after=("a.1",))
    (_, tb) = plan_tasks([a, b], cluster="sequential", python="/py")
    assert tb.upstream == ("a",)
    assert tb.node == "b"
    assert tb.key == "b.2"
    with pytest.raises(BackendError, match="not in the same submit call"):
        plan_tasks([b], cluster="sequential", python="/py")


def test_a_resubmit_merges_into_the_earlier_plan_keeping_its_edges() -> None:
    first = plan_of([request("a.1", ["t", "1"]), request("b.1", ["t", "2"], after=("a.1",)),
                     request("c.1", ["t", "3"], after=("b.1",))])
    # a is done: the engine resubmits b and c, without the edge to a
    again = plan_tasks([request("b.2", ["t", "2"]), request("c.2", ["t", "3"], after=("b.2",))],
                       cluster="sequential", python="/py")
    merged = {t.node: t for t in merge(first.tasks, again)}
    assert merged["b"].upstream == ("a",)
    assert merged["b"].key == "b.2"
    assert merged["a"].key == "a.1"
    assert [t.node for t in merge(first.tasks, again)] == ["a", "b", "c"]


def test_a_cycle_is_refused() -> None:
    a = plan_tasks([request("a.1", ["t"]), request("b.1", ["t", "x"], after=("a.1",))],
                   cluster="sequential", python="/py")
    loop = plan_tasks([request("a.2", ["t"], after=("b.2",)), request("b.2", ["t", "x"])],
                      cluster="sequential", python="/py")
    with pytest.raises(BackendError, match="cycle"):
        merge(a, loop)


def test_a_plan_survives_json_and_a_corrupt_one_says_how_to_recover(tmp_path: Path) -> None:
    plan = plan_of([request("a.1", ["t", "1"], res=Resources(mem="1G")),
                    request("b.1", ["t", "2"], after=("a.1",))])
    assert WorkflowPlan.from_json(plan.to_json()) == plan
    with pytest.raises(BackendError, match="delete it"):
        WorkflowPlan.from_json("{", str(tmp_path / "plan.json"))
    with pytest.raises(BackendError, match="version"):
        WorkflowPlan.from_json(json.dumps({"version": 99}))


def test_workflow_tasks_answers_parse_with_letters_or_labels() -> None:
    table = {"TASK_ID": {"0": 2, "1": 1}, "TASK_NAME": {"0": "b.n2.1", "1": "a.n1.1"},
             "STATUS": {"0": "F", "1": "DONE"}, "RETRIES": {"0": 2, "1": 0}}
    rows = parse_workflow_tasks({"workflow_tasks": json.dumps(table)})
    assert rows == {"b.n2.1": "F", "a.n1.1": "DONE"}
    assert {STATES[s] for s in rows.values()} == {JobState.FAILED, JobState.SUCCEEDED}
    with pytest.raises(BackendError, match="unexpected form"):
        parse_workflow_tasks({"workflow_tasks": "[1, 2]"})


def test_every_jobmon_task_status_has_a_state() -> None:
    jobmon_constants = pytest.importorskip("jobmon.core.constants")
    assert set(jobmon_constants.TaskStatus.LABEL_DICT) <= set(STATES)


def test_nodes_below_a_failure_are_found_transitively() -> None:
    plan = plan_of([request("a.1", ["t", "1"]), request("b.1", ["t", "2"], after=("a.1",)),
                    request("c.1", ["t", "3"], after=("b.1",)), request("d.1", ["t", "4"])])
    assert ancestors_failed(plan, {"a"}) == {"b", "c"}
    assert ancestors_failed(plan, {"d"}) == set()
