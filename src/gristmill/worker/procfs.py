"""What /proc says about a process and the machine, for the local backend.

A process is named by its pid *and* its start time: a pid is reused once its
process is gone, a (pid, start time) pair is not. Both halves of the local backend
use this, the engine side to tell whether a supervisor still runs, the supervisor
to name its jobs.
"""

from __future__ import annotations

import os


def stat_fields(pid: int) -> list[bytes] | None:
    """Fields 3 onwards of /proc/<pid>/stat (state, ppid, pgrp, ...); ``None`` if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            data = handle.read()
        return data[data.rindex(b")") + 2 :].split()
    except (OSError, ValueError):
        return None


def start_time(pid: int) -> int | None:
    """When live process ``pid`` started (clock ticks since boot); ``None`` if gone or a zombie."""
    fields = stat_fields(pid)
    return None if fields is None or fields[0] in (b"Z", b"X") else int(fields[19])


def children(pid: int) -> list[int]:
    """The children of (the main thread of) process ``pid``; [] where /proc cannot say."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children", "rb") as handle:
            return [int(word) for word in handle.read().split()]
    except (OSError, ValueError):
        return []


def environ_has(pid: int, entry: bytes) -> bool:
    """Whether ``KEY=value`` ``entry`` is in the environment process ``pid`` started with."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as handle:
            return entry in handle.read().split(b"\0")
    except OSError:
        return False


def alive(pid: int, start: int) -> bool:
    """Whether the process with this ``pid`` and ``start`` time still runs."""
    if os.path.isdir("/proc/self"):
        return start_time(pid) == start
    try:  # no procfs: the pid is all there is
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def mem_total() -> int:
    """The machine's memory in bytes (MemTotal)."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
