"""How long the ``decentralml`` command takes before it does anything: this tree against an earlier one.

    python bench/cli_latency.py                 # against the tree at `main`
    python bench/cli_latency.py --before REV --runs 7

Both trees run with this virtualenv's Python, side by side (runs interleaved, so a busy machine slows
both alike): ``decentralml --help`` and ``decentralml task list`` against a devnet holding 20 tasks.
Prints the median wall time and peak RSS of each, and their ratio. Both trees' modules are compiled to
bytecode first, as pip does at install and as Python does on a first run (where PYTHONDONTWRITEBYTECODE is
set, as on our CI machines, every run would otherwise compile ~30 modules from source: ~0.1 s each time).
"""

from __future__ import annotations

import argparse
import compileall
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from decentralml_core.testing.devnet_process import DevnetProcess  # noqa: E402

CASES = {"--help": ["--help"], "task list": ["task", "list", "--url", "{url}"]}


def checkout(rev: str, into: Path) -> Path:
    """The tree at ``rev`` (git archive: the working copy is untouched)."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev], capture_output=True, check=True).stdout
    path = into / "tree.tar"
    path.write_bytes(archive)
    with tarfile.open(path) as tar:
        tar.extractall(into / "before", filter="data")
    return into / "before"


def compile_tree(tree: Path) -> None:
    for package in ("agents", "decentralml_core"):
        compileall.compile_dir(tree / package, quiet=1)


def run_once(tree: Path, argv: list[str]) -> float:
    """Wall seconds of one ``decentralml ARGV`` run from ``tree``."""
    env = {**os.environ, "PYTHONPATH": str(tree), "COLUMNS": "120"}
    script = "import sys; from agents.cli import main; sys.exit(main())"
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", script, *argv], env=env, cwd=tree, capture_output=True, timeout=120)
    wall = time.perf_counter() - started
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed in {tree}: {out.stderr.decode()[-500:]}")
    return wall


def peak_rss_mb(tree: Path, argv: list[str]) -> float:
    """Peak RSS of one run, from the child's own rusage (a fresh process per measurement)."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    probe = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], capture_output=True); "
             "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    script = "import sys; from agents.cli import main; sys.exit(main())"
    out = subprocess.run([sys.executable, "-c", probe, sys.executable, "-c", script, *argv], env=env, cwd=tree,
                         capture_output=True, text=True, timeout=120)
    return int(out.stdout.strip()) / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default="main", help="the earlier tree's git revision (default: %(default)s)")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cli-latency-") as scratch, DevnetProcess() as node:
        before = checkout(args.before, Path(scratch))
        trees = {"before": before, "after": ROOT}
        for tree in trees.values():
            compile_tree(tree)
        seed = [sys.executable, "-c", "import sys; from agents.cli import main; sys.exit(main())", "task", "create",
                "--url", node.url, "--dev-key", "alice", "--question", "q", "--pays", "1000planck",
                "--annotation-type", "Image", "--files", "a.jpg", "--json"]
        for _ in range(20):
            subprocess.run(seed, check=True, capture_output=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
        print(f"decentralml start-up, median of {args.runs} (before: {args.before}; same Python, runs interleaved)")
        print(f"{'command':<12} {'before s':>9} {'after s':>9} {'ratio':>7} {'before MB':>10} {'after MB':>9}")
        for name, template in CASES.items():
            argv = [a.format(url=node.url) for a in template]
            walls: dict[str, list[float]] = {"before": [], "after": []}
            for _ in range(args.runs):
                for label, tree in trees.items():
                    walls[label].append(run_once(tree, argv))
            rss = {label: peak_rss_mb(tree, argv) for label, tree in trees.items()}
            b, a = statistics.median(walls["before"]), statistics.median(walls["after"])
            print(f"{name:<12} {b:>9.3f} {a:>9.3f} {b / a:>6.1f}x {rss['before']:>10.0f} {rss['after']:>9.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
