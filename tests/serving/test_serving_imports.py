"""The serving runtime ships alone: it never imports the control plane, and the replica runtime
(copied into model build venvs) imports only the stdlib plus the runtime packages every build
installs (uvloop, httptools, psutil).

Relative imports are resolved against the importing module, so ``from ...values import UNKNOWN``
inside ``cmlplan/serving/proxy/`` counts as ``cmlplan.values`` (it would break every replica).
"""

import ast
import sys
from pathlib import Path

import pytest

SERVING = Path(__file__).resolve().parents[2] / "cmlplan" / "serving"
# Loaded only by registered (MLflow) models' shims, whose venvs install the model's own requirements.
PYFUNC_THIRD_PARTY = {"mlflow", "pandas"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SERVING.parent.parent).with_suffix("").parts)
    return ".".join(parts)


def imported_modules(source: str, module: str, is_package: bool = False) -> set[str]:
    """Absolute names of everything ``module`` (whose text is ``source``) imports."""
    package = module.split(".") if is_package else module.split(".")[:-1]
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                base = node.module or ""
            else:
                if node.level - 1 > len(package):
                    raise AssertionError(f"{module}: relative import beyond the top package")
                anchor = package[: len(package) - (node.level - 1)]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            if node.module:
                names.add(base)
            else:  # from .. import values: each name may be a module
                names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def _modules(root: Path) -> list[tuple[Path, set[str]]]:
    found = []
    for path in sorted(root.rglob("*.py")):
        found.append((path, imported_modules(path.read_text(), module_name(path), path.name == "__init__.py")))
    return found


def test_serving_never_imports_the_rest_of_cmlplan():
    for path, names in _modules(SERVING):
        for name in names:
            assert name == "cmlplan" or not name.startswith("cmlplan.") or name.startswith("cmlplan.serving"), (
                path,
                name,
            )


def test_replica_imports_only_stdlib_and_the_runtime_packages():
    from cmlplan.providers.buildfiles import RUNTIME_PACKAGES

    for path, names in _modules(SERVING / "replica"):
        for name in names:
            top = name.split(".")[0]
            if top == "cmlplan":
                assert name.startswith("cmlplan.serving"), (path, name)
                continue
            allowed = set(RUNTIME_PACKAGES) | (PYFUNC_THIRD_PARTY if path.name == "pyfunc.py" else set())
            assert top in sys.stdlib_module_names or top in allowed, (path, name)


def test_proxy_imports_only_stdlib_and_the_packages_its_image_ships():
    from cmlplan.providers.images import PROXY_PACKAGES

    shipped = {name.replace("-", "_") for name in PROXY_PACKAGES}
    for path, names in _modules(SERVING / "proxy"):
        for name in names:
            top = name.split(".")[0]
            if top == "cmlplan":
                assert name.startswith("cmlplan.serving"), (path, name)
                continue
            assert top in sys.stdlib_module_names or top in shipped, (path, name)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from ...values import UNKNOWN", "cmlplan.values"),
        ("from ... import values", "cmlplan.values"),
        ("from ..defaults import BUSY_TIMEOUT", "cmlplan.serving.defaults"),
        ("from .pool import Pool", "cmlplan.serving.proxy.pool"),
        ("import cmlplan.values", "cmlplan.values"),
    ],
)
def test_relative_imports_are_resolved(source: str, expected: str):
    assert expected in imported_modules(source, "cmlplan.serving.proxy.routes")


def test_a_relative_import_of_the_control_plane_fails_the_check():
    names = imported_modules("from ...values import UNKNOWN\n", "cmlplan.serving.proxy.routes")
    assert any(n.startswith("cmlplan.") and not n.startswith("cmlplan.serving") for n in names)
