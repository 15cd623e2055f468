"""Federated training campaigns, run by the creator agent: round after round, publish the global model
as a ModelContributor task, let the ``model_update`` validator judge (and the creator pay or reject)
each contributor's update, aggregate the accepted ones into the next global model, until the rounds
are done or the target accuracy is reached; then, if asked, hand the final model to a ModelEngineer task.

Journal kinds (besides the creator's own ``published`` and ``submission``):

- ``campaign`` by name: ``running`` (``round`` = the current round) → ``done`` | ``stalled``; its
  ``history`` holds each aggregated round's accepted/rejected submissions and test accuracy.
- ``round`` by ``NAME/round-N``: ``aggregating`` (the accepted submissions, fixed before any maths) →
  ``aggregated`` (the next global model's file and metric).

A round's asset folder is built once (``.partial`` then renamed) from files that never change, so a
publish retried after a crash sends the same CID; the publish itself is the creator's exactly-once
``publish`` (client token). Aggregating is a pure function of the journaled accepted set and the
round's global model (with ``server_momentum``, also of the previous round's velocity file), so a crash
during it repeats the same computation and writes the same files; the campaign moves to the next round
only after ``aggregated`` is journaled. Payments are the creator's
(``submission`` journal): each accepted update is paid at most once, whatever happens to the campaign.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

import structlog

from decentralml_core.chain.model import SubmissionStatus, TaskType, ValidationStrategy
from decentralml_core.federated import aggregation, digits, model

from .config import CampaignSection, PublishedTask
from .validators import ModelRestructureParams, load_validator

log = structlog.get_logger("agent.campaign")
GLOBAL = Path("model") / "global.npz"
SENT = (SubmissionStatus.PENDING_VALIDATION, SubmissionStatus.ACCEPTED, SubmissionStatus.REJECTED)


def round_name(campaign: str, number: int) -> str:
    return f"{campaign}/round-{number}"


def engineering_name(campaign: str) -> str:
    return f"{campaign}/engineering"


def plot_path(state_dir: Path, campaign: str) -> Path:
    return state_dir / f"campaign-{campaign}.png"


class Campaign:
    """One campaign of a creator agent; :meth:`step` moves it on (called on every sweep, never raises
    for a round that simply is not over yet)."""

    def __init__(self, creator: Any, section: CampaignSection) -> None:
        self.creator, self.section = creator, section
        self.journal, self.market = creator.journal, creator.market
        self.dir = creator.config.state_dir / "campaigns" / section.name
        self.test_set = section.test or section.validator.validation
        for number in range(1, section.rounds + 1):  # a restart: validators of rounds already built
            if (self.round_dir(number) / GLOBAL).exists():
                self._register(number)
        if (self.dir / "engineering" / "model" / "model.npz").exists():
            self._register_engineering()

    # -- files ----------------------------------------------------------------------------------------
    def round_dir(self, number: int) -> Path:
        return self.dir / f"round-{number}"

    def build_round(self, number: int, weights_file: Path) -> Path:
        """The round's assets: the training script's files, the global model, round.json; built once."""
        folder = self.round_dir(number)
        if folder.exists():
            return folder
        partial = folder.with_name(folder.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        shutil.copytree(self.section.script, partial)
        (partial / "model").mkdir(exist_ok=True)
        shutil.copyfile(weights_file, partial / GLOBAL)
        settings = {"seed": number, **self.section.settings, "round": number, "campaign": self.section.name}
        (partial / "round.json").write_text(json.dumps(settings, sort_keys=True, indent=1))
        partial.rename(folder)
        return folder

    def declared(self, number: int) -> PublishedTask:
        s = self.section
        return PublishedTask(
            name=round_name(s.name, number), task_type=TaskType.MODEL_CONTRIBUTOR, assets=self.round_dir(number),
            question=f"{s.question} (round {number} of at most {s.rounds})", pays=s.pays,
            max_assignments=s.max_assignments, expires_in=s.expires_in, strategy=ValidationStrategy.CUSTOM_ACCEPT,
            validator=self.update_params(number), storage_type=s.storage_type, submit_within=s.submit_within,
            review_window=s.review_window,
            annotation_json={"campaign": s.name, "round": number, "settings": s.settings})

    def update_params(self, number: int):
        return self.section.validator.model_copy(update={"global_model": self.round_dir(number) / GLOBAL})

    def _register(self, number: int) -> None:
        self.creator.validators[round_name(self.section.name, number)] = load_validator(self.update_params(number))

    # -- the state machine ------------------------------------------------------------------------------
    async def step(self) -> None:
        """Move the campaign on until it waits for the chain (a round's results, a node away): a round
        aggregated publishes the next one, and the last hands the model to an engineer, in the same sweep.
        One move per sweep (SWEEP_S, 2 s, after the chain's last event) added ~2.3 s to every round."""
        for _ in range(self.section.rounds + 2):  # each pass moves one round on at most
            if not await self._step():
                return

    async def _step(self) -> bool:
        """One move; True if the campaign went on to its next round or finished (move again at once)."""
        s = self.section
        entry = self.journal.get("campaign", s.name)
        if entry is None:
            initial = s.model / "global.npz"
            weights = model.load(initial)
            self.build_round(1, initial)
            entry = await self.journal.write("campaign", s.name, "running", round=1,
                                             history=[{"round": 0, "test_acc": self.metric(weights)}])
            self.plot(entry.data["history"])
            log.info("campaign_started", campaign=s.name, rounds=s.rounds, contributors=s.max_assignments,
                     aggregation=s.aggregation.rule)
        if entry.step == "done":
            await self.hand_to_engineer()
            return False
        if entry.step != "running":
            return False
        number = entry.data["round"]
        self._register(number)
        task_id = await self.creator.publish(self.declared(number))
        if task_id is None:
            return False
        name = round_name(s.name, number)
        current = self.journal.get("round", name)
        if current is None:
            accepted = await self.closed_round(task_id, number)
            if accepted is None:
                return False
            current = await self.journal.write("round", name, "aggregating", task_id=task_id, accepted=accepted)
        if current.step == "aggregating":
            current = await self.aggregate(number, current.data)
        await self.advance(entry.data, number, current.data)
        return True

    async def closed_round(self, task_id: int, number: int) -> list[int] | None:
        """The accepted submissions once the round is over — every slot's result decided, or the task
        expired with every sent result decided and at least ``min_updates`` accepted — else None."""
        s = self.section
        subs = await self.market.submissions(task_id)
        sent = [x for x in subs if x.status in SENT]
        if any(x.status == SubmissionStatus.PENDING_VALIDATION for x in sent):
            return None  # the validator (and the pay) first
        accepted = [x.submission_id for x in sent if x.status == SubmissionStatus.ACCEPTED]
        if len(sent) < s.max_assignments:
            task = await self.market.task_as_posted(task_id)
            if await self.creator.client.block_number() <= task.expiration_block:
                return None
            if len(accepted) < s.min_updates:
                await self.journal.write("campaign", s.name, "stalled", reason=f"round {number} expired with "
                                         f"{len(accepted)} accepted updates, fewer than min_updates {s.min_updates}")
                log.error("campaign_stalled", campaign=s.name, round=number, accepted=len(accepted),
                          min_updates=s.min_updates, action="lower min_updates or raise expires_in, "
                                                            "then journal the campaign running again")
                return None
        elif len(accepted) < s.min_updates:
            await self.journal.write("campaign", s.name, "stalled", reason=f"round {number}: {len(accepted)} of "
                                     f"{len(sent)} updates accepted, fewer than min_updates {s.min_updates}")
            log.error("campaign_stalled", campaign=s.name, round=number, accepted=len(accepted),
                      min_updates=s.min_updates, action="read the rejection reasons (`decentralml campaign status`)")
            return None
        log.info("campaign_round_closed", campaign=s.name, round=number, task_id=task_id, accepted=len(accepted),
                 rejected=len(sent) - len(accepted))
        return sorted(accepted)

    async def aggregate(self, number: int, data: dict):
        """The next global model from the journaled accepted updates (same inputs, same file)."""
        s, rule = self.section, self.section.aggregation
        updates = []
        for sid in data["accepted"]:
            folder = await self.creator.result_folder(await self.market.submission(sid))
            examples = json.loads((folder / "metrics.json").read_text())["num_examples"]
            updates.append((model.load(folder / s.validator.update_file), int(examples)))
        merged = await asyncio.to_thread(self.merge, number, updates)
        target = self.dir / f"global-{number}.npz"
        model.save(target, merged)
        accuracy = self.metric(merged)
        name = round_name(s.name, number)
        entry = await self.journal.write("round", name, "aggregated", model=str(target), test_acc=accuracy,
                                         examples=sum(n for _, n in updates))
        self.creator.metrics.inc("campaign_rounds")
        log.info("campaign_aggregated", campaign=s.name, round=number, rule=rule.rule, updates=len(updates),
                 test_acc=accuracy)
        return entry

    def merge(self, number: int, updates: list) -> list:
        """The round's aggregate under the rule; with ``server_momentum``, FedAvgM's step from the round's
        global model, its velocity kept in ``velocity-N.npz`` (read from the previous round's file, never
        from memory: a crash repeats the same step)."""
        rule = self.section.aggregation
        merged = aggregation.aggregate(updates, rule.rule, rule.trim, rule.num_malicious, rule.to_keep)
        if not rule.server_momentum and rule.server_lr == 1.0:
            return merged
        previous = self.dir / f"velocity-{number - 1}.npz"
        velocity = model.load(previous) if number > 1 and previous.exists() else None
        merged, velocity = aggregation.server_momentum(model.load(self.round_dir(number) / GLOBAL), merged, velocity,
                                                       rule.server_momentum, rule.server_lr)
        model.save(self.dir / f"velocity-{number}.npz", velocity)
        return merged

    async def advance(self, campaign: dict, number: int, aggregated: dict) -> None:
        s = self.section
        history = [h for h in campaign["history"] if h["round"] != number]
        subs = await self.market.submissions(aggregated["task_id"])
        history.append({"round": number, "task_id": aggregated["task_id"], "test_acc": aggregated["test_acc"],
                        "accepted": aggregated["accepted"],
                        "rejected": [x.submission_id for x in subs if x.status == SubmissionStatus.REJECTED]})
        await asyncio.to_thread(self.plot, history)
        reached = s.target_accuracy is not None and aggregated["test_acc"] >= s.target_accuracy
        if number >= s.rounds or reached:
            await self.journal.write("campaign", s.name, "done", history=history, model=aggregated["model"])
            log.info("campaign_done", campaign=s.name, rounds=number, test_acc=aggregated["test_acc"],
                     reason="target accuracy reached" if reached else "all rounds done")
            return
        self.build_round(number + 1, Path(aggregated["model"]))
        await self.journal.write("campaign", s.name, "running", round=number + 1, history=history)

    def metric(self, weights) -> float:
        return round(model.accuracy(weights, *digits.load_xy(self.test_set)), 4)

    def plot(self, history: list[dict]) -> None:
        """The global model's test accuracy per round, as a PNG in the state dir (round 0: the initial model)."""
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import pyplot

        figure, axes = pyplot.subplots(figsize=(5, 3.2), dpi=100)
        rounds = [h["round"] for h in history]
        axes.plot(rounds, [h["test_acc"] for h in history], marker="o")
        axes.set(xlabel="round", ylabel="test accuracy", ylim=(0, 1), title=f"campaign {self.section.name}")
        axes.set_xticks(rounds)
        axes.grid(alpha=0.3)
        figure.tight_layout()
        target = plot_path(self.creator.config.state_dir, self.section.name)
        figure.savefig(target.with_suffix(".tmp.png"))
        pyplot.close(figure)
        target.with_suffix(".tmp.png").replace(target)

    # -- model engineering of the final model ---------------------------------------------------------------
    def engineering_params(self) -> ModelRestructureParams:
        e = self.section.engineering
        return ModelRestructureParams(name="model_restructure", reference=self.dir / "engineering" / "model" /
                                      "model.npz", test=self.test_set, max_bytes=e.max_bytes, max_drop=e.max_drop,
                                      model_file=e.model_file)

    def _register_engineering(self) -> None:
        self.creator.validators[engineering_name(self.section.name)] = load_validator(self.engineering_params())

    async def hand_to_engineer(self) -> None:
        e = self.section.engineering
        if e is None:
            return
        folder = self.dir / "engineering"
        if not folder.exists():
            final = Path(self.journal.get("campaign", self.section.name).data["model"])
            partial = folder.with_name("engineering.partial")
            shutil.rmtree(partial, ignore_errors=True)
            shutil.copytree(e.assets, partial)
            (partial / "model").mkdir(exist_ok=True)
            shutil.copyfile(final, partial / "model" / "model.npz")
            (partial / "target.json").write_text(json.dumps({"restructure": "int8", "max_bytes": e.max_bytes,
                                                              "max_drop": e.max_drop}, sort_keys=True))
            partial.rename(folder)
        self._register_engineering()
        await self.creator.publish(PublishedTask(
            name=engineering_name(self.section.name), task_type=TaskType.MODEL_ENGINEER, assets=folder,
            question=e.question, pays=e.pays, max_assignments=1, expires_in=e.expires_in,
            strategy=ValidationStrategy.CUSTOM_ACCEPT, validator=self.engineering_params(),
            storage_type=self.section.storage_type,
            annotation_json={"campaign": self.section.name, "max_bytes": e.max_bytes, "max_drop": e.max_drop}))


async def step_all(campaigns: list[Campaign]) -> None:
    """One step of every campaign; a failing one logs and waits for the next sweep, the agent goes on."""
    for campaign in campaigns:
        try:
            await campaign.step()
        except Exception as exc:
            log.error("campaign_step_failed", campaign=campaign.section.name, error=str(exc),
                      error_type=type(exc).__name__)
