"""Memory sizes and durations: parsed from what people write, rendered as schedulers read.

Kept apart from :mod:`gristmill.resources` (which builds attrs value objects from these
numbers) so that the worker wrapper, which parses ``--mem`` and words a timeout's reason,
starts without attrs: standard library and :mod:`gristmill.errors` only.
"""

from __future__ import annotations

import math
import re

from gristmill.errors import SpecError, shown

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (mypy reads the name)
if TYPE_CHECKING:
    from typing import Union

    MemoryLike = Union[int, float, str]
    DurationLike = Union[int, float, str]

#: The longest runtime (or any duration) accepted: a year. Every wait on one is clamped
#: where it is used, but no scheduler keeps a job longer, and a bigger number is a typo.
MAX_DURATION = 366 * 86400

_MEM_UNITS = {"": 1, "B": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40, "P": 2**50}
_MEM_RE = re.compile(r"^\s*(\d+(?:\.\d+)?|\.\d+)\s*([KMGTP]?)(?:I?B)?\s*$", re.IGNORECASE)
_DUR_PART_RE = re.compile(r"(\d+(?:\.\d+)?)([dhms])", re.IGNORECASE)
_DUR_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
_CLOCK_RE = re.compile(r"^\s*(?:(\d+)-)?(\d+):(\d{1,2})(?::(\d{1,2}))?\s*$")


def parse_memory(value: MemoryLike, *, what: str = "mem") -> int:
    """Parse ``"500M"``, ``"10G"``, ``"1.5T"`` or a number of bytes into bytes."""
    if isinstance(value, bool):
        raise SpecError(f"{what}: {value!r} is not a memory size; use e.g. \"10G\"")
    if isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str):
        match = _MEM_RE.match(value)
        if match is None:
            raise SpecError(f"{what}: {value!r} is not a memory size; use e.g. \"10G\" or \"500M\"")
        number = float(match.group(1)) * _MEM_UNITS[match.group(2).upper()]
    else:
        raise SpecError(f"{what}: {value!r} is not a memory size; use e.g. \"10G\"")
    if not math.isfinite(number) or number <= 0:
        raise SpecError(f"{what}: {value!r} must be a positive memory size; use e.g. \"10G\"")
    return math.ceil(number)


_BARE_NUMBER = re.compile(r"\s*(?:\d+(?:\.\d*)?|\.\d+)\s*")


def parse_memory_with_unit(value: object, *, what: str = "mem") -> int:
    """:func:`parse_memory` for sizes people type: a bare number (``100``, ``"100"``) is
    refused rather than read as bytes.

    Bytes are almost never what a bare number in a spec or on a command line means
    (schedulers disagree, too: Slurm reads ``--mem=100`` as megabytes, Grid Engine
    ``h_vmem=100`` as bytes), so a size must say which: ``"100G"``, ``"100M"``, ``"100B"``.
    """
    size = parse_memory(value, what=what)  # type: ignore[arg-type]  # refuses other types
    bare = isinstance(value, (int, float)) or (
        isinstance(value, str) and _BARE_NUMBER.fullmatch(value) is not None
    )
    if bare:
        number = str(value).strip()
        raise SpecError(
            f"{what}: {value!r} has no unit; a bare number would mean {number} bytes, "
            f'which is almost never meant: write e.g. "{number}G" or "{number}M" '
            f'("{number}B" if you do mean bytes)'
        )
    return size


def parse_duration(value: DurationLike, *, what: str = "runtime") -> int:
    """Parse seconds, ``"90s"``, ``"30m"``, ``"2h"``, ``"1h30m"`` or ``"01:30:00"`` into seconds."""
    if isinstance(value, bool):
        raise SpecError(f"{what}: {shown(value)} is not a duration; use e.g. \"2h\" or 3600")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        seconds = _parse_duration_text(value, what)
    else:
        raise SpecError(f"{what}: {shown(value)} is not a duration; use e.g. \"2h\" or 3600")
    if not math.isfinite(seconds) or seconds <= 0:
        raise SpecError(
            f"{what}: {shown(value)} must be a positive duration; use e.g. \"2h\" or 3600"
        )
    if seconds > MAX_DURATION:
        raise SpecError(
            f"{what}: {shown(value)} is more than the longest duration gristmill accepts, "
            f"{MAX_DURATION // 86400} days ({MAX_DURATION} s); give a shorter one"
        )
    return math.ceil(seconds)


def _parse_duration_text(text: str, what: str) -> float:
    stripped = text.strip()
    if re.fullmatch(r"-?\d+(?:\.\d+)?", stripped):
        return float(stripped)
    clock = _CLOCK_RE.match(stripped)
    if clock:
        days, first, second, third = clock.groups()
        if third is None:  # MM:SS
            hours, minutes, secs = 0, int(first), int(second)
        else:
            hours, minutes, secs = int(first), int(second), int(third)
        if secs >= 60 or (third is not None and minutes >= 60):
            raise SpecError(
                f"{what}: {text!r} is not a valid clock time (minutes and seconds run "
                "from 00 to 59); use e.g. \"01:30:00\""
            )
        return int(days or 0) * 86400 + hours * 3600 + minutes * 60 + secs
    compact = stripped.replace(" ", "")
    parts = _DUR_PART_RE.findall(compact)
    sizes = [_DUR_UNITS[u.lower()] for _, u in parts]
    in_order = all(a > b for a, b in zip(sizes, sizes[1:]))  # "1h30m", not "30m1h" or "1h1h"
    if not parts or not in_order or "".join(n + u for n, u in parts).lower() != compact.lower():
        raise SpecError(
            f"{what}: {text!r} is not a duration; use seconds or e.g. \"90s\", \"30m\", "
            "\"2h\", \"1h30m\", \"01:30:00\""
        )
    return sum(float(n) * _DUR_UNITS[u.lower()] for n, u in parts)


def format_memory(num_bytes: int) -> str:
    """Render bytes the way schedulers accept them, in the largest exact unit (``"10G"``)."""
    for unit in ("T", "G", "M", "K"):
        size = _MEM_UNITS[unit]
        if num_bytes % size == 0:
            return f"{num_bytes // size}{unit}"
    return f"{max(1, math.ceil(num_bytes / 2**10))}K"


def format_memory_mb(num_bytes: int) -> int:
    """Whole mebibytes, rounded up: what ``sbatch --mem`` takes without a unit."""
    return max(1, math.ceil(num_bytes / 2**20))


def format_duration(seconds: int) -> str:
    """Render seconds as ``HH:MM:SS`` (``D-HH:MM:SS`` past a day), as Slurm and Grid Engine read."""
    days, rest = divmod(int(seconds), 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    clock = f"{hours:02d}:{minutes:02d}:{secs:02d}"
    return f"{days}-{clock}" if days else clock
