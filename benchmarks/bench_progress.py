"""What watching a run costs the engine: a 100,000-node run with and without live progress.

The run goes through the real runner and engine with bench_engine's ``InstantBackend``
(every job succeeds when submitted), so the time is the engine's own. It runs three
ways, each in a process of its own, alternating, fastest of ``--repeat``:

- no observer (the floor);
- the terminal display (``RichProgress``, a snapshot and a redraw every 0.5 s) drawing
  into an in-memory console;
- a snapshot every engine cycle (interval 0): the worst case, to show what a snapshot
  itself costs.

Target: the terminal display costs at most 2 % over the floor. Prints a table and
writes benchmarks/results/progress.json; it never fails on times.

    PYTHONPATH=src python benchmarks/bench_progress.py [--nodes 100000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_engine import InstantBackend
from peers.gm_flows import fan

RESULTS = Path(__file__).parent / "results"
TARGET_RATIO = 1.02


class EveryCycle:
    """An observer that takes every snapshot the engine offers and renders the line."""

    interval = 0.0

    def __init__(self) -> None:
        self.snapshots = 0

    def update(self, snapshot: Any) -> None:
        from gristmill.cli.progress import line

        self.snapshots += 1
        line(snapshot)

    def failed(self, failure: Any) -> None:
        raise AssertionError(failure)


def child(kind: str, nodes: int) -> dict[str, Any]:
    from rich.console import Console

    from gristmill.cli.progress import RichProgress
    from gristmill.engine.runner import run_workflow

    wf = fan(nodes - 1)
    observer: Any = None
    if kind == "rich":
        observer = RichProgress(console=Console(file=io.StringIO(), force_terminal=True,
                                                width=120))
    elif kind == "every":
        observer = EveryCycle()
    with tempfile.TemporaryDirectory() as root:
        start = time.perf_counter()
        if kind == "rich":
            with observer:
                result = run_workflow(wf, backend=InstantBackend.name, run_dir=root,
                                      observer=observer)
        else:
            result = run_workflow(wf, backend=InstantBackend.name, run_dir=root,
                                  observer=observer)
        seconds = time.perf_counter() - start
    assert result.counts == {"DONE": nodes}, result.counts
    snapshots = observer.snapshots if isinstance(observer, EveryCycle) else None
    return {"seconds": seconds, "snapshots": snapshots}


def in_child(kind: str, nodes: int) -> dict[str, Any]:
    env = dict(os.environ)
    src = str(Path(__file__).resolve().parents[1] / "src")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    done = subprocess.run([sys.executable, __file__, "--child", kind, "--nodes", str(nodes)],
                          capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"child {kind} failed:\n{done.stderr[-3000:]}")
    answer: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return answer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--child")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.nodes)))
        return
    best: dict[str, dict[str, Any]] = {}
    for _ in range(args.repeat):
        for kind in ("none", "rich", "every"):
            got = in_child(kind, args.nodes)
            if kind not in best or got["seconds"] < best[kind]["seconds"]:
                best[kind] = got
    floor = best["none"]["seconds"]
    print(f"{'observer':<28}{'seconds':>10}{'ratio':>8}")
    for kind, label in (("none", "none (floor)"), ("rich", "terminal display, 0.5 s"),
                        ("every", "snapshot every cycle")):
        print(f"{label:<28}{best[kind]['seconds']:>10.2f}{best[kind]['seconds'] / floor:>8.3f}")
    ratio = best["rich"]["seconds"] / floor
    print(f"terminal display: x{ratio:.3f} (target <= x{TARGET_RATIO}); "
          f"{best['every']['snapshots']} snapshots in the every-cycle run")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "progress.json").write_text(json.dumps(
        {"nodes": args.nodes, "best": best, "ratio_rich": ratio}, indent=2))


if __name__ == "__main__":
    main()
