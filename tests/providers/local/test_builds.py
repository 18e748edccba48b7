"""Local builds: snapshot, shared venv, build script, failures."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cmlplan.providers.local.builds import (
    BUILD_MARKER,
    BuildError,
    BuildFailed,
    BuildRequest,
    LocalBuilder,
    RuntimeUnavailable,
)
from cmlplan.providers.source import build_hash, collect_manifest, parse_requirements

HERE = f"{sys.version_info.major}.{sys.version_info.minor}"
MODEL = "def predict(args):\n    return {'width': args['length'] * 0.4}\n"


def _source(root: Path, files: dict[str, str] | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for rel, text in {"model.py": MODEL, **(files or {})}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def _request(
    source: Path,
    number: int = 1,
    requirements: str = "",
    build_script: str | None = None,
    python: str = HERE,
    key: str = "iris/petal-width",
    progress: list[str] | None = None,
) -> BuildRequest:
    manifest = collect_manifest(source, print)
    return BuildRequest(
        model_key=key,
        number=number,
        build_hash=build_hash(manifest, "predict", python, parse_requirements(requirements), build_script),
        source_dir=source,
        manifest=manifest,
        python=python,
        requirements_text=requirements,
        build_script=build_script,
        progress=(progress.append if progress is not None else lambda _m: None),
    )


@pytest.fixture
def builder(tmp_path: Path) -> LocalBuilder:
    return LocalBuilder(tmp_path / "ws" / ".cmlplan")


def _writable(path: Path) -> bool:
    return bool(path.stat().st_mode & 0o222)


@pytest.mark.slow
def test_build_snapshots_read_only_and_runs_in_its_venv(builder: LocalBuilder, tmp_path: Path) -> None:
    source = _source(
        tmp_path / "src", {"lib/helpers.py": "X = 1\n", "big.pkl": "ignored", ".gitignore": "*.pkl\n"}
    )
    messages: list[str] = []
    outcome = builder.build(_request(source, progress=messages))

    assert not outcome.reused
    assert outcome.build_dir == builder.root / "builds" / "iris" / "petal-width" / "1"
    assert sorted(
        p.relative_to(outcome.src_dir).as_posix() for p in outcome.src_dir.rglob("*") if p.is_file()
    ) == [
        ".gitignore",
        "lib/helpers.py",
        "model.py",
    ]
    for path in [
        outcome.src_dir,
        *outcome.src_dir.rglob("*"),
        outcome.runtime_dir,
        *outcome.runtime_dir.rglob("*"),
    ]:
        assert not _writable(path), path
    assert (outcome.runtime_dir / "cmlplan" / "__init__.py").exists()
    assert (outcome.runtime_dir / "cmlplan" / "serving").is_dir()
    assert (outcome.build_dir / BUILD_MARKER).exists()
    assert outcome.log_path.exists()
    assert any("venv" in m for m in messages)

    # The replica's interpreter sees the build's runtime and the serving packages, and imports the model.
    check = "import cmlplan, uvloop, httptools, model; print(cmlplan.__file__, model.predict({'length': 5}))"
    env = {**os.environ, **outcome.replica_env(), "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("VIRTUAL_ENV_PROMPT", None)
    out = subprocess.run(
        [str(outcome.python_executable), "-c", check],
        cwd=outcome.src_dir,
        env={**env, "PYTHONPATH": f"{outcome.runtime_dir}{os.pathsep}{outcome.src_dir}"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert str(outcome.runtime_dir) in out and "2.0" in out

    again = builder.build(_request(source))
    assert again.reused and again.build_dir == outcome.build_dir

    builder.remove_build("iris/petal-width", 1)
    assert not outcome.build_dir.exists()
    assert builder.remove_unused_venvs(keep=set()) == [outcome.venv_key]
    assert not outcome.venv_dir.exists()


@pytest.mark.slow
def test_builds_with_the_same_dependencies_share_a_venv(builder: LocalBuilder, tmp_path: Path) -> None:
    one = builder.build(_request(_source(tmp_path / "a"), number=1))
    two = builder.build(_request(_source(tmp_path / "b", {"model.py": MODEL + "# v2\n"}), number=2))
    assert one.build_hash != two.build_hash
    assert one.venv_dir == two.venv_dir
    assert [p.name for p in builder.venvs_dir.iterdir() if p.is_dir()] == [one.venv_key]
    assert "reusing venv" in two.log_path.read_text()
    assert builder.remove_unused_venvs(keep=set()) == []  # still used by builds on disk


@pytest.mark.slow
def test_build_with_a_requirement_from_the_pip_cache(builder: LocalBuilder, tmp_path: Path) -> None:
    source = _source(tmp_path / "src", {"model.py": "import six\n" + MODEL})
    try:
        outcome = builder.build(_request(source, requirements="six\n"))
    except BuildFailed as failed:
        if any("No matching distribution" in line or "Could not" in line for line in failed.log_tail):
            pytest.skip("six is not installable offline here")
        raise
    subprocess.run([str(outcome.python_executable), "-c", "import six"], check=True)


@pytest.mark.slow
def test_build_script_runs_in_the_venv_before_the_snapshot_is_sealed(
    builder: LocalBuilder, tmp_path: Path
) -> None:
    script = 'echo "venv=$VIRTUAL_ENV" > generated.txt\ncommand -v python >> generated.txt\n'
    source = _source(tmp_path / "src", {"cdsw-build.sh": script})
    outcome = builder.build(_request(source, build_script="cdsw-build.sh"))
    generated = (outcome.src_dir / "generated.txt").read_text()
    assert f"venv={outcome.venv_dir}" in generated
    assert str(outcome.venv_dir / "bin" / "python") in generated
    assert not _writable(outcome.src_dir / "generated.txt")


@pytest.mark.slow
def test_failing_build_script_leaves_a_log_and_no_build(builder: LocalBuilder, tmp_path: Path) -> None:
    source = _source(tmp_path / "src", {"cdsw-build.sh": "echo compiling things\necho oh no >&2\nexit 3\n"})
    with pytest.raises(BuildFailed) as info:
        builder.build(_request(source, build_script="cdsw-build.sh"))
    failed = info.value
    build_dir = builder.build_dir("iris/petal-width", 1)
    message = str(failed)
    assert "\n" not in message
    assert "build script" in message and str(build_dir / "build.log") in message
    assert "oh no" in failed.log_tail and "compiling things" in failed.log_tail
    assert not (build_dir / BUILD_MARKER).exists()
    assert not (build_dir / "src").exists() and not (build_dir / "src.tmp").exists()
    assert (build_dir / "build.log").exists()

    (source / "cdsw-build.sh").write_text("echo fixed\n")  # the same number can be retried
    assert builder.build(_request(source, build_script="cdsw-build.sh")).src_dir.exists()


def test_python_version_mismatch_is_a_clear_error(builder: LocalBuilder, tmp_path: Path) -> None:
    with pytest.raises(RuntimeUnavailable) as info:
        builder.build(_request(_source(tmp_path / "src"), python="2.7"))
    assert (
        str(info.value)
        == f"runtime python 2.7 is not available on the local provider (this machine has {HERE})"
    )
    assert not builder.builds_dir.exists()


def test_changed_source_since_planning_fails_the_snapshot(builder: LocalBuilder, tmp_path: Path) -> None:
    source = _source(tmp_path / "src")
    request = _request(source)
    (source / "model.py").write_text("changed\n")
    with pytest.raises(BuildFailed, match="snapshot: model.py changed since the plan was made"):
        builder.build(request)
    assert not (builder.build_dir("iris/petal-width", 1) / BUILD_MARKER).exists()


def test_bad_model_key_is_refused(builder: LocalBuilder, tmp_path: Path) -> None:
    with pytest.raises(BuildError, match="expected <project>/<model>"):
        builder.build(_request(_source(tmp_path / "src"), key="../escape"))


@pytest.mark.slow
def test_same_number_with_other_inputs_is_refused(builder: LocalBuilder, tmp_path: Path) -> None:
    source = _source(tmp_path / "src")
    builder.build(_request(source))
    (source / "model.py").write_text(MODEL + "# changed\n")
    with pytest.raises(BuildError, match="already exists .* builds are immutable"):
        builder.build(_request(source))
