"""Run directories and what is recorded about each run (``gm.runs``).

:mod:`gristmill.runs.directory` numbers run directories per day and moves their
``latest``/``best``/production links; :mod:`gristmill.runs.metadata` writes each
run's ``run_metadata.yaml``. The public names of both are here, so users write
``gm.runs.make_run_directory(root)``.
"""

from __future__ import annotations

from gristmill.runs.directory import (
    BEST_LINK,
    LATEST_LINK,
    PRODUCTION_DIR,
    get_last_stage_directory,
    latest_run,
    list_runs,
    make_run_directory,
    mark_best,
    mark_latest,
    mark_production,
    replace_link,
    setup_directory_structure,
)
from gristmill.runs.metadata import (
    METADATA_FILE,
    RUN_STATUSES,
    PathLike,
    RunMetadata,
    RunStatus,
    git_info,
    load_run_metadata,
    resumed_metadata,
)

__all__ = [
    "BEST_LINK",
    "LATEST_LINK",
    "METADATA_FILE",
    "PRODUCTION_DIR",
    "RUN_STATUSES",
    "PathLike",
    "RunMetadata",
    "RunStatus",
    "get_last_stage_directory",
    "git_info",
    "latest_run",
    "list_runs",
    "load_run_metadata",
    "make_run_directory",
    "mark_best",
    "mark_latest",
    "mark_production",
    "replace_link",
    "resumed_metadata",
    "setup_directory_structure",
]
