"""CommandRunner (retries, backoff, timeouts, call counts) and Vanished, with real commands."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from gristmill.backends.batch.commands import CommandRunner, Vanished
from gristmill.errors import BackendError


def recording_runner(**options: float) -> tuple[CommandRunner, list[float]]:
    """A runner whose backoff sleeps are recorded instead of slept."""
    slept: list[float] = []
    return CommandRunner(sleep=slept.append, **options), slept  # type: ignore[arg-type]


def flaky_script(tmp_path: Path, failures: int) -> Path:
    """A command that fails ``failures`` times (exit 1, a message on stderr), then succeeds."""
    counter = tmp_path / "count"
    script = tmp_path / "flaky"
    script.write_text(
        "#!/bin/sh\n"
        f"n=$(cat {counter} 2>/dev/null || echo 0); n=$((n + 1)); echo $n > {counter}\n"
        f'if [ "$n" -le {failures} ]; then echo "socket timed out (try $n)" >&2; exit 1; fi\n'
        'echo "ok after $n"\n'
    )
    script.chmod(0o755)
    return script


def test_a_command_that_succeeds_runs_once() -> None:
    runner, slept = recording_runner()
    proc = runner.run(["echo", "hello", "world"])
    assert proc.stdout == "hello world\n"
    assert runner.calls == {"echo": 1}
    assert slept == []


def test_a_failing_command_is_retried_with_doubling_backoff_then_succeeds(tmp_path: Path) -> None:
    runner, slept = recording_runner(attempts=4, backoff=0.5)
    proc = runner.run([str(flaky_script(tmp_path, failures=2))])
    assert proc.stdout == "ok after 3\n"
    assert runner.calls == {str(tmp_path / "flaky"): 3}
    assert slept == [0.5, 1.0]


def test_a_command_failing_every_attempt_raises_with_its_stderr(tmp_path: Path) -> None:
    runner, slept = recording_runner(attempts=3, backoff=1.0)
    script = flaky_script(tmp_path, failures=10)
    with pytest.raises(BackendError, match=r"failed 3 times: exit 1: socket timed out \(try 3\)"):
        runner.run([str(script), "--jobs=1"])
    assert runner.calls[str(script)] == 3
    assert slept == [1.0, 2.0]  # no sleep after the last attempt


def test_ok_decides_which_results_are_final() -> None:
    runner, slept = recording_runner()
    proc = runner.run(["sh", "-c", "echo 'Invalid job id specified' >&2; exit 1"],
                      ok=lambda p: "Invalid job id" in p.stderr)
    assert proc.returncode == 1
    assert runner.calls == {"sh": 1}
    assert slept == []


def test_a_hanging_command_is_killed_at_the_timeout_and_retried() -> None:
    runner, slept = recording_runner(timeout=0.2, attempts=2)
    start = time.monotonic()
    with pytest.raises(BackendError, match=r"sleep 5 failed 2 times: timed out after 0.2 s"):
        runner.run(["sleep", "5"])
    assert time.monotonic() - start < 2.0
    assert runner.calls == {"sleep": 2}
    assert slept == [1.0]


def test_a_missing_command_fails_at_once_and_says_what_to_install() -> None:
    runner, slept = recording_runner()
    with pytest.raises(BackendError, match=r"cannot run sbatch-not-here: .*installed and on PATH"):
        runner.run(["sbatch-not-here", "--parsable"])
    assert runner.calls == {"sbatch-not-here": 1}
    assert slept == []


def test_input_text_reaches_the_command() -> None:
    runner = CommandRunner()
    proc = runner.run([sys.executable, "-c", "import sys; print(sys.stdin.read()[::-1])"],
                      input_text="abc")
    assert proc.stdout == "cba\n"


def test_calls_are_counted_per_command_name() -> None:
    runner = CommandRunner()
    for _ in range(3):
        runner.run(["true"])
    runner.run(["echo"])
    assert runner.calls == {"true": 3, "echo": 1}


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_vanished_reports_lost_only_after_the_grace_time() -> None:
    clock = Clock()
    vanished = Vanished(grace=60.0, clock=clock)
    assert not vanished.missing("7_0")
    clock.now += 59.9
    assert not vanished.missing("7_0")
    clock.now += 0.1
    assert vanished.missing("7_0")


def test_vanished_forgets_a_job_that_shows_up_again() -> None:
    clock = Clock()
    vanished = Vanished(grace=10.0, clock=clock)
    vanished.missing("7_0")
    clock.now += 9
    vanished.seen("7_0")  # sacct caught up
    clock.now += 9
    assert not vanished.missing("7_0")  # the clock restarted at the new absence
    clock.now += 10
    assert vanished.missing("7_0")


def test_vanished_times_each_job_on_its_own() -> None:
    clock = Clock()
    vanished = Vanished(grace=10.0, clock=clock)
    vanished.missing("1_0")
    clock.now += 5
    vanished.missing("1_1")
    clock.now += 5
    assert vanished.missing("1_0")
    assert not vanished.missing("1_1")


def test_vanished_with_no_grace_is_lost_at_once() -> None:
    assert Vanished(grace=0.0).missing("1_0")


def test_a_command_that_must_not_run_twice_is_not_retried_after_a_timeout() -> None:
    runner, slept = recording_runner(timeout=0.2, attempts=3)
    with pytest.raises(BackendError, match=r"timed out after 0.2 s and is not retried"):
        runner.run(["sleep", "5"], retry_timeouts=False)
    assert runner.calls == {"sleep": 1}
    assert slept == []


def test_a_command_that_must_not_run_twice_is_still_retried_when_it_failed(
    tmp_path: Path,
) -> None:
    runner, _ = recording_runner(attempts=3)
    proc = runner.run([str(flaky_script(tmp_path, failures=1))], retry_timeouts=False)
    assert proc.stdout == "ok after 2\n"
