#!/bin/sh
# The data annotator's task: for each file in annotation_files/, write outputs/<file>_annotations.json.
# Runs in the agent's sandbox (no network, only this folder writable) with the system's python3.
#
# This first version records each image's size from its JPEG header and the labels it was asked for;
# the object-detection script (template matching of annotation_samples/) replaces it.
set -eu
mkdir -p outputs
python3 - <<'PY'
import json, pathlib, struct

def jpeg_size(data: bytes):
    i = 2
    while i + 9 < len(data):
        if data[i] != 0xFF:
            i += 1
            continue
        marker, length = data[i + 1], struct.unpack(">H", data[i + 2:i + 4])[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", data[i + 5:i + 9])
            return width, height
        i += 2 + length
    return None

samples = sorted(p.stem for p in pathlib.Path("annotation_samples").glob("*.jpg"))
for image in sorted(pathlib.Path("annotation_files").glob("*.jpg")):
    size = jpeg_size(image.read_bytes())
    record = {"file": image.name, "width": size[0] if size else None, "height": size[1] if size else None,
              "labels_requested": samples, "annotations": []}
    (pathlib.Path("outputs") / f"{image.stem}_annotations.json").write_text(json.dumps(record, indent=2))
PY
