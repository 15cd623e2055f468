#!/bin/sh
# The data annotator's task: find the annotation_samples (one per class label) in each file of
# annotation_files/ and write COCO annotations to outputs/ (one file per image and
# outputs/annotations_coco.json). Runs in the agent's sandbox with the agent's python3 (OpenCV, numpy).
set -eu
python3 detect.py
