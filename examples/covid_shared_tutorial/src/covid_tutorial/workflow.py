"""Task and workflow configuration (tutorial step 5), unchanged but for the import.

The tutorial's own templates named placeholders that were not declared args
(``{task_arg2}``); these declare exactly what they use, which the compatibility
layer checks when the workflow is built.
"""

from __future__ import annotations

import shutil

import covid_tutorial
from gristmill.compat.covid_shared import workflow


class __MyTasks:
    """A container for string constants for the task names."""

    my_task1: str = "my_task1"
    my_task2: str = "my_task2"
    my_task3: str = "my_task3"


MY_TASKS = __MyTasks()


class MyTask1Specification(workflow.TaskSpecification):
    default_max_runtime_seconds = 1000
    default_m_mem_free = "10G"
    default_num_cores = 1


class MyTask2Specification(workflow.TaskSpecification):
    default_max_runtime_seconds = 5000
    default_m_mem_free = "2G"
    default_num_cores = 5


class MyTask3Specification(workflow.TaskSpecification):
    default_max_runtime_seconds = 1500
    default_m_mem_free = "25G"
    default_num_cores = 20


class MyWorkflowSpecification(workflow.WorkflowSpecification):
    tasks = {
        MY_TASKS.my_task1: MyTask1Specification,
        MY_TASKS.my_task2: MyTask2Specification,
        MY_TASKS.my_task3: MyTask3Specification,
    }


class MyTask1Template(workflow.TaskTemplate):
    tool = workflow.get_jobmon_tool(covid_tutorial)
    task_args = ["output_version"]
    node_args = ["draw"]
    task_name_template = f"{MY_TASKS.my_task1}_draw_{{draw}}"
    command_template = (
        f"{shutil.which('covid-tutorial-fit')} "
        "--output-version {output_version} "
        "--draw {draw} "
        "-vv"
    )


class MyTask2Template(workflow.TaskTemplate):
    tool = workflow.get_jobmon_tool(covid_tutorial)
    task_args = ["output_version", "n_draws"]
    node_args = []
    task_name_template = f"{MY_TASKS.my_task2}"
    command_template = (
        f"{shutil.which('covid-tutorial-validate')} "
        "--output-version {output_version} "
        "--n-draws {n_draws} "
        "-vv"
    )


class MyTask3Template(workflow.TaskTemplate):
    tool = workflow.get_jobmon_tool(covid_tutorial)
    task_args = ["output_version"]
    node_args = ["location_id"]
    task_name_template = f"{MY_TASKS.my_task3}_location_{{location_id}}"
    command_template = (
        f"{shutil.which('covid-tutorial-forecast')} "
        "--output-version {output_version} "
        "--location-id {location_id} "
        "-vv"
    )


class MyWorkflow(workflow.WorkflowTemplate):
    tool = workflow.utilities.get_jobmon_tool(covid_tutorial)
    workflow_name_template = "covid-tutorial-{version}"
    task_template_classes = {
        MY_TASKS.my_task1: MyTask1Template,
        MY_TASKS.my_task2: MyTask2Template,
        MY_TASKS.my_task3: MyTask3Template,
    }
    fail_fast = False

    def attach_tasks(self, location_ids: list[int], n_draws: int):
        # Task 1 is parallel by draw, task 2 validates after all of task 1,
        # task 3 is parallel by location and depends on neither.
        task1_template = self.task_templates[MY_TASKS.my_task1]
        task2_template = self.task_templates[MY_TASKS.my_task2]
        task3_template = self.task_templates[MY_TASKS.my_task3]

        task2 = task2_template.get_task(
            output_version=self.version,
            n_draws=n_draws,
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
