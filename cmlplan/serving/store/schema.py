"""Versioned migrations, portable between SQLite and PostgreSQL (``?`` placeholders, no autoincrement).

A migration is applied once, in order, inside the transaction that records its version; never
edit one that has shipped, add the next.
"""

MIGRATIONS: list[tuple[int, list[str]]] = [
    (
        1,
        [
            """CREATE TABLE predictions (
                uuid TEXT PRIMARY KEY,
                project TEXT NOT NULL,
                model TEXT NOT NULL,
                deployment TEXT NOT NULL,
                build TEXT NOT NULL,
                replica TEXT NOT NULL,
                ts_ms BIGINT NOT NULL,
                metrics TEXT NOT NULL
            )""",
            "CREATE INDEX predictions_model_ts ON predictions (model, ts_ms)",
            "CREATE INDEX predictions_deployment_ts ON predictions (deployment, ts_ms)",
            """CREATE TABLE aggregates (
                id TEXT PRIMARY KEY,
                project TEXT NOT NULL,
                model TEXT NOT NULL,
                deployment TEXT NOT NULL,
                build TEXT NOT NULL,
                start_ms BIGINT NOT NULL,
                end_ms BIGINT NOT NULL,
                metrics TEXT NOT NULL
            )""",
            "CREATE INDEX aggregates_model_end ON aggregates (model, end_ms)",
        ],
    ),
    (
        2,
        [
            # one row per proxy process per cell: each proxy rewrites its own counts, reads sum them
            """CREATE TABLE technical (
                model TEXT NOT NULL,
                project TEXT NOT NULL,
                replica TEXT NOT NULL,
                proxy TEXT NOT NULL,
                resolution_ms BIGINT NOT NULL,
                bucket_ms BIGINT NOT NULL,
                requests BIGINT NOT NULL,
                failures BIGINT NOT NULL,
                request_bytes BIGINT NOT NULL,
                response_bytes BIGINT NOT NULL,
                total_seconds DOUBLE PRECISION NOT NULL,
                histogram TEXT NOT NULL,
                PRIMARY KEY (model, replica, proxy, resolution_ms, bucket_ms)
            )""",
            "CREATE INDEX technical_model_time ON technical (model, bucket_ms)",
        ],
    ),
    (
        3,
        [
            # replica CPU and memory, one row per proxy process per cell like technical (usage.py)
            """CREATE TABLE replica_usage (
                model TEXT NOT NULL,
                project TEXT NOT NULL,
                replica TEXT NOT NULL,
                proxy TEXT NOT NULL,
                resolution_ms BIGINT NOT NULL,
                bucket_ms BIGINT NOT NULL,
                cpu_seconds DOUBLE PRECISION NOT NULL,
                wall_seconds DOUBLE PRECISION NOT NULL,
                memory_sum DOUBLE PRECISION NOT NULL,
                samples BIGINT NOT NULL,
                memory_max BIGINT NOT NULL,
                memory_limit BIGINT,
                cpu_limit DOUBLE PRECISION,
                PRIMARY KEY (model, replica, proxy, resolution_ms, bucket_ms)
            )""",
            "CREATE INDEX replica_usage_model_time ON replica_usage (model, bucket_ms)",
        ],
    ),
    (
        4,
        [
            # the part of a read_metrics entry shared by every prediction of one model, deployment and
            # build, written once as JSON: a read splices it in front of each prediction rather than
            # quoting three columns per row (41,667 rows: ~80 -> ~45 ms of SQLite's time)
            """CREATE TABLE entry_heads (
                id BIGINT PRIMARY KEY,
                model TEXT NOT NULL,
                deployment TEXT NOT NULL,
                build TEXT NOT NULL,
                head TEXT NOT NULL,
                UNIQUE (model, deployment, build)
            )""",
            # NULL for rows written before this migration or whose uuid is not a canonical UUID
            "ALTER TABLE predictions ADD COLUMN head_id BIGINT",
        ],
    ),
    (
        5,
        [
            # where the hot path writes a prediction: one append-only table with no index, so a
            # durable commit touches one page rather than a page of each of predictions' four
            # B-trees; the writer moves rows into predictions in batches, and reads take both
            """CREATE TABLE inbox (
                uuid TEXT NOT NULL,
                project TEXT NOT NULL,
                model TEXT NOT NULL,
                deployment TEXT NOT NULL,
                build TEXT NOT NULL,
                replica TEXT NOT NULL,
                ts_ms BIGINT NOT NULL,
                metrics TEXT NOT NULL,
                head_id BIGINT
            )""",
        ],
    ),
]

LATEST = MIGRATIONS[-1][0]
