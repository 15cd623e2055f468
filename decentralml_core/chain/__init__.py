"""The async chain client agents stand on: submission, reads, event streams, and the pallet's types.

Names are loaded on first use (PEP 562): ``from decentralml_core.chain.model import TaskType`` or the
error types cost no import of the client (websockets, scalecodec, tenacity; substrate-interface only once
something is signed: see runtime.py).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_ERRORS = ("ChainChanged", "ChainError", "ConnectionLost", "DispatchFailed", "ExtrinsicDropped", "FieldTooLong",
           "InclusionTimeout", "TransactionRejected", "UnsupportedCall")
_WHERE = {"ChainClient": "client", "Checkpoint": "client", "Receipt": "client", "Event": "runtime",
          **{name: "errors" for name in _ERRORS}}

__all__ = ["ChainClient", "Checkpoint", "Receipt", "Event", "ChainChanged", "ChainError", "ConnectionLost",
           "DispatchFailed", "ExtrinsicDropped", "FieldTooLong", "InclusionTimeout", "TransactionRejected",
           "UnsupportedCall"]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)


if TYPE_CHECKING:
    from .client import ChainClient, Checkpoint, Receipt
    from .errors import (
        ChainChanged,
        ChainError,
        ConnectionLost,
        DispatchFailed,
        ExtrinsicDropped,
        FieldTooLong,
        InclusionTimeout,
        TransactionRejected,
        UnsupportedCall,
    )
    from .runtime import Event
