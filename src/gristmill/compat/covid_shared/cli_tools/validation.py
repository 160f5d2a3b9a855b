"""``validate_best_and_production_tags``: an incomplete run is never marked best or production."""

from __future__ import annotations


def validate_best_and_production_tags(
    modifier: bool, mark_best: bool, production_tag: str | None
) -> None:
    """Refuse ``--mark-best``/``--production-tag`` on a run made incomplete by ``modifier``."""
    if modifier and (mark_best or production_tag):
        raise ValueError(
            "cannot mark an incomplete run (quick, trial or partial) as best or for production; "
            "drop --mark-best/--production-tag, or run the full application"
        )
