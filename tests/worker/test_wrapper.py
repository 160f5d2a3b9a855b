"""The attempt wrapper, on real processes: exits, signals, limits, process groups, the CLI."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from gm_testing import pid_gone

import gristmill
from gristmill.states import JobState
from gristmill.worker.result import AttemptResult, read_result
from gristmill.worker.wrapper import exit_status, run_attempt

MB = 2**20
# Allocates N MiB (touching every page) and holds it: argv [python, -c, HOG, N].
HOG = "import sys, time; x = bytearray(int(sys.argv[1]) << 20); time.sleep(30)"


def run(tmp_path: Path, argv: list[str], **options: object) -> AttemptResult:
    logs = tmp_path / "logs"
    return run_attempt(argv, stdout=logs / "out", stderr=logs / "err", **options)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("argv", "state", "code"),
    [
        (["true"], JobState.SUCCEEDED, 0),
        (["false"], JobState.FAILED, 1),
        (["sh", "-c", "exit 3"], JobState.FAILED, 3),
    ],
)
def test_exit_code_decides_the_state(
    tmp_path: Path, argv: list[str], state: JobState, code: int
) -> None:
    before = time.time()
    result = run(tmp_path, argv)
    assert (result.state, result.exit_code, result.signal) == (state, code, None)
    assert result.reason == f"exit code {code}"
    assert result.host == os.uname().nodename
    assert before <= result.started <= result.ended <= time.time()
    assert 0 <= result.elapsed < 2
    assert exit_status(result) == code


def test_a_task_killed_by_a_signal_fails_with_that_signal(tmp_path: Path) -> None:
    result = run(tmp_path, ["sh", "-c", "kill -9 $$"])
    assert (result.state, result.exit_code, result.signal) == (JobState.FAILED, None, 9)
    assert result.reason == "killed by SIGKILL"
    assert exit_status(result) == 137


def test_memory_watchdog_kills_over_the_limit_quickly(tmp_path: Path) -> None:
    result = run(tmp_path, [sys.executable, "-c", HOG, "300"], mem_limit=100 * MB)
    assert result.state is JobState.OOM
    assert result.signal == signal.SIGKILL
    assert result.elapsed < 3
    assert result.peak_rss is not None
    assert result.peak_rss > 100 * MB
    assert result.reason.startswith("exceeded memory limit 100M (peak ")


def test_memory_limit_counts_the_whole_process_group(tmp_path: Path) -> None:
    # Two children of 70M each: neither is over 100M, together they are.
    script = '"$0" -c "$1" 70 & "$0" -c "$1" 70 & wait'
    result = run(tmp_path, ["sh", "-c", script, sys.executable, HOG], mem_limit=100 * MB)
    assert result.state is JobState.OOM
    assert result.elapsed < 3


def test_runtime_limit_stops_the_task(tmp_path: Path) -> None:
    result = run(tmp_path, ["sleep", "30"], runtime_limit=0.5)
    assert result.state is JobState.TIMEOUT
    assert result.signal == signal.SIGTERM
    assert 0.5 <= result.elapsed < 3
    assert result.reason == "exceeded runtime 00:00:01"


def test_a_task_ignoring_sigterm_gets_sigkill_after_the_grace(tmp_path: Path) -> None:
    result = run(tmp_path, ["sh", "-c", "trap '' TERM; sleep 30"], runtime_limit=0.3, grace=0.4)
    assert result.state is JobState.TIMEOUT
    assert result.signal == signal.SIGKILL
    assert 0.7 <= result.elapsed < 3
    assert "ignored SIGTERM; killed by SIGKILL after 0.4 s" in result.reason


def test_children_left_behind_are_killed(tmp_path: Path) -> None:
    pid_file = tmp_path / "bg.pid"
    result = run(tmp_path, ["sh", "-c", 'sleep 1000 & echo $! > "$0"', str(pid_file)])
    assert result.state is JobState.SUCCEEDED
    assert pid_gone(int(pid_file.read_text()), timeout=2.0)


@pytest.mark.parametrize("program", ["/nonexistent/program", "gristmill-no-such-command"])
def test_a_missing_executable_fails_with_127(tmp_path: Path, program: str) -> None:
    result = run(tmp_path, [program, "--flag"])
    assert (result.state, result.exit_code) == (JobState.FAILED, 127)
    assert result.reason == f"command not found: {program}"
    assert f"command not found: {program}" in (tmp_path / "logs" / "err").read_text()
    assert exit_status(result) == 127


def test_a_file_without_execute_permission_fails_with_126(tmp_path: Path) -> None:
    script = tmp_path / "script.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(stat.S_IRUSR | stat.S_IWUSR)
    result = run(tmp_path, [str(script)])
    assert (result.state, result.exit_code) == (JobState.FAILED, 126)
    assert result.reason == f"permission denied: {script}"


def test_argv_reaches_the_program_literally(tmp_path: Path) -> None:
    out = tmp_path / "argv.json"
    tricky = ["a b", "it's", '"quoted"', "x;y", "$(touch pwned)", "`id`", "line\nbreak", "*", ""]
    code = "import sys, json; json.dump(sys.argv[2:], open(sys.argv[1], 'w'))"
    result = run(tmp_path, [sys.executable, "-c", code, str(out), *tricky], cwd=tmp_path)
    assert result.state is JobState.SUCCEEDED
    assert json.loads(out.read_text()) == tricky
    assert not (tmp_path / "pwned").exists()


def test_logs_are_appended_with_their_folders_created(tmp_path: Path) -> None:
    for word in ("one", "two"):
        run(tmp_path, ["sh", "-c", f"echo {word}; echo {word}-err >&2"])
    assert (tmp_path / "logs" / "out").read_text() == "one\ntwo\n"
    assert (tmp_path / "logs" / "err").read_text() == "one-err\ntwo-err\n"


def test_one_file_can_take_both_streams(tmp_path: Path) -> None:
    log = tmp_path / "both.log"
    run_attempt(["sh", "-c", "echo out; echo err >&2"], stdout=log, stderr=log)
    assert log.read_text() == "out\nerr\n"


def test_env_and_cwd_are_applied(tmp_path: Path) -> None:
    env = {"PATH": os.environ["PATH"], "GM_WORD": "hello there"}
    result = run(tmp_path, ["sh", "-c", 'echo "$GM_WORD"; pwd'], env=env, cwd=tmp_path)
    assert result.state is JobState.SUCCEEDED
    assert (tmp_path / "logs" / "out").read_text() == f"hello there\n{tmp_path}\n"


def test_a_bare_command_is_looked_up_on_the_tasks_path(tmp_path: Path) -> None:
    (tmp_path / "bin").mkdir()
    script = tmp_path / "bin" / "gm-hello"
    script.write_text("#!/bin/sh\necho hello from the task PATH\n")
    script.chmod(0o755)
    env = {"PATH": f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    assert run(tmp_path, ["gm-hello"], env=env).state is JobState.SUCCEEDED
    assert (tmp_path / "logs" / "out").read_text() == "hello from the task PATH\n"
    assert run(tmp_path, ["gm-hello"]).exit_code == 127  # not on this process's PATH


def test_a_missing_working_directory_fails_clearly(tmp_path: Path) -> None:
    result = run(tmp_path, ["true"], cwd=tmp_path / "nope")
    assert result.state is JobState.FAILED
    assert result.reason.startswith(f"cannot enter working directory {tmp_path / 'nope'}")


def test_peak_rss_is_the_tasks_own(tmp_path: Path) -> None:
    code = "x = bytearray(300 << 20)"
    result = run(tmp_path, [sys.executable, "-c", code])
    assert result.state is JobState.SUCCEEDED
    assert result.peak_rss is not None
    assert 300 * MB < result.peak_rss < 400 * MB
    # A tiny task is not charged with this (large) process's memory.
    small = run(tmp_path, ["true"])
    assert small.peak_rss is None or small.peak_rss < 50 * MB


def _cli_env() -> dict[str, str]:
    src = str(Path(gristmill.__file__).resolve().parent.parent)
    path = os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path}


def _cli(tmp_path: Path, *argv: str, module: str = "gristmill.worker.wrapper") -> list[str]:
    return [sys.executable, "-m", module, "--result", str(tmp_path / "r.json"),
            "--stdout", str(tmp_path / "o"), "--stderr", str(tmp_path / "e"), *argv]


def test_cli_runs_the_attempt_and_exits_as_it_did(tmp_path: Path) -> None:
    done = subprocess.run(_cli(tmp_path, "--mem", "1G", "--runtime", "10", "--", "sh", "-c",
                               "echo hi; exit 3"), env=_cli_env(), timeout=20, check=False)
    assert done.returncode == 3
    result = read_result(tmp_path / "r.json", key=None)
    assert result is not None
    assert (result.state, result.exit_code) == (JobState.FAILED, 3)
    assert (tmp_path / "o").read_text() == "hi\n"
    assert result.key is None  # run by hand without --key: the result names no attempt


def test_cli_names_the_attempt_given_by_key_in_its_result(tmp_path: Path) -> None:
    done = subprocess.run(_cli(tmp_path, "--key", "0123456789abcdef.3", "--", "true"),
                          env=_cli_env(), timeout=20, check=False)
    assert done.returncode == 0
    result = read_result(tmp_path / "r.json", key="0123456789abcdef.3")
    assert result is not None
    assert (result.state, result.key) == (JobState.SUCCEEDED, "0123456789abcdef.3")


@pytest.mark.parametrize(
    ("argv", "code", "state"),
    [(["true"], 0, JobState.SUCCEEDED), (["sh", "-c", "exit 3"], 3, JobState.FAILED)],
)
def test_cli_runs_under_the_module_path_of_gristmill_0_1(
    tmp_path: Path, argv: list[str], code: int, state: JobState
) -> None:
    """``python -m gristmill.worker`` (the package now) is the wrapper's path in 0.1."""
    done = subprocess.run(_cli(tmp_path, "--", *argv, module="gristmill.worker"),
                          env=_cli_env(), timeout=20, check=False)
    assert done.returncode == code
    result = read_result(tmp_path / "r.json", key=None)
    assert result is not None
    assert (result.state, result.exit_code) == (state, code)


def test_cli_sigterm_cancels_the_attempt(tmp_path: Path) -> None:
    proc = subprocess.Popen(_cli(tmp_path, "--grace", "0.5", "--", "sh", "-c",
                                 "echo started; exec sleep 30"), env=_cli_env())
    deadline = time.monotonic() + 10
    while not (tmp_path / "o").exists() or not (tmp_path / "o").read_text():
        assert time.monotonic() < deadline, "the task never started"
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 128 + signal.SIGTERM
    result = read_result(tmp_path / "r.json", key=None)
    assert result is not None
    assert result.state is JobState.CANCELLED


def test_cli_needs_the_command_after_double_dash(tmp_path: Path) -> None:
    done = subprocess.run(_cli(tmp_path, "true"), env=_cli_env(), capture_output=True,
                          text=True, timeout=20, check=False)
    assert done.returncode == 2
    assert "after `--`" in done.stderr


def test_a_runtime_longer_than_poll_can_wait_is_waited_for_in_steps(tmp_path: Path) -> None:
    """poll() takes a C int of milliseconds (~596 h): a year-long limit must not overflow it."""
    result = run_attempt(["sleep", "0.2"], stdout=tmp_path / "out", stderr=tmp_path / "err",
                         runtime_limit=366 * 86400.0)
    assert result.state is JobState.SUCCEEDED
