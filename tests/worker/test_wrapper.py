"""The attempt wrapper, on real processes: exits, signals, limits, process groups, the CLI."""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from gm_testing import DAEMONIZE, kill_if_alive, pid_gone, wait_for

import gristmill
from gristmill.states import JobState
from gristmill.worker.result import AttemptResult, read_result
from gristmill.worker.wrapper import EXIT_LOST, exit_status, run_attempt

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
    """Measured by a wrapper process of its own, as on a cluster: in this (test) process,
    whose own peak may already be larger than the task's after other tests, a short
    task's peak could not be told from the one Linux charges a child at exec."""
    code = "x = bytearray(300 << 20)"
    done = subprocess.run(_cli(tmp_path, "--", sys.executable, "-c", code), env=_cli_env(),
                          timeout=60, check=False)
    assert done.returncode == 0
    result = read_result(tmp_path / "r.json", key=None)
    assert result is not None
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


@pytest.mark.parametrize(
    ("then", "limits", "code", "state"),
    [("exit 0", [], 0, JobState.SUCCEEDED), ("exit 3", [], 3, JobState.FAILED),
     ("exec sleep 30", ["--runtime", "0.5"], 128 + signal.SIGTERM, JobState.TIMEOUT)],
)
def test_cli_kills_a_double_forked_daemon_without_environment_when_the_attempt_ends(
    tmp_path: Path, then: str, limits: list[str], code: int, state: JobState
) -> None:
    """The wrapper is a subreaper: the daemon (``setsid``, ``env -i``: no process group
    and no token of the attempt) is reparented to it and killed before it exits."""
    pidfile = tmp_path / "daemon.pid"
    done = subprocess.run(_cli(tmp_path, *limits, "--grace", "0.5", "--", "sh", "-c",
                               f"{DAEMONIZE}; {then}", "sh", str(pidfile)),
                          env=_cli_env(), timeout=60, check=False)
    daemon = int(pidfile.read_text())
    try:
        assert done.returncode == code
        result = read_result(tmp_path / "r.json", key=None)
        assert result is not None
        assert result.state is state
        assert pid_gone(daemon, timeout=10), f"the daemon outlived its {state.name} attempt"
    finally:
        kill_if_alive(daemon)


def test_cli_kills_a_daemon_tree_that_keeps_forking(tmp_path: Path) -> None:
    """A daemon that forks a new child every few milliseconds (each calling setsid) is
    frozen before it is killed: no child it forks meanwhile is left behind."""
    pidfile = tmp_path / "daemon.pid"
    spawner = ('echo $$ > "$1.tmp" && mv "$1.tmp" "$1"; '
               'while :; do setsid sleep 300 & echo $! >> "$1.kids"; sleep 0.005; done')
    script = (f"(setsid env -i sh -c '{spawner}' daemon \"$1\" &); "
              'while [ ! -s "$1.kids" ]; do sleep 0.01; done; sleep 0.2')
    done = subprocess.run(_cli(tmp_path, "--", "sh", "-c", script, "sh", str(pidfile)),
                          env=_cli_env(), timeout=60, check=False)
    assert done.returncode == 0
    daemon = int(pidfile.read_text())
    kids = [int(word) for word in Path(f"{pidfile}.kids").read_text().split()]
    try:
        assert len(kids) >= 2
        assert [pid for pid in [daemon, *kids] if not pid_gone(pid, timeout=10)] == []
    finally:
        for pid in [daemon, *kids]:
            kill_if_alive(pid)


#: A descriptor limit the wrapper boots under but cannot start a task under: 0-2 are
#: the standard streams, 3-4 its signal pipe, 5-6 the two logs, and the descriptor the
#: task's pidfd needs (taken before the spawn) is over the limit.
TIGHT = 7


def _tight() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (TIGHT, resource.getrlimit(
        resource.RLIMIT_NOFILE)[1]))


def test_cli_waits_for_descriptors_and_starts_the_attempt_once_they_return(
    tmp_path: Path
) -> None:
    """Out of descriptors is the node's fault: the wrapper waits, and the task runs once."""
    err = tmp_path / "wrapper.err"
    with err.open("wb") as sink:
        proc = subprocess.Popen(_cli(tmp_path, "--", "sh", "-c", "echo ran"), env=_cli_env(),
                                stderr=sink, preexec_fn=_tight)
    try:
        wait_for(lambda: "trying again" in err.read_text(), 30, "the wrapper to wait")
        assert not (tmp_path / "r.json").exists()
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.prlimit(proc.pid, resource.RLIMIT_NOFILE, (soft, hard))
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    result = read_result(tmp_path / "r.json", key=None)
    assert result is not None
    assert result.state is JobState.SUCCEEDED
    assert (tmp_path / "o").read_text() == "ran\n"
    assert "Too many open files" in err.read_text()


def test_cli_gives_up_after_its_patience_with_a_lost_result(tmp_path: Path) -> None:
    """A node that never recovers: LOST (the engine runs the attempt again without
    spending the task's retries) and exit code 75, not the task's failure."""
    done = subprocess.run(_cli(tmp_path, "--patience", "0.3", "--", "true"), env=_cli_env(),
                          capture_output=True, text=True, preexec_fn=_tight, timeout=30,
                          check=False)
    assert done.returncode == EXIT_LOST == 75
    result = read_result(tmp_path / "r.json", key=None)
    assert result is not None
    assert (result.state, result.exit_code) == (JobState.LOST, None)
    assert result.reason == ("cannot start true: [Errno 24] Too many open files "
                             "(the node lacked resources for 0.3 s)")
    assert exit_status(result) == 75
    assert "short of descriptors, processes or memory: trying again" in done.stderr


def test_a_start_without_descriptors_is_lost_not_failed_and_a_missing_program_is_failed(
    tmp_path: Path
) -> None:
    """In-process (no patience): the shortage is LOST at once; ENOENT stays the task's."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    held = []
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
        with contextlib.suppress(OSError):
            while True:
                held.append(os.open(os.devnull, os.O_RDONLY))
        short = run(tmp_path, ["true"])
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert (short.state, short.exit_code) == (JobState.LOST, None)
    assert short.reason.startswith("cannot open stdout log: [Errno 24] Too many open files")
    missing = run(tmp_path, ["gristmill-no-such-command"])
    assert (missing.state, missing.exit_code) == (JobState.FAILED, 127)
