"""The pipeline's stages. Each is a click command (its console script) and a gristmill task.

The functions hold business logic only: resources, console scripts, ``-v`` and
exception handling come from ``@gm.task``.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path

import attrs
import click
import yaml
from loguru import logger

import gristmill as gm
from seiir_like import model

_OUTPUT_ROOT = click.option(
    "--output-root",
    type=click.Path(file_okay=False, resolve_path=True, path_type=Path),
    required=True,
    help="Directory the pipeline writes into (created if missing).",
)


def draw_path(output_root: Path, draw: int) -> Path:
    return output_root / "fit" / f"draw_{draw}.csv"


def forecast_path(output_root: Path, location_id: int) -> Path:
    return output_root / "forecast" / f"location_{location_id}.csv"


@gm.task(mem="200M", cores=1, runtime="5m")
@_OUTPUT_ROOT
@click.option("--draw", type=int, required=True, help="Draw number (seeds priors and noise).")
def fit(output_root: Path, draw: int) -> None:
    """Fit the transmission rate of one draw; write fit/draw_<n>.csv."""
    params, rmse = model.fit_draw(draw)
    rows = [
        ("beta", params.beta), ("sigma", params.sigma), ("gamma1", params.gamma1),
        ("gamma2", params.gamma2), ("r0", params.r0), ("rmse", rmse),
    ]
    path = draw_path(output_root, draw)
    model.write_rows(path, ("parameter", "value"), ((k, f"{v:.6g}") for k, v in rows))
    logger.info("draw {}: beta={:.3f} R0={:.2f} rmse={:.3f} -> {}", draw, params.beta,
                params.r0, rmse, path)


@gm.task(mem="200M", cores=1, runtime="5m")
@_OUTPUT_ROOT
@click.option("--n-draws", type=int, required=True, help="How many draws must be there.")
def validate(output_root: Path, n_draws: int) -> None:
    """Check that every draw was fitted and is sane; write validation.yaml."""
    problems: list[str] = []
    betas: list[float] = []
    r0s: list[float] = []
    for draw in range(n_draws):
        path = draw_path(output_root, draw)
        if not path.exists():
            problems.append(f"draw {draw}: {path} is missing")
            continue
        params, rmse = model.read_params(path)
        if not (params.beta > 0 and math.isfinite(rmse)):
            problems.append(f"draw {draw}: beta={params.beta} rmse={rmse} is not a usable fit")
        betas.append(params.beta)
        r0s.append(params.r0)
    expected = {draw_path(output_root, draw).name for draw in range(n_draws)}
    extra = sorted(p.name for p in (output_root / "fit").glob("draw_*.csv")
                   if p.name not in expected)
    report: dict[str, object] = {
        "n_draws": n_draws,
        "draws_found": len(betas),
        "ok": not problems,
        "problems": problems,
        "ignored_files": extra,
    }
    if betas:
        report["beta"] = _summary(betas)
        report["r0"] = _summary(r0s)
    out = output_root / "validation.yaml"
    out.write_text(yaml.safe_dump(report, sort_keys=False))
    if problems:
        raise RuntimeError(
            f"{len(problems)} of {n_draws} draws failed validation (see {out}): "
            + "; ".join(problems[:5])
        )
    logger.info("{} draws valid -> {}", n_draws, out)


def _summary(values: list[float]) -> dict[str, float]:
    return {
        "mean": round(statistics.fmean(values), 4),
        "min": round(min(values), 4),
        "max": round(max(values), 4),
    }


@gm.task(mem="300M", cores=1, runtime="5m", name="forecast_{location_id}")
@_OUTPUT_ROOT
@click.option("--location-id", type=int, required=True, help="Location to forecast.")
def forecast(output_root: Path, location_id: int) -> None:
    """Project daily infections for one location from every fitted draw."""
    fits = sorted((output_root / "fit").glob("draw_*.csv"))
    if not fits:
        raise FileNotFoundError(f"no fits in {output_root / 'fit'}; run the fit tasks first")
    location = model.Location.of(location_id)
    curves: list[list[float]] = []
    for path in fits:
        params, _ = model.read_params(path)
        local = attrs.evolve(params, beta=params.beta * location.contact)
        curve, _ = model.simulate(local, location.start(), model.FORECAST_DAYS)
        curves.append(curve)
    rows = []
    for day in range(model.FORECAST_DAYS):
        values = [curve[day] for curve in curves]
        rows.append((
            day + 1,
            round(statistics.fmean(values), 1),
            round(model.quantile(values, 0.025), 1),
            round(model.quantile(values, 0.975), 1),
        ))
    path = forecast_path(output_root, location_id)
    model.write_rows(path, ("day", "mean", "lower", "upper"), rows)
    logger.info("location {}: {} draws, {} days -> {}", location_id, len(curves),
                model.FORECAST_DAYS, path)


@gm.task(mem="200M", cores=1, runtime="5m")
@_OUTPUT_ROOT
@click.option("--location-id", "location_ids", type=int, multiple=True, required=True,
              help="A location whose forecast must exist (repeat the option).")
def diagnostics(output_root: Path, location_ids: tuple[int, ...]) -> None:
    """Summarise every location's forecast; write diagnostics/summary.csv."""
    rows = []
    for location_id in location_ids:
        path = forecast_path(output_root, location_id)
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing; run forecast_{location_id} first")
        lines = path.read_text().splitlines()[1:]
        means = [float(line.split(",")[1]) for line in lines]
        peak = max(range(len(means)), key=means.__getitem__)
        rows.append((location_id, peak + 1, means[peak], round(sum(means), 1)))
    out = output_root / "diagnostics" / "summary.csv"
    model.write_rows(out, ("location_id", "peak_day", "peak_mean", "total_mean"), rows)
    logger.info("{} locations summarised -> {}", len(rows), out)
