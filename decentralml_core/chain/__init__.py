"""The async chain client agents stand on: submission, reads, event streams, and the pallet's types."""

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

__all__ = ["ChainClient", "Checkpoint", "Receipt", "Event", "ChainChanged", "ChainError", "ConnectionLost",
           "DispatchFailed", "ExtrinsicDropped", "FieldTooLong", "InclusionTimeout", "TransactionRejected",
           "UnsupportedCall"]
