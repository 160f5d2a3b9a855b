"""/proc read for real: the process table, descendants by ancestry, the start-time clock."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

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


def test_own_peak_rss_is_this_processes_memory_not_what_exec_charged_it(tmp_path: Path) -> None:
    """A child of a large process: ru_maxrss includes the parent's peak (charged at
    exec), VmHWM only its own memory."""
    code = ("import resource, json; from gristmill.worker.procfs import own_peak_rss; "
            "print(json.dumps([own_peak_rss(), resource.getrusage(resource.RUSAGE_SELF)"
            ".ru_maxrss * 1024]))")
    parent = ("import subprocess, sys; big = bytearray(400 << 20); "
              f"sys.exit(subprocess.run([sys.executable, '-c', {code!r}]).returncode)")
    done = subprocess.run([sys.executable, "-c", parent], capture_output=True, text=True,
                          timeout=60, check=True)
    own, charged = json.loads(done.stdout)
    assert own < 100 * 2**20 < 400 * 2**20 <= charged
