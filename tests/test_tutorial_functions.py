"""The tutorial's functions, async and in its synchronous call style, against a real devnet."""

from __future__ import annotations

import pytest
from substrateinterface import Keypair, SubstrateInterface

from decentralml_core import tasks, tutorial
from decentralml_core.chain import ChainClient, DispatchFailed
from decentralml_core.chain.model import SubmissionStatus, TaskStatus

PAYS = 2_000_000


def annotator_args(expiration_block: int, strategy: str = "AutoAccept", assignments: int = 2) -> dict:
    """The seed tutorial's create_task_data_annotator parameters (after substrate/sudoaccount/passphrase)."""
    return dict(task_type="DataAnnotators", question="Find and label the samples in each file",
                pays_amount=PAYS, max_assignments=assignments, validation_strategy=strategy,
                annotation_type="Image", annotation_media_samples=["sample_1.jpg", "sample_2.jpg"],
                annotation_files=["file_1.jpg", "file_2.jpg"], annotation_class_labels="sample_1,sample_2",
                annotation_class_coordinates=None, annotation_json='{"script": "start_task.sh"}',
                annotation_files_storage_type="IPFS", annotation_files_storage_credentials="")


@pytest.fixture
async def client(devnet):
    async with await ChainClient.connect(devnet.url, inclusion_timeout=30) as c:
        yield c


async def test_create_assign_send_and_auto_validate(client, keys):
    end = await client.block_number() + 200
    task_id = await tasks.create_task_data_annotator(end, client, keys["alice"], None, **annotator_args(end))
    listed = await tasks.list_task(client, open_only=True)
    assert task_id in [t.task_id for t in listed]
    sid = await tasks.assign_task(client, None, "//Bob", task_id)
    await tasks.send_task_result(client, keys["bob"], sid, '{"boxes": 4}', "bafy-outputs", "IPFS", "")
    waiting = await tasks.list_task_results(client, task_id, "PendingValidation")
    assert [s.submission_id for s in waiting] == [sid]
    bob = await client.free_balance(keys["bob"].ss58_address)
    outcome = await tasks.validate_task_results(client, keys["alice"], None, task_id)
    assert (outcome.accepted, outcome.rejected, outcome.waiting) == ([sid], [], [])
    assert await client.free_balance(keys["bob"].ss58_address) == bob + PAYS
    assert await tasks.accept_task_results(client, keys["alice"], None, [sid]) == []  # paid once


async def test_manual_and_custom_strategies(client, keys):
    end = await client.block_number() + 200
    manual = await tasks.create_task_data_annotator(end, client, None, "//Alice", **annotator_args(end, "ManualAccept"))
    custom = await tasks.create_task_data_annotator(end, client, None, "//Alice", **annotator_args(end, "CustomAccept"))
    sids = {}
    for task_id in (manual, custom):
        for name in ("charlie", "dave"):
            sid = await tasks.assign_task(client, keys[name], None, task_id)
            await tasks.send_task_result(client, keys[name], sid, f'{{"by": "{name}"}}', None, None, None)
            sids[(task_id, name)] = sid
    outcome = await tasks.validate_task_results(client, keys["alice"], None, manual)
    assert sorted(outcome.waiting) == sorted([sids[(manual, "charlie")], sids[(manual, "dave")]])
    assert await tasks.reject_task_results(client, keys["alice"], None, outcome.waiting, "not labelled") == \
        outcome.waiting

    async def charlie_only(submission):
        return "charlie" in submission.result, "only charlie's boxes are right"

    outcome = await tasks.validate_task_results(client, keys["alice"], None, custom, validator=charlie_only)
    assert (outcome.accepted, outcome.rejected) == ([sids[(custom, "charlie")]], [sids[(custom, "dave")]])
    results = {s.submission_id: s.status for s in await tasks.list_task_results(client, custom)}
    assert results == {sids[(custom, "charlie")]: SubmissionStatus.ACCEPTED,
                       sids[(custom, "dave")]: SubmissionStatus.REJECTED}
    with pytest.raises(ValueError, match="CustomAccept"):
        await tasks.validate_task_results(client, keys["alice"], None, custom)


async def test_engineer_and_contributor_tasks(client, keys):
    end = await client.block_number() + 200
    common = dict(question="Restructure the model", pays_amount=PAYS, max_assignments=1,
                  validation_strategy="ManualAccept")
    engineer = await tasks.create_task_model_engineer(end, client, keys["alice"], None, "ModelEngineer",
                                                      model_engineer_path="bafy-model", model_engineer_storage_type="S3",
                                                      model_engineer_storage_credentials=None, **common)
    contributor = await tasks.create_task_model_contributor(
        end, client, keys["alice"], None, "ModelContributor", model_contributor_script_path="train.py",
        model_contributor_script_storage_type="IPFS", model_contributor_script_storage_credentials=None, **common)
    found = {t.task_id: t for t in await tasks.list_task(client, task_type="ModelEngineer")}
    assert engineer in found and found[engineer].model_engineer_path == "bafy-model"
    assert [t.task_id for t in await tasks.list_task(client, task_type="ModelContributor")][-1] == contributor
    with pytest.raises(DispatchFailed, match="MissingModelEngineerPath"):
        await tasks.create_task_model_engineer(end, client, keys["alice"], None, "ModelEngineer",
                                               model_engineer_path=None, model_engineer_storage_type="S3",
                                               model_engineer_storage_credentials=None, **common)


def test_synchronous_call_style(devnet, keys):
    si = SubstrateInterface(url=devnet.url)
    end = si.get_block_number(None) + 200
    task_id = tutorial.create_task_data_annotator(end, si, keys["alice"], None, **annotator_args(end, assignments=1))
    sid = tutorial.assign_task(si, None, "//Eve", task_id)
    tutorial.send_task_result(devnet.url, Keypair.create_from_uri("//Eve"), sid, "{}", None, None, None)
    [task] = [t for t in tutorial.list_task(devnet.url) if t.task_id == task_id]
    assert task.status == TaskStatus.IN_PROGRESS
    si.close()
    with pytest.raises(ValueError, match="sudoaccount"):
        tutorial.assign_task(devnet.url, None, None, task_id)


async def test_secrets_never_reach_a_log_line(client, keys):
    from structlog.testing import capture_logs

    from decentralml_core.keys import KeyLoadError

    mnemonic = Keypair.generate_mnemonic()
    worker = Keypair.create_from_mnemonic(mnemonic)
    alice = keys["alice"]
    await client.submit(alice, "Balances", "transfer_keep_alive", {"dest": worker.ss58_address, "value": 10**15})
    end = await client.block_number() + 200
    with capture_logs() as logs:
        task_id = await tasks.create_task_data_annotator(end, client, alice, None, **annotator_args(end))
        sid = await tasks.assign_task(client, None, mnemonic, task_id)
        await tasks.send_task_result(client, worker, sid, "{}", None, None, None)
        with pytest.raises(KeyLoadError):
            await tasks.assign_task(client, None, mnemonic + " extra", task_id)
    text = repr(logs)
    events = [e["event"] for e in logs]
    assert {"task_created", "task_assigned", "task_result_sent", "extrinsic_submitted"} <= set(events)
    assert mnemonic.split()[0] not in text.split("'") and mnemonic not in text
    assert worker.ss58_address in text  # addresses are fine to log


def test_a_script_using_the_functions_sees_only_its_own_output(devnet):
    """The library's info lines (task_created, extrinsic_submitted…) stay out of a tutorial script's output."""
    import subprocess
    import sys

    script = ("from decentralml_core import tutorial\n"
              "from substrateinterface import Keypair\n"
              f"url = {devnet.url!r}\n"
              "end = tutorial.list_task(url) and 0\n"
              "task_id = tutorial.create_task_model_engineer(10**6, url, Keypair.create_from_uri('//Alice'), None,\n"
              "    'ModelEngineer', 'q', 1000, 1, 'ManualAccept', 'bafy-model', 'IPFS', '')\n"
              "print('task', task_id)\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("task ") and len(out.stdout.splitlines()) == 1, out.stdout
    assert out.stderr == "", out.stderr


async def test_an_assignment_whose_work_dir_exists_sets_the_old_one_aside(client, keys, tmp_path):
    """A devnet restarted with --tmp numbers tasks and submissions from 0 again: the work dir of the
    old chain's same ids is moved aside and the new task's assets fetched, never taken for them (before:
    `task assign` failed after its assignment had landed, leaving the worker with no folder)."""
    from structlog.testing import capture_logs

    from decentralml_core.storage import put_folder
    from decentralml_core.storage.local import LocalStore
    from decentralml_core.work import work_dir

    store = LocalStore(tmp_path / "store")
    assets = tmp_path / "assets"
    assets.mkdir()
    (assets / "start_task.sh").write_text("echo new task\n")
    ref = await put_folder(store, assets)
    end = await client.block_number() + 200
    args = {**annotator_args(end), "annotation_json": f'{{"assets": "{ref}"}}'}
    task_id = await tasks.create_task_data_annotator(end, client, keys["alice"], None, **args)
    root = tmp_path / "work"
    coming = await client.storage("DecentralMLModule", "TaskResultSubmissionCount")  # the next submission id
    old = work_dir(root, task_id, coming)
    old.mkdir(parents=True)
    (old / "start_task.sh").write_text("echo OLD chain\n")  # another chain's task with the same ids
    with capture_logs() as logs:
        sid = await tasks.assign_task(client, None, "//Charlie", task_id, store=store, work_root=root)
    assert (work_dir(root, task_id, sid) / "start_task.sh").read_text() == "echo new task\n"
    aside = [p for p in work_dir(root, task_id, sid).parent.iterdir() if p.name.startswith(f"submission-{sid}.old-")]
    assert len(aside) == 1 and (aside[0] / "start_task.sh").read_text() == "echo OLD chain\n"
    assert [e["event"] for e in logs if e["event"] == "work_dir_set_aside"] == ["work_dir_set_aside"]
