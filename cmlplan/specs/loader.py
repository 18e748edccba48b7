"""From a folder of YAML files to validated resources, every problem named by file:line:column."""

from __future__ import annotations

import os
import types
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from .common import API_VERSION, Lifecycle, Metadata
from .config import Config, check_config
from .document import ENVELOPE_FIELDS, SPEC_BY_KIND, Origin, Resource
from .errors import SpecError, did_you_mean
from .yamlsource import load_documents, position, spec_files


def load_config(directory: str | os.PathLike[str] = ".") -> Config:
    """Load and check every spec file in ``directory``; raise SpecError listing every problem.

    Specs are parsed with libyaml first (fast: thousands of models in a second); only when
    something is wrong are they parsed again with positions, so every problem names its line.
    """
    folder = Path(directory)
    files = spec_files(folder)
    if not files:
        raise SpecError([f"{folder}: no *.yaml or *.yml spec files here"])
    config, problems = _load(folder, files, fast=True)
    if problems or config is None:
        config, problems = _load(folder, files, fast=False)
    if problems or config is None:
        raise SpecError(problems)
    return config


def _load(folder: Path, files: list[Path], fast: bool) -> tuple[Config | None, list[str]]:
    problems: list[str] = []
    resources: list[Resource] = []
    for path in files:
        display = _display_path(path)
        try:
            for document, origin in load_documents(path, display, fast=fast):
                resource = _resource(document, origin, display, problems, str(path.parent), keep_raw=not fast)
                if resource is not None:
                    resources.append(resource)
        except SpecError as exc:
            problems.extend(exc.problems)
    if problems:
        return None, problems
    return check_config(resources, str(folder), tuple(str(p.resolve()) for p in files))


def _display_path(path: Path) -> str:
    try:
        relative = os.path.relpath(path)
    except ValueError:
        return str(path)
    return str(path) if relative.startswith("..") else relative


def _resource(
    document: Any, origin: Origin, display: str, problems: list[str], base_dir: str, keep_raw: bool = True
) -> Resource | None:
    if not isinstance(document, dict):
        problems.append(f"{origin}: a document must be a mapping with apiVersion, kind, metadata and spec")
        return None
    before = len(problems)
    for key in document:
        if key not in ENVELOPE_FIELDS:
            where = position(document, [key], display)
            problems.append(f"{where}: unknown top-level field {key!r}{did_you_mean(str(key), ENVELOPE_FIELDS)}")
    api_version = document.get("apiVersion")
    if api_version != API_VERSION:
        where = position(document, ["apiVersion"], display)
        shown = "missing" if api_version is None else repr(api_version)
        problems.append(f"{where}: apiVersion {shown} is not supported; use {API_VERSION!r}")
    kind = document.get("kind")
    if not isinstance(kind, str) or kind not in SPEC_BY_KIND:  # a list or mapping is unhashable
        where = position(document, ["kind"], display)
        shown = "missing" if kind is None else repr(kind)
        problems.append(
            f"{where}: kind {shown} is unknown{did_you_mean(str(kind), SPEC_BY_KIND)}"
            f" (kinds: {', '.join(SPEC_BY_KIND)})"
        )
        return None
    label = f"{kind} {_name_hint(document)}".strip()
    metadata = _validate(Metadata, document.get("metadata"), ["metadata"], document, display, label, problems)
    spec = _validate(SPEC_BY_KIND[kind], document.get("spec") or {}, ["spec"], document, display, label, problems)
    lifecycle = _validate(Lifecycle, document.get("lifecycle") or {}, ["lifecycle"], document, display, label, problems)
    if metadata is not None:
        if kind == "Model" and metadata.project is None:
            where = position(document, ["metadata"], display)
            problems.append(f"{where}: {label}: metadata.project is required for a Model")
        if kind != "Model" and metadata.project is not None:
            where = position(document, ["metadata", "project"], display)
            problems.append(f"{where}: {label}: metadata.project is only for Models")
        if kind != "Model" and metadata.description is not None:
            where = position(document, ["metadata", "description"], display)
            problems.append(f"{where}: {label}: metadata.description is only for Models (a Project has spec.description)")
    if len(problems) > before or metadata is None or spec is None or lifecycle is None:
        return None
    return Resource(kind, metadata, spec, lifecycle, origin, base_dir, document if keep_raw else None)


def _name_hint(document: dict[str, Any]) -> str:
    metadata = document.get("metadata")
    if isinstance(metadata, dict) and isinstance(metadata.get("name"), str):
        return repr(metadata["name"])
    return ""


def _validate(
    model: type[BaseModel],
    value: Any,
    prefix: list[str],
    document: Any,
    display: str,
    label: str,
    problems: list[str],
) -> Any:
    if value is None:
        where = position(document, prefix, display)
        problems.append(f"{where}: {label}: {prefix[0]} is required")
        return None
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        for error in exc.errors(include_url=False):
            loc = [*prefix, *error["loc"]]
            where = position(document, loc, display)
            path = ".".join(_path_part(part) for part in loc)
            message = _message(model, error)
            problems.append(f"{where}: {label}: {path}: {message}")
        return None
    except (TypeError, ValueError) as exc:
        where = position(document, prefix, display)
        problems.append(f"{where}: {label}: {prefix[0]}: {exc}")
        return None


def _path_part(part: Any) -> str:
    text = str(part)
    return text if text.replace("-", "").replace("_", "").isalnum() else repr(part)


def _message(model: type[BaseModel], error: Any) -> str:
    kind = error["type"]
    loc = error["loc"]
    if kind == "extra_forbidden":
        valid = _fields_at(model, loc[:-1])
        return f"unknown field{did_you_mean(str(loc[-1]), valid)}" + (
            f" (fields: {', '.join(sorted(valid))})" if valid and not did_you_mean(str(loc[-1]), valid) else ""
        )
    if kind == "missing":
        return "required field is missing"
    if kind == "literal_error":
        return error["msg"].replace("Input should be", "must be")
    message = str(error["msg"])
    return message.removeprefix("Value error, ")


def _fields_at(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Names valid at ``loc`` inside ``model``, by walking the annotations (for typo hints)."""
    current: Any = model
    for step in loc:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(str(step))
            if field is None:
                return []
            current = field.annotation
        elif isinstance(step, int):
            args = typing.get_args(current)
            current = args[0] if args else Any
        else:
            args = typing.get_args(current)
            current = args[-1] if args else Any
    current = _unwrap(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def _unwrap(annotation: Any) -> Any:
    """Strip Optional/Annotated to reach a model class."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            candidates = [a for a in typing.get_args(annotation) if a is not type(None)]
            models = [a for a in candidates if isinstance(a, type) and issubclass(a, BaseModel)]
            annotation = models[0] if models else (candidates[0] if candidates else Any)
        else:
            return annotation
