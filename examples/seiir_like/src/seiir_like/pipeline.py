"""The SEIIR-like workflow: fit draws, validate them, forecast locations, summarise.

Calling :func:`seiir` records the DAG and runs nothing::

    wf = seiir(version="demo", output_root="/tmp/seiir-demo")
    wf.run(backend="local", run_dir="/tmp/seiir-runs")

or from the shell: ``gristmill run seiir_like.pipeline:seiir --version demo
--output-root /tmp/seiir-demo``.
"""

from __future__ import annotations

from collections.abc import Sequence

import gristmill as gm
from seiir_like.tasks import diagnostics, fit, forecast, validate

#: A handful of location ids, in the spirit of IHME's location hierarchy.
DEFAULT_LOCATION_IDS = (6, 102, 523, 570)


@gm.workflow(name="seiir-{version}")
def seiir(
    version: str,
    output_root: str,
    n_draws: int = 10,
    location_ids: Sequence[int] = DEFAULT_LOCATION_IDS,
) -> None:
    """Fit ``n_draws`` draws, validate them, forecast every location, then run diagnostics."""
    fits = fit.map(output_root=output_root, draw=range(n_draws))          # fan-out
    checked = validate(output_root=output_root, n_draws=n_draws, after=fits)  # fan-in
    forecasts = forecast.map(
        output_root=output_root, location_id=list(location_ids), after=checked
    )
    diagnostics(output_root=output_root, location_ids=list(location_ids), after=forecasts)
