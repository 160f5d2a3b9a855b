"""Fixtures of the covid_shared compatibility tests: an importable flows module, a record reader.

``cs_flows`` (next to this file) is a small old-style pipeline whose tasks run
``python -c`` and append a line to a file, so tests can count what ran.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))  # cs_flows must import by name: gristmill resume re-imports it
