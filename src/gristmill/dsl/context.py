"""Which workflow is being recorded in this context: the one piece of state task calls read.

A task call looks its recorder up here rather than in :mod:`.recording`, so that
:mod:`.task` does not depend on the recording machinery (which depends on the nodes,
which render commands through the tasks' console scripts).
"""

from __future__ import annotations

import contextvars
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gristmill.dsl.recording import Recorder

#: Set by :func:`gristmill.dsl.recording.record` while a workflow function runs.
RECORDER: contextvars.ContextVar[Recorder | None] = contextvars.ContextVar(
    "gristmill_recorder", default=None
)


def current_recorder() -> Recorder | None:
    """The recorder of the workflow being built in this context, if any."""
    return RECORDER.get()
