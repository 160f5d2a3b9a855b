"""Paths read back from a run's store stay inside the run directory.

A store is data a user may have been handed (a copied run, a crafted one): the
attempt paths it records are only ever used when, resolved, they lie under the run
directory. Anything else (an absolute path elsewhere, ``..``) is ignored with a
warning, so ``resume`` and ``cancel`` never read or create files outside the run.
"""

from __future__ import annotations

import os
from pathlib import Path


def confined(run_dir: str | os.PathLike[str], path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` (relative ones from the working directory) lies under ``run_dir``."""
    root = Path(run_dir).resolve()
    try:
        target = Path(path).resolve()
    except (OSError, RuntimeError):  # a link loop
        return False
    return target == root or root in target.parents
