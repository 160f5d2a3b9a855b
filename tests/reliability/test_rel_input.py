"""Bad input: a clear error (what, where, how to fix), exit code 2, nothing written.

Every case runs ``gristmill run`` (in-process, through click) against a run root that
must still not exist afterwards. Argument values a shell would interpret reach the
task literally; a NUL byte, which no command line can carry, is refused.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path
from types import ModuleType

import pytest
from click.testing import CliRunner, Result
from gm_testing import subprocess_env
from rel_support import assert_user_error, tree

from gristmill.cli.app import main


@pytest.fixture
def modules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
            ) -> tuple[Path, str]:
    """(folder on sys.path for generated workflow modules, a module-name prefix unique to
    this test: modules stay in sys.modules and tasks in the registry)."""
    folder = tmp_path / "mods"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    return folder, "relbad_" + re.sub(r"\W", "_", request.node.name)


def write_module(modules: tuple[Path, str], suffix: str, source: str) -> str:
    folder, prefix = modules
    name = f"{prefix}_{suffix}"
    (folder / f"{name}.py").write_text(textwrap.dedent(source))
    return name


def run(tmp_path: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["run", *args, "--run-dir", str(tmp_path / "runs")])


def refused(tmp_path: Path, result: Result, *fragments: str, user_traceback: bool = False
            ) -> str:
    message = assert_user_error(result, *fragments, user_traceback=user_traceback)
    assert tree(tmp_path / "runs") == [], "bad input left something in the run root"
    return message


STAGES = ["rel_tasks:stages", "--n", "2"]


# -- resources -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flag", "value", "fragment"),
    [
        ("--mem", "ten gigs", "--mem: 'ten gigs' is not a memory size; use e.g. \"10G\""),
        ("--mem", "-1G", "--mem: '-1G' is not a memory size"),
        ("--mem", "0", "--mem: '0' must be a positive memory size"),
        ("--mem", "0G", "--mem: '0G' must be a positive memory size"),
        ("--runtime", "soon", "--runtime: 'soon' is not a duration; use seconds or e.g. \"90s\""),
        ("--runtime", "-5m", "--runtime: '-5m' is not a duration"),
        ("--runtime", "0", "--runtime: '0' must be a positive duration"),
        ("--runtime", "-1", "--runtime: '-1' must be a positive duration"),
        ("--max-mem", "lots", "--max-mem: 'lots' is not a memory size"),
        ("--option", "grace=soon", "local backend option grace='soon' is not a number"),
        ("--option", "max_mem=0", "max_mem: '0' must be a positive memory size"),
    ],
)
def test_bad_resources_on_the_command_line(
    rt: ModuleType, tmp_path: Path, flag: str, value: str, fragment: str
) -> None:
    refused(tmp_path, run(tmp_path, *STAGES, "--path", "x", f"{flag}={value}"), fragment)


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ('tasks: {quick_effect: {mem: "10 gigs"}}',
         ["tasks.quick_effect.mem: '10 gigs' is not a memory size; use e.g. \"10G\""]),
        ("tasks: {quick_effect: {mem: -1G, runtime: 0}}",
         ["tasks.quick_effect.mem: '-1G' is not a memory size",
          "tasks.quick_effect.runtime: 0 must be a positive duration"]),
        ("default: {mem: 0, runtime: -60}",
         ["default.mem: 0 must be a positive memory size", "default.runtime: -60 must be a"]),
        ("tasks: {quik_effect: {mem: 1G}}",
         ["tasks.quik_effect: unknown task 'quik_effect'; known tasks: quick_effect; did you "
          "mean 'quick_effect'?"]),
        ("tasks: {quick_effect: {memory: 1G}}",
         ["tasks.quick_effect.memory: unknown key 'memory' (did you mean 'mem'?); allowed keys:"]),
        ("workflow: {backnd: local}", ["workflow.backnd: unknown key 'backnd'"]),
        ("taks: {}", ["taks: unknown key 'taks' (did you mean 'tasks'?)"]),
        ("- quick_effect\n- mem: 1G\n",
         ["the spec must be a mapping with keys workflow, default, tasks; got a list"]),
        ("just text", ["the spec must be a mapping with keys workflow, default, tasks; got "
                       "'just text'"]),
        ("tasks: {a: [}", [":1:13: invalid YAML: expected the node content, but found '}'"]),
        ("tasks: [1, 2]", ["tasks: must be a mapping of task name to settings"]),
    ],
    ids=["mem-garbage", "negative-zero", "default-zero", "unknown-task", "unknown-key",
         "unknown-workflow-key", "unknown-section", "list", "scalar", "syntax", "tasks-list"],
)
def test_bad_spec_files(rt: ModuleType, tmp_path: Path, text: str, fragments: list[str]) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(text)
    message = refused(tmp_path, run(tmp_path, *STAGES, "--path", "x", "--spec", str(spec)),
                      *fragments)
    assert str(spec) in message  # where: the file, then the YAML path


def test_bad_resources_in_the_decorator_fail_the_import(
    rt: ModuleType, tmp_path: Path, modules: tuple[Path, str]
) -> None:
    name = write_module(modules, "deco", """\
        import click
        import gristmill as gm

        @gm.task(mem="lots")
        @click.option("--x", type=int)
        def big(x: int) -> None: ...

        @gm.workflow
        def wf() -> None:
            big(x=1)
        """)
    refused(tmp_path, run(tmp_path, f"{name}:wf"),
            f"cannot import workflow module {name!r}:", f"{name}.py\", line 4",
            "@gm.task(mem=\"lots\")", "mem: 'lots' is not a memory size", user_traceback=True)


def test_bad_resources_given_per_call(
    rt: ModuleType, tmp_path: Path, modules: tuple[Path, str]
) -> None:
    name = write_module(modules, "call", """\
        import gristmill as gm
        from rel_tasks import typed

        @gm.workflow
        def wf() -> None:
            typed(draw=1, resources=gm.Resources(runtime="-2h"))
        """)
    refused(tmp_path, run(tmp_path, f"{name}:wf"), "runtime: '-2h' is not a duration",
            f"(recording {name}:wf: {modules[0] / name}.py, line 6, in wf)")


# -- the workflow itself -------------------------------------------------------------------------


def test_a_cycle_names_the_nodes_on_it(
    rt: ModuleType, tmp_path: Path, modules: tuple[Path, str]
) -> None:
    name = write_module(modules, "cycle", """\
        import gristmill as gm
        from rel_tasks import typed

        @gm.workflow
        def wf() -> None:
            a = typed(draw=1)
            b = typed(draw=2, after=a)
            typed(draw=1, after=b)  # the same node as a: a -> b -> a
        """)
    refused(tmp_path, run(tmp_path, f"{name}:wf"),
            "the workflow has a cycle: typed(draw=1) -> typed(draw=2) -> typed(draw=1)",
            "remove the edge that closes the loop")


def test_an_argument_of_the_wrong_type(rt: ModuleType, tmp_path: Path) -> None:
    refused(tmp_path, run(tmp_path, "rel_tasks:wrong_type"),
            "task 'typed': argument 'draw' = 'three' is not valid",
            "'three' is not a valid integer", "(recording rel_tasks:wrong_type: ",
            "rel_tasks.py, line ")


def test_an_unknown_argument_names_the_allowed_ones(
    rt: ModuleType, tmp_path: Path, modules: tuple[Path, str]
) -> None:
    name = write_module(modules, "unknown", """\
        import gristmill as gm
        from rel_tasks import typed

        @gm.workflow
        def wf() -> None:
            typed(drw=1)
        """)
    refused(tmp_path, run(tmp_path, f"{name}:wf"),
            "task 'typed' has no argument 'drw'; its arguments are: draw")


def test_a_workflow_module_that_fails_to_import_shows_the_error(
    rt: ModuleType, tmp_path: Path, modules: tuple[Path, str]
) -> None:
    helper = write_module(modules, "helper", "raise RuntimeError('no database configured')\n")
    name = write_module(modules, "imports", f"""\
        import gristmill as gm
        import {helper}

        @gm.workflow
        def wf() -> None: ...
        """)
    message = refused(tmp_path, run(tmp_path, f"{name}:wf"),
                      f"cannot import workflow module {name!r}:",
                      f"{name}.py\", line 2", f"{helper}.py\", line 1",
                      "RuntimeError: no database configured", user_traceback=True)
    assert "importlib" not in message  # only the user's frames


def test_a_workflow_module_with_a_syntax_error(
    rt: ModuleType, tmp_path: Path, modules: tuple[Path, str]
) -> None:
    name = write_module(modules, "syntax", "def wf(:\n    pass\n")
    refused(tmp_path, run(tmp_path, f"{name}:wf"), f"cannot import workflow module {name!r}",
            "SyntaxError", f"{name}.py", user_traceback=True)


def test_a_workflow_module_that_does_not_exist(rt: ModuleType, tmp_path: Path) -> None:
    refused(tmp_path, run(tmp_path, "rel_no_such_module:wf"),
            "no module named 'rel_no_such_module'; is the package installed")


def test_a_name_template_naming_a_missing_argument(
    rt: ModuleType, tmp_path: Path, modules: tuple[Path, str]
) -> None:
    name = write_module(modules, "template", """\
        import click
        import gristmill as gm

        @gm.task(name="fit_{location}")
        @click.option("--draw", type=int)
        def fit(draw: int) -> None: ...

        @gm.workflow
        def wf() -> None:
            fit(draw=1)
        """)
    refused(tmp_path, run(tmp_path, f"{name}:wf"),
            "task 'fit': name template 'fit_{location}' uses {location}, which is not an "
            "argument of the task; use one of: draw, task", user_traceback=True)


def test_an_unknown_workflow_option(rt: ModuleType, tmp_path: Path) -> None:
    refused(tmp_path, run(tmp_path, *STAGES, "--path", "x", "--colour", "red"),
            "No such option '--colour'")


# -- the run directory --------------------------------------------------------------------------


def test_a_run_dir_that_is_a_file(rt: ModuleType, tmp_path: Path) -> None:
    a_file = tmp_path / "runs"
    a_file.write_text("not a directory\n")
    result = CliRunner().invoke(main, ["run", *STAGES, "--path", "x", "--run-dir", str(a_file)])
    assert_user_error(result, f"--run-dir {a_file} is a file; give a directory")
    assert a_file.read_text() == "not a directory\n"
    below = CliRunner().invoke(main, ["run", *STAGES, "--path", "x", "--run-dir",
                                      str(a_file / "sub")])
    assert_user_error(below, "Not a directory")
    assert a_file.read_text() == "not a directory\n"


def test_a_run_dir_whose_name_has_uri_and_shell_characters(rt: ModuleType, tmp_path: Path) -> None:
    """SQLite reads the store through a file: URI, where '#', '?' and '%' mean something."""
    root = tmp_path / "runs #1 ?x=%20 $(id)"
    shared = tmp_path / "shared"
    result = CliRunner().invoke(main, ["run", *STAGES, "--path", str(shared),
                                       "--run-dir", str(root)])
    assert result.exit_code == 0, result.output
    run_dir = (root / "latest").resolve()
    for command in (["status", str(run_dir)], ["resume", str(run_dir)]):
        again = CliRunner().invoke(main, command)
        assert again.exit_code == 0, again.output
    assert sorted(shared.read_text().split()) == ["0", "1"]


# -- values a shell would interpret ------------------------------------------------------------

AWKWARD = "a b; echo pwned > /tmp/rel_pwned $(id) `id` $HOME \\n 'q' \"dq\" | & > * ~"


@pytest.mark.parametrize("text", [AWKWARD, "line1\nline2\n", "-v", "--text", "   ", "é中\t"])
def test_awkward_values_reach_the_task_literally(
    rt: ModuleType, tmp_path: Path, text: str
) -> None:
    out = tmp_path / "out"
    result = run(tmp_path, "rel_tasks:echoes", "--out", str(out), "--text", text,
                 "--items", "x y,$(id)")
    assert result.exit_code == 0, result.output
    assert out.read_text() == f"{text!r}\n{['x y', '$(id)']!r}\n"
    shell = tmp_path / "shell"
    result = run(tmp_path, "rel_tasks:shell_echoes", "--out", str(shell), "--text", text)
    assert result.exit_code == 0, result.output
    assert shell.read_text() == text + "\n"  # through sh -c as "$2": never interpreted
    assert not Path("/tmp/rel_pwned").exists()


def test_a_nul_byte_is_refused_before_anything_runs(rt: ModuleType, tmp_path: Path) -> None:
    result = run(tmp_path, "rel_tasks:echoes", "--out", str(tmp_path / "out"), "--text",
                 "a\0b", "--items", "x")
    refused(tmp_path, result, "task 'echo': argument 'text' = 'a\\x00b' is not valid",
            "NUL")
    assert not (tmp_path / "out").exists()



# -- console scripts -----------------------------------------------------------------------------


def test_a_task_without_a_console_script_runs_through_gristmill_exec_and_says_so_once(
    rt: ModuleType, tmp_path: Path
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", "import sys; from gristmill.cli.app import main; main()", "run",
         "rel_tasks:stages", "--path", str(tmp_path / "shared"), "--n", "1",
         "--run-dir", str(tmp_path / "runs")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    warnings = [line for line in done.stderr.splitlines() if "console script" in line]
    assert warnings == []  # a program= task needs none
    done = subprocess.run(
        [sys.executable, "-c", "import sys; from gristmill.cli.app import main; main()", "run",
         "rel_tasks:echoes", "--out", str(tmp_path / "o"), "--text", "t", "--items", "a,b",
         "--run-dir", str(tmp_path / "runs")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    (warning,) = [line for line in done.stderr.splitlines() if "console script" in line]
    assert "task echo: no installed console script targets rel_tasks:echo.main; running it " \
        f"with '{sys.executable} -m gristmill.dsl.exec rel_tasks:echo' instead (add it with: " \
        "gristmill entry-points rel_tasks --write pyproject.toml && pip install -e .)" in warning


def test_a_task_defined_in_the_running_script_is_refused_before_anything_is_written(
    tmp_path: Path
) -> None:
    script = tmp_path / "pipeline.py"
    script.write_text(textwrap.dedent(f"""\
        import click, sys
        import gristmill as gm
        from gristmill.errors import GristmillError

        @gm.task
        @click.option("--x", type=int)
        def step(x: int) -> None: ...

        @gm.workflow
        def wf() -> None:
            step(x=1)

        try:
            wf().run(run_dir={str(tmp_path / "runs")!r})
        except GristmillError as exc:
            print(type(exc).__name__, exc)
            sys.exit(2)
        """))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=60, env=subprocess_env())
    assert done.returncode == 2, done.stderr
    assert "task 'step' is defined in the script being run (__main__)" in done.stdout
    assert "Move the task into a module of your package" in done.stdout
    assert tree(tmp_path / "runs") == []
