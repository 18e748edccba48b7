"""DAG walk cost per node: a wide tree and a long chain at 3k and 30k nodes, side by side.

    .venv/bin/python bench/dag_walk.py

A linear walk keeps the 30k/3k time ratio near 10; a ratio near 100 means a quadratic step (for
example waking every idle worker on each finished node). Printed, never asserted.
"""

from __future__ import annotations

import asyncio
import time

from cmlplan.dag import Graph, walk


def _tree(size: int) -> Graph[int]:
    graph: Graph[int] = Graph()
    for i in range(size):
        graph.add_node(i)
        if i:
            graph.add_edge(i, i // 2)
    return graph


def _chain(size: int) -> Graph[int]:
    graph: Graph[int] = Graph()
    for i in range(size):
        graph.add_edge(i + 1, i)
    return graph


async def _visit(node: int) -> None:
    return None


def _seconds(graph: Graph[int], parallelism: int) -> float:
    start = time.perf_counter()
    result = asyncio.run(walk(graph, _visit, parallelism=parallelism))
    assert result.ok
    return time.perf_counter() - start


def main() -> None:
    print(f"{'shape':<8}{'3k s':>10}{'30k s':>10}{'ratio':>8}{'us/node (30k)':>16}")
    for shape, build, parallelism in (("tree", _tree, 16), ("chain", _chain, 1_000)):
        small, large = _seconds(build(3_000), parallelism), _seconds(build(30_000), parallelism)
        print(f"{shape:<8}{small:>10.3f}{large:>10.3f}{large / small:>8.1f}{large / 30_000 * 1e6:>16.1f}")


if __name__ == "__main__":
    main()
