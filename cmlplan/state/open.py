"""Choosing a workspace's state backend from its ``state:`` settings: the one place that knows them all."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from cmlplan.specs import env_reference
from cmlplan.specs.workspace import StateSettings
from cmlplan.state.backend import StateBackend
from cmlplan.state.document import StateError
from cmlplan.state.file import FileBackend


def open_backend(settings: StateSettings, directory: Path, environ: Mapping[str, str], name: str) -> StateBackend:
    """The backend ``settings`` describe; ``directory`` anchors a relative file path, ``name`` is the default workspace."""
    if settings.backend == "postgres":
        from cmlplan.state.dsn import DatabaseAddress  # psycopg is loaded only by those who use it
        from cmlplan.state.postgres import PostgresBackend

        variable = env_reference(settings.dsn or "")
        if variable is None:  # the spec validator already insists on ${env:NAME}
            raise StateError("Workspace spec.state.dsn must be an ${env:NAME} reference")
        if not environ.get(variable):
            raise StateError(
                f"Workspace spec.state.dsn: environment variable {variable} is not set "
                f"(referenced as ${{env:{variable}}}); it must hold the PostgreSQL connection string"
            )
        address = DatabaseAddress.parse(environ[variable], f"environment variable {variable}")
        return PostgresBackend(address, settings.workspace or name)
    path = Path(settings.path)
    return FileBackend(path if path.is_absolute() else directory / path)
