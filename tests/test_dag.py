"""Tests for the generic DAG: ordering, cycles, targets and the bounded-parallel walk."""

from __future__ import annotations

import asyncio

import pytest

from cmlplan.dag import CycleError, Graph, WalkResult, walk


def _graph(*edges: tuple[str, str]) -> Graph[str]:
    graph: Graph[str] = Graph()
    for node, dep in edges:
        graph.add_edge(node, dep)
    return graph


def _diamond() -> Graph[str]:
    # d depends on b and c, both depend on a; e is independent.
    graph = _graph(("b", "a"), ("c", "a"), ("d", "b"), ("d", "c"))
    graph.add_node("e")
    return graph


def test_topological_order_puts_dependencies_first_and_breaks_ties_by_name() -> None:
    graph: Graph[str] = Graph()
    for node in ["z", "y", "x"]:
        graph.add_node(node)
    graph.add_edge("app", "z")
    graph.add_edge("app", "x")
    assert graph.topological_order() == ["x", "y", "z", "app"]


def test_topological_order_is_deterministic_regardless_of_insertion_order() -> None:
    edges = [("b", "a"), ("c", "a"), ("d", "b"), ("d", "c")]
    assert _graph(*edges).topological_order() == _graph(*reversed(edges)).topological_order()
    assert _graph(*edges).topological_order() == ["a", "b", "c", "d"]


def test_nodes_and_neighbours() -> None:
    graph = _diamond()
    assert set(graph.nodes) == {"a", "b", "c", "d", "e"}
    assert len(graph) == 5 and "a" in graph and "zz" not in graph
    assert graph.dependencies_of("d") == {"b", "c"}
    assert graph.dependents_of("a") == {"b", "c"}
    assert graph.dependencies_of("e") == frozenset()


def test_cycle_error_names_the_cycle() -> None:
    graph = _graph(("a", "b"), ("b", "c"), ("c", "a"), ("x", "a"))
    with pytest.raises(CycleError, match=r"^dependency cycle: a -> b -> c -> a$") as info:
        graph.check_acyclic()
    assert info.value.cycle == ["a", "b", "c", "a"]
    with pytest.raises(CycleError, match="a -> b -> c -> a"):
        graph.topological_order()
    assert isinstance(info.value, ValueError)


def test_self_loop_is_a_cycle() -> None:
    with pytest.raises(CycleError, match=r"a -> a$"):
        _graph(("a", "a")).check_acyclic()


def test_cycle_detection_survives_deep_chains() -> None:
    graph: Graph[int] = Graph()
    for i in range(20_000):
        graph.add_edge(i, i + 1)
    graph.check_acyclic()
    graph.add_edge(20_000, 0)
    with pytest.raises(CycleError, match=r"^dependency cycle: 0 -> 1 -> 2 -> "):
        graph.check_acyclic()


def test_ancestors_include_the_targets_and_their_transitive_dependencies() -> None:
    graph = _diamond()
    assert graph.ancestors(["b"]) == {"a", "b"}
    assert graph.ancestors(["d"]) == {"a", "b", "c", "d"}
    assert graph.ancestors(["b", "e"]) == {"a", "b", "e"}
    assert graph.ancestors([]) == set()
    with pytest.raises(KeyError):
        graph.ancestors(["nope"])


def test_reverse_flips_edges_for_destroy_order() -> None:
    graph = _diamond()
    reverse = graph.reverse()
    assert reverse.dependencies_of("a") == {"b", "c"}
    assert reverse.topological_order() == ["d", "b", "c", "a", "e"]
    assert graph.dependencies_of("a") == frozenset()  # the original is untouched


def test_walk_visits_each_node_after_its_dependencies() -> None:
    graph = _diamond()
    visited: list[str] = []

    async def visit(node: str) -> None:
        for dep in graph.dependencies_of(node):
            assert dep in visited
        await asyncio.sleep(0)
        visited.append(node)

    result = asyncio.run(walk(graph, visit, parallelism=4))
    assert sorted(visited) == ["a", "b", "c", "d", "e"]
    assert sorted(result.succeeded) == sorted(visited)
    assert result.ok


def test_walk_with_parallelism_one_follows_topological_order() -> None:
    graph = _diamond()
    visited: list[str] = []

    async def visit(node: str) -> None:
        visited.append(node)

    asyncio.run(walk(graph, visit, parallelism=1))
    assert visited == graph.topological_order()


@pytest.mark.parametrize("parallelism", [1, 3, 7])
def test_walk_never_exceeds_parallelism(parallelism: int) -> None:
    graph: Graph[int] = Graph()
    for i in range(60):
        graph.add_node(i)
        if i >= 20:
            graph.add_edge(i, i - 20)
    running = 0
    peak = 0

    async def visit(node: int) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.001 * (node % 3))
        running -= 1

    result = asyncio.run(walk(graph, visit, parallelism=parallelism))
    assert len(result.succeeded) == 60
    assert peak == parallelism


def test_walk_failure_skips_dependents_and_runs_independent_branches() -> None:
    # a <- b <- c, a <- d; x <- y independent; b fails.
    graph = _graph(("b", "a"), ("c", "b"), ("d", "a"), ("y", "x"))

    async def visit(node: str) -> None:
        await asyncio.sleep(0.01 if node == "y" else 0)
        if node == "b":
            raise RuntimeError("boom")

    result = asyncio.run(walk(graph, visit, parallelism=2))
    assert set(result.succeeded) == {"a", "d", "x", "y"}
    assert list(result.failed) == ["b"]
    assert str(result.failed["b"]) == "boom"
    assert result.skipped == {"c": "b"}
    assert result.not_started == []
    assert not result.ok


def test_walk_skip_records_the_blocking_dependency_and_root_cause() -> None:
    graph = _graph(("b", "a"), ("c", "b"), ("c", "z"))

    async def visit(node: str) -> None:
        if node == "a":
            raise ValueError("a broke")

    result = asyncio.run(walk(graph, visit, parallelism=4))
    assert result.skipped == {"b": "a", "c": "b"}
    assert result.root_cause("c") == "a"
    assert "z" in result.succeeded


def test_walk_lets_in_flight_work_finish_when_a_sibling_fails() -> None:
    graph: Graph[str] = Graph()
    graph.add_node("slow")
    graph.add_node("bad")
    finished: list[str] = []

    async def visit(node: str) -> None:
        if node == "bad":
            raise RuntimeError("bad")
        await asyncio.sleep(0.05)
        finished.append(node)

    result = asyncio.run(walk(graph, visit, parallelism=2))
    assert finished == ["slow"]
    assert result.succeeded == ["slow"] and "bad" in result.failed


def test_stop_event_starts_nothing_new_but_lets_in_flight_finish() -> None:
    # a and b run first; c, d depend on a; e is independent but waits for a free slot.
    graph = _graph(("c", "a"), ("d", "a"))
    graph.add_node("b")
    graph.add_node("e")
    started: list[str] = []

    async def main() -> WalkResult[str]:
        stop = asyncio.Event()

        async def visit(node: str) -> None:
            started.append(node)
            await asyncio.sleep(0.01)
            if node == "a":
                stop.set()  # Ctrl-C arrives while a and b are in flight
            await asyncio.sleep(0.02)

        return await walk(graph, visit, parallelism=2, stop=stop)

    result = asyncio.run(main())
    assert started == ["a", "b"]
    assert sorted(result.succeeded) == ["a", "b"]
    assert result.not_started == ["c", "d", "e"]
    assert not result.ok


def test_walk_refuses_a_cycle_before_visiting_anything() -> None:
    visited: list[str] = []

    async def visit(node: str) -> None:
        visited.append(node)

    with pytest.raises(CycleError):
        asyncio.run(walk(_graph(("a", "b"), ("b", "a"), ("c", "d")), visit, parallelism=2))
    assert visited == []


def test_walk_rejects_zero_parallelism_and_handles_empty_graph() -> None:
    async def visit(node: str) -> None:
        return None

    with pytest.raises(ValueError, match="parallelism"):
        asyncio.run(walk(Graph(), visit, parallelism=0))
    assert asyncio.run(walk(Graph(), visit, parallelism=3)).ok


def test_cancelling_the_walk_cancels_in_flight_visits() -> None:
    cancelled: list[str] = []

    async def visit(node: str) -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.append(node)
            raise

    graph = _graph(("b", "a"))
    graph.add_node("c")

    async def main() -> None:
        task = asyncio.create_task(walk(graph, visit, parallelism=4))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert sorted(cancelled) == ["a", "c"]


def test_walk_of_30k_nodes_visits_each_once() -> None:
    """Speed is bench/dag_walk.py's business (a ratio, never a timed assert); this checks the result."""
    graph: Graph[int] = Graph()
    for i in range(30_000):
        graph.add_node(i)
        if i:
            graph.add_edge(i, i // 2)  # a wide tree
    chain: Graph[int] = Graph()
    for i in range(30_000):
        chain.add_edge(i + 1, i)  # a long chain: worst case for waking idle workers

    async def visit(node: int) -> None:
        return None

    tree_result = asyncio.run(walk(graph, visit, parallelism=16))
    chain_result = asyncio.run(walk(chain, visit, parallelism=1_000))
    assert len(tree_result.succeeded) == 30_000 and tree_result.ok
    assert len(chain_result.succeeded) == 30_001 and chain_result.ok
