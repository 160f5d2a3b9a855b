"""cli_tools: options, logging, set-once metadata, monitored mains and run directories."""

from __future__ import annotations

import datetime
import io
import os
from pathlib import Path
from typing import Any

import click
import pytest
import yaml
from click.testing import CliRunner
from loguru import logger

import gristmill as gm
from gristmill import runs
from gristmill.compat.covid_shared import cli_tools, paths


def sink() -> tuple[io.StringIO, int]:
    """A loguru sink collecting text, for asserting on what was logged."""
    buffer = io.StringIO()
    logger.enable("gristmill")  # gristmill's own records are off until an application asks
    return buffer, logger.add(buffer, level="DEBUG", format="{level} {message}")


# -- options ----------------------------------------------------------------------------------


@click.command()
@cli_tools.pass_run_metadata()
@click.option("--n-draws", type=int, default=2)
@cli_tools.add_output_options("default-root")
@cli_tools.add_verbose_and_with_debugger
def app(run_metadata: cli_tools.RunMetadata, **kwargs: Any) -> None:
    click.echo(yaml.safe_dump({"tool": run_metadata["tool_name"],
                               "args": run_metadata["run_arguments"], "kwargs": kwargs}))


def test_output_and_verbose_options_parse_as_in_covid_shared() -> None:
    done = CliRunner().invoke(app, ["-o", "/x", "-b", "-p", "2026_01_02", "-vv", "--pdb"])
    assert done.exit_code == 0, done.output
    data = yaml.safe_load(done.output)
    assert data["kwargs"] == {
        "n_draws": 2, "output_root": "/x", "mark_best": True, "production_tag": "2026_01_02",
        "verbose": 2, "with_debugger": True,
    }
    assert data["tool"].endswith(":app")
    assert data["args"]["n_draws"] == "2"
    defaults = yaml.safe_load(CliRunner().invoke(app, []).output)["kwargs"]
    assert defaults["output_root"] == "default-root"
    assert (defaults["mark_best"], defaults["production_tag"], defaults["verbose"]) == (
        False, None, 0)


def test_each_call_gets_fresh_run_metadata() -> None:
    runner = CliRunner()
    assert runner.invoke(app, []).exit_code == 0
    assert runner.invoke(app, []).exit_code == 0  # covid_shared failed here: key already set


def test_an_old_style_command_is_also_a_gristmill_task() -> None:
    @click.command()
    @click.option("--draw", type=int, required=True)
    @cli_tools.add_verbose_and_with_debugger
    def old(draw: int, verbose: int, with_debugger: bool) -> None:
        click.echo(f"draw={draw} verbose={verbose}")

    task = gm.task(old)
    names = [p.name for p in task.command.params]
    assert names.count("verbose") == 1
    assert names.count("with_debugger") == 1
    assert task.signature.names == ["draw"]
    assert CliRunner().invoke(task.command, ["--draw", "3", "-v"]).output == "draw=3 verbose=1\n"


# -- logging ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("verbose", "shown"), [(0, {"WARNING"}), (1, {"INFO", "WARNING"}),
                                                 (2, {"DEBUG", "INFO", "WARNING"})])
def test_verbosity_selects_the_level(
    verbose: int, shown: set[str], capsys: pytest.CaptureFixture[str]
) -> None:
    cli_tools.configure_logging_to_terminal(verbose)
    logger.debug("DEBUG-msg")
    logger.info("INFO-msg")
    logger.warning("WARNING-msg")
    out = capsys.readouterr().out
    assert {level for level in ("DEBUG", "INFO", "WARNING") if f"{level}-msg" in out} == shown


def test_logging_to_files_writes_text_and_json(tmp_path: Path) -> None:
    cli_tools.configure_logging_to_files(tmp_path)
    logger.debug("to the files")
    logger.remove()  # flush and close the file sinks
    assert "to the files" in (tmp_path / "logs" / "master_log.txt").read_text()
    assert '"to the files"' in (tmp_path / "logs" / "master_log.json").read_text()


# -- metadata ---------------------------------------------------------------------------------


def test_metadata_keys_are_set_once() -> None:
    metadata = cli_tools.Metadata()
    metadata["a"] = 1
    metadata.update({"b": 2})
    with pytest.raises(KeyError, match="'a' has already been set"):
        metadata["a"] = 3
    assert metadata.to_dict() == {"a": 1, "b": 2}
    assert "b" in metadata
    assert len(metadata) == 2


def test_monitor_application_records_success() -> None:
    def main(app_metadata: cli_tools.Metadata, x: int, y: int = 0) -> int:
        app_metadata["extra"] = "yes"
        return x + y

    metadata, result = cli_tools.monitor_application(main, logger, False)(2, y=3)
    assert result == 5
    assert metadata["success"] is True
    assert metadata["run_arguments"] == {"app_metadata": "Metadata", "x": "2", "y": "3"}
    assert metadata["main_function"].endswith("main")
    assert metadata["extra"] == "yes"


def test_monitor_application_records_a_failure_and_logs_it() -> None:
    def main(app_metadata: cli_tools.Metadata) -> None:
        raise ValueError("bad input")

    buffer, handler = sink()
    try:
        metadata, result = cli_tools.monitor_application(main, logger, False)()
    finally:
        logger.remove(handler)
    assert result is None
    assert metadata["success"] is False
    info = metadata["error_info"]
    assert info["exception_type"] is ValueError
    assert str(info["exception_value"]) == "bad input"
    assert any("raise ValueError" in frame for frame in info["exc_traceback"])
    assert "ERROR Uncaught exception ValueError('bad input')" in buffer.getvalue()


def test_monitor_application_records_ctrl_c() -> None:
    def main(app_metadata: cli_tools.Metadata) -> None:
        raise KeyboardInterrupt

    metadata, _ = cli_tools.monitor_application(main, logger, False)()
    assert (metadata["success"], metadata["error_info"]) == (False, "User interrupt.")


def test_handle_exceptions_logs_and_re_raises() -> None:
    def task_main(draw: int) -> int:
        if draw < 0:
            raise RuntimeError(f"draw {draw}")
        return draw

    wrapped = cli_tools.handle_exceptions(task_main, logger, False)
    assert wrapped(3) == 3
    buffer, handler = sink()
    try:
        with pytest.raises(RuntimeError, match="draw -1"):
            wrapped(-1)
    finally:
        logger.remove(handler)
    assert "Uncaught exception RuntimeError('draw -1')" in buffer.getvalue()


def test_the_exception_is_logged_as_the_applications_record() -> None:
    """gristmill's own records are off by default; the application's error must still show."""

    def task_main() -> None:
        raise RuntimeError("boom")

    logger.disable("gristmill")
    buffer = io.StringIO()
    handler = logger.add(buffer, level="DEBUG", format="{name} {message}")
    try:
        with pytest.raises(RuntimeError):
            cli_tools.handle_exceptions(task_main, logger, False)()
        cli_tools.monitor_application(lambda metadata: task_main(), logger, False)()
    finally:
        logger.remove(handler)
    logged = buffer.getvalue().splitlines()
    assert [line.split()[:3] for line in logged if "Uncaught" in line] == [
        [__name__, "Uncaught", "exception"]
    ] * 2


def test_run_metadata_dumps_yaml_with_provenance(tmp_path: Path) -> None:
    metadata = cli_tools.RunMetadata(package="gristmill")
    metadata["error_info"] = {"exception_type": ValueError, "exception_value": ValueError("x")}
    metadata["paths"] = (Path("/a"), 2)
    metadata.dump(tmp_path / "metadata.yaml")
    data = yaml.safe_load((tmp_path / "metadata.yaml").read_text())
    assert data["error_info"] == {"exception_type": "builtins.ValueError",
                                  "exception_value": "ValueError('x')"}
    assert data["paths"] == ["/a", 2]
    assert data["run_time"].endswith(" seconds")
    datetime.datetime.strptime(data["start_time"], "%Y_%m_%d_%H_%M_%S")
    assert data["provenance"]["package"] == "gristmill"
    assert data["provenance"]["user"]


def test_run_metadata_into_a_missing_directory_is_logged_not_raised(tmp_path: Path) -> None:
    buffer, handler = sink()
    try:
        cli_tools.RunMetadata().dump(tmp_path / "missing" / "metadata.yaml")
    finally:
        logger.remove(handler)
    assert "does not exist; the run metadata was not written" in buffer.getvalue()


def test_previous_metadata_is_read_under_a_path_key(tmp_path: Path) -> None:
    previous = tmp_path / "Prev-Run"
    previous.mkdir()
    (previous / "metadata.yaml").write_text("tool_name: seiir\n")
    metadata = cli_tools.update_with_previous_metadata(cli_tools.RunMetadata(), previous)
    key = str(previous.resolve()).replace("-", "_").lower() + "_metadata"
    assert metadata[key] == {"tool_name": "seiir"}
    with pytest.raises(ValueError, match=r"can only read metadata\.yaml"):
        metadata.update_from_path("x", previous / "other.yaml")


# -- run directories --------------------------------------------------------------------------


def test_run_directories_are_numbered_under_the_root(tmp_path: Path) -> None:
    root = tmp_path / "out"
    cli_tools.setup_directory_structure(root, True)
    assert (root / runs.PRODUCTION_DIR).is_dir()
    first = cli_tools.make_run_directory(root)
    second = cli_tools.make_run_directory(root)
    today = datetime.date.today().strftime("%Y_%m_%d")
    assert (first.name, second.name) == (f"{today}.01", f"{today}.02")


def finished(tmp_path: Path, success: bool, **links: Any) -> tuple[Path, Path]:
    """Run a tiny monitored application and finish it; returns (root, run directory)."""
    root = tmp_path / "out"
    cli_tools.setup_directory_structure(root, with_production=True)
    run_dir = cli_tools.make_run_directory(root)
    run_metadata = cli_tools.RunMetadata()
    run_metadata["tool_name"] = "tests:app"

    def main(app_metadata: cli_tools.Metadata) -> None:
        if not success:
            raise OSError("disk full")

    app_metadata, _ = cli_tools.monitor_application(main, logger, False)()
    cli_tools.finish_application(run_metadata, app_metadata, run_dir,
                                 links.get("mark_best", False), links.get("production_tag"))
    return root, run_dir


def test_finish_application_writes_both_metadata_files_and_links(tmp_path: Path) -> None:
    root, run_dir = finished(tmp_path, True, mark_best=True, production_tag="2026_01_02")
    old = yaml.safe_load((run_dir / "metadata.yaml").read_text())
    assert old["app_metadata"]["success"] is True
    assert old["tool_name"] == "tests:app"
    new = runs.load_run_metadata(run_dir)
    assert new.status == "succeeded"
    assert new.extra["application"] == "tests:app"
    for link in (root / "latest", root / "best", root / "production-runs" / "2026_01_02"):
        assert link.resolve() == run_dir.resolve()


def test_a_failed_application_re_raises_and_is_not_marked_best(tmp_path: Path) -> None:
    with pytest.raises(OSError, match="disk full"):
        finished(tmp_path, False, mark_best=True)
    root = tmp_path / "out"
    assert not (root / "best").exists()
    (run_dir,) = runs.list_runs(root)
    assert runs.load_run_metadata(run_dir).status == "failed"
    old = yaml.safe_load((run_dir / "metadata.yaml").read_text())
    assert old["app_metadata"]["error_info"]["exception_value"] == "OSError('disk full')"


def test_a_production_tag_needs_mark_best_and_a_date(tmp_path: Path) -> None:
    buffer, handler = sink()
    try:
        root, _ = finished(tmp_path, True, production_tag="2026_01_02")
        finished(tmp_path, True, mark_best=True, production_tag="friday")
    finally:
        logger.remove(handler)
    assert os.listdir(root / "production-runs") == []
    text = buffer.getvalue()
    assert "only together with --mark-best" in text
    assert "'friday' is not a date in the format YYYY_MM_DD" in text


def test_a_keyboard_interrupt_is_raised_again(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    app_metadata = cli_tools.Metadata()
    app_metadata.update({"success": False, "error_info": "User interrupt."})
    with pytest.raises(KeyboardInterrupt):
        cli_tools.finish_application(cli_tools.RunMetadata(), app_metadata, run_dir, True, None)
    assert not (tmp_path / "best").exists()


def test_mark_production_checks_the_date_format(tmp_path: Path) -> None:
    run_dir = cli_tools.make_run_directory(tmp_path)
    with pytest.raises(ValueError, match="YYYY_MM_DD"):
        cli_tools.mark_production(run_dir, "tomorrow")
    cli_tools.mark_production(run_dir)
    today = datetime.date.today().strftime("%Y_%m_%d")
    assert (tmp_path / "production-runs" / today).resolve() == run_dir.resolve()


def test_last_stage_directory_is_a_path_or_a_version_under_a_root(tmp_path: Path) -> None:
    run_dir = cli_tools.make_run_directory(tmp_path)
    cli_tools.mark_latest(run_dir)  # what a successful application does
    assert cli_tools.get_last_stage_directory(run_dir) == run_dir.resolve()
    assert cli_tools.get_last_stage_directory("latest", last_stage_root=tmp_path) == run_dir
    assert cli_tools.get_last_stage_directory(
        "ignored", last_stage_directory=run_dir.name, last_stage_root=tmp_path
    ) == run_dir


def test_incomplete_runs_cannot_be_marked() -> None:
    cli_tools.validate_best_and_production_tags(False, True, "2026_01_02")
    cli_tools.validate_best_and_production_tags(True, False, None)
    with pytest.raises(ValueError, match="incomplete run"):
        cli_tools.validate_best_and_production_tags(True, True, None)


# -- covid_shared 2.2's names -----------------------------------------------------------------

#: What covid_shared 2.2.1 offers, module by module (its public names a pipeline imports).
COVID_SHARED_NAMES = {
    "cli_tools": [
        "finish_application", "add_mobility_gpr_dependency_option",
        "add_model_inputs_dependency_option", "add_output_options", "add_r_singularity_option",
        "add_seir_covariates_dependency_option", "add_snapshot_dependency_option",
        "add_verbose", "add_verbose_and_with_debugger", "add_with_debugger",
        "pass_run_metadata", "with_mark_best", "with_output_root", "with_production_tag",
        "DEFAULT_LOG_MESSAGING_FORMAT", "LOG_FORMATS", "add_logging_sink",
        "configure_logging_to_files", "configure_logging_to_terminal", "Metadata",
        "RunMetadata", "YamlIOMixin", "get_function_full_argument_mapping",
        "handle_exceptions", "monitor_application", "update_with_previous_metadata",
        "get_current_previous_version", "get_last_stage_directory", "get_run_directory",
        "make_links", "make_run_directory", "mark_best", "mark_best_explicit", "mark_explicit",
        "mark_latest", "mark_latest_explicit", "mark_production", "mark_production_explicit",
        "move_link", "setup_directory_structure", "validate_best_and_production_tags",
    ],
    "cli_tools.run_directory": ["make_links", "move_link", "get_run_directory"],
    "cli_tools.logging": ["JOBMON_LOGGING_LEVEL", "LOG_FORMATS"],
    "paths": [
        "EXEC_R_SCRIPT_PATH", "R_SINGULARITY_IMAGE_PATH", "COVID_19", "ARCHIVE_ROOT",
        "RCLONE_CONFIG_PATH", "MODEL_INPUTS_ROOT", "SEIR_FIT_ROOT", "SNAPSHOT_ROOT",
        "METADATA_FILE_NAME", "LOG_DIR", "LOG_FILE_NAME", "DETAILED_LOG_FILE_NAME", "BEST_LINK",
        "LATEST_LINK", "PRODUCTION_RUN", "latest_production_snapshot_path",
        "latest_production_data_fixes_path", "latest_production_etl_path",
        "DIRECTORY_PERMISSIONS", "FILE_PERMISSIONS", "make_dir_tree",
        "recursive_set_permissions",
    ],
    "ihme_deps": ["load_location_hierarchy", "get_location_hierarchy_by_version", "Tool", "Task",
                  "WorkflowRunStatus", "WorkflowAlreadyComplete"],
    "shell_tools": ["wget", "unzip_and_delete_archive", "mkdir"],
    "parallel": ["is_notebook", "run_parallel"],
    "workflow": ["TaskSpecification", "WorkflowSpecification", "TaskTemplate", "WorkflowTemplate",
                 "get_jobmon_tool"],
    "workflow.utilities": ["get_jobmon_tool", "make_log_dirs"],
}


@pytest.mark.parametrize("module", sorted(COVID_SHARED_NAMES))
def test_every_name_a_pipeline_imports_is_there(module: str) -> None:
    import importlib

    found = importlib.import_module(f"gristmill.compat.covid_shared.{module}")
    assert [n for n in COVID_SHARED_NAMES[module] if not hasattr(found, n)] == []


def test_from_the_package_every_module_imports() -> None:
    from gristmill.compat.covid_shared import (  # noqa: F401
        cli_tools,
        ihme_deps,
        parallel,
        paths,
        shell_tools,
        workflow,
    )


def test_dependency_and_r_options() -> None:
    @click.command()
    @cli_tools.add_model_inputs_dependency_option()
    @cli_tools.add_mobility_gpr_dependency_option()
    @cli_tools.add_r_singularity_option()
    def stage(**kwargs: Any) -> None:
        click.echo(yaml.safe_dump(kwargs))

    missing = CliRunner().invoke(stage, [])
    assert missing.exit_code == 2
    assert "--mobility-gpr-version" in missing.output
    done = CliRunner().invoke(stage, ["--mobility-gpr-version", "2026_01_02.01"])
    assert done.exit_code == 0, done.output
    assert yaml.safe_load(done.output) == {
        "model_inputs_version": "best", "mobility_gpr_version": "2026_01_02.01",
        "r_singularity_image": os.fspath(paths.R_SINGULARITY_IMAGE_PATH)}


def test_a_new_run_directory_leaves_latest_until_the_application_succeeds(tmp_path: Path) -> None:
    first = cli_tools.make_run_directory(tmp_path)
    assert not (tmp_path / "latest").exists()
    assert cli_tools.get_run_directory(tmp_path) == first.parent / first.name.replace(".01", ".02")
    success = cli_tools.Metadata()
    success["success"] = True
    cli_tools.make_links(success, first, True, None)
    second = cli_tools.make_run_directory(tmp_path)
    assert (tmp_path / "latest").resolve() == first.resolve()
    failure = cli_tools.Metadata()
    failure["success"] = False
    cli_tools.make_links(failure, second, True, None)
    assert (tmp_path / "best").resolve() == first.resolve()


def test_explicit_marks_and_move_link(tmp_path: Path) -> None:
    run_dir = cli_tools.make_run_directory(tmp_path / "runs")
    elsewhere = tmp_path / "published"
    elsewhere.mkdir()
    cli_tools.mark_best_explicit(run_dir, elsewhere)
    cli_tools.mark_latest_explicit(run_dir, elsewhere)
    cli_tools.mark_production_explicit(run_dir, elsewhere / "production-runs", "2026_01_02")
    for link in ("best", "latest", "production-runs/2026_01_02"):
        assert (elsewhere / link).resolve() == run_dir.resolve()
    (elsewhere / "empty").mkdir()
    cli_tools.move_link(elsewhere / "empty", run_dir)  # covid_shared's placeholder directory
    assert (elsewhere / "empty").is_symlink()
    (elsewhere / "file").write_text("x")
    with pytest.raises(ValueError, match="not a symlink or a directory"):
        cli_tools.move_link(elsewhere / "file", run_dir)
    with pytest.raises(ValueError, match="YYYY_MM_DD"):
        cli_tools.mark_production_explicit(run_dir, elsewhere, "friday")


def test_current_and_previous_versions(tmp_path: Path) -> None:
    for name in ("2026_01_01.01", "2026_01_01.02", "2026_01_03.01", "2026_01_03.02"):
        (tmp_path / name).mkdir()
    (tmp_path / "latest").symlink_to("2026_01_03.02")
    current = tmp_path / "latest"
    assert cli_tools.get_current_previous_version(current) == ("2026_01_03.02", "2026_01_01.02")
    assert cli_tools.get_current_previous_version(current, resolved_name=False)[0] == "latest"
    assert cli_tools.get_current_previous_version(
        current, tmp_path / "2026_01_03.01") == ("2026_01_03.02", "2026_01_03.01")
    with pytest.raises(ValueError, match="no run of a day before 2026_01_01"):
        cli_tools.get_current_previous_version(tmp_path / "2026_01_01.02")


def test_yaml_io_mixin_reads_and_writes_plain_data(tmp_path: Path) -> None:
    path = tmp_path / "x.yaml"
    with path.open("w") as out:
        cli_tools.YamlIOMixin._write({"b": ValueError, "a": (1, 2)}, out)
    with path.open() as stream:
        assert cli_tools.YamlIOMixin._load(stream) == {"a": [1, 2], "b": "builtins.ValueError"}
