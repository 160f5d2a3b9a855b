"""The Backend protocol: the only thing the engine knows about where work runs.

It is batch-first: ``submit`` takes every ready job of a dispatch cycle at once
(so a scheduler backend can pack arrays) and ``poll`` answers for every live job
with one scheduler query. Backends never touch the run store; the engine
records whatever they report.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, get_args, runtime_checkable

import attrs

from gristmill.errors import BackendError
from gristmill.resources import Resources, parse_memory
from gristmill.states import JobState

if TYPE_CHECKING:
    from gristmill.worker.result import AttemptResult


@attrs.frozen
class JobRequest:
    """One attempt of one node, fully resolved: what to run, with what, where to log."""

    key: str  # engine-chosen, unique per attempt within a run ("<node>.<attempt>")
    task: str
    job_name: str
    argv: tuple[str, ...]
    resources: Resources
    stdout: Path
    stderr: Path
    result_path: Path  # where the worker wrapper writes its AttemptResult
    env: tuple[tuple[str, str], ...] = ()
    cwd: Path | None = None
    #: Keys of requests in the same ``submit`` call that must succeed first. Only a
    #: backend declaring ``Capabilities.dag`` gets any; others only see ready nodes.
    after: tuple[str, ...] = ()
    #: How many times a ``dag`` backend may run this node before it counts as failed;
    #: other backends get 1, the engine retrying by itself.
    max_attempts: int = 1
    #: How many requests of this one's task (same resources) a backend may pack into one
    #: job, run one after another (the task's ``chunk``). A backend that cannot ignores it.
    chunk: int = 1
    #: The task's ``module:qualname`` when its nodes may run as forks of a warm
    #: interpreter (``launch: fork``, :mod:`gristmill.worker.warm`), else None. ``argv``
    #: stays the node's own: a backend that does not fork runs it as it is.
    fork_entry: str | None = None


@attrs.frozen
class JobHandle:
    """A backend's name for a submitted attempt; enough to poll, cancel or re-adopt it.

    It holds only strings so the engine can persist it and rebuild it after a crash.
    """

    backend: str
    job_id: str
    key: str
    result_path: str


#: ``usage_source`` of numbers the worker's monitor measured (the result file).
WORKER = "worker"
#: ``usage_source`` of numbers the scheduler's accounting gave (sacct, qacct).
SCHEDULER = "scheduler"
#: ``usage_source`` of a mix: the scheduler's numbers where its accounting had them, the
#: worker's for the rest.
MIXED = "scheduler+worker"
USAGE_SOURCES = (WORKER, SCHEDULER, MIXED)


@attrs.frozen
class JobStatus:
    """A backend's answer for one job at one poll."""

    state: JobState
    exit_code: int | None = None
    signal: int | None = None
    peak_rss: int | None = None  # bytes
    elapsed: float | None = None  # seconds
    host: str | None = None
    reason: str = ""
    #: CPU seconds, user + system, of the attempt's whole process tree.
    cpu_time: float | None = None
    #: Who measured ``cpu_time`` and ``peak_rss`` (:data:`USAGE_SOURCES`); ``None``
    #: when neither was measured.
    usage_source: str | None = None

    @classmethod
    def from_result(cls, result: AttemptResult) -> JobStatus:
        """What a finished attempt's result file says, as a backend reports it."""
        measured = result.cpu_time is not None or result.peak_rss is not None
        return cls(
            state=result.state, exit_code=result.exit_code, signal=result.signal,
            peak_rss=result.peak_rss, elapsed=result.elapsed, host=result.host,
            reason=result.reason, cpu_time=result.cpu_time,
            usage_source=WORKER if measured else None,
        )

    def describe(self) -> str:
        """``"FAILED — exit code 3"``: the state and why, as ``status`` words a failure."""
        detail = self.reason or (f"exit code {self.exit_code}" if self.exit_code is not None
                                 else "")
        return f"{self.state.value} — {detail}" if detail else self.state.value


def _at_least(least: float) -> Any:
    """A validator refusing a number below ``least`` (None passes: the field is unset)."""

    def check(instance: object, attribute: attrs.Attribute[Any], value: float | None) -> None:
        if value is not None and value < least:
            raise ValueError(f"Capabilities.{attribute.name}={value!r}: give at least {least:g}")

    return check


@attrs.frozen
class Capabilities:
    """Everything the engine reads from a backend besides the protocol's methods.

    Declared as data (as Snakemake's executor settings and Parsl's
    ``status_polling_interval`` are) so that a plugin says what it needs instead of the
    engine probing for attributes; the engine honours every field. A backend whose
    values depend on its options (the local backend's window follows its cores) builds
    its own in ``__init__`` with ``attrs.evolve``.
    """

    #: Can re-adopt live jobs after an engine restart (``attach``). When False, a resumed
    #: run never calls ``attach``: attempts an earlier engine left open count as LOST and
    #: run again, unless their result file says how they ended.
    reattach: bool = False
    #: Runs dependencies and retries itself (jobmon): the engine hands it every node
    #: left to run in one ``submit``, with ``after`` and ``max_attempts`` filled in,
    #: and then only mirrors the states it reports.
    dag: bool = False
    #: Seconds the engine leaves at least between two ``poll`` calls: the shortest
    #: interval worth a scheduler query (one ``squeue`` per tick).
    poll_min: float = attrs.field(default=0.0, validator=_at_least(0))
    #: Seconds at most between two ``poll`` calls while nothing changes: the interval
    #: grows towards it from ``poll_min`` (see :mod:`gristmill.engine.polling`). None:
    #: the engine's default; ``--poll-interval`` overrides it.
    poll_max: float | None = attrs.field(default=None, validator=_at_least(0))
    #: At most this many jobs handed over and not yet reported finished (None: only the
    #: engine's own limits apply). Keeps each engine cycle cheap while the backend
    #: always has the next jobs queued.
    max_inflight: int | None = attrs.field(default=None, validator=_at_least(1))
    #: Takes a new run-wide concurrency limit while jobs run (:class:`LiveLimit`). A
    #: ``dag`` backend limits how many run itself, so ``gristmill limit`` reaches its
    #: running jobs only through this; without it the new limit applies to nodes not yet
    #: handed over.
    live_limit: bool = False
    #: Knows how many jobs the scheduler lets this user hold queued or running at once
    #: (:class:`SubmitLimit`): the engine asks once, when it starts, and never holds
    #: more. A backend that refuses a submission for such a limit raises
    #: :class:`SubmitLimitError` whether or not it declares this.
    submit_limit: bool = False
    #: Packs several requests of one task into one job when their ``chunk`` allows it
    #: (Slurm and Grid Engine arrays); the engine still tracks each request alone.
    chunks: bool = False

    def __attrs_post_init__(self) -> None:
        if self.poll_max is not None and self.poll_max < self.poll_min:
            raise ValueError(
                f"Capabilities(poll_min={self.poll_min!r}, poll_max={self.poll_max!r}): the "
                "longest interval between polls cannot be shorter than the shortest"
            )
        if self.dag and self.max_inflight is not None:
            raise ValueError(
                "Capabilities(dag=True, max_inflight=...): a dag backend is handed every "
                "node at once, so it limits how many run itself; drop max_inflight"
            )


SettingKind = Literal["str", "int", "float", "bool", "memory"]


@attrs.frozen
class BackendSetting:
    """One option a backend's constructor takes, declared so the CLI can offer it.

    ``gristmill run`` and ``resume`` make a flag of every setting of every registered
    backend (as Snakemake does from an executor's settings class): ``--<backend>-<name>``
    unless ``flag`` names another (the local backend keeps ``--max-cores``). A value
    given on the command line reaches the backend as the keyword ``name``; the same
    options can also come as text from ``--option KEY=VALUE`` or the spec, which each
    backend parses itself.
    """

    #: The constructor's keyword, e.g. ``"max_cores"``.
    name: str = attrs.field(validator=attrs.validators.matches_re(r"[a-z_][a-z0-9_]*"))
    help: str
    #: How the command line parses it: ``memory`` takes "8G" and gives bytes; ``bool``
    #: makes a ``--flag/--no-flag`` pair.
    kind: SettingKind = attrs.field(
        default="str", validator=attrs.validators.in_(get_args(SettingKind))
    )
    #: The backend's default, shown in the help; None when there is none or it is
    #: computed (the help then says how).
    default: str | int | float | bool | None = None
    #: The smallest value accepted (``int`` and ``float``).
    minimum: int | float | None = None
    #: The flag, when not ``--<backend>-<name>``.
    flag: str | None = attrs.field(
        default=None, validator=attrs.validators.optional(
            attrs.validators.matches_re(r"--[a-z0-9][a-z0-9-]*"))
    )

    def flag_for(self, backend: str) -> str:
        """The command-line flag of this setting of ``backend``."""
        return self.flag or f"--{backend}-{self.name}".replace("_", "-")

    def convert(self, value: Any, backend: str) -> Any:
        """A flag's value as the backend takes it (memory sizes in bytes)."""
        if self.kind == "memory" and isinstance(value, str):
            return parse_memory(value, what=self.flag_for(backend))
        return value


@runtime_checkable
class LiveLimit(Protocol):
    """What a backend with ``Capabilities.live_limit`` adds to :class:`Backend`."""

    def set_max_concurrent(self, limit: int) -> str:
        """Run at most ``limit`` jobs at once from now on; a line saying what changed."""
        ...


class SubmitLimitError(BackendError):
    """The scheduler refused a submission because the user holds as many jobs as a limit
    allows (Slurm's ``MaxSubmitJobs``): nothing of the batch was submitted.

    Never a failure of the jobs: the engine holds no more than it held when refused
    (or than ``limit``, when the backend knows it) and submits the rest as jobs end.
    """

    def __init__(self, message: str, *, limit: int | None = None) -> None:
        super().__init__(message, transient=True)
        #: How many jobs the limit allows, when the backend could tell; None otherwise.
        self.limit = limit


@runtime_checkable
class SubmitLimit(Protocol):
    """What a backend with ``Capabilities.submit_limit`` adds to :class:`Backend`."""

    def submit_limit(self) -> int | None:
        """How many jobs this user may hold queued or running at once; None when unknown.

        Called once, when the engine starts; it must not raise (a limit it cannot read
        is unknown) and should answer within seconds.
        """
        ...


@runtime_checkable
class Backend(Protocol):
    """Where attempts run. See docs/architecture.md, "The backend protocol"."""

    name: str
    #: What the engine may rely on; read once, when the engine starts.
    capabilities: Capabilities
    #: The options ``__init__`` takes, for the command line (may be empty).
    settings: ClassVar[tuple[BackendSetting, ...]]

    def submit(self, jobs: Sequence[JobRequest]) -> Sequence[JobHandle]:
        """Start every job; one handle per job, in order. May pack arrays."""
        ...

    def poll(self, handles: Sequence[JobHandle]) -> Mapping[JobHandle, JobStatus]:
        """The state of every handle, from ONE scheduler query. Omitted handles are unchanged."""
        ...

    def cancel(self, handles: Sequence[JobHandle]) -> None:
        """Stop every job named, whatever its state; unknown ones are ignored."""
        ...

    def attach(self, handles: Sequence[JobHandle]) -> None:
        """Re-adopt jobs submitted by an earlier engine on the same run.

        Called only when ``capabilities.reattach`` is True; otherwise it may raise.
        """
        ...

    def wait(self, timeout: float) -> None:
        """Block until something may have changed, at most ``timeout`` seconds.

        A scheduler backend simply sleeps; the local backend wakes as soon as an
        attempt ends, so short tasks are not slowed down by a poll interval.
        """
        ...

    def close(self) -> None:
        """Release what the backend holds (helper processes, connections); jobs keep running."""
        ...


class SleepingWaitMixin:
    """``wait`` for backends that can only learn of changes by polling."""

    def wait(self, timeout: float) -> None:
        time.sleep(max(0.0, timeout))
