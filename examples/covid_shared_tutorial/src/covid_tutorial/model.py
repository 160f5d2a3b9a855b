"""Toy business logic shared by the tasks: one parameter per draw, a curve per location."""

from __future__ import annotations

import math
import random
from pathlib import Path


def draw_path(output_version: str, draw: int) -> Path:
    return Path(output_version) / "draws" / f"draw_{draw}.txt"


def forecast_path(output_version: str, location_id: int) -> Path:
    return Path(output_version) / "forecasts" / f"location_{location_id}.csv"


def fit_beta(draw: int) -> float:
    """A transmission rate for one draw (deterministic per draw)."""
    return 0.2 + 0.1 * random.Random(draw).random()


def forecast(location_id: int, days: int = 14) -> list[float]:
    """A small epidemic curve for one location."""
    if location_id < 0:
        raise ValueError(f"location_id must be a location, got {location_id}")
    growth = 0.05 + (location_id % 7) / 100
    return [round(100 * math.exp(growth * day), 3) for day in range(days)]
