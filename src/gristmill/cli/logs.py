"""``gristmill logs``: one attempt's output, printed or followed, in bounded memory.

A log may be gigabytes (a chatty task over days), so it is copied in chunks and never
read whole; ``--tail N`` finds the last N lines by reading blocks backwards from the
end. ``--follow`` keeps copying what the attempt appends until the store says the
attempt ended (or, before the engine has recorded it, its result file exists).

A log holds whatever a task wrote, and the reader may not control the task: on a
terminal, control characters (ESC, the other C0 controls except newline and tab, DEL
and the C1 controls) are shown escaped (``\\x1b``), so a log can neither move the
cursor, retitle the window, set the clipboard nor hide its own lines. Into a pipe or a
file the bytes pass unchanged.
"""

from __future__ import annotations

import codecs
import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

import attrs
import click

from gristmill.cli.common import handle_errors
from gristmill.cli.status import find_node, resolve_run_dir
from gristmill.errors import RunDirError
from gristmill.store.db import AttemptRecord, Store
from gristmill.store.lock import is_locked
from gristmill.store.paths import confined
from gristmill.text import printable

#: Bytes copied at a time: memory stays flat whatever the size of the log.
CHUNK = 64 * 1024
#: The shell's status after SIGINT and SIGPIPE, kept when ``logs`` ends for those.
_INTERRUPTED, _BROKEN_PIPE = 130, 141


class Escaper:
    """Turns a stream of log bytes into text a terminal only displays.

    Bytes are decoded as UTF-8 incrementally (a character split between two chunks is
    kept whole); bytes that are no UTF-8 show as ``\\xNN``, so a raw 8-bit CSI (0x9b)
    is as harmless as its UTF-8 spelling. The result is encoded for the terminal,
    with characters it cannot show escaped too.
    """

    def __init__(self, encoding: str) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="backslashreplace")
        self._encoding = encoding

    def __call__(self, data: bytes, final: bool = False) -> bytes:
        text = printable(self._decoder.decode(data, final))
        return text.encode(self._encoding, errors="backslashreplace")


def _passthrough(data: bytes, final: bool = False) -> bytes:
    return data


Filter = Callable[[bytes, bool], bytes]


@attrs.define
class Output:
    """Where ``logs`` writes: standard output's bytes, escaped when it is a terminal."""

    stream: BinaryIO
    terminal: bool
    encoding: str
    #: Whether the last byte written ends a line: a header never starts mid-line.
    at_line_start: bool = True

    @classmethod
    def standard(cls) -> Output:
        stream = sys.stdout.buffer  # under the text stream: bytes go out as they are
        encoding = getattr(sys.stdout, "encoding", None) or "utf-8"
        return cls(stream, stream.isatty(), encoding)

    def new_filter(self) -> Filter:
        """A filter for one file's bytes (each file has its own partial characters)."""
        return Escaper(self.encoding) if self.terminal else _passthrough

    def write(self, data: bytes) -> None:
        if data:
            self.stream.write(data)
            self.at_line_start = data.endswith(b"\n")

    def header(self, path: str) -> None:
        """``==> path <==`` on a line of its own, before a file's bytes."""
        line = f"==> {path} <=="
        if self.terminal:
            line = click.style(printable(line), bold=True)
        if not self.at_line_start:
            self.write(b"\n")
        self.write(line.encode(self.encoding, errors="backslashreplace") + b"\n")

    def note(self, text: str) -> None:
        """A line of ours among the logs (a file that cannot be read)."""
        self.write(self.new_filter()(text.encode() + b"\n", True))


def tail_start(fh: BinaryIO, lines: int, *, block: int = CHUNK) -> int:
    """The offset where the last ``lines`` lines of ``fh`` begin.

    Blocks are read backwards from the end, counting newlines, so the cost is the tail's
    size, not the file's. A newline as the very last byte ends the last line rather
    than starting an empty one, as ``tail`` counts.
    """
    end = fh.seek(0, os.SEEK_END)
    if lines <= 0:
        return end
    found = 0
    pos = end
    while pos > 0:
        size = min(block, pos)
        pos -= size
        fh.seek(pos)
        data = fh.read(size)
        stop = len(data) - 1 if pos + size == end and data.endswith(b"\n") else len(data)
        while (stop := data.rfind(b"\n", 0, stop)) >= 0:
            found += 1
            if found == lines:
                return pos + stop + 1
    return 0


@attrs.define(eq=False)
class LogFile:
    """One of an attempt's two files, as far as ``logs`` has copied it."""

    path: Path
    filter: Filter
    handle: BinaryIO | None = None
    position: int = 0

    def open(self) -> bool:
        """Open the file; ``False`` while it does not exist (the attempt has not started)."""
        try:
            self.handle = open(self.path, "rb")  # noqa: SIM115 -- held across polls
        except FileNotFoundError:
            return False
        self.position = 0
        return True

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None

    def chunks(self) -> Iterator[bytes]:
        """What was appended since the last call, up to the size the file has now, filtered.

        Bounded by the size when called, so a log that grows faster than it is copied
        still ends; a file that shrank (truncated) is read again from the start.
        """
        if self.handle is None:
            return
        end = os.fstat(self.handle.fileno()).st_size
        if end < self.position:
            self.position = 0
        self.handle.seek(self.position)
        while self.position < end:
            data = self.handle.read(min(CHUNK, end - self.position))
            if not data:
                break
            self.position += len(data)
            yield self.filter(data, False)

    def finish(self) -> bytes:
        """What the filter still holds (the bytes of a character cut short)."""
        return self.filter(b"", True)

    def replaced(self) -> bool:
        """Whether the path names another file than the one open (jobmon moves a failed
        try's logs to ``<file>.try<n>`` and the next try writes a new one)."""
        if self.handle is None:
            return False
        try:
            now = self.path.stat()
        except OSError:
            return False
        held = os.fstat(self.handle.fileno())
        return (now.st_dev, now.st_ino) != (held.st_dev, held.st_ino)


@click.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("node")
@click.option("--attempt", type=click.IntRange(min=1), help="Which attempt (default: the last).")
@click.option("--out", "stream", flag_value="out", help="Only stdout.")
@click.option("--err", "stream", flag_value="err", help="Only stderr.")
@click.option("--tail", "lines", type=click.IntRange(min=0), metavar="N",
              help="Only the last N lines of each file.")
@click.option("-f", "--follow", is_flag=True,
              help="Keep printing what the attempt appends until it ends (or Ctrl-C).")
@click.option("--interval", type=click.FloatRange(min=0.01), default=0.5, show_default=True,
              help="How often --follow looks for new output and for the attempt's end.")
@handle_errors
def logs(run_dir: Path, node: str, attempt: int | None, stream: str | None,
         lines: int | None, follow: bool, interval: float) -> None:
    """Print the logs of NODE: a name ``gristmill tasks`` prints (a job name, or
    ``TASK#ID`` for a node that never ran), an identity prefix or an attempt key.

    On a terminal, control characters a task wrote are shown escaped (``\\x1b``);
    into a pipe or a file the bytes pass unchanged.
    """
    run_dir = resolve_run_dir(run_dir)
    store = Store.open(run_dir.resolve(), readonly=True)
    try:
        found = find_node(store, node)
        if isinstance(found, str):  # a node of the run that has no attempt yet
            click.echo(found)
            return
        chosen = [a for a in found if attempt is None or a.attempt == attempt]
        if not chosen:
            raise RunDirError(f"{node!r} has no attempt {attempt}; it has "
                              f"{', '.join(str(a.attempt) for a in found)}")
        record = max(chosen, key=lambda a: a.attempt)
        out = Output.standard()
        paths = [path for label, path in (("out", record.stdout), ("err", record.stderr))
                 if stream in (None, label)]
        _print_or_follow(out, run_dir, store, record, paths, lines=lines,
                         follow=follow, interval=interval)
    finally:
        store.close()


def _print_or_follow(
    out: Output, run_dir: Path, store: Store, record: AttemptRecord, paths: list[str], *,
    lines: int | None, follow: bool, interval: float,
) -> None:
    """Print, then follow when asked; Ctrl-C and a closed pipe end quietly."""
    files: list[LogFile] = []
    try:
        files = _print(out, run_dir, paths, lines=lines, keep_open=follow)
        if follow and files:
            _follow(out, run_dir, store, record, files, interval=interval)
        out.stream.flush()
    except KeyboardInterrupt:
        with contextlib.suppress(OSError):
            out.stream.flush()
        sys.exit(_INTERRUPTED)
    except BrokenPipeError:
        _drop_stdout()
        sys.exit(_BROKEN_PIPE)
    finally:
        for log in files:
            log.close()


def _print(out: Output, run_dir: Path, paths: list[str], *, lines: int | None,
           keep_open: bool) -> list[LogFile]:
    """Each file under its header, whole or its last ``lines``; the files kept open
    for ``--follow`` (a file not written yet among them, to be opened when it is)."""
    kept = []
    for path in paths:
        out.header(path)
        if not confined(run_dir, path):
            out.note(f"(not read: the store names a file outside the run directory {run_dir})")
            continue
        log = LogFile(Path(path), out.new_filter())
        try:
            opened = log.open()
        except OSError as exc:
            out.note(f"(cannot read: {exc.strerror})")
            continue
        if not opened:
            out.note("(nothing written yet)" if keep_open else "(nothing written: no such file)")
        else:
            assert log.handle is not None
            if lines is not None:
                log.position = tail_start(log.handle, lines)
            for data in log.chunks():
                out.write(data)
            if not keep_open:
                out.write(log.finish())
                log.close()
        if keep_open:
            kept.append(log)
    return kept


def _follow(out: Output, run_dir: Path, store: Store, record: AttemptRecord,
            files: list[LogFile], *, interval: float) -> None:
    """Copy what the files gain, every ``interval``, until the attempt has ended.

    The end is looked for *before* copying, so whatever the attempt wrote before it
    ended is copied by the last round. A header is printed whenever the output
    switches to the other file, as ``tail -f`` does.
    """
    last = files[-1]
    warned = False
    result = Path(record.result_path)
    result_readable = confined(run_dir, record.result_path)
    while True:
        ended = _ended(store, record.key, result if result_readable else None)
        for log in files:
            last = _copy_new(out, log, last)
            if log.replaced():  # the old file is drained: go on with the new one
                log.close()
                last = _copy_new(out, log, last)
        out.stream.flush()
        if ended is not None:
            for log in files:
                out.write(log.finish())
            out.stream.flush()
            click.echo(f"attempt {record.attempt} of {record.job_name} {ended}", err=True)
            return
        if not warned and not is_locked(run_dir):
            warned = True
            click.echo(f"no engine is running {run_dir}: following until the attempt's "
                       "result file appears (Ctrl-C to stop)", err=True)
        time.sleep(interval)


def _copy_new(out: Output, log: LogFile, last: LogFile) -> LogFile:
    """Copy what ``log`` gained (opening it if it was not yet there); the file written last."""
    if log.handle is None and not log.open():
        return last
    for data in log.chunks():
        if log is not last:
            out.header(str(log.path))
            last = log
        out.write(data)
    return last


def _ended(store: Store, key: str, result: Path | None) -> str | None:
    """How the attempt ended, or ``None`` while it has not."""
    now = store.attempt(key)
    if now is not None and now.ended is not None:
        why = f" ({now.reason})" if now.reason else ""
        return f"ended: {now.state}{why}"
    if result is not None and result.exists():
        return "ended (its result file is written; the engine has not recorded it yet)"
    return None


def _drop_stdout() -> None:
    """After the reader closed the pipe: point stdout at /dev/null, so the interpreter's
    last flush at exit does not fail again with a traceback."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # not a real file (a test's runner)
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)
