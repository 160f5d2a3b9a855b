"""Tests for gristmill.spec.settings: merging a task's settings, and rules that cannot apply."""

from __future__ import annotations

from gristmill.resources import Policy, escalation
from gristmill.spec.settings import idle_escalations

OOM = escalation("mem", 2, "8G")
TIMEOUT = escalation("runtime", 1.5)


def test_an_escalation_without_retries_is_named_once_per_task_in_order() -> None:
    warnings = idle_escalations([
        ("fit", Policy(on_oom=OOM)),
        ("validate", Policy(retries=0, on_oom=OOM, on_timeout=TIMEOUT)),
        ("fit", Policy(retries=3, on_oom=OOM)),  # a later unit of fit: the first counts
        ("forecast", Policy(retries=1, on_oom=OOM)),  # retries: the rule applies
        ("plain", Policy()),  # no rule: nothing to say
    ])

    assert warnings == [
        "task 'fit': on_oom (mem x2 up to 8G) does nothing while retries is 0, as it grows "
        "the resources of a retry; set retries (e.g. `retries: 2` under tasks.fit in the "
        "spec, or --retries 2)",
        "task 'validate': on_oom (mem x2 up to 8G) and on_timeout (runtime x1.5) do nothing "
        "while retries is 0, as they grow the resources of a retry; set retries (e.g. "
        "`retries: 2` under tasks.validate in the spec, or --retries 2)",
    ]
    assert idle_escalations([]) == []
