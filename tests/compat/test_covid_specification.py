"""TaskSpecification / WorkflowSpecification: covid_shared's bounds, strict keys, real overrides."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import pytest
from cs_flows import CheckSpecification, FitSpecification, FlowSpecification

from gristmill.compat.covid_shared import workflow
from gristmill.errors import SpecError
from gristmill.resources import Resources

G = 2**30


def test_defaults_become_gristmill_resources() -> None:
    spec = FitSpecification()
    assert (spec.max_runtime_seconds, spec.m_mem_free, spec.num_cores) == (1000, "1G", 1)
    assert spec.resources == Resources(mem="1G", cores=1, runtime=1000)


def test_an_override_replaces_only_the_keys_it_names() -> None:
    spec = FitSpecification({"m_mem_free": "20G"})
    assert spec.resources == Resources(mem=20 * G, cores=1, runtime=1000)


def test_the_input_dict_is_left_alone() -> None:
    given = {"num_cores": 4, "queue": "all.q"}
    FitSpecification(given)
    assert given == {"num_cores": 4, "queue": "all.q"}  # covid_shared popped from it


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("max_runtime_seconds", 99, "outside the allowed 100 to 86400 seconds"),
        ("max_runtime_seconds", 86401, "outside the allowed 100 to 86400 seconds"),
        ("max_runtime_seconds", True, "is not a runtime"),
        ("m_mem_free", "1001G", "outside the allowed 1G to 1000G"),
        ("m_mem_free", "512M", "outside the allowed 1G to 1000G"),
        ("m_mem_free", "10 gigs", "is not a memory size"),
        ("num_cores", 80, "outside the allowed 1 to 79 cores"),
        ("num_cores", 0, "outside the allowed 1 to 79 cores"),
        ("num_cores", 2.5, "is not a whole number of cores"),
    ],
)
def test_values_outside_the_original_bounds_are_refused(key: str, value: Any, message: str) -> None:
    with pytest.raises(SpecError, match=message) as caught:
        FitSpecification({key: value})
    assert f"FitSpecification.{key}" in str(caught.value)


def test_the_limits_of_the_bounds_are_allowed() -> None:
    spec = FitSpecification({"max_runtime_seconds": 86400, "m_mem_free": "1000G", "num_cores": 79})
    assert spec.num_cores == 79
    low = FitSpecification({"max_runtime_seconds": 100, "m_mem_free": "1G", "num_cores": 1})
    assert low.max_runtime_seconds == 100


def test_bounds_are_configurable_per_subclass() -> None:
    class BigSpecification(workflow.TaskSpecification):
        default_max_runtime_seconds = 7 * 86400
        default_m_mem_free = "2000G"
        default_num_cores = 128
        runtime_bounds: ClassVar[tuple[int, int]] = (1, 30 * 86400)
        mem_bounds_gb: ClassVar[tuple[float, float]] = (0.5, 4000)
        num_cores_bounds: ClassVar[tuple[int, int]] = (1, 256)

    assert BigSpecification({"m_mem_free": "512M"}).m_mem_free == "512M"
    with pytest.raises(SpecError, match="BigSpecification"):
        BigSpecification({"num_cores": 300})


def test_bad_class_defaults_fail_when_the_class_is_defined() -> None:
    with pytest.raises(SpecError, match=r"Bad.default_num_cores: 200 is outside"):

        class Bad(workflow.TaskSpecification):
            default_max_runtime_seconds = 1000
            default_m_mem_free = "1G"
            default_num_cores = 200


def test_a_missing_class_default_names_it() -> None:
    with pytest.raises(AttributeError, match="Half has no default_num_cores"):

        class Half(workflow.TaskSpecification):
            default_max_runtime_seconds = 1000
            default_m_mem_free = "1G"


def test_unknown_task_keys_are_errors_not_warnings() -> None:
    with pytest.raises(SpecError, match=r"unknown key\(s\) 'm_mem_fre'"):
        FitSpecification({"m_mem_fre": "20G"})


def test_to_dict_writes_covid_shareds_keys_and_both_names_are_read() -> None:
    spec = FitSpecification({"max_runtime_seconds": 2000, "m_mem_free": "4G", "num_cores": 2})
    assert spec.to_dict() == {"runtime": 2000, "memory": "4G", "cores": 2, "queue": None}
    assert FitSpecification({"runtime": 2000, "memory": "4G", "cores": 2}) == spec
    own = FitSpecification({"queue": "all.q", "project": "proj_x"})
    assert list(own.to_dict()) == ["runtime", "memory", "cores", "queue", "project"]
    with pytest.raises(SpecError, match="m_mem_free is given twice"):
        FitSpecification({"memory": "4G", "m_mem_free": "5G"})


def test_a_task_specification_round_trips_through_dict_and_yaml(tmp_path: Path) -> None:
    spec = FitSpecification({"max_runtime_seconds": "2h", "m_mem_free": "12G", "queue": "long.q"})
    assert spec.max_runtime_seconds == 7200
    assert FitSpecification.from_dict(spec.to_dict()) == spec
    spec.to_yaml(tmp_path / "fit.yaml")
    assert FitSpecification.from_yaml(tmp_path / "fit.yaml") == spec
    assert spec != FitSpecification()


def test_validate_rechecks_changed_attributes() -> None:
    spec = FitSpecification()
    spec.num_cores = 500
    with pytest.raises(SpecError, match="num_cores: 500 is outside"):
        spec.validate()


def test_workflow_overrides_apply_to_their_task_only() -> None:
    spec = FlowSpecification.from_dict(
        {"project": "proj_x", "queue": "all.q", "tasks": {"fit": {"m_mem_free": "20G"}}}
    )
    fit, check = spec.task_specifications["fit"], spec.task_specifications["check"]
    assert fit.resources == Resources(mem="20G", cores=1, runtime=1000, queue="all.q",
                                      project="proj_x")
    assert check.resources == Resources(mem="2G", cores=2, runtime=600, queue="all.q",
                                        project="proj_x")


def test_a_task_may_set_its_own_queue() -> None:
    spec = FlowSpecification.from_dict({"queue": "all.q", "tasks": {"fit": {"queue": "long.q"}}})
    assert spec.task_specifications["fit"].queue == "long.q"
    assert spec.task_specifications["check"].queue == "all.q"


def test_an_unknown_task_name_is_an_error_with_a_suggestion() -> None:
    with pytest.raises(SpecError) as caught:
        FlowSpecification.from_dict({"tasks": {"fitt": {"num_cores": 2}}})
    message = str(caught.value)
    assert "tasks.fitt: unknown task 'fitt'" in message
    assert "known tasks: fit, check" in message
    assert "did you mean 'fit'?" in message


def test_a_bad_value_names_its_yaml_path(tmp_path: Path) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text("tasks:\n  check:\n    num_cores: 100\n")
    with pytest.raises(SpecError, match=r"spec.yaml: tasks.check.num_cores: 100 is outside"):
        FlowSpecification.from_yaml(path)


def test_unknown_workflow_keys_are_errors() -> None:
    with pytest.raises(SpecError, match=r"unknown key\(s\) 'qeue'"):
        FlowSpecification.from_dict({"qeue": "all.q"})


def test_a_workflow_specification_round_trips_through_yaml(tmp_path: Path) -> None:
    spec = FlowSpecification.from_dict(
        {
            "project": "proj_x",
            "queue": "all.q",
            "backend": "local",
            "max_concurrent": 4,
            "tasks": {"fit": {"num_cores": 3, "queue": "long.q"}, "check": None},
        }
    )
    text = spec.to_yaml(tmp_path / "spec.yaml")
    assert "long.q" in text
    again = FlowSpecification.from_yaml(tmp_path / "spec.yaml")
    assert again == spec
    assert again.to_dict() == spec.to_dict()
    assert (again.backend, again.max_concurrent) == ("local", 4)
    data = spec.to_dict()  # covid_shared's shape: project, queue, tasks with their queue
    assert list(data) == ["project", "queue", "backend", "max_concurrent", "tasks"]
    assert (data["tasks"]["fit"]["queue"], data["tasks"]["check"]["queue"]) == ("long.q", "all.q")
    assert FlowSpecification().to_dict()["project"] is None


def test_allowed_projects_and_queues_restrict_values_when_set() -> None:
    class SiteSpecification(FlowSpecification):
        allowed_queues: ClassVar[tuple[str, ...]] = ("all.q", "long.q")
        default_queue: ClassVar[str | None] = "all.q"

    assert SiteSpecification().queue == "all.q"
    with pytest.raises(SpecError, match=r"queue: 'd\.q' is not allowed for SiteSpecification"):
        SiteSpecification(queue="d.q")


def test_a_specification_without_tasks_says_how_to_define_them() -> None:
    class Empty(workflow.WorkflowSpecification):
        pass

    with pytest.raises(TypeError, match="Empty has no tasks"):
        Empty()


def test_tasks_must_map_to_task_specification_classes() -> None:
    with pytest.raises(TypeError, match=r"Wrong.tasks\['fit'\]"):

        class Wrong(workflow.WorkflowSpecification):
            tasks: ClassVar[dict[str, Any]] = {"fit": dict}


def test_a_missing_specification_file_is_a_spec_error(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="no such specification file"):
        FlowSpecification.from_yaml(tmp_path / "nope.yaml")


def test_specification_classes_are_reachable_as_in_covid_shared() -> None:
    assert workflow.specification.TaskSpecification is workflow.TaskSpecification
    assert isinstance(CheckSpecification(), workflow.TaskSpecification)
