"""Ctrl-C in a covid_shared application's workflow: 'User interrupt.'; a resume finishes it.

The application runs in a process of its own; its one task waits for a file. Once the
task has started, the application gets SIGINT (what Ctrl-C sends): the engine cancels
the task, ``metadata.yaml`` records covid_shared's ``'User interrupt.'``, and ``latest``
does not move. ``gristmill resume`` of the version directory then runs the task and
finishes the application.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import yaml

import gristmill
from gristmill import runs

SRC = Path(gristmill.__file__).resolve().parents[1]

APP = textwrap.dedent('''
    """An application in covid_shared's tutorial style whose one task waits for a file."""
    import shlex
    import sys
    from pathlib import Path

    import click
    from loguru import logger

    from gristmill.compat.covid_shared import cli_tools, workflow

    WAIT = shlex.quote(
        "import pathlib, sys, time; started, go = map(pathlib.Path, sys.argv[1:3]); "
        "started.write_text('started'); "
        "[time.sleep(0.05) for _ in iter(lambda: not go.exists(), False)]"
    )


    class WaitSpecification(workflow.TaskSpecification):
        default_max_runtime_seconds = 600
        default_m_mem_free = "1G"
        default_num_cores = 1


    class AppSpecification(workflow.WorkflowSpecification):
        tasks = {"wait": WaitSpecification}


    class WaitTemplate(workflow.TaskTemplate):
        task_args = ["started", "go"]
        task_name_template = "wait"
        command_template = f"{shlex.quote(sys.executable)} -c {WAIT} {{started}} {{go}}"


    class AppWorkflow(workflow.WorkflowTemplate):
        workflow_name_template = "app-{version}"
        task_template_classes = {"wait": WaitTemplate}

        def attach_tasks(self, started, go):
            self.workflow.add_task(
                self.task_templates["wait"].get_task(started=started, go=go))


    def run_app(app_metadata, output_version, started, go):
        flow = AppWorkflow(output_version, AppSpecification())
        flow.attach_tasks(started=started, go=go)
        flow.run()


    @click.command()
    @cli_tools.pass_run_metadata()
    @click.option("--started")
    @click.option("--go")
    @cli_tools.add_output_options("out")
    @cli_tools.add_verbose_and_with_debugger
    def app(run_metadata, started, go, output_root, mark_best, production_tag, verbose,
            with_debugger):
        cli_tools.configure_logging_to_terminal(verbose)
        run_directory = cli_tools.make_run_directory(output_root)
        main = cli_tools.monitor_application(run_app, logger, with_debugger)
        app_metadata, _ = main(str(run_directory), started, go)
        cli_tools.finish_application(run_metadata, app_metadata, run_directory, mark_best,
                                     production_tag)

''')


def wait_for(condition: object, what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_ctrl_c_is_a_user_interrupt_and_a_resume_finishes_the_application(
    tmp_path: Path,
) -> None:
    (tmp_path / "interrupt_app.py").write_text(APP)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        filter(None, [str(tmp_path), str(SRC), os.environ.get("PYTHONPATH")]))}
    started, go, root = tmp_path / "started", tmp_path / "go", tmp_path / "out"
    app = subprocess.Popen(
        # Imported, not run as __main__: gristmill resume imports the workflow class by name.
        [sys.executable, "-c", "from interrupt_app import app; app()", "--started", str(started),
         "--go", str(go), "-o", str(root), "-b"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        wait_for(started.exists, "the task to start")
        app.send_signal(signal.SIGINT)
        out, err = app.communicate(timeout=120)
    finally:
        if app.poll() is None:
            app.kill()
            app.wait()
    assert app.returncode != 0, out + err
    (version,) = runs.list_runs(root)
    data = yaml.safe_load((version / "metadata.yaml").read_text())
    assert data["app_metadata"]["success"] is False
    assert data["app_metadata"]["error_info"] == "User interrupt."
    assert data["provenance"]["status"] == "cancelled"
    assert not (root / "latest").exists()
    assert not (root / "best").exists()

    go.write_text("go")
    resumed = subprocess.run([sys.executable, "-m", "gristmill.cli", "resume", str(version)],
                             cwd=tmp_path, env=env, capture_output=True, text=True,
                             timeout=300, check=False)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    data = yaml.safe_load((version / "metadata.yaml").read_text())
    assert data["app_metadata"]["success"] is True
    assert "error_info" not in data["app_metadata"]
    assert data["provenance"]["status"] == "succeeded"
    assert (root / "latest").resolve() == version.resolve()
    assert (root / "best").resolve() == version.resolve()
