"""Train petal width from petal length, log the run to MLflow and register the model.

    python fit.py [--alpha 1.0] [--tracking-uri http://127.0.0.1:5000] [--no-promote]

Logs the parameters, MSE and R2 on a held-out split and the training data set, registers the
model as IrisPetalWidth (a new version each run) and, unless --no-promote, points the alias
``champion`` at the new version, which is what cmlplan.yaml deploys.
"""

from __future__ import annotations

import argparse
import os

import mlflow
import mlflow.sklearn
from mlflow import MlflowClient
from sklearn.datasets import load_iris
from sklearn.linear_model import Ridge
from sklearn.metrics import mean_squared_error, r2_score
from sklearn.model_selection import train_test_split

MODEL_NAME = "IrisPetalWidth"
ALIAS = "champion"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--alpha", type=float, default=1.0, help="ridge regularisation strength")
    parser.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000"))
    parser.add_argument("--no-promote", action="store_true", help=f"do not move the {ALIAS} alias")
    args = parser.parse_args()

    mlflow.set_tracking_uri(args.tracking_uri)
    mlflow.set_experiment("iris-petal-width")
    frame = load_iris(as_frame=True).frame.rename(
        columns={"petal length (cm)": "petal_length", "petal width (cm)": "petal_width"}
    )
    x, y = frame[["petal_length"]], frame["petal_width"]
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.3, random_state=7)

    with mlflow.start_run() as run:
        model = Ridge(alpha=args.alpha).fit(x_train, y_train)
        predicted = model.predict(x_test)
        mlflow.log_params({"alpha": args.alpha, "features": "petal_length", "test_size": 0.3})
        mlflow.log_metrics({"mse": mean_squared_error(y_test, predicted), "r2": r2_score(y_test, predicted)})
        dataset = mlflow.data.from_pandas(frame, source="sklearn.datasets.load_iris", name="iris", targets="petal_width")
        mlflow.log_input(dataset, context="training")
        info = mlflow.sklearn.log_model(
            model, name="model", registered_model_name=MODEL_NAME, input_example=x_train.head(3)
        )
    version = info.registered_model_version
    if not args.no_promote:
        MlflowClient(args.tracking_uri).set_registered_model_alias(MODEL_NAME, ALIAS, str(version))
    print(f"run {run.info.run_id}: {MODEL_NAME} version {version}" + ("" if args.no_promote else f" ({ALIAS})"))


if __name__ == "__main__":
    main()
