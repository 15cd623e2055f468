"""The tutorial's functions in its own synchronous call style, for scripts:

    from decentralml_core.tutorial import create_task_data_annotator
    task_id = create_task_data_annotator(expiration_block, "ws://127.0.0.1:9944", alice, None, ...)

``substrate`` may be a node URL or a connected ``SubstrateInterface`` (its URL is used). Each call
opens a client, runs the async function from :mod:`decentralml_core.tasks`, and closes it.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import structlog
from structlog.typing import EventDict, WrappedLogger

from . import tasks
from .chain import ChainClient

T = TypeVar("T")


def _url(substrate: Any) -> str:
    if isinstance(substrate, str):
        return substrate
    url: str | None = getattr(substrate, "url", None)
    if not url:
        raise TypeError("substrate must be a node URL or a SubstrateInterface connected to one")
    return url


def _below_warning(logger: WrappedLogger, method_name: str, event: EventDict) -> EventDict:
    if method_name in ("debug", "info"):
        raise structlog.DropEvent
    return event


def _quiet_unless_configured() -> None:
    """A script calling these functions sees its own output, not the library's info lines (structlog's
    default prints every event to stdout); a script that configured logging keeps its own settings.

    The level is a processor, not a filtering wrapper: ``structlog.testing.capture_logs`` (which swaps
    the processors) still sees every event afterwards."""
    if not structlog.is_configured():
        structlog.configure(processors=[_below_warning, structlog.processors.add_log_level,
                                        structlog.processors.TimeStamper(fmt="iso", utc=True),
                                        structlog.dev.ConsoleRenderer(colors=False)],
                            logger_factory=structlog.PrintLoggerFactory(sys.stderr))


def _sync(fn: Callable[..., Awaitable[T]]) -> Callable[..., T]:
    """``fn`` called synchronously, with ``substrate`` a node URL (or anything with a ``url``) instead of a
    connected client: the signature differs in that one argument's type, so the wrapper is ``...``-typed."""
    signature = inspect.signature(fn)

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        _quiet_unless_configured()
        bound = signature.bind(*args, **kwargs)

        async def run() -> T:
            async with await ChainClient.connect(_url(bound.arguments["substrate"])) as client:
                bound.arguments["substrate"] = client
                return await fn(*bound.args, **bound.kwargs)

        return asyncio.run(run())

    return wrapper


create_task_data_annotator = _sync(tasks.create_task_data_annotator)
create_task_model_engineer = _sync(tasks.create_task_model_engineer)
create_task_model_contributor = _sync(tasks.create_task_model_contributor)
list_task = _sync(tasks.list_task)
list_task_results = _sync(tasks.list_task_results)
assign_task = _sync(tasks.assign_task)
send_task_result = _sync(tasks.send_task_result)
accept_task_results = _sync(tasks.accept_task_results)
reject_task_results = _sync(tasks.reject_task_results)
validate_task_results = _sync(tasks.validate_task_results)
