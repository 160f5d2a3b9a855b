"""seiir_like: a small SEIIR-style epidemic pipeline written with gristmill.

It mirrors the shape of IHME's COVID-19 SEIIR pipeline: fit one model per
draw, validate the draws, forecast each location from the fits, then
summarise the forecasts.
"""

from __future__ import annotations

__version__ = "0.1.0"

#: Recorded in run metadata, as jobmon tools did with their tool version.
__jobmon_tool_version__ = "seiir-like-1"
