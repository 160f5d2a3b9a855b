"""In-memory node states and readiness, kept compact for groups.

States live in one ``bytearray`` (a byte per node). A unit becomes ready when
all its upstream (node, edge) pairs are done; a million-element group is then
handed out lazily through a cursor, never as a million queue entries. Whole
ranges change state with ``bytes.translate``, so releasing or failing a group
costs one C call, not a Python loop.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable, Iterator, Sequence

from gristmill.graph.resolved import Graph
from gristmill.states import NodeState

PENDING = int(NodeState.PENDING)
READY = int(NodeState.READY)
DONE = int(NodeState.DONE)
UPSTREAM_FAILED = int(NodeState.UPSTREAM_FAILED)

_TO_READY = bytes(READY if i == PENDING else i for i in range(256))
_TO_UF = bytes(UPSTREAM_FAILED if i in (PENDING, READY) else i for i in range(256))
#: Runs of nodes a group release (PENDING) or an upstream failure (PENDING, READY) changes.
_PENDING_RUNS = re.compile(b"[\\x%02x]+" % PENDING)
_WAITING_RUNS = re.compile(b"[\\x%02x\\x%02x]+" % (PENDING, READY))


class Cursor:
    """Hands out the members of one released unit, in element order.

    Over an id range it jumps straight to the next READY node with ``bytearray.find``
    (a C scan), so a resumed group whose nodes are mostly DONE costs no Python step
    per finished node.
    """

    __slots__ = ("_it", "_next", "_states", "_stop", "peeked", "unit")

    def __init__(self, unit: int, members: Sequence[int], states: bytearray) -> None:
        self.unit = unit
        self.peeked: int | None = None
        self._it: Iterator[int] | None = None
        self._states = states
        self._next = self._stop = 0
        if isinstance(members, range) and members.step == 1:
            self._next, self._stop = members.start, members.stop
        else:
            self._it = iter(members)

    def peek(self) -> int | None:
        if self.peeked is None:
            if self._it is not None:
                self.peeked = next(self._it, None)
            elif self._next < self._stop:
                found = self._states.find(READY, self._next, self._stop)
                self._next = self._stop if found < 0 else found + 1
                self.peeked = None if found < 0 else found
        return self.peeked

    def take(self) -> None:
        self.peeked = None


class Tracker:
    """Node states plus the bookkeeping that decides which nodes may run next."""

    def __init__(self, graph: Graph, states: bytearray) -> None:
        self.graph = graph
        self.states = states
        self.remaining = list(graph.upstream_count)
        self.released = [False] * len(graph.members)
        self.blocked = [False] * len(graph.members)
        self.cursors: deque[Cursor] = deque()
        self.retry: deque[int] = deque()
        #: (lo, hi, state) and (node, state) transitions not yet written to the store
        self.range_changes: list[tuple[int, int, int]] = []
        self.single_changes: list[tuple[int, int]] = []

    # -- start ----------------------------------------------------------------------

    def start(self) -> None:
        """Account for nodes already DONE (resume), then release what is ready."""
        graph = self.graph
        for unit, members in enumerate(graph.members):
            if isinstance(members, range):
                done = self.states[members.start : members.stop].count(DONE)
            else:
                done = sum(1 for n in set(members) if self.states[n] == DONE)
            if done:
                for d in graph.downstream[unit]:
                    self.remaining[d] -= done
        for node, units in graph.element_downstream.items():
            if self.states[node] == DONE:
                for d in units:
                    self.remaining[d] -= 1
        for unit in graph.order:
            if self.remaining[unit] == 0:
                self._release(unit)

    # -- transitions ---------------------------------------------------------------------

    def set(self, node: int, state: NodeState) -> None:
        self.states[node] = state
        self.single_changes.append((node, int(state)))

    def _release(self, unit: int) -> None:
        if self.released[unit] or self.blocked[unit]:
            return
        self.released[unit] = True
        members = self.graph.members[unit]
        if isinstance(members, range):
            lo, hi = members.start, members.stop
            if hi > lo:
                before = self.states[lo:hi]
                self.states[lo:hi] = before.translate(_TO_READY)
                self._record_runs(before, _PENDING_RUNS, lo, READY)
        else:
            for n in members:
                if self.states[n] == PENDING and self._all_units_released(n):
                    self.set(n, NodeState.READY)
        self.cursors.append(Cursor(unit, members, self.states))

    def _record_runs(
        self, before: bytearray, runs: re.Pattern[bytes], offset: int, state: int
    ) -> None:
        """Record the change of the nodes that matched ``runs`` as (lo, hi, state) ranges.

        A fresh group is one range; on resume a group also holds DONE or adopted
        nodes, which the store must not see overwritten.
        """
        if runs.fullmatch(before):
            self.range_changes.append((offset, offset + len(before) - 1, state))
            return
        for match in runs.finditer(before):
            self.range_changes.append((offset + match.start(), offset + match.end() - 1, state))

    def _all_units_released(self, node: int) -> bool:
        if node not in self.graph.aliases:
            return True
        return all(self.released[u] for u in self.graph.units_of(node))

    def node_done(self, node: int) -> None:
        """Mark DONE and release whatever waited only for it."""
        self.set(node, NodeState.DONE)
        graph = self.graph
        for unit in graph.units_of(node):
            for d in graph.downstream[unit]:
                self._decrement(d)
        for d in graph.element_downstream.get(node, ()):
            self._decrement(d)

    def _decrement(self, unit: int) -> None:
        self.remaining[unit] -= 1
        if self.remaining[unit] == 0:
            self._release(unit)

    def node_failed(self, node: int, state: NodeState = NodeState.FAILED) -> int:
        """Mark a final failure and everything downstream UPSTREAM_FAILED; return that count."""
        self.set(node, state)
        return self._propagate(node)

    def _propagate(self, node: int) -> int:
        graph = self.graph
        stack: list[int] = []
        for unit in graph.units_of(node):
            stack.extend(graph.downstream[unit])
        stack.extend(graph.element_downstream.get(node, ()))
        count = 0
        while stack:
            unit = stack.pop()
            if self.blocked[unit] or self.released[unit]:
                continue
            self.blocked[unit] = True
            members = graph.members[unit]
            if isinstance(members, range):
                lo, hi = members.start, members.stop
                before = self.states[lo:hi]
                count += before.count(PENDING) + before.count(READY)
                self.states[lo:hi] = before.translate(_TO_UF)
                self._record_runs(before, _WAITING_RUNS, lo, UPSTREAM_FAILED)
                stack.extend(graph.downstream[unit])
                if graph.element_downstream:
                    for n in members:
                        stack.extend(graph.element_downstream.get(n, ()))
                for n, others in graph.aliases.items():  # members also in other units:
                    if lo <= n < hi:  # what waits on those units waits on them too
                        for other in others:
                            stack.extend(graph.downstream[other])
            else:
                for n in members:
                    if self.states[n] in (PENDING, READY):
                        self.set(n, NodeState.UPSTREAM_FAILED)
                        count += 1
                        for u in graph.units_of(n):
                            stack.extend(graph.downstream[u])
                        stack.extend(graph.element_downstream.get(n, ()))
        return count

    # -- handing out work --------------------------------------------------------------------

    def next_ready(self, full: Callable[[int], bool]) -> Iterator[int]:
        """READY nodes to dispatch, retries first, skipping units whose task is ``full``.

        A node handed out is no longer queued: the caller dispatches it. A full task's
        group is skipped without expanding it.
        """
        for _ in range(len(self.retry)):
            node = self.retry.popleft()
            if self.states[node] != READY:
                continue
            if full(node):
                self.retry.append(node)
                continue
            yield node
        index = 0
        while index < len(self.cursors):
            cursor = self.cursors[index]
            peeked = cursor.peek()
            if peeked is None:
                del self.cursors[index]
                continue
            if self.states[peeked] != READY or not self._all_units_released(peeked):
                cursor.take()
                continue
            if full(peeked):
                index += 1
                continue
            cursor.take()
            yield peeked

    def requeue(self, node: int) -> None:
        """A failed attempt that will be retried goes back to READY."""
        self.set(node, NodeState.READY)
        self.retry.append(node)

    def drain_changes(self) -> tuple[list[tuple[int, int]], list[tuple[int, int, int]]]:
        singles, ranges = self.single_changes, self.range_changes
        self.single_changes, self.range_changes = [], []
        return singles, ranges

    def counts(self) -> dict[str, int]:
        return {
            s.name: c for s in NodeState if (c := self.states.count(int(s)))
        }
