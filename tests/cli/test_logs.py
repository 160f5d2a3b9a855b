"""``gristmill logs``: whole files or their tails in bounded memory, ``--follow`` until the
attempt ends, control characters escaped on a terminal only, clear errors."""

from __future__ import annotations

import hashlib
import io
import os
import pty
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import tty
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from gm_testing import FIXTURES, SRC, attempts, wait_for
from hypothesis import given, settings
from hypothesis import strategies as st
from loguru import logger

from gristmill.cli.app import main
from gristmill.cli.logs import Escaper, LogFile, tail_start
from gristmill.engine.runner import run_workflow
from gristmill.errors import StoreError
from gristmill.store.db import STORE_NAME, AttemptRecord

GRISTMILL = [sys.executable, "-m", "gristmill.cli"]
#: The big log: large enough that reading it whole would dwarf the interpreter.
BIG_MB = 200


@pytest.fixture(scope="module")
def env() -> Iterator[dict[str, str]]:
    """The fixture tasks importable here and in children; the environment for a CLI child."""
    mp = pytest.MonkeyPatch()
    mp.syspath_prepend(str(FIXTURES))
    path = [str(FIXTURES), str(SRC), os.environ.get("PYTHONPATH", "")]
    mp.setenv("PYTHONPATH", os.pathsep.join(p for p in path if p))
    yield {**os.environ, "PYTHONIOENCODING": "utf-8"}
    mp.undo()
    logger.remove()  # `main` added a sink on CliRunner's stderr, which is closed now
    logger.disable("gristmill")


@pytest.fixture(scope="module")
def logged_run(env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished run: ``big`` wrote BIG_MB MB, ``chatter`` three lines on each stream,
    ``hostile`` terminal control sequences."""
    import gm_log_tasks

    root = tmp_path_factory.mktemp("logs") / "runs"
    result = run_workflow(gm_log_tasks.logged(megabytes=BIG_MB, lines=3), run_dir=root)
    assert result.counts == {"DONE": 3}
    return result.run_dir


def cli(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def record(run_dir: Path, task: str) -> AttemptRecord:
    found: list[AttemptRecord] = [a for a in attempts(run_dir) if a.task == task]
    assert len(found) == 1, found
    return found[0]


def header(path: str) -> bytes:
    return f"==> {path} <==\n".encode()


def test_prints_both_files_under_headers_or_only_the_one_asked(logged_run: Path) -> None:
    chatter = record(logged_run, "chatter")
    out = b"out 0\nout 1\nout 2\n"
    err = b"err 0\nerr 1\nerr 2\n"
    both = cli("logs", str(logged_run), "chatter")
    assert both.exit_code == 0, both.output
    assert both.stdout_bytes == header(chatter.stdout) + out + header(chatter.stderr) + err
    assert cli("logs", str(logged_run), "chatter", "--out").stdout_bytes == (
        header(chatter.stdout) + out)
    assert cli("logs", str(logged_run), "chatter", "--err").stdout_bytes == (
        header(chatter.stderr) + err)


def test_a_header_starts_its_own_line_after_a_log_without_a_final_newline(
        logged_run: Path) -> None:
    hostile = record(logged_run, "hostile")
    Path(hostile.stderr).write_bytes(b"no newline at the end")
    shown = cli("logs", str(logged_run), "hostile", "--tail", "0")
    assert shown.stdout_bytes == header(hostile.stdout) + header(hostile.stderr)
    Path(hostile.stdout).write_bytes(b"cut short")
    try:
        both = cli("logs", str(logged_run), "hostile")
        assert both.stdout_bytes == (header(hostile.stdout) + b"cut short\n"
                                     + header(hostile.stderr) + b"no newline at the end")
    finally:
        import gm_log_tasks

        Path(hostile.stdout).write_bytes(b"".join(gm_log_tasks.HOSTILE))
        Path(hostile.stderr).write_bytes(b"")


def _run_cli(args: list[str], env: dict[str, str]) -> tuple[int, int, str, bytes, int]:
    """Run ``gristmill ARGS`` as a child; (exit code, peak RSS in KiB, sha256 of stdout
    after its first line, that first line, stdout's length after it). stdout is hashed as
    it arrives, so the test holds none of it."""
    proc = subprocess.Popen([*GRISTMILL, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, env=env)
    assert proc.stdout is not None
    first = proc.stdout.readline()
    digest = hashlib.sha256()
    size = 0
    while chunk := proc.stdout.read(1 << 20):
        digest.update(chunk)
        size += len(chunk)
    proc.stdout.close()
    _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage, no other's
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, usage.ru_maxrss, digest.hexdigest(), first, size


def _file_digest(path: str) -> tuple[str, int]:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest(), os.path.getsize(path)


def test_a_big_log_streams_whole_with_the_memory_of_a_small_one(
        logged_run: Path, env: dict[str, str]) -> None:
    big = record(logged_run, "big")
    assert os.path.getsize(big.stdout) == BIG_MB * 1_000_000
    code, big_rss, digest, first, size = _run_cli(
        ["logs", str(logged_run), "big", "--out"], env)
    assert code == 0
    assert first == header(big.stdout)
    assert (digest, size) == _file_digest(big.stdout)  # every byte, in order
    code, small_rss, *_ = _run_cli(["logs", str(logged_run), "chatter", "--out"], env)
    assert code == 0
    # Reading the file whole would add at least its 200 MB (read_text: twice that).
    assert big_rss - small_rss < 16 * 1024, (big_rss, small_rss)


def _rchar() -> int:
    """Bytes this process has read so far, by any means (``/proc/self/io``)."""
    text = Path("/proc/self/io").read_text()
    return int(re.search(r"^rchar: (\d+)$", text, re.M).group(1))  # type: ignore[union-attr]


def test_tail_prints_the_last_lines_reading_only_the_end(logged_run: Path) -> None:
    chatter = record(logged_run, "chatter")
    two = cli("logs", str(logged_run), "chatter", "--tail", "2")
    assert two.exit_code == 0, two.output
    assert two.stdout_bytes == (header(chatter.stdout) + b"out 1\nout 2\n"
                                + header(chatter.stderr) + b"err 1\nerr 2\n")
    assert cli("logs", str(logged_run), "chatter", "--out", "--tail", "9").stdout_bytes == (
        header(chatter.stdout) + b"out 0\nout 1\nout 2\n")
    big = record(logged_run, "big")
    with open(big.stdout, "rb") as fh:
        fh.seek(-300, os.SEEK_END)
        last_three = fh.read()
    before = _rchar()
    shown = cli("logs", str(logged_run), "big", "--out", "--tail", "3")
    read = _rchar() - before
    assert shown.stdout_bytes == header(big.stdout) + last_three
    assert read < 2_000_000, f"--tail 3 read {read} bytes of a {BIG_MB} MB log"


@given(st.lists(st.sampled_from([b"a", b"bc", b"\n", b"\n\n", b"\xff"]), max_size=40),
       st.integers(0, 12), st.integers(1, 7))
@settings(max_examples=300, deadline=None)
def test_tail_start_counts_lines_as_tail_does(parts: list[bytes], lines: int,
                                              block: int) -> None:
    data = b"".join(parts)
    expected = b"".join(data.splitlines(keepends=True)[-lines:]) if lines else b""
    start = tail_start(io.BytesIO(data), lines, block=block)
    assert data[start:] == expected


@given(st.binary(max_size=200), st.lists(st.integers(0, 200), max_size=6))
@settings(max_examples=300, deadline=None)
def test_escaping_leaves_no_control_character_and_ignores_chunking(
        data: bytes, cuts: list[int]) -> None:
    whole = Escaper("utf-8")(data, True)
    escaper = Escaper("utf-8")
    pieces, start = [], 0
    for cut in sorted(cuts):
        pieces.append(escaper(data[start:cut]))
        start = max(start, cut)
    pieces.append(escaper(data[start:], True))
    assert b"".join(pieces) == whole
    text = whole.decode("utf-8")
    assert not re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f]", text)
    if not re.search(b"[\x00-\x08\x0b-\x1f\x7f]", data):
        try:
            plain = data.decode("utf-8")
        except UnicodeDecodeError:
            return
        if not re.search("[\x80-\x9f]", plain):
            assert text == plain  # printable text passes unchanged


def _passthrough(data: bytes, final: bool = False) -> bytes:
    return data


def test_a_followed_file_that_is_replaced_or_truncated_is_read_again_from_its_start(
        tmp_path: Path) -> None:
    """jobmon moves a failed try's files to ``<file>.try<n>`` and the next try starts a new
    file at the same path; a truncated file starts over too."""
    path = tmp_path / "task.out"
    path.write_bytes(b"try 1\n")
    log = LogFile(path, _passthrough)
    assert log.open()
    try:
        assert b"".join(log.chunks()) == b"try 1\n"
        assert not log.replaced()
        with open(path, "ab") as fh:
            fh.write(b"more\n")
        assert b"".join(log.chunks()) == b"more\n"
        path.rename(tmp_path / "task.out.try1")
        path.write_bytes(b"try 2\n")
        assert log.replaced()
        log.close()
        assert log.open()
        assert b"".join(log.chunks()) == b"try 2\n"
        path.write_bytes(b"new\n")  # truncated in place: shorter than what was read
        assert not log.replaced()
        assert b"".join(log.chunks()) == b"new\n"
    finally:
        log.close()
    assert not LogFile(tmp_path / "not yet", _passthrough).open()


def test_on_a_terminal_control_characters_are_escaped(
        logged_run: Path, env: dict[str, str]) -> None:
    """Under a pseudo-terminal a task's escape sequences arrive as text; the only ESC
    bytes are those of the bold header."""
    hostile = record(logged_run, "hostile")
    master, slave = pty.openpty()
    tty.setraw(slave)  # bytes as written: no "\n" -> "\r\n" on the way
    proc = subprocess.Popen([*GRISTMILL, "logs", str(logged_run), "hostile", "--out"],
                            stdin=subprocess.DEVNULL, stdout=slave, stderr=subprocess.PIPE,
                            env=env)
    os.close(slave)
    shown = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal's last writer
            break
        if not chunk:
            break
        shown += chunk
    os.close(master)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    bold = b"\x1b[1m==> " + hostile.stdout.encode() + b" <==\x1b[0m\n"
    assert shown.startswith(bold)
    body = shown[len(bold):]
    assert body == (
        b"title \\x1b]0;pwned\\x07 red \\x1b[31mRED\\x1b[0m bell \\x07\n"
        b"clipboard \\x1b]52;c;ZWNobyBwd25lZA==\\x07 del \\x7f\n"
        b"c1 \\x9b2J raw8bit \\x9b2J nul \\x00 cr \\x0d hidden\ttab\n"
        b"accents \xc3\xa9 euro \xe2\x82\xac\n"
    )


def test_into_a_pipe_the_bytes_pass_unchanged(logged_run: Path, env: dict[str, str]) -> None:
    import gm_log_tasks

    hostile = record(logged_run, "hostile")
    done = subprocess.run([*GRISTMILL, "logs", str(logged_run), "hostile", "--out"],
                          capture_output=True, env=env, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout == header(hostile.stdout) + b"".join(gm_log_tasks.HOSTILE)


def test_a_reader_that_closes_the_pipe_ends_logs_quietly(
        logged_run: Path, env: dict[str, str]) -> None:
    proc = subprocess.Popen([*GRISTMILL, "logs", str(logged_run), "big"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert proc.stdout is not None
    assert proc.stderr is not None
    proc.stdout.read(1000)  # as `| head` does
    proc.stdout.close()
    assert proc.wait(timeout=60) == 141
    assert proc.stderr.read() == b""
    proc.stderr.close()


def _sections(shown: bytes) -> dict[str, bytes]:
    """What ``logs`` printed under each header, per file, in order."""
    out: dict[str, bytes] = {}
    parts = re.split(rb"(?m)^==> (.+) <==\n", shown)
    assert parts[0] == b""
    for name, body in zip(parts[1::2], parts[2::2]):
        out[name.decode()] = out.get(name.decode(), b"") + body
    return out


class _Reader:
    """Collects a child's stdout in a thread, so the test can wait for what it printed."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        self.data = b""
        self._stream = proc.stdout
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while chunk := os.read(self._stream.fileno(), 65536):
            self.data += chunk

    def done(self) -> bytes:
        self._thread.join(timeout=60)
        return self.data


def test_follow_prints_what_a_running_attempt_appends_until_it_ends(
        env: dict[str, str], tmp_path: Path) -> None:
    release = tmp_path / "release"
    root = tmp_path / "runs"
    engine = subprocess.Popen(
        [*GRISTMILL, "run", "gm_log_tasks:dripping", "--release", str(release),
         "--run-dir", str(root)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    followers: list[subprocess.Popen[bytes]] = []
    try:
        def started() -> bool:
            if not (root / "latest" / STORE_NAME).exists():
                return False
            try:
                found = [a for a in attempts(root / "latest") if a.task == "drip"]
            except StoreError:  # read while the engine was still creating it
                return False
            return bool(found) and os.path.exists(found[0].stdout) and (
                b"drip 2\n" in Path(found[0].stdout).read_bytes())

        wait_for(started, 60, "the drip task's first lines")
        run_dir = (root / "latest").resolve()
        drip = record(run_dir, "drip")
        follow = [*GRISTMILL, "logs", str(run_dir), "drip", "--follow", "--interval", "0.05"]
        whole = subprocess.Popen(follow, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 env=env)
        interrupted = subprocess.Popen([*follow, "--err", "--tail", "1"],
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        followers += [whole, interrupted]
        reader, stopped = _Reader(whole), _Reader(interrupted)
        on_disk = Path(drip.stdout).read_bytes().count(b"\n")
        # Lines the task wrote after `logs` started arrive while the attempt runs.
        wait_for(lambda: b"drip %d\n" % (on_disk + 20) in reader.data, 60,
                 "lines appended after logs --follow started")
        wait_for(lambda: b"drop " in stopped.data, 60, "the interrupted follower's output")
        assert whole.poll() is None
        assert interrupted.poll() is None
        interrupted.send_signal(signal.SIGINT)
        assert interrupted.wait(timeout=60) == 130
        assert interrupted.stderr is not None
        assert b"Traceback" not in interrupted.stderr.read()
        assert stopped.done().startswith(header(drip.stderr) + b"drop ")
        assert whole.poll() is None  # the attempt still runs: so does the follower
        release.touch()
        assert whole.wait(timeout=60) == 0
        shown = reader.done()
        assert engine.wait(timeout=60) == 0
        # Every byte of both files, each under its own header, the last line included.
        sections = _sections(shown)
        assert sections == {drip.stdout: Path(drip.stdout).read_bytes(),
                            drip.stderr: Path(drip.stderr).read_bytes()}
        assert sections[drip.stdout].endswith(b"last line\n")
        assert whole.stderr is not None
        assert b"attempt 1 of drip ended" in whole.stderr.read()
    finally:
        release.touch()
        for proc in [*followers, engine]:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=30)
            for pipe in (proc.stdout, proc.stderr):
                if pipe is not None:
                    pipe.close()


def test_follow_of_an_attempt_that_already_ended_prints_and_exits(logged_run: Path) -> None:
    chatter = record(logged_run, "chatter")
    shown = cli("logs", str(logged_run), "chatter", "--follow", "--out", "--tail", "1")
    assert shown.exit_code == 0, shown.output
    assert shown.stdout_bytes == header(chatter.stdout) + b"out 2\n"
    assert "attempt 1 of chatter ended: SUCCEEDED" in shown.stderr


def test_bad_names_and_attempts_are_clear_errors(logged_run: Path) -> None:
    for args, fragment in (
        (["nosuch"], "no attempt of a node named 'nosuch'"),
        (["chatter", "--attempt", "7"], "'chatter' has no attempt 7; it has 1"),
        (["chatter", "--tail", "-1"], "-1 is not in the range x>=0"),
        (["chatter", "--attempt", "0"], "0 is not in the range x>=1"),
    ):
        shown = cli("logs", str(logged_run), *args)
        assert shown.exit_code == 2, (args, shown.output)
        assert fragment in shown.stderr, (args, shown.stderr)
        assert "Traceback" not in shown.output


def test_a_log_path_outside_the_run_directory_is_not_read(
        logged_run: Path, tmp_path: Path) -> None:
    """A store may come from elsewhere (a copied or crafted run): ``logs`` reads no file
    it names outside the run directory."""
    secret = tmp_path / "secret"
    secret.write_text("not for the log reader\n")
    chatter = record(logged_run, "chatter")
    conn = sqlite3.connect(logged_run / STORE_NAME)
    try:
        with conn:
            conn.execute("UPDATE attempts SET stdout = ? WHERE key = ?",
                         (str(secret), chatter.key))
        shown = cli("logs", str(logged_run), "chatter", "--out")
    finally:
        with conn:
            conn.execute("UPDATE attempts SET stdout = ? WHERE key = ?",
                         (chatter.stdout, chatter.key))
        conn.close()
    assert shown.exit_code == 0, shown.output
    assert "not for the log reader" not in shown.stdout
    assert "(not read: the store names a file outside the run directory" in shown.stdout
