"""The application main (tutorial step 6): build the workflow and run it."""

from __future__ import annotations

from loguru import logger

from covid_tutorial.workflow import MyWorkflow, MyWorkflowSpecification
from gristmill.compat.covid_shared import cli_tools


def run_my_workflow(
    app_metadata: cli_tools.Metadata,
    output_version: str,
    n_draws: int,
    location_ids: list[int],
    specification_path: str | None = None,
) -> None:
    logger.info(f"Starting my workflow {output_version}")

    # Check preconditions here, where errors are easy to read.
    if n_draws < 1:
        raise ValueError(f"n_draws must be at least 1, got {n_draws}")

    # Defaults are written in code; a YAML file may override any of them.
    if specification_path is None:
        my_workflow_specification = MyWorkflowSpecification()
    else:
        my_workflow_specification = MyWorkflowSpecification.from_yaml(specification_path)
    app_metadata["workflow_specification"] = my_workflow_specification.to_dict()

    my_workflow = MyWorkflow(
        version=output_version,
        workflow_specification=my_workflow_specification,
    )
    my_workflow.attach_tasks(
        n_draws=n_draws,
        location_ids=location_ids,
    )
    my_workflow.run()
