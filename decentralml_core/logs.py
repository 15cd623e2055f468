"""Structured logging: one JSON (or console) line per event, configured once per process.

Processors are plain structlog callables, so tests assert log lines with
``structlog.testing.capture_logs`` instead of parsing output.

structlog's import brings rich's traceback and pretty-printer, pygments and attrs (~0.1 s of a
command's start-up, a sixth of ``task list``'s): a read-only command configures lazily
(``configure(lazy=True)``) and the modules on its path log through :func:`get_logger`, so structlog is
imported, and configured, only when something is logged.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO, cast

_pending: tuple[int, bool] | None = None


class _CurrentStderr:
    """``sys.stderr`` as it is when a line is written, not when logging was configured: structlog caches a
    logger on its first use, so a logger bound to the stream of configuration time would keep writing there
    after a caller swaps ``sys.stderr`` (the tests run the command in their own process and read its stderr
    through ``contextlib.redirect_stderr``; a line lost that way would hide a second stderr line)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


_STDERR = cast(TextIO, _CurrentStderr())


def configure(level: str = "info", json: bool = False, lazy: bool = False) -> None:
    """Route structlog (and stdlib logging, e.g. aiohttp's) to stderr at ``level``; with ``lazy``, structlog
    is configured on its first use through :func:`get_logger` (or now, if it is imported already)."""
    global _pending
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}")
    logging.basicConfig(level=numeric, stream=sys.stderr, format="%(message)s")
    _pending = (numeric, json)
    if not lazy or "structlog" in sys.modules:
        _apply()


def _apply(unless_configured: bool = False) -> None:
    """Configure structlog as :func:`configure` was asked; ``unless_configured``: not if structlog was
    configured since (``structlog.testing.capture_logs`` in a test: the later configuration wins)."""
    global _pending
    if _pending is None:
        return
    (numeric, json), _pending = _pending, None
    import structlog

    if unless_configured and structlog.is_configured():
        return

    renderer = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(_STDERR),
        cache_logger_on_first_use=True,
    )


class LazyLogger:
    """``structlog.get_logger(name)``, imported on first use (applying a pending :func:`configure`)."""

    def __init__(self, name: str) -> None:
        self._name, self._logger = name, None

    def __getattr__(self, attr: str) -> Any:
        if self._logger is None:
            import structlog

            _apply(unless_configured=True)
            self._logger = structlog.get_logger(self._name)
        return getattr(self._logger, attr)


def get_logger(name: str) -> LazyLogger:
    return LazyLogger(name)
