"""``finish_application``: write the metadata, move the links, and fail if the application did."""

from __future__ import annotations

import os
from pathlib import Path

from loguru import logger

from gristmill import runs
from gristmill.compat.covid_shared.cli_tools.metadata import (
    METADATA_FILE_NAME,
    Metadata,
    RunMetadata,
)
from gristmill.compat.covid_shared.cli_tools.run_directory import mark_production


def make_links(
    app_metadata: Metadata,
    run_directory: str | os.PathLike[str],
    mark_as_best: bool,
    production_tag: str | None,
    quick: int | None = None,
) -> None:
    """After a successful, complete run: move ``latest``, and ``best``/production when asked.

    As in covid_shared a production tag is only applied together with ``mark_best``,
    and a tag that is not a ``YYYY_MM_DD`` date is reported and skipped.
    """
    if not app_metadata["success"] or quick:
        return
    runs.mark_latest(run_directory)
    if mark_as_best:
        runs.mark_best(run_directory)
    if production_tag and not mark_as_best:
        logger.warning("production tag {!r} ignored: a run is tagged for production only "
                       "together with --mark-best", production_tag)
    elif production_tag:
        try:
            mark_production(run_directory, production_tag)
        except ValueError as exc:
            logger.warning("{}; the run was not marked for production", exc)


def finish_application(
    run_metadata: RunMetadata,
    app_metadata: Metadata,
    run_directory: str | os.PathLike[str],
    mark_best: bool,
    production_tag: str | None,
    quick: int | None = None,
) -> None:
    """End an application run.

    Writes ``metadata.yaml`` (covid_shared's file, read by later stages) and
    gristmill's ``run_metadata.yaml``, moves the links on success, then re-raises the
    application's exception (or ``KeyboardInterrupt``) if it failed.
    """
    run_dir = Path(run_directory)
    success = bool(app_metadata["success"])
    run_metadata["app_metadata"] = app_metadata.to_dict()
    run_metadata.dump(run_dir / METADATA_FILE_NAME)
    provenance = run_metadata.provenance
    provenance.finish("succeeded" if success else "failed")
    provenance.extra.setdefault("application", run_metadata.get("tool_name"))
    provenance.dump(run_dir)
    make_links(app_metadata, run_dir, mark_best, production_tag, quick)
    if success:
        return
    error_info = app_metadata["error_info"]
    if not isinstance(error_info, dict):
        raise KeyboardInterrupt
    raise error_info["exception_value"]
