"""Slurm partitions' time limits, which cap how long a chunk's job may ask to run.

A chunked array element asks for its jobs' runtimes added up (see
:mod:`gristmill.backends.batch.arrays`); a partition refuses, or never starts, a job
asking more than its ``MaxTime``. The limits are read once per backend with one
``scontrol show partition --oneliner`` (every partition, the default one marked), and a
failure to read them means no cap: the chunk is then only as long as the task asks.
"""

from __future__ import annotations

import re

_KV = re.compile(r"(\w+)=(\S*)")
#: Slurm's words for "no limit".
_UNLIMITED = {"UNLIMITED", "INFINITE", "NONE", ""}


def parse_time_limit(text: str) -> int | None:
    """A Slurm time limit in seconds: ``MM``, ``MM:SS``, ``HH:MM:SS``, ``D-HH``,
    ``D-HH:MM``, ``D-HH:MM:SS``; None for ``UNLIMITED`` (or anything unreadable)."""
    text = text.strip()
    if text.upper() in _UNLIMITED:
        return None
    days_text, dash, clock = text.rpartition("-")
    try:
        days = int(days_text) if dash else 0
        parts = [int(p) for p in clock.split(":")]
    except ValueError:
        return None
    if not 1 <= len(parts) <= 3 or days < 0 or any(p < 0 for p in parts):
        return None
    if dash:  # D-HH[:MM[:SS]]
        hours, minutes, seconds = ([*parts, 0, 0])[:3]
    elif len(parts) == 3:
        hours, minutes, seconds = parts
    else:  # MM or MM:SS
        hours, (minutes, seconds) = 0, ([*parts, 0])[:2]
    return days * 86400 + hours * 3600 + minutes * 60 + seconds


def parse_partitions(text: str) -> tuple[dict[str, int | None], str | None]:
    """``scontrol show partition --oneliner`` → ({partition: MaxTime in s}, the default)."""
    limits: dict[str, int | None] = {}
    default = None
    for line in text.splitlines():
        fields = dict(_KV.findall(line))
        name = fields.get("PartitionName")
        if not name:
            continue
        limits[name] = parse_time_limit(fields.get("MaxTime", ""))
        if fields.get("Default") == "YES":
            default = name
    return limits, default
