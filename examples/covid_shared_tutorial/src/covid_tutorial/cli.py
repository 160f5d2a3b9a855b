"""The command line (tutorial step 7)."""

from pathlib import Path

import click
from loguru import logger

from covid_tutorial.main import run_my_workflow
from gristmill.compat.covid_shared import cli_tools

DEFAULT_OUTPUT_ROOT = Path("covid-tutorial-output")


@click.command()
@cli_tools.pass_run_metadata()
@click.option("--location-id", "location_ids", type=click.INT, multiple=True, default=(6, 102))
@click.option("--n-draws", type=click.INT, default=4)
@click.option(
    "--specification",
    type=click.Path(exists=True, dir_okay=False),
    help="YAML overriding the task specifications (e.g. m_mem_free of my_task1).",
)
@cli_tools.add_output_options(DEFAULT_OUTPUT_ROOT)
@cli_tools.add_verbose_and_with_debugger
def covid_tutorial(
    run_metadata: cli_tools.RunMetadata,
    location_ids: tuple,
    n_draws: int,
    specification: str,
    output_root: str,
    mark_best: bool,
    production_tag: str,
    verbose: int,
    with_debugger: bool,
):
    cli_tools.configure_logging_to_terminal(verbose)

    output_root = Path(output_root).resolve()
    cli_tools.setup_directory_structure(output_root, with_production=True)
    run_directory = cli_tools.make_run_directory(output_root)

    run_metadata["output_root"] = str(run_directory)

    main = cli_tools.monitor_application(run_my_workflow, logger, with_debugger)
    app_metadata, _ = main(str(run_directory), n_draws, list(location_ids), specification)

    cli_tools.finish_application(
        run_metadata, app_metadata, run_directory, mark_best, production_tag
    )
