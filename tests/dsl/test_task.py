"""Tests for gristmill.dsl.task: the @gm.task decorator, task commands and their error handling."""

from __future__ import annotations

import json

import click
import gm_tasks
import pytest
from click.testing import CliRunner
from gm_testing import run_python

import gristmill as gm
from gristmill.dsl.registry import registry
from gristmill.dsl.task import Task, default_script_name, get_task
from gristmill.errors import NotInWorkflowError, SpecError, TaskArgumentError
from gristmill.resources import Policy, Resources

G = 2**30


# --- the decorator -----------------------------------------------------------------------


def test_task_over_a_function_with_click_params() -> None:
    fit = gm_tasks.fit
    assert isinstance(fit, Task)
    assert fit.name == "fit"
    assert fit.resources == Resources(mem="10G", cores=1, runtime=1000)
    assert fit.key == "gm_tasks:fit"
    assert fit.entry_point == "gm_tasks:fit.main"
    assert fit.script == "gm-tasks-fit"  # prefixed by its package: PATH is shared
    assert fit.job_name is None
    assert fit.signature.names == ["output_version", "draw"]
    assert isinstance(fit.command, click.Command)
    assert fit.command.help == "Fit one draw."
    assert get_task("gm_tasks:fit") is fit
    assert "gm_tasks:fit" in registry()


def test_fn_is_the_plain_function_for_unit_tests(capsys: pytest.CaptureFixture[str]) -> None:
    gm_tasks.fit.fn(output_version="v", draw=2)
    assert json.loads(capsys.readouterr().out) == {"output_version": "v", "draw": 2}


def test_task_options_reach_resources_and_policy() -> None:
    @gm.task(mem="2G", cores=4, runtime="2h", name="t_{x}", queue="long.q", retries=3,
             gpus=1, project="proj", max_concurrent=5, script="my-script", constraint="skylake",
             chunk=50)
    @click.option("--x", type=int, required=True)
    def with_everything(x: int) -> None: ...

    assert with_everything.resources == Resources(
        mem=2 * G, cores=4, runtime=7200, queue="long.q", gpus=1, project="proj",
        extra={"constraint": "skylake"},
    )
    assert with_everything.policy == Policy(retries=3, max_concurrent=5, chunk=50)
    assert with_everything.job_name == "t_{x}"
    assert with_everything.script == "my-script"
    assert with_everything.name == "with_everything"


@pytest.mark.parametrize("chunk", [0, -3, "ten", 2.5, True])
def test_a_chunk_below_one_or_not_a_whole_number_is_refused(chunk: object) -> None:
    with pytest.raises(SpecError, match=r"^chunk: .* (must be at least 1|is not a whole number)"):
        gm.task(chunk=chunk)  # type: ignore[call-overload]


def test_bare_decorator_and_default_script_name() -> None:
    @gm.task
    @click.option("--n", type=int, default=0)
    def make_tables(n: int) -> None:
        """Make the tables."""

    assert isinstance(make_tables, Task)
    assert make_tables.script == f"{make_tables.module.split('.')[0].replace('_', '-')}-make-tables"
    assert make_tables.command.name == "make-tables"
    assert make_tables.resources == Resources(cores=1)
    assert make_tables.key.endswith(".<locals>.make_tables")


@pytest.mark.parametrize(
    ("module", "name", "script"),
    [
        ("seiir_like.tasks", "fit", "seiir-like-fit"),
        ("seiir_like.stages.fit", "fit_draw", "seiir-like-fit-draw"),
        ("seiir", "seiir_fit", "seiir-fit"),  # not prefixed twice
        ("seiir.tasks", "seiir", "seiir"),
        ("seiir.tasks", "seiirish", "seiir-seiirish"),
        ("_private.tasks", "fit", "private-fit"),
        ("__main__", "fit", "fit"),  # a script run directly has no package to name
    ],
)
def test_default_script_names_carry_the_package(module: str, name: str, script: str) -> None:
    assert default_script_name(module, name) == script


def test_task_without_click_params() -> None:
    @gm.task()
    def nothing() -> None: ...

    assert nothing.signature.names == []
    result = CliRunner().invoke(nothing.command, ["-v"])
    assert result.exit_code == 0, result.output


def test_invalid_decorator_resources_fail_at_decoration_time() -> None:
    with pytest.raises(SpecError, match="mem: '10 gigs' is not a memory size"):
        gm.task(mem="10 gigs")
    with pytest.raises(SpecError, match="cores: 0 must be at least 1"):
        gm.task(cores=0)


def test_applying_twice_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="applied twice to task 'fit'"):
        gm.task(gm_tasks.fit)
    with pytest.raises(TypeError, match="applied twice"):
        gm.task(mem="1G")(gm_tasks.fit)


def test_click_option_stacked_above_the_task_is_refused() -> None:
    with pytest.raises(TypeError, match=r"put @gm\.task on top"):

        @click.option("--late")
        @gm.task
        @click.option("--early")
        def misordered(early: str, late: str) -> None: ...


def test_name_template_placeholders_must_be_arguments() -> None:
    with pytest.raises(TaskArgumentError) as info:

        @gm.task(name="forecast_{location}")
        @click.option("--location-id", type=int)
        def forecast(location_id: int) -> None: ...

    message = str(info.value)
    assert "task 'forecast'" in message
    assert "{location}" in message
    assert "use one of: location_id, task" in message  # the allowed set


def test_name_template_may_use_task_and_format_specs() -> None:
    @gm.task(name="{task}_{location_id:04d}")
    @click.option("--location-id", type=int)
    def forecast(location_id: int) -> None: ...

    assert forecast.job_name == "{task}_{location_id:04d}"


def test_malformed_name_template_is_a_task_argument_error() -> None:
    with pytest.raises(TaskArgumentError, match=r"name template 'x_\{'"):

        @gm.task(name="x_{")
        def broken() -> None: ...


# --- wrapping an existing click command ------------------------------------------------------


def test_task_over_an_existing_click_command() -> None:
    legacy = gm_tasks.legacy
    original = gm_tasks._legacy_command
    assert legacy.fn is original.callback
    assert legacy.name == "_legacy_command"
    assert legacy.signature.names == ["n", "mode"]
    names = [p.name for p in legacy.command.params]
    assert names == ["n", "mode", "verbose", "with_debugger"]
    assert [p.name for p in original.params] == ["n", "mode"]  # the original is untouched
    result = CliRunner().invoke(legacy.command, ["--n", "3", "--mode", "slow"])
    assert result.exit_code == 0, result.output
    assert "legacy 3 slow" in result.output


def test_a_command_that_already_has_the_cli_tools_options_is_kept_as_is() -> None:
    seen: list[tuple[int, bool]] = []

    @gm.task
    @click.command()
    @click.option("-v", "--verbose", count=True)
    @click.option("--with-debugger", is_flag=True)
    def own(verbose: int, with_debugger: bool) -> None:
        seen.append((verbose, with_debugger))

    result = CliRunner().invoke(own.command, ["-vv", "--with-debugger"])
    assert result.exit_code == 0, result.output
    assert seen == [(2, True)]
    assert own.signature.names == []


# --- the task command: -v, --with-debugger, exceptions ---------------------------------------


def test_every_task_command_has_verbose_and_with_debugger() -> None:
    for task in (gm_tasks.fit, gm_tasks.legacy, gm_tasks.record):
        result = CliRunner().invoke(task.command, ["--help"])
        assert result.exit_code == 0
        assert "-v, --verbose" in result.output
        assert "--with-debugger" in result.output
        params = {p.name: p for p in task.command.params}
        assert isinstance(params["verbose"], click.Option)
        assert params["verbose"].count


@pytest.mark.parametrize(
    ("flags", "shown", "hidden"),
    [
        ([], [], ["fitting draw", "debug detail"]),
        (["-v"], ["fitting draw"], ["debug detail"]),
        (["-vv"], ["fitting draw", "debug detail"], []),
    ],
)
def test_verbose_configures_loguru(flags: list[str], shown: list[str], hidden: list[str]) -> None:
    result = CliRunner().invoke(
        gm_tasks.fit.command, [*flags, "--output-version", "v", "--draw", "5"]
    )
    assert result.exit_code == 0, result.output
    for text in shown:
        assert text in result.output
    for text in hidden:
        assert text not in result.output


def test_task_command_checks_its_arguments_like_click() -> None:
    result = CliRunner().invoke(gm_tasks.fit.command, ["--output-version", "v", "--draw", "x"])
    assert result.exit_code == 2
    assert "'x' is not a valid integer" in result.output


def test_exception_is_logged_with_traceback_and_exits_1() -> None:
    """A real process: the traceback must reach stderr (the attempt's log) even without -v."""
    done = run_python("-m", "gristmill.dsl.exec", "gm_tasks:boom", "--k", "3")
    assert done.returncode == 1, done.stderr
    assert "Traceback (most recent call last)" in done.stderr
    assert 'raise RuntimeError(f"boom {k}")' in done.stderr
    assert "RuntimeError: boom 3" in done.stderr
    assert done.stdout == ""


def test_with_debugger_opens_pdb_post_mortem() -> None:
    """pdb stops in the task's frame; 'p secret' prints a local, 'q' quits, exit code 1."""
    done = run_python(
        "-m", "gristmill.dsl.exec", "gm_tasks:boom", "--k", "3", "--with-debugger",
        input="p secret\nq\n",
    )
    assert done.returncode == 1, done.stderr
    assert "(Pdb)" in done.stdout
    assert "-> raise RuntimeError" in done.stdout
    assert "\n21\n" in done.stdout.replace("(Pdb) ", "\n")
    assert "RuntimeError: boom 3" in done.stderr


def test_with_debugger_continue_also_exits_1() -> None:
    done = run_python(
        "-m", "gristmill.dsl.exec", "gm_tasks:boom", "--with-debugger", input="c\n"
    )
    assert done.returncode == 1
    assert "(Pdb)" in done.stdout


def test_main_is_the_console_script_target() -> None:
    with pytest.raises(SystemExit) as info:
        gm_tasks.legacy.main(["--n", "-1"])
    assert info.value.code == 1
    with pytest.raises(SystemExit) as info:
        gm_tasks.legacy.main(["--n", "1"])
    assert info.value.code == 0


def test_keyboard_interrupt_is_not_swallowed() -> None:
    @gm.task
    def interrupted() -> None:
        raise KeyboardInterrupt

    result = CliRunner().invoke(interrupted.command, [])
    assert result.exit_code == 1
    assert "Aborted" in result.output  # click's own handling, not a logged traceback
    assert "Traceback" not in result.output


# --- calling a task ----------------------------------------------------------------------


def test_calling_a_task_outside_a_workflow_says_what_to_do() -> None:
    with pytest.raises(NotInWorkflowError) as info:
        gm_tasks.fit(output_version="v", draw=1)
    message = str(info.value)
    assert "outside a workflow" in message
    assert "@gm.workflow" in message
    assert "fit.fn(...)" in message
    with pytest.raises(NotInWorkflowError):
        gm_tasks.fit.map(output_version="v", draw=[1, 2])


def test_options_returns_a_copy_with_other_defaults() -> None:
    bigger = gm_tasks.fit.options(resources=Resources(mem="20G"), policy=Policy(retries=4))
    assert bigger.resources == Resources(mem="20G", cores=1, runtime=1000)
    assert bigger.policy.retries == 4
    assert gm_tasks.fit.resources.mem == 10 * G
    assert bigger.key == gm_tasks.fit.key


# --- program= : tasks that run an external program -----------------------------------------


def test_program_task_renders_the_program_then_its_options(tmp_path: object) -> None:
    import subprocess
    import sys

    from gristmill.dsl.scripts import render_argv

    @gm.task(program=[sys.executable, "-c", "import sys, json; print(json.dumps(sys.argv[1:]))"])
    @click.option("--draw", type=int, required=True)
    @click.option("--label", required=True)
    def external_fit(draw: int, label: str) -> None:
        """Runs elsewhere; the body is never called."""

    argv = render_argv(external_fit, {"draw": 3, "label": "a b; $(x)"})
    assert argv[:2] == [sys.executable, "-c"]
    out = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=30).stdout
    assert json.loads(out) == ["--draw", "3", "--label", "a b; $(x)"]


def test_program_must_be_an_argv_list() -> None:
    with pytest.raises(TypeError, match="argv list"):
        gm.task(program="true")
    with pytest.raises(TypeError, match="argv list"):
        gm.task(program=[])


def test_launch_is_checked_by_the_decorator() -> None:
    from gristmill.errors import SpecError

    with pytest.raises(SpecError, match="launch: 'forked' is not a launch mode; use one of "
                                        "exec, fork"):
        gm.task(launch="forked")
    with pytest.raises(TypeError, match="a program= task"):
        gm.task(launch="fork", program=["Rscript", "fit.R"])
    assert gm.task(launch="fork")  # a decorator, waiting for its function
