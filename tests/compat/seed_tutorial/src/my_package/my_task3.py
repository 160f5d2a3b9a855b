from pathlib import Path

import click
from loguru import logger

from gristmill.compat.covid_shared import cli_tools, paths


def my_task_main(output_version: str, location_id: int):
    # Your business logic here: forecast one location from the best model inputs.
    inputs = paths.MODEL_INPUTS_ROOT / paths.BEST_LINK / f"location_{location_id}.csv"
    data = inputs.read_text()
    forecasts = Path(output_version) / "forecasts"
    forecasts.mkdir(exist_ok=True)
    (forecasts / f"location_{location_id}.csv").write_text(data)
    logger.info(f"forecast location {location_id}")


@click.command()
@click.option("--output-version", "output_version", type=click.STRING)
@click.option("--location-id", "location_id", type=click.INT)
@cli_tools.add_verbose_and_with_debugger
def my_task3(output_version: str, location_id: int, verbose: int, with_debugger: bool):
    cli_tools.configure_logging_to_terminal(verbose)
    run_my_task = cli_tools.handle_exceptions(my_task_main, logger, with_debugger)
    run_my_task(output_version, location_id)
