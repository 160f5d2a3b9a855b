from pathlib import Path

import click
from loguru import logger

from gristmill.compat.covid_shared import cli_tools, paths
from my_package.main import run_my_workflow


@click.command()
@cli_tools.pass_run_metadata()
@click.option("--location-set-version-id", type=click.INT)
@click.option("--n_draws", type=click.INT)
@cli_tools.add_output_options(paths.SEIR_FIT_ROOT)
@cli_tools.add_verbose_and_with_debugger
def my_main_entry_point(run_metadata: cli_tools.RunMetadata,
                        location_set_version_id: int,
                        n_draws: int,
                        output_root: str, mark_best: bool, production_tag: str,
                        verbose: int, with_debugger):
    cli_tools.configure_logging_to_terminal(verbose)

    output_root = Path(output_root).resolve()
    cli_tools.setup_directory_structure(output_root, with_production=True)
    run_directory = cli_tools.make_run_directory(output_root)

    run_metadata["output_root"] = str(run_directory)

    main = cli_tools.monitor_application(run_my_workflow, logger, with_debugger)
    app_metadata, _ = main(run_directory, n_draws, location_set_version_id)

    cli_tools.finish_application(run_metadata, app_metadata, run_directory,
                                 mark_best, production_tag)
