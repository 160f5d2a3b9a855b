"""Tests for gristmill.spec.load.

Strict YAML structuring, YAML-path errors, precedence, round trip.
"""

from __future__ import annotations

import pickle
import time
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from gristmill.errors import GristmillError, SpecError
from gristmill.resources import Policy, Resources, escalation
from gristmill.spec.load import CLI_RESOURCE_KEYS, Spec, load_spec, resources_from_cli
from gristmill.spec.settings import TaskSettings, WorkflowSettings

DATA = Path(__file__).parents[1] / "data" / "spec"
G = 2**30


def spec_error(data: object, source: str = "<spec>") -> str:
    with pytest.raises(SpecError) as info:
        Spec.from_dict(data, source)
    return str(info.value)


def write(tmp_path: Path, text: str, name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# --- the example file -------------------------------------------------------------------


def test_production_example_loads_every_section() -> None:
    spec = load_spec(DATA / "production.yaml")

    assert spec.workflow == WorkflowSettings(
        backend="slurm",
        max_concurrent=500,
        fail_fast=False,
        poll_interval=30.0,
        backend_options=(("account", "covid"), ("exclusive", "true")),
    )
    assert spec.default == TaskSettings(
        Resources(project="proj_covid", queue="all.q"), Policy(retries=2)
    )
    fit = spec.settings_for("fit")
    assert fit.resources == Resources(mem="12G", runtime="2h", project="proj_covid", queue="all.q")
    assert fit.policy == Policy(
        retries=2,
        on_oom=escalation("mem", "x1.5", "64G"),
        on_timeout=escalation("runtime", 2),
    )
    forecast = spec.settings_for("forecast")
    assert forecast.resources.queue == "long.q"
    assert forecast.policy == Policy(retries=2, max_concurrent=50)
    assert list(spec.tasks) == ["fit", "forecast"]
    assert spec.source == str(DATA / "production.yaml")


def test_yaml_mem_override_reaches_settings_for(tmp_path: Path) -> None:
    """The covid_shared wrappers dropped this override silently; here it must take effect."""
    decorator = Resources(mem="10G", cores=1, runtime=1000)
    path = write(tmp_path, "tasks:\n  fit:\n    mem: 20G\n")

    spec = load_spec(path)

    assert spec.settings_for("fit").resources.mem == 20 * G
    assert decorator.merged_with(spec.settings_for("fit").resources) == Resources(
        mem="20G", cores=1, runtime=1000
    )
    assert decorator.merged_with(spec.settings_for("validate").resources) == decorator


# --- aliases ----------------------------------------------------------------------------


def test_covid_shared_aliases_map_to_canonical_keys() -> None:
    spec = load_spec(DATA / "covid_shared.yaml")

    assert spec.settings_for("fit").resources == Resources(mem="20G", runtime=5400, cores=2)
    assert spec.to_dict() == {
        "default": {"cores": 2},
        "tasks": {"fit": {"mem": "20G", "runtime": "1h30m"}},
    }


@pytest.mark.parametrize(
    ("alias", "key", "value"),
    [
        ("m_mem_free", "mem", "1G"),
        ("max_runtime_seconds", "runtime", 60),
        ("num_cores", "cores", 2),
    ],
)
def test_alias_and_canonical_key_together_is_an_error(alias: str, key: str, value: object) -> None:
    message = spec_error({"tasks": {"fit": {alias: value, key: value}}})

    assert message.startswith("tasks.fit: ")
    assert repr(alias) in message
    assert repr(key) in message


# --- precedence -------------------------------------------------------------------------


def test_precedence_workflow_then_default_then_task() -> None:
    spec = Spec.from_dict(
        {
            "workflow": {"queue": "all.q", "project": "proj_a"},
            "default": {"queue": "default.q", "mem": "2G", "retries": 1},
            "tasks": {"fit": {"queue": "fit.q", "retries": 0}, "other": None},
        }
    )

    fit = spec.settings_for("fit")
    assert (fit.resources.queue, fit.resources.mem, fit.resources.project) == (
        "fit.q",
        2 * G,
        "proj_a",
    )
    assert fit.policy.retries == 0
    assert spec.settings_for("other") == spec.default
    assert spec.settings_for("unlisted").resources.queue == "default.q"
    assert Spec.from_dict({"workflow": {"queue": "all.q"}}).settings_for("x").resources == (
        Resources(queue="all.q")
    )


def test_task_settings_merge_field_wise() -> None:
    low = TaskSettings(Resources(mem="1G", cores=2, extra={"a": "1"}), Policy(retries=3))
    high = TaskSettings(Resources(mem="4G", extra={"b": "2"}), Policy(max_concurrent=5))

    merged = low.merged_with(high)

    assert merged.resources == Resources(mem="4G", cores=2, extra={"a": "1", "b": "2"})
    assert merged.policy == Policy(retries=3, max_concurrent=5)
    assert low.merged_with(None) is low


# --- value forms ------------------------------------------------------------------------


@pytest.mark.parametrize("factor", ["x1.5", "1.5", 1.5, "X1.5"])
def test_growth_factor_spellings(factor: object) -> None:
    spec = Spec.from_dict({"default": {"on_oom": {"mem": factor}}})

    assert spec.default.policy.on_oom == escalation("mem", 1.5)


def test_values_accept_numbers_clock_times_and_flags() -> None:
    spec = Spec.from_dict(
        {
            "workflow": {"poll_interval": "1m", "fail_fast": True},
            "tasks": {
                "fit": {
                    "mem": "1024B",
                    "runtime": "01:30:00",
                    "cores": "4",
                    "gpus": 0,
                    "extra": {"constraint": "haswell", "nodes": 1, "exclusive": False},
                    "on_timeout": {"runtime": 2, "max": "1d"},
                }
            },
        }
    )

    fit = spec.settings_for("fit")
    assert (fit.resources.mem, fit.resources.runtime, fit.resources.cores) == (1024, 5400, 4)
    assert fit.resources.extra == (
        ("constraint", "haswell"),
        ("exclusive", "false"),
        ("nodes", "1"),
    )
    assert fit.policy.on_timeout == escalation("runtime", 2, 86400)
    assert spec.workflow.poll_interval == 60.0
    assert spec.workflow.fail_fast is True


def test_empty_sections_and_null_values_mean_unset() -> None:
    spec = Spec.from_dict({"workflow": None, "default": {"mem": None}, "tasks": {"fit": {}}})

    assert spec == Spec.empty().merged_with(Spec(tasks={"fit": TaskSettings()}))
    assert Spec.from_dict({}) == Spec.empty()
    assert Spec.empty().settings_for("anything") == TaskSettings()


# --- errors carry the YAML path -----------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"tasks": {"fit": {"mem": "10 gigs"}}}, "tasks.fit.mem: '10 gigs' is not a memory size"),
        ({"tasks": {"fit": {"mem": -1}}}, "tasks.fit.mem: -1 must be a positive memory size"),
        ({"tasks": {"fit": {"runtime": "soon"}}}, "tasks.fit.runtime: 'soon' is not a duration"),
        ({"tasks": {"fit": {"runtime": 0}}}, "tasks.fit.runtime: 0 must be a positive duration"),
        ({"tasks": {"fit": {"cores": 0}}}, "tasks.fit.cores: 0 must be at least 1"),
        ({"tasks": {"fit": {"gpus": "two"}}}, "tasks.fit.gpus: 'two' is not a whole number"),
        ({"tasks": {"fit": {"queue": ""}}}, "tasks.fit.queue: '' must be a non-empty string"),
        ({"tasks": {"fit": {"project": 7}}}, "tasks.fit.project: 7 must be a non-empty string"),
        ({"default": {"retries": -1}}, "default.retries: -1 must be at least 0"),
        ({"default": {"max_concurrent": 0}}, "default.max_concurrent: 0 must be at least 1"),
        ({"tasks": {"fit": {"chunk": 0}}}, "tasks.fit.chunk: 0 must be at least 1"),
        ({"tasks": {"fit": {"chunk": "many"}}}, "tasks.fit.chunk: 'many' is not a whole number"),
        ({"default": {"extra": ["a"]}}, "default.extra: must be a mapping of flag to value"),
        ({"default": {"extra": {"a": {"b": 1}}}}, "default.extra: the value of 'a' must be"),
        ({"default": {"on_oom": {"mem": "lots"}}}, "default.on_oom.mem: 'lots' is not a growth"),
        ({"default": {"on_oom": {"mem": 0.5}}}, "default.on_oom.mem: growth factor 0.5 must be"),
        ({"default": {"on_oom": {"mem": 2, "max": "big"}}}, "default.on_oom.max: 'big' is not a"),
        ({"default": {"on_timeout": {"runtime": 2, "max": -5}}}, "default.on_timeout.max: -5 must"),
        ({"default": {"on_oom": {"runtime": 2}}}, "default.on_oom: the key inside must be 'mem'"),
        (
            {"default": {"on_timeout": {"mem": 2}}},
            "default.on_timeout: the key inside must be 'run",
        ),
        ({"default": {"on_oom": "x1.5"}}, "default.on_oom: must be a mapping like {mem: x1.5"),
        ({"default": "12G"}, "default: must be a mapping like {mem: 10G, runtime: 2h}; got '12G'"),
        ({"tasks": ["fit"]}, "tasks: must be a mapping of task name to settings"),
        ({"tasks": {"fit": 3}}, "tasks.fit: must be a mapping like"),
        ({"workflow": []}, "workflow: must be a mapping like"),
        ({"workflow": {"backend": ""}}, "workflow.backend: '' must be a non-empty string"),
        ({"workflow": {"fail_fast": "no"}}, "workflow.fail_fast: 'no' must be true or false"),
        ({"workflow": {"max_concurrent": -1}}, "workflow.max_concurrent: -1 must be at least 1"),
        ({"workflow": {"poll_interval": 0}}, "workflow.poll_interval: 0 must be a positive"),
        ({"workflow": {"options": "x"}}, "workflow.options: must be a mapping of flag to value"),
        ({"workflow": {"queue": 1}}, "workflow.queue: 1 must be a non-empty string"),
    ],
)
def test_bad_value_errors_start_with_the_yaml_path(data: object, expected: str) -> None:
    message = spec_error(data)

    assert message.startswith(expected), message
    assert "\n" not in message  # one problem, one line; no duplicated field-name prefix
    assert ": mem: " not in message
    assert ": cores: " not in message


@pytest.mark.parametrize(
    ("data", "path", "value"),
    [
        ({"tasks": {"fit": {"mem": 100}}}, "tasks.fit.mem", "100"),
        ({"tasks": {"fit": {"mem": "100"}}}, "tasks.fit.mem", "'100'"),
        ({"default": {"mem": 1.5}}, "default.mem", "1.5"),
        ({"tasks": {"fit": {"m_mem_free": 64}}}, "tasks.fit.m_mem_free", "64"),
        ({"default": {"on_oom": {"mem": "x2", "max": 64}}}, "default.on_oom.max", "64"),
        ({"tasks": {"fit": {"on_oom": {"mem": 2, "max": " 8 "}}}}, "tasks.fit.on_oom.max", "' 8 '"),
    ],
)
def test_a_memory_size_without_a_unit_is_refused_with_its_path(
    data: object, path: str, value: str
) -> None:
    message = spec_error(data, "spec.yaml")

    assert message.startswith(f"spec.yaml: {path}: {value} has no unit; a bare number would "
                              "mean"), message
    assert "bytes, which is almost never meant" in message
    assert "\n" not in message


@pytest.mark.parametrize("size", ["100B", "100b", "1.5G", "100 M", "64GiB"])
def test_a_memory_size_with_a_unit_is_read(size: str) -> None:
    spec = Spec.from_dict({"default": {"mem": size, "on_oom": {"mem": 2, "max": size}}})

    assert spec.default.resources.mem == Resources(mem=size).mem


def test_a_stored_spec_of_an_older_version_keeps_its_bare_bytes() -> None:
    """Older versions kept a size that is not a whole KiB as a bare number in the store."""
    stored = {"tasks": {"fit": {"mem": 322122548, "on_oom": {"mem": "x2", "max": 1000}}}}

    spec = Spec.from_stored(stored, "run (stored spec)")

    assert spec.tasks["fit"].resources.mem == 322122548
    assert spec.tasks["fit"].policy.on_oom == escalation("mem", 2, 1000)
    assert Spec.from_dict(spec.to_dict()) == spec  # written with units from now on
    with pytest.raises(SpecError, match="has no unit"):
        Spec.from_dict(stored)


def test_an_error_under_an_alias_names_the_key_the_spec_wrote() -> None:
    message = spec_error({"tasks": {"fit": {"num_cores": 0, "max_runtime_seconds": "soon"}}})

    assert sorted(message.splitlines()) == [
        "tasks.fit.max_runtime_seconds: 'soon' is not a duration; use seconds or e.g. \"90s\", "
        "\"30m\", \"2h\", \"1h30m\", \"01:30:00\"",
        "tasks.fit.num_cores: 0 must be at least 1; use e.g. 1",
    ]


def test_memory_error_message_matches_the_design() -> None:
    message = spec_error({"tasks": {"fit": {"mem": "10 gigs"}}})

    assert message == 'tasks.fit.mem: \'10 gigs\' is not a memory size; use e.g. "10G" or "500M"'


def test_spec_error_is_a_value_error_and_a_gristmill_error() -> None:
    with pytest.raises(ValueError, match=r"tasks\.fit\.cores"):
        Spec.from_dict({"tasks": {"fit": {"cores": 0}}})
    assert issubclass(SpecError, GristmillError)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"taks": {}}, "taks: unknown key 'taks' (did you mean 'tasks'?); allowed keys: default"),
        ({"tasks": {"fit": {"memm": "1G"}}}, "tasks.fit.memm: unknown key 'memm' (did you mean"),
        ({"default": {"walltime": 1}}, "default.walltime: unknown key 'walltime'; allowed keys:"),
        ({"default": {"on_oom": {"mem": 2, "cap": 3}}}, "default.on_oom.cap: unknown key 'cap'"),
        ({"workflow": {"account": "x"}}, "workflow.account: unknown key 'account'; allowed keys"),
    ],
)
def test_unknown_keys_are_errors_with_their_path(data: object, expected: str) -> None:
    message = spec_error(data)

    assert message.startswith(expected), message


def test_unknown_workflow_key_points_at_options() -> None:
    message = spec_error({"workflow": {"partition": "short"}})

    assert "workflow.options" in message
    options = Spec.from_dict({"workflow": {"options": {"partition": "short", "nice": 10}}})
    assert options.workflow.backend_options == (("nice", "10"), ("partition", "short"))


def test_every_problem_is_reported_at_once_each_with_its_path() -> None:
    message = spec_error(
        {
            "workflow": {"fail_fast": 1},
            "tasks": {"fit": {"mem": "lots", "cores": 0}, "validate": {"runtimee": 1}},
        },
        source="specs/prod.yaml",
    )

    lines = message.splitlines()
    assert sorted(line.split(": ")[1] for line in lines) == [
        "tasks.fit.cores",
        "tasks.fit.mem",
        "tasks.validate.runtimee",
        "workflow.fail_fast",
    ]
    assert all(line.startswith("specs/prod.yaml: ") for line in lines)


@pytest.mark.parametrize("data", [None, [], ["workflow"], "tasks: {}", 3])
def test_non_mapping_spec_is_an_error(data: object) -> None:
    message = spec_error(data)

    assert message.startswith("the spec must be a mapping with keys workflow, default, tasks")


# --- files ------------------------------------------------------------------------------


def test_file_errors_name_the_file() -> None:
    with pytest.raises(SpecError) as info:
        load_spec(DATA / "typo.yaml")

    lines = str(info.value).splitlines()
    assert lines[0].startswith(f"{DATA / 'typo.yaml'}: tasks.fit.mem: '10 gigs' is not")
    assert lines[1].startswith(f"{DATA / 'typo.yaml'}: tasks.fit.runtim: unknown key 'runtim'")
    assert "did you mean 'runtime'?" in lines[1]


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "workflow: {backend: slurm}\ntasks:\n  fit: {mem: 12G\n")

    with pytest.raises(SpecError, match=r"spec\.yaml:4:1: invalid YAML: expected ','"):
        load_spec(path)


def test_tab_indentation_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "tasks:\n\tfit: {}\n")

    with pytest.raises(SpecError, match=r"spec\.yaml:2:1: invalid YAML: found character"):
        load_spec(path)


def test_duplicate_key_is_an_error_not_a_silent_override(tmp_path: Path) -> None:
    path = write(tmp_path, "tasks:\n  fit:\n    mem: 12G\n    mem: 20G\n")

    with pytest.raises(SpecError, match=r"spec\.yaml:4:5: .*'mem' is given twice .*line 3"):
        load_spec(path)


def test_yaml_anchors_and_merge_keys_still_work(tmp_path: Path) -> None:
    path = write(
        tmp_path, "tasks:\n  fit: &big {mem: 12G, cores: 4}\n  forecast: {<<: *big, mem: 2G}\n"
    )

    spec = load_spec(path)

    assert spec.settings_for("forecast").resources == Resources(mem="2G", cores=4)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"nope\.yaml: no such spec file"):
        load_spec(tmp_path / "nope.yaml")


def test_unreadable_paths(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="cannot read the spec file"):
        load_spec(tmp_path)
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00mem")
    with pytest.raises(SpecError, match=r"binary\.yaml: cannot read the spec file \(not UTF-8"):
        load_spec(binary)


def test_non_mapping_yaml_file_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "- fit\n- validate\n")

    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert str(info.value).startswith(f"{path}: the spec must be a mapping")


def test_empty_or_comment_only_file_is_an_empty_spec(tmp_path: Path) -> None:
    assert load_spec(write(tmp_path, "# nothing to override yet\n")) == Spec.empty()


# --- check_tasks ------------------------------------------------------------------------


def test_check_tasks_lists_every_unknown_task_and_the_known_ones() -> None:
    spec = Spec.from_dict({"tasks": {"fitt": {}, "validate": {}, "zzz": {}}}, "specs/prod.yaml")

    with pytest.raises(SpecError) as info:
        spec.check_tasks({"validate", "fit"})

    assert str(info.value).splitlines() == [
        "specs/prod.yaml: tasks.fitt: unknown task 'fitt'; known tasks: fit, validate; "
        "did you mean 'fit'?",
        "specs/prod.yaml: tasks.zzz: unknown task 'zzz'; known tasks: fit, validate",
    ]
    spec.check_tasks(["fit", "validate", "fitt", "zzz"])  # no error
    Spec.empty().check_tasks([])


# --- round trip and rendering -------------------------------------------------------------


def test_to_dict_uses_human_units() -> None:
    spec = load_spec(DATA / "production.yaml")

    assert spec.to_dict()["tasks"] == {
        "fit": {
            "mem": "12G",
            "runtime": "2h",
            "on_oom": {"mem": "x1.5", "max": "64G"},
            "on_timeout": {"runtime": "x2"},
        },
        "forecast": {"queue": "long.q", "max_concurrent": 50},
    }
    assert Spec.from_dict(spec.to_dict()) == spec


def test_round_trip_through_a_yaml_file(tmp_path: Path) -> None:
    spec = load_spec(DATA / "production.yaml")
    path = write(tmp_path, yaml.safe_dump(spec.to_dict()), "again.yaml")

    assert load_spec(path) == spec


mems = st.one_of(st.none(), st.integers(1, 2**44))
runtimes = st.one_of(st.none(), st.integers(1, 40 * 86400))
texts = st.one_of(st.none(), st.sampled_from(["all.q", "long.q", "proj_covid"]))
factors = st.sampled_from([1.1, 1.5, 2.0, 3.0, 1.0000001])
task_settings = st.builds(
    TaskSettings,
    resources=st.builds(
        Resources,
        mem=mems,
        runtime=runtimes,
        cores=st.one_of(st.none(), st.integers(1, 128)),
        gpus=st.one_of(st.none(), st.integers(0, 8)),
        queue=texts,
        project=texts,
        extra=st.dictionaries(st.sampled_from(["a", "b"]), st.sampled_from(["1", "x y"])),
    ),
    policy=st.builds(
        Policy,
        retries=st.one_of(st.none(), st.integers(0, 5)),
        max_concurrent=st.one_of(st.none(), st.integers(1, 1000)),
        on_oom=st.one_of(st.none(), st.builds(escalation, st.just("mem"), factors, mems)),
        on_timeout=st.one_of(
            st.none(), st.builds(escalation, st.just("runtime"), factors, runtimes)
        ),
    ),
)
specs = st.builds(
    Spec,
    workflow=st.builds(
        WorkflowSettings,
        backend=st.one_of(st.none(), st.sampled_from(["local", "slurm"])),
        max_concurrent=st.one_of(st.none(), st.integers(1, 10**4)),
        fail_fast=st.one_of(st.none(), st.booleans()),
        poll_interval=st.one_of(st.none(), st.sampled_from([0.5, 30.0, 2.25])),
        backend_options=st.sampled_from([(), (("account", "covid"),)]),
    ),
    default=task_settings,
    tasks=st.dictionaries(st.sampled_from(["fit", "validate", "forecast"]), task_settings),
)


@settings(max_examples=60, deadline=None)
@given(specs)
def test_round_trip_property(spec: Spec) -> None:
    data = spec.to_dict()

    assert Spec.from_dict(data) == spec
    assert Spec.from_dict(yaml.safe_load(yaml.safe_dump(data))) == spec


def test_spec_is_hashable_picklable_and_its_tasks_compare_as_a_mapping() -> None:
    spec = load_spec(DATA / "production.yaml")

    assert pickle.loads(pickle.dumps(spec)) == spec
    assert hash(spec) == hash(Spec.from_dict(spec.to_dict()))
    assert spec.tasks == {"forecast": spec.tasks["forecast"], "fit": spec.tasks["fit"]}
    with pytest.raises(KeyError):
        spec.tasks["nope"]


# --- layering specs ---------------------------------------------------------------------


def test_merged_with_lets_the_other_spec_win_key_by_key() -> None:
    base = Spec.from_dict(
        {
            "workflow": {"backend": "slurm", "max_concurrent": 500, "options": {"a": 1, "b": 1}},
            "default": {"retries": 2, "queue": "all.q"},
            "tasks": {"fit": {"mem": "12G", "runtime": "2h"}, "validate": {"cores": 2}},
        },
        "workflow.yaml",
    )
    cli = Spec.from_dict(
        {
            "workflow": {"backend": "local", "options": {"b": 2}},
            "default": {"retries": 0},
            "tasks": {"fit": {"mem": "20G"}, "forecast": {"queue": "long.q"}},
        },
        "cli.yaml",
    )

    merged = base.merged_with(cli)

    assert merged.workflow == WorkflowSettings(
        backend="local", max_concurrent=500, backend_options=(("a", "1"), ("b", "2"))
    )
    assert merged.settings_for("fit").resources == Resources(mem="20G", runtime="2h", queue="all.q")
    assert merged.settings_for("fit").policy.retries == 0
    assert merged.settings_for("validate").resources.cores == 2
    assert merged.settings_for("forecast").resources.queue == "long.q"
    assert merged.source == "workflow.yaml + cli.yaml"
    assert Spec.empty().merged_with(base) == base
    assert Spec.empty().merged_with(base).source == "workflow.yaml"


# --- the CLI layer ----------------------------------------------------------------------


def test_resources_from_cli() -> None:
    assert CLI_RESOURCE_KEYS == ("mem", "cores", "runtime", "queue", "project")
    assert resources_from_cli("20G", 4, "1h30m", "long.q", "proj") == Resources(
        mem="20G", cores=4, runtime=5400, queue="long.q", project="proj"
    )
    assert resources_from_cli(None, None, None, None, None) == Resources()


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"mem": "10 gigs"}, "--mem: '10 gigs' is not a memory size"),
        ({"cores": 0}, "--cores: 0 must be at least 1"),
        ({"runtime": "later"}, "--runtime: 'later' is not a duration"),
        ({"queue": ""}, "--queue: '' must be a non-empty string"),
        ({"mem": "100"}, "--mem: '100' has no unit; a bare number would mean 100 bytes"),
    ],
)
def test_resources_from_cli_errors_name_the_option(
    kwargs: dict[str, object], expected: str
) -> None:
    with pytest.raises(SpecError) as info:
        resources_from_cli(**kwargs)  # type: ignore[arg-type]

    assert str(info.value).startswith(expected)


def test_a_yaml_alias_bomb_fails_fast_with_a_short_message(tmp_path: Path) -> None:
    """A few hundred bytes of nested aliases expand to 10**9 values: refused at once."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 10):
        lines.append(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]")
    lines.append("tasks: {fit: {mem: *a9}}")
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\n")
    assert path.stat().st_size < 1000
    started = time.monotonic()
    with pytest.raises(SpecError, match=r"expands to more than 100,000 values") as info:
        load_spec(path)
    assert time.monotonic() - started < 5
    assert len(str(info.value)) < 400


def test_a_spec_with_a_few_aliases_still_loads(tmp_path: Path) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text("default: &base {mem: 2G, retries: 1}\ntasks:\n  fit: *base\n")
    assert load_spec(path).settings_for("fit").resources.mem == 2 * 2**30


def test_launch_is_a_task_setting_layered_like_retries_and_rendered_back() -> None:
    spec = Spec.from_dict({"default": {"launch": "exec"}, "tasks": {"fit": {"launch": "fork"}}})
    assert spec.settings_for("fit").policy.launch == "fork"
    assert spec.settings_for("other").policy.launch == "exec"
    assert Spec.from_dict(spec.to_dict()) == spec
    assert spec.to_dict()["tasks"]["fit"] == {"launch": "fork"}


def test_a_bad_launch_names_the_task_and_the_allowed_modes() -> None:
    with pytest.raises(SpecError) as info:
        Spec.from_dict({"tasks": {"fit": {"launch": "spawn"}}})
    assert "tasks.fit.launch: 'spawn' is not a launch mode; use one of exec, fork" in str(
        info.value)
    with pytest.raises(SpecError, match="launch: 'vfork' is not a launch mode"):
        Policy(launch="vfork")
