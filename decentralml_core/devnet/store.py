"""Durable blocks and state in SQLite (WAL): a block is committed before anyone hears of it.

Tables: ``blocks`` (header and extrinsics by number and hash), ``state`` (the latest value of each
storage key, loaded at start), ``changes`` (every key's value per block, for reads at an old block).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS blocks (
    number INTEGER PRIMARY KEY, hash BLOB NOT NULL UNIQUE, header BLOB NOT NULL, extrinsics BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS state (key BLOB PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS changes (
    key BLOB NOT NULL, block INTEGER NOT NULL, value BLOB, PRIMARY KEY (key, block)) WITHOUT ROWID;
"""


class ChainDatabase:
    """One SQLite file per chain; every method is one short transaction."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")  # durable against a killed process
        self.db.executescript(_SCHEMA)

    def close(self) -> None:
        self.db.close()

    def meta(self, key: str) -> bytes | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: bytes) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def commit_block(self, number: int, block_hash: bytes, header: bytes, extrinsics: bytes,
                     changes: dict[bytes, bytes | None]) -> None:
        db = self.db
        db.execute("BEGIN")
        try:
            db.execute("INSERT INTO blocks VALUES (?, ?, ?, ?)", (number, block_hash, header, extrinsics))
            db.executemany("INSERT OR REPLACE INTO changes VALUES (?, ?, ?)",
                           [(k, number, v) for k, v in changes.items()])
            db.executemany("INSERT OR REPLACE INTO state VALUES (?, ?)",
                           [(k, v) for k, v in changes.items() if v is not None])
            db.executemany("DELETE FROM state WHERE key = ?", [(k,) for k, v in changes.items() if v is None])
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def load_state(self) -> dict[bytes, bytes]:
        return dict(self.db.execute("SELECT key, value FROM state"))

    def best(self) -> tuple[int, bytes, bytes] | None:
        row: tuple[int, bytes, bytes] | None = self.db.execute(
            "SELECT number, hash, header FROM blocks ORDER BY number DESC LIMIT 1").fetchone()
        return row

    def block(self, number: int) -> tuple[bytes, bytes, bytes] | None:
        row: tuple[bytes, bytes, bytes] | None = self.db.execute(
            "SELECT hash, header, extrinsics FROM blocks WHERE number = ?", (number,)).fetchone()
        return row

    def number_of(self, block_hash: bytes) -> int | None:
        row = self.db.execute("SELECT number FROM blocks WHERE hash = ?", (block_hash,)).fetchone()
        return row[0] if row else None

    def value_at(self, key: bytes, number: int) -> bytes | None:
        row = self.db.execute(
            "SELECT value FROM changes WHERE key = ? AND block <= ? ORDER BY block DESC LIMIT 1",
            (key, number)).fetchone()
        return row[0] if row else None

    def keys_at(self, prefix: bytes, number: int, start: bytes, count: int) -> list[bytes]:
        """Keys under ``prefix`` that held a value at block ``number``, after ``start``, in order."""
        rows = self.db.execute(
            "SELECT key, value FROM changes AS c WHERE key > ? AND substr(key, 1, ?) = ? AND block = "
            "(SELECT MAX(block) FROM changes WHERE key = c.key AND block <= ?) ORDER BY key",
            (start, len(prefix), prefix, number))
        out = []
        for key, value in rows:
            if value is not None:
                out.append(key)
                if len(out) >= count:
                    break
        return out
