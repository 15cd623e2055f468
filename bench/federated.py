"""Federated training on the digits example, measured side by side in one run on the same data and model
(softmax regression, the example campaign's train.py, local SGD at lr 0.5, batch 32):

1. Centralised training on the union of the contributors' data vs the federated campaign (FedAvg by
   example count; and FedAvgM: the same average, then Flower's server-momentum step, momentum 0.9) with
   the same total epochs and the same split: final test accuracy, and the round at which the global
   model first reaches 90 %; then the mean gap over 7 splits (seeds 0–6: one split's 300 test images
   make a point 3 images).
2. With 25 % malicious contributors (of 8: one label flipper, one label flipper boosting its update ×5
   — model replacement): our validated aggregation (``model_update``'s judgement, then FedAvg of the
   accepted updates) vs plain FedAvg of every update vs Krum (f = 2) on the same updates; final test
   accuracy, malicious updates accepted (= paid) and honest ones rejected (unpaid), against the clean run.
3. Time to validate one update (the judgement with the round's 7 other updates).

    .venv/bin/python bench/federated.py [--rounds 10] [--epochs 2] [--momentum 0.9]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import numpy as np  # noqa: E402
from federated_fixtures import attack, initial, train  # noqa: E402

from decentralml_core.federated import aggregation, digits, judge, model  # noqa: E402


def first_at(accuracies: list[float], level: float) -> str:
    return next((str(i) for i, a in enumerate(accuracies, 1) if a >= level), "never")


def campaign(split, rounds: int, epochs: int, rule: str = "fedavg", malicious: dict[int, str] | None = None,
             validated: bool = False, momentum: float = 0.0, **rule_args):
    """Test accuracy per round; malicious updates accepted and honest ones rejected (validated runs)."""
    malicious = malicious or {}
    weights, accuracies, bad_paid, good_unpaid, velocity = initial(), [], 0, 0, None
    for number in range(rounds):
        updates = []
        for i, share in enumerate(split.shares):
            kind = malicious.get(i)
            if kind == "label_flipping":
                update = train(weights, (share[0], 9 - share[1]), epochs, seed=number)
            elif kind == "boosted_flipping":
                flipped = train(weights, (share[0], 9 - share[1]), epochs, seed=number)
                update = [g + 5 * (u - g) for u, g in zip(flipped, weights, strict=True)]
            else:
                update = train(weights, share, epochs, seed=number)
            updates.append((update, len(share[1]), i in malicious))
        chosen = updates
        if validated:
            chosen = []
            for i, (update, n, bad) in enumerate(updates):
                peers = [judge.Peer(str(j), u, earlier=False) for j, (u, _, _) in enumerate(updates) if j != i]
                ok = judge.judge(update, weights, split.validation, peers).accept
                bad_paid += bool(ok and bad)
                good_unpaid += bool(not ok and not bad)
                if ok:
                    chosen.append((update, n, bad))
        merged = aggregation.aggregate([(u, n) for u, n, _ in chosen], rule, **rule_args)
        if momentum:
            merged, velocity = aggregation.server_momentum(weights, merged, velocity, momentum)
        weights = merged
        accuracies.append(model.accuracy(weights, *split.test))
    return accuracies, bad_paid, good_unpaid


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=2, help="local epochs per round")
    parser.add_argument("--momentum", type=float, default=0.9, help="FedAvgM's server momentum")
    parser.add_argument("--splits", type=int, default=7, help="splits (seeds) the mean gap is taken over")
    args = parser.parse_args()
    print(f"# {platform.processor() or platform.machine()}, Python {platform.python_version()}; digits: 1,797 "
          f"images, 200 validation + 300 test kept by the creator; rounds {args.rounds} x {args.epochs} local "
          "epochs; Dirichlet alpha 1")
    started = time.perf_counter()

    def centralised(split) -> list[float]:
        union = (np.concatenate([x for x, _ in split.shares]), np.concatenate([y for _, y in split.shares]))
        accuracies, weights = [], initial()
        for _ in range(args.rounds):  # the same total epochs, reported at each round's worth of epochs
            weights = train(weights, union, args.epochs, seed=len(accuracies))
            accuracies.append(model.accuracy(weights, *split.test))
        return accuracies

    four = digits.split(4, alpha=1.0, seed=0)
    central = centralised(four)
    federated, _, _ = campaign(four, args.rounds, args.epochs)
    fedavgm, _, _ = campaign(four, args.rounds, args.epochs, momentum=args.momentum)
    print("\n## 1. centralised vs federated (4 contributors)")
    print("| run | final test accuracy | first round ≥ 90 % | gap to centralised |")
    print("|---|---|---|---|")
    print(f"| centralised, {args.rounds * args.epochs} epochs on the union | {central[-1]:.3f} | "
          f"{first_at(central, 0.9)} (in rounds' worth of epochs) | |")
    for name, run in ((f"federated FedAvg, {args.rounds} rounds x {args.epochs} epochs", federated),
                      (f"federated FedAvgM (server momentum {args.momentum:g}), same rounds", fedavgm)):
        print(f"| {name} | {run[-1]:.3f} | {first_at(run, 0.9)} | {100 * (central[-1] - run[-1]):.1f} points |")
    gaps: dict[str, list[float]] = {"FedAvg": [], "FedAvgM": []}
    for seed in range(args.splits):
        split = digits.split(4, alpha=1.0, seed=seed)
        target = centralised(split)[-1]
        gaps["FedAvg"].append(target - campaign(split, args.rounds, args.epochs)[0][-1])
        gaps["FedAvgM"].append(target - campaign(split, args.rounds, args.epochs, momentum=args.momentum)[0][-1])
    for name, values in gaps.items():
        print(f"| {name} over {args.splits} splits (seeds 0–{args.splits - 1}): gap to centralised | mean "
              f"{100 * statistics.mean(values):.1f} points, worst {100 * max(values):.1f} | | |")

    eight = digits.split(8, alpha=1.0, seed=1)
    attackers = {0: "label_flipping", 5: "boosted_flipping"}
    runs = [("clean FedAvg (no attackers)", campaign(eight, args.rounds, args.epochs)),
            ("plain FedAvg of every update", campaign(eight, args.rounds, args.epochs, malicious=attackers)),
            ("Krum (f = 2) of every update", campaign(eight, args.rounds, args.epochs, "krum", attackers,
                                                       num_malicious=2)),
            ("validated (model_update) + FedAvg", campaign(eight, args.rounds, args.epochs, malicious=attackers,
                                                           validated=True))]
    print("\n## 2. 8 contributors, 2 malicious (25 %): a label flipper and a boosted (x5) label flipper")
    print("| aggregation | final test accuracy | vs clean | malicious updates paid | honest updates unpaid |")
    print("|---|---|---|---|---|")
    clean = runs[0][1][0][-1]
    for name, (accuracies, bad_paid, good_unpaid) in runs:
        validated = name.startswith("validated")
        print(f"| {name} | {accuracies[-1]:.3f} | {100 * (accuracies[-1] - clean):+.1f} points | "
              f"{bad_paid if validated else '(no check: all)'} | {good_unpaid if validated else '—'} |")

    weights = initial()
    updates = [train(weights, share, args.epochs) for share in eight.shares]
    peers = [judge.Peer(str(i), u, earlier=True) for i, u in enumerate(updates[1:])]
    times = []
    for _ in range(20):
        t = time.perf_counter()
        judge.judge(updates[0], weights, eight.validation, peers)
        times.append(time.perf_counter() - t)
    noise = attack("noise", weights, eight.shares[0], None)
    verdict = judge.judge(noise, weights, eight.validation, peers)
    print(f"\n## 3. validating one update (7 peers, 200 validation images): median "
          f"{1000 * statistics.median(times):.2f} ms over 20; a noise update: {verdict.reason}")
    print(f"\ntotal {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
