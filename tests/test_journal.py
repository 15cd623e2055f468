"""The journal opened by several processes at once: an engine creating its workers' journals while
``farm status`` (or a test) reads them."""

from __future__ import annotations

import threading

from agents.journal import Journal


def test_a_journal_being_created_opens_for_every_reader(tmp_path):
    """Four connections open each new journal at the same instant. Before, turning a new database to WAL
    was refused at once to a connection that raced for it ("database is locked": 28 of 800 opens; a
    fresh-clone run saw it end an engine test). Each opens, reads and writes now."""
    failures: list[BaseException] = []
    for n in range(60):
        path = tmp_path / f"agent-{n}" / "journal.sqlite"
        start = threading.Barrier(4)

        def open_and_use(i: int, path=path, start=start) -> None:
            try:
                start.wait(timeout=30)
                journal = Journal(path)
                try:
                    journal.meta("checkpoint")
                    journal.set("task", f"{i}", "claiming")
                finally:
                    journal.close()
            except BaseException as exc:  # noqa: BLE001 - collected and asserted below
                failures.append(exc)

        threads = [threading.Thread(target=open_and_use, args=(i,)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert not failures, failures[:3]
        journal = Journal(path)
        try:
            assert journal.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            assert sorted(e.id for e in journal.entries("task")) == ["0", "1", "2", "3"]
        finally:
            journal.close()
