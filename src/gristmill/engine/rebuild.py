"""Recording a run's workflow again from its store, for ``gristmill resume``.

A module apart from :mod:`gristmill.engine.runner`, which ``Workflow.run`` imports:
this one checks what the store names against :class:`WorkflowFunction`, so it imports
the DSL's workflow module, and the runner must not.
"""

from __future__ import annotations

import importlib
import sqlite3
from pathlib import Path
from typing import Any

from gristmill.dsl.workflow import REBUILDS_WORKFLOW, Workflow, WorkflowFunction
from gristmill.errors import GristmillError, RunDirError, SpecError, StoreError
from gristmill.spec.load import Spec
from gristmill.store.db import Store


def rebuild_workflow(run_dir: Path) -> tuple[Workflow, dict[str, Any]]:
    """Record the run's workflow again from what its store says (for ``gristmill resume``).

    Only the store's metadata is read here, without writing anything (``--dry-run``): the
    full check of the store comes once, in :func:`run_workflow`, before anything is
    written. Only a ``@gm.workflow`` function is called (or a callable marked as
    rebuilding one, as the covid_shared layer's); a function renamed, removed or replaced
    since the run started is a :class:`RunDirError` naming it.
    """
    with Store.untouched(run_dir, full=False) as store:
        try:
            meta = store.meta()
        except sqlite3.DatabaseError as exc:
            raise StoreError(
                f"the run store of {run_dir} is corrupt ({exc}); it was left untouched"
            ) from None
    function = meta.get("function")
    if not isinstance(function, str) or ":" not in function:
        raise RunDirError(f"{run_dir}: the store does not name the workflow function")
    module, _, qualname = function.partition(":")
    try:
        found: Any = importlib.import_module(module)
    except ImportError as exc:
        raise RunDirError(
            f"{run_dir}: cannot import {module!r} to rebuild workflow {function}: {exc}"
        ) from exc
    for part in qualname.split("."):
        found = getattr(found, part, _MISSING)
        if found is _MISSING:
            raise RunDirError(
                f"{run_dir} is a run of workflow {qualname!r} in module {module!r}, which has "
                f"no {qualname!r} any more (renamed or removed?); put it back to resume the "
                "run, or start a new run (gristmill run MODULE:WORKFLOW)"
            )
    if not (isinstance(found, WorkflowFunction) or getattr(found, REBUILDS_WORKFLOW, False)):
        raise RunDirError(
            f"{run_dir} is a run of workflow {qualname!r} in module {module!r}, but "
            f"{module}.{qualname} is no longer a @gm.workflow function (it is a "
            f"{type(found).__name__}); restore the workflow to resume the run, or start a "
            "new run (gristmill run MODULE:WORKFLOW)"
        )
    args = meta.get("args") or {}
    if not isinstance(args, dict):
        raise SpecError(f"{run_dir}: stored workflow arguments are not a mapping")
    source = f"{run_dir} (stored spec)"  # as written by any version, in today's units:
    meta["spec"] = Spec.from_stored(meta.get("spec") or {}, source).to_dict()
    try:
        wf = found(**args)
    except GristmillError:
        raise
    except Exception as exc:
        raise RunDirError(
            f"{run_dir}: workflow {function} raised while recording its DAG again: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    if not isinstance(wf, Workflow):
        raise RunDirError(
            f"{run_dir}: {function} returned a {type(wf).__name__}, not a recorded workflow"
        )
    return wf, meta


_MISSING = object()
