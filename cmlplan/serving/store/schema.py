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
]

LATEST = MIGRATIONS[-1][0]
