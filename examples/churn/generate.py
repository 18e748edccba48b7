"""Generate a synthetic churn dataset and train the risk model: writes train.csv and model.pkl.

Customers have a tenure (months), a monthly charge and a number of support calls; the chance to
churn rises with charges and support calls and falls with tenure. ``python generate.py``.
"""

from __future__ import annotations

import csv
import pickle
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

FEATURES = ("tenure", "monthly_charges", "support_calls")
HERE = Path(__file__).resolve().parent


def customers(count: int, seed: int, tenure_scale: float = 24.0) -> tuple[np.ndarray, np.ndarray]:
    """count customers and whether each churned; tenure_scale shifts the tenure distribution (drift)."""
    rng = np.random.default_rng(seed)
    tenure = rng.exponential(tenure_scale, count).clip(0, 72).round()
    charges = rng.normal(70, 20, count).clip(15, 150).round(2)
    calls = rng.poisson(1.5, count)
    logit = -1.0 - 0.06 * tenure + 0.03 * (charges - 70) + 0.6 * calls
    churned = rng.random(count) < 1 / (1 + np.exp(-logit))
    return np.column_stack([tenure, charges, calls]), churned.astype(int)


def main() -> None:
    features, labels = customers(4000, seed=7)
    model = LogisticRegression(max_iter=1000).fit(features, labels)
    with (HERE / "train.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([*FEATURES, "churned"])
        writer.writerows([*row, label] for row, label in zip(features.tolist(), labels.tolist(), strict=True))
    (HERE / "model.pkl").write_bytes(pickle.dumps(model))
    auc = roc_auc_score(labels, model.predict_proba(features)[:, 1])
    print(f"trained on {len(labels)} customers, churn rate {labels.mean():.1%}, training ROC AUC {auc:.3f}")


if __name__ == "__main__":
    main()
