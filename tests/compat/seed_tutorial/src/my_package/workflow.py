import shutil
from typing import List, NamedTuple  # noqa: F401, UP035  (as the tutorial imports them)

import my_package
from gristmill.compat.covid_shared import workflow


class __MyTasks:
    """A container for string constants for the task names.

    You could skip this and use strings directly or use a dataclass or
    something.
    """
    my_task1: str = "my_task1"
    my_task2: str = "my_task2"
    my_task3: str = "my_task3"


MY_TASKS = __MyTasks()


class MyTask1Specification(workflow.TaskSpecification):
    # There are only these three keys that need to be set.
    # The parent class is primary intended for validation and
    # serialization to and from dicts for easy parsing into yaml.
    default_max_runtime_seconds = 1000  # Maximum runtime of a task
    default_m_mem_free = "10G"  # Maximum memory usage of a task
    default_num_cores = 1  # Number of processes the task uses.


class MyTask2Specification(workflow.TaskSpecification):
    default_max_runtime_seconds = 5000
    default_m_mem_free = "2G"
    default_num_cores = 5


class MyTask3Specification(workflow.TaskSpecification):
    default_max_runtime_seconds = 1500
    default_m_mem_free = "25G"
    default_num_cores = 20


class MyWorkflowSpecification(workflow.WorkflowSpecification):
    # Only one thing needs to be set here, the mapping from task names
    # to their specification classes.  Again, the parent class here
    # is mainly about validation and serialization.
    tasks = {
        MY_TASKS.my_task1: MyTask1Specification,
        MY_TASKS.my_task2: MyTask2Specification,
        MY_TASKS.my_task3: MyTask3Specification,
    }


# Next we need the actual templates
class MyTask1Template(workflow.TaskTemplate):
    # Just need to set some class constants

    # Grab a reference to the jobmon tool that the template can use to make tasks.
    # See import at top of module
    tool = workflow.get_jobmon_tool(my_package)
    # These are the names of the arguments passed to your task.
    # task_args do not vary across tasks. You'd use them for something like
    # shared configuration or a common output directory.
    task_args = ["output_version"]
    # node_args do vary between tasks. They are the args you're parallelizing by.
    node_args = ["draw"]
    # This is the template for how the jobs submitted to the cluster
    # will be named.  I recommend you put your node args in this to make
    # e.g. querying qpid easier. Use double braces to produce a string
    # that can be appropriately interpolated when the task is actually made.
    task_name_template = f"{MY_TASKS.my_task1}_draw_{{draw}}"
    # This is the command as you would invoke it yourself in a qlogin,
    # parameterized by the task and node args.
    command_template = (
        # Resolve full path to executible. This will handle some environment compatibility issues.
        f'{shutil.which("my_task1")} '
        "--output-version {output_version} "
        "--draw {draw} "
        "-vv"
    )


class MyTask2Template(workflow.TaskTemplate):
    tool = workflow.get_jobmon_tool(my_package)
    task_args = ["output_version"]
    node_args = []
    task_name_template = f"{MY_TASKS.my_task2}"
    command_template = (
        f'{shutil.which("my_task2")} '
        "--output-version {output_version} "
        "-vv"
    )


class MyTask3Template(workflow.TaskTemplate):
    tool = workflow.get_jobmon_tool(my_package)
    task_args = ["output_version"]
    node_args = ["location_id"]
    task_name_template = f"{MY_TASKS.my_task3}_location_{{location_id}}"
    command_template = (
        f'{shutil.which("my_task3")} '
        "--output-version {output_version} "
        "--location-id {location_id} "
        "-vv"
    )


class MyWorkflow(workflow.WorkflowTemplate):
    # Also need a reference here for making workflow objects.
    tool = workflow.utilities.get_jobmon_tool(my_package)
    # Template for how workflows will be named in the jobmon db.
    # Change the prefix to something descriptive, but leave the '-{version}'.
    workflow_name_template = "my-workflow-{version}"
    # Here we link names to task templates instead of specifications.
    task_template_classes = {
        MY_TASKS.my_task1: MyTask1Template,
        MY_TASKS.my_task2: MyTask2Template,
        MY_TASKS.my_task3: MyTask3Template,
    }
    # Whether the workflow will stop when a single job fails. Generally,
    # set true if your tasks are mostly homogeneous (and therefore likely to
    # fail due to code errors) and false otherwise.
    fail_fast = False

    # The method name is fixed but the args in this method are whatever
    # you need them to be.
    def attach_tasks(self, location_ids: List[int], n_draws: int):  # noqa: UP006
        # This method is totally bespoke per workflow and is where we
        # construct our task dag. For this example, we'll presume task 1
        # in our workflow is parallelized by draw, task 2 is a validation step
        # with no parallelization that happens after task 1, and task 3
        # is parallelized by location, but doesn't depend on either of the other
        # tasks.

        # unpack our templates
        task1_template = self.task_templates[MY_TASKS.my_task1]
        task2_template = self.task_templates[MY_TASKS.my_task2]
        task3_template = self.task_templates[MY_TASKS.my_task3]

        task2 = task2_template.get_task(
            output_version=self.version,
        )
        self.workflow.add_task(task2)
        for draw in range(n_draws):
            task1 = task1_template.get_task(
                output_version=self.version,
                draw=draw,
            )
            task1.add_downstream(task2)
            self.workflow.add_task(task1)

        for location_id in location_ids:
            task3 = task3_template.get_task(
                output_version=self.version,
                location_id=location_id,
            )
            self.workflow.add_task(task3)
