"""Tests for gristmill.graph.render: dot and Mermaid drawings with groups collapsed to one box."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from gm_tasks import fit, forecast, record, validate
from gm_testing import graphviz_dot

import gristmill as gm
from gristmill.dsl.workflow import Workflow
from gristmill.errors import GraphError, GristmillError
from gristmill.graph.render import to_svg


def recorded(body: Callable[[], object], name: str = "demo") -> Workflow:
    return gm.workflow(name=name)(body)()


def seiir_like() -> None:
    fits = fit.map(output_version="v1", draw=range(1000))
    v = validate(output_version="v1", after=fits)
    forecast(output_version="v1", location_id=1, after=v)
    forecast(output_version="v1", location_id=2, after=[v, fits[7]])


def test_dot_draws_one_box_per_call_and_one_per_group() -> None:
    assert recorded(seiir_like, name='seiir "v1"').to_dot() == "\n".join([
        'digraph "seiir \\"v1\\"" {',
        "  rankdir=LR;",
        "  node [shape=box];",
        '  u0 [label="fit x1000 (by draw)", style="rounded,filled", fillcolor="#e8eef7"];',
        '  u1 [label="validate"];',
        '  u2 [label="forecast(location_id=1)"];',
        '  u3 [label="forecast(location_id=2)"];',
        "  u0 -> u1;",
        "  u1 -> u2;",
        "  u1 -> u3;",
        '  u0 -> u3 [label="[7]"];',
        "}",
        "",
    ])


def test_mermaid_draws_groups_as_subroutine_boxes() -> None:
    assert recorded(seiir_like).to_mermaid() == "\n".join([
        "flowchart LR",
        '  u0[["fit x1000 (by draw)"]]',
        '  u1["validate"]',
        '  u2["forecast(location_id=1)"]',
        '  u3["forecast(location_id=2)"]',
        "  u0 --> u1",
        "  u1 --> u2",
        "  u1 --> u3",
        "  u0 -->|[7]| u3",
        "",
    ])


def test_a_million_node_map_draws_as_two_boxes() -> None:
    def body() -> None:
        validate(output_version="v", after=fit.map(output_version="v", draw=range(10**6)))

    dot = recorded(body).to_dot()
    assert dot.count("[label=") == 2
    assert "fit x1000000 (by draw)" in dot


def test_labels_escape_quotes_and_newlines() -> None:
    def body() -> None:
        record(text='say "hi"\nthen go')
        record(text="plain")

    wf = recorded(body)
    assert 'label="record(text=say \\"hi\\"\\nthen go)"' in wf.to_dot()
    mermaid = wf.to_mermaid()
    assert '["record(text=say #quot;hi#quot; then go)"]' in mermaid
    assert len(mermaid.splitlines()) == 3


def test_drawing_a_cyclic_workflow_is_a_graph_error() -> None:
    def body() -> None:
        a = fit(output_version="v", draw=1)
        fit(output_version="v", draw=1, after=validate(output_version="v", after=a))

    wf = recorded(body)
    with pytest.raises(GraphError, match="cycle"):
        wf.to_dot()
    with pytest.raises(GraphError, match="cycle"):
        wf.to_mermaid()


def test_svg_with_graphviz() -> None:
    graphviz_dot()
    svg = to_svg(recorded(seiir_like))
    assert svg.lstrip().startswith("<?xml") or "<svg" in svg
    assert "fit x1000" in svg


def test_svg_without_graphviz_says_how_to_get_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "")
    with pytest.raises(GristmillError, match="needs Graphviz's 'dot' program on PATH"):
        to_svg(recorded(seiir_like))
