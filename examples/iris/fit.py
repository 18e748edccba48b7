"""Train the petal-width model: scikit-learn LinearRegression on the bundled iris data.

Feature: petal length (cm, column 2). Target: petal width (cm, column 3).
Prints MSE and R2 on a held-out split and writes model.pkl next to this file.
"""

from __future__ import annotations

import pickle
from pathlib import Path

from sklearn.datasets import load_iris
from sklearn.linear_model import LinearRegression
from sklearn.metrics import mean_squared_error, r2_score
from sklearn.model_selection import train_test_split

MODEL_PATH = Path(__file__).resolve().parent / "model.pkl"


def main() -> None:
    data = load_iris().data
    x = data[:, [2]]  # petal length
    y = data[:, 3]  # petal width
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.25, random_state=42)

    model = LinearRegression().fit(x_train, y_train)
    predicted = model.predict(x_test)
    print(f"MSE: {mean_squared_error(y_test, predicted):.4f}")
    print(f"R2: {r2_score(y_test, predicted):.4f}")

    with MODEL_PATH.open("wb") as f:
        pickle.dump(model, f)
    print(f"wrote {MODEL_PATH}")


if __name__ == "__main__":
    main()
