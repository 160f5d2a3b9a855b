"""A tiny SEIIR model: integration, a one-parameter fit, and CSV helpers.

Pure standard library and deliberately small, so that every task of the
example finishes in a fraction of a second while still doing real work.
Compartments: Susceptible, Exposed, Infectious (two stages), Removed.
"""

from __future__ import annotations

import csv
import math
import random
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import attrs

#: Days of "observed" infections each draw is fitted to.
FIT_DAYS = 60
#: Days each location is forecast.
FORECAST_DAYS = 28
#: Euler sub-steps per day.
STEPS_PER_DAY = 10
#: Population of the synthetic fitting data.
REFERENCE_POPULATION = 1_000_000.0


@attrs.frozen
class Params:
    """Transmission rate and stage rates (per day) of one draw."""

    beta: float
    sigma: float
    gamma1: float
    gamma2: float

    @property
    def r0(self) -> float:
        """Basic reproduction number: beta times the mean time infectious."""
        return self.beta * (1.0 / self.gamma1 + 1.0 / self.gamma2)


@attrs.frozen
class State:
    """Compartment sizes at one moment."""

    s: float
    e: float
    i1: float
    i2: float
    r: float

    @classmethod
    def seeded(cls, population: float, infected: float) -> State:
        """Everyone susceptible except ``infected`` people just exposed."""
        return cls(population - infected, infected, 0.0, 0.0, 0.0)


def simulate(params: Params, start: State, days: int) -> tuple[list[float], State]:
    """Integrate ``days`` days; return new infections per day and the final state."""
    s, e, i1, i2, r = start.s, start.e, start.i1, start.i2, start.r
    n = s + e + i1 + i2 + r
    dt = 1.0 / STEPS_PER_DAY
    daily: list[float] = []
    for _ in range(days):
        new = 0.0
        for _ in range(STEPS_PER_DAY):
            infection = params.beta * s * (i1 + i2) / n * dt
            progression = params.sigma * e * dt
            recovery1 = params.gamma1 * i1 * dt
            recovery2 = params.gamma2 * i2 * dt
            s -= infection
            e += infection - progression
            i1 += progression - recovery1
            i2 += recovery1 - recovery2
            r += recovery2
            new += infection
        daily.append(new)
    return daily, State(s, e, i1, i2, r)


def observed_infections(draw: int) -> list[float]:
    """Synthetic daily infections with draw-specific noise, as input data draws would be."""
    truth = Params(beta=0.55, sigma=0.25, gamma1=0.4, gamma2=0.35)
    curve, _ = simulate(truth, State.seeded(REFERENCE_POPULATION, 50.0), FIT_DAYS)
    rng = random.Random(f"observed-{draw}")
    return [value * math.exp(rng.gauss(0.0, 0.1)) for value in curve]


def sample_rates(draw: int) -> tuple[float, float, float]:
    """Draw-seeded stage rates (sigma, gamma1, gamma2) from uniform priors."""
    rng = random.Random(f"rates-{draw}")
    return rng.uniform(1 / 6, 1 / 3), rng.uniform(1 / 4, 1 / 2), rng.uniform(1 / 4, 1 / 2)


def fit_draw(draw: int) -> tuple[Params, float]:
    """Fit beta for one draw by golden-section search on log-scale error; return (params, rmse)."""
    observed = observed_infections(draw)
    sigma, gamma1, gamma2 = sample_rates(draw)
    start = State.seeded(REFERENCE_POPULATION, 50.0)

    def loss(beta: float) -> float:
        predicted, _ = simulate(Params(beta, sigma, gamma1, gamma2), start, FIT_DAYS)
        return sum(
            (math.log1p(p) - math.log1p(o)) ** 2 for p, o in zip(predicted, observed)
        ) / len(observed)

    low, high = 0.05, 2.0
    ratio = (math.sqrt(5) - 1) / 2
    for _ in range(30):
        a = high - ratio * (high - low)
        b = low + ratio * (high - low)
        if loss(a) < loss(b):
            high = b
        else:
            low = a
    beta = (low + high) / 2
    return Params(beta, sigma, gamma1, gamma2), math.sqrt(loss(beta))


@attrs.frozen
class Location:
    """Location-seeded starting point of a forecast."""

    population: float
    infected: float
    immune: float
    contact: float  # multiplier on beta: distancing, seasonality

    @classmethod
    def of(cls, location_id: int) -> Location:
        rng = random.Random(f"location-{location_id}")
        population = float(rng.randint(200_000, 5_000_000))
        return cls(
            population,
            infected=population * rng.uniform(1e-4, 1e-3),
            immune=population * rng.uniform(0.2, 0.6),
            contact=rng.uniform(0.4, 0.9),
        )

    def start(self) -> State:
        """Today's compartments: the infected split across stages, the immune removed."""
        third = self.infected / 3
        susceptible = self.population - self.infected - self.immune
        return State(susceptible, third, third, third, self.immune)


def quantile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated quantile of a non-empty sequence."""
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    lower = math.floor(position)
    upper = min(lower + 1, len(ordered) - 1)
    return ordered[lower] + (ordered[upper] - ordered[lower]) * (position - lower)


def write_rows(path: Path, header: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    """Write a CSV atomically, so a killed task never leaves half a file behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    tmp.replace(path)


def read_params(path: Path) -> tuple[Params, float]:
    """Read a fit file written by the ``fit`` task; return (params, rmse)."""
    with path.open(newline="") as handle:
        values: Mapping[str, float] = {
            row["parameter"]: float(row["value"]) for row in csv.DictReader(handle)
        }
    try:
        params = Params(values["beta"], values["sigma"], values["gamma1"], values["gamma2"])
        return params, values["rmse"]
    except KeyError as exc:
        raise ValueError(f"{path}: missing parameter {exc}; rerun the fit task for it") from None
