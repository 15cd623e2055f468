"""A block's events split into records without decoding them; a record's attributes decoded when read.

Why: catching up decoded every event of every block with substrate-interface (one scalecodec object per
field, every account SS58-encoded): 3.6 ms a block of four events, 36 s of CPU for 10,000 blocks, while
an agent reads the attributes of a handful (its pallet's events; ``System.Remarked``, fees and
transfers are passed over). :class:`EventLayout` walks the ``System.Events`` bytes with the runtime's
type registry (sizes only: an index byte, a compact length, a fixed width) to find each record's phase,
pallet, name and extent; :class:`EventDecoder` decodes one record's attributes with scalecodec — the same
objects, so the same values as a whole-block decode (``tests/test_chain_events.py`` compares them).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from .schema import scale_registry

PRIMITIVE_BYTES = {"bool": 1, "char": 4, "u8": 1, "i8": 1, "u16": 2, "i16": 2, "u32": 4, "i32": 4, "u64": 8,
                   "i64": 8, "u128": 16, "i128": 16, "u256": 32, "i256": 32}


class MalformedEvents(ValueError):
    """The bytes do not follow the runtime's ``Vec<EventRecord>`` layout."""


@dataclass(frozen=True, slots=True)
class Record:
    """One event record's place in a block's events: where its pallet event enum starts and ends."""

    phase: str
    extrinsic_index: int | None
    pallet: str
    name: str
    event_type: int  # the pallet's event enum, in the registry
    start: int  # of the pallet event enum (its variant index byte)
    end: int


def _compact(data: bytes, pos: int) -> tuple[int, int]:
    """(value, position after) of a SCALE compact integer."""
    if pos >= len(data):
        raise MalformedEvents("truncated compact")
    mode = data[pos] & 3
    if mode == 0:
        return data[pos] >> 2, pos + 1
    width = {1: 2, 2: 4}.get(mode, (data[pos] >> 2) + 5)
    if pos + width > len(data):
        raise MalformedEvents("truncated compact")
    value = int.from_bytes(data[pos:pos + width], "little")
    return (value >> 2 if mode != 3 else value >> 8), pos + width


class EventLayout:
    """How to walk ``System.Events`` of one runtime: built from its portable type registry."""

    def __init__(self, types: dict[int, dict[str, Any]], events_type: int) -> None:
        self.types = types
        record = types[events_type]["type"]["def"]["sequence"]["type"]
        fields = {f["name"]: f["type"] for f in types[record]["type"]["def"]["composite"]["fields"]}
        self.phase, self.event, self.topics = fields["phase"], fields["event"], fields["topics"]
        self._fixed: dict[int, int | None] = {}
        self._variants: dict[int, dict[int, dict[str, Any]]] = {}
        self._definitions: dict[int, tuple[str, Any]] = {}
        self._variant_sizes: dict[tuple[int, int], int | None] = {}  # (enum, index) -> its fields' fixed size
        self._events: dict[tuple[int, int], tuple[str, str, int, int | None]] = {}  # (pallet, event) index bytes

    def records(self, data: bytes) -> list[Record]:
        """Every record of a ``Vec<EventRecord>``, in order; :class:`MalformedEvents` if it does not parse.

        A record's phase and event are looked up by their index bytes once per kind (its pallet's and the
        event's names, and the size of its fields when that is the same for every value, as for most
        events): walking the types field by field was 100 µs of a 4-event block, 1 s of a 10,000-block
        catch-up's 1.4 s of client CPU."""
        try:
            count, pos = _compact(data, 0)
            found = []
            for _ in range(count):
                phase = self._variant(self.phase, data[pos])
                extrinsic = None
                if phase["fields"]:
                    extrinsic = int.from_bytes(data[pos + 1:pos + 5], "little") if phase["name"] == "ApplyExtrinsic" else None
                pos = self.skip(self.phase, data, pos)
                kind = self._events.get((data[pos], data[pos + 1]))
                if kind is None:
                    kind = self._event_kind(data[pos], data[pos + 1])
                pallet, name, enum_type, size = kind
                end = pos + 2 + size if size is not None else self.skip(enum_type, data, pos + 1)
                found.append(Record(phase["name"], extrinsic, pallet, name, enum_type, pos + 1, end))
                pos = self.skip(self.topics, data, end)
        except (IndexError, KeyError) as exc:
            raise MalformedEvents(f"events do not follow the runtime's layout: {type(exc).__name__}: {exc}") from exc
        if pos != len(data):
            raise MalformedEvents(f"{len(data) - pos} bytes left after {count} events")
        return found

    def _event_kind(self, pallet_index: int, event_index: int) -> tuple[str, str, int, int | None]:
        pallet = self._variant(self.event, pallet_index)
        enum_type = pallet["fields"][0]["type"]
        kind = (pallet["name"], self._variant(enum_type, event_index)["name"], enum_type,
                self._variant_size(enum_type, event_index))
        self._events[(pallet_index, event_index)] = kind
        return kind

    def _variant_size(self, type_id: int, index: int) -> int | None:
        """The encoded size of a variant's fields when the same for every value (its index byte not counted)."""
        key = (type_id, index)
        if key not in self._variant_sizes:
            sizes = [self.fixed_size(f["type"]) for f in self._variant(type_id, index)["fields"]]
            self._variant_sizes[key] = None if None in sizes else sum(sizes)  # type: ignore[arg-type]
        return self._variant_sizes[key]

    def _variant(self, type_id: int, index: int) -> dict[str, Any]:
        table = self._variants.get(type_id)
        if table is None:
            table = {v["index"]: v for v in self.types[type_id]["type"]["def"]["variant"]["variants"]}
            self._variants[type_id] = table
        return table[index]

    def _definition(self, type_id: int) -> tuple[str, Any]:
        """(kind, spec) of a type: ``primitive``/``u32``, ``composite``/its fields …"""
        found = self._definitions.get(type_id)
        if found is None:
            found = self._definitions[type_id] = next(iter(self.types[type_id]["type"]["def"].items()))
        return found

    def fixed_size(self, type_id: int) -> int | None:
        """The encoded size of a type when it is the same for every value, else None (memoized)."""
        if type_id in self._fixed:
            return self._fixed[type_id]
        self._fixed[type_id] = None  # a recursive type is not of fixed size
        kind, spec = self._definition(type_id)
        size: int | None = None
        if kind == "primitive":
            size = PRIMITIVE_BYTES.get(spec)
        elif kind == "composite":
            sizes = [self.fixed_size(f["type"]) for f in spec["fields"]]
            size = None if None in sizes else sum(sizes)  # type: ignore[arg-type]
        elif kind == "tuple":
            sizes = [self.fixed_size(t) for t in spec]
            size = None if None in sizes else sum(sizes)  # type: ignore[arg-type]
        elif kind == "array":
            item = self.fixed_size(spec["type"])
            size = None if item is None else item * spec["len"]
        self._fixed[type_id] = size
        return size

    def skip(self, type_id: int, data: bytes, pos: int) -> int:
        """The position just after a value of ``type_id`` encoded at ``pos``."""
        size = self.fixed_size(type_id)
        if size is not None:
            if pos + size > len(data):
                raise MalformedEvents("truncated value")
            return pos + size
        kind, spec = self._definition(type_id)
        if kind == "primitive":  # str: the only primitive of variable size
            length, pos = _compact(data, pos)
            return pos + length
        if kind == "compact":
            return _compact(data, pos)[1]
        if kind == "composite":
            for field in spec["fields"]:
                pos = self.skip(field["type"], data, pos)
            return pos
        if kind == "tuple":
            for item in spec:
                pos = self.skip(item, data, pos)
            return pos
        if kind == "variant":
            fixed = self._variant_size(type_id, data[pos])
            if fixed is not None:
                if pos + 1 + fixed > len(data):
                    raise MalformedEvents("truncated value")
                return pos + 1 + fixed
            variant = self._variant(type_id, data[pos])
            pos += 1
            for field in variant["fields"]:
                pos = self.skip(field["type"], data, pos)
            return pos
        if kind == "sequence":
            count, pos = _compact(data, pos)
            item = self.fixed_size(spec["type"])
            if item is not None:
                return pos + count * item
            for _ in range(count):
                pos = self.skip(spec["type"], data, pos)
            return pos
        if kind == "array":
            for _ in range(spec["len"]):
                pos = self.skip(spec["type"], data, pos)
            return pos
        if kind == "bitsequence":
            bits, pos = _compact(data, pos)
            store = self.fixed_size(spec["bit_store_type"]) or 1
            return pos + -(-bits // (8 * store)) * store
        raise MalformedEvents(f"type {type_id}: unknown kind {kind}")


class EventDecoder:
    """Decodes one record's attributes with a scalecodec registry of its own (the runtime's types, as the
    full runtime registers them), so that a read from any thread never touches the runtime thread's
    objects; one decode at a time."""

    def __init__(self, types: list[dict[str, Any]], ss58_format: int, preset: str | None) -> None:
        self._config = scale_registry(types, ss58_format, preset)
        self._lock = threading.Lock()

    def attributes(self, data: bytes, record: Record) -> Any:
        """What substrate-interface shows as the event's ``attributes``: its fields' values, None for none."""
        from scalecodec.base import ScaleBytes

        with self._lock:
            obj = self._config.create_scale_object(f"scale_info::{record.event_type}",
                                                   data=ScaleBytes(bytearray(data[record.start:record.end])))
            obj.decode(check_remaining=False)
            inner = obj.value_object[1]
            return inner.value if inner else None
