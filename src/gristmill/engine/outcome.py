"""What an ended attempt means for its node: which record to believe, then retry or fail.

Pure functions of the attempt's statuses, the node's retry policy and its counters,
so the rules (the wrapper's result wins; LOST, PREEMPTED and NODE_FAIL are the
infrastructure's fault and get retries of their own; OOM and TIMEOUT grow the resources
up to a cap) are testable
without an engine, and the engine loop only applies what they decide.
"""

from __future__ import annotations

import enum

import attrs

from gristmill.backends.base import MIXED, SCHEDULER, JobStatus
from gristmill.resources import DEFAULT_ON_OOM, DEFAULT_ON_TIMEOUT, Policy, Resources
from gristmill.states import JobState
from gristmill.worker.result import AttemptResult

#: Attempts lost by the infrastructure (not the task) are retried this many times
#: on top of ``retries``.
LOST_RETRIES = 2

#: Attempts the scheduler preempted, or whose node failed, are retried this many times
#: per node on top of ``retries``, as they were (no escalation). Generous: on a busy
#: cluster a long task may be preempted several times, through no fault of its own, and
#: each time it is resubmitted at once; the cap only stops a node that can never finish
#: (a partition that preempts everything it runs, a node that fails every job).
PREEMPT_RETRIES = 10

#: A scheduler's word on how a job was stopped, which explains a wrapper that saw its
#: task die of a signal or was itself stopped.
_STOPPED_BY_SCHEDULER = (JobState.OOM, JobState.TIMEOUT, JobState.CANCELLED,
                         JobState.PREEMPTED, JobState.NODE_FAIL)


def authoritative(status: JobStatus, result: AttemptResult | None) -> JobStatus:
    """The worker wrapper's record wins over what the scheduler says, when present.

    Except for how the job was stopped: a scheduler's OOM, TIMEOUT, CANCELLED,
    PREEMPTED or NODE_FAIL explains a wrapper that saw its task die of a signal (or was
    itself stopped).
    """
    if result is None:
        return status
    merged = with_usage(JobStatus.from_result(result), status)
    stopped = merged.state is JobState.CANCELLED or (
        merged.state is JobState.FAILED and merged.signal is not None
    )
    if stopped and status.state in _STOPPED_BY_SCHEDULER:
        return attrs.evolve(merged, state=status.state, reason=status.reason or merged.reason)
    if status.state is JobState.OOM and merged.state is JobState.FAILED:
        return attrs.evolve(merged, state=JobState.OOM, reason=status.reason or merged.reason)
    return merged


def with_usage(worker: JobStatus, scheduler: JobStatus) -> JobStatus:
    """The worker's record with the scheduler's ``cpu_time`` and ``peak_rss`` where its
    accounting has them (``usage_source`` says whose numbers these are).

    The scheduler's numbers win because they are what a site charges and what efficiency
    reports compare with: they count the whole job (wrapper included) by the scheduler's
    own means (Slurm's cgroup or jobacct sampling), which no process of the job can
    escape. The worker's stand where accounting has none (no accounting storage, a
    record not yet written, or a value it leaves empty). Elapsed and host stay the
    worker's: it times the task itself to the millisecond where the scheduler counts
    whole seconds including the job's own start, and both name the same node.
    """
    if scheduler.usage_source != SCHEDULER:
        return worker
    cpu = scheduler.cpu_time if scheduler.cpu_time is not None else worker.cpu_time
    rss = scheduler.peak_rss if scheduler.peak_rss is not None else worker.peak_rss
    took = (scheduler.cpu_time is not None, scheduler.peak_rss is not None)
    had = (worker.cpu_time is not None, worker.peak_rss is not None)
    from_worker = any(h and not t for t, h in zip(took, had))
    source = (MIXED if from_worker else SCHEDULER) if any(took) else worker.usage_source
    return attrs.evolve(worker, cpu_time=cpu, peak_rss=rss, usage_source=source)


class Action(enum.Enum):
    RETRY_LOST = "retry lost"  # the infrastructure lost it: again, as it was
    RETRY_PREEMPTED = "retry preempted"  # preempted, or its node failed: again, as it was
    RETRY = "retry"  # again, with ``resources`` when they grew
    FAIL = "fail"  # for good


@attrs.frozen
class Verdict:
    action: Action
    resources: Resources | None = None  # grown for an OOM or TIMEOUT retry
    why: str = ""  # for the log, when it is not obvious


def spends_retry(state: JobState, *, lost: int, preempted: int) -> bool:
    """Whether an attempt that ended ``state`` counts against the task's ``retries``.

    An end that is the infrastructure's fault does not, while its own cap is not reached
    (``lost`` and ``preempted`` count such ends of the node before this one); past the
    cap it is an ordinary failure.
    """
    if state is JobState.LOST:
        return lost >= LOST_RETRIES
    if state in (JobState.PREEMPTED, JobState.NODE_FAIL):
        return preempted >= PREEMPT_RETRIES
    return True


def decide(
    status: JobStatus, *, policy: Policy, base: Resources, current: Resources, tries: int,
    lost: int, no_retry: bool, preempted: int = 0,
) -> Verdict:
    """What to do with a node whose attempt ended ``status`` (not SUCCEEDED, not CANCELLED).

    ``tries`` counts the failed attempts of this run *including* this one, ``lost`` the
    lost ones before it, ``preempted`` the preempted or node-failed ones before it;
    ``no_retry`` is set while the run stops, or when the backend retried by itself (a
    DAG backend's failure is final).
    """
    if status.state is JobState.LOST and lost < LOST_RETRIES:
        return Verdict(Action.RETRY_LOST)
    if status.state in (JobState.PREEMPTED, JobState.NODE_FAIL) and preempted < PREEMPT_RETRIES:
        return Verdict(Action.RETRY_PREEMPTED)
    if tries > (policy.retries or 0) or no_retry:
        return Verdict(Action.FAIL)
    if status.state not in (JobState.OOM, JobState.TIMEOUT):
        return Verdict(Action.RETRY)
    rule = (policy.on_oom or DEFAULT_ON_OOM) if status.state is JobState.OOM else (
        policy.on_timeout or DEFAULT_ON_TIMEOUT)
    grown = rule.apply(current, base)
    if grown is None:
        return Verdict(Action.FAIL, why=f"{rule.resource} is at its cap ({rule.describe()})")
    return Verdict(Action.RETRY, resources=grown)
