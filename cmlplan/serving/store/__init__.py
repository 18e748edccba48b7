"""The metrics store: per-prediction, delayed and aggregate metrics (and technical buckets).

One schema for SQLite (WAL, the default) and PostgreSQL (psycopg 3), created by versioned
migrations. The proxy is its only writer (``writer.StoreWriter``, group commit on one thread).
"""

from .backend import Store, StoreError, open_store
from .records import PredictionRow, UnknownPrediction, WrongProject

__all__ = ["PredictionRow", "Store", "StoreError", "UnknownPrediction", "WrongProject", "open_store"]
