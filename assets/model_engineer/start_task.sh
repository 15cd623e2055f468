#!/bin/sh
# Model engineer: restructure model/model.npz toward target.json (int8 weights: a quarter of the
# float32 size), write the new model and its numbers to outputs/. The creator checks the result on its
# own private test set (accuracy drop, size) before paying. Runs in the sandbox with the agent's numpy.
set -eu
mkdir -p outputs
exec python3 quantize.py
