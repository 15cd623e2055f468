"""A published folder: relative path → size and the CIDs of its blocks, as canonical JSON.

The manifest is itself a raw block, so one CID names a whole folder and verifies everything in it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from .cid import CHUNK, parse
from .errors import IntegrityError, TooLarge
from .safety import safe_name

SCHEMA = "decentralml.folder/1"
MAX_MANIFEST = 4 * 1024 * 1024


@dataclass(frozen=True)
class FileEntry:
    path: str
    size: int
    blocks: tuple[str, ...]


@dataclass(frozen=True)
class Manifest:
    files: tuple[FileEntry, ...]

    @property
    def total_size(self) -> int:
        return sum(f.size for f in self.files)

    def encode(self) -> bytes:
        doc = {"schema": SCHEMA, "files": [{"path": f.path, "size": f.size, "blocks": list(f.blocks)}
                                           for f in sorted(self.files, key=lambda f: f.path)]}
        return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, data: bytes, max_files: int, max_total: int) -> Manifest:
        """Parse and check everything a hostile publisher could get wrong."""
        if len(data) > MAX_MANIFEST:
            raise TooLarge(f"manifest is {len(data)} bytes, the limit is {MAX_MANIFEST}")
        try:
            doc = json.loads(data)
            if doc.get("schema") != SCHEMA:
                raise ValueError(f"schema is {doc.get('schema')!r}")
            files, seen, total = [], set(), 0
            for item in doc["files"]:
                path, size, blocks = safe_name(item["path"]), item["size"], tuple(item["blocks"])
                if not isinstance(size, int) or size < 0 or len(blocks) != -(-size // CHUNK):
                    raise ValueError(f"{path}: size {size!r} does not fit {len(blocks)} blocks")
                for block in blocks:
                    parse(block)
                if path in seen or any(p in seen for p in _parents(path)):
                    raise ValueError(f"{path} is listed twice or under a file")
                seen.add(path)
                total += size
                files.append(FileEntry(path, size, blocks))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise IntegrityError(f"not a folder manifest: {exc}") from None
        if len(files) > max_files:
            raise TooLarge(f"manifest lists {len(files)} files, the limit is {max_files}")
        if total > max_total:
            raise TooLarge(f"manifest totals {total} bytes, the limit is {max_total}")
        return cls(tuple(files))


def _parents(path: str) -> list[str]:
    parts = path.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]
