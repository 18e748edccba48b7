"""The serving runtime ships alone: it never imports the control plane, and the replica runtime
(copied into model build venvs) imports only the stdlib plus uvicorn/uvloop/httptools."""

import ast
import sys
from pathlib import Path

SERVING = Path(__file__).resolve().parents[2] / "cmlplan" / "serving"
REPLICA_THIRD_PARTY = {"uvicorn", "uvloop", "httptools"}


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def test_serving_never_imports_the_rest_of_cmlplan():
    for path in SERVING.rglob("*.py"):
        for name in imported_modules(path):
            assert not name.startswith("cmlplan.") or name.startswith("cmlplan.serving"), (path, name)


def test_replica_imports_only_stdlib_and_uvicorn():
    for path in (SERVING / "replica").rglob("*.py"):
        for name in imported_modules(path):
            top = name.split(".")[0]
            assert top in sys.stdlib_module_names or top in REPLICA_THIRD_PARTY, (path, name)


def test_proxy_imports_only_stdlib_and_the_packages_its_image_ships():
    from cmlplan.providers.docker.images import PROXY_PACKAGES

    shipped = {name.replace("-", "_") for name in PROXY_PACKAGES}
    for path in (SERVING / "proxy").rglob("*.py"):
        for name in imported_modules(path):
            top = name.split(".")[0]
            assert top in sys.stdlib_module_names or top in shipped or top == "cmlplan", (path, name)
