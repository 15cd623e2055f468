#!/bin/sh
# Model contributor, one round of a federated campaign: train the round's global model
# (model/global.npz) on this contributor's private data ($DECENTRALML_DATA, mounted read-only at
# /data) for the epochs round.json asks, and write only the trained weights and counts to outputs/.
# Runs in the sandbox; the agent shares its python3 + numpy (sandbox.share_python).
set -eu
mkdir -p outputs
exec python3 train.py
