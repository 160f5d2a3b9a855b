"""TaskTemplate / WorkflowTemplate: argument checks, argv per word, DAG links, identities."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import types
from pathlib import Path
from typing import Any, ClassVar

import pytest
from cs_flows import (
    CheckTemplate,
    FitSpecification,
    FitTemplate,
    Flow,
    FlowSpecification,
    build,
)

from gristmill.compat.covid_shared import workflow
from gristmill.engine.plan import unit_plans
from gristmill.errors import GraphError, SpecError, TaskArgumentError
from gristmill.resources import Policy, Resources
from gristmill.spec.load import Spec

PY = shlex.quote(sys.executable)
G = 2**30


def template(name: str = "Tpl", **body: Any) -> type[workflow.TaskTemplate]:
    """A TaskTemplate subclass made from class constants."""
    return type(name, (workflow.TaskTemplate,), body)


class TutorialTemplate(workflow.TaskTemplate):
    """The SEIIR tutorial's task 1 template, verbatim but for the script path."""

    task_args: ClassVar[list[str]] = ["output_version"]
    node_args: ClassVar[list[str]] = ["draw"]
    task_name_template = "my_task1_task_arg2_{task_arg2}"
    command_template = (
        f"{PY} "
        "--task-arg1 {task_arg1} "
        "--task-arg2 {task_arg2} "
        "-vv"
    )


def test_the_tutorials_own_mismatch_is_caught_when_the_template_is_built() -> None:
    with pytest.raises(TaskArgumentError) as caught:
        TutorialTemplate("my_task1", FitSpecification())
    message = str(caught.value)
    assert "TutorialTemplate" in message
    assert "{task_arg2}" in message
    assert "output_version, draw" in message


def test_a_command_placeholder_that_is_not_declared_is_named() -> None:
    tpl = template(
        "Cmd", task_args=["out"], node_args=["draw"], task_name_template="x_{draw}",
        command_template=f"{PY} {{out}} {{draw}} {{location_id}}",
    )
    with pytest.raises(TaskArgumentError, match=r"uses \{location_id\}.*out, draw"):
        tpl("x")


def test_a_declared_arg_the_command_never_uses_is_an_error() -> None:
    tpl = template(
        "Unused", task_args=["out", "seed"], task_name_template="x",
        command_template=f"{PY} {{out}}",
    )
    with pytest.raises(TaskArgumentError, match=r"declared arg.* seed never appear in command"):
        tpl("x")


@pytest.mark.parametrize("bad", ["{}", "{0}"])
def test_positional_placeholders_are_refused(bad: str) -> None:
    tpl = template(task_args=["out"], task_name_template=bad, command_template=f"{PY} {{out}}")
    with pytest.raises(TaskArgumentError, match="positional placeholder"):
        tpl("x")


def test_get_task_checks_missing_and_extra_arguments() -> None:
    fit = FitTemplate("fit", FitSpecification())
    with pytest.raises(TaskArgumentError) as caught:
        fit.get_task(out="o", draw=1, location_id=3)
    message = str(caught.value)
    assert "FitTemplate.get_task" in message
    assert "missing code" in message
    assert "unexpected location_id" in message
    assert "out, draw, code" in message
    with pytest.raises(TaskArgumentError, match="keyword arguments only"):
        fit.get_task("o", 1, 0)


def test_argv_fills_each_word_so_a_value_with_a_space_stays_one_argument() -> None:
    fit = FitTemplate("fit", FitSpecification())
    task = fit.get_task(out="/tmp/a dir/out; rm -rf ~", draw=2, code=0)
    assert task.argv[0] == sys.executable
    assert task.argv[-3:] == ["/tmp/a dir/out; rm -rf ~", "fit 2", "0"]
    assert shlex.split(task.command) == task.argv
    assert task.name == "fit_2"


def test_format_specs_are_honoured_as_str_format_did() -> None:
    tpl = template(
        "Fmt", node_args=["draw"], task_name_template="d{draw:03d}",
        command_template=f"{PY} --draw={{draw:04d}}",
    )
    task = tpl("fmt").get_task(draw=7)
    assert (task.name, task.argv[-1]) == ("d007", "--draw=0007")
    with pytest.raises(TaskArgumentError, match="cannot be filled"):
        tpl("fmt").get_task(draw="seven")


@pytest.mark.parametrize(
    "command", [f"{PY} a > out.txt", f"{PY} a | tee x", f"{PY} $HOME/x", f"{PY} a && b"]
)
def test_shell_syntax_is_refused_because_no_shell_runs_the_command(command: str) -> None:
    tpl = template(task_name_template="x", command_template=command)
    with pytest.raises(TaskArgumentError, match="without a shell"):
        tpl("x")


def test_a_script_that_shutil_which_did_not_find_is_explained() -> None:
    tpl = template(task_name_template="x", command_template="None --draw 1")
    with pytest.raises(TaskArgumentError, match=r"starts with 'None'.*shutil.which"):
        tpl("x")


def test_a_bare_program_name_is_resolved_on_path_now(tmp_path: Path) -> None:
    resolved = template(task_name_template="x", command_template="python3 -V")("x")
    assert os.path.isabs(resolved.get_task().argv[0])
    missing = template(task_name_template="x", command_template="no-such-gristmill-script -v")
    with pytest.raises(TaskArgumentError, match="not on PATH"):
        missing("x")
    absent = template(task_name_template="x", command_template=f"{tmp_path}/absent -v")
    with pytest.raises(TaskArgumentError, match="not an executable file"):
        absent("x")


def test_none_is_written_as_none_like_str_format() -> None:
    tpl = template(node_args=["previous"], task_name_template="x",
                   command_template=f"{PY} --previous {{previous}}")
    assert tpl("x").get_task(previous=None).argv[-1] == "None"


def test_resources_come_from_the_task_specification() -> None:
    fit = FitTemplate("fit", FitSpecification({"m_mem_free": "3G", "num_cores": 2}))
    assert fit.get_task(out="o", draw=0, code=0).resources == Resources(
        mem=3 * G, cores=2, runtime=1000
    )
    assert fit.params == {"runtime": 1000, "memory": "3G", "cores": 2, "queue": None}


def test_yaml_overrides_reach_the_engines_plan(tmp_path: Path) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text("queue: all.q\ntasks:\n  fit: {m_mem_free: 20G, max_runtime_seconds: 3000}\n")
    flow = build(tmp_path / "v", tmp_path / "out", spec=FlowSpecification.from_yaml(path))
    wf = flow.to_gristmill()
    by_task = {n.task.name: n.resources for n in wf.nodes()}
    assert by_task["fit"] == Resources(mem=20 * G, cores=1, runtime=3000, queue="all.q")
    assert by_task["check"].queue == "all.q"
    plans = unit_plans(wf, Spec.empty(), None, None)
    fit_plans = [p.resources for p, u in zip(plans, wf.units) if u.task.name == "fit"]
    assert {(r.mem, r.runtime) for r in fit_plans} == {(20 * G, 3000)}


def test_links_become_after_edges(tmp_path: Path) -> None:
    wf = build(tmp_path / "v", tmp_path / "o", n_draws=3).to_gristmill()
    nodes = {n.name: n for n in wf.nodes()}
    assert list(nodes) == ["fit_0", "fit_1", "fit_2", "check"]  # upstream first, else added order
    assert nodes["check"].upstream == [nodes[f"fit_{d}"].identity for d in range(3)]
    assert all(nodes[f"fit_{d}"].upstream == [] for d in range(3))
    assert wf.count_by_task() == {"fit": 3, "check": 1}
    assert wf.name == f"flow-{tmp_path / 'v'}"


def test_add_upstream_and_add_downstream_are_the_same_link(tmp_path: Path) -> None:
    fit = FitTemplate("fit", FitSpecification())
    a, b = (fit.get_task(out="o", draw=d, code=0) for d in range(2))
    b.add_upstream(a)
    assert a.downstream_tasks == {b}
    assert b.upstream_tasks == {a}
    with pytest.raises(TypeError, match=r"TaskTemplate\.get_task"):
        a.add_downstream("check")  # type: ignore[arg-type]


def test_identical_arguments_give_identical_identities(tmp_path: Path) -> None:
    first = build(tmp_path / "v", tmp_path / "o").to_gristmill()
    second = build(tmp_path / "v", tmp_path / "o").to_gristmill()
    other = build(tmp_path / "v", tmp_path / "elsewhere").to_gristmill()
    ids = [n.identity for n in first.nodes()]
    assert ids == [n.identity for n in second.nodes()]
    assert not set(ids) & {n.identity for n in other.nodes()}


def test_recording_is_the_same_in_every_process(tmp_path: Path) -> None:
    """Set iteration order must not leak into the recorded DAG (hash seeds differ per process)."""
    code = (
        "import json, sys; from pathlib import Path; import cs_flows; "
        "wf = cs_flows.build(Path(sys.argv[1]), Path(sys.argv[2]), n_draws=6).to_gristmill(); "
        "print(json.dumps([wf.args, [n.identity for n in wf.nodes()]]))"
    )
    outputs = set()
    for seed in ("1", "2", "3"):
        env = {**os.environ, "PYTHONHASHSEED": seed,
               "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), *sys.path])}
        done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "v"), "o"], env=env,
                              capture_output=True, text=True, timeout=60, check=True)
        outputs.add(done.stdout)
    assert len(outputs) == 1
    args, identities = json.loads(outputs.pop())
    assert len(identities) == 7
    assert args["tasks"][-1] == {"template": "check", "args": {"out": "o"},
                                 "upstream": [0, 1, 2, 3, 4, 5]}


def test_adding_an_equal_task_twice_merges_it(tmp_path: Path) -> None:
    flow = build(tmp_path / "v", tmp_path / "o", n_draws=2)
    again = flow.task_templates["fit"].get_task(out=str(tmp_path / "o"), draw=0, code=0)
    assert flow.workflow.add_task(again) is not again
    assert len(flow.workflow) == 3
    assert len(flow.to_gristmill()) == 3


def test_an_upstream_that_was_never_added_is_an_error(tmp_path: Path) -> None:
    flow = build(tmp_path / "v", tmp_path / "o", n_draws=1)
    stray = flow.task_templates["fit"].get_task(out="o", draw=9, code=0)
    next(iter(flow.workflow)).add_upstream(stray)
    with pytest.raises(GraphError, match="fit_9, which was never added"):
        flow.to_gristmill()


def test_a_cycle_names_its_tasks(tmp_path: Path) -> None:
    flow = build(tmp_path / "v", tmp_path / "o", n_draws=2)
    tasks = {t.name: t for t in flow.workflow}
    tasks["check"].add_downstream(tasks["fit_0"])
    cycles = r"cycle: (fit_0 -> check -> fit_0|check -> fit_0 -> check)"
    with pytest.raises(GraphError, match=cycles):
        flow.to_gristmill()


def test_the_specification_and_the_templates_must_name_the_same_tasks(tmp_path: Path) -> None:
    class Partial(Flow):
        task_template_classes: ClassVar[dict[str, type[workflow.TaskTemplate]]] = {
            "fit": FitTemplate, "validate": CheckTemplate,
        }

    with pytest.raises(SpecError, match="only in the specification: check; only in the templates: "
                                        "validate"):
        Partial("v", FlowSpecification())


def test_workflow_name_template_may_only_use_version() -> None:
    class Named(Flow):
        workflow_name_template = "flow-{version}-{draw}"

    with pytest.raises(TaskArgumentError, match=r"uses \{draw\}"):
        Named("v", FlowSpecification())


def test_attach_tasks_is_required() -> None:
    class NoAttach(workflow.WorkflowTemplate):
        workflow_name_template = "x-{version}"
        task_template_classes: ClassVar[dict[str, type[workflow.TaskTemplate]]] = {}

    with pytest.raises(TypeError, match="attach_tasks"):
        NoAttach("v", FlowSpecification())  # type: ignore[abstract]


def test_running_without_tasks_says_to_attach_them(tmp_path: Path) -> None:
    with pytest.raises(GraphError, match="has no tasks"):
        Flow(str(tmp_path / "v"), FlowSpecification()).run()


def test_get_jobmon_tool_reads_the_package_attributes() -> None:
    package = types.ModuleType("pkg")
    package.__version__ = "2.0"  # type: ignore[attr-defined]
    package.__jobmon_tool_version__ = 15  # type: ignore[attr-defined]
    tool = workflow.get_jobmon_tool(package)
    assert tool == workflow.Tool("pkg", "2.0", "15")
    assert workflow.utilities.get_jobmon_tool(types.ModuleType("bare")).jobmon_tool_version is None
    assert workflow.get_jobmon_tool("cs_flows").jobmon_tool_version == "7"


def test_make_log_dirs_creates_output_and_error(tmp_path: Path) -> None:
    out, err = workflow.utilities.make_log_dirs(tmp_path / "logs")
    assert Path(out).is_dir()
    assert Path(err).is_dir()


def test_a_template_task_runs_by_hand_through_its_function(tmp_path: Path) -> None:
    fit = FitTemplate("fit", FitSpecification())
    fit.task.fn(out=str(tmp_path / "o"), draw=4, code=0)
    assert (tmp_path / "o").read_text() == "fit 4\n"
    assert fit.task.policy == Policy()


def test_task_template_classes_must_be_task_templates() -> None:
    class Wrong(Flow):
        task_template_classes: ClassVar[dict[str, Any]] = {"fit": FitTemplate, "check": dict}

    with pytest.raises(TypeError, match=r"Wrong.task_template_classes\['check'\]"):
        Wrong("v", FlowSpecification())
