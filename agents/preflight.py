"""What ``agent run`` needs, checked before it runs: ``agent check`` and ``farm check`` say every problem
in one line each instead of a config that loads and an agent that then fails (or restarts forever).

Offline: the key resolves (its variable is set, its keyfile opens), each published task's assets folder
exists with its ``start_task.sh``, the state dir is writable. Online (``--online``): the node answers,
the journal belongs to that chain, and the account can pay fees (a creator: also its tasks' escrow).
"""

from __future__ import annotations

import os
from pathlib import Path

from decentralml_core.keys import KeyLoadError
from decentralml_core.units import MIN_FEE_BALANCE, format_units
from decentralml_core.work import SCRIPT

from .config import AgentConfig, ConfigError


def writable(folder: Path) -> bool:
    """``folder`` exists and is writable, or its nearest existing parent is (``run`` creates it)."""
    for candidate in (folder, *folder.parents):
        if candidate.exists():
            return candidate.is_dir() and os.access(candidate, os.W_OK | os.X_OK)
    return False


def offline_problems(config: AgentConfig) -> tuple[list[str], str | None]:
    """(problems, the account's address if its key loads)."""
    problems, address = [], None
    try:
        address = config.key.load().ss58_address
    except (ConfigError, KeyLoadError) as exc:
        problems.append(str(exc))
    for task in config.tasks if config.role == "creator" else []:
        if not task.assets.is_dir():
            problems.append(f"tasks.{task.name}.assets: {task.assets} is not a folder")
        elif not (task.assets / SCRIPT).is_file():
            problems.append(f"tasks.{task.name}.assets: {task.assets} has no {SCRIPT}: workers would have nothing "
                            "to run")
    if not writable(config.state_dir):
        problems.append(f"state_dir: {config.state_dir} is not writable")
    if not writable(config.storage.root):
        problems.append(f"storage.root: {config.storage.root} is not writable")
    return problems, address


async def online_problems(config: AgentConfig, address: str | None) -> list[str]:
    """The node, the journal's chain and the account's funds."""
    from decentralml_core.chain import ChainClient, ConnectionLost

    from .journal import Journal, WrongChain, claim_chain

    try:
        client = await ChainClient.connect(config.node, reconnect_for=0)
    except ConnectionLost:
        return [f"node: nothing answers at {config.node}: is `decentralml devnet` running?"]
    problems, published = [], set()
    async with client:
        journal_file = config.state_dir / "journal.sqlite"
        if journal_file.exists():
            journal = Journal(journal_file)
            published = {e.id for e in journal.entries("published") if e.step != "refused"}  # refused: needs funds again
            try:
                if journal.meta("genesis_hash") is not None:  # a check never binds a journal itself
                    await claim_chain(journal, client.runtime.genesis_hash, client.block_hash)
            except WrongChain as exc:
                problems.append(f"state_dir: {exc}")
            finally:
                journal.close()
        if address is not None:
            free = (await client.storage("System", "Account", [address]))["data"]["free"]
            need = MIN_FEE_BALANCE + sum(t.pays * t.max_assignments for t in config.tasks if t.name not in published)
            if free < need:
                problems.append(f"key: {address} has {format_units(free)}, needs at least {format_units(need)} "
                                "for fees" + (" and escrow" if need > MIN_FEE_BALANCE else "")
                                + " (fund it: `decentralml account transfer`, or `decentralml farm fund`)")
    return problems
