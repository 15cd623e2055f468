"""Federated training as pure functions on real data (scikit-learn's digits): aggregation (Flower's
functions), the judgement of each kind of bad update, the contributor's output rule, model engineering's
check, and the validators and sandbox mount built on them."""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
from federated_fixtures import ENGINEER, ROOT, attack, initial, quantize_script, train

from agents.config import ConfigError, validate_config
from agents.validators import Evidence, ModelRestructureParams, ModelUpdateParams, load_validator
from decentralml_core import work
from decentralml_core.chain.model import Submission, SubmissionStatus
from decentralml_core.federated import aggregation, digits, judge, model, outputs, restructure
from decentralml_core.sandbox import SandboxLimits, bubblewrap_works, run_task_script


@pytest.fixture(scope="module")
def split():
    return digits.split(4, alpha=1.0, seed=0)


@pytest.fixture(scope="module")
def after_one_round(split):
    """The global model after one honest FedAvg round (about 0.85 on the test set), and round 2's updates."""
    first = aggregation.aggregate([(train(initial(), s, seed=i), len(s[1])) for i, s in enumerate(split.shares)])
    return first, [train(first, s, seed=10 + i) for i, s in enumerate(split.shares)]


def test_the_split_is_non_iid_and_keeps_the_creators_sets_apart(split):
    counts = np.array([np.bincount(y, minlength=10) for _, y in split.shares])
    assert counts.sum() + len(split.validation[1]) + len(split.test[1]) == 1797
    shares = counts / counts.sum(axis=0)
    assert shares.max() > 0.5 and shares.min() < 0.1  # some contributor holds most of a class, another little


def test_aggregation_rules_are_flowers(split):
    a = [np.array([[1.0, 2.0]], np.float32), np.array([0.0], np.float32)]
    b = [np.array([[3.0, 6.0]], np.float32), np.array([4.0], np.float32)]
    c = [np.array([[100.0, 100.0]], np.float32), np.array([100.0], np.float32)]
    fedavg = aggregation.aggregate([(a, 1), (b, 3)])
    assert np.allclose(fedavg[0], [[2.5, 5.0]]) and fedavg[0].dtype == np.float32
    assert np.allclose(aggregation.aggregate([(a, 1), (b, 1), (c, 1)], "fedmedian")[0], [[3.0, 6.0]])
    assert np.allclose(aggregation.aggregate([(a, 1), (b, 1), (c, 1)], "trimmed_mean", trim=0.34)[0], [[3.0, 6.0]])
    krum = aggregation.aggregate([(a, 1), (b, 1), (c, 1), (a, 1)], "krum", num_malicious=1)
    assert np.allclose(krum[0], a[0])  # the outlier is never chosen
    with pytest.raises(ValueError, match="unknown aggregation"):
        aggregation.aggregate([(a, 1)], "mean")


def test_server_momentum_is_flowers_fedavgm_step():
    g = [np.array([[1.0, 1.0]], np.float32), np.array([1.0], np.float32)]
    m = [np.array([[0.0, 2.0]], np.float32), np.array([0.5], np.float32)]
    first, velocity = aggregation.server_momentum(g, m, None, momentum=0.9)
    assert np.allclose(first[0], m[0]) and first[0].dtype == np.float32  # round 1: the aggregate itself
    assert np.allclose(velocity[0], [[1.0, -1.0]])  # global − aggregate
    second, velocity2 = aggregation.server_momentum(first, first, velocity, momentum=0.9)
    assert np.allclose(velocity2[0], [[0.9, -0.9]]) and np.allclose(second[0], [[-0.9, 2.9]])  # coasting on
    again = aggregation.server_momentum(first, first, velocity, momentum=0.9)
    assert all(np.array_equal(a, b) for a, b in zip(again[0] + again[1], second + velocity2, strict=True))


def test_server_momentum_closes_the_non_iid_gap_to_centralised_training(split):
    """bench/federated.py's first comparison, as a check: 10 rounds x 2 local epochs on the α = 1 split;
    centralised training gets the same 20 epochs on the union. FedAvg ends 3 points below it, FedAvgM
    (momentum 0.9) within 2."""
    union = (np.concatenate([x for x, _ in split.shares]), np.concatenate([y for _, y in split.shares]))
    central = initial()
    for number in range(10):
        central = train(central, union, seed=number)
    finals = {}
    for momentum in (0.0, 0.9):
        weights, velocity = initial(), None
        for number in range(10):
            merged = aggregation.aggregate([(train(weights, s, seed=number), len(s[1])) for s in split.shares])
            if momentum:
                merged, velocity = aggregation.server_momentum(weights, merged, velocity, momentum)
            weights = merged
        finals[momentum] = model.accuracy(weights, *split.test)
    target = model.accuracy(central, *split.test)
    assert target - finals[0.0] > 0.02 and target - finals[0.9] <= 0.02, (target, finals)


def test_a_contributor_cannot_buy_fedavg_weight_with_a_claimed_count(split):
    """Example counts are the contributors' own word: a claim of 10**9 weighs 3× the median claim at most."""
    assert aggregation.capped_counts([100, 120, 80, 10**9]) == [100, 120, 80, 330]
    assert aggregation.capped_counts([0, -5, 7]) == [1, 1, 3]
    honest, liar = [np.array([[1.0]], np.float32)], [np.array([[100.0]], np.float32)]
    merged = aggregation.aggregate([(honest, 100), (honest, 100), (honest, 100), (liar, 10**9)])
    assert np.allclose(merged[0], [[(300 * 1.0 + 300 * 100.0) / 600]])  # before: ≈ 100, the liar alone
    sizes = [len(s[1]) for s in split.shares]
    assert aggregation.capped_counts(sizes) == sizes  # a real non-IID split's honest counts are never cut


def test_federated_rounds_improve_the_global_model(split):
    weights, accuracies = initial(), []
    for number in range(3):
        updates = [(train(weights, s, seed=number * 10 + i), len(s[1])) for i, s in enumerate(split.shares)]
        weights = aggregation.aggregate(updates)
        accuracies.append(model.accuracy(weights, *split.test))
    assert accuracies[0] > 0.6 and accuracies[-1] > 0.85, accuracies


def peers_of(updates, skip=0):
    return [judge.Peer(f"submission {i}", u, earlier=True) for i, u in enumerate(updates) if i != skip]


def test_honest_updates_are_accepted_with_scores(split, after_one_round):
    first, updates = after_one_round
    for i, update in enumerate(updates):
        found = judge.judge(update, first, split.validation, peers_of(updates, skip=i))
        assert found.accept is True, found
        assert {"val_acc", "global_acc", "norm_ratio", "cos_dist"} <= found.scores.keys()


@pytest.mark.parametrize("kind,reason", [
    ("label_flipping", "worse than the global model|outlier: cosine distance"),
    ("boosted", "worse than the global model|outlier: change norm"), ("noise", "worse than the global model|outlier"), ("free_rider", "free rider"), ("copy", "copy"),
    ("nan", "non-finite"), ("wrong_shape", "wrong shape"),
])
def test_each_kind_of_bad_update_is_rejected_with_its_reason(split, after_one_round, kind, reason):
    first, updates = after_one_round
    bad = attack(kind, first, split.shares[0], honest=updates[1])
    found = judge.judge(bad, first, split.validation, peers_of(updates[1:], skip=-1))
    assert found.accept is False and re.match(reason, found.reason), found


@pytest.mark.parametrize("kind", ["label_flipping", "noise", "boosted"])
def test_in_the_first_round_the_robustness_checks_catch_what_accuracy_cannot(split, kind):
    """The initial model knows nothing (about 10 %): only the round's other updates show the outlier."""
    honest = [train(initial(), s, seed=i) for i, s in enumerate(split.shares[1:])]
    bad = attack(kind, initial(), split.shares[0], honest=honest[0])
    found = judge.judge(bad, initial(), split.validation, peers_of(honest, skip=-1))
    assert found.accept is False and "outlier" in found.reason, found


def test_without_enough_peers_the_verdict_waits(split, after_one_round):
    first, updates = after_one_round
    found = judge.judge(updates[0], first, split.validation, peers_of(updates[1:2], skip=-1))
    assert found.accept is None and "robustness" in found.reason


def test_a_copy_sent_first_is_not_the_copy(split, after_one_round):
    first, updates = after_one_round
    later = [judge.Peer("submission 9", updates[0], earlier=False)] + peers_of(updates[1:3], skip=-1)
    assert judge.judge(updates[0], first, split.validation, later).accept is True


# -- the validators on real result folders ------------------------------------------------------------
def write_update(folder: Path, weights, examples=100) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    model.save(folder / "update.npz", weights)
    (folder / "metrics.json").write_text(json.dumps({"num_examples": examples}))
    return folder


def sub(sid: int, block: int) -> Submission:
    return Submission(sid, 0, f"w{sid}", 1, SubmissionStatus.PENDING_VALIDATION, submitted_block=block)


def test_model_update_validator_on_result_folders(split, after_one_round, tmp_path):
    first, updates = after_one_round
    digits.save_xy(tmp_path / "val.npz", split.validation)
    model.save(tmp_path / "global.npz", first)
    validator = load_validator(ModelUpdateParams(name="model_update", validation=tmp_path / "val.npz",
                                                 global_model=tmp_path / "global.npz"))
    assert validator.needs_peers and validator.on_timeout == "accept"
    peers = tuple((sub(i, 5), write_update(tmp_path / f"peer{i}", u)) for i, u in enumerate(updates[1:], 1))
    verdict = validator.check(Evidence(sub(0, 4), write_update(tmp_path / "mine", updates[0]), None, peers))
    assert verdict.accept is True and verdict.scores["examples"] == 100
    copy = validator.check(Evidence(sub(9, 6), write_update(tmp_path / "copy", updates[1]), None, peers))
    assert copy.accept is False and "repeats submission 1" in copy.reason and '"distance"' in copy.for_chain()
    hostile = tmp_path / "hostile"
    hostile.mkdir()
    with open(hostile / "update.npz", "wb") as f:  # a pickle: np.load with allow_pickle=False refuses to run it
        np.save(f, np.array([object()], dtype=object), allow_pickle=True)
    (hostile / "metrics.json").write_text('{"num_examples": 10}')
    assert "not a weights file" in validator.check(Evidence(sub(3, 6), hostile, None, peers)).reason
    (hostile / "update.npz").write_bytes(pickle.dumps({"a": 1}))
    assert validator.check(Evidence(sub(3, 6), hostile, None, peers)).accept is False
    lying = write_update(tmp_path / "lying", updates[0], examples=-5)
    assert "num_examples" in validator.check(Evidence(sub(4, 6), lying, None, peers)).reason


def test_model_restructure_pays_within_target_and_rejects_beyond(split, tmp_path):
    reference = model.load(ENGINEER / "model" / "model.npz")
    digits.save_xy(tmp_path / "test.npz", split.test)
    params = ModelRestructureParams(name="model_restructure", reference=ENGINEER / "model" / "model.npz",
                                    test=tmp_path / "test.npz", max_bytes=2000, max_drop=0.02)
    validator = load_validator(params)
    good = tmp_path / "good"
    good.mkdir()
    np.savez(good / "model_int8.npz", **quantize_script.quantize(reference))
    verdict = validator.check(Evidence(sub(0, 1), good))
    assert verdict.accept is True and verdict.scores["bytes"] <= 2000, verdict
    too_big = tmp_path / "big"
    too_big.mkdir()
    model.save(too_big / "model_int8.npz", reference)  # the float model, unchanged: 3 kB
    assert "too large" in validator.check(Evidence(sub(1, 1), too_big)).reason
    pruned = tmp_path / "pruned"
    pruned.mkdir()
    crushed = {k: (np.sign(v) if k.startswith("q_") else v) for k, v in quantize_script.quantize(reference).items()}
    np.savez(pruned / "model_int8.npz", **{k: v.astype(np.int8) if k.startswith("q_") else v
                                           for k, v in crushed.items()})
    dropped = validator.check(Evidence(sub(2, 1), pruned))
    assert dropped.accept is False and "accuracy dropped" in dropped.reason
    assert restructure.load_restructured(good / "model_int8.npz")[0].shape == (64, 10)


# -- what leaves a contributor's host ------------------------------------------------------------------
def contribution(tmp_path: Path, weights) -> Path:
    folder = tmp_path / "task"
    (folder / "model").mkdir(parents=True)
    model.save(folder / "model" / "global.npz", initial())
    write_update(folder / "outputs", weights)
    return folder


def test_only_an_update_of_the_models_shape_and_numbers_may_leave(split, tmp_path):
    folder = contribution(tmp_path, train(initial(), split.shares[0]))
    assert outputs.contribution_problem(folder) is None
    (folder / "outputs" / "data.npz").write_bytes(b"x" * 10)
    assert "exactly update.npz and metrics.json" in outputs.contribution_problem(folder)
    (folder / "outputs" / "data.npz").unlink()
    np.savez(folder / "outputs" / "update.npz", split.shares[0][0], split.shares[0][1])  # the data as "weights"
    assert "larger than the global model" in outputs.contribution_problem(folder)
    model.save(folder / "outputs" / "update.npz", initial())
    (folder / "outputs" / "metrics.json").write_text(json.dumps({"num_examples": 3, "rows": [[0.1, 0.2]]}))
    assert "names to numbers" in outputs.contribution_problem(folder)


@pytest.mark.skipif(not bubblewrap_works(), reason="bubblewrap cannot create namespaces here")
async def test_private_data_is_mounted_read_only_at_a_fixed_place(split, tmp_path):
    data = tmp_path / "private"
    digits.save_xy(data / "train.npz", split.shares[0])
    folder = tmp_path / "task"
    folder.mkdir()
    (folder / "start_task.sh").write_text(
        'mkdir -p outputs; test "$DECENTRALML_DATA" = /data && ls /data > outputs/seen.txt\n'
        'if touch /data/written 2>/dev/null; then echo writable > outputs/bad.txt; fi\n')
    report = await run_task_script(folder, limits=SandboxLimits(timeout_s=20), data_dir=data)
    assert report.status == "ok", report
    assert (folder / "outputs" / "seen.txt").read_text() == "train.npz\n"
    assert not (folder / "outputs" / "bad.txt").exists() and not (data / "written").exists()


def test_config_refusals(tmp_path):
    with pytest.raises(ConfigError, match="data: .* is not a folder"):
        validate_config({"role": "contributor", "key": {"dev": "Bob"}, "state_dir": str(tmp_path),
                         "data": str(tmp_path / "missing")})
    campaign = {"name": "c", "model": "m", "script": "s", "rounds": 1, "max_assignments": 2, "min_updates": 3,
                "pays": 1, "validator": {"name": "model_update", "validation": "v.npz"}}
    with pytest.raises(ConfigError, match="min_updates cannot exceed"):
        validate_config({"role": "creator", "key": {"dev": "Alice"}, "state_dir": str(tmp_path),
                         "campaigns": [campaign]})


def test_a_local_path_is_not_a_task_reference():
    with pytest.raises(ValueError, match="not a content reference .* --assets DIR"):
        work.content_reference("/home/me/model")
    cid = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"
    assert work.content_reference(cid) == cid


def test_a_contributor_declines_a_round_asking_for_more_epochs_than_its_budget(tmp_path):
    from agents.worker import WorkerAgent
    from decentralml_core.chain.model import Task, TaskStatus, TaskType, ValidationStrategy

    config = validate_config({"role": "contributor", "key": {"dev": "Bob"}, "state_dir": str(tmp_path),
                              "policy": {"max_epochs": 3, "min_blocks_left": 0}})
    agent = WorkerAgent.__new__(WorkerAgent)
    agent.config, agent.keypair = config, config.key.load()
    agent.journal = type("NoVerdicts", (), {"meta": lambda self, key, default=None: default})()
    cid = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"

    def round_task(epochs: int) -> Task:
        return Task(1, TaskStatus.CREATED, TaskType.MODEL_CONTRIBUTOR, "creator", 1000, 1, 100, 4,
                    ValidationStrategy.CUSTOM_ACCEPT, "q", model_contributor_script_path=cid,
                    annotation_json=json.dumps({"campaign": "c", "round": 1, "settings": {"epochs": epochs}}))

    assert agent.refusal(round_task(2), now=1) is None
    assert agent.refusal(round_task(5), now=1) == "asks for 5 epochs, more than max_epochs 3"


def test_a_campaign_naming_a_missing_file_stops_start_up_with_its_key(tmp_path):
    root = Path(__file__).resolve().parents[1] / "assets" / "federated_digits"
    campaign = {"name": "c", "model": str(root / "model"), "script": str(root / "script"), "rounds": 1,
                "max_assignments": 2, "pays": 1, "validator": {"name": "model_update",
                                                               "validation": str(tmp_path / "val.npz")}}
    with pytest.raises(ConfigError, match=r"validator.validation: .*val.npz is not a file"):
        validate_config({"role": "creator", "key": {"dev": "Alice"}, "state_dir": str(tmp_path),
                         "campaigns": [campaign]})


def test_a_campaigns_server_momentum_is_kept_on_disk_and_repeats_after_a_crash(split, tmp_path):
    """Campaign.merge with ``server_momentum``: round 2 steps with round 1's velocity, read from its file, and
    a repeat of round 2 (the creator killed during aggregation) writes the same model and velocity."""
    from types import SimpleNamespace

    from agents.campaign import GLOBAL, Campaign
    from agents.config import CampaignSection

    np.savez(tmp_path / "val.npz", x=split.validation[0], y=split.validation[1])
    section = CampaignSection.model_validate({
        "name": "digits", "model": ROOT / "assets" / "federated_digits" / "model",
        "script": ROOT / "assets" / "federated_digits" / "script", "rounds": 3, "max_assignments": 4, "pays": 1,
        "aggregation": {"rule": "fedavg", "server_momentum": 0.9},
        "validator": {"name": "model_update", "validation": tmp_path / "val.npz"}})
    creator = SimpleNamespace(journal=None, market=None, validators={}, config=SimpleNamespace(state_dir=tmp_path))
    campaign = Campaign(creator, section)
    campaign.dir.mkdir(parents=True)
    campaign.build_round(1, section.model / "global.npz")
    start = model.load(campaign.round_dir(1) / GLOBAL)
    first = [(train(start, s, seed=i), len(s[1])) for i, s in enumerate(split.shares)]
    merged = campaign.merge(1, first)
    assert all(np.allclose(a, b) for a, b in zip(merged, aggregation.aggregate(first), strict=True))
    model.save(tmp_path / "global-1.npz", merged)
    campaign.build_round(2, tmp_path / "global-1.npz")
    second = [(train(merged, s, seed=10 + i), len(s[1])) for i, s in enumerate(split.shares)]
    stepped = campaign.merge(2, second)
    expected, velocity = aggregation.server_momentum(merged, aggregation.aggregate(second),
                                                     model.load(campaign.dir / "velocity-1.npz"), 0.9)
    assert all(np.array_equal(a, b) for a, b in zip(stepped, expected, strict=True))
    saved = (campaign.dir / "velocity-2.npz").read_bytes()
    again = campaign.merge(2, second)
    assert all(np.array_equal(a, b) for a, b in zip(again, stepped, strict=True))
    assert (campaign.dir / "velocity-2.npz").read_bytes() == saved
    assert all(np.allclose(a, b) for a, b in zip(model.load(campaign.dir / "velocity-2.npz"), velocity, strict=True))
