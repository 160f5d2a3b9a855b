"""The monitor's helpers: memory sizes for reasons and the RSS sampling schedule.

Whole attempts (limits, signals, process groups) run through it in tests/worker/test_wrapper.py
and tests/backends/test_local.py.
"""

from __future__ import annotations

from gristmill.worker.monitor import human_size, sample_interval

MB = 2**20


def test_helpers() -> None:
    assert human_size(480 * MB) == "480M"
    assert human_size(int(1.5 * 2**30)) == "1.5G"
    assert human_size(512) == "512B"
    assert [sample_interval(age) for age in (0, 2.5, 4.5, 7, 600)] == [0.2, 0.4, 0.8, 1.0, 1.0]
