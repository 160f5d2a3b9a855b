"""Steering values, their validation and their effect on a task's policy (no engine)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gristmill.engine.plan import UnitPlan
from gristmill.engine.steering import (
    Limits,
    Mailbox,
    Request,
    Steering,
    receive,
    send,
    steered,
)
from gristmill.errors import SpecError
from gristmill.resources import DEFAULT_ON_OOM, Policy, Resources, escalation


def limit(task: str | None = None, **limits: Any) -> Request:
    return Request("limit", task=task, limits=Limits(**limits), user="ann", time=1.0)


def test_limits_parse_what_users_type() -> None:
    parsed = Limits.parse(max_concurrent=3, retries=0, max_mem="64G", max_runtime="2h")
    assert parsed == Limits(3, 0, 64 * 2**30, 7200)
    assert parsed.set_fields() == ["max_concurrent", "retries", "max_mem", "max_runtime"]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"max_concurrent": 0}, "max_concurrent = 0"),
    ({"retries": -1}, "retries = -1"),
    ({"retries": True}, "retries = True"),
    ({"max_mem": 10}, "max_mem = 10"),
    ({"max_runtime": 10**12}, "max_runtime"),
])
def test_limits_out_of_range_are_refused(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError, match=message):
        Limits(**kwargs)


def test_limits_parse_names_the_flag_of_a_bad_value() -> None:
    with pytest.raises(SpecError, match="--max-mem"):
        Limits.parse(max_mem="lots")
    with pytest.raises(SpecError, match="--max-runtime"):
        Limits.parse(max_runtime="soon")


@pytest.mark.parametrize("data", [
    [], "limit", {"action": "explode"}, {"action": "limit"},
    {"action": "limit", "limits": {"max_concurrent": 2}, "shell": "rm"},
    {"action": "limit", "limits": {"cores": 2}},
    {"action": "limit", "limits": {"max_concurrent": "2"}},
    {"action": "limit", "limits": {"max_concurrent": 2}, "task": 5},
    {"action": "limit", "limits": {"max_concurrent": 2}, "time": float("nan")},
    {"action": "pause", "limits": {"retries": 1}},
    {"action": "pause", "task": "fit"},
])
def test_anything_but_a_well_formed_request_is_refused(data: Any) -> None:
    with pytest.raises(SpecError):
        Request.from_json(data)


def test_requests_round_trip_and_replay_into_the_same_state() -> None:
    state = Steering()
    for request in (limit(max_concurrent=4), limit("fit", retries=5, max_mem=2**34),
                    Request("pause", user="bob", time=2.0)):
        state = state.apply(request)
    again = Steering.from_json(json.loads(json.dumps(state.to_json())))
    assert again == state
    assert again.paused_by == "bob"
    assert again.workflow.max_concurrent == 4
    assert again.for_task("fit") == Limits(retries=5, max_mem=2**34)


def test_a_run_wide_cap_replaces_the_caps_set_per_task_but_not_their_concurrency() -> None:
    state = Steering().apply(limit("fit", retries=5, max_concurrent=2)).apply(limit(retries=1))
    assert state.for_task("fit") == Limits(max_concurrent=2, retries=1)
    assert state.for_task("other") == Limits(retries=1)
    state = state.apply(limit("fit", retries=7))  # changed again: the latest wins
    assert state.for_task("fit").retries == 7


def test_unpause_ends_a_pause_and_status_lines_say_who_paused() -> None:
    state = Steering().apply(Request("pause", user="bob", time=0.0))
    assert state.paused
    assert state.describe()[0].startswith("paused by bob since ")
    assert not state.apply(Request("unpause", user="ann")).paused


def test_steered_plans_carry_the_caps_into_retries_and_escalation() -> None:
    base = [UnitPlan(Resources(mem="1G"), Policy(retries=1, on_oom=escalation("mem", 2))),
            UnitPlan(Resources(), Policy())]
    state = Steering().apply(limit("fit", retries=4, max_mem=8 * 2**30, max_runtime=60))
    fit, other = steered(base, ["fit", "other"], state)
    assert fit.policy.retries == 4
    assert fit.policy.on_oom is not None
    assert (fit.policy.on_oom.factor, fit.policy.on_oom.cap) == (2, 8 * 2**30)
    assert fit.policy.on_timeout is not None
    assert fit.policy.on_timeout.cap == 60
    assert other is base[1]  # untouched
    capped = steered(base[1:], ["fit"], state)[0].policy.on_oom
    assert capped is not None
    assert capped.factor == DEFAULT_ON_OOM.factor  # no rule of its own: the default, capped


def test_the_mailbox_notices_a_request_and_takes_it_once(tmp_path: Path) -> None:
    box = Mailbox(tmp_path)
    assert box.take() == []
    path = send(tmp_path, limit(max_concurrent=2))
    assert oct((tmp_path / "steer").stat().st_mode & 0o777) == "0o700"
    assert box.pending()
    (taken,) = box.take()
    assert taken.limits.max_concurrent == 2
    assert not path.exists()
    assert receive(tmp_path) == []
