"""PostgreSQL connection strings: parsed once, shown only with the password masked.

A DSN carries a password, so it reaches cmlplan only through ``${env:NAME}`` and every message
that mentions the database (or repeats a driver error) goes through ``DatabaseAddress``.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg.conninfo

from cmlplan.state.document import StateError

MASK = "***"


@dataclass(frozen=True)
class DatabaseAddress:
    """A DSN to connect with, and its masked form for people."""

    dsn: str
    shown: str
    _secrets: tuple[str, ...]

    @classmethod
    def parse(cls, dsn: str, where: str) -> DatabaseAddress:
        """Check ``dsn`` parses; the error names ``where`` (e.g. the env variable), never the DSN."""
        try:
            parts = psycopg.conninfo.conninfo_to_dict(dsn)
        except psycopg.ProgrammingError:
            raise StateError(f"{where} is not a valid PostgreSQL connection string") from None
        password = str(parts.get("password") or "")
        user = parts.get("user")
        host = parts.get("host") or "localhost"
        port = parts.get("port")
        database = parts.get("dbname") or user or ""
        who = f"{user}{':' + MASK if password else ''}@" if user else ""
        shown = f"postgresql://{who}{host}{':' + str(port) if port else ''}/{database}"
        return cls(dsn, shown, tuple(s for s in (password, dsn) if s))

    def scrub(self, text: str) -> str:
        """``text`` (a driver message) on one line, with the password and DSN masked."""
        for secret in sorted(self._secrets, key=len, reverse=True):
            text = text.replace(secret, MASK)
        return " ".join(text.split())
