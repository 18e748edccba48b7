"""A generic dependency graph and a bounded-parallel async walk over it.

The planner and the engine both order work by dependencies; keeping the graph here, free of any
cmlplan import, means it can be tested (and reasoned about) without specs, state or providers.
Edges point from a node to what it depends on, so dependencies are visited first.
"""

from __future__ import annotations

import asyncio
import heapq
from collections import deque
from collections.abc import Awaitable, Callable, Hashable, Iterable, Iterator, KeysView
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T", bound=Hashable)


class CycleError(ValueError):
    """The graph has a dependency cycle; the message names one, like ``a -> b -> a``."""

    def __init__(self, cycle: list[Hashable]) -> None:
        self.cycle = cycle
        super().__init__("dependency cycle: " + " -> ".join(str(node) for node in cycle))


class Graph(Generic[T]):
    """A directed graph of hashable nodes where ``add_edge(a, b)`` means *a depends on b*.

    Adjacency is kept in insertion-ordered dicts so every traversal is deterministic.
    """

    def __init__(self) -> None:
        self._deps: dict[T, dict[T, None]] = {}
        self._dependents: dict[T, dict[T, None]] = {}

    def add_node(self, node: T) -> None:
        """Add ``node`` (no-op if present)."""
        if node not in self._deps:
            self._deps[node] = {}
            self._dependents[node] = {}

    def add_edge(self, node: T, depends_on: T) -> None:
        """Record that ``node`` depends on ``depends_on``, adding either node if missing."""
        self.add_node(node)
        self.add_node(depends_on)
        self._deps[node][depends_on] = None
        self._dependents[depends_on][node] = None

    @property
    def nodes(self) -> KeysView[T]:
        """All nodes, in insertion order (a live read-only view)."""
        return self._deps.keys()

    def __len__(self) -> int:
        return len(self._deps)

    def __contains__(self, node: object) -> bool:
        return node in self._deps

    def __iter__(self) -> Iterator[T]:
        return iter(self._deps)

    def dependencies_of(self, node: T) -> frozenset[T]:
        """Direct dependencies of ``node``; ``KeyError`` if it is not in the graph."""
        return frozenset(self._deps[node])

    def dependents_of(self, node: T) -> frozenset[T]:
        """Nodes that directly depend on ``node``; ``KeyError`` if it is not in the graph."""
        return frozenset(self._dependents[node])

    def ancestors(self, nodes: Iterable[T]) -> set[T]:
        """``nodes`` plus everything they transitively depend on (what ``-target`` must include).

        Raises ``KeyError`` naming the first node not in the graph.
        """
        seen: set[T] = set()
        stack: list[T] = []
        for node in nodes:
            if node not in self._deps:
                raise KeyError(node)
            if node not in seen:
                seen.add(node)
                stack.append(node)
        while stack:
            for dep in self._deps[stack.pop()]:
                if dep not in seen:
                    seen.add(dep)
                    stack.append(dep)
        return seen

    def reverse(self) -> Graph[T]:
        """A copy with every edge flipped: dependents come first (the order to destroy in)."""
        flipped: Graph[T] = Graph()
        for node in self._deps:
            flipped.add_node(node)
        for node, deps in self._deps.items():
            for dep in deps:
                flipped.add_edge(dep, node)
        return flipped

    def topological_order(self) -> list[T]:
        """Every node after its dependencies; ties broken by ``str(node)`` so plans are stable.

        Raises ``CycleError`` if the graph has a cycle.
        """
        keys = self._sort_keys()
        remaining = {node: len(deps) for node, deps in self._deps.items()}
        heap = [(keys[node], node) for node, count in remaining.items() if count == 0]
        heapq.heapify(heap)
        order: list[T] = []
        while heap:
            _, node = heapq.heappop(heap)
            order.append(node)
            for dependent in self._dependents[node]:
                remaining[dependent] -= 1
                if remaining[dependent] == 0:
                    heapq.heappush(heap, (keys[dependent], dependent))
        if len(order) != len(self._deps):
            self.check_acyclic()
        return order

    def check_acyclic(self) -> None:
        """Raise ``CycleError`` naming one cycle, if there is any."""
        cycle = self._find_cycle()
        if cycle is not None:
            raise CycleError(cycle)

    def _sort_keys(self) -> dict[T, tuple[str, int]]:
        # The insertion index makes keys unique, so the heap never compares nodes themselves.
        return {node: (str(node), index) for index, node in enumerate(self._deps)}

    def _find_cycle(self) -> list[T] | None:
        """Iterative DFS (no recursion limit); returns ``[a, b, ..., a]`` rotated to start at its least node."""
        keys = self._sort_keys()
        done: set[T] = set()
        for root in sorted(self._deps, key=keys.__getitem__):
            if root in done:
                continue
            path: list[T] = [root]
            on_path: dict[T, int] = {root: 0}
            stack: list[Iterator[T]] = [iter(self._deps[root])]
            while stack:
                for dep in stack[-1]:
                    if dep in on_path:
                        cycle = path[on_path[dep] :]
                        start = min(range(len(cycle)), key=lambda i: keys[cycle[i]])
                        cycle = cycle[start:] + cycle[:start]
                        return [*cycle, cycle[0]]
                    if dep not in done:
                        on_path[dep] = len(path)
                        path.append(dep)
                        stack.append(iter(self._deps[dep]))
                        break
                else:
                    stack.pop()
                    finished = path.pop()
                    del on_path[finished]
                    done.add(finished)
        return None


@dataclass
class WalkResult(Generic[T]):
    """What happened to every node of a walk.

    ``skipped`` maps a node to the dependency that blocked it (itself failed or skipped);
    ``not_started`` holds nodes left alone because the stop event was set.
    """

    succeeded: list[T] = field(default_factory=list)
    failed: dict[T, Exception] = field(default_factory=dict)
    skipped: dict[T, T] = field(default_factory=dict)
    not_started: list[T] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every node succeeded."""
        return not (self.failed or self.skipped or self.not_started)

    def root_cause(self, node: T) -> T:
        """The failed node that a skipped ``node`` is ultimately waiting on."""
        while node in self.skipped:
            node = self.skipped[node]
        return node


class _Walker(Generic[T]):
    """State of one walk: a ready heap fed by completions, drained by ``parallelism`` workers.

    A fixed pool of workers (instead of one task per node) keeps 30k no-op visits fast, and idle
    workers are woken one per newly ready node, so a completion costs O(its dependents).
    """

    def __init__(
        self,
        graph: Graph[T],
        visit: Callable[[T], Awaitable[None]],
        stop: asyncio.Event | None,
    ) -> None:
        self.graph = graph
        self.visit = visit
        self.stop = stop
        self.keys = graph._sort_keys()
        self.remaining = {node: len(graph._deps[node]) for node in graph._deps}
        self.ready = [(self.keys[n], n) for n, count in self.remaining.items() if count == 0]
        heapq.heapify(self.ready)
        self.in_flight = 0
        self.idle: deque[asyncio.Future[None]] = deque()
        self.result: WalkResult[T] = WalkResult()

    def _stopped(self) -> bool:
        return self.stop is not None and self.stop.is_set()

    async def worker(self) -> None:
        while True:
            if self.ready and not self._stopped():
                _, node = heapq.heappop(self.ready)
                await self._run(node)
                continue
            if self.in_flight == 0:
                self._wake(len(self.idle))
                return
            waiter = asyncio.get_running_loop().create_future()
            self.idle.append(waiter)
            await waiter

    async def _run(self, node: T) -> None:
        self.in_flight += 1
        try:
            await self.visit(node)
        except Exception as exc:  # a failed node is a result, not a crash of the walk
            self.in_flight -= 1
            self.result.failed[node] = exc
            self._skip_dependents_of(node)
        else:
            self.in_flight -= 1
            self.result.succeeded.append(node)
            for dependent in self.graph._dependents[node]:
                self.remaining[dependent] -= 1
                if self.remaining[dependent] == 0 and dependent not in self.result.skipped:
                    heapq.heappush(self.ready, (self.keys[dependent], dependent))
        self._wake(0 if self._stopped() else len(self.ready))

    def _skip_dependents_of(self, failed: T) -> None:
        skipped = self.result.skipped
        stack = [failed]
        while stack:
            cause = stack.pop()
            for dependent in self.graph._dependents[cause]:
                if dependent not in skipped:
                    skipped[dependent] = cause
                    stack.append(dependent)

    def _wake(self, count: int) -> None:
        for _ in range(min(count, len(self.idle))):
            waiter = self.idle.popleft()
            if not waiter.done():
                waiter.set_result(None)

    def finish(self) -> WalkResult[T]:
        result = self.result
        accounted = set(result.succeeded) | result.failed.keys() | result.skipped.keys()
        if len(accounted) < len(self.graph):
            result.not_started = [n for n in self.graph.topological_order() if n not in accounted]
        return result


async def walk(
    graph: Graph[T],
    visit: Callable[[T], Awaitable[None]],
    parallelism: int,
    stop: asyncio.Event | None = None,
) -> WalkResult[T]:
    """Visit every node once all its dependencies succeeded, at most ``parallelism`` at once.

    A failing visit (any ``Exception``) skips its transitive dependents while in-flight and
    independent work carries on. Once ``stop`` is set nothing new starts, in-flight visits finish,
    and the rest is reported as ``not_started``. Raises ``CycleError`` before visiting anything if
    the graph has a cycle. Cancelling the walk cancels in-flight visits.
    """
    if parallelism < 1:
        raise ValueError(f"parallelism must be at least 1, got {parallelism}")
    graph.check_acyclic()
    walker = _Walker(graph, visit, stop)
    workers = [asyncio.create_task(walker.worker()) for _ in range(min(parallelism, max(len(graph), 1)))]
    try:
        await asyncio.gather(*workers)
    except BaseException:
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        raise
    return walker.finish()
