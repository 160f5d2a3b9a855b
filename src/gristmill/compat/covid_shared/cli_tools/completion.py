"""Finishing a failed application when ``gristmill resume`` completes its workflow run.

covid_shared could not resume: a failed application stayed failed. Here a failed
workflow run can be completed with ``gristmill resume``; when the application failed
*because* that run did, the resume also does what the application would have done on
success (:func:`complete_application`, attached to the rebuilt workflow's
``on_finish``):

1. ``metadata.yaml``: ``app_metadata.success`` becomes true and ``error_info`` goes, as
   in a run that succeeded the first time; its ``provenance`` block and the
   application's ``run_metadata.yaml`` say ``succeeded``, with the resume in ``history``;
2. then the links the user asked for: ``latest``, and ``best`` and the production tag
   when given.

``finish_application`` leaves what is needed: the request and the failed run in the
application's provenance (``extra.covid_shared``), and the application's directory in
the gristmill run's (``extra.covid_shared_application``). Work the application would
have done after its workflow returned is not run by a resume.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from loguru import logger

from gristmill import runs
from gristmill.compat.covid_shared.cli_tools.metadata import METADATA_FILE_NAME, Metadata
from gristmill.compat.covid_shared.cli_tools.run_directory import make_links
from gristmill.errors import GristmillError, RunDirError
from gristmill.worker.atomic import write_atomic

if TYPE_CHECKING:
    from gristmill.engine.runner import RunResult

#: In the application's provenance ``extra``: what the user asked for, and the failed run.
REQUEST_KEY = "covid_shared"
#: In ``extra.covid_shared``: the gristmill run whose completion completes the application.
RESUMABLE_KEY = "resumable_run"
#: In ``extra.covid_shared``, once done: the gristmill run whose resume completed it.
COMPLETED_KEY = "completed_by_resume"
#: In the gristmill run's ``extra``: the application directory to finish.
APPLICATION_KEY = "covid_shared_application"


def complete_application(result: RunResult) -> None:
    """After a run of a covid_shared workflow: finish its failed application if it succeeded.

    Does nothing for a run that failed again, for a run no failed application is waiting
    for, or when the application was already finished.
    """
    if not result.ok:
        return
    run_dir = Path(result.run_dir)
    try:
        pointer = runs.load_run_metadata(run_dir).extra.get(APPLICATION_KEY)
    except RunDirError as exc:
        logger.warning("{}; no covid_shared application is finished", exc)
        return
    if not isinstance(pointer, str):
        return
    app_dir = Path(pointer)
    try:
        provenance = runs.load_run_metadata(app_dir)
    except RunDirError as exc:
        raise _failed(run_dir, app_dir, exc) from exc
    request = provenance.extra.get(REQUEST_KEY)
    if not isinstance(request, dict) or request.get(RESUMABLE_KEY) != str(run_dir):
        logger.info("{}: the application in {} is not waiting for this run; left as it is",
                    run_dir, app_dir)
        return
    try:
        _finish(run_dir, app_dir, provenance, request)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise _failed(run_dir, app_dir, exc) from exc


def _finish(
    run_dir: Path, app_dir: Path, provenance: runs.RunMetadata, request: dict[str, Any]
) -> None:
    metadata_file = app_dir / METADATA_FILE_NAME
    data = yaml.safe_load(metadata_file.read_text(encoding="utf-8"))
    app = data.get("app_metadata") if isinstance(data, dict) else None
    if not isinstance(app, dict):
        raise ValueError(f"{metadata_file} has no app_metadata mapping")
    app["success"] = True
    app.pop("error_info", None)
    provenance.record_resume(_now(provenance))
    provenance.finish("succeeded")

    def write() -> None:
        data["provenance"] = provenance.to_dict()
        text = yaml.safe_dump(data, sort_keys=True, default_flow_style=False)
        write_atomic(metadata_file, text, make_dirs=False)
        provenance.dump(app_dir)

    write()
    success = Metadata()
    success["success"] = True
    make_links(success, app_dir, bool(request.get("mark_best")), request.get("production_tag"),
               request.get("quick"))
    del request[RESUMABLE_KEY]  # only now: a failure above is retried by resuming again
    request[COMPLETED_KEY] = str(run_dir)
    write()
    logger.info("{} completed: the application in {} succeeded (metadata.yaml, links)",
                run_dir, app_dir)


def _now(provenance: runs.RunMetadata) -> runs.RunMetadata:
    """This process, as a resume of the application (for its provenance ``history``)."""
    try:
        return runs.RunMetadata.collect(package=provenance.package)
    except GristmillError:
        return runs.RunMetadata.collect(package=None)


def _failed(run_dir: Path, app_dir: Path, exc: BaseException) -> RunDirError:
    return RunDirError(
        f"the run {run_dir} succeeded, but finishing its covid_shared application in {app_dir} "
        f"failed: {exc}. Fix that, then run `gristmill resume {run_dir}` again: nothing "
        "reruns, and the application's metadata.yaml and links are finished"
    )
