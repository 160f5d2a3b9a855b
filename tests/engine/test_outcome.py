"""Tests for gristmill.engine.outcome: which record wins, then retry, escalate or fail."""

from __future__ import annotations

import attrs
import pytest

from gristmill.backends.base import JobStatus
from gristmill.engine.outcome import (
    LOST_RETRIES,
    PREEMPT_RETRIES,
    Action,
    authoritative,
    decide,
    spends_retry,
    with_usage,
)
from gristmill.resources import Escalation, Policy, Resources
from gristmill.states import JobState
from gristmill.worker.result import AttemptResult

G = 2**30


def result(state: JobState, signal: int | None = None, code: int | None = 1) -> AttemptResult:
    return AttemptResult(state, code, signal, 10, 1.0, "h", 0.0, 1.0, f"wrapper: {state.value}")


def test_the_schedulers_accounting_wins_for_cpu_time_and_peak_memory() -> None:
    """sacct's numbers where it has them, the worker's for the rest; elapsed and host
    stay the worker's; ``usage_source`` says whose they are."""
    measured = AttemptResult(JobState.SUCCEEDED, 0, None, 10, 1.5, "h", 0.0, 1.5, "exit code 0",
                             cpu_time=0.4)
    both = JobStatus(JobState.SUCCEEDED, 0, None, 20, 2.0, "node7", "", 0.5, "scheduler")
    merged = authoritative(both, measured)
    assert (merged.cpu_time, merged.peak_rss, merged.elapsed, merged.host) == (0.5, 20, 1.5, "h")
    assert merged.usage_source == "scheduler"
    cpu_only = authoritative(JobStatus(JobState.SUCCEEDED, cpu_time=0.5,
                                       usage_source="scheduler"), measured)
    assert (cpu_only.cpu_time, cpu_only.peak_rss, cpu_only.usage_source) == (
        0.5, 10, "scheduler+worker")
    squeue = authoritative(JobStatus(JobState.SUCCEEDED), measured)  # no accounting
    assert (squeue.cpu_time, squeue.peak_rss, squeue.usage_source) == (0.4, 10, "worker")
    unmeasured = JobStatus(JobState.SUCCEEDED, elapsed=1.0)
    assert with_usage(unmeasured, both) == attrs.evolve(
        unmeasured, cpu_time=0.5, peak_rss=20, usage_source="scheduler")
    assert authoritative(both, None) == both  # no result file: the scheduler's record


def test_the_result_file_wins_but_the_scheduler_says_why_a_signal_came() -> None:
    assert authoritative(JobStatus(JobState.FAILED), None) == JobStatus(JobState.FAILED)
    ok = authoritative(JobStatus(JobState.LOST), result(JobState.SUCCEEDED, code=0))
    assert (ok.state, ok.peak_rss) == (JobState.SUCCEEDED, 10)
    killed = result(JobState.FAILED, signal=9, code=None)
    timeout = authoritative(JobStatus(JobState.TIMEOUT, reason="time limit"), killed)
    assert (timeout.state, timeout.reason, timeout.signal) == (JobState.TIMEOUT, "time limit", 9)
    oom = authoritative(JobStatus(JobState.OOM, reason="oom-kill"), result(JobState.FAILED))
    assert (oom.state, oom.reason) == (JobState.OOM, "oom-kill")
    # a plain exit code is the task's own verdict, whatever the scheduler thinks
    plain = authoritative(JobStatus(JobState.CANCELLED), result(JobState.FAILED))
    assert plain.state is JobState.FAILED


def verdict(state: JobState, *, retries: int = 2, tries: int = 1, lost: int = 0,
            current: Resources | None = None, no_retry: bool = False,
            policy: Policy | None = None, preempted: int = 0) -> tuple[Action, Resources | None]:
    base = Resources(mem="1G", runtime=60)
    got = decide(JobStatus(state), policy=policy or Policy(retries=retries), base=base,
                 current=current or base, tries=tries, lost=lost, no_retry=no_retry,
                 preempted=preempted)
    return got.action, got.resources


@pytest.mark.parametrize("state", [JobState.PREEMPTED, JobState.NODE_FAIL])
def test_the_scheduler_says_a_stopped_wrapper_was_preempted_or_lost_its_node(
    state: JobState,
) -> None:
    stopped = authoritative(JobStatus(state, reason="PREEMPTED"), result(JobState.CANCELLED))
    assert (stopped.state, stopped.reason) == (state, "PREEMPTED")
    killed = authoritative(JobStatus(state), result(JobState.FAILED, signal=15, code=None))
    assert killed.state is state
    # a task that finished on its own before the scheduler stopped the job stands
    done = authoritative(JobStatus(state), result(JobState.SUCCEEDED, code=0))
    assert done.state is JobState.SUCCEEDED


@pytest.mark.parametrize("state", [JobState.PREEMPTED, JobState.NODE_FAIL])
def test_preempted_and_node_failed_attempts_rerun_unchanged_up_to_their_own_cap(
    state: JobState,
) -> None:
    assert verdict(state, retries=0, tries=0) == (Action.RETRY_PREEMPTED, None)
    assert verdict(state, retries=0, tries=0, preempted=PREEMPT_RETRIES - 1)[0] is (
        Action.RETRY_PREEMPTED)
    assert verdict(state, retries=0, tries=1, preempted=PREEMPT_RETRIES)[0] is Action.FAIL
    past = verdict(state, retries=1, tries=1, preempted=PREEMPT_RETRIES)
    assert past == (Action.RETRY, None)  # an ordinary failure now: no escalation either
    assert not spends_retry(state, lost=LOST_RETRIES, preempted=PREEMPT_RETRIES - 1)
    assert spends_retry(state, lost=0, preempted=PREEMPT_RETRIES)


def test_only_the_infrastructures_ends_keep_the_tasks_retries() -> None:
    assert not spends_retry(JobState.LOST, lost=LOST_RETRIES - 1, preempted=0)
    assert spends_retry(JobState.LOST, lost=LOST_RETRIES, preempted=0)
    for state in (JobState.FAILED, JobState.OOM, JobState.TIMEOUT):
        assert spends_retry(state, lost=0, preempted=0)


def test_lost_attempts_have_retries_of_their_own() -> None:
    assert verdict(JobState.LOST, retries=0, lost=0)[0] is Action.RETRY_LOST
    assert verdict(JobState.LOST, retries=0, lost=LOST_RETRIES)[0] is Action.FAIL
    assert verdict(JobState.LOST, retries=1, lost=LOST_RETRIES, tries=1)[0] is Action.RETRY


@pytest.mark.parametrize("state", [JobState.FAILED, JobState.OOM, JobState.TIMEOUT])
def test_retries_run_out_and_a_stopping_run_retries_nothing(state: JobState) -> None:
    assert verdict(state, retries=2, tries=3)[0] is Action.FAIL
    assert verdict(state, retries=2, tries=2, no_retry=True)[0] is Action.FAIL
    assert verdict(state, retries=2, tries=2)[0] is Action.RETRY


def test_oom_and_timeout_grow_their_resource_up_to_the_cap() -> None:
    action, grown = verdict(JobState.OOM)
    assert action is Action.RETRY
    assert grown is not None
    assert grown.mem == int(1.5 * G)
    action, grown = verdict(JobState.TIMEOUT)
    assert action is Action.RETRY
    assert grown is not None
    assert grown.runtime == 120
    capped = Policy(retries=3, on_oom=Escalation("mem", 2.0, 2 * G))
    assert verdict(JobState.OOM, policy=capped, current=Resources(mem="2G", runtime=60))[0] \
        is Action.FAIL
    assert verdict(JobState.FAILED)[1] is None  # an exit code changes no resource
