"""The market commands as a person types them: create, list, assign, send, decide, balance; JSON and tables."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from cli_runner import CLI, decentralml


def cli(devnet, *args: str, key: str | None = None, ok: bool = True, process: bool = False) -> subprocess.CompletedProcess:
    """``decentralml ARGS`` on ``devnet``, in this process (``process``: as a real one, see cli_runner.py)."""
    out = decentralml("--log-level", "warning", *args, env={"DECENTRALML_URL": devnet.url, "COLUMNS": "200",
                                                             "DECENTRALML_KEY": key}, timeout=60, process=process)
    if ok:
        assert out.returncode == 0, out.stderr
    return out


def js(devnet, *args: str, key: str | None = None):
    return json.loads(cli(devnet, *args, "--json", key=key).stdout)


def test_create_assign_send_accept_from_the_command_line(devnet, tmp_path):
    created = js(devnet, "task", "create", "--question", "Label the cars", "--pays", "5000000planck",
                 "--max-assignments", "2", "--strategy", "AutoAccept", "--annotation-type", "Image",
                 "--files", "file_1.jpg", "file_2.jpg", "--samples", "sample_1.jpg", "--labels", "car",
                 "--annotation-json", '{"script": "start_task.sh"}', key="//Alice")
    task_id = created["task_id"]
    assert created["escrow"] == 10_000_000
    listed = js(devnet, "task", "list", "--open")
    assert task_id in [t["task_id"] for t in listed]
    table = cli(devnet, "task", "list", "--type", "DataAnnotators").stdout
    assert "Label the cars" in table and "DataAnnotators" in table
    assigned = js(devnet, "task", "assign", str(task_id), "--dev-key", "bob")
    sid = assigned["submission_id"]
    outputs = tmp_path / "outputs"
    outputs.mkdir()
    (outputs / "boxes.json").write_text('{"boxes": 2}')
    sent = js(devnet, "result", "send", str(sid), "--result", '{"boxes": 2}', "--path", str(outputs),
              "--store-root", str(tmp_path / "store"), "--dev-key", "bob")
    [pending] = js(devnet, "result", "list", "--task", str(task_id), "--status", "PendingValidation")
    assert (pending["submission_id"], pending["result_path"]) == (sid, sent["result_path"])
    before = js(devnet, "account", "balance", "5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty")["free"]
    outcome = js(devnet, "result", "validate", str(task_id), key="//Alice")
    assert outcome == {"accepted": [sid], "rejected": [], "waiting": []}
    after = js(devnet, "account", "balance", "--dev-key", "bob")["free"]
    assert after == before + 5_000_000
    assert js(devnet, "result", "accept", str(sid), key="//Alice") == {"accepted": [], "already_decided": [sid]}
    shown = js(devnet, "task", "show", str(task_id))
    assert shown["results"] == [sid] and shown["creator"] == "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"


def test_errors_are_one_line_without_traceback(devnet):
    out = cli(devnet, "task", "assign", "424242", "--dev-key", "eve", ok=False, process=True)  # a real process
    assert out.returncode == 1
    assert "decentralml task assign: no task 424242 on this chain" in out.stderr and "Traceback" not in out.stderr
    out = cli(devnet, "task", "create", "--question", "q", "--pays", "1000planck", "--annotation-type", "Image",
              "--files", "a.jpg", ok=False)
    assert out.returncode == 1 and "no signing key" in out.stderr
    out = cli(devnet, "task", "create", "--question", "q" * 2049, "--pays", "1000planck", key="//Alice", ok=False)
    assert "question is 2049 bytes, the chain accepts at most 2048" in out.stderr
    out = cli(devnet, "task", "show", "424242", "--debug", ok=False, process=True)
    assert out.returncode == 1 and "Traceback" in out.stderr and "no task 424242" in out.stderr
    out = cli(devnet, "task", "list", "--url", "ws://127.0.0.1:9", ok=False)
    assert out.returncode == 1 and "is `decentralml devnet` running? (tried ws://127.0.0.1:9" in out.stderr


def test_assets_travel_from_creator_to_annotator_and_outputs_back(devnet, tmp_path):
    """create --assets → assign (fetch + verify) → run start_task.sh → result send --path → creator fetches."""
    assets = tmp_path / "assets"
    (assets / "annotation_files").mkdir(parents=True)
    (assets / "annotation_samples").mkdir()
    (assets / "annotation_files" / "file_1.jpg").write_bytes(os.urandom(300_000))
    (assets / "annotation_samples" / "sample_1.jpg").write_bytes(b"sample")
    (assets / "start_task.sh").write_text(
        "mkdir -p outputs\nfor f in annotation_files/*; do wc -c < \"$f\" > \"outputs/$(basename \"$f\").size\"; done\n")
    creator_store, annotator_store = str(tmp_path / "creator-store"), str(tmp_path / "annotator-store")
    created = js(devnet, "task", "create", "--question", "Label the samples", "--pays", "1000000planck",
                 "--annotation-type", "Image", "--assets", str(assets), "--store-root", creator_store,
                 "--annotation-json", '{"detector": {"threshold": 0.6}}', key="//Alice")
    task = js(devnet, "task", "show", str(created["task_id"]))
    assert task["annotation_files"] == ["annotation_files/file_1.jpg"]
    terms = json.loads(task["annotation_json"])  # the creator's parameters, with the asset references added
    assert terms["script"] == "start_task.sh" and terms["detector"] == {"threshold": 0.6}
    # the annotator's store is empty: it fetches from the creator's over the shared disk here
    # (other machines use `decentralml storage serve` + --gateway, see test_storage.py)
    work = tmp_path / "work"
    assigned = js(devnet, "task", "assign", str(created["task_id"]), "--dev-key", "charlie",
                  "--store-root", creator_store, "--work-dir", str(work))
    folder = Path(assigned["work_dir"])
    assert (folder / "annotation_files" / "file_1.jpg").read_bytes() == \
        (assets / "annotation_files" / "file_1.jpg").read_bytes()
    ran = js(devnet, "task", "run", str(created["task_id"]), "--work-dir", str(work))  # in the sandbox
    assert (ran["status"], ran["outputs"], ran["isolation"]) == ("ok", ["file_1.jpg.size"], "bubblewrap")
    assert (folder / "outputs" / "file_1.jpg.size").read_text().strip() == "300000"
    sent = js(devnet, "result", "send", str(assigned["submission_id"]), "--path", str(folder / "outputs"),
              "--store-root", annotator_store, "--dev-key", "charlie")
    assert sent["result_path"].startswith("bafkrei")
    fetched = subprocess.run([CLI, "storage", "get", sent["result_path"], str(tmp_path / "review"),
                              "--root", annotator_store], capture_output=True, text=True, timeout=60)
    assert fetched.returncode == 0, fetched.stderr
    assert (tmp_path / "review" / "file_1.jpg.size").read_text().strip() == "300000"


def test_close_refunds_the_unused_escrow(devnet):
    created = js(devnet, "task", "create", "--question", "Short task", "--pays", "1000000planck", "--max-assignments", "3",
                 "--expires-in", "2", "--annotation-type", "Image", "--files", "a.jpg", key="//Alice")
    out = cli(devnet, "task", "close", str(created["task_id"]), key="//Alice", ok=False)
    assert out.returncode == 1 and f"task close: task {created['task_id']} cannot be closed yet" in out.stderr
    for _ in range(3):  # let it expire: a failed call is still included, so each makes a block
        cli(devnet, "task", "assign", "999999", "--dev-key", "ferdie", ok=False)
    closed = js(devnet, "task", "close", str(created["task_id"]), key="//Alice")
    assert closed["refunded"] == 3_000_000


def test_credentials_reach_the_chain_only_when_asked(devnet, monkeypatch):
    monkeypatch.setenv("S3_READ_TOKEN", "token-123")
    common = ["task", "create", "--question", "q", "--pays", "1000planck", "--annotation-type", "Image", "--files", "a.jpg",
              "--credentials-env", "S3_READ_TOKEN"]
    out = cli(devnet, *common, key="//Alice", ok=False)
    assert out.returncode == 1 and "refusing to put storage credentials on chain" in out.stderr
    created = js(devnet, *common, "--publish-credentials", key="//Alice")
    task = js(devnet, "task", "show", str(created["task_id"]))
    assert task["annotation_files_storage_credentials"] == "token-123"
    plain = js(devnet, "task", "create", "--question", "q", "--pays", "1000planck", "--annotation-type", "Image",
               "--files", "a.jpg", key="//Alice")
    assert js(devnet, "task", "show", str(plain["task_id"]))["annotation_files_storage_credentials"] == ""
