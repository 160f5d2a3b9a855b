"""The error tree of gristmill.

Every error says what was wrong, where (task, node, YAML path) and what to do.
Each refines a builtin where one fits, so callers may catch either (as attrs does).
"""

from __future__ import annotations


class GristmillError(Exception):
    """Base of every error gristmill raises on purpose."""

    #: Exit code the CLI uses when this error reaches it: 2 for user errors.
    exit_code = 2


class SpecError(GristmillError, ValueError):
    """A resource value or a spec file is invalid."""


class TaskArgumentError(GristmillError, TypeError):
    """A task was called with unknown, missing or ill-typed arguments."""


class GraphError(GristmillError, ValueError):
    """The recorded workflow is not a DAG (a cycle) or is otherwise malformed."""


class NotInWorkflowError(GristmillError, RuntimeError):
    """A task was called outside a ``@gm.workflow`` function."""


class BackendError(GristmillError, RuntimeError):
    """A backend could not do what was asked (submission refused, scheduler missing).

    ``transient`` marks a failure worth trying again later (a scheduler command that
    failed or timed out) rather than a refusal that will not change (a task asking for
    more than the machine has under ``--strict-resources``).
    """

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


class RunDirError(GristmillError, OSError):
    """A run directory cannot be created, read, locked or trusted."""


class StoreError(RunDirError):
    """The run store is corrupt, from a newer schema, or cannot be written."""


class RunDirGoneError(RunDirError):
    """The run directory, its store or its lock file was deleted or moved under a running
    engine, which then cancelled its jobs and stopped.

    Exit code 1, as for a run that did not complete: the input was fine, the run is not.
    """

    exit_code = 1


def shown(value: object, limit: int = 200) -> str:
    """``repr(value)`` cut to ``limit`` characters, for a message: an error never prints a
    huge value (a crafted spec, a megabyte argument) whole."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 5]}...{text[-1]}"
