"""Train a dense softmax model (weights in (W, b) pairs, ReLU between layers) with mini-batch SGD.

Reads ``round.json`` (epochs, lr, batch_size, seed), ``model/global.npz`` and the private
``$DECENTRALML_DATA/train.npz`` (x: n × features in [0, 1], y: labels); writes ``outputs/update.npz``
(the trained weights, same shapes) and ``outputs/metrics.json`` (num_examples, train_loss,
train_accuracy). Nothing of the data itself is written to outputs/.
"""

import json
import os

import numpy as np


def load(path):
    with np.load(path, allow_pickle=False) as data:
        return [data[f"arr_{i}"] for i in range(len(data.files))]


def forward(weights, x):
    """Logits and each layer's input (for backpropagation)."""
    inputs, out = [], x
    for i in range(0, len(weights), 2):
        inputs.append(out)
        out = out @ weights[i] + weights[i + 1]
        if i + 2 < len(weights):
            out = np.maximum(out, 0)
    return out, inputs


def train(weights, x, y, epochs=1, lr=0.5, batch_size=32, seed=0):
    """SGD on the softmax cross-entropy; returns (new weights, mean loss of the last epoch)."""
    weights = [np.array(w, np.float64) for w in weights]
    rng = np.random.default_rng(seed)
    loss = float("nan")
    for _ in range(int(epochs)):
        order, losses = rng.permutation(len(x)), []
        for start in range(0, len(x), batch_size):
            batch = order[start:start + batch_size]
            logits, inputs = forward(weights, x[batch])
            logits -= logits.max(axis=1, keepdims=True)
            p = np.exp(logits)
            p /= p.sum(axis=1, keepdims=True)
            losses.append(-np.mean(np.log(p[np.arange(len(batch)), y[batch]] + 1e-12)))
            grad = p
            grad[np.arange(len(batch)), y[batch]] -= 1
            grad /= len(batch)
            for i in range(len(weights) - 2, -1, -2):
                gw, gb = inputs[i // 2].T @ grad, grad.sum(axis=0)
                if i > 0:
                    grad = (grad @ weights[i].T) * (inputs[i // 2] > 0)
                weights[i] -= lr * gw
                weights[i + 1] -= lr * gb
        loss = float(np.mean(losses))
    return [w.astype(np.float32) for w in weights], loss


def main():
    with open("round.json") as f:
        settings = json.load(f)
    data_dir = os.environ.get("DECENTRALML_DATA", "/data")
    with np.load(os.path.join(data_dir, "train.npz"), allow_pickle=False) as data:
        x, y = data["x"].astype(np.float64), data["y"].astype(np.int64)
    weights, loss = train(load("model/global.npz"), x, y, settings.get("epochs", 1), settings.get("lr", 0.5),
                          settings.get("batch_size", 32), settings.get("seed", 0))
    np.savez("outputs/update.npz", *weights)
    accuracy = float(np.mean(np.argmax(forward(weights, x)[0], axis=1) == y))
    with open("outputs/metrics.json", "w") as f:
        json.dump({"num_examples": int(len(x)), "train_loss": round(loss, 4), "train_accuracy": round(accuracy, 4)}, f)


if __name__ == "__main__":
    main()
