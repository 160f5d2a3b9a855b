"""``finish_application``: write the metadata, move the links, and fail if the application did.

Besides covid_shared's ``metadata.yaml`` it records, in the run's gristmill provenance
(``run_metadata.yaml``, also the ``provenance`` block of ``metadata.yaml``), what the user
asked for (``--mark-best``, ``--production-tag``, a quick run), how the application ended,
and, when it failed because its workflow run did, which gristmill run that was: a
``gristmill resume`` that completes that run then finishes the application
(:mod:`.completion`).
"""

from __future__ import annotations

import os
from pathlib import Path

from loguru import logger

from gristmill import runs
from gristmill.compat.covid_shared.cli_tools.completion import (
    APPLICATION_KEY,
    REQUEST_KEY,
    RESUMABLE_KEY,
)
from gristmill.compat.covid_shared.cli_tools.metadata import (
    METADATA_FILE_NAME,
    Metadata,
    RunMetadata,
    raised_by,
)
from gristmill.compat.covid_shared.cli_tools.run_directory import make_links
from gristmill.compat.covid_shared.errors import WorkflowRunError
from gristmill.errors import RunDirError


def finish_application(
    run_metadata: RunMetadata,
    app_metadata: Metadata,
    run_directory: str | os.PathLike[str],
    mark_best: bool,
    production_tag: str | None,
    quick: int | None = None,
) -> None:
    """End an application run, in covid_shared's order.

    1. ``metadata.yaml`` (and gristmill's ``run_metadata.yaml``), with the provenance
       already finished: its status and end time are true when written.
    2. The links, only if the application succeeded (:func:`make_links`).
    3. The application's exception raised again (``KeyboardInterrupt`` for an interrupt).
    """
    run_dir = Path(run_directory).resolve()
    success = bool(app_metadata["success"])
    error_info = None if success else app_metadata["error_info"]
    interrupted = not success and not isinstance(error_info, dict)
    run_metadata["app_metadata"] = app_metadata.to_dict()
    provenance = run_metadata.provenance
    provenance.extra.setdefault("application", run_metadata.get("tool_name"))
    request: dict[str, object] = {
        "mark_best": bool(mark_best), "production_tag": production_tag, "quick": quick,
    }
    failed_run = _failed_workflow_run(app_metadata)
    if failed_run is not None:
        request[RESUMABLE_KEY] = str(failed_run)
    provenance.extra[REQUEST_KEY] = request
    provenance.finish("succeeded" if success else "cancelled" if interrupted else "failed")
    run_metadata.dump(run_dir / METADATA_FILE_NAME)
    try:
        provenance.dump(run_dir)
    except RunDirError as exc:  # metadata.yaml, which later stages read, is written
        logger.warning("{}", exc)
    if failed_run is not None:
        _point_back(failed_run, run_dir)
    make_links(app_metadata, run_dir, mark_best, production_tag, quick)
    if success:
        return
    if interrupted:
        raise KeyboardInterrupt
    assert isinstance(error_info, dict)
    raise error_info["exception_value"]


def _failed_workflow_run(app_metadata: Metadata) -> Path | None:
    """The gristmill run whose failure (or interrupt) failed the application, if that was it."""
    if app_metadata["success"]:
        return None
    exc = raised_by(app_metadata)
    if not isinstance(exc, WorkflowRunError):
        return None
    run_dir = Path(exc.result.run_dir)
    return run_dir if run_dir.is_dir() else None


def _point_back(workflow_run: Path, application_dir: Path) -> None:
    """Tell the gristmill run which application to finish when a resume completes it."""
    try:
        metadata = runs.load_run_metadata(workflow_run)
        metadata.extra[APPLICATION_KEY] = str(application_dir)
        metadata.dump(workflow_run)
    except RunDirError as exc:
        logger.warning("{}; a gristmill resume of {} will not finish the application in {}",
                       exc, workflow_run, application_dir)
        return
    logger.info("the workflow run failed; after fixing the cause, `gristmill resume {}` "
                "finishes it and this application's metadata and links", application_dir)
