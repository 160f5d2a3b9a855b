"""Field-by-field merge of attrs values: the one rule behind every layering of settings.

Resources, retry policies and the spec's workflow settings all layer the same way
(decorator < spec default < spec task < per call < CLI): a field the override sets
(not None) wins; a mapping field merges key by key. One function, so the layers can
never disagree on what "sets" means.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import attrs

if TYPE_CHECKING:
    from attrs import AttrsInstance

T = TypeVar("T", bound="AttrsInstance")


def merge_fields(
    base: T, override: T | None,
    combine: Mapping[str, Callable[[Any, Any], Any]] | None = None,
) -> T:
    """``base`` with every field ``override`` sets replaced; ``base`` itself when none is.

    A field named in ``combine`` is joined instead (``combine[name](base's, override's)``)
    when the override's value is non-empty, e.g. two option mappings merged key by key.
    """
    if override is None:
        return base
    joiners = combine or {}
    changes: dict[str, Any] = {}
    for field in attrs.fields(type(base)):
        value = getattr(override, field.name)
        join = joiners.get(field.name)
        if join is not None:
            if value:
                changes[field.name] = join(getattr(base, field.name), value)
        elif value is not None:
            changes[field.name] = value
    return attrs.evolve(base, **changes) if changes else base  # type: ignore[misc]
