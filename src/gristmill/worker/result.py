"""How one attempt ended (:class:`AttemptResult`) and the result file that carries it.

The wrapper (:mod:`gristmill.worker.wrapper`, or the local backend's supervisor) writes the
file atomically; the backend and the engine read it back. It is the one record of an
attempt that outlives the process that ran it, so a restarted engine can still learn
how its jobs ended.

Every result names the attempt it belongs to: its ``key``, ``<identity[:16]>.<attempt>``
as the engine chose it (:class:`gristmill.backends.base.JobRequest`). A reader says which
attempt it expects, and a file naming another one is :class:`ResultMismatchError`, never that
attempt's outcome: whatever put it there (two nodes once sharing a file name, a stray
copy), believing it could record a failed task as done. Results of gristmill 0.1 name no
attempt (``key`` is ``None``); the caller decides whether their path alone is proof enough.
"""

from __future__ import annotations

import json
import os

from gristmill.errors import BackendError
from gristmill.states import JobState
from gristmill.worker.atomic import make_own_dir, write_attempt_file

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (mypy reads the name)
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any, Union

    PathLike = Union[str, "os.PathLike[str]"]

# LOST: the attempt never started for want of the machine's resources (descriptors,
# processes, memory); the engine runs it again without spending the task's retries.
_FINAL = (JobState.SUCCEEDED, JobState.FAILED, JobState.OOM, JobState.TIMEOUT, JobState.CANCELLED,
          JobState.LOST)
_OPT_INT = (int, type(None))
_FIELD_TYPES: dict[str, type | tuple[type, ...]] = {
    "state": str, "exit_code": _OPT_INT, "signal": _OPT_INT, "peak_rss": _OPT_INT,
    "elapsed": (int, float), "host": str, "started": (int, float), "ended": (int, float),
    "reason": str,
}
_OPT_STR = (str, type(None))
_FIELDS = ("state", "exit_code", "signal", "peak_rss", "elapsed", "host", "started", "ended",
           "reason", "key", "cpu_time")


class AttemptResult:
    """How one attempt ended; written by the wrapper, read back by the backend.

    A frozen value (equality, hash, repr by its fields; :meth:`evolve` for a changed
    copy) written by hand rather than with attrs: every wrapper builds one, and importing
    attrs would double the wrapper's start-up cost.
    """

    __slots__ = _FIELDS

    state: JobState
    exit_code: int | None
    signal: int | None
    peak_rss: int | None  # bytes, children included
    elapsed: float  # seconds
    host: str
    started: float  # epoch seconds
    ended: float
    reason: str  # for people: "exit code 3", "exceeded runtime 00:00:02"
    #: The attempt this is the result of (``<identity[:16]>.<attempt>``); ``None`` in
    #: results of gristmill 0.1 and of a wrapper run by hand without ``--key``.
    key: str | None
    #: CPU seconds (user + system) of the attempt's whole process tree, as the monitor
    #: counts it (see :mod:`gristmill.worker.monitor`, "CPU time"); ``None`` where it was
    #: not measured: the attempt never started, or the result was written by a gristmill
    #: that did not measure it.
    cpu_time: float | None

    def __init__(self, state: JobState, exit_code: int | None, signal: int | None,
                 peak_rss: int | None, elapsed: float, host: str, started: float, ended: float,
                 reason: str, key: str | None = None, cpu_time: float | None = None) -> None:
        if state not in _FINAL:
            raise ValueError(
                f"state: an attempt ends {', '.join(s.name for s in _FINAL)}, not {state}")
        values = (state, exit_code, signal, peak_rss, elapsed, host, started, ended, reason, key,
                  cpu_time)
        for name, value in zip(_FIELDS, values):
            object.__setattr__(self, name, value)

    def _values(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in _FIELDS)

    def evolve(self, **changes: Any) -> AttemptResult:
        """A copy with ``changes`` applied (validated as a new result is)."""
        unknown = set(changes) - set(_FIELDS)
        if unknown:
            raise TypeError(f"AttemptResult has no field {', '.join(sorted(unknown))}")
        fields = {name: getattr(self, name) for name in _FIELDS}
        fields.update(changes)
        return AttemptResult(**fields)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"AttemptResult is frozen: use .evolve({name}=...) for a copy")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("AttemptResult is frozen")

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not AttemptResult:
            return NotImplemented
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in _FIELDS)
        return f"AttemptResult({fields})"

    def __reduce__(self) -> tuple[type[AttemptResult], tuple[object, ...]]:
        return AttemptResult, self._values()

    def to_dict(self) -> dict[str, object]:
        data: dict[str, object] = {
            "state": self.state.value, "exit_code": self.exit_code, "signal": self.signal,
            "peak_rss": self.peak_rss, "elapsed": self.elapsed, "host": self.host,
            "started": self.started, "ended": self.ended, "reason": self.reason,
        }
        if self.key is not None:
            data["key"] = self.key
        if self.cpu_time is not None:
            data["cpu_time"] = self.cpu_time
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AttemptResult:
        """Rebuild a result; ``ValueError`` names the first bad or missing field."""
        for name, kinds in _FIELD_TYPES.items():
            value = data.get(name)
            if not isinstance(value, kinds) or isinstance(value, bool):
                raise ValueError(f"{name}: {value!r} is not of the expected type")
        key = data.get("key")
        if not isinstance(key, _OPT_STR):
            raise ValueError(f"key: {key!r} is not of the expected type")
        cpu_time = data.get("cpu_time")
        if not isinstance(cpu_time, (int, float, type(None))) or isinstance(cpu_time, bool):
            raise ValueError(f"cpu_time: {cpu_time!r} is not of the expected type")
        return cls(
            JobState(data["state"]), data.get("exit_code"), data.get("signal"),
            data.get("peak_rss"),
            float(data["elapsed"]), data["host"], float(data["started"]), float(data["ended"]),
            data["reason"], key, None if cpu_time is None else float(cpu_time),
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> AttemptResult:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError(f"expected a JSON object, got {type(data).__name__}")
        return cls.from_dict(data)


class ResultMismatchError(BackendError):
    """A result file names another attempt than the one its reader expects.

    The attempt it was read for has no result of its own: it counts as LOST (and runs
    again), never as the outcome the file records.
    """


def write_result(path: PathLike, result: AttemptResult, *, key: str | None) -> None:
    """Write ``result`` of attempt ``key`` atomically: a reader sees no file or the whole
    result, never a part.

    ``key`` is required of every writer, so that no result leaves without naming its
    attempt unless the writer truly does not know it (a wrapper run by hand: ``None``).

    Not fsynced: the crash this guards against is the engine's, not the machine's, and
    an fsync per attempt costs the local backend about 1 ms a task on disk. A result a
    machine crash loses (or leaves empty) reads as missing or corrupt: the attempt is
    LOST and runs again.
    """
    if result.key != key:
        result = result.evolve(key=key)
    write_attempt_file(path, result.to_json(), fsync=False)


def read_result(path: PathLike, *, key: str | None) -> AttemptResult | None:
    """The result written at ``path`` for attempt ``key``; ``None`` while there is none.

    A result naming another attempt raises :class:`ResultMismatchError`; one naming none
    (gristmill 0.1) is returned as it is, for the caller to judge. ``key=None`` reads
    whatever is there (tools and tests).
    """
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        return None
    try:
        result = AttemptResult.from_json(data)
    except (ValueError, TypeError) as exc:
        raise BackendError(
            f"attempt result file {os.fspath(path)} is corrupt ({exc}); "
            "delete it so the attempt is treated as lost and rerun"
        ) from None
    if key is not None and result.key is not None and result.key != key:
        raise ResultMismatchError(
            f"result file {os.fspath(path)} is the result of attempt {result.key}, not of "
            f"attempt {key}: the attempt is lost and runs again"
        )
    return result


def open_retrying(path: str, flags: int) -> int:
    """``os.open``, creating the file's directory on the first miss (rare, so cheap; never
    its parents, see :func:`~gristmill.worker.atomic.make_own_dir`)."""
    try:
        return os.open(path, flags, 0o666)
    except FileNotFoundError:
        make_own_dir(path)
        return os.open(path, flags, 0o666)
