"""The monitor's helpers: memory sizes for reasons and the RSS sampling schedule.

Whole attempts (limits, signals, process groups) run through it in tests/worker/test_wrapper.py
and tests/backends/test_local.py.
"""

from __future__ import annotations

import errno
import os

from gristmill.worker.monitor import human_size, sample_interval, transient

MB = 2**20


def test_helpers() -> None:
    assert human_size(480 * MB) == "480M"
    assert human_size(int(1.5 * 2**30)) == "1.5G"
    assert human_size(512) == "512B"
    assert [sample_interval(age) for age in (0, 2.5, 4.5, 7, 600)] == [0.2, 0.4, 0.8, 1.0, 1.0]


def test_only_a_shortage_of_the_machine_is_transient() -> None:
    """Descriptors, processes, memory: tried again. A missing or forbidden program, a bad
    argument: the task's failure, at once."""
    short = [errno.EMFILE, errno.ENFILE, errno.EAGAIN, errno.ENOMEM, errno.ENOBUFS]
    assert all(transient(OSError(code, os.strerror(code))) for code in short)
    assert not any(transient(OSError(code, os.strerror(code)))
                   for code in (errno.ENOENT, errno.EACCES, errno.ENOEXEC, errno.E2BIG))
    assert not transient(ValueError("embedded null byte"))
