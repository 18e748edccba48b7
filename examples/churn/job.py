"""The monitoring job: read the last window, join ground truth, store ROC AUC and input drift.

    CMLPLAN_METRICS_URL=http://127.0.0.1:8790 CMLPLAN_API_KEY=... python job.py ground_truth.csv --minutes 60

ground_truth.csv has columns ``uuid,churned`` (the UUIDs the model answered with). Each label is
stored with ``track_delayed_metrics``; ROC AUC over the labelled predictions and the PSI of
``tenure`` against train.csv are stored with ``track_aggregate_metrics`` for the window.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from cmlplan.metrics import read_metrics, track_aggregate_metrics, track_delayed_metrics

MODEL = "model.churn/risk"
HERE = Path(__file__).resolve().parent


def psi(expected: np.ndarray, actual: np.ndarray, bins: int = 10) -> float:
    """Population stability index of actual against expected, on expected's deciles."""
    edges = np.unique(np.quantile(expected, np.linspace(0, 1, bins + 1)))
    edges[0], edges[-1] = -np.inf, np.inf
    e = np.histogram(expected, edges)[0] / len(expected)
    a = np.histogram(actual, edges)[0] / len(actual)
    e, a = np.clip(e, 1e-4, None), np.clip(a, 1e-4, None)
    return float(np.sum((a - e) * np.log(a / e)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("ground_truth", type=Path)
    parser.add_argument("--minutes", type=int, default=60)
    args = parser.parse_args()
    end = int(time.time() * 1000)
    start = end - args.minutes * 60_000
    window = read_metrics(model=MODEL, start_timestamp_ms=start, end_timestamp_ms=end)["metrics"]
    predictions = {m["predictionUuid"]: m["metrics"] for m in window if m["predictionUuid"]}
    with args.ground_truth.open() as handle:
        truth = {row["uuid"]: int(row["churned"]) for row in csv.DictReader(handle)}
    labelled = [uuid for uuid in predictions if uuid in truth]
    for uuid in labelled:
        track_delayed_metrics({"churned": truth[uuid]}, uuid)
    with (HERE / "train.csv").open() as handle:
        training_tenure = np.array([float(row["tenure"]) for row in csv.DictReader(handle)])
    served_tenure = np.array([m["tenure"] for m in predictions.values()])
    aggregate = {"predictions": len(predictions), "labelled": len(labelled), "psi_tenure": psi(training_tenure, served_tenure)}
    labels = [truth[u] for u in labelled]
    if len(set(labels)) == 2:
        aggregate["roc_auc"] = float(roc_auc_score(labels, [predictions[u]["churn_risk"] for u in labelled]))
    track_aggregate_metrics(aggregate, start, end, model=MODEL)
    print(json.dumps(aggregate))


if __name__ == "__main__":
    main()
