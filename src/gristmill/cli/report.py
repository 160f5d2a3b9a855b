"""``gristmill report`` and ``gristmill trace``: a run's HTML report and its per-attempt trace.

Both read the run directory and write nothing into its store, so they work on a run
that is still going, on a finished one and on a copy, with no backend at hand.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import click

from gristmill.cli.common import handle_errors
from gristmill.cli.status import resolve_run_dir
from gristmill.errors import GristmillError
from gristmill.report.trace import FIELDS, FORMATS, choose_fields


@click.command("report")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the HTML file (default: RUN_DIR/report.html).")
@handle_errors
def report(run_dir: Path, output: Path | None) -> None:
    """Write one self-contained HTML file showing RUN_DIR: provenance, task graph, requested
    vs used, timeline, failures and every attempt. It needs no network to open."""
    from gristmill.report.html import write_report

    run_dir = resolve_run_dir(run_dir)
    info = write_report(run_dir, output if output is not None else run_dir / "report.html")
    note = (f"; the timeline shows {info.timeline_attempts:,} of them (a sample of nodes)"
            if info.sampled else "")
    click.echo(f"report: {info.path} ({info.bytes / 2**20:.1f} MiB, {info.attempts:,} "
               f"attempts{note}; {info.seconds:.1f} s)")


@contextlib.contextmanager
def _opened(output: str) -> Iterator[IO[str]]:
    """The stream to write the trace to: stdout for ``-``, else the file (made whole, then
    renamed into place, so a reader never sees half a trace)."""
    if output == "-":
        yield sys.stdout
        sys.stdout.flush()
        return
    path = Path(output)
    tmp = path.with_name(f".{path.name}.partial")
    try:
        with open(tmp, "w", encoding="utf-8", newline="") as fh:
            yield fh
        os.replace(tmp, path)
    except OSError as exc:
        raise GristmillError(f"cannot write the trace to {path}: {exc.strerror}") from exc
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


@click.command("trace")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
                required=False)
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="tsv", show_default=True,
              help="tsv and csv have a header line; json is one array, jsonl one object a line.")
@click.option("--fields", help="Comma-separated fields, in the order wanted (default: all; "
              "--list-fields names them).")
@click.option("-o", "--output", default="-", show_default=True, help="File to write; - is stdout.")
@click.option("--list-fields", is_flag=True, help="List every field and what it means, then exit.")
@handle_errors
def trace(run_dir: Path | None, fmt: str, fields: str | None, output: str,
          list_fields: bool) -> None:
    """One row per attempt of RUN_DIR, with named fields (see --list-fields): times, queue
    wait, exit code, signal, reason, host, requested and used memory and runtime.

    Streams: memory does not grow with the number of attempts.
    """
    from gristmill.report.trace import trace as write_trace
    from gristmill.store.db import Store

    if list_fields:
        for field in FIELDS:
            click.echo(f"{field.name}\t{field.doc}")
        return
    if run_dir is None:
        raise click.UsageError("Missing argument 'RUN_DIR'.")
    chosen = choose_fields(fields)
    store = Store.open(resolve_run_dir(run_dir), readonly=True)
    try:
        with _opened(output) as out:
            try:
                write_trace(store, out, fmt=fmt, fields=chosen)
            except BrokenPipeError:  # `gristmill trace RUN | head`: the reader has enough
                with contextlib.suppress(OSError):
                    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    finally:
        store.close()
