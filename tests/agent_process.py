"""Agents as an operator runs them, for tests: `decentralml agent run` processes with YAML written to a
scratch dir, their journals, and polling the chain until a published task settles."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path

import yaml
from substrateinterface import Keypair

from agents.journal import Journal
from decentralml_core.chain import ChainClient
from decentralml_core.chain.market import Market
from decentralml_core.chain.model import SubmissionStatus

CLI = str(Path(sys.executable).parent / "decentralml")
PAYS = 10**12


class Agent:
    def __init__(self, tmp: Path, name: str, config: dict) -> None:
        self.name, self.tmp = name, tmp
        self.state = tmp / name
        self.path = tmp / f"{name}.yaml"
        self.log = tmp / f"{name}.log"
        self.path.write_text(yaml.safe_dump({"state_dir": str(self.state), **config}))
        self.proc: subprocess.Popen | None = None

    def start(self) -> Agent:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([CLI, "--log-level", "info", "agent", "run", str(self.path)],
                                         stdout=log, stderr=subprocess.STDOUT)
        return self

    def wait_ready(self, timeout: float = 90) -> Agent:  # a loaded 2-core machine: imports alone take seconds
        """Until the agent has looked at the chain once (its journal holds an event checkpoint)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if (self.state / "journal.sqlite").exists():
                journal = Journal(self.state / "journal.sqlite")
                try:
                    if journal.meta("checkpoint") is not None:
                        return self
                finally:
                    journal.close()
            assert self.proc.poll() is None, self.log.read_text()[-2000:]
            time.sleep(0.1)
        raise TimeoutError(f"{self.name} did not start")

    def wait_log(self, text: str, timeout: float = 90) -> Agent:
        """Until ``text`` shows in its log (the agent still running)."""
        deadline = time.monotonic() + timeout
        while text not in self.log.read_text():
            assert self.proc.poll() is None, self.log.read_text()[-2000:]
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} never logged {text!r}")
            time.sleep(0.2)
        return self

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout=30)

    def journal(self) -> dict[tuple[str, str], str]:
        journal = Journal(self.state / "journal.sqlite")
        try:
            return {(e.kind, e.id): e.step for e in journal.entries()}
        finally:
            journal.close()

    def entry(self, kind: str, key):
        journal = Journal(self.state / "journal.sqlite")
        try:
            return journal.get(kind, key)
        finally:
            journal.close()


GOOD_SCRIPT = "mkdir -p outputs\nfor f in annotation_files/*; do echo '{\"file\": \"'$f'\"}' > outputs/$(basename $f).json; done\n"


def stop_all(agents: Iterable[Agent], sig: int = signal.SIGTERM) -> dict[str, int]:
    """Each started agent's exit status: every one signalled first, then each waited for, so their stops
    overlap (one after the other, five agents took 5 s to stop)."""
    started = [agent for agent in agents if agent.proc is not None]
    for agent in started:
        if agent.proc.poll() is None:
            agent.proc.send_signal(sig)
    return {agent.name: agent.proc.wait(timeout=30) for agent in started}


def make_assets(tmp: Path, script: str = GOOD_SCRIPT) -> Path:
    """A fresh assets folder under ``tmp``: one random image to label, one sample, ``start_task.sh``."""
    folder = tmp / f"assets-{len(list(tmp.glob('assets-*')))}"
    (folder / "annotation_files").mkdir(parents=True)
    (folder / "annotation_samples").mkdir()
    (folder / "annotation_files" / "file_1.jpg").write_bytes(os.urandom(2000))
    (folder / "annotation_samples" / "sample_1.jpg").write_bytes(os.urandom(500))
    (folder / "start_task.sh").write_text(script)
    return folder


def task_decl(name: str, folder: Path, **overrides) -> dict:
    return {"name": name, "assets": str(folder), "question": "Label the samples", "pays": PAYS,
            "max_assignments": 1, "expires_in": 500, "strategy": "AutoAccept", "class_labels": "car", **overrides}


async def settle(url: str, name: str, until, timeout: float = 60):
    """Poll the chain until ``until(task, submissions)`` holds for the task published as ``name``."""
    async with await ChainClient.connect(url) as client:
        return await settle_on(client, name, until, timeout)


async def settle_on(client: ChainClient, name: str, until, timeout: float = 60):
    """:func:`settle` through a client already connected."""
    deadline = time.monotonic() + timeout
    market = Market(client)
    while time.monotonic() < deadline:
        for task in await market.tasks():
            if f'"name": "{name}"' in (task.annotation_json or ""):
                subs = await market.submissions(task.task_id)
                if until(task, subs):
                    return task, subs
        await asyncio.sleep(0.3)
    raise TimeoutError(f"task {name} did not settle")


def free(url: str, name: str) -> int:
    async def read():
        async with await ChainClient.connect(url) as client:
            return await client.free_balance(Keypair.create_from_uri(f"//{name}").ss58_address)
    return asyncio.run(read())


def decided(n: int):
    return lambda task, subs: len([s for s in subs if s.status in (SubmissionStatus.ACCEPTED,
                                                                    SubmissionStatus.REJECTED)]) == n




def wait_for(check, timeout: float = 60, what: str = "condition"):
    """``check()``'s first truthy value, polled every 0.2 s; TimeoutError naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise TimeoutError(what)
