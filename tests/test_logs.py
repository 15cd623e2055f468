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


def test_a_command_run_in_process_leaves_the_tests_logging_as_it_found_it(tmp_path):
    """The command configures structlog for a process of its own (its ``--log-level`` filter, loggers cached
    on first use); run in the test process it must not leave that behind, or later tests' ``capture_logs``
    see nothing (a fresh-clone run: five tests in the same worker captured no events)."""
    from cli_runner import decentralml
    from structlog.testing import capture_logs

    bad = tmp_path / "bad.yaml"
    bad.write_text("role: annotator\nkey: {dev: Bob}\nstate_dir: s\npolicy: {max_concurrent: 0}\n")
    before = structlog.get_config()
    out = decentralml("--log-level", "error", "agent", "check", str(bad))
    assert out.returncode == 2 and "policy.max_concurrent" in out.stderr
    assert structlog.get_config() == before
    with capture_logs() as captured:
        structlog.get_logger("after_the_command").info("still_seen")
    assert [e["event"] for e in captured] == ["still_seen"]
