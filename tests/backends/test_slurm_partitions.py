"""Slurm partitions' time limits (what ``scontrol show partition --oneliner`` prints)."""

from __future__ import annotations

import pytest

from gristmill.backends.slurm.partitions import parse_partitions, parse_time_limit


@pytest.mark.parametrize(("text", "seconds"), [
    ("UNLIMITED", None), ("INFINITE", None), ("NONE", None), ("", None), ("junk", None),
    ("30", 1800), ("10:00", 600), ("00:10:00", 600), ("01:40:00", 6000),
    ("2-00", 172800), ("1-02:03", 93780), ("1-00:00:05", 86405), ("-5", None),
])
def test_slurm_time_formats(text: str, seconds: int | None) -> None:
    assert parse_time_limit(text) == seconds


def test_partitions_and_the_default_one() -> None:
    text = (
        "PartitionName=debug AllowGroups=ALL Default=YES MaxTime=UNLIMITED State=UP\n"
        "PartitionName=short Default=NO MaxTime=00:10:00 State=UP\n"
        "\n"
    )
    assert parse_partitions(text) == ({"debug": None, "short": 600}, "debug")
