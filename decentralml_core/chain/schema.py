"""What reading the market's storage needs of a runtime, taken from its metadata once and cached on disk.

Why: before a command could read one storage value, substrate-interface decoded the node's whole metadata
into scalecodec objects (every type, call, event and doc line: 11,000 objects, ~0.6 s of CPU for the
devnet's 106 types) and the import of substrate-interface itself (eth-keys, pydantic) cost ~0.5 s more;
``decentralml task list`` took 1.9 s on a quiet machine, almost none of it reading. A read needs far less:
each storage item's prefix, hashers, key and value types, the definitions of the types the read pallets
use, the pallets' call and error names and the SS58 prefix. :class:`ReadSchema` keeps those as JSON.

The cache is keyed by the blake2b hash of the metadata bytes the node serves, fetched on every connect
(~100 kB over loopback, a few ms): a runtime upgrade, or a devnet whose pallet changed without a version
bump, is another key, never a stale decode. Decoding still goes through scalecodec: the cached type
definitions are handed to its own ``update_from_scale_info_types`` (the step substrate-interface runs on
the decoded registry), so a value decodes to exactly what the full runtime gives (tests compare both on
the devnet and on a real runtime). Items outside :data:`READ_ITEMS` (anything holding a call) are left to the
full runtime.

The schema also holds ``System.Events``' type and the definitions it reaches (``events_type``): an event
stream splits and decodes events with them (:mod:`.events`), so an agent catching up after an outage no
longer waits for the full runtime first (1.1 s of CPU, 1.5 s of the catch-up's wall on a busy machine).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .scale import scale_config

SCHEMA_VERSION = 2  # 2: events_type
READ_ITEMS: dict[str, tuple[str, ...] | None] = {"DecentralMLModule": None, "System": ("Account", "Number")}
"""Storage items read without the full runtime, by pallet (None: every item of the pallet)."""
KEYS_KEPT = 4096
"""Storage keys a schema remembers (~200 bytes each)."""
CACHE_KEEP = 16
"""Schemas kept in the cache dir (oldest pruned): one per runtime a user talks to, a few kB each."""


def metadata_hash(raw: bytes) -> str:
    """The cache key of a runtime: blake2b-256 of the metadata bytes ``state_getMetadata`` returns."""
    return hashlib.blake2b(raw, digest_size=32).hexdigest()


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "decentralml" / "runtime"


def _twox(data: bytes, rounds: int) -> bytes:
    import xxhash

    return b"".join(xxhash.xxh64_intdigest(data, seed).to_bytes(8, "little") for seed in range(rounds))


HASHERS: dict[str, Callable[[bytes], bytes]] = {
    "Blake2_128": lambda b: hashlib.blake2b(b, digest_size=16).digest(),
    "Blake2_256": lambda b: hashlib.blake2b(b, digest_size=32).digest(),
    "Blake2_128Concat": lambda b: hashlib.blake2b(b, digest_size=16).digest() + b,
    "Twox128": lambda b: _twox(b, 2),
    "Twox256": lambda b: _twox(b, 4),
    "Twox64Concat": lambda b: _twox(b, 1) + b,
    "Identity": lambda b: b,
}
"""Substrate's storage hashers (``frame_support::StorageHasher``)."""


class _Registered:
    """A registry entry as scalecodec's ``update_from_scale_info_types`` reads it: only ``.value``."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


class ReadSchema:
    """A runtime's storage layout and the types of :data:`READ_ITEMS`; built from a loaded substrate-interface
    (:meth:`from_substrate`), stored as JSON (:meth:`to_json`)."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data
        self.key: str = data["metadata_hash"]
        self.ss58_format: int = data["ss58_format"]
        self._config: Any = None
        self._keys: dict[tuple[str, str, tuple[Any, ...]], str | None] = {}  # storage keys encoded lately, oldest first

    # -- building -------------------------------------------------------------------------------
    @classmethod
    def from_substrate(cls, si: Any, raw_metadata: bytes) -> ReadSchema:
        metadata = si.metadata
        storage: dict[str, dict[str, dict[str, Any]]] = {}
        calls: dict[str, list[str]] = {}
        errors: dict[str, dict[str, Any]] = {}
        roots: set[int] = set()
        for pallet in metadata.pallets:
            name = pallet.name
            calls[name] = [c.name for c in pallet.calls or []]
            errors[str(pallet["index"].value)] = {"pallet": name, "errors": [
                [e.name, " ".join(e.docs or [])] for e in pallet.errors or []]}
            if not pallet.storage:
                continue
            prefix = pallet.value["storage"]["prefix"]
            wanted = READ_ITEMS.get(name, ())
            items = storage.setdefault(name, {})
            for fn in pallet.storage:
                key_types, value_type = fn.get_params_type_string(), fn.get_value_type_string()
                readable = name in READ_ITEMS and (wanted is None or fn.name in wanted)
                items[fn.name] = {"prefix": prefix, "hashers": fn.get_param_hashers(), "key_types": key_types,
                                  "value_type": value_type, "modifier": fn.value["modifier"],
                                  "default": fn.value["default"], "readable": readable}
                if readable:
                    roots.update(int(t.rsplit("::", 1)[1]) for t in [*key_types, value_type]
                                 if t.startswith("scale_info::"))  # others are scalecodec's own (u16 …)
        events = storage.get("System", {}).get("Events", {}).get("value_type", "")
        events_type = int(events.rsplit("::", 1)[1]) if events.startswith("scale_info::") else None
        roots |= {events_type} if events_type is not None else set()
        registry = {entry["id"]: entry for entry in metadata.portable_registry.value["types"]}
        return cls({"version": SCHEMA_VERSION, "metadata_hash": metadata_hash(raw_metadata),
                    "chain": si.chain, "spec_version": si.runtime_version,
                    "ss58_format": si.ss58_format, "preset": si.type_registry_preset,
                    "storage": storage, "calls": calls, "errors": errors, "events_type": events_type,
                    "types": [_without_docs(registry[i]) for i in sorted(_closure(roots, registry))]})

    def to_json(self) -> str:
        return json.dumps(self.data, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> ReadSchema | None:
        """The schema, or None for a file of another format version or not a schema at all."""
        try:
            data = json.loads(text)
            return cls(data) if data.get("version") == SCHEMA_VERSION else None
        except (ValueError, KeyError, TypeError, AttributeError):
            return None

    # -- reading --------------------------------------------------------------------------------
    def item(self, pallet: str, item: str) -> dict[str, Any] | None:
        found: dict[str, Any] | None = self.data["storage"].get(pallet, {}).get(item)
        return found

    def readable(self, pallet: str, item: str) -> bool:
        found = self.item(pallet, item)
        return bool(found and found["readable"])

    def has_call(self, pallet: str, call: str) -> bool:
        return call in self.data["calls"].get(pallet, ())

    def module_error(self, index: int, error: int) -> tuple[str, str, str] | None:
        pallet = self.data["errors"].get(str(index))
        if pallet is None or error >= len(pallet["errors"]):
            return None
        name, docs = pallet["errors"][error]
        return pallet["pallet"], name, docs

    def storage_key(self, pallet: str, item: str, params: list[Any] | None = None) -> str | None:
        """The item's key as hex, or None when the schema cannot encode its params (not a read item).
        Remembered for the last :data:`KEYS_KEPT` (pallet, item, params): an agent reads the same few keys
        again and again (its account, a task's records), and encoding an account's key cost 0.12 ms."""
        try:
            memo = (pallet, item, tuple(params or ()))
            key = self._keys.get(memo)
        except TypeError:  # a param that cannot be a dict key (a dict, a list): encoded each time
            return self._storage_key(pallet, item, params)
        if key is None:
            key = self._keys[memo] = self._storage_key(pallet, item, params)
            if len(self._keys) > KEYS_KEPT:
                del self._keys[next(iter(self._keys))]
        return key

    def _storage_key(self, pallet: str, item: str, params: list[Any] | None = None) -> str | None:
        found = self.item(pallet, item)
        params = params or []
        if found is None or (params and not found["readable"]) or len(params) > len(found["hashers"]):
            return None
        key: bytes = HASHERS["Twox128"](found["prefix"].encode()) + HASHERS["Twox128"](item.encode())
        for type_string, hasher, param in zip(found["key_types"], found["hashers"], params, strict=False):
            key += HASHERS[hasher](bytes(self.config.create_scale_object(type_string).encode(param).data))
        return "0x" + key.hex()

    def decode(self, type_string: str, raw_hex: str) -> Any:
        from scalecodec.base import ScaleBytes

        return self.config.create_scale_object(type_string, data=ScaleBytes(raw_hex)).decode()

    def default_hex(self, pallet: str, item: str) -> str | None:
        """An absent item's value as hex: its default for a ``ValueQuery``, else None."""
        found = self.item(pallet, item)
        if found is None or found["modifier"] != "Default":
            return None
        default: str = found["default"]  # scalecodec shows bytes that are valid UTF-8 as str
        return default if default.startswith("0x") else "0x" + default.encode().hex()

    @property
    def config(self) -> Any:
        """scalecodec's type registry for the read items, as substrate-interface sets it up (the core preset,
        the chain's own preset if it has one, then the runtime's types), built on first use."""
        if self._config is None:
            self._config = scale_registry(self.data["types"], self.ss58_format, self.data["preset"])
        return self._config


def scale_registry(types: list[dict[str, Any]], ss58_format: int, preset: str | None) -> Any:
    """A scalecodec registry of a runtime's portable ``types``, set up as substrate-interface sets up its own
    (the core preset, the chain's own preset if it has one, then the types)."""
    import scalecodec

    presets = Path(scalecodec.__file__).parent / "type_registry"
    config = scale_config(implements_scale_info=True, ss58_format=ss58_format)
    for name in ("core", preset):
        if name and name != "legacy" and (presets / f"{name}.json").is_file():
            config.update_type_registry(json.loads((presets / f"{name}.json").read_text()))
    config.update_from_scale_info_types([{"id": _Registered(t["id"]), "type": _Registered(t["type"])} for t in types])
    return config


def _closure(roots: set[int], registry: dict[int, dict[str, Any]]) -> set[int]:
    """Every type id the ``roots`` refer to, through fields, variants, params, sequences, arrays, tuples."""
    seen: set[int] = set()
    todo = list(roots)
    while todo:
        tid = todo.pop()
        if tid in seen:
            continue
        seen.add(tid)
        todo += _refs(registry[tid]["type"])
    return seen


def _refs(node: Any) -> list[int]:
    """Type ids named in a registry entry: ``type`` fields (fields, params, sequence, array, compact) and
    ``tuple`` lists."""
    found: list[int] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "type" and isinstance(value, int):
                found.append(value)
            elif key == "tuple" and isinstance(value, list) and all(isinstance(v, int) for v in value):
                found += value
            elif key != "docs":
                found += _refs(value)
    elif isinstance(node, list):
        for value in node:
            found += _refs(value)
    return found


def _without_docs(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: ([] if k == "docs" else _without_docs(v)) for k, v in node.items()}
    if isinstance(node, list):
        return [_without_docs(v) for v in node]
    return node


class SchemaCache:
    """Schemas on disk, one JSON file per metadata hash; a cache: unreadable or unwritable is a miss."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or default_cache_dir()

    def path(self, key: str) -> Path:
        """The file of a runtime's schema; named by format version too, so that processes of two versions
        sharing the cache do not overwrite each other's schema on every start."""
        return self.root / f"{key}.v{SCHEMA_VERSION}.json"

    def get(self, key: str) -> ReadSchema | None:
        try:
            schema = ReadSchema.from_json(self.path(key).read_text())
        except OSError:
            return None
        return schema if schema is not None and schema.key == key else None

    def put(self, schema: ReadSchema) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile("w", dir=self.root, suffix=".tmp", delete=False) as out:
                out.write(schema.to_json())
            os.replace(out.name, self.path(schema.key))
            kept = sorted(self.root.glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True)
            for old in kept[CACHE_KEEP:]:
                old.unlink(missing_ok=True)
        except OSError:
            return
