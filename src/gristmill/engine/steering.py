"""Steer a run while it runs: concurrency limits, retry and escalation caps, pause.

A steering command (``gristmill limit``, ``pause``, ``unpause``) is a small JSON
:class:`Request`. With a live engine it travels as a file in the run directory's
``steer/`` folder, which the engine reads at each cycle: the engine stays the store's
only writer, so a command never waits on the engine's transactions, and a command that
arrives just as the engine ends is applied by the next ``resume``. With no live engine
the command takes the run lock itself and records the request in the store directly.

Either way what was asked is kept in the store (meta key ``steering``, a
:class:`Steering`: the current values and every request with its time and user), so it
holds across ``resume`` until steered again, and ``status`` shows it.

Only the run's owner steers it: the folder is made ``0700`` and the engine takes a
request file only when it is a regular file owned by the engine's own user, small, and
valid; anything else is logged and removed without effect.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import stat
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import attrs
from loguru import logger

from gristmill.backends.base import Backend, LiveLimit
from gristmill.engine.plan import UnitPlan
from gristmill.errors import BackendError, SpecError
from gristmill.resources import (
    DEFAULT_ON_OOM,
    DEFAULT_ON_TIMEOUT,
    MAX_DURATION,
    Escalation,
    Policy,
    parse_duration,
    parse_memory_with_unit,
)
from gristmill.users import user_name
from gristmill.worker.atomic import write_atomic

#: The folder of a run directory where steering requests wait for the engine.
STEER_DIR = "steer"
#: The store's meta key that keeps the steering state.
META_KEY = "steering"
#: A request file larger than this is not a request.
MAX_REQUEST_BYTES = 16_384
#: The most retries a steering command may set (as for a task's ``retries``).
MAX_RETRIES = 1000
#: Seconds at most between two looks into the steering folder when its mtime is unchanged
#: (a request written within the file system's timestamp granularity of the last look).
RESCAN = 1.0

Action = Literal["limit", "pause", "unpause"]
_ACTIONS: tuple[str, ...] = ("limit", "pause", "unpause")
_FIELDS = ("max_concurrent", "retries", "max_mem", "max_runtime")


def _positive(name: str, value: Any, low: int, high: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise SpecError(f"{name} = {value!r}: give a whole number from {low} to {high}")
    return value


@attrs.frozen
class Limits:
    """The values a steering command may set; ``None`` means "not set here"."""

    max_concurrent: int | None = None
    retries: int | None = None
    max_mem: int | None = None  # bytes: the cap of memory escalation after an OOM
    max_runtime: int | None = None  # seconds: the cap of runtime escalation after a TIMEOUT

    def __attrs_post_init__(self) -> None:
        _positive("max_concurrent", self.max_concurrent, 1, 10**9)
        _positive("retries", self.retries, 0, MAX_RETRIES)
        _positive("max_mem", self.max_mem, 2**20, 2**60)
        _positive("max_runtime", self.max_runtime, 1, MAX_DURATION)

    @classmethod
    def parse(cls, *, max_concurrent: int | None = None, retries: int | None = None,
              max_mem: str | None = None, max_runtime: str | None = None) -> Limits:
        """Values as a user writes them (``"64G"``, ``"2h"``); raises :class:`SpecError`."""
        return cls(
            max_concurrent=max_concurrent, retries=retries,
            max_mem=None if max_mem is None else parse_memory_with_unit(max_mem, what="--max-mem"),
            max_runtime=(None if max_runtime is None
                         else parse_duration(max_runtime, what="--max-runtime")),
        )

    def over(self, base: Limits) -> Limits:
        """``base`` with every value this one sets replaced."""
        return Limits(**{f: getattr(self, f) if getattr(self, f) is not None
                         else getattr(base, f) for f in _FIELDS})

    def without(self, fields: Iterable[str]) -> Limits:
        return attrs.evolve(self, **dict.fromkeys(fields))

    def set_fields(self) -> list[str]:
        return [f for f in _FIELDS if getattr(self, f) is not None]

    def describe(self) -> str:
        shown = {"max_mem": lambda v: f"{v / 2**30:g}G", "max_runtime": lambda v: f"{v}s"}
        return ", ".join(f"{f}={shown.get(f, str)(getattr(self, f))}" for f in self.set_fields())

    def policy_over(self, policy: Policy) -> Policy:
        """A task's retry policy with these caps applied (escalation keeps its factor)."""
        changes: dict[str, Any] = {}
        if self.retries is not None:
            changes["retries"] = self.retries
        if self.max_concurrent is not None:
            changes["max_concurrent"] = self.max_concurrent
        if self.max_mem is not None:
            rule = policy.on_oom or DEFAULT_ON_OOM
            changes["on_oom"] = Escalation(rule.resource, rule.factor, self.max_mem)
        if self.max_runtime is not None:
            rule = policy.on_timeout or DEFAULT_ON_TIMEOUT
            changes["on_timeout"] = Escalation(rule.resource, rule.factor, self.max_runtime)
        return attrs.evolve(policy, **changes) if changes else policy


@attrs.frozen
class Request:
    """One steering command: ``limit`` (with :class:`Limits`), ``pause`` or ``unpause``.

    ``task`` names one task of the run; ``None`` is the whole workflow (its concurrency
    limit, and the caps of every task).
    """

    action: str = attrs.field(validator=attrs.validators.in_(_ACTIONS))
    task: str | None = None
    limits: Limits = Limits()
    user: str = ""
    time: float = 0.0

    def __attrs_post_init__(self) -> None:
        if self.action == "limit" and not self.limits.set_fields():
            raise SpecError("limit: give at least one of --max-concurrent, --retries, "
                            "--max-mem, --max-runtime")
        if self.action != "limit" and self.limits.set_fields():
            raise SpecError(f"{self.action} takes no limits")
        if self.action != "limit" and self.task is not None:
            raise SpecError(f"{self.action} applies to the whole run, not to one task")

    def describe(self) -> str:
        where = f" of task {self.task}" if self.task else ""
        what = f"limit{where}: {self.limits.describe()}" if self.action == "limit" else self.action
        return f"{what} (by {self.user or '?'})"

    def to_json(self) -> dict[str, Any]:
        limits = {f: getattr(self.limits, f) for f in self.limits.set_fields()}
        return {"action": self.action, "task": self.task, "limits": limits,
                "user": self.user, "time": self.time}

    @classmethod
    def from_json(cls, data: Any) -> Request:
        """Raises :class:`SpecError` for anything but a well-formed request."""
        if not isinstance(data, Mapping) or set(data) - {"action", "task", "limits", "user",
                                                           "time"}:
            raise SpecError("not a steering request (unknown keys)")
        limits = data.get("limits") or {}
        if not isinstance(limits, Mapping) or set(limits) - set(_FIELDS):
            raise SpecError(f"unknown limits {sorted(set(limits) - set(_FIELDS))}")
        task, user, when = data.get("task"), data.get("user", ""), data.get("time", 0.0)
        if task is not None and not isinstance(task, str):
            raise SpecError("task must be a task name")
        if not isinstance(user, str) or not isinstance(when, (int, float)) \
                or not math.isfinite(when):
            raise SpecError("bad user or time")
        try:
            return cls(action=str(data.get("action")), task=task, limits=Limits(**limits),
                       user=user, time=float(when))
        except (TypeError, ValueError) as exc:
            raise SpecError(str(exc)) from None


@attrs.frozen
class Steering:
    """What steering set so far: pause, the workflow's and each task's limits, history."""

    paused_by: str | None = None
    paused_at: float | None = None
    workflow: Limits = Limits()
    tasks: Mapping[str, Limits] = attrs.field(factory=dict)
    history: tuple[Request, ...] = ()

    @property
    def paused(self) -> bool:
        return self.paused_by is not None

    def apply(self, request: Request) -> Steering:
        history = (*self.history, request)
        if request.action == "pause":
            return attrs.evolve(self, paused_by=request.user or "?", paused_at=request.time,
                                history=history)
        if request.action == "unpause":
            return attrs.evolve(self, paused_by=None, paused_at=None, history=history)
        if request.task is None:  # the whole run: its caps replace those set per task
            caps = [f for f in request.limits.set_fields() if f != "max_concurrent"]
            tasks = {t: lim.without(caps) for t, lim in self.tasks.items()}
            return attrs.evolve(self, workflow=request.limits.over(self.workflow),
                                tasks=tasks, history=history)
        tasks = dict(self.tasks)
        tasks[request.task] = request.limits.over(tasks.get(request.task, Limits()))
        return attrs.evolve(self, tasks=tasks, history=history)

    def for_task(self, task: str) -> Limits:
        """The caps that apply to ``task`` (the workflow's ``max_concurrent`` is not one)."""
        return self.tasks.get(task, Limits()).over(
            attrs.evolve(self.workflow, max_concurrent=None))

    def to_json(self) -> dict[str, Any]:
        return {"history": [r.to_json() for r in self.history]}

    @classmethod
    def from_json(cls, data: Any) -> Steering:
        """Replays the recorded history (the current values follow from it)."""
        state = cls()
        for item in (data or {}).get("history", ()):
            try:
                state = state.apply(Request.from_json(item))
            except SpecError as exc:  # a store is data: skip what is not a request
                logger.warning("ignoring a recorded steering request: {}", exc)
        return state

    def describe(self) -> list[str]:
        """Lines for ``status``: the pause and every limit in force."""
        lines = []
        if self.paused:
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.paused_at or 0))
            lines.append(f"paused by {self.paused_by} since {when} (gristmill unpause)")
        if self.workflow.set_fields():
            lines.append(f"steered, whole run: {self.workflow.describe()}")
        lines.extend(f"steered, task {task}: {limits.describe()}"
                     for task, limits in sorted(self.tasks.items()) if limits.set_fields())
        return lines


def current_user() -> str:
    return user_name(os.geteuid())


def check_tasks(request: Request, tasks: Sequence[str]) -> None:
    """Refuse a request for a task the run does not have, naming those it has."""
    if request.task is not None and request.task not in tasks:
        raise SpecError(f"the run has no task {request.task!r}; its tasks: "
                        f"{', '.join(sorted(tasks))}")


def send(run_dir: Path, request: Request) -> Path:
    """Leave ``request`` for the engine of ``run_dir``; the path of the request file."""
    folder = run_dir / STEER_DIR
    folder.mkdir(mode=0o700, exist_ok=True)
    path = folder / f"{time.time_ns()}-{os.getpid()}.json"
    write_atomic(path, json.dumps(request.to_json()).encode())
    return path


def receive(run_dir: Path) -> list[Request]:
    """Take every request waiting in ``run_dir/steer`` (oldest first), removing each file.

    A file that is not a regular file of this process's user, is too large, or is not a
    valid request is removed with a warning and has no effect.
    """
    folder = run_dir / STEER_DIR
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except FileNotFoundError:
        return []
    except OSError as exc:
        logger.warning("cannot read steering requests in {}: {}", folder, exc.strerror)
        return []
    taken = []
    for entry in entries:
        if not entry.name.endswith(".json"):
            continue  # a request being written (write_atomic's temporary file)
        path = Path(entry.path)
        try:
            request = _read(path)
        except (OSError, SpecError, ValueError) as exc:
            logger.warning("ignoring steering request {}: {}", path, exc)
            request = None
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        if request is not None:
            taken.append(request)
    return taken


def _read(path: Path) -> Request:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise SpecError("not a regular file")
        if info.st_uid != os.geteuid():
            raise SpecError(f"owned by {user_name(info.st_uid)}, not by the run's owner "
                            f"{current_user()}")
        if info.st_size > MAX_REQUEST_BYTES:
            raise SpecError(f"{info.st_size} bytes; a request is under {MAX_REQUEST_BYTES}")
        data = os.read(fd, MAX_REQUEST_BYTES + 1)
    finally:
        os.close(fd)
    request = Request.from_json(json.loads(data))
    # The file's owner is who asked: a request cannot name another user.
    return attrs.evolve(request, user=user_name(info.st_uid))


def steered(plans: Sequence[UnitPlan], tasks: Sequence[str], steering: Steering) -> list[UnitPlan]:
    """Each unit's plan with the caps steering set for its task (``tasks``: per unit)."""
    out = []
    for plan, task in zip(plans, tasks):
        limits = steering.for_task(task)
        out.append(attrs.evolve(plan, policy=limits.policy_over(plan.policy))
                   if limits.set_fields() else plan)
    return out


@attrs.define
class Mailbox:
    """The engine's end of the channel: one ``stat`` per cycle tells whether to look."""

    run_dir: Path
    seen: int = -1
    scanned: float = 0.0

    def _mtime(self) -> int:
        try:
            return os.stat(self.run_dir / STEER_DIR).st_mtime_ns
        except OSError:
            return 0

    def pending(self) -> bool:
        return self._mtime() != self.seen or time.monotonic() - self.scanned > RESCAN

    def take(self) -> list[Request]:
        self.seen = self._mtime()  # before the scan: a request arriving during it is seen next
        self.scanned = time.monotonic()
        return receive(self.run_dir)


def tell_dag_backend(backend: Backend, request: Request) -> None:
    """A backend that runs the DAG itself holds the nodes handed to it: pass it a new
    run-wide limit where it takes one, and say plainly what it cannot take."""
    limits = request.limits
    rest = limits.without(["max_concurrent"]) if request.task is None else limits
    if limits.max_concurrent is not None and request.task is None:
        if backend.capabilities.live_limit and isinstance(backend, LiveLimit):
            try:
                logger.info("{}", backend.set_max_concurrent(limits.max_concurrent))
            except BackendError as exc:
                logger.error("backend {} did not take the new limit: {}", backend.name, exc)
        else:
            rest = limits
    if rest.set_fields():
        logger.warning("backend {} runs the DAG itself and cannot change {} of the nodes it "
                       "already has; they apply to nodes handed to it from now on",
                       backend.name, rest.describe())
