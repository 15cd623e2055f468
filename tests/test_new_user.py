"""A new user's mistakes, made on a real devnet: each gets one line on stderr naming the problem and the fix,
a non-zero exit and no traceback — and nothing is lost (no submission stranded, no escrow locked, no task
half-created)."""

from __future__ import annotations

import json
import os
import pty
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from cli_runner import CLI, decentralml

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT / "assets" / "data_annotator"
ALICE = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"
UNIT = 10**12
SCRATCH = Path(tempfile.mkdtemp(prefix="new-user-"))  # a command's cwd: what it writes stays out of the repo


def cli(devnet, *args: str, key: str | None = None, cwd: Path | None = None,
        process: bool = False) -> subprocess.CompletedProcess:
    """``decentralml ARGS`` on ``devnet``, in this process (``process``: as a real one, see cli_runner.py)."""
    return decentralml("--log-level", "error", *args, env={"DECENTRALML_URL": devnet.url, "COLUMNS": "200",
                                                            "DECENTRALML_KEY": key}, cwd=cwd or SCRATCH, process=process)


def js(devnet, *args: str, **kw):
    out = cli(devnet, *args, "--json", **kw)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def one_line(out: subprocess.CompletedProcess, command: str, *words: str, status: int = 1) -> str:
    """The failure is exactly one stderr line, prefixed with the full subcommand, holding ``words``."""
    assert out.returncode == status, (out.returncode, out.stderr)
    assert "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith(f"decentralml {command}: "), lines[0]
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


def balance(devnet, address: str = ALICE) -> int:
    return js(devnet, "account", "balance", address)["free"]


@pytest.fixture(scope="module")
def market(devnet, tmp_path_factory):
    """The tutorial's start: Alice publishes the example task (1.5 UNIT, two assignments), Bob takes one."""
    root = tmp_path_factory.mktemp("user")
    created = js(devnet, "task", "create", "--dev-key", "alice", "--question", "Find the samples", "--pays", "1.5",
                 "--max-assignments", "2", "--strategy", "AutoAccept", "--annotation-type", "Image",
                 "--labels", "circle,square,triangle", "--assets", str(ASSETS), "--store-root", str(root / "store"),
                 cwd=root)
    assigned = js(devnet, "task", "assign", str(created["task_id"]), "--dev-key", "bob",
                  "--store-root", str(root / "store"), cwd=root)
    return {"root": root, "task_id": created["task_id"], "submission_id": assigned["submission_id"],
            "escrow": created["escrow"], "work_dir": root / assigned["work_dir"]}


def test_amounts_are_unit_and_checked_before_anything_is_published(devnet, market, tmp_path):
    assert market["escrow"] == 2 * 3 * UNIT // 2  # --pays 1.5 is 1.5 UNIT, × 2 assignments
    tasks_before, alice_before = len(js(devnet, "task", "list")), balance(devnet)
    store = tmp_path / "store"
    for pays, words in (("-5", ["'-5' is not an amount", "1.5"]), ("1.5x", ["not an amount"]),
                        ("0.0000000000001", ["finer than the chain counts", "12 decimals"])):
        out = cli(devnet, "task", "create", "--dev-key", "alice", "--question", "q", "--pays", pays,
                  "--annotation-type", "Image", "--assets", str(ASSETS), "--store-root", str(store))
        one_line(out, "task create", "--pays", "see `decentralml task create --help`", *words, status=2)
    assert not store.exists()  # nothing uploaded
    assert len(js(devnet, "task", "list")) == tasks_before and balance(devnet) == alice_before


def test_a_missing_or_scriptless_assets_folder_is_refused_before_any_escrow(devnet, tmp_path):
    tasks_before, alice_before = len(js(devnet, "task", "list")), balance(devnet)
    out = cli(devnet, "task", "create", "--dev-key", "alice", "--question", "q", "--pays", "1",
              "--annotation-type", "Image", "--assets", str(tmp_path / "nope"))
    one_line(out, "task create", "no such folder", "assets/data_annotator")
    (tmp_path / "bare").mkdir()
    out = cli(devnet, "task", "create", "--dev-key", "alice", "--question", "q", "--pays", "1",
              "--annotation-type", "Image", "--assets", str(tmp_path / "bare"))
    one_line(out, "task create", "has no start_task.sh")
    (tmp_path / "bare" / "start_task.sh").write_text("true\n")
    out = cli(devnet, "task", "create", "--dev-key", "alice", "--question", "q", "--pays", "1",
              "--annotation-type", "Image", "--assets", str(tmp_path / "bare"))
    one_line(out, "task create", "has no annotation_files/", "--files")
    assert len(js(devnet, "task", "list")) == tasks_before and balance(devnet) == alice_before


def test_a_mistyped_result_folder_is_not_sent_and_the_right_one_still_can_be(devnet, market):
    sid, root = str(market["submission_id"]), market["root"]
    out = cli(devnet, "result", "send", sid, "--path", "work/nope", "--dev-key", "bob", cwd=root)
    one_line(out, "result send", "work/nope: no such folder", "not a content reference", "give the outputs folder")
    out = cli(devnet, "result", "send", sid, "--path",
              "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku", "--dev-key", "bob", cwd=root)
    one_line(out, "result send", "is not in the local store", "publish the folder")
    out = cli(devnet, "result", "send", sid, "--path", "work", "--dev-key", "charlie", cwd=root)
    one_line(out, "result send", f"submission {sid} is another worker's", "sign with the key that took")
    [mine] = js(devnet, "result", "list", "--task", str(market["task_id"]))
    assert (mine["status"], mine["result_path"]) == ("Assigned", None)  # nothing stranded: still open

    outputs = market["work_dir"] / "outputs"
    outputs.mkdir()
    (outputs / "boxes.json").write_text("[]")
    sent = js(devnet, "result", "send", sid, "--path", str(outputs), "--dev-key", "bob", cwd=root)
    assert sent["result_path"].startswith("bafkrei")
    out = cli(devnet, "result", "send", sid, "--path", str(outputs), "--dev-key", "bob", cwd=root)
    one_line(out, "result send", f"submission {sid} already has a result (PendingValidation)",
             f"decentralml result list --task {market['task_id']}")


def test_a_validator_on_a_task_that_takes_none_is_refused_and_nothing_is_paid(devnet, market):
    task_id = str(market["task_id"])
    out = cli(devnet, "result", "validate", task_id, "--validator", "coco_schema", "--dev-key", "alice")
    one_line(out, "result validate", "uses AutoAccept", "takes no --validator", "drop --validator")
    assert all(r["paid_amount"] is None for r in js(devnet, "result", "list", "--task", task_id))


def test_a_rejection_and_its_reason_are_visible_to_the_worker(devnet, market):
    task_id, sid = str(market["task_id"]), market["submission_id"]
    assert js(devnet, "result", "reject", str(sid), "--reason", "boxes off by 10 px", "--dev-key", "alice") == \
        {"rejected": [sid], "already_decided": []}
    [mine] = js(devnet, "result", "list", "--task", task_id)
    assert (mine["status"], mine["verdict_reason"]) == ("Rejected", "boxes off by 10 px")
    assert js(devnet, "task", "show", task_id)["verdicts"][str(sid)] == "Rejected: boxes off by 10 px"
    table = cli(devnet, "result", "list", "--task", task_id).stdout
    assert "boxes off by 10 px" in table


def test_unknown_ids_are_one_line_and_non_zero(devnet):
    one_line(cli(devnet, "result", "list", "--task", "999"), "result list", "no task 999", "decentralml task list")
    one_line(cli(devnet, "task", "show", "999"), "task show", "no task 999")
    one_line(cli(devnet, "task", "assign", "999", "--dev-key", "eve"), "task assign", "no task 999")
    one_line(cli(devnet, "result", "send", "999", "--result", "{}", "--dev-key", "eve"), "result send",
             "no submission 999")
    one_line(cli(devnet, "result", "accept", "999", "--dev-key", "alice"), "result accept", "no submission 999")


def test_keys_urls_and_nodes_named_in_plain_words(devnet):
    out = cli(devnet, "account", "balance", "--dev-key", "mallory")
    one_line(out, "account balance", "unknown dev account 'mallory'", "Alice, Bob, Charlie, Dave, Eve, Ferdie",
             status=2)
    out = cli(devnet, "task", "list", "--url", "localhost:9944")
    one_line(out, "task list", "'localhost:9944' has no scheme", "ws://localhost:9944", status=2)
    out = cli(devnet, "task", "list", "--url", "ws://127.0.0.1:9", process=True)  # a real process: no traceback
    one_line(out, "task list", "is `decentralml devnet` running?", "(tried ws://127.0.0.1:9")
    out = cli(devnet, "task", "create", "--question", "q", "--pays", "1", "--annotation-type", "Image",
              "--files", "a.jpg")
    one_line(out, "task create", "no signing key", "--dev-key")
    out = cli(devnet, "task", "show", "999", "--debug", process=True)  # --debug: the traceback too
    assert out.returncode == 1 and "Traceback" in out.stderr and "no task 999" in out.stderr.splitlines()[-1]


def test_an_account_without_funds_is_told_how_to_get_them(devnet, market):
    from substrateinterface import Keypair

    poor = Keypair.create_from_uri("//NewUser").ss58_address
    out = cli(devnet, "task", "assign", str(market["task_id"]), key="//NewUser", cwd=market["root"])
    one_line(out, "task assign", f"{poor} cannot pay the transaction fee", "decentralml account transfer")
    sent = js(devnet, "account", "transfer", poor, "2.5", "--dev-key", "alice")
    assert sent["amount"] == 5 * UNIT // 2 and sent["amount_units"] == "2.5 UNIT"
    assert js(devnet, "account", "transfer", poor, "1000planck", "--dev-key", "alice")["amount"] == 1000
    assert balance(devnet, poor) == 5 * UNIT // 2 + 1000
    assert js(devnet, "task", "assign", str(market["task_id"]), "--store-root", str(market["root"] / "store"),
              key="//NewUser", cwd=market["root"])["submission_id"] > 0
    out = cli(devnet, "account", "transfer", "nope", "1", "--dev-key", "alice")
    one_line(out, "account transfer", "'nope' is not an SS58 address")


def test_usage_mistakes_are_one_line_naming_the_subcommand(devnet):
    out = cli(devnet, "task", "lst", process=True)  # argparse's exit, as a real process ends
    one_line(out, "task", "invalid choice: 'lst'", "see `decentralml task --help`", status=2)
    out = cli(devnet, "task", "create", "--question", "q", process=True)
    one_line(out, "task create", "--pays", status=2)


HOSTILE_QUESTION = "Label \x1b[2J\x1b]0;owned\x07 \x1b]8;;http://127.0.0.1:1/x\x1b\\link\x1b]8;;\x1b\\ [blink red]BLINK[/]"
HOSTILE_LABELS = "cat,\x9b31mred,[link=http://127.0.0.1:1/]click[/link]"


def run_in_pty(args: list[str], env: dict, timeout: float = 90) -> bytes:
    """What ``args`` writes to a terminal: the command runs with a pty as stdout and stderr."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=follower, stderr=follower, env=env)
    os.close(follower)
    chunks, deadline = [], time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 0.5)
            if ready:
                try:
                    data = os.read(leader, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not data:
                    break
                chunks.append(data)
            elif proc.poll() is not None:
                break
    finally:
        os.close(leader)
        proc.wait(timeout=30)
    assert proc.returncode == 0, b"".join(chunks)
    return b"".join(chunks)


def test_chain_text_reaches_a_terminal_escaped_never_obeyed(devnet):
    created = js(devnet, "task", "create", "--dev-key", "alice", "--question", HOSTILE_QUESTION, "--pays", "1",
                 "--annotation-type", "Image", "--files", "a.jpg", "--labels", HOSTILE_LABELS)
    env = {**os.environ, "DECENTRALML_URL": devnet.url, "COLUMNS": "400", "TERM": "xterm-256color"}
    env.pop("NO_COLOR", None)
    for command in (["task", "list"], ["task", "show", str(created["task_id"])],
                    ["result", "list", "--task", str(created["task_id"])]):
        screen = run_in_pty([shutil.which(CLI) or CLI, "--log-level", "error", *command], env)
        for raw in (b"\x1b[2J", b"\x1b]0;", b"\x1b]8;", b"\x07", b"\xc2\x9b", b"\x1b[5m"):
            assert raw not in screen, (command, raw)
        if command[0] == "task":  # the question is in these
            text = screen.decode()
            assert "\\x1b[2J" in text and "[blink red]BLINK[/]" in text  # shown, escaped, as typed
    show = run_in_pty([CLI, "--log-level", "error", "task", "show", str(created["task_id"])], env).decode()
    assert "[link=http://127.0.0.1:1/]click[/link]" in show and "\\x9b31mred" in show
