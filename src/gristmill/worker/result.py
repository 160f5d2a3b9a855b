"""How one attempt ended (:class:`AttemptResult`) and the result file that carries it.

The wrapper (:mod:`gristmill.worker.wrapper`, or the local backend's supervisor) writes the
file atomically; the backend and the engine read it back. It is the one record of an
attempt that outlives the process that ran it, so a restarted engine can still learn
how its jobs ended.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any, Union

import attrs

from gristmill.errors import BackendError
from gristmill.states import JobState
from gristmill.worker.atomic import write_atomic

PathLike = Union[str, "os.PathLike[str]"]

_FINAL = (JobState.SUCCEEDED, JobState.FAILED, JobState.OOM, JobState.TIMEOUT, JobState.CANCELLED)
_OPT_INT = (int, type(None))
_FIELD_TYPES: dict[str, type | tuple[type, ...]] = {
    "state": str, "exit_code": _OPT_INT, "signal": _OPT_INT, "peak_rss": _OPT_INT,
    "elapsed": (int, float), "host": str, "started": (int, float), "ended": (int, float),
    "reason": str,
}


def _final_state(_: object, __: attrs.Attribute[JobState], value: JobState) -> None:
    if value not in _FINAL:
        raise ValueError(f"state: an attempt ends {', '.join(s.name for s in _FINAL)}, not {value}")


@attrs.frozen
class AttemptResult:
    """How one attempt ended; written by the wrapper, read back by the backend."""

    state: JobState = attrs.field(validator=_final_state)
    exit_code: int | None
    signal: int | None
    peak_rss: int | None  # bytes, children included
    elapsed: float  # seconds
    host: str
    started: float  # epoch seconds
    ended: float
    reason: str  # for people: "exit code 3", "exceeded runtime 00:00:02"

    def to_dict(self) -> dict[str, object]:
        return {
            "state": self.state.value, "exit_code": self.exit_code, "signal": self.signal,
            "peak_rss": self.peak_rss, "elapsed": self.elapsed, "host": self.host,
            "started": self.started, "ended": self.ended, "reason": self.reason,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AttemptResult:
        """Rebuild a result; ``ValueError`` names the first bad or missing field."""
        for name, kinds in _FIELD_TYPES.items():
            value = data.get(name)
            if not isinstance(value, kinds) or isinstance(value, bool):
                raise ValueError(f"{name}: {value!r} is not of the expected type")
        return cls(
            JobState(data["state"]), data["exit_code"], data["signal"], data["peak_rss"],
            float(data["elapsed"]), data["host"], float(data["started"]), float(data["ended"]),
            data["reason"],
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> AttemptResult:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError(f"expected a JSON object, got {type(data).__name__}")
        return cls.from_dict(data)


def write_result(path: PathLike, result: AttemptResult) -> None:
    """Write ``result`` atomically: a reader sees no file or the whole result, never a part.

    Not fsynced: the crash this guards against is the engine's, not the machine's, and
    an fsync per attempt costs the local backend about 1 ms a task on disk. A result a
    machine crash loses (or leaves empty) reads as missing or corrupt: the attempt is
    LOST and runs again.
    """
    write_atomic(path, result.to_json(), fsync=False)


def read_result(path: PathLike) -> AttemptResult | None:
    """The result written at ``path``; ``None`` while there is none."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        return None
    try:
        return AttemptResult.from_json(data)
    except (ValueError, TypeError) as exc:
        raise BackendError(
            f"attempt result file {os.fspath(path)} is corrupt ({exc}); "
            "delete it so the attempt is treated as lost and rerun"
        ) from None


def open_retrying(path: str, flags: int) -> int:
    """``os.open``, creating the parent directories on the first miss (rare, so cheap)."""
    try:
        return os.open(path, flags, 0o666)
    except FileNotFoundError:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        return os.open(path, flags, 0o666)
