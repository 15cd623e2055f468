"""What a worker agent's process imports: not the creator's or a contributor's heavy modules (OpenCV,
numpy, pycocotools, aiobotocore: ~50 MB of an idle annotator's 132 MB RSS, docs/benchmarks.md), which load
on first use in the processes that need them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("cv2", "numpy", "pycocotools", "aiobotocore", "botocore", "jinja2")


def loaded_after(code: str, tmp_path: Path) -> list[str]:
    probe = f"import sys\n{code}\nprint('LOADED', sorted(m for m in {HEAVY!r} if m in sys.modules))"
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, cwd=tmp_path,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert run.returncode == 0, run.stderr
    return eval(run.stdout.split("LOADED", 1)[1])


def test_a_worker_agent_loads_none_of_the_creators_heavy_modules(tmp_path):
    config = tmp_path / "annotator.yaml"
    config.write_text(yaml.safe_dump({"role": "annotator", "node": "ws://127.0.0.1:9", "key": {"dev": "Bob"},
                                      "state_dir": str(tmp_path / "state"), "storage": {"root": str(tmp_path / "s")}}))
    worker = ("from agents.config import load_config\nimport agents.cli, agents.commands.agent, agents.commands.farm\n"
              "import agents.runtime, agents.engine, agents.worker\n"
              f"load_config({str(config)!r})")
    assert loaded_after(worker, tmp_path) == []


def test_the_heavy_modules_still_load_where_they_are_used(tmp_path):
    assert loaded_after("from decentralml_core.storage import S3Store", tmp_path) == ["aiobotocore", "botocore"]
    creator = ("from agents.validators import IouConsensusParams, load_validator\n"
               "load_validator(IouConsensusParams(name='iou_consensus'))")
    assert "pycocotools" in loaded_after(creator, tmp_path)
    assert "cv2" in loaded_after("from agents.images import _decoded_size\n_decoded_size('x.jpg', 0, 0)", tmp_path)


def test_a_devnet_starts_without_substrate_interface(tmp_path):
    """A devnet's process imports its server and command line, and builds its chain, without substrate-interface
    (~0.3 s of CPU of a ~1.4 s start; the test suite starts ~50 devnets): its genesis endows the dev accounts
    from keys.DEV_PUBLIC_KEYS."""
    probe = ("import sys, tempfile\nimport decentralml_core.devnet.cli, decentralml_core.devnet.server\n"
             "from decentralml_core.devnet.chain import Chain\nfrom decentralml_core.devnet.metadata import runtime\n"
             "from decentralml_core.devnet.store import ChainDatabase\n"
             "Chain(runtime('full'), ChainDatabase(tempfile.mktemp()))\n"
             "print('LOADED', [m for m in ('substrateinterface',) if m in sys.modules])")
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, cwd=tmp_path,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert run.returncode == 0, run.stderr
    assert eval(run.stdout.split("LOADED", 1)[1]) == []
