"""The journal opened by several processes at once (an engine creating its workers' journals while
``farm status`` or a test reads them), and its writer thread: durable when awaited, even across kill -9."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import threading

import pytest
from structlog.testing import capture_logs

from agents.journal import Journal, writes_settled


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


async def test_awaited_writes_are_committed_by_the_journals_thread_and_merge_without_loss(tmp_path):
    """Forty steps of eight tasks and forty verdict counts, all at once from one event loop: each write is
    on disk for any other reader when its await returns, merges keep every key, every count counts, and the
    commits run on the journal's thread (not the loop's, which they held ~5 ms each before)."""
    journal = Journal(tmp_path / "journal.sqlite")
    other = Journal(tmp_path / "journal.sqlite")  # another connection, as farm status or a restart reads
    try:
        async def steps(task: int) -> None:
            for step in range(5):
                await journal.write("task", task, f"step{step}", **{f"k{step}": step})
                assert other.get("task", task).step == f"step{step}"

        def count(tally: dict) -> dict:
            return {**tally, "n": tally.get("n", 0) + 1}

        await asyncio.gather(*[steps(t) for t in range(8)], *[journal.update_meta("tally", count, {}) for _ in range(40)])
        for task in range(8):
            entry = other.get("task", task)
            assert (entry.step, entry.data) == ("step4", {f"k{s}": s for s in range(5)})
        assert other.meta("tally") == {"n": 40}
        writer = await journal.update_meta("thread", lambda _: threading.get_ident())
        assert writer != threading.get_ident()
        assert await journal._queued(lambda db: db.execute("PRAGMA synchronous").fetchone()[0]) == 2  # FULL: power loss too
    finally:
        other.close()
        journal.close()


async def test_a_write_that_cannot_be_stored_fails_alone(tmp_path):
    """A value JSON cannot hold fails its own caller; the writes committed with it in one transaction stand."""
    journal = Journal(tmp_path / "journal.sqlite")
    try:
        results = await asyncio.gather(journal.write("task", 1, "claiming"), journal.write("task", 2, "bad", x={1, 2}),
                                       journal.write("task", 3, "claiming"), return_exceptions=True)
        assert isinstance(results[1], TypeError)
        assert [e.id for e in journal.entries("task")] == ["1", "3"]
    finally:
        journal.close()


async def test_a_checkpoint_queued_unawaited_lands_after_the_rows_before_it_and_at_close(tmp_path):
    journal = Journal(tmp_path / "journal.sqlite")
    await journal.write("task", 1, "claimed")
    journal.write_metas_soon({"checkpoint": [7, 0]})
    journal.close()
    reopened = Journal(tmp_path / "journal.sqlite")
    try:
        assert reopened.meta("checkpoint") == [7, 0] and reopened.get("task", 1).step == "claimed"
    finally:
        reopened.close()


async def test_once_writes_settle_the_writers_have_done_what_follows_them(tmp_path):
    """A reader on another connection may see a row before its writer has resumed; after
    ``writes_settled`` every writer whose row it saw has run its next step (here: noting it)."""
    journal = Journal(tmp_path / "journal.sqlite")
    reader = Journal(tmp_path / "journal.sqlite")
    noted: list[int] = []

    async def worker(n: int) -> None:
        await journal.write("task", n, "failed")
        noted.append(n)  # what a worker logs right after its write

    try:
        for _ in range(20):
            noted.clear()
            workers = [asyncio.create_task(worker(n)) for n in range(4)]
            while len(reader.entries("task", steps=("failed",))) < 4:
                await asyncio.sleep(0)
            await writes_settled()
            assert sorted(noted) == [0, 1, 2, 3]
            await asyncio.gather(*workers)
            for n in range(4):
                await journal.write("task", n, "claiming")
    finally:
        reader.close()
        journal.close()


def test_a_checkpoint_that_cannot_be_saved_is_one_warning_and_the_next_one_lands(tmp_path):
    journal = Journal(tmp_path / "journal.sqlite")
    with capture_logs() as logs:
        journal.write_metas_soon({"checkpoint": {1, 2}})  # no JSON for a set: this commit's write fails
        journal.write_metas_soon({"checkpoint": [8, -1]})
        journal.close()
    assert [(e["event"], e["log_level"], e["error_type"]) for e in logs] == \
        [("checkpoint_not_saved", "warning", "TypeError")]
    reopened = Journal(tmp_path / "journal.sqlite")
    try:
        assert reopened.meta("checkpoint") == [8, -1]
    finally:
        reopened.close()


WRITER = textwrap.dedent("""
    import asyncio, sys
    from agents.journal import Journal

    async def main():
        journal = Journal(sys.argv[1])
        async def task(t):
            for step in range(1000):
                await journal.write("task", t, f"s{step}", n=step)
                print(t, step, flush=True)  # the action that depends on the write: after it is durable
        await asyncio.gather(*[task(t) for t in range(4)])

    asyncio.run(main())
""")


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="kill -9")
def test_every_write_acted_on_before_a_kill_9_is_in_the_journal(tmp_path):
    """Four tasks write steps as fast as the disk allows and act (print) after each await; kill -9 mid-run:
    the journal holds each task at least at the last step it acted on (the child went on acting while
    these lines were read, so it may be further)."""
    path = tmp_path / "journal.sqlite"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    acted: dict[int, int] = {}
    for line in proc.stdout:
        task, step = map(int, line.split())
        acted[task] = step
        if sum(acted.values()) >= 200:
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    proc.stdout.close()
    journal = Journal(path)
    try:
        for task, step in acted.items():
            assert journal.get("task", task).data["n"] >= step, (task, step)
    finally:
        journal.close()


def test_a_renamed_kind_keeps_its_rows_steps_and_data(tmp_path):
    """A worker's payment claims were journaled as kind ``claim`` until "claim" came to mean only a slot:
    a journal written then is read as ``payment_claim`` (the worker renames at start), nothing lost."""
    journal = Journal(tmp_path / "journal.sqlite")
    try:
        journal.set("claim", 7, "claiming", deadline=120)
        journal.set("claim", 8, "claimed", amount=5, block=130)
        journal.set("task", 7, "submitted", submission_id=7)
        assert journal.rename_kind("claim", "payment_claim") == 2
        assert journal.rename_kind("claim", "payment_claim") == 0  # again at the next start: nothing to do
        assert journal.entries("claim") == []
        moved = {e.id: (e.step, e.data) for e in journal.entries("payment_claim")}
        assert moved == {"7": ("claiming", {"deadline": 120}), "8": ("claimed", {"amount": 5, "block": 130})}
        assert journal.get("task", 7).step == "submitted"
    finally:
        journal.close()
