"""Hostile input for the three loaders: any bytes give a valid result or one clean, one-line error.

Covers the spec loader (``load_config`` -> Config or SpecError), the state loader
(``StateDocument.from_json`` and ``FileBackend.read`` -> doc or StateError) and the saved-plan
loader (``load_plan`` -> Plan or PlanFileError), with raw bytes and with valid documents mutated at
random paths. Any other exception escapes and fails the test. Finally the CLI itself is run on
hostile spec folders and must never print a traceback.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cmlplan.plan import Action, ActionReason, Drift, Plan, PlanFileError, ResourceChange, load_plan
from cmlplan.plan.planfile import save_plan
from cmlplan.specs.config import Config
from cmlplan.specs.errors import SpecError
from cmlplan.specs.loader import load_config
from cmlplan.state.document import ResourceState, StateDocument, StateError
from cmlplan.state.file import FileBackend

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "add-numbers" / "cmlplan.yaml"

FUZZ = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)

WORKSPACE_YAML = """apiVersion: cmlplan/v1
kind: Workspace
metadata: {name: fuzz}
spec:
  provider: local
  users: [{name: alice}]
"""

# Byte strings with a bias towards things parsers trip over.
_SPECIAL = st.sampled_from(
    [
        b"", b"\x00", b"\xff\xfe", b"\xef\xbb\xbf", b"[" * 2000, b"{" * 2000, b"- " * 2000, b"&a [*a]",
        b"!!python/object:os.system ls", b"1e99999", b"9" * 5000, b"NaN", b"Infinity", b'"\\ud800"',
        b"a: &x [*x]", b"\t", b"---\n---\n...", b"%YAML 9.9\n---\n", b"? [a]\n: b", b"\r\n\r", b"<<: *x",
    ]
)
HOSTILE_BYTES = st.one_of(
    st.binary(max_size=2000),
    st.text(max_size=500).map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.lists(_SPECIAL, min_size=1, max_size=4).map(b"".join),
    st.tuples(st.binary(max_size=50), _SPECIAL, st.binary(max_size=50)).map(b"".join),
)

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)


def _one_line(message: str) -> None:
    assert message and "\n" not in message and "Traceback" not in message, repr(message)


# --- helpers for structured fuzz: every container path of a JSON value, and a mutation at one ----------


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            found += _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += _paths(child, (*prefix, index))
    return found


def _mutate(document: Any, data: st.DataObject) -> Any:
    """Replace, delete or add one value somewhere inside a deep copy of document."""
    document = json.loads(json.dumps(document))
    paths = _paths(document)
    path = data.draw(st.sampled_from(paths), label="path")
    value = data.draw(JSON_VALUES, label="value")
    if not path:
        return value
    parent = document
    for part in path[:-1]:
        parent = parent[part]
    how = data.draw(st.sampled_from(["replace", "delete", "add"]), label="how")
    if how == "replace":
        parent[path[-1]] = value
    elif how == "delete":
        del parent[path[-1]]
    else:
        target = parent[path[-1]]
        if isinstance(target, dict):
            target[data.draw(st.text(max_size=10), label="key")] = value
        elif isinstance(target, list):
            target.append(value)
        else:
            parent[path[-1]] = value
    return document


# --- spec loader -------------------------------------------------------------------------------------


def _load_specs(files: dict[str, bytes]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "workspace.yaml").write_text(WORKSPACE_YAML)
        for name, content in files.items():
            (root / name).write_bytes(content)
        try:
            result = load_config(root)
        except SpecError as exc:
            assert exc.problems
            for problem in exc.problems:
                _one_line(problem)
        else:
            assert isinstance(result, Config)


@FUZZ
@given(HOSTILE_BYTES)
def test_spec_loader_any_bytes(content: bytes) -> None:
    _load_specs({"fuzz.yaml": content})


def _example_documents() -> list[Any]:
    from ruamel.yaml import YAML

    documents = list(YAML(typ="safe").load_all(EXAMPLE.read_text()))
    return json.loads(json.dumps(documents))  # plain JSON values


@FUZZ
@given(st.data())
def test_spec_loader_mutated_documents(data: st.DataObject) -> None:
    documents = _mutate(_example_documents(), data)
    if not isinstance(documents, list):
        documents = [documents]
    # JSON is YAML: one JSON document per YAML document
    text = "\n---\n".join(json.dumps(document) for document in documents)
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "cmlplan.yaml").write_text(text)
        (root / "add.py").write_text("def add(args):\n    return args['a'] + args['b']\n")
        (root / "requirements.txt").write_text("")
        try:
            result = load_config(root)
        except SpecError as exc:
            for problem in exc.problems:
                _one_line(problem)
        else:
            assert isinstance(result, Config)


def test_the_unmutated_example_loads() -> None:
    assert isinstance(load_config(EXAMPLE.parent), Config)


# --- state loader ------------------------------------------------------------------------------------


def _valid_state() -> StateDocument:
    doc = StateDocument.new("ws-fuzz")
    doc.set_resource(
        "model.p/m",
        ResourceState(kind="model", provider="local", attributes={"a": 1, "b": [1, "x", None]}, dependencies=["project.p"]),
    )
    doc.set_resource("project.p", ResourceState(kind="project", provider="local"))
    doc.next_id("deployment")
    return doc


def _read_state(content: bytes) -> None:
    try:
        result = StateDocument.from_json(content, "x")
    except StateError as exc:
        _one_line(str(exc))
    else:
        assert isinstance(result, StateDocument)
        StateDocument.from_json(result.to_json(), "again")  # what parsed can be written and read back
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "state.json"
        path.write_bytes(content)
        try:
            read = FileBackend(path).read()
        except StateError as exc:
            _one_line(str(exc))
        else:
            assert isinstance(read, StateDocument)


@FUZZ
@given(HOSTILE_BYTES)
def test_state_loader_any_bytes(content: bytes) -> None:
    _read_state(content)


@FUZZ
@given(st.data())
def test_state_loader_mutated_documents(data: st.DataObject) -> None:
    document = _mutate(json.loads(_valid_state().to_json()), data)
    _read_state(json.dumps(document).encode())


def test_state_loader_deep_nesting_and_huge_numbers() -> None:
    for content in (b"[" * 200_000, b'{"a":' * 100_000, b"1" * 100_000, b'{"serial": ' + b"9" * 5000 + b"}"):
        _read_state(content)


# --- plan loader -------------------------------------------------------------------------------------


def _valid_plan_dict() -> Any:
    plan = Plan(
        changes=(
            ResourceChange(
                "deployment.p/m", "deployment", Action.CREATE_THEN_DELETE, ActionReason.REPLACE_BECAUSE_SOURCE_CHANGED,
                {"build": 1}, {"build": 2}, replace_paths=("build",), dependencies=("model.p/m",), notes=("n",),
            ),
            ResourceChange("project.p", "project", Action.CREATE, ActionReason.CREATE_BECAUSE_NEW, None, {"d": ""}),
        ),
        drift=(Drift("deployment.p/m", "deployment", {"replicas": 1}, {"replicas": 2}),),
        workspace_id="ws",
        lineage="2c7e4ad9-3a3a-4ec0-9d4e-1b6d1d8e6b43",
        serial=4,
        specs_hash="abc",
        targets=("deployment.p/m",),
        replace=("model.p/m.access_key",),
        created_at="2026-11-25T10:00:00+00:00",
        cmlplan_version="0.1.0",
        warnings=("w",),
    )
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "plan.json"
        save_plan(plan, path)
        return json.loads(path.read_text())


def _read_plan(content: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "plan.json"
        path.write_bytes(content)
        try:
            result = load_plan(path)
        except PlanFileError as exc:
            _one_line(str(exc))
        else:
            assert isinstance(result, Plan)


@FUZZ
@given(HOSTILE_BYTES)
def test_plan_loader_any_bytes(content: bytes) -> None:
    _read_plan(content)


@FUZZ
@given(st.data())
def test_plan_loader_mutated_documents(data: st.DataObject) -> None:
    _read_plan(json.dumps(_mutate(_valid_plan_dict(), data)).encode())


def test_plan_loader_deep_nesting() -> None:
    for content in (b"[" * 200_000, b'{"kind": "cmlplan-saved-plan", "plan": ' + b"[" * 100_000):
        _read_plan(content)


# --- the CLI on hostile spec folders -----------------------------------------------------------------

HOSTILE_FOLDERS: dict[str, dict[str, bytes]] = {
    "binary": {"junk.yaml": os.urandom(512)},
    "not-utf8": {"latin.yaml": "name: caf\xe9\n".encode("latin-1")},
    "deep": {"deep.yaml": b"[" * 100_000},
    "alias-bomb": {"bomb.yaml": b"a: &a [x, x]\nb: &b [*a, *a, *a, *a]\nc: &c [*b, *b, *b, *b]\nd: [*c, *c, *c]\n"},
    "python-tag": {"tag.yaml": b"apiVersion: !!python/object/apply:os.system [echo pwned]\n"},
    "mutated": {"m.yaml": b"apiVersion: cmlplan/v1\nkind: Model\nmetadata: {name: [1], project: {}}\nspec: 7\n"},
    "huge-number": {"n.yaml": b"apiVersion: cmlplan/v1\nkind: Proxy\nmetadata: {name: default}\nspec: {port: 1" + b"0" * 5000 + b"}\n"},
}


def test_cli_never_prints_a_traceback(tmp_path: Path) -> None:
    python = str(REPO / ".venv" / "bin" / "python")
    for name, files in HOSTILE_FOLDERS.items():
        folder = tmp_path / name
        folder.mkdir()
        shutil.copy(EXAMPLE, folder / "cmlplan.yaml")
        (folder / "add.py").write_text("def add(args):\n    return 1\n")
        (folder / "requirements.txt").write_text("")
        for filename, content in files.items():
            (folder / filename).write_bytes(content)
        (folder / ".cmlplan").mkdir()
        (folder / ".cmlplan" / "state.json").write_bytes(b"{" * 50_000)
        for command in (["validate"], ["plan"], ["show"], ["state", "list"], ["apply", str(folder / "plan.bin")]):
            (folder / "plan.bin").write_bytes(os.urandom(256))
            done = subprocess.run(
                [python, "-c", "from cmlplan.cli.main import main; main()", *command],
                cwd=folder, capture_output=True, timeout=60, env={**os.environ, "NO_COLOR": "1"},
            )
            output = (done.stdout + done.stderr).decode(errors="replace")
            assert "Traceback" not in output, f"{name}: cmlplan {' '.join(command)}:\n{output}"
            assert done.returncode in (0, 1, 2), f"{name}: cmlplan {' '.join(command)} -> {done.returncode}\n{output}"


def test_deeply_nested_yaml_is_an_error_not_a_crash(tmp_path: Path) -> None:
    """In a child process: a C-level stack overflow (libyaml) would kill pytest itself."""
    python = str(REPO / ".venv" / "bin" / "python")
    for name, content in {"flow": b"[" * 60_000, "block": b"- " * 60_000, "map": b"{a: " * 60_000}.items():
        folder = tmp_path / name
        folder.mkdir()
        (folder / "workspace.yaml").write_text(WORKSPACE_YAML)
        (folder / "deep.yaml").write_bytes(content)
        done = subprocess.run(
            [python, "-c", "import sys; from cmlplan.specs.loader import load_config; from cmlplan.specs.errors import SpecError\n"
             "try:\n    load_config(sys.argv[1])\nexcept SpecError as e:\n    print(e.problems[0])", str(folder)],
            capture_output=True, timeout=60,
        )
        assert done.returncode == 0, f"{name}: load_config crashed the process (exit {done.returncode}) {done.stderr[-300:]!r}"
        assert b"Traceback" not in done.stdout + done.stderr
