"""Reading YAML with positions: ruamel.yaml keeps line and column on every mapping and sequence."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from .document import Origin
from .errors import SpecError


def spec_files(directory: Path) -> list[Path]:
    """Every *.yaml / *.yml directly in ``directory``, in a stable order."""
    if not directory.is_dir():
        raise SpecError([f"{directory}: not a folder of spec files"])
    files = sorted(p for p in directory.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
    return files


def load_documents(path: Path, display: str, fast: bool = False) -> Iterator[tuple[Any, Origin]]:
    """Each YAML document of a file with where it starts; a syntax error names its position.

    ``fast`` parses with libyaml into plain dicts (no positions below the document's first line);
    the default round-trip parser keeps line and column on every node, for error messages.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError([f"{display}: not UTF-8 text ({exc.reason} at byte {exc.start})"]) from None
    except OSError as exc:
        raise SpecError([f"{display}: cannot read ({exc.strerror})"]) from None
    too_deep = _flow_too_deep(text)
    if too_deep is not None:
        line, column = too_deep
        raise SpecError([f"{display}:{line}:{column}: invalid YAML: brackets nest deeper than {_MAX_FLOW_DEPTH} levels"])
    fast = fast and _shallow(text)
    yaml = YAML(typ="safe", pure=False) if fast else YAML(typ="rt")
    try:
        documents = list(yaml.load_all(text))
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{display}:{mark.line + 1}:{mark.column + 1}" if mark else display
        problem = (exc.problem or exc.context or "invalid YAML").strip()
        raise SpecError([f"{where}: invalid YAML: {problem}"]) from None
    except (YAMLError, ValueError, TypeError, RecursionError, AttributeError, KeyError, IndexError) as exc:
        # ruamel's own bugs on hostile input (a KeyError for "%YAML 0.0") are invalid YAML too
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SpecError([f"{display}: invalid YAML: {first_line}"]) from None
    starts = _document_starts(text) if fast else []
    present = [d for d in documents if d is not None]
    if fast and len(starts) != len(present):
        raise SpecError([f"{display}: document boundaries are ambiguous; parse again with positions"])
    for index, document in enumerate(present):
        if fast:
            yield document, Origin(display, starts[index], 1)
        else:
            yield document, position(document, (), display)


_MAX_DEPTH = 500
_MAX_FLOW_DEPTH = 100
_FLOW_OPENERS = frozenset("[{")
_FLOW_CLOSERS = frozenset("]}")


def _flow_too_deep(text: str) -> tuple[int, int] | None:
    """Where ``[``/``{`` collections first nest past ``_MAX_FLOW_DEPTH``, or None.

    ruamel's scanner is cubic in flow depth (2,000 ``[`` take half a minute), so a hostile file
    must be refused before it is parsed. Brackets inside quotes and comments do not count; at the
    top level only a bracket that can start a collection (after ``:``, ``-``, ``?``, ``,`` or at
    the start of a value) does, so ``a[b`` in a plain scalar is not miscounted.
    """
    depth = 0
    quote = ""
    previous = "\n"
    line, column = 1, 0
    for char in text:
        column += 1
        if char == "\n":
            line, column = line + 1, 0
            if quote == "\n" or not depth:
                quote = ""  # comments end here; a quoted scalar spans lines only inside brackets
            previous = char
            continue
        if quote:
            if char == quote:
                quote = ""
        elif char == "#" and previous in " \t\n":
            quote = "\n"  # a comment runs to the end of the line
        elif char in "'\"" and (depth or previous in " \t\n:-,[{"):
            quote = char
        elif char in _FLOW_OPENERS and (depth or previous in " \t\n:-?,"):
            depth += 1
            if depth > _MAX_FLOW_DEPTH:
                return line, column
        elif char in _FLOW_CLOSERS and depth:
            depth -= 1
        previous = " " if char.isspace() else char
    return None


def _shallow(text: str) -> bool:
    """Whether nesting is surely shallow: libyaml recurses in C without a limit and would crash on
    a deeply nested file, where the pure-Python parser raises an error we can report."""
    depth = 0
    for line in text.splitlines():
        if len(line) - len(line.lstrip()) > _MAX_DEPTH or line.count("- ") > _MAX_DEPTH:
            return False
        depth += line.count("[") + line.count("{") - line.count("]") - line.count("}")
        if depth > _MAX_DEPTH or line.count("[") + line.count("{") > _MAX_DEPTH:
            return False
    return True


def _document_starts(text: str) -> list[int]:
    """1-based first content line of each non-empty document, found from the `---` separators."""
    starts: list[int] = []
    pending: int | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        if line.startswith("---") and (len(line) == 3 or line[3] in " \t"):
            if pending is not None:
                starts.append(pending)
            pending = None
            rest = line[3:].strip()
            if rest and not rest.startswith("#"):
                pending = number
            continue
        if line.startswith("..."):
            if pending is not None:
                starts.append(pending)
            pending = None
            continue
        stripped = line.strip()
        if pending is None and stripped and not stripped.startswith("#") and not stripped.startswith("%"):
            pending = number
    if pending is not None:
        starts.append(pending)
    return starts


def position(root: Any, path: Sequence[str | int], display: str) -> Origin:
    """The best known position of ``path`` inside ``root``: the deepest node that has one."""
    node = root
    line, column = _own_position(root)
    for step in path:
        try:
            if isinstance(step, int) and isinstance(node, list):
                if hasattr(node, "lc") and step < len(node):
                    line, column = node.lc.item(step)
                node = node[step]
            elif isinstance(node, dict) and step in node:
                if hasattr(node, "lc"):
                    line, column = node.lc.key(step)
                node = node[step]
            else:
                break
        except (KeyError, IndexError, TypeError, AttributeError):
            break
    return Origin(display, line + 1, column + 1)


def _own_position(node: Any) -> tuple[int, int]:
    lc = getattr(node, "lc", None)
    if lc is not None and lc.line is not None:
        return lc.line, lc.col or 0
    return 0, 0
