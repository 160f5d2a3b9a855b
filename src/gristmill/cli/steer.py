"""``gristmill limit | pause | unpause RUN_DIR``: steer a run without restarting it.

With a live engine the request goes through the run's ``steer/`` folder and the command
waits (``--wait``) until the engine took it; with none it is recorded in the store for
the next ``resume``. See :mod:`gristmill.engine.steering`.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import click

from gristmill.cli.common import handle_errors
from gristmill.cli.status import _open, resolve_run_dir
from gristmill.engine.steering import (
    MAX_RETRIES,
    META_KEY,
    Limits,
    Request,
    Steering,
    check_tasks,
    current_user,
    receive,
    send,
)
from gristmill.errors import RunDirError
from gristmill.store.db import Store
from gristmill.store.lock import RunLock, is_locked, verified_engine
from gristmill.users import user_name

_RUN_DIR = click.argument(
    "run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
_WAIT = click.option(
    "--wait", type=click.FloatRange(0, 3600), default=10.0, show_default=True,
    help="Seconds to wait for a running engine to take the request.")


def steer(run_dir: Path, request: Request, wait: float) -> None:
    """Deliver ``request`` to the engine of ``run_dir``, or record it for the next resume."""
    run_dir = resolve_run_dir(run_dir)
    store = _open(run_dir)
    try:
        check_tasks(request, sorted({row["task"] for row in store.units()}))
    finally:
        store.close()
    for _ in range(3):  # an engine may start or stop between the two checks below
        if is_locked(run_dir):
            _to_engine(run_dir, request, wait)
            return
        try:
            with RunLock(run_dir):
                _to_store(run_dir, request)
            return
        except RunDirError:
            if not is_locked(run_dir):
                raise
    raise RunDirError(f"{run_dir}: engines keep starting and stopping; try again")


def _to_engine(run_dir: Path, request: Request, wait: float) -> None:
    pid, why = verified_engine(run_dir)
    if pid is None:
        raise RunDirError(f"an engine holds {run_dir}, but gristmill cannot verify which "
                          f"process it is: {why}; nothing was changed")
    owner = os.stat(f"/proc/{pid}").st_uid
    if owner != os.geteuid():
        raise RunDirError(f"the engine of {run_dir} runs as {user_name(owner)}: only that user "
                          "can steer it; nothing was changed")
    path = send(run_dir, request)
    deadline = time.monotonic() + wait
    while path.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    if path.exists():
        click.echo(f"sent to the engine (pid {pid}); it has not taken it yet and will at its "
                   f"next cycle: {request.describe()}")
    else:
        click.echo(f"the engine (pid {pid}) took it: {request.describe()}")


def _to_store(run_dir: Path, request: Request) -> None:
    try:
        store = Store.open(run_dir)
    except RunDirError as exc:
        raise RunDirError(f"no engine is running {run_dir} and its store cannot be changed: "
                          f"{exc}") from None
    try:
        steering = Steering.from_json(store.meta().get(META_KEY))
        for left in receive(run_dir):  # sent to an engine that ended before taking them
            steering = steering.apply(left)
        steering = steering.apply(request)
        with store.transaction() as cur:
            store.set_meta(cur, META_KEY, steering.to_json())
    finally:
        store.close()
    click.echo(f"no engine is running {run_dir}; recorded for its next resume: "
               f"{request.describe()}")


@click.command()
@_RUN_DIR
@click.option("--task", help="Steer this task only (default: the whole run).")
@click.option("--max-concurrent", type=click.IntRange(min=1),
              help="Most jobs running at once (of the run, or of --task).")
@click.option("--retries", type=click.IntRange(0, MAX_RETRIES),
              help="Retries of each node not yet retried so often.")
@click.option("--max-mem", help="Cap of memory escalation after an OOM, e.g. 64G.")
@click.option("--max-runtime", help="Cap of runtime escalation after a TIMEOUT, e.g. 12h.")
@_WAIT
@handle_errors
def limit(run_dir: Path, task: str | None, max_concurrent: int | None, retries: int | None,
          max_mem: str | None, max_runtime: str | None, wait: float) -> None:
    """Change limits of a run, live: they apply to jobs not yet submitted and hold
    across ``resume``. Lowering a limit never stops running jobs."""
    limits = Limits.parse(max_concurrent=max_concurrent, retries=retries, max_mem=max_mem,
                          max_runtime=max_runtime)
    steer(run_dir, Request("limit", task=task, limits=limits, user=current_user(),
                           time=time.time()), wait)


@click.command()
@_RUN_DIR
@_WAIT
@handle_errors
def pause(run_dir: Path, wait: float) -> None:
    """Submit nothing new (running jobs go on) until ``gristmill unpause``."""
    steer(run_dir, Request("pause", user=current_user(), time=time.time()), wait)


@click.command()
@_RUN_DIR
@_WAIT
@handle_errors
def unpause(run_dir: Path, wait: float) -> None:
    """Submit again after ``gristmill pause``."""
    steer(run_dir, Request("unpause", user=current_user(), time=time.time()), wait)
