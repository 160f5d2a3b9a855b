"""What the engine hands a backend that runs dependencies itself (``Capabilities.dag``).

A scheduler such as jobmon wants the whole graph at once: every task, its upstreams,
how often it may be tried. The engine still owns the states; it hands over every node
left to run whose upstreams are done or handed over in the same batch, in
topological order, each request naming the requests it waits for (``after``).

A node whose upstream is still running from an earlier batch stays PENDING: it is
handed over with the batch that follows that upstream's success, as for any backend.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator

import attrs

from gristmill.backends.base import JobRequest
from gristmill.graph.resolved import Graph
from gristmill.resources import Resources
from gristmill.states import NodeState

PENDING = int(NodeState.PENDING)
READY = int(NodeState.READY)
DONE = int(NodeState.DONE)

#: node -> (request, resources) for one attempt; the engine's own ``_request``.
MakeRequest = Callable[[int], tuple[JobRequest, Resources]]


def _waiting(graph: Graph, states: bytearray, unit: int) -> Iterator[tuple[int, int]]:
    """(element, node) of a unit's members that are PENDING or READY, in element order."""
    members = graph.members[unit]
    if isinstance(members, range):
        lo = members.start
        window = states[members.start : members.stop]
        for offset, state in enumerate(window):
            if state in (PENDING, READY):
                yield offset, lo + offset
        return
    for element, node in enumerate(members):
        if states[node] in (PENDING, READY):
            yield element, node


def dag_batch(
    graph: Graph, states: bytearray, ready: Collection[int], make_request: MakeRequest,
    max_attempts: Callable[[int], int],
) -> list[tuple[int, JobRequest, Resources]]:
    """Every node that can be handed over now, with ``after`` and ``max_attempts`` set.

    ``ready`` are the nodes the tracker released (all upstreams DONE). A PENDING node
    joins when each of its upstreams is DONE or already in the batch; a READY node
    the tracker did not hand out yet (a unit it aliases is not released) waits.
    Cost: one pass over the nodes of the units left to run, done once per batch.
    """
    batch: dict[int, tuple[JobRequest, Resources]] = {}
    order: list[int] = []
    for unit in graph.order:
        for element, node in _waiting(graph, states, unit):
            if node in batch:
                continue  # an alias met again in another unit
            if states[node] == READY and node not in ready:
                continue
            ups = list(graph.upstream_nodes(unit, element))
            if any(states[u] != DONE and u not in batch for u in ups):
                continue
            request, resources = make_request(node)
            after = tuple(batch[u][0].key for u in ups if u in batch)
            request = attrs.evolve(request, after=after, max_attempts=max_attempts(node))
            batch[node] = (request, resources)
            order.append(node)
    return [(node, *batch[node]) for node in order]


def live_descendants(graph: Graph, node: int, live: Collection[int]) -> list[int]:
    """Nodes in ``live`` downstream of ``node``: handed over, now never to run."""
    stack = [d for u in graph.units_of(node) for d in graph.downstream[u]]
    stack.extend(graph.element_downstream.get(node, ()))
    seen: set[int] = set()
    found: dict[int, None] = {}
    while stack:
        unit = stack.pop()
        if unit in seen:
            continue
        seen.add(unit)
        for member in graph.members[unit]:
            if member in live:
                found[member] = None
            stack.extend(graph.element_downstream.get(member, ()))
            for other in graph.aliases.get(member, ()):
                stack.extend(graph.downstream[other])
        stack.extend(graph.downstream[unit])
    return list(found)


#: Seconds without a refusal after which a learned submit cap is raised by one: the jobs
#: that filled the limit with ours (the user's other runs) may have ended since.
PROBE_AFTER = 60.0
#: Longest pause after a submit limit's refusal before the engine tries again.
LIMIT_PAUSE_MAX = 30.0


@attrs.define
class SubmitCap:
    """How many jobs the engine may hold at once under the scheduler's submit limit.

    A scheduler that caps how many jobs a user holds queued or running (Slurm's
    ``MaxSubmitJobs``) refuses any submission past it. The engine never counts such a
    refusal as a failure: it holds at most ``limit`` (what the backend read at start)
    and, when refused anyway (the limit was unknown, or the user's other jobs count
    too), at most what it held plus half the refused batch (``learned``): the limit lies
    below held + batch, and halving finds it in a few refusals. The cap rises by one
    after each :data:`PROBE_AFTER` seconds without a refusal. Jobs ending make room, so
    the run goes on submitting as they end.
    """

    limit: int | None = None
    learned: int | None = None
    refusals: int = 0  # consecutive, for the pause
    _since: float = 0.0  # when ``learned`` was last set or raised

    def cap(self, now: float) -> int | None:
        """The most jobs to hold now (None: no submit limit known)."""
        if self.learned is not None and now - self._since >= PROBE_AFTER:
            self.learned += 1
            self._since = now
            if self.limit is not None and self.learned >= self.limit:
                self.learned = None  # back to the limit read at start
        caps = [c for c in (self.limit, self.learned) if c is not None]
        return min(caps) if caps else None

    def refused(self, held: int, tried: int, limit: int | None, now: float) -> float:
        """Record a refusal of ``tried`` jobs while ``held`` were live; the seconds to pause."""
        if limit is not None:
            self.limit = limit if self.limit is None else min(self.limit, limit)
        guess = max(1, held + tried // 2)
        self.learned = guess if self.learned is None else min(self.learned, guess)
        self._since = now
        self.refusals += 1
        return float(min(LIMIT_PAUSE_MAX, 2.0**self.refusals))

    def accepted(self) -> None:
        """A submission went through: the next refusal pauses briefly again."""
        self.refusals = 0
