"""One connection to the store, SQLite or PostgreSQL, behind the same few statements.

``open_store("sqlite:/path/metrics.db")`` or ``open_store("postgresql://...")``. A Store is used by
one thread only: the proxy opens one for its writer thread and one for reads. Every database
failure (disk full, read-only file, server gone) becomes StoreError with one line saying so.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .records import PredictionRow, UnknownPrediction, WrongProject
from .schema import MIGRATIONS
from .technical import HOUR_MS, MINUTE_MS, Bucket

SQLITE_PREFIX = "sqlite:"
# one read_metrics entry, written by the database
_ENTRY = (
    """'{"modelDeploymentCrn":%s,"modelBuildCrn":%s,"modelCrn":%s,"predictionUuid":%s,"""
    """"startTimeStampMs":%s,"endTimeStampMs":%s,"metrics":%s}'"""
)


def _entry_sql(quote: str, *, percent: str = "%") -> str:
    """One entry: its shared head (entry_heads) and the row's own fields, or, for a row without a
    head, ``format(...)`` of everything; quote turns a text column into a JSON string.

    percent is how the statement spells a literal ``%`` (``%%`` where ``%s`` marks a parameter).
    """
    columns = ", ".join(quote.format(column) for column in ("deployment", "build", "model", "uuid"))
    whole = f"format({_ENTRY.replace('%', percent)}, {columns}, ts_ms, ts_ms, metrics)"
    spliced = (
        "(SELECT head FROM entry_heads WHERE id = head_id) || uuid || '\",\"startTimeStampMs\":' || ts_ms"
        " || ',\"endTimeStampMs\":' || ts_ms || ',\"metrics\":' || metrics || '}'"
    )
    return f"COALESCE({spliced}, {whole})"


BUSY_TIMEOUT_MS = 5000
INSERT_CHUNK = 500  # rows per INSERT: 8 parameters each, far below SQLite's and PostgreSQL's limits
_ROW_COLUMNS = "uuid, project, model, deployment, build, replica, ts_ms, metrics, head_id"
_ROW_PLACEHOLDERS = "(?, ?, ?, ?, ?, ?, ?, ?, ?)"
# a prediction's uuid goes into its read entry unquoted only when it cannot need escaping
_CANONICAL_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\Z")
MMAP_BYTES = 1 << 30
CACHE_KIB = 65536


class StoreError(Exception):
    """The store cannot do what was asked (full, read-only, unreachable, corrupt)."""


def open_store(url: str) -> Store:
    if url.startswith(SQLITE_PREFIX):
        return Store.sqlite(Path(url[len(SQLITE_PREFIX) :]))
    if url.startswith(("postgresql://", "postgres://")):
        return Store.postgres(url)
    raise StoreError("the metrics store must be 'sqlite:PATH' or a postgresql:// DSN")


def describe(url: str) -> str:
    """The store's location without a password, for logs and errors."""
    if url.startswith(SQLITE_PREFIX):
        return url
    head, _, tail = url.partition("@")
    return f"postgresql://…@{tail}" if tail else "postgresql://…"


class Store:
    def __init__(self, conn: Any, dialect: str, errors: tuple[type[BaseException], ...]) -> None:
        self._conn = conn
        self.dialect = dialect
        self._errors = errors
        self._head_ids: dict[tuple[str, str, str], int] = {}  # committed entry_heads rows (writer only)

    @classmethod
    def sqlite(cls, path: Path) -> Store:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(path, isolation_level="DEFERRED", check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")  # a commit is on disk when it returns
            # reads map the file rather than copy it page by page (an hour of a busy model is ~10 MB)
            conn.execute(f"PRAGMA mmap_size = {MMAP_BYTES}")
            conn.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"cannot open the metrics store {path}: {exc}{_unwritable(path.parent)}") from None
        return cls(conn, "sqlite", (sqlite3.Error,))

    @classmethod
    def postgres(cls, dsn: str) -> Store:
        try:
            import psycopg  # only the proxy of a workspace with a DSN needs it
        except ImportError:
            raise StoreError("a PostgreSQL metrics store needs psycopg, which this proxy's Python lacks") from None

        try:
            conn = psycopg.connect(dsn, connect_timeout=10)
        except psycopg.Error as exc:
            raise StoreError(
                f"cannot connect to the metrics store {describe(dsn)}: {_first_line(exc)}"
            ) from None
        return cls(conn, "postgres", (psycopg.Error,))

    # ------------------------------------------------------------ plumbing

    def _sql(self, statement: str) -> str:
        return statement.replace("?", "%s") if self.dialect == "postgres" else statement

    def execute(self, statement: str, params: Iterable[Any] = ()) -> Any:
        try:
            return self._conn.execute(self._sql(statement), tuple(params))
        except self._errors as exc:
            raise StoreError(f"metrics store: {_first_line(exc)}") from None

    def executemany(self, statement: str, rows: list[tuple[Any, ...]]) -> None:
        try:
            if self.dialect == "postgres":
                with self._conn.cursor() as cursor:
                    cursor.executemany(self._sql(statement), rows)
            else:
                self._conn.executemany(statement, rows)
        except self._errors as exc:
            raise StoreError(f"metrics store: {_first_line(exc)}") from None

    def commit(self) -> None:
        try:
            self._conn.commit()
        except self._errors as exc:
            raise StoreError(f"metrics store: {_first_line(exc)}") from None

    def rollback(self) -> None:
        self._head_ids.clear()  # heads made in the rolled-back transaction are gone with it
        with contextlib.suppress(*self._errors):  # a broken connection: the next statement says so
            self._conn.rollback()

    def close(self) -> None:
        with contextlib.suppress(*self._errors):
            self._conn.close()

    def migrate(self) -> int:
        """Apply the migrations not yet applied; returns the schema version now in force."""
        self.execute("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)")
        row = self.execute("SELECT MAX(version) FROM schema_version").fetchone()
        current = row[0] or 0
        for version, statements in MIGRATIONS:
            if version <= current:
                continue
            for statement in statements:
                self.execute(statement)
            self.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
            current = version
        self.commit()
        return current

    # ------------------------------------------------------------ writes (the proxy's writer thread)

    def insert_predictions(self, rows: list[PredictionRow]) -> None:
        """Append rows to the inbox, one statement per INSERT_CHUNK rows (executemany would step, and
        give the GIL up, once per row).

        The inbox has no index, so the durable commit of a few rows writes one page; ``move_inbox``
        later indexes them in bulk. Reads see both tables, so a row is readable once committed.
        """
        for start in range(0, len(rows), INSERT_CHUNK):
            chunk = rows[start : start + INSERT_CHUNK]
            values: list[Any] = []
            for r in chunk:
                head = self._head_id(r.model, r.deployment, r.build) if _CANONICAL_UUID.match(r.uuid) else None
                values += (r.uuid, r.project, r.model, r.deployment, r.build, r.replica, r.ts_ms, r.metrics, head)
            self.execute(f"INSERT INTO inbox ({_ROW_COLUMNS}) VALUES {', '.join([_ROW_PLACEHOLDERS] * len(chunk))}", values)

    def inboxed(self) -> int:
        """How many rows wait in the inbox."""
        (count,) = self.execute("SELECT COUNT(*) FROM inbox").fetchone()
        self.rollback()
        return int(count)

    def move_inbox(self) -> None:
        """Move every inboxed row into predictions (a uuid already there keeps its first row), in the
        caller's transaction.

        On PostgreSQL several proxies may share the inbox, so the rows moved are exactly the rows
        deleted; on SQLite the INSERT takes the database's write lock, so none can slip in between.
        """
        if self.dialect == "postgres":
            self.execute(
                f"WITH moved AS (DELETE FROM inbox RETURNING {_ROW_COLUMNS}) INSERT INTO predictions "
                f"({_ROW_COLUMNS}) SELECT {_ROW_COLUMNS} FROM moved ON CONFLICT (uuid) DO NOTHING"
            )
        else:
            self.execute(
                f"INSERT INTO predictions ({_ROW_COLUMNS}) SELECT {_ROW_COLUMNS} FROM inbox WHERE true "
                "ON CONFLICT (uuid) DO NOTHING"
            )
            self.execute("DELETE FROM inbox")

    def _head_id(self, model: str, deployment: str, build: str) -> int:
        """The entry_heads row of this model, deployment and build, made on first use (single writer)."""
        key = (model, deployment, build)
        known = self._head_ids.get(key)
        if known is not None:
            return known
        row = self.execute(
            "SELECT id FROM entry_heads WHERE model = ? AND deployment = ? AND build = ?", key
        ).fetchone()
        if row is None:
            (last,) = self.execute("SELECT MAX(id) FROM entry_heads").fetchone()
            row = ((last or 0) + 1,)
            head = (
                f'{{"modelDeploymentCrn":{json.dumps(deployment)},"modelBuildCrn":{json.dumps(build)},'
                f'"modelCrn":{json.dumps(model)},"predictionUuid":"'
            )
            self.execute(
                "INSERT INTO entry_heads (id, model, deployment, build, head) VALUES (?, ?, ?, ?, ?)",
                (row[0], *key, head),
            )
        self._head_ids[key] = int(row[0])
        return int(row[0])

    def add_delayed(self, prediction_uuid: str, metrics: dict[str, Any], writable: frozenset[str]) -> str:
        """Merge metrics into a stored prediction; returns its project. Raises Unknown/WrongProject."""
        self.move_inbox()  # the prediction may still be in the inbox (of this proxy or another)
        row = self.execute(
            "SELECT project, metrics FROM predictions WHERE uuid = ?", (prediction_uuid,)
        ).fetchone()
        if row is None:
            raise UnknownPrediction(prediction_uuid)
        project, stored = row
        if project not in writable:
            raise WrongProject(project)
        merged = {**json.loads(stored), **metrics}
        self.execute("UPDATE predictions SET metrics = ? WHERE uuid = ?", (_dumps(merged), prediction_uuid))
        return project

    def add_aggregate(
        self,
        aggregate_id: str,
        route: tuple[str, str, str, str],
        start_ms: int,
        end_ms: int,
        metrics: dict[str, Any],
    ) -> None:
        project, model, deployment, build = route
        self.execute(
            "INSERT INTO aggregates (id, project, model, deployment, build, start_ms, end_ms, metrics) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (aggregate_id, project, model, deployment, build, start_ms, end_ms, _dumps(metrics)),
        )

    def put_technical(self, proxy: str, buckets: list[Bucket], resolution_ms: int = MINUTE_MS) -> None:
        """Write this proxy's counts of these cells, replacing what it wrote for them before."""
        self.executemany(
            "INSERT INTO technical (model, project, replica, proxy, resolution_ms, bucket_ms, requests, "
            "failures, request_bytes, response_bytes, total_seconds, histogram) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (model, replica, proxy, resolution_ms, bucket_ms) DO UPDATE SET "
            "requests = excluded.requests, failures = excluded.failures, "
            "request_bytes = excluded.request_bytes, response_bytes = excluded.response_bytes, "
            "total_seconds = excluded.total_seconds, histogram = excluded.histogram",
            [_technical_row(proxy, b, resolution_ms) for b in buckets],
        )

    def read_technical(
        self, model: str, since_ms: int, until_ms: int, replica: str | None = None
    ) -> list[tuple[int, Bucket]]:
        """(resolution_ms, bucket) per replica and cell in [since, until), every proxy summed, in time order."""
        where = "model = ? AND bucket_ms >= ? AND bucket_ms < ?"
        params: list[Any] = [model, since_ms, until_ms]
        if replica is not None:
            where += " AND replica = ?"
            params.append(replica)
        rows = self.execute(
            "SELECT resolution_ms, model, project, replica, bucket_ms, requests, failures, request_bytes, "
            f"response_bytes, total_seconds, histogram FROM technical WHERE {where}",
            params,
        ).fetchall()
        cells: dict[tuple[int, str, int], Bucket] = {}
        for resolution, *fields in rows:
            bucket = _bucket(fields)
            key = (resolution, bucket.replica, bucket.bucket_ms)
            if key in cells:
                cells[key].merge(bucket)
            else:
                cells[key] = bucket
        return [(key[0], cells[key]) for key in sorted(cells, key=lambda k: (k[2], k[1]))]

    def roll_up(self, before_ms: int) -> int:
        """Fold minute cells older than before_ms into hour cells; returns the minute rows folded."""
        rows = self.execute(
            "SELECT proxy, model, project, replica, bucket_ms, requests, failures, request_bytes, "
            "response_bytes, total_seconds, histogram FROM technical WHERE resolution_ms = ? AND bucket_ms < ?",
            (MINUTE_MS, before_ms),
        ).fetchall()
        if not rows:
            return 0
        hours: dict[tuple[str, str, str, int], Bucket] = {}
        for proxy, *fields in rows:
            minute = _bucket(fields)
            hour = minute.bucket_ms - minute.bucket_ms % HOUR_MS
            key = (proxy, minute.model, minute.replica, hour)
            if key not in hours:
                existing = self.execute(
                    "SELECT model, project, replica, bucket_ms, requests, failures, request_bytes, "
                    "response_bytes, total_seconds, histogram FROM technical "
                    "WHERE proxy = ? AND model = ? AND replica = ? AND resolution_ms = ? AND bucket_ms = ?",
                    (proxy, minute.model, minute.replica, HOUR_MS, hour),
                ).fetchone()
                hours[key] = _bucket(existing) if existing else Bucket(minute.model, minute.project, minute.replica, hour)
            hours[key].merge(minute)
        by_proxy: dict[str, list[Bucket]] = {}
        for (proxy, *_rest), bucket in hours.items():
            by_proxy.setdefault(proxy, []).append(bucket)
        for proxy, buckets in by_proxy.items():
            self.put_technical(proxy, buckets, HOUR_MS)
        self.execute("DELETE FROM technical WHERE resolution_ms = ? AND bucket_ms < ?", (MINUTE_MS, before_ms))
        return len(rows)

    # ------------------------------------------------------------ reads

    def read_json(
        self,
        *,
        model: str | None,
        deployment: str | None,
        build: str | None,
        start_ms: int | None,
        end_ms: int | None,
    ) -> bytes:
        """``{"metrics": [...]}`` as bytes: what read_metrics answers, the same entries as ``read``.

        The database writes the whole list itself, one ``format`` per prediction and one string
        aggregate, with the stored metrics text spliced in unparsed: building 40,000 entries in
        Python (or parsing and re-encoding their metrics) would be most of the time, and the stored
        text is JSON the proxy encoded before writing it.
        """
        filters, params, low, high = _filters(model, deployment, build, start_ms, end_ms)
        parts = []
        for rows, rows_params in self._window(filters, (*params, low, high)):
            if self.dialect == "sqlite":
                entries = (
                    f"SELECT CAST(group_concat({_entry_sql('json_quote({})')}, ',') AS BLOB) "
                    f"FROM ({rows} ORDER BY ts_ms)"
                )  # an aggregate over an ordered subquery keeps its order; as bytes: no decoding 10 MB
            else:
                entries = (
                    f"SELECT string_agg({_entry_sql('to_json({})::text', percent='%%')}, ',' ORDER BY ts_ms) "
                    f"FROM ({rows}) AS window_rows"
                )
            (predictions,) = self.execute(entries, rows_params).fetchone()
            if predictions:
                parts.append(predictions if isinstance(predictions, bytes) else predictions.encode())
        for m, d, b, s0, s1, metrics in self._aggregates(filters, params, low, high):
            parts.append((json.dumps(_entry(m, d, b, None, s0, s1, "{}"))[:-3] + metrics + "}").encode())
        return b"".join((b'{"metrics":[', b",".join(parts), b"]}"))  # one copy of the 10 MB

    def read(
        self,
        *,
        model: str | None,
        deployment: str | None,
        build: str | None,
        start_ms: int | None,
        end_ms: int | None,
    ) -> list[dict[str, Any]]:
        """Predictions stamped inside [start_ms, end_ms] in time order, then the aggregates overlapping it."""
        filters, params, low, high = _filters(model, deployment, build, start_ms, end_ms)
        result = []
        for rows, rows_params in self._window(filters, (*params, low, high)):
            predictions = self.execute(
                f"SELECT uuid, model, deployment, build, ts_ms, metrics FROM ({rows}) AS window_rows ORDER BY ts_ms",
                rows_params,
            ).fetchall()
            result += [_entry(m, d, b, u, t, t, s) for u, m, d, b, t, s in predictions]
        result.extend(_entry(m, d, b, None, s0, s1, s) for m, d, b, s0, s1, s in self._aggregates(filters, params, low, high))
        return result

    def _window(self, filters: str, params: tuple[Any, ...]) -> list[tuple[str, tuple[Any, ...]]]:
        """The predictions in the window that filters select, as queries whose answers, one after
        the other, are in time order: on SQLite the indexed rows, then the inbox's when they all
        come later (the usual case: the inbox holds the newest), else one query over both (a merge
        costs SQLite ~25 ms more on a 41,667-row hour than the indexed rows read alone). The
        queries share one read transaction, so a move committed meanwhile neither hides nor
        repeats a row. On PostgreSQL, where a transaction's statements see different commits
        (READ COMMITTED), always the one query.

        params are the filters' and the window's bounds.
        """
        where = f"WHERE {filters} AND ts_ms >= ? AND ts_ms <= ?"
        indexed = f"SELECT {_ROW_COLUMNS} FROM predictions {where}"
        inboxed = f"SELECT {_ROW_COLUMNS} FROM inbox {where}"
        if self.dialect == "postgres":
            return [(f"{indexed} UNION ALL {inboxed}", params * 2)]
        if not self._conn.in_transaction:  # sqlite3 opens none for a SELECT: each would see its own
            self.execute("BEGIN")
        (first_inboxed,) = self.execute(f"SELECT MIN(ts_ms) FROM inbox {where}", params).fetchone()
        if first_inboxed is None:
            return [(indexed, params)]
        (last_indexed,) = self.execute(f"SELECT MAX(ts_ms) FROM predictions {where}", params).fetchone()
        if last_indexed is None or last_indexed < first_inboxed:
            return [(indexed, params), (inboxed, params)]
        return [(f"{indexed} UNION ALL {inboxed}", params * 2)]

    def _aggregates(self, filters: str, params: list[Any], low: int, high: int) -> list[Any]:
        return self.execute(
            "SELECT model, deployment, build, start_ms, end_ms, metrics FROM aggregates "
            f"WHERE {filters} AND end_ms >= ? AND start_ms <= ? ORDER BY start_ms",
            (*params, low, high),
        ).fetchall()


def _filters(
    model: str | None, deployment: str | None, build: str | None, start_ms: int | None, end_ms: int | None
) -> tuple[str, list[Any], int, int]:
    where, params = [], []
    for column, value in (("model", model), ("deployment", deployment), ("build", build)):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    low = 0 if start_ms is None else start_ms
    high = 2**62 if end_ms is None else end_ms
    return (" AND ".join(where) if where else "1 = 1"), params, low, high


def _entry(
    model: str, deployment: str, build: str, uuid: str | None, start: int, end: int, metrics: str
) -> dict[str, Any]:
    return {
        "modelDeploymentCrn": deployment,
        "modelBuildCrn": build,
        "modelCrn": model,
        "predictionUuid": uuid,
        "startTimeStampMs": start,
        "endTimeStampMs": end,
        "metrics": json.loads(metrics),
    }


def _technical_row(proxy: str, b: Bucket, resolution_ms: int) -> tuple[Any, ...]:
    histogram = _dumps({str(k): v for k, v in sorted(b.histogram.items())})
    return (b.model, b.project, b.replica, proxy, resolution_ms, b.bucket_ms, b.requests, b.failures,
            b.request_bytes, b.response_bytes, b.total_seconds, histogram)  # fmt: skip


def _bucket(fields: Any) -> Bucket:
    model, project, replica, bucket_ms, requests, failures, req, resp, total, histogram = fields
    bins = {int(k): int(v) for k, v in json.loads(histogram).items()}
    return Bucket(model, project, replica, int(bucket_ms), int(requests), int(failures), int(req), int(resp),
                  float(total), bins)  # fmt: skip


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), allow_nan=False)


def _unwritable(folder: Path) -> str:
    """Why SQLite's "unable to open database file" happened, when the folder says so."""
    try:
        if os.statvfs(folder).f_flag & os.ST_RDONLY:
            return f" ({folder} is on a read-only filesystem)"
    except OSError:
        return ""
    return "" if os.access(folder, os.W_OK) else f" ({folder} is not writable)"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]
