"""What /proc says about processes and the machine: the one reader of /proc.

A process is named by its pid *and* its start time: a pid is reused once its
process is gone, a (pid, start time) pair is not. The local backend's two halves,
the monitor's memory watchdog, the jobmon and dask backends' orphan hunts all read
/proc through here. Standard library only, and no ``typing`` (the worker wrapper imports it).
"""

from __future__ import annotations

import collections
import os
import time

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (mypy reads the name)
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import NamedTuple


def pids() -> list[int]:
    """Every process /proc lists now ([] without a procfs)."""
    try:
        names = os.listdir("/proc")
    except OSError:
        return []
    return [int(name) for name in names if name.isdigit()]


def stat_fields(pid: int | str) -> list[bytes] | None:
    """Fields 3 onwards of /proc/<pid>/stat (state, ppid, pgrp, ...); ``None`` if gone.

    One ``os.open``/``os.read`` (no buffered file object): the memory watchdog calls
    this for every process on the machine at each sample.
    """
    try:
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
        try:
            data = os.read(fd, 4096)
        finally:
            os.close(fd)
        return data[data.rindex(b")") + 2 :].split()
    except (OSError, ValueError):
        return None


if TYPE_CHECKING:
    class Proc(NamedTuple):
        """One process in a :func:`table`: where it hangs in the process tree, and its size."""

        ppid: int
        pgrp: int
        start: int  # clock ticks since boot, as start_time gives
        rss: int  # resident pages
        zombie: bool
else:  # the same tuple without importing typing (~5 ms of every wrapper's start)
    Proc = collections.namedtuple("Proc", "ppid pgrp start rss zombie")
    Proc.__doc__ = "One process in a table(): where it hangs in the process tree, and its size."


def table() -> dict[int, Proc]:
    """Every process now, from one /proc scan ({} without a procfs).

    One read per process: what the memory watchdog and the monitor's descendant
    tracking both need, so a sample of either costs one scan.
    """
    found = {}
    for pid in pids():
        fields = stat_fields(pid)
        if fields is None:
            continue  # it ended while we looked
        try:
            found[pid] = Proc(int(fields[1]), int(fields[2]), int(fields[19]), int(fields[21]),
                              fields[0] in (b"Z", b"X"))
        except (ValueError, IndexError):
            continue
    return found


def descendants(roots: Mapping[int, int], procs: Mapping[int, Proc]) -> set[int]:
    """The live processes of ``procs`` that are ``roots`` (pid -> start time, so a reused
    pid is not taken for a root) or descend from one, zombies left out."""
    kids: dict[int, list[int]] = {}
    for pid, proc in procs.items():
        kids.setdefault(proc.ppid, []).append(pid)
    todo = [pid for pid, start in roots.items() if pid in procs and procs[pid].start == start]
    found: set[int] = set()
    while todo:
        pid = todo.pop()
        if pid in found:
            continue
        found.add(pid)
        todo.extend(kids.get(pid, ()))
    return {pid for pid in found if not procs[pid].zombie}


def ticks_now() -> int:
    """Now, in the clock of :func:`start_time` (clock ticks since boot), rounded down: a
    process started after this call has a start time at least this."""
    clock = getattr(time, "CLOCK_BOOTTIME", time.CLOCK_MONOTONIC)
    return int(time.clock_gettime(clock) * os.sysconf("SC_CLK_TCK"))


def group_members(pgid: int) -> list[int]:
    """The live (not zombie) processes of process group ``pgid``."""
    members = []
    for pid in pids():
        fields = stat_fields(pid)
        if fields is not None and fields[0] not in (b"Z", b"X") and int(fields[2]) == pgid:
            members.append(pid)
    return members


def open_files(pid: int) -> set[tuple[int, int]]:
    """(device, inode) of every file process ``pid`` has open (empty if not ours to see)."""
    found: set[tuple[int, int]] = set()
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return found
    for name in names:
        try:
            info = os.stat(f"/proc/{pid}/fd/{name}")
        except OSError:
            continue
        found.add((info.st_dev, info.st_ino))
    return found


def cmdline(pid: int) -> str:
    """The command line of ``pid``, words joined by spaces ("" if gone)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def environ(pid: int) -> list[bytes]:
    """The ``KEY=value`` entries process ``pid`` started with ([] if gone or not ours)."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as handle:
            return handle.read().split(b"\0")
    except OSError:
        return []


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
