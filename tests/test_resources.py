"""Tests for gristmill.resources: parsing at the edge, precedence merges, escalation."""

from __future__ import annotations

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gristmill.errors import GristmillError, SpecError
from gristmill.resources import (
    DEFAULT_ON_OOM,
    DEFAULT_ON_TIMEOUT,
    Escalation,
    Policy,
    Resources,
    escalation,
    format_duration,
    format_memory,
    format_memory_mb,
    parse_duration,
    parse_memory,
    parse_memory_with_unit,
)

K, M, G, T = 2**10, 2**20, 2**30, 2**40


# --- memory --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("500M", 500 * M),
        ("10G", 10 * G),
        ("1.5T", int(1.5 * T)),
        ("1.5k", 1536),
        ("10GB", 10 * G),
        ("10GiB", 10 * G),
        ("10 g", 10 * G),
        (" 2G ", 2 * G),
        ("4096", 4096),
        (1024, 1024),
        (1.5, 2),  # bytes round up: a request is never smaller than asked
    ],
)
def test_parse_memory_accepts_units_in_binary_bytes(text: object, expected: int) -> None:
    assert parse_memory(text) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "value", ["-1G", "ten", "", "1.2.3G", "1e3G", "10 gigs", "G", True, None, [1], {"mem": 1}]
)
def test_parse_memory_rejects_garbage_with_an_example(value: object) -> None:
    with pytest.raises(SpecError, match=r'not a memory size; use e\.g\. "10G"'):
        parse_memory(value)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [0, "0", "0G", -5, -0.5, float("nan"), float("inf")])
def test_parse_memory_rejects_zero_negative_and_non_finite(value: object) -> None:
    with pytest.raises(SpecError, match=r'must be a positive memory size; use e\.g\. "10G"'):
        parse_memory(value)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [100, 1.5, "100", " 64 ", ".5"])
def test_parse_memory_with_unit_refuses_a_bare_number(value: object) -> None:
    assert parse_memory(value) > 0  # type: ignore[arg-type]  # what would be read as bytes
    with pytest.raises(SpecError, match=r"^--max-mem: .* has no unit; a bare number would mean"):
        parse_memory_with_unit(value, what="--max-mem")


@pytest.mark.parametrize("value", ["100B", "100K", "1.5G", "2 TiB", "64gb"])
def test_parse_memory_with_unit_reads_what_names_a_unit(value: str) -> None:
    assert parse_memory_with_unit(value) == parse_memory(value)


def test_parse_memory_names_the_field_it_parses() -> None:
    with pytest.raises(SpecError, match=r"^tasks\.fit\.mem: '10 gigs'"):
        parse_memory("10 gigs", what="tasks.fit.mem")


@given(st.integers(min_value=1, max_value=2**50), st.sampled_from(["", "K", "M", "G", "T"]))
def test_format_memory_round_trips_through_parse(number: int, unit: str) -> None:
    num_bytes = parse_memory(f"{number}{unit}")
    again = parse_memory(format_memory(num_bytes))
    if num_bytes % K == 0:
        assert again == num_bytes
    else:  # below a KiB the text rounds up: never ask a scheduler for less
        assert num_bytes < again < num_bytes + K
    assert num_bytes <= format_memory_mb(num_bytes) * M < num_bytes + M


def test_format_memory_uses_the_largest_exact_unit() -> None:
    assert format_memory(10 * G) == "10G"
    assert format_memory(1536 * M) == "1536M"
    assert format_memory(3 * T) == "3T"
    assert format_memory(1000) == "1K"  # below a KiB rounds up, never down
    assert format_memory_mb(1) == 1


# --- durations -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (60, 60),
        (1.2, 2),
        ("45", 45),
        ("90s", 90),
        ("30m", 1800),
        ("2h", 7200),
        ("1h30m", 5400),
        ("1h 30m", 5400),
        ("1h23m20s", 5000),
        ("1d2h3m4s", 93784),
        ("01:30:00", 5400),
        ("25:00:00", 90000),
        ("1:30", 90),  # MM:SS, as Slurm reads it
        ("2-00:00:00", 172800),
    ],
)
def test_parse_duration_accepts_seconds_units_and_clock_times(value: object, seconds: int) -> None:
    assert parse_duration(value) == seconds  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "value", ["abc", "", "h", "1h30", "1m30h", "1h1h", "1:99:00", "1:75", "-1h", True, None, []]
)
def test_parse_duration_rejects_garbage_with_an_example(value: object) -> None:
    with pytest.raises(SpecError, match=r"use (seconds or )?e\.g\. .*(01:30:00|\"2h\")"):
        parse_duration(value)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [0, "0", "0s", -5, "-5", float("nan")])
def test_parse_duration_rejects_zero_and_negative(value: object) -> None:
    with pytest.raises(SpecError, match=r'must be a positive duration; use e\.g\. "2h"'):
        parse_duration(value)  # type: ignore[arg-type]


@given(st.integers(min_value=1, max_value=10 * 86400))
def test_format_duration_round_trips(seconds: int) -> None:
    assert parse_duration(format_duration(seconds)) == seconds


def test_format_duration_is_what_schedulers_read() -> None:
    assert format_duration(5400) == "01:30:00"
    assert format_duration(93784) == "1-02:03:04"


# --- errors --------------------------------------------------------------------------


def test_spec_error_is_both_a_gristmill_error_and_a_value_error() -> None:
    with pytest.raises(ValueError, match="not a memory size"):
        Resources(mem="lots")
    with pytest.raises(GristmillError):
        Resources(runtime="forever")
    assert issubclass(SpecError, GristmillError)
    assert issubclass(SpecError, ValueError)


# --- Resources -----------------------------------------------------------------------


def test_resources_parse_once_into_bytes_and_seconds() -> None:
    r = Resources(mem="10G", cores="4", runtime="1h30m", queue="all.q", gpus=0,
                  extra={"constraint": "skylake"})
    assert (r.mem, r.cores, r.runtime, r.queue, r.gpus) == (10 * G, 4, 5400, "all.q", 0)
    assert r.extra == (("constraint", "skylake"),)
    assert r == Resources(mem=10 * G, cores=4, runtime=5400, queue="all.q", gpus=0,
                          extra={"constraint": "skylake"})
    assert hash(r) == hash(Resources(**attrs.asdict(r, recurse=False)))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"cores": 0}, r"cores: 0 must be at least 1; use e\.g\. 1"),
        ({"cores": -2}, r"cores: -2 must be at least 1"),
        ({"cores": 2.5}, r"cores: 2\.5 is not a whole number; use e\.g\. 1"),
        ({"cores": "many"}, r"cores: 'many' is not a whole number"),
        ({"gpus": -1}, r"gpus: -1 must be at least 0"),
        ({"queue": ""}, r"queue: '' must be a non-empty string"),
        ({"project": 3}, r"project: 3 must be a non-empty string"),
        ({"extra": ["a"]}, r"extra: \['a'\] must be a mapping"),
    ],
)
def test_resources_reject_invalid_fields(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(SpecError, match=message):
        Resources(**kwargs)  # type: ignore[arg-type]


def test_merged_with_replaces_only_what_the_override_sets() -> None:
    decorator = Resources(mem="10G", cores=1, runtime="1h", extra={"a": "1", "b": "2"})
    spec = Resources(mem="12G", queue="long.q", extra={"b": "3"})
    call = Resources(mem="20G")
    merged = decorator.merged_with(spec).merged_with(call)
    assert merged == Resources(
        mem="20G", cores=1, runtime="1h", queue="long.q", extra={"a": "1", "b": "3"}
    )
    assert decorator.merged_with(None) is decorator
    assert decorator.merged_with(Resources()) is decorator
    assert Resources().merged_with(decorator) == decorator


def test_as_dict_and_describe_show_set_fields_only() -> None:
    r = Resources(mem="10G", runtime=1000, extra={"x": "y"})
    assert r.as_dict() == {"mem": 10 * G, "runtime": 1000, "extra": {"x": "y"}}
    assert r.describe() == "mem=10G runtime=00:16:40 x=y"
    assert Resources().describe() == "(none)"


def test_resources_are_frozen() -> None:
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        Resources().mem = 1  # type: ignore[misc]


# --- escalation and policy -------------------------------------------------------------


def test_escalation_grows_memory_by_its_factor_up_to_the_cap() -> None:
    rule = escalation("mem", "x1.5", "64G")
    grown = rule.apply(Resources(mem="10G", cores=2), Resources())
    assert grown == Resources(mem="15G", cores=2)
    assert rule.apply(Resources(mem="50G"), Resources()) == Resources(mem="64G")  # capped
    assert rule.apply(Resources(mem="64G"), Resources()) is None  # at the cap: retry is useless
    assert rule.describe() == "mem x1.5 up to 64G"


def test_escalation_takes_the_base_value_when_the_attempt_leaves_it_unset() -> None:
    base = Resources(runtime="1h")
    assert DEFAULT_ON_TIMEOUT.apply(Resources(cores=3), base) == Resources(cores=3, runtime="2h")
    assert DEFAULT_ON_OOM.apply(Resources(), Resources()) is None  # nothing to grow
    assert escalation("runtime", 2, "3h").describe() == "runtime x2 up to 03:00:00"


@pytest.mark.parametrize("factor", ["x1", 0.5, "fast", "x-2"])
def test_escalation_factor_must_grow(factor: object) -> None:
    with pytest.raises(SpecError, match=r"use e\.g\. x1\.5"):
        Escalation("mem", factor)


def test_escalation_cap_is_parsed_in_the_resource_units() -> None:
    with pytest.raises(SpecError, match=r"on_oom\.max: 'huge'"):
        escalation("mem", 2, "huge")
    assert escalation("runtime", 2, "90m").cap == 5400


def test_policy_merges_like_resources() -> None:
    base = Policy(retries=1, max_concurrent=10, on_oom=DEFAULT_ON_OOM)
    merged = base.merged_with(Policy(retries=3))
    assert merged == Policy(retries=3, max_concurrent=10, on_oom=DEFAULT_ON_OOM)
    assert base.merged_with(None) is base
    with pytest.raises(SpecError, match="retries: -1 must be at least 0"):
        Policy(retries=-1)
    with pytest.raises(SpecError, match="max_concurrent: 0 must be at least 1"):
        Policy(max_concurrent=0)


@pytest.mark.parametrize("value", [366 * 86400 + 1, "400-00:00:00", 10**30, "9" * 400])
def test_a_duration_beyond_a_year_is_refused_and_the_message_stays_short(value: object) -> None:
    expected = r"longest duration gristmill accepts, 366 days|positive duration"
    with pytest.raises(SpecError, match=expected) as info:
        Resources(runtime=value)  # type: ignore[arg-type]
    assert len(str(info.value)) < 400
    assert Resources(runtime=366 * 86400).runtime == 366 * 86400
