"""Load the model function the way CML does: ``file:function`` inside the project source dir."""

import importlib.util
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ModelFunction = Callable[[Any], Any]


class ModelLoadError(Exception):
    """The model cannot be loaded; the message is one line meant for the replica log."""


def load_model(source: Path, file: str, function: str) -> ModelFunction:
    """Import ``file`` from ``source`` and return its ``function``.

    The process chdirs into the source dir and puts it first on sys.path, so the model can open
    relative paths and import its sibling modules exactly as it does in a CML session.
    """
    source = source.resolve()
    path = source / file
    if not path.is_file():
        raise ModelLoadError(f"model file not found: {path}")
    os.chdir(source)
    sys.path.insert(0, str(source))
    module_name = path.stem if path.stem.isidentifier() else "cmlplan_model"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ModelLoadError(f"cannot import {path}: not a Python source file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException as exc:  # SystemExit or MemoryError at import time are load failures too
        raise ModelLoadError(f"cannot import {path}: {type(exc).__name__}: {exc}") from exc
    predict = getattr(module, function, None)
    if predict is None:
        raise ModelLoadError(f"function {function!r} not found in {path}")
    if not callable(predict):
        raise ModelLoadError(f"{function!r} in {path} is not callable")
    return predict
