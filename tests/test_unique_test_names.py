"""Every test function has a name of its own, so ``-k NAME`` picks exactly one test (issue 11)."""

import ast
from collections import defaultdict
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def test_no_two_test_functions_share_a_name() -> None:
    where: dict[str, list[str]] = defaultdict(list)
    for path in sorted(TESTS.rglob("test_*.py")):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test_"):
                where[node.name].append(str(path.relative_to(TESTS)))
            elif isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
                for item in node.body:
                    if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef) and item.name.startswith("test_"):
                        where[f"{node.name}.{item.name}"].append(str(path.relative_to(TESTS)))
    shared = {name: files for name, files in where.items() if len(files) > 1}
    assert not shared, "test names used more than once (rename one, e.g. with _on_docker): " + "; ".join(
        f"{name} in {', '.join(files)}" for name, files in sorted(shared.items())
    )
