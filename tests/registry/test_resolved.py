"""The artifact digest and python_env parsing (cmlplan.registry.resolved)."""

from __future__ import annotations

from cmlplan.registry.resolved import artifact_digest, python_of


def test_digest_moves_with_any_size_or_mlmodel_byte_and_not_with_order() -> None:
    sizes = {"MLmodel": 10, "model.pkl": 100, "requirements.txt": 5}
    contents = {"MLmodel": b"model_uuid: a", "requirements.txt": b"numpy"}
    base = artifact_digest(sizes, contents)
    assert base.startswith("sha256:")
    assert artifact_digest(dict(reversed(list(sizes.items()))), contents) == base
    assert artifact_digest({**sizes, "model.pkl": 101}, contents) != base
    assert artifact_digest(sizes, {**contents, "MLmodel": b"model_uuid: b"}) != base
    assert artifact_digest(sizes, {**contents, "requirements.txt": b"numpy==2"}) != base
    assert artifact_digest({**sizes, "extra.json": 1}, contents) != base


def test_python_of_reads_major_minor() -> None:
    assert python_of("python: 3.11.7\nbuild_dependencies:\n- pip\n") == "3.11"
    assert python_of("python: '3.12'\n") == "3.12"
    assert python_of("dependencies: []\n") is None
