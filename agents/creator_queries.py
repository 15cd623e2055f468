"""What the review page may read of a creator agent, and the decisions it hands back: one small interface.

The page never touches the agent's journal, market, client, keypair or config itself; everything it shows
comes through here, so the creator's internals can change without the page, and the page is tested
against these few calls.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from decentralml_core.chain.model import Submission, Task

from .campaign import plot_path
from .config import ReviewSection
from .creator import CreatorAgent, reference_path, result_path
from .journal import Entry

DECIDED_STEPS = ("paid", "rejected", "window_closed")


class CreatorQueries:
    def __init__(self, agent: CreatorAgent) -> None:
        self._agent = agent

    # -- settings ---------------------------------------------------------------------------------------
    @property
    def review(self) -> ReviewSection:
        """The page's own settings (the YAML's ``review`` section)."""
        return self._agent.config.review

    @property
    def state_dir(self) -> Path:
        """Where the page may keep its token file."""
        return self._agent.config.state_dir

    # -- the queue (journal) ----------------------------------------------------------------------------
    def waiting_for_review(self) -> list[Entry]:
        return self._agent.journal.entries("submission", steps=("review",))

    def recent_decisions(self, count: int = 10) -> list[Entry]:
        """The last ``count`` results decided, newest first."""
        decided = self._agent.journal.entries("submission", steps=DECIDED_STEPS)
        return sorted(decided, key=lambda e: e.updated)[-count:][::-1]

    def entry(self, sid: int) -> Entry | None:
        """Where the creator is with a result (its journal entry), or None if it has not seen it."""
        return self._agent.journal.get("submission", sid)

    # -- the chain --------------------------------------------------------------------------------------
    async def task(self, task_id: int) -> Task | None:
        """A task with its market terms."""
        return await self._agent.market.task_as_posted(task_id)

    async def submission(self, sid: int) -> Submission | None:
        return await self._agent.market.submission(sid)

    async def own_result(self, sid: int) -> tuple[Submission, Task] | None:
        """A submission and its task, if it is for one of this creator's tasks."""
        submission = await self.submission(sid)
        if submission is None:
            return None
        task = await self.task(submission.task_id)
        if task is None or task.creator != self._agent.keypair.ss58_address:
            return None
        return submission, task

    async def review_window(self, submission: Submission) -> int | None:
        """Blocks left to decide ``submission`` on chain (None: no review window)."""
        return submission.review_blocks_left(await self._agent.client.block_number())

    async def review_windows(self, sids: list[int]) -> dict[int, int | None]:
        """Blocks left to decide each result, where the node has review windows at all."""
        if not sids or not self._agent.market.capabilities.task_terms:
            return {}
        now = await self._agent.client.block_number()
        windows: dict[int, int | None] = {}
        for sid in sids:
            submission = await self.submission(sid)
            windows[sid] = submission.review_blocks_left(now) if submission else None
        return windows

    # -- files ------------------------------------------------------------------------------------------
    async def result_folder(self, submission: Submission) -> Path:
        """The result's outputs, fetched and verified (once)."""
        return await self._agent.result_folder(submission)

    def result_files(self, sid: int) -> list[str]:
        """The names of the files the result's outputs hold, sorted."""
        return sorted(p.name for p in result_path(self._agent.config.state_dir, sid).glob("*"))

    def reference(self, sid: int) -> dict[str, Any] | None:
        """The validator's reference boxes for a result, if it kept any."""
        try:
            found: dict[str, Any] = json.loads(reference_path(self._agent.config.state_dir, sid).read_text())
        except (OSError, ValueError):
            return None
        return found

    def assets(self, task: Task) -> Path | None:
        """The creator's own copy of a task's assets folder (from its YAML), if the task is one it declares."""
        declared = self._agent.declared.get(self._agent.task_name(task))
        return declared.assets if declared else None

    def campaign_plots(self) -> list[str]:
        """The campaigns that have drawn an accuracy plot."""
        return [c.section.name for c in self._agent.campaigns
                if plot_path(self._agent.config.state_dir, c.section.name).is_file()]

    def campaign_plot(self, name: str) -> Path | None:
        if name not in {c.section.name for c in self._agent.campaigns}:
            return None
        path = plot_path(self._agent.config.state_dir, name)
        return path if path.is_file() else None

    # -- decisions --------------------------------------------------------------------------------------
    async def decide(self, sid: int, accept: bool, reason: str = "") -> str:
        """Accept (pay) or reject a result waiting for review; what happened, in one line."""
        return await self._agent.review_decision(sid, accept, reason)
