"""/proc read for real: the process table, descendants by ancestry, the start-time clock."""

from __future__ import annotations

import os
import subprocess

from gm_testing import wait_for

from gristmill.worker.procfs import children, descendants, start_time, table, ticks_now


def test_the_table_places_this_process_in_its_tree() -> None:
    procs = table()
    me = procs[os.getpid()]
    assert (me.ppid, me.pgrp, me.zombie) == (os.getppid(), os.getpgrp(), False)
    assert me.start == start_time(os.getpid())
    assert me.rss > 0


def test_descendants_follow_ancestry_and_refuse_a_reused_pid() -> None:
    """Grandchildren in a session of their own are still descendants; a root named with
    another start time (a reused pid) has none."""
    tree = subprocess.Popen(["sh", "-c", "setsid sleep 30 & sleep 30 & wait"])
    try:
        wait_for(lambda: len(children(tree.pid)) == 2, 10, "the two sleeps")
        procs = table()
        found = descendants({tree.pid: procs[tree.pid].start}, procs)
        assert found == {tree.pid, *children(tree.pid)}
        assert descendants({tree.pid: procs[tree.pid].start + 1}, procs) == set()
    finally:
        for pid in children(tree.pid):
            os.kill(pid, 9)
        tree.wait(timeout=10)


def test_start_times_and_ticks_now_share_one_clock() -> None:
    before = ticks_now()
    proc = subprocess.Popen(["sleep", "5"])
    try:
        started = start_time(proc.pid)
        assert started is not None
        assert before <= started <= ticks_now()
        mine = start_time(os.getpid())
        assert mine is not None
        assert mine <= before
    finally:
        proc.kill()
        proc.wait()
