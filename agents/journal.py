"""An agent's durable journal (SQLite, WAL): where each piece of work stands, and the event checkpoint.

Every step is written (and committed) before the agent acts on the next one, so a restart — even
after ``kill -9`` — resumes each task at its step. Steps are facts about what was *started*; the
agent reconciles them with the chain before repeating anything that moves tokens or claims work.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS work (
    kind TEXT NOT NULL, id TEXT NOT NULL, step TEXT NOT NULL, data TEXT NOT NULL, updated REAL NOT NULL,
    PRIMARY KEY (kind, id));
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass(frozen=True)
class Entry:
    kind: str
    id: str
    step: str
    data: dict
    updated: float


class Journal:
    def __init__(self, path: str | Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.path = Path(path)
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._set_up()

    def _set_up(self) -> None:
        """WAL mode and the tables, on a journal another process may be creating at this very moment (an
        engine starting while ``farm status`` or a test reads its journals). Turning a new database to WAL
        takes an exclusive lock that SQLite refuses at once, without waiting out its busy timeout, to a
        connection that raced for it: 28 of 800 opens failed "database is locked" with four openers of
        each new journal. Once the mode is WAL (it persists in the file) no opener changes it; until then a
        refused one tries again, for up to 10 s."""
        deadline = time.monotonic() + 10
        while True:
            try:
                if self.db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                    self.db.execute("PRAGMA journal_mode=WAL")
                self.db.execute("PRAGMA synchronous=FULL")
                self.db.executescript(SCHEMA)
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def close(self) -> None:
        self.db.close()

    def get(self, kind: str, key: Any) -> Entry | None:
        row = self.db.execute("SELECT kind, id, step, data, updated FROM work WHERE kind=? AND id=?",
                              (kind, str(key))).fetchone()
        return None if row is None else Entry(row[0], row[1], row[2], json.loads(row[3]), row[4])

    def set(self, kind: str, key: Any, step: str, **data: Any) -> Entry:
        """Record ``step`` (merging ``data`` into what the entry already holds)."""
        old = self.get(kind, key)
        merged = {**(old.data if old else {}), **data}
        now = time.time()
        self.db.execute("INSERT INTO work (kind, id, step, data, updated) VALUES (?, ?, ?, ?, ?) "
                        "ON CONFLICT (kind, id) DO UPDATE SET step=excluded.step, data=excluded.data, "
                        "updated=excluded.updated", (kind, str(key), step, json.dumps(merged), now))
        return Entry(kind, str(key), step, merged, now)

    def entries(self, kind: str | None = None, steps: tuple[str, ...] | None = None) -> list[Entry]:
        rows = self.db.execute("SELECT kind, id, step, data, updated FROM work" + (" WHERE kind=?" if kind else "")
                               + " ORDER BY updated", (kind,) if kind else ()).fetchall()
        found = [Entry(r[0], r[1], r[2], json.loads(r[3]), r[4]) for r in rows]
        return [e for e in found if steps is None or e.step in steps]

    def meta(self, key: str, default: Any = None) -> Any:
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return default if row is None else json.loads(row[0])

    def set_meta(self, key: str, value: Any) -> None:
        self.set_metas({key: value})

    def set_metas(self, values: dict[str, Any]) -> None:
        """Several meta keys in one transaction: one fsync, not one each (each blocks the event loop ~6 ms on
        a busy disk, and a farm engine flushes every worker's checkpoint and anchor every 2 s)."""
        rows = [(key, json.dumps(value)) for key, value in values.items()]
        with self.db:  # isolation_level None: an explicit transaction
            self.db.execute("BEGIN")
            self.db.executemany("INSERT INTO meta (key, value) VALUES (?, ?) "
                                "ON CONFLICT (key) DO UPDATE SET value=excluded.value", rows)


class WrongChain(ValueError):
    """The journal was written against another chain: its work and checkpoint mean nothing on this one."""


async def claim_chain(journal: Journal, genesis_hash: str, hash_at: Callable[[int], Awaitable[str | None]]) -> None:
    """Bind the journal to this chain on first use, or refuse a chain it does not belong to.

    Two facts identify the chain: its genesis hash (another network), and the hash of the last block the
    agent handled (``anchor``, written with each checkpoint) — a dev chain's genesis is the same on every
    fresh start, so only the anchor tells a devnet restarted with ``--tmp`` from the one the journal
    followed. Resuming there, an agent believed its tasks published and its checkpoint ahead of the
    chain, and silently did nothing.
    """
    known = journal.meta("genesis_hash")
    if known is None:
        journal.set_meta("genesis_hash", genesis_hash)
        return
    fix = ("start fresh with `decentralml agent run --fresh` (keeps the old journal aside) or a new state_dir")
    where = journal.path.parent
    if known != genesis_hash:
        raise WrongChain(f"{where} holds the journal of another chain (genesis {known[:10]}…, this node's is "
                         f"{genesis_hash[:10]}…): {fix}")
    anchor = journal.meta("anchor")
    if anchor is not None and await hash_at(anchor[0]) != anchor[1]:
        raise WrongChain(f"{where} holds the journal of another chain: its block {anchor[0]} is not on this node's "
                         f"chain (a devnet started with --tmp is a new chain each time): {fix}")
