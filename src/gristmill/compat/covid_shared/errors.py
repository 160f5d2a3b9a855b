"""How a covid_shared workflow run ends badly: :class:`WorkflowRunError` and its interrupt.

A module of its own, light to import: ``cli_tools`` (which every task process loads)
recognises these in ``finish_application`` without importing the engine.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gristmill.errors import GristmillError

if TYPE_CHECKING:
    from gristmill.engine.runner import RunResult


class WorkflowRunError(GristmillError, RuntimeError):
    """A workflow run did not finish every task; ``status`` and ``result`` say how it ended.

    A ``RuntimeError``, which is what covid_shared raised.
    """

    exit_code = 1

    def __init__(self, message: str, status: str, result: RunResult) -> None:
        super().__init__(message)
        self.status = status
        self.result = result


class WorkflowInterruptedError(WorkflowRunError, KeyboardInterrupt):
    """The run was stopped by Ctrl-C or SIGTERM (the engine cancelled its jobs first).

    Also a ``KeyboardInterrupt``, as the interrupt was under jobmon: ``monitor_application``
    records ``'User interrupt.'`` and ``finish_application`` raises ``KeyboardInterrupt``.
    """

    exit_code = 130
