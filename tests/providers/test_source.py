"""Build inputs: what goes into the manifest and what moves the hashes."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from cmlplan.providers.source import (
    MAX_FILE_BYTES,
    FileEntry,
    SourceError,
    build_hash,
    collect_manifest,
    dependency_hash,
    parse_requirements,
)


def _tree(root: Path, files: dict[str, str | bytes]) -> Path:
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    return root


def _manifest(root: Path) -> dict[str, FileEntry]:
    warnings: list[str] = []
    manifest = collect_manifest(root, warnings.append)
    assert warnings == []
    return manifest


def test_manifest_lists_files_sorted_with_hash_size_and_lines(tmp_path: Path) -> None:
    _tree(
        tmp_path,
        {"model.py": "def predict(args):\n    return 1\n", "b/data.bin": b"\x00\x01\x02", "a.txt": "x"},
    )
    manifest = _manifest(tmp_path)
    assert list(manifest) == ["a.txt", "b/data.bin", "model.py"]
    assert manifest["model.py"].lines == 2
    assert manifest["a.txt"].lines == 1  # no trailing newline still counts
    assert manifest["b/data.bin"].lines is None
    assert manifest["b/data.bin"].size == 3
    assert len(manifest["model.py"].sha256) == 64


def test_gitignore_is_respected_including_nested_and_negation(tmp_path: Path) -> None:
    _tree(
        tmp_path,
        {
            ".gitignore": "*.pkl\nbuild/\n!keep.pkl\n",
            "model.py": "",
            "model.pkl": b"x",
            "keep.pkl": b"x",
            "build/out.py": "",
            "sub/.gitignore": "*.csv\n",
            "sub/a.csv": "",
            "sub/a.py": "",
            "b.csv": "",  # the nested rule does not apply above its own directory
            ".git/config": "",
            ".cmlplan/state.json": "",
            "pkg/__pycache__/m.cpython-311.pyc": b"\x00",
        },
    )
    assert list(_manifest(tmp_path)) == [
        ".gitignore",
        "b.csv",
        "keep.pkl",
        "model.py",
        "sub/.gitignore",
        "sub/a.py",
    ]


def test_big_file_is_skipped_with_a_warning(tmp_path: Path) -> None:
    _tree(tmp_path, {"model.py": ""})
    big = tmp_path / "weights.bin"
    subprocess.run(["truncate", "-s", str(MAX_FILE_BYTES + 1), str(big)], check=True)  # sparse: cheap
    warnings: list[str] = []
    manifest = collect_manifest(tmp_path, warnings.append)
    assert list(manifest) == ["model.py"]
    assert len(warnings) == 1
    assert "weights.bin" in warnings[0] and "50.0 MB" in warnings[0] and "\n" not in warnings[0]


def test_missing_root_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="does not exist"):
        collect_manifest(tmp_path / "nope", print)


def _hash_of(root: Path, function: str = "predict") -> str:
    return build_hash(_manifest(root), function, "3.11", {"numpy": "==2.0"}, None)


def test_same_inputs_give_the_same_hash(tmp_path: Path) -> None:
    one = _tree(tmp_path / "one", {"model.py": "x = 1\n", "lib/util.py": "y = 2\n"})
    two = _tree(tmp_path / "two", {"lib/util.py": "y = 2\n", "model.py": "x = 1\n"})
    assert _hash_of(one) == _hash_of(two)
    assert _hash_of(one) == _hash_of(one)


def test_one_byte_change_changes_the_hash(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"model.py": "x = 1\n"})
    before = _hash_of(root)
    (root / "model.py").write_text("x = 2\n")
    assert _hash_of(root) != before


def test_function_and_other_inputs_change_the_hash(tmp_path: Path) -> None:
    manifest = _manifest(_tree(tmp_path, {"model.py": "x = 1\n"}))
    base = build_hash(manifest, "predict", "3.11", {}, None)
    assert build_hash(manifest, "predict_proba", "3.11", {}, None) != base
    assert build_hash(manifest, "predict", "3.12", {}, None) != base
    assert build_hash(manifest, "predict", "3.11", {"numpy": ""}, None) != base
    assert build_hash(manifest, "predict", "3.11", {}, "cdsw-build.sh") != base


def test_dependency_hash_ignores_code_but_not_requirements() -> None:
    base = dependency_hash("3.11", {"numpy": "==2.0"}, "numpy==2.0\n")
    assert dependency_hash("3.11", {"numpy": "==2.0"}, "numpy==2.0\n") == base
    assert dependency_hash("3.12", {"numpy": "==2.0"}, "numpy==2.0\n") != base
    assert dependency_hash("3.11", {"numpy": "==2.1"}, "numpy==2.1\n") != base


def test_parse_requirements() -> None:
    text = """
# a comment
--index-url https://example.invalid/simple
-r other.txt
Scikit_Learn == 1.5.2   # pinned
numpy>=1.26, <3
requests[socks] >= 2 ; python_version >= "3.8"
mypkg @ https://example.invalid/mypkg-1.0.tar.gz#egg=mypkg
pandas \\
    ==2.2.0
./local-package
"""
    assert parse_requirements(text) == {
        "./local-package": "",
        "mypkg": "@ https://example.invalid/mypkg-1.0.tar.gz#egg=mypkg",
        "numpy": ">=1.26,<3",
        "pandas": "==2.2.0",
        "requests": '[socks]>=2; python_version >= "3.8"',
        "scikit-learn": "==1.5.2",
    }
    assert parse_requirements("") == {}


def test_parse_requirements_rejects_a_package_listed_twice() -> None:
    with pytest.raises(SourceError, match="line 2: numpy is listed twice"):
        parse_requirements("numpy\nNumPy==2\n")
