"""A builder for scale-info's portable type registry, the type table at the heart of metadata V14.

Every type the runtime exposes (call arguments, storage values, events, errors, the extrinsic
envelope) gets an id here; the metadata points at ids, clients decode by them, and our own codec
(:mod:`decentralml_core.devnet.codec`) compiles its encoders from the same table, so what we write
and what clients read cannot drift apart.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

Field = tuple[str | None, int, str | None]
"""A field: its name (None for tuple-like), its type id, and the Rust type name clients show."""
Param = tuple[str, int | None]
"""A generic parameter: its name and the type id it is bound to (None if unbound)."""
Variant = tuple[Any, ...]
"""``(name, fields)``, ``(name, fields, index)`` or ``(name, fields, index, docs)``: see ``variant_def``."""


class TypeRegistry:
    """Assigns ids to types, sharing one id between structurally equal types."""

    def __init__(self) -> None:
        self.types: list[dict[str, Any] | None] = []
        self._ids: dict[str, int] = {}
        self._by_path: dict[str, int] = {}

    # -- building -------------------------------------------------------------------------------
    def _add(self, definition: dict[str, Any], path: Sequence[str] = (), params: Sequence[Param] = (),
             docs: Sequence[str] = ()) -> int:
        entry = {
            "path": list(path),
            "params": [{"name": n, "type": t} for n, t in params],
            "def": definition,
            "docs": list(docs),
        }
        key = json.dumps(entry, sort_keys=True)
        if key not in self._ids:
            self._ids[key] = len(self.types)
            self.types.append(entry)
        type_id = self._ids[key]
        if path:
            self._by_path.setdefault("::".join(path), type_id)
        return type_id

    def reserve(self) -> int:
        """An id for a type defined later (the outer call enum refers to itself through Sudo)."""
        self.types.append(None)
        return len(self.types) - 1

    def fill(self, type_id: int, definition: dict[str, Any], path: Sequence[str] = (), params: Sequence[Param] = (),
             docs: Sequence[str] = ()) -> int:
        self.types[type_id] = {
            "path": list(path),
            "params": [{"name": n, "type": t} for n, t in params],
            "def": definition,
            "docs": list(docs),
        }
        if path:
            self._by_path.setdefault("::".join(path), type_id)
        return type_id

    def primitive(self, name: str) -> int:
        return self._add({"primitive": name})

    def compact(self, type_id: int) -> int:
        return self._add({"compact": {"type": type_id}})

    def sequence(self, type_id: int) -> int:
        return self._add({"sequence": {"type": type_id}})

    def array(self, length: int, type_id: int) -> int:
        return self._add({"array": {"len": length, "type": type_id}})

    def tuple(self, *type_ids: int) -> int:
        return self._add({"tuple": list(type_ids)})

    def unit(self) -> int:
        return self.tuple()

    @staticmethod
    def fields(fields: Iterable[Field]) -> list[dict[str, Any]]:
        return [{"name": n, "type": t, "typeName": tn, "docs": []} for n, t, tn in fields]

    def composite(self, path: Sequence[str], fields: Iterable[Field], params: Sequence[Param] = (),
                  docs: Sequence[str] = ()) -> int:
        return self._add({"composite": {"fields": self.fields(fields)}}, path, params, docs)

    @classmethod
    def variant_def(cls, variants: Iterable[Variant]) -> dict[str, Any]:
        """``variants``: (name, fields) in index order, or (name, fields, index) where indices skip, or
        (name, fields, index, docs) with the variant's doc lines (a call's or an error's docs)."""
        out = []
        for position, v in enumerate(variants):
            name, fields = v[0], v[1]
            index = v[2] if len(v) > 2 and v[2] is not None else position
            docs = list(v[3]) if len(v) > 3 else []
            out.append({"name": name, "fields": cls.fields(fields), "index": index, "docs": docs})
        return {"variant": {"variants": out}}

    def variant(self, path: Sequence[str], variants: Iterable[Variant], params: Sequence[Param] = (),
                docs: Sequence[str] = ()) -> int:
        return self._add(self.variant_def(variants), path, params, docs)

    # -- common shapes --------------------------------------------------------------------------
    def option(self, type_id: int) -> int:
        return self.variant(["Option"], [("None", []), ("Some", [(None, type_id, "T")])], [("T", type_id)])

    def result(self, ok: int, err: int) -> int:
        return self.variant(
            ["Result"], [("Ok", [(None, ok, "T")]), ("Err", [(None, err, "E")])], [("T", ok), ("E", err)]
        )

    def bytes(self) -> int:
        return self.sequence(self.primitive("u8"))

    def bounded_vec(self, item: int) -> int:
        """``BoundedVec<T, S>``: on the wire a plain ``Vec<T>``; the bound is enforced by the codec."""
        return self.composite(
            ["bounded_collections", "bounded_vec", "BoundedVec"],
            [(None, self.sequence(item), "Vec<T>")],
            [("T", item), ("S", None)],
        )

    # -- reading --------------------------------------------------------------------------------
    def by_path(self, path: str) -> int:
        return self._by_path[path]

    def portable(self) -> list[dict[str, Any]]:
        """The registry as metadata's ``PortableRegistry.types`` list."""
        missing = [i for i, t in enumerate(self.types) if t is None]
        if missing:
            raise ValueError(f"reserved type ids never defined: {missing}")
        return [{"id": i, "type": t} for i, t in enumerate(self.types)]
