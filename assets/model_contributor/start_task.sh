#!/bin/sh
# Model contributor: train a logistic-regression model on data/train.csv with numpy and write the
# model and its metrics to outputs/. Runs in the sandbox (the agent shares its python3 + numpy).
set -eu
mkdir -p outputs
python3 - <<'PY'
import json
import numpy as np

data = np.loadtxt("data/train.csv", delimiter=",", skiprows=1)
x, y = data[:, :-1], data[:, -1]
split = int(len(x) * 0.8)
w, b = np.zeros(x.shape[1]), 0.0
for _ in range(500):  # full-batch gradient descent on the logistic loss
    p = 1 / (1 + np.exp(-(x[:split] @ w + b)))
    w -= 0.5 * x[:split].T @ (p - y[:split]) / split
    b -= 0.5 * float(np.mean(p - y[:split]))
accuracy = float(np.mean(((x[split:] @ w + b) > 0) == y[split:]))
np.savez("outputs/model.npz", weights=w, bias=b)
json.dump({"model": "logistic_regression", "train_rows": split, "test_rows": len(x) - split,
           "test_accuracy": round(accuracy, 4)}, open("outputs/metrics.json", "w"), indent=2)
PY
