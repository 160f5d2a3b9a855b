"""One failed node, told so that a person can act: why, its last log lines, the command.

``gristmill status`` and the end-of-run summary print this for each failure they show;
the HTML report shows the same for each failure cluster's sample.
"""

from __future__ import annotations

import shlex

from gristmill.store.db import AttemptRecord
from gristmill.text import printable


def tail(path: str, lines: int = 10, *, size: int = 64 * 1024) -> list[str]:
    """The last ``lines`` lines of a log file ([] when it cannot be read); only the last
    ``size`` bytes are read, so a huge log costs no more than a small one. Control
    characters are escaped (:func:`gristmill.text.printable`): these lines go to a
    terminal."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, 2)
            end = fh.tell()
            fh.seek(max(0, end - size))
            data = fh.read().decode(errors="replace")
    except OSError:
        return []
    return [printable(line) for line in data.splitlines()[-lines:]]


def failure_report(attempt: AttemptRecord, *, lines: int = 10) -> list[str]:
    """Why one node failed, its last log lines, and the command to rerun it by hand."""
    what = attempt.state
    detail = attempt.reason or (
        f"exit code {attempt.exit_code}" if attempt.exit_code is not None else ""
    )
    out = [printable(f"{attempt.job_name} (task {attempt.task}, attempt {attempt.attempt}): "
                     f"{what}" + (f" — {detail}" if detail else ""))]
    if attempt.peak_rss:
        out.append(f"  peak memory {attempt.peak_rss / 2**20:.0f} MiB; asked "
                   + ", ".join(f"{k}={v}" for k, v in attempt.resources.items()))
    out.append(f"  logs: {attempt.stderr}")
    last = tail(attempt.stderr, lines)
    if last:
        out.append("  last lines of stderr:")
        out.extend(f"    | {line}" for line in last)
    out.append(f"  rerun by hand: {shlex.join(attempt.argv)}")
    return out
