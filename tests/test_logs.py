"""Log lines go to ``sys.stderr`` as it is when a line is written: tests run the command in process and read
each command's stderr through ``contextlib.redirect_stderr`` (tests/cli_runner.py), and structlog caches a
logger on its first use."""

from __future__ import annotations

import contextlib
import io

import structlog

from decentralml_core import logs


def test_a_cached_logger_writes_to_the_stderr_of_the_moment():
    saved = structlog.get_config()
    try:
        logs.configure("info", json=True)
        log = structlog.get_logger("test_logs")
        first, second = io.StringIO(), io.StringIO()
        with contextlib.redirect_stderr(first):
            log.info("first_line")
        with contextlib.redirect_stderr(second):  # the same (now cached) logger, another stream
            log.info("second_line")
        assert '"first_line"' in first.getvalue() and "second_line" not in first.getvalue()
        assert '"second_line"' in second.getvalue() and "first_line" not in second.getvalue()
    finally:
        structlog.configure(**saved)
