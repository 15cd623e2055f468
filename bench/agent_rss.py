"""A single worker agent's memory: ``agent run`` of an annotator against a devnet, its VmRSS once idle
(connected, following, nothing to do: read once it has held steady for 4 s), and the heavy libraries it
has mapped.

    python bench/agent_rss.py [--wait 8] [--before REV] [--json]

``--before REV`` runs REV's agent (its code from ``git archive``) and this tree's against the same devnet,
one after the other, and prints both.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from decentralml_core.testing.devnet_process import DevnetProcess  # noqa: E402


def status_kb(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "RssAnon", "RssFile"):
            fields[name] = int(value.split()[0])
    return fields


def idle_rss(tree: Path, url: str, scratch: Path, wait_s: float) -> dict:
    config = scratch / f"annotator-{len(list(scratch.iterdir()))}.yaml"
    config.write_text(yaml.safe_dump({"role": "annotator", "node": url, "key": {"dev": "Bob"},
                                      "state_dir": str(config.with_suffix("")), "storage": {"root": str(scratch / "store")},
                                      "metrics_port": 0}))  # /metrics served, as configs/annotator.yaml does
    with open(config.with_suffix(".log"), "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "agents.cli", "--log-level", "warning", "agent", "run", str(config)],
                                stdout=log, stderr=subprocess.STDOUT, cwd=tree, env={**os.environ, "PYTHONPATH": str(tree)})
    try:
        time.sleep(wait_s)
        readings: list[int] = []
        while len(readings) < 5 or max(readings[-5:]) - min(readings[-5:]) > 512:  # steady for 4 s: started, idle
            if proc.poll() is not None or len(readings) > 120:
                raise RuntimeError(f"the agent exited or never settled: {config.with_suffix('.log').read_text()[-500:]}")
            readings.append(status_kb(proc.pid)["VmRSS"])
            time.sleep(1)
        found = status_kb(proc.pid)
        maps = Path(f"/proc/{proc.pid}/maps").read_text()
        heavy = sorted(m for m in ("cv2", "numpy", "pycocotools", "botocore", "sklearn", "torch") if f"/{m}" in maps)
    finally:
        proc.terminate()
        proc.wait(60)
    return {"rss_mb": round(found["VmRSS"] / 1024, 1), "anon_mb": round(found.get("RssAnon", 0) / 1024, 1),
            "file_mb": round(found.get("RssFile", 0) / 1024, 1), "heavy_libraries_mapped": heavy}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wait", type=float, default=8.0, help="seconds from start to the reading")
    parser.add_argument("--before", metavar="REV")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="decentralml-agent-rss-") as tmp, \
            DevnetProcess("--log-level", "warning") as node:
        trees = [("this tree", ROOT)]
        if args.before:
            old = Path(tmp) / "before"
            old.mkdir()
            archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.before], check=True,
                                     capture_output=True).stdout
            subprocess.run(["tar", "-x", "-C", str(old)], input=archive, check=True)
            trees.insert(0, (args.before, old))
        scratch = Path(tmp) / "agents"
        scratch.mkdir()
        rows = [{"code": label, **idle_rss(tree, node.url, scratch, args.wait)} for label, tree in trees]
    if args.json:
        print(json.dumps(rows))
    else:
        for row in rows:
            print(f"{row['code']:<12} idle agent run (annotator): {row['rss_mb']} MB VmRSS "
                  f"(anon {row['anon_mb']}, files {row['file_mb']}); mapped: {', '.join(row['heavy_libraries_mapped']) or '-'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
