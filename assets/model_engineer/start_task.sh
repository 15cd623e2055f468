#!/bin/sh
# Model engineer: restructure model/model.json for deployment (weights quantized to int8 per layer),
# check it against the original on model/probe.csv, write the new model and the comparison to outputs/.
set -eu
mkdir -p outputs
python3 - <<'PY'
import json
import numpy as np

model = json.load(open("model/model.json"))
probe = np.loadtxt("model/probe.csv", delimiter=",")

def forward(layers, x):
    for i, layer in enumerate(layers):
        x = x @ np.asarray(layer["weights"]).T + np.asarray(layer["bias"])
        if i < len(layers) - 1:
            x = np.maximum(x, 0)
    return x

quantized = []
for layer in model["layers"]:
    w = np.asarray(layer["weights"])
    scale = float(np.abs(w).max() / 127) or 1.0
    q = np.round(w / scale).astype(np.int8)
    quantized.append({"name": layer["name"], "weights_int8": q.tolist(), "scale": scale, "bias": layer["bias"]})
restored = [{"weights": np.asarray(l["weights_int8"]) * l["scale"], "bias": l["bias"]} for l in quantized]
error = float(np.max(np.abs(forward(model["layers"], probe) - forward(restored, probe))))
json.dump({"layers": quantized}, open("outputs/model_int8.json", "w"))
json.dump({"restructuring": "int8 weight quantization", "max_abs_output_error": round(error, 6),
           "bytes_before": sum(np.asarray(l["weights"]).size * 8 for l in model["layers"]),
           "bytes_after": sum(np.asarray(l["weights_int8"]).size for l in quantized)},
          open("outputs/metrics.json", "w"), indent=2)
PY
