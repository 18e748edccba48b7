"""Build inputs, content-addressed.

A build is immutable, so what goes into it must be pinned by content: the manifest lists every source
file with its sha256, and the build hash covers the manifest plus everything else that changes what a
replica would run (function, runtime python, requirements, build script). The dependency hash is the
narrower key a virtualenv is shared by, so a code-only change reuses the installed packages.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pathspec

from cmlplan.errors import CmlplanError

MAX_FILE_BYTES = 50 * 1024 * 1024
"""Files larger than this are left out of a build (with a warning): models belong in a registry."""

ALWAYS_SKIPPED_DIRS = frozenset({".git", ".cmlplan", "__pycache__"})

_CHUNK = 1024 * 1024
_BINARY_SNIFF_BYTES = 8000  # what git looks at to decide a file is binary


class SourceError(CmlplanError):
    """The source tree or requirements file cannot be read as a build input."""


@dataclass(frozen=True)
class FileEntry:
    """One source file as a build sees it; ``lines`` is None for binary files."""

    sha256: str
    size: int
    lines: int | None


def collect_manifest(root: Path, warn: Callable[[str], None]) -> dict[str, FileEntry]:
    """Walk ``root`` and return {posix relative path: FileEntry}, sorted by path.

    Skips .git/, .cmlplan/, __pycache__/, whatever the tree's .gitignore files ignore (nested ones
    apply below their own directory, deeper rules win, as in git) and files over 50 MB (``warn`` is
    told). Symlinks to files are followed; symlinked directories are not descended into.
    """
    root = Path(root)
    if not root.is_dir():
        raise SourceError(f"{root}: source directory does not exist")
    entries: dict[str, FileEntry] = {}
    for rel in _walk(root):
        path = root / rel
        try:
            size = path.stat().st_size
        except OSError as exc:
            warn(f"{rel}: skipped, cannot be read ({exc.strerror})")
            continue
        if size > MAX_FILE_BYTES:
            warn(
                f"{rel}: skipped, {size / 1024 / 1024:.1f} MB is over the {MAX_FILE_BYTES // 1024 // 1024} MB "
                "limit for source files (keep large artifacts out of the source tree or .gitignore them)"
            )
            continue
        try:
            entries[rel] = _describe(path)
        except OSError as exc:
            warn(f"{rel}: skipped, cannot be read ({exc.strerror})")
    return dict(sorted(entries.items()))


def _walk(root: Path) -> Iterator[str]:
    """Yield the posix relative paths of files git would track under ``root``."""
    # Stack of (base dir relative to root, spec) for the .gitignore files above the current dir.
    specs_by_dir: dict[str, list[tuple[str, pathspec.GitIgnoreSpec]]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = Path(dirpath).relative_to(root).as_posix()
        rel_dir = "" if rel_dir == "." else rel_dir
        parent = rel_dir.rpartition("/")[0] if rel_dir else None
        specs = list(specs_by_dir.get(parent, [])) if parent is not None else []
        if ".gitignore" in filenames:
            specs.append((rel_dir, _read_gitignore(Path(dirpath) / ".gitignore")))
        specs_by_dir[rel_dir] = specs

        kept_dirs = []
        for name in sorted(dirnames):
            rel = f"{rel_dir}/{name}" if rel_dir else name
            if name in ALWAYS_SKIPPED_DIRS or Path(dirpath, name).is_symlink():
                continue
            if not _ignored(specs, rel, is_dir=True):
                kept_dirs.append(name)
        dirnames[:] = kept_dirs

        for name in sorted(filenames):
            rel = f"{rel_dir}/{name}" if rel_dir else name
            full = Path(dirpath, name)
            if not full.is_file():  # broken symlink, socket, fifo...
                continue
            if not _ignored(specs, rel, is_dir=False):
                yield rel


def _read_gitignore(path: Path) -> pathspec.GitIgnoreSpec:
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as exc:
        raise SourceError(f"{path}: cannot read ({exc.strerror})") from exc
    return pathspec.GitIgnoreSpec.from_lines(lines)


def _ignored(specs: list[tuple[str, pathspec.GitIgnoreSpec]], rel: str, *, is_dir: bool) -> bool:
    """True when the deepest .gitignore rule that has an opinion about ``rel`` ignores it."""
    verdict = False
    for base, spec in specs:
        sub = rel[len(base) + 1 :] if base else rel
        result = spec.check_file(sub + "/" if is_dir else sub)
        if result.include is not None:
            verdict = result.include
    return verdict


def _describe(path: Path) -> FileEntry:
    digest = hashlib.sha256()
    size = 0
    newlines = 0
    binary = False
    last = b""
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            if size < _BINARY_SNIFF_BYTES and b"\0" in chunk[: _BINARY_SNIFF_BYTES - size]:
                binary = True
            digest.update(chunk)
            newlines += chunk.count(b"\n")
            size += len(chunk)
            last = chunk[-1:]
    lines = None if binary else newlines + (1 if size and last != b"\n" else 0)
    return FileEntry(sha256=digest.hexdigest(), size=size, lines=lines)


# --- requirements -------------------------------------------------------------------------------

_NAME = re.compile(r"^([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)\s*(.*)$")


def normalize_name(name: str) -> str:
    """PEP 503 normalisation, so ``Scikit_Learn`` and ``scikit-learn`` are one requirement."""
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_requirements(text: str) -> dict[str, str]:
    """Read a pip requirements file into {normalised name: specifier}, sorted by name.

    ``scikit-learn == 1.5.2`` gives ``{"scikit-learn": "==1.5.2"}``; extras, URLs and markers stay in
    the value (``"[socks]>=2"``, ``"@ https://..."``, ``">=1; python_version<'3.12'"``). Comments,
    blank lines and option lines (``-r``, ``--index-url``...) are ignored; a line that names no
    package (a bare path or URL) is kept under its own text with an empty specifier, so it still
    shows in a diff. A package named twice is an error, as it is for pip.
    """
    result: dict[str, str] = {}
    for number, line in _logical_lines(text):
        if line.startswith("-"):
            continue
        match = _NAME.match(line)
        if not match or line.startswith((".", "/")) or "://" in match.group(1):
            result.setdefault(line, "")
            continue
        name, rest = normalize_name(match.group(1)), match.group(2)
        if rest and not rest.startswith(("[", "=", "<", ">", "!", "~", "@", ";", "(")):
            result.setdefault(line, "")
            continue
        if name in result:
            raise SourceError(f"requirements line {number}: {name} is listed twice")
        result[name] = _normalize_specifier(rest)
    return dict(sorted(result.items()))


def _logical_lines(text: str) -> Iterator[tuple[int, str]]:
    """Yield (first line number, content) with comments stripped and ``\\`` continuations joined."""
    pending = ""
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = re.sub(r"(^|\s)#.*$", "", raw)
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = (pending + line).strip()
        pending = ""
        if line:
            yield start, line
    if pending.strip():
        yield start, pending.strip()


def _normalize_specifier(rest: str) -> str:
    spec, sep, marker = rest.partition(";")
    if spec.lstrip().startswith("@"):
        spec = "@ " + spec.lstrip()[1:].strip()
    else:
        spec = re.sub(r"\s+", "", spec)
    marker = " ".join(marker.split())
    return f"{spec}; {marker}" if sep else spec


# --- hashes ---------------------------------------------------------------------------------------


def build_hash(
    manifest: Mapping[str, FileEntry],
    function: str,
    python: str,
    requirements: Mapping[str, str],
    build_script: str | None,
) -> str:
    """sha256 of everything that decides what a build runs; equal inputs give an equal hash."""
    return _hash(
        {
            "kind": "cmlplan.build/1",
            "files": {path: entry.sha256 for path, entry in sorted(manifest.items())},
            "function": function,
            "python": python,
            "requirements": dict(sorted(requirements.items())),
            "build_script": build_script,
        }
    )


def dependency_hash(python: str, requirements: Mapping[str, str], requirements_text: str) -> str:
    """sha256 of what a virtualenv is keyed by: the runtime python and the requirements.

    The raw text is included too, because options lines (``--index-url``, ``-c``) change what pip
    installs without changing the parsed requirements.
    """
    return _hash(
        {
            "kind": "cmlplan.dependencies/1",
            "python": python,
            "requirements": dict(sorted(requirements.items())),
            "requirements_text": requirements_text,
        }
    )


def _hash(document: object) -> str:
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()
