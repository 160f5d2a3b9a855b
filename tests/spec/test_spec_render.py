"""Tests for gristmill.spec.render: what is rendered loads back, and renders the same again.

The property runs over spec *documents* as people write them (aliases, every spelling
of a size, a duration and a growth factor, workflow options), not over values built in
Python, so the spellings the renderer must normalise are all exercised.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from gm_spec_docs import documents
from hypothesis import given, settings

from gristmill.errors import SpecError
from gristmill.resources import Policy, Resources, escalation
from gristmill.spec.load import Spec
from gristmill.spec.render import task_dict
from gristmill.spec.settings import TaskSettings


def render(spec: Spec) -> str:
    return yaml.safe_dump(spec.to_dict(), sort_keys=False)


@settings(max_examples=200, deadline=None)
@given(documents)
def test_render_load_render_is_a_fixed_point(document: dict[str, Any]) -> None:
    spec = Spec.from_dict(document)
    text = render(spec)

    again = Spec.from_dict(yaml.safe_load(text))

    assert again == spec
    assert render(again) == text


@pytest.mark.parametrize(
    ("size", "text"),
    [(2**30, "1G"), (1536 * 2**20, "1536M"), (1000, "1000B"), (322122548, "322122548B")],
)
def test_memory_always_names_its_unit(size: int, text: str) -> None:
    settings = TaskSettings(Resources(mem=size), Policy(on_oom=escalation("mem", 2, size)))

    rendered = task_dict(settings)

    assert rendered == {"mem": text, "on_oom": {"mem": "x2", "max": text}}
    assert Spec.from_dict({"default": rendered}).default == settings


def test_a_rendered_escalation_is_a_mapping_not_its_description() -> None:
    rule = escalation("mem", 2, "1G")
    rendered = task_dict(TaskSettings(policy=Policy(on_oom=rule)))

    assert rendered == {"on_oom": {"mem": "x2", "max": "1G"}}
    with pytest.raises(SpecError, match=r"default\.on_oom: must be a mapping like"):
        Spec.from_dict({"default": {"on_oom": rule.describe()}})  # what `spec` printed before
