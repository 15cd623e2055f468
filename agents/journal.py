"""An agent's durable journal (SQLite, WAL): where each piece of work stands, and the event checkpoint.

Every step is written (and committed) before the agent acts on the next one, so a restart — even
after ``kill -9`` — resumes each task at its step. Steps are facts about what was *started*; the
agent reconciles them with the chain before repeating anything that moves tokens or claims work.

Every commit is an fsync (``synchronous=FULL``: an accepted payment or a sent result is never lost,
even on power loss): 3–6 ms on the disks measured. An engine's workers share one event loop, so a
commit made on it stops every worker: 8 workers' ~480 commits for 60 tasks held the loop ~3 s of a
10 s run, and 8 workers did 1.08× the tasks/s of one (``bench/farm.py``). The creator's ~300 commits for
60 tasks held its loop 0.4 s (1 worker) to 1.3 s (8) of a 3.5–4.3 s run (cProfile), every result and
verdict waiting behind them. Agents therefore commit through :meth:`Journal.write`: a thread of the
journal's own commits while the loop goes on, and the caller awaits its write durable before acting on it. Writes queued while a commit runs share the
next one (one transaction, one fsync); the journals of several workers commit in parallel (8 threads
on 8 files: ~3,000 commits/s against ~350 for one, ext4 batching their fsyncs).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import queue
import sqlite3
import threading
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

SCHEMA = """
CREATE TABLE IF NOT EXISTS work (
    kind TEXT NOT NULL, id TEXT NOT NULL, step TEXT NOT NULL, data TEXT NOT NULL, updated REAL NOT NULL,
    PRIMARY KEY (kind, id));
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

log = structlog.get_logger("agent.journal")


@dataclass(frozen=True)
class Entry:
    kind: str
    id: str
    step: str
    data: dict
    updated: float


def _read_entry(db: sqlite3.Connection, kind: str, key: Any) -> Entry | None:
    row = db.execute("SELECT kind, id, step, data, updated FROM work WHERE kind=? AND id=?", (kind, str(key))).fetchone()
    return None if row is None else Entry(row[0], row[1], row[2], json.loads(row[3]), row[4])


def _put_entry(db: sqlite3.Connection, kind: str, key: Any, step: str, data: dict) -> Entry:
    """Record ``step``, merging ``data`` into what the entry holds: run inside a write transaction, so the
    read and the write are one (two writers of one entry never lose each other's data)."""
    old = _read_entry(db, kind, key)
    merged = {**(old.data if old else {}), **data}
    now = time.time()
    db.execute("INSERT INTO work (kind, id, step, data, updated) VALUES (?, ?, ?, ?, ?) "
               "ON CONFLICT (kind, id) DO UPDATE SET step=excluded.step, data=excluded.data, "
               "updated=excluded.updated", (kind, str(key), step, json.dumps(merged), now))
    return Entry(kind, str(key), step, merged, now)


def _read_meta(db: sqlite3.Connection, key: str, default: Any = None) -> Any:
    row = db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
    return default if row is None else json.loads(row[0])


def _put_metas(db: sqlite3.Connection, values: dict[str, Any]) -> None:
    db.executemany("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value=excluded.value",
                   [(key, json.dumps(value)) for key, value in values.items()])


Write = Callable[[sqlite3.Connection], Any]  # one write, run in a transaction of the writer's connection
Done = Callable[[Any, BaseException | None], None]


class _Writer:
    """A journal's own thread and connection, committing the writes queued to it in order; the writes
    queued while a commit runs share the next transaction (group commit: one fsync for all of them).

    One write that raises (a value JSON cannot hold) is rolled back alone (a savepoint each); a commit
    that fails (a full disk) fails every write of its transaction — none of them is on disk."""

    def __init__(self, path: Path) -> None:
        # opened here, so a journal that cannot be opened fails its first write's caller, not the thread
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA synchronous=FULL")  # per connection: this one's commits are the durable ones
        self.queue: queue.SimpleQueue[tuple[Write, Done | None] | None] = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._run, args=(db,), name=f"journal {path}", daemon=True)
        self.thread.start()
        _live_writers.add(self)

    def submit(self, write: Write, done: Done | None) -> None:
        self.queue.put((write, done))

    def stop(self) -> None:
        """Commit what is queued, then end the thread."""
        self.queue.put(None)
        self.thread.join()

    def _run(self, db: sqlite3.Connection) -> None:
        try:
            while True:
                batch = [self.queue.get()]
                while True:
                    try:
                        batch.append(self.queue.get_nowait())
                    except queue.Empty:
                        break
                writes = [item for item in batch if item is not None]
                if writes:
                    self._commit(db, writes)
                if len(writes) < len(batch):
                    return
        finally:
            db.close()

    @staticmethod
    def _commit(db: sqlite3.Connection, writes: list[tuple[Write, Done | None]]) -> None:
        outcomes: list[tuple[Any, BaseException | None]] = []
        try:
            db.execute("BEGIN IMMEDIATE")
            for write, _ in writes:
                db.execute("SAVEPOINT one")
                try:
                    outcomes.append((write(db), None))
                except Exception as exc:  # this write's own error (its caller gets it): the others go on
                    db.execute("ROLLBACK TO one")
                    outcomes.append((None, exc))
                db.execute("RELEASE one")
            db.execute("COMMIT")
        except Exception as exc:  # the transaction as a whole (locked past the timeout, disk full): nothing is on disk
            with contextlib.suppress(sqlite3.Error):  # the thread must live on to answer every caller
                if db.in_transaction:
                    db.execute("ROLLBACK")
            outcomes = [(None, exc)] * len(writes)
        for (_, done), (value, error) in zip(writes, outcomes, strict=True):
            if done is not None:
                done(value, error)


_live_writers: weakref.WeakSet[_Writer] = weakref.WeakSet()


async def writes_settled(timeout: float = 10.0) -> None:
    """Every journal write queued in this process so far is committed, and each caller it woke has run
    its next step: for whoever reads a journal through another connection and then expects what its
    writer did right after the write (an in-process test that sees a step, then looks for its log line).

    A row is visible to other connections at its COMMIT, a moment before the writer thread wakes its
    caller; a no-op queued behind it on each writer is answered after those callers were woken (one
    thread, one FIFO of callbacks into the loop), so their next steps have run when this returns."""
    loop = asyncio.get_running_loop()
    answers = []
    for writer in list(_live_writers):
        if writer.thread.is_alive():
            answer = loop.create_future()
            writer.submit(lambda db: None, _answer(loop, answer))
            answers.append(answer)
    if answers:
        await asyncio.wait(answers, timeout=timeout)  # a writer stopping meanwhile answers no one
    for _ in range(3):  # the woken callers' steps, queued before ours
        await asyncio.sleep(0)


def _answer(loop: asyncio.AbstractEventLoop, future: asyncio.Future) -> Done:
    """A writer's callback that settles ``future`` on ``loop`` (from the writer's thread)."""
    def done(value: Any, error: BaseException | None) -> None:
        try:
            loop.call_soon_threadsafe(_settle, future, value, error)
        except RuntimeError:  # the loop is closed: nobody waits for this write
            pass

    return done


def _settle(future: asyncio.Future, value: Any, error: BaseException | None) -> None:
    if future.done():  # its caller was cancelled: the write stands, as after a kill at that moment
        return
    if error is None:
        future.set_result(value)
    else:
        future.set_exception(error)


class Journal:
    """Reads on the caller's connection; writes either there (:meth:`set`, blocking until durable) or by the
    journal's writer thread (:meth:`write` and friends, awaited until durable) — an agent uses one or the
    other for its work rows, so their order is its calls' order."""

    def __init__(self, path: str | Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.path = Path(path)
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._writer: _Writer | None = None
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
        """Commit the writes still queued (a checkpoint), then close."""
        if self._writer is not None:
            self._writer.stop()
            self._writer = None
        self.db.close()

    # -- reads ---------------------------------------------------------------------------------------
    def get(self, kind: str, key: Any) -> Entry | None:
        return _read_entry(self.db, kind, key)

    def entries(self, kind: str | None = None, steps: tuple[str, ...] | None = None) -> list[Entry]:
        rows = self.db.execute("SELECT kind, id, step, data, updated FROM work" + (" WHERE kind=?" if kind else "")
                               + " ORDER BY updated", (kind,) if kind else ()).fetchall()
        found = [Entry(r[0], r[1], r[2], json.loads(r[3]), r[4]) for r in rows]
        return [e for e in found if steps is None or e.step in steps]

    def meta(self, key: str, default: Any = None) -> Any:
        return _read_meta(self.db, key, default)

    # -- writes that block until durable (an agent alone on its event loop: the creator) ---------------
    def set(self, kind: str, key: Any, step: str, **data: Any) -> Entry:
        """Record ``step`` (merging ``data`` into what the entry already holds)."""
        return self._blocking(lambda db: _put_entry(db, kind, key, step, data))

    def set_meta(self, key: str, value: Any) -> None:
        self._blocking(lambda db: _put_metas(db, {key: value}))

    def rename_kind(self, old: str, new: str) -> int:
        """Rows of kind ``old`` become kind ``new`` (a journal written before a kind was renamed); how many."""
        return self._blocking(lambda db: db.execute("UPDATE work SET kind=? WHERE kind=?", (new, old)).rowcount)

    def _blocking(self, write: Write) -> Any:
        with self.db:  # isolation_level None: an explicit transaction, the write lock taken before the read
            self.db.execute("BEGIN IMMEDIATE")
            return write(self.db)

    # -- writes committed by the writer thread (the workers of an engine, sharing one event loop) -------
    async def write(self, kind: str, key: Any, step: str, **data: Any) -> Entry:
        """:meth:`set`, durable when it returns, without holding the event loop during the fsync."""
        return await self._queued(lambda db: _put_entry(db, kind, key, step, data))

    async def write_metas(self, values: dict[str, Any]) -> None:
        await self._queued(lambda db: _put_metas(db, values))

    async def update_meta(self, key: str, update: Callable[[Any], Any], default: Any = None) -> Any:
        """Store ``update(current value)`` and return it; read and write in one transaction (two verdicts
        counted at once both count)."""
        def write(db: sqlite3.Connection) -> Any:
            value = update(_read_meta(db, key, default))
            _put_metas(db, {key: value})
            return value

        return await self._queued(write)

    def write_metas_soon(self, values: dict[str, Any]) -> None:
        """Queue meta keys without waiting for them: the event checkpoint, which no action waits on (lost
        in a crash, it replays a few seconds of events, each handled once). Committed in order after every
        write queued before it; :meth:`close` commits it. One whose commit fails is dropped: the next
        checkpoint carries the place again, and until then the events replay; the drop is logged."""
        path = str(self.path)

        def dropped(_: Any, error: BaseException | None) -> None:  # on the writer's thread
            if error is not None:
                log.warning("checkpoint_not_saved", journal=path, error=str(error), error_type=type(error).__name__)

        self._queue(lambda db: _put_metas(db, values), dropped)

    async def _queued(self, write: Write) -> Any:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._queue(write, _answer(loop, future))
        return await future

    def _queue(self, write: Write, done: Done | None) -> None:
        if self._writer is None:
            self._writer = _Writer(self.path)
        self._writer.submit(write, done)


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
