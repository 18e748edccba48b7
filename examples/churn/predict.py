"""The churn-risk model, written for CML: ``import cdsw`` and track each prediction's inputs and score."""

import pickle
from pathlib import Path

import cdsw

FEATURES = ("tenure", "monthly_charges", "support_calls")
MODEL = pickle.loads((Path(__file__).resolve().parent / "model.pkl").read_bytes())


@cdsw.model_metrics
def predict(args):
    """{"tenure": months, "monthly_charges": amount, "support_calls": n} -> {"churn_risk": p}."""
    if not isinstance(args, dict) or any(name not in args for name in FEATURES):
        raise ValueError(f"send a JSON object with {', '.join(FEATURES)}")
    row = [float(args[name]) for name in FEATURES]
    risk = round(float(MODEL.predict_proba([row])[0][1]), 4)
    cdsw.track_metrics(dict(zip(FEATURES, row, strict=True)))
    cdsw.track_metric("churn_risk", risk)
    return {"churn_risk": risk}
