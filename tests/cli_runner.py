"""The ``decentralml`` command as a person runs it — its stdout, stderr and exit status — in this process or as
a real one.

In process, the command's own entry point (``agents.cli.main``) runs with the arguments, environment and
working directory it would have had as a process, against the same real devnet; what is saved is Python's
start-up, the imports and the runtime's load, once per command. That is most of a command's cost: at load ~4,
``task list`` took 0.6-0.95 s as a process and 0.04 s in process once warm, ``account transfer`` 3.8 s and
1.4 s; test_new_user's five unknown-id commands took 57 s as processes and 6 s in process on a loaded machine
(docs/benchmarks.md, "The test suite"). What only a process shows — the interpreter's own exit, a terminal,
signals, an agent's start-up — stays with ``process=True`` in a few places.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import subprocess
import sys
import threading
import traceback
import warnings
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

    with _environment(env), contextlib.chdir(cwd or os.getcwd()), _as_in_a_new_interpreter(), \
            _structlog_left_as_found(), contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
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


@contextlib.contextmanager
def _as_in_a_new_interpreter() -> Iterator[None]:
    """Warnings and stdlib log lines reach the command's stderr as they would in its own process: pytest's
    warning filters and its log handlers on the root logger (which make the command's ``logging.basicConfig``
    a no-op) are set aside for the call, so a stray warning or log line still breaks a "one line" assertion."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    root.handlers.clear()
    try:
        with warnings.catch_warnings():
            warnings.resetwarnings()
            warnings.simplefilter("default")  # the interpreter's defaults, for a command that is not __main__
            for quiet in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
                warnings.simplefilter("ignore", quiet)
            yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


@contextlib.contextmanager
def _structlog_left_as_found() -> Iterator[None]:
    """The command configures structlog for its own process: filtered at its ``--log-level``, each logger
    cached on its first use. In the test process that would outlive the call: a cached logger never reaches
    a later test's ``capture_logs`` (structlog's documented limit), and a warning-level filter drops info
    events before any processor sees them (a fresh-clone run: five tests of other files in the same worker
    captured no events at all). So no logger is cached during the call, and afterwards structlog is
    configured as it was before it."""
    import structlog

    from decentralml_core import logs

    saved, was_configured, configure = structlog.get_config(), structlog.is_configured(), structlog.configure

    def uncached(**settings: object) -> None:
        configure(**{**settings, "cache_logger_on_first_use": False})

    structlog.configure = uncached
    try:
        yield
    finally:
        structlog.configure = configure
        logs._pending = None  # a lazy configuration the command asked for is not applied after it
        if was_configured:
            structlog.configure(**saved)
        else:
            structlog.reset_defaults()
