"""The chain state as a node keeps it: raw storage keys to SCALE bytes, with transactional layers.

Pallets read and write typed values through :class:`TypedStorage`; RPC reads the raw bytes, so
``state_getStorage`` answers exactly what a real node would for the same storage key.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .codec import CodecError
from .hashing import hash_key
from .metadata import DeclaredRuntime

_DELETED = None


class State:
    """Committed key-value state plus a stack of uncommitted layers (block, then each call)."""

    def __init__(self, committed: dict[bytes, bytes] | None = None) -> None:
        self.committed: dict[bytes, bytes] = committed if committed is not None else {}
        self.layers: list[dict[bytes, bytes | None]] = []

    def get(self, key: bytes) -> bytes | None:
        for layer in reversed(self.layers):
            if key in layer:
                return layer[key]
        return self.committed.get(key)

    def put(self, key: bytes, value: bytes | None) -> None:
        if self.layers:
            self.layers[-1][key] = value
        elif value is None:
            self.committed.pop(key, None)
        else:
            self.committed[key] = value

    def begin(self) -> None:
        self.layers.append({})

    def rollback(self) -> None:
        self.layers.pop()

    def commit_layer(self) -> dict[bytes, bytes | None]:
        """Fold the top layer into the one below (or into committed state); returns its changes."""
        top = self.layers.pop()
        if self.layers:
            self.layers[-1].update(top)
        else:
            for key, value in top.items():
                if value is None:
                    self.committed.pop(key, None)
                else:
                    self.committed[key] = value
        return top

    def keys_with_prefix(self, prefix: bytes) -> Iterator[bytes]:
        """Keys under a prefix, uncommitted layers included, in byte order (for state_getKeysPaged)."""
        keys = {k for k in self.committed if k.startswith(prefix)}
        for layer in self.layers:
            for k, v in layer.items():
                if k.startswith(prefix):
                    (keys.discard if v is None else keys.add)(k)
        return iter(sorted(keys))


class TypedStorage:
    """Typed access to storage items by pallet and item name, encoded with the runtime's codec."""

    KEY_CACHE_SIZE = 100_000

    def __init__(self, runtime: DeclaredRuntime, state: State) -> None:
        self.runtime = runtime
        self.state = state
        self._codec = runtime.codec
        self._keys: dict[tuple[Any, ...], bytes] = {}  # hashing a key costs more than the read it serves

    def key(self, pallet: str, item: str, keys: tuple[Any, ...] = ()) -> bytes:
        cache_key = (pallet, item, keys)
        try:
            return self._keys[cache_key]
        except (KeyError, TypeError):  # TypeError: an unhashable key (a dict); compute it each time
            pass
        key = self._compute_key(pallet, item, keys)
        if len(self._keys) >= self.KEY_CACHE_SIZE:
            self._keys.clear()
        try:
            self._keys[cache_key] = key
        except TypeError:
            pass
        return key

    def prefix(self, pallet: str, item: str) -> bytes:
        """The key prefix shared by all entries of a storage map."""
        return self.runtime.storage_entry(pallet, item)[1]

    def raw(self, pallet: str, item: str, *keys: Any) -> bytes | None:
        """The stored bytes, for hot paths that read one fixed-offset field."""
        return self.state.get(self.key(pallet, item, keys))

    def _compute_key(self, pallet: str, item: str, keys: tuple[Any, ...]) -> bytes:
        entry, prefix = self.runtime.storage_entry(pallet, item)
        if len(keys) != len(entry.keys):
            raise TypeError(f"{pallet}.{item} takes {len(entry.keys)} key(s), got {len(keys)}")
        out = prefix
        for (hasher, key_type), key in zip(entry.keys, keys, strict=True):
            out += hash_key(hasher, self._codec.encode(key_type, key))
        return out

    def get(self, pallet: str, item: str, *keys: Any) -> Any:
        entry, _ = self.runtime.storage_entry(pallet, item)
        raw = self.state.get(self.key(pallet, item, keys))
        if raw is None:
            if entry.optional:
                return None
            raw = entry.default
        try:
            return self._codec.decode(entry.value, raw)
        except CodecError as exc:  # corrupt state is a bug, never user input: say where
            raise CodecError(f"{pallet}.{item}{list(keys)}: {exc}") from exc

    def set(self, pallet: str, item: str, *keys_and_value: Any) -> None:
        *keys, value = keys_and_value
        entry, _ = self.runtime.storage_entry(pallet, item)
        self.state.put(self.key(pallet, item, tuple(keys)), self._codec.encode(entry.value, value))

    def remove(self, pallet: str, item: str, *keys: Any) -> None:
        self.state.put(self.key(pallet, item, keys), _DELETED)
