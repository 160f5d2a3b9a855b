"""Task 3: forecast one location (independent of tasks 1 and 2)."""

import click
from loguru import logger

from covid_tutorial import model
from gristmill.compat.covid_shared import cli_tools


def my_task_main(output_version: str, location_id: int) -> None:
    curve = model.forecast(location_id)
    path = model.forecast_path(output_version, location_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("day,cases\n" + "".join(f"{d},{c}\n" for d, c in enumerate(curve)))
    logger.info(f"location {location_id}: {len(curve)} days -> {path}")


@click.command()
@click.option("--output-version", "output_version", type=click.STRING, required=True)
@click.option("--location-id", "location_id", type=click.INT, required=True)
@cli_tools.add_verbose_and_with_debugger
def my_task3(output_version: str, location_id: int, verbose: int, with_debugger: bool) -> None:
    cli_tools.configure_logging_to_terminal(verbose)
    run_my_task = cli_tools.handle_exceptions(my_task_main, logger, with_debugger)
    run_my_task(output_version, location_id)
