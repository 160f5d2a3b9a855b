"""Benchmark: recording, resolving and persisting large workflows, against plain floors.

Run with ``python benchmarks/bench_record.py`` (no pytest). Each shape is built
once with gristmill and once as a plain dict fed to ``graphlib.TopologicalSorter``
(the floor, measured in the same run), and the table shows the ratio. The ratio
compares like with like: the floor builds every node and edge and orders them, so
gristmill's side is recording *and* resolving the graph (node ids, order, cycle
check, every node's identity), what a run does before it can start anything.
Recording alone is timed too, against its target only: a ``map`` records one lazy
group whatever its size, work of another kind than sorting a million nodes. The map
is then persisted into a run store (``Store.write_dag``, what a new run does before
any task starts) against a bare ``executemany`` of the same rows into a plain
SQLite table. Results go to ``benchmarks/results/record.json``; targets are
printed, never enforced.
"""

from __future__ import annotations

import argparse
import gc
import graphlib
import json
import platform
import resource
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import click

import gristmill as gm
from gristmill.engine.plan import EngineConfig, Plan
from gristmill.spec.load import Spec
from gristmill.store.db import Store

MAP_SIZE = 1_000_000
CHAIN_SIZE = 100_000
TARGET_SECONDS = 2.0
TARGET_MAP_MB = 300.0
TARGET_PERSIST_SECONDS = 10.0


@gm.task(mem="1G", runtime="10m")
@click.option("--output-version", required=True)
@click.option("--draw", type=int, required=True)
def fit(output_version: str, draw: int) -> None:
    """Stand-in for a per-draw fit."""


@gm.task(mem="2G", runtime="1h")
@click.option("--output-version", required=True)
def validate(output_version: str) -> None:
    """Stand-in for the fan-in."""


@gm.task
@click.option("--item", type=int, required=True)
def step(item: int) -> None:
    """Stand-in for one of many individually called nodes."""


@gm.workflow
def big_map(n: int) -> None:
    fits = fit.map(output_version="v1", draw=range(n))
    validate(output_version="v1", after=fits)


@gm.workflow
def many_calls(n: int) -> None:
    previous = step(item=0)
    for i in range(1, n):
        previous = step(item=i, after=previous)


def rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB (ru_maxrss is KiB on Linux)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (2**20 if sys.platform == "darwin" else 2**10)


def _recorded_len(flow: Any, n: int) -> Any:
    """Record the workflow and resolve its graph (``len`` does); return the workflow."""
    wf = flow(n)
    len(wf)
    return wf


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    gc.collect()
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def floor_map(n: int) -> int:
    graph: dict[Any, list[Any]] = {("fit", i): [] for i in range(n)}
    graph["validate"] = [("fit", i) for i in range(n)]
    return len(list(graphlib.TopologicalSorter(graph).static_order()))


def floor_chain(n: int) -> int:
    graph = {i: [i - 1] if i else [] for i in range(n)}
    return len(list(graphlib.TopologicalSorter(graph).static_order()))


def persist(wf: Any) -> float:
    """Seconds to write the workflow's DAG into a new run store, as a new run does."""
    # The plan's store rows alone: its preflight would refuse tasks defined in __main__.
    plan = Plan(workflow=wf, graph=wf.graph(), spec=Spec.empty(), units=(),
                config=EngineConfig(), backend="local", backend_options={}, requested={})
    with tempfile.TemporaryDirectory() as tmp:
        store = Store.create(Path(tmp), {"function": wf.function, "args": wf.args})
        try:
            seconds, _ = timed(lambda: store.write_dag(
                plan.unit_rows(), plan.identities, plan.unit_of_nodes()
            ))
        finally:
            store.close()
    return seconds


def floor_persist(identities: list[str]) -> float:
    """Seconds for a bare executemany of (id, identity, unit) rows into a plain table."""
    with tempfile.TemporaryDirectory() as tmp:
        conn = sqlite3.connect(Path(tmp) / "floor.db", isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")  # as the run store
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("CREATE TABLE nodes (id INTEGER PRIMARY KEY, identity TEXT, unit INTEGER)")
        start = time.perf_counter()
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO nodes VALUES (?, ?, 0)", enumerate(identities))
        conn.execute("COMMIT")
        seconds = time.perf_counter() - start
        conn.close()
    return seconds


def resolved(wf: Any) -> list[str]:
    """Resolve the recorded graph and compute every node's identity (a run's first step)."""
    return wf.graph().identities()


def measure(map_size: int, chain_size: int) -> dict[str, Any]:
    # (a) one map of map_size nodes plus a fan-in; measured first so the peak RSS is its own.
    rss_before = rss_mb()
    map_seconds, wf = timed(lambda: _recorded_len(big_map, map_size))
    map_rss = rss_mb()
    assert len(wf) == map_size + 1, len(wf)
    # What a run needs next: the graph resolved and every node's identity (the store's key).
    identities_seconds, identities = timed(partial(resolved, wf))
    identities_rss = rss_mb()
    assert len(set(identities)) == map_size + 1
    persist_seconds = persist(wf)
    floor_persist_seconds = floor_persist(identities)
    del wf, identities
    floor_map_seconds, n = timed(lambda: floor_map(map_size))
    assert n == map_size + 1
    # (b) chain_size individually called nodes, each after the previous one.
    chain_seconds, chain = timed(lambda: _recorded_len(many_calls, chain_size))
    assert len(chain) == chain_size, len(chain)
    chain_resolve_seconds, chain_ids = timed(partial(resolved, chain))
    assert len(set(chain_ids)) == chain_size
    del chain, chain_ids
    floor_chain_seconds, n = timed(lambda: floor_chain(chain_size))
    assert n == chain_size
    map_total = map_seconds + identities_seconds
    chain_total = chain_seconds + chain_resolve_seconds
    return {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "map": {
            "nodes": map_size + 1,
            "seconds": round(map_seconds, 3),  # recording alone (lazy), against the target
            "peak_rss_mb": round(map_rss, 1),
            "rss_before_mb": round(rss_before, 1),
            "target_seconds": TARGET_SECONDS,
            "target_rss_mb": TARGET_MAP_MB,
            "identities_seconds": round(identities_seconds, 3),
            "identities_peak_rss_mb": round(identities_rss, 1),
            "resolved_seconds": round(map_total, 3),  # record + resolve: the floor's work
            "floor_seconds": round(floor_map_seconds, 3),
            "ratio": round(map_total / floor_map_seconds, 3),
        },
        "persist": {
            "nodes": map_size + 1,
            "seconds": round(persist_seconds, 3),
            "floor_seconds": round(floor_persist_seconds, 3),
            "ratio": round(persist_seconds / floor_persist_seconds, 3),
            "target_seconds": TARGET_PERSIST_SECONDS,
        },
        "calls": {
            "nodes": chain_size,
            "seconds": round(chain_seconds, 3),  # recording alone, against the target
            "target_seconds": TARGET_SECONDS,
            "identities_seconds": round(chain_resolve_seconds, 3),
            "resolved_seconds": round(chain_total, 3),
            "floor_seconds": round(floor_chain_seconds, 3),
            "ratio": round(chain_total / floor_chain_seconds, 3),
        },
    }


def table(results: dict[str, Any]) -> str:
    rows = [
        ("shape", "what is timed", "nodes", "gristmill s", "floor s", "ratio", "peak RSS MB",
         "target"),
    ]
    m, p, c = results["map"], results["persist"], results["calls"]
    rows.append((
        "map + fan-in", "record (one lazy group)", f"{m['nodes']:,}", f"{m['seconds']:.3f}",
        "", "", f"{m['peak_rss_mb']:.0f}",
        f"<= {m['target_seconds']:g} s, <= {m['target_rss_mb']:g} MB",
    ))
    rows.append((
        "", "record + resolve", f"{m['nodes']:,}", f"{m['resolved_seconds']:.3f}",
        f"{m['floor_seconds']:.3f} (graphlib)", f"{m['ratio']:.2f}",
        f"{m['identities_peak_rss_mb']:.0f}", "",
    ))
    rows.append((
        "", "persist into the store", f"{p['nodes']:,}", f"{p['seconds']:.3f}",
        f"{p['floor_seconds']:.3f} (SQLite)", f"{p['ratio']:.2f}", "",
        f"<= {p['target_seconds']:g} s",
    ))
    rows.append((
        "calls + after=", "record", f"{c['nodes']:,}", f"{c['seconds']:.3f}", "", "", "",
        f"<= {c['target_seconds']:g} s",
    ))
    rows.append((
        "", "record + resolve", f"{c['nodes']:,}", f"{c['resolved_seconds']:.3f}",
        f"{c['floor_seconds']:.3f} (graphlib)", f"{c['ratio']:.2f}", "", "",
    ))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows]
    lines.append("ratio: gristmill / floor for the same result: every node and edge known "
                 "and in order (persist: the same rows written)")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--map-size", type=int, default=MAP_SIZE)
    parser.add_argument("--calls", type=int, default=CHAIN_SIZE)
    parser.add_argument(
        "--output", type=Path, default=Path(__file__).parent / "results" / "record.json"
    )
    options = parser.parse_args()
    results = measure(options.map_size, options.calls)
    sys.stdout.write(table(results) + "\n")
    options.output.parent.mkdir(parents=True, exist_ok=True)
    options.output.write_text(json.dumps(results, indent=2) + "\n")
    sys.stdout.write(f"wrote {options.output}\n")


if __name__ == "__main__":
    main()
