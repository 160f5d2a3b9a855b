from loguru import logger

from gristmill.compat.covid_shared import cli_tools, ihme_deps
from my_package.workflow import MyWorkflow, MyWorkflowSpecification


def run_my_workflow(app_metadata: cli_tools.Metadata,
                    output_version: str,
                    n_draws: int,
                    location_set_version_id: int):
    logger.info(f"Starting my worklfow {output_version}")

    # This is a very good spot to do any precondition checking if you can.
    # Much better to fail here where you can produce intelligible errors.

    hierarchy = ihme_deps.load_location_hierarchy(location_set_version_id)
    location_ids = hierarchy[hierarchy.most_detailed == 1].location_id.unique().tolist()

    # We might build this from a configuration file in a more complicated
    # application to allow overrides of the defaults. Here, we've written
    # our parameterization in code.
    my_workflow_specification = MyWorkflowSpecification()
    my_workflow = MyWorkflow(
        version=output_version,
        workflow_specification=my_workflow_specification,
    )
    my_workflow.attach_tasks(
        n_draws=n_draws,
        location_ids=location_ids,
    )
    my_workflow.run()
