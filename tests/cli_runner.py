"""The ``decentralml`` command as a person runs it — its stdout, stderr and exit status — in this process or as
a real one.

In process, the command's own entry point (``agents.cli.main``) runs with the arguments, environment and
working directory it would have had as a process, against the same real devnet; only Python's start-up and
imports are saved. That is most of a command's cost on a busy machine: a CLI test's command took 2-11 s as a
process with the suite running and 0.04-1.5 s in process (docs/benchmarks.md, "The test suite"). What only a
process shows — the interpreter's own traceback, a terminal, signals — stays with ``process=True``.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import threading
import traceback
from collections.abc import Iterator, Mapping
from pathlib import Path

CLI = str(Path(sys.executable).parent / "decentralml")


def decentralml(*args: str, env: Mapping[str, str | None] = {}, cwd: Path | None = None, timeout: float = 90,
                process: bool = False) -> subprocess.CompletedProcess[str]:
    """Run ``decentralml ARGS``; ``env`` changes the environment (``None`` removes a variable)."""
    argv = [CLI, *args]
    if process:
        full = {**os.environ, **env}
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=cwd,
                              env={k: v for k, v in full.items() if v is not None})
    stdout, stderr, status = io.StringIO(), io.StringIO(), []

    def run() -> None:
        from agents.cli import main

        try:
            status.append(main(list(args)))
        except SystemExit as exc:  # argparse, sys.exit: as the interpreter turns them into a status
            if isinstance(exc.code, str):
                print(exc.code, file=sys.stderr)
            status.append(1 if isinstance(exc.code, str) else exc.code or 0)
        except BaseException:  # noqa: BLE001 — what the interpreter prints for an uncaught exception
            traceback.print_exc()
            status.append(1)

    with _environment(env), contextlib.chdir(cwd or os.getcwd()), \
            contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        worker = threading.Thread(target=run, name="decentralml " + " ".join(args[:2]), daemon=True)
        worker.start()
        worker.join(timeout)  # the bound a process run has; a command left running fails its test below
    if worker.is_alive():
        raise subprocess.TimeoutExpired(argv, timeout, stdout.getvalue(), stderr.getvalue())
    return subprocess.CompletedProcess(argv, status[0], stdout.getvalue(), stderr.getvalue())


@contextlib.contextmanager
def _environment(changes: Mapping[str, str | None]) -> Iterator[None]:
    saved = dict(os.environ)
    for name, value in changes.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)
