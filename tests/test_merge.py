"""Tests for gristmill.merge: one field-by-field rule for every layering of settings."""

from __future__ import annotations

import attrs

from gristmill.merge import merge_fields
from gristmill.resources import Policy, Resources
from gristmill.spec.settings import TaskSettings, WorkflowSettings


@attrs.frozen
class Knobs:
    a: int | None = None
    b: str | None = None
    opts: dict[str, int] = attrs.field(factory=dict)


def test_a_set_field_wins_an_unset_one_keeps_the_base() -> None:
    base = Knobs(a=1, b="x")
    assert merge_fields(base, Knobs(b="y")) == Knobs(a=1, b="y")
    assert merge_fields(base, Knobs(a=0)) == Knobs(a=0, b="x")  # 0 is set, unlike None
    assert merge_fields(base, None) is base
    nothing = Knobs(opts=None)  # type: ignore[arg-type]
    assert merge_fields(base, nothing) is base  # nothing set: the very same value


def test_a_combined_field_joins_only_when_the_override_has_something() -> None:
    join = {"opts": lambda x, y: {**x, **y}}
    base = Knobs(opts={"p": 1, "q": 2})
    assert merge_fields(base, Knobs(opts={"q": 3}), join).opts == {"p": 1, "q": 3}
    assert merge_fields(base, Knobs(), join).opts == {"p": 1, "q": 2}


def test_every_settings_value_layers_by_the_same_rule() -> None:
    low = Resources(mem="1G", cores=2, extra={"constraint": "a", "qos": "low"})
    high = Resources(mem="2G", extra={"qos": "high"})
    assert low.merged_with(high) == Resources(
        mem="2G", cores=2, extra={"constraint": "a", "qos": "high"})
    assert Policy(retries=2).merged_with(Policy(max_concurrent=3)) == Policy(
        retries=2, max_concurrent=3)
    task = TaskSettings(Resources(mem="1G"), Policy(retries=1))
    top = TaskSettings(Resources(cores=4), Policy())
    assert task.merged_with(top) == TaskSettings(Resources(mem="1G", cores=4), Policy(retries=1))
    wf = WorkflowSettings(backend="slurm", backend_options=(("a", 1), ("b", 2)))
    over = WorkflowSettings(max_concurrent=5, backend_options=(("b", 3),))
    assert wf.merged_with(over) == WorkflowSettings(
        backend="slurm", max_concurrent=5, backend_options=(("a", 1), ("b", 3)))
