"""Model tasks from the command line: ``task create --type ModelEngineer|ModelContributor --assets DIR``
publishes the folder and fills the type's path field; a local path is refused with the fix."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from cli_runner import decentralml

from decentralml_core.storage.cid import parse

ROOT = Path(__file__).resolve().parents[1]


def cli(devnet, tmp_path, *args: str) -> subprocess.CompletedProcess:
    """``decentralml ARGS`` on ``devnet``, in this process (see cli_runner.py)."""
    return decentralml("--log-level", "warning", *args, env={"DECENTRALML_URL": devnet.url, "COLUMNS": "200",
                                                              "DECENTRALML_STORE": str(tmp_path / "store")}, timeout=60)


@pytest.mark.parametrize("task_type,field,folder", [
    ("ModelEngineer", "model_engineer_path", ROOT / "assets" / "model_engineer"),
    ("ModelContributor", "model_contributor_script_path", ROOT / "assets" / "federated_digits" / "script"),
])
def test_model_tasks_publish_their_folder_and_a_worker_gets_it(devnet, tmp_path, task_type, field, folder):
    out = cli(devnet, tmp_path, "task", "create", "--type", task_type, "--question", "q", "--pays", "1000",
              "--assets", str(folder), "--dev-key", "alice", "--json")
    assert out.returncode == 0, out.stderr
    task_id = json.loads(out.stdout)["task_id"]
    shown = json.loads(cli(devnet, tmp_path, "task", "show", str(task_id), "--json").stdout)
    assert parse(shown[field]) and shown["task_type"] == task_type
    assigned = cli(devnet, tmp_path, "task", "assign", str(task_id), "--dev-key", "bob", "--work-dir",
                   str(tmp_path / "work"), "--json")
    assert assigned.returncode == 0, assigned.stderr
    work = Path(json.loads(assigned.stdout)["work_dir"])
    assert (work / "start_task.sh").read_bytes() == (folder / "start_task.sh").read_bytes()


def test_a_local_path_is_refused_with_the_fix_before_anything_is_signed(devnet, tmp_path):
    out = cli(devnet, tmp_path, "task", "create", "--type", "ModelEngineer", "--question", "q", "--pays", "1000",
              "--path", str(ROOT / "assets" / "model_engineer"), "--dev-key", "alice")
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert "is not a content reference (CID)" in out.stderr and "--assets DIR" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    out = cli(devnet, tmp_path, "task", "create", "--type", "ModelContributor", "--question", "q", "--pays", "1000",
              "--dev-key", "alice")
    assert out.returncode == 1 and "--assets DIR" in out.stderr


def test_campaign_data_writes_the_private_sets(tmp_path, devnet):
    out = cli(devnet, tmp_path, "campaign", "data", str(tmp_path / "data"), "--contributors", "3", "--flip", "2",
              "--json")
    assert out.returncode == 0, out.stderr
    paths = json.loads(out.stdout)
    assert sorted(paths) == ["contributor-0", "contributor-1", "contributor-2", "test", "validation"]
    assert (Path(paths["contributor-2"]) / "train.npz").is_file()
