"""Symmetric per-array int8 quantisation: weight ≈ q × scale, q in [-127, 127], one float32 scale per
array. Writes outputs/model_int8.npz (q_0, scale_0, q_1, scale_1, …) and outputs/metrics.json."""

import json
import os

import numpy as np


def load(path):
    with np.load(path, allow_pickle=False) as data:
        return [data[f"arr_{i}"] for i in range(len(data.files))]


def quantize(weights):
    out = {}
    for i, w in enumerate(weights):
        scale = float(np.abs(w).max()) / 127 or 1.0
        out[f"q_{i}"] = np.clip(np.round(w / scale), -127, 127).astype(np.int8)
        out[f"scale_{i}"] = np.float32(scale)
    return out


def main():
    with open("target.json") as f:
        target = json.load(f)
    weights = load("model/model.npz")
    quantized = quantize(weights)
    np.savez("outputs/model_int8.npz", **quantized)
    error = max(float(np.max(np.abs(w - quantized[f"q_{i}"] * quantized[f"scale_{i}"]))) for i, w in enumerate(weights))
    with open("outputs/metrics.json", "w") as f:
        json.dump({"restructuring": target.get("restructure", "int8"), "max_abs_weight_error": round(error, 6),
                   "bytes_before": sum(w.nbytes for w in weights),
                   "bytes_after": os.path.getsize("outputs/model_int8.npz")}, f)


if __name__ == "__main__":
    main()
