"""A published folder: relative path → IPFS CID and size of each file, as canonical JSON.

The manifest is itself published as a file, so one CID (the folder's reference) names the whole
folder and, through the file CIDs in it, verifies every byte. Each file CID is the one ``ipfs add
--cid-version 1 --raw-leaves`` gives that file, so any IPFS node or gateway can serve it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from .cid import MAX_BLOCK, canonical, codec_of
from .errors import BadManifest, IntegrityError, TooLarge, UnsafeName
from .safety import safe_name

SCHEMA = "decentralml.folder/2"
MAX_MANIFEST = 8 * 1024 * 1024


@dataclass(frozen=True)
class FileEntry:
    path: str
    size: int
    cid: str


@dataclass(frozen=True)
class Manifest:
    files: tuple[FileEntry, ...]

    @property
    def total_size(self) -> int:
        return sum(f.size for f in self.files)

    def encode(self) -> bytes:
        """Canonical JSON (sorted keys and paths, no spaces): the same folder always has the same CID."""
        doc = {"schema": SCHEMA, "files": [{"path": f.path, "size": f.size, "cid": f.cid}
                                           for f in sorted(self.files, key=lambda f: f.path)]}
        return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()

    @classmethod
    def decode(cls, data: bytes, max_files: int, max_total: int, max_file: int | None = None) -> Manifest:
        """Parse and check everything a hostile publisher could get wrong; limits are checked up front."""
        if len(data) > MAX_MANIFEST:
            raise TooLarge(f"manifest is {len(data)} bytes, over the {MAX_MANIFEST}-byte manifest limit")
        try:
            doc = json.loads(data)
            if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
                raise ValueError(f"schema is {doc.get('schema') if isinstance(doc, dict) else None!r}, "
                                 f"not {SCHEMA!r}")
            if not isinstance(doc.get("files"), list):
                raise ValueError("no file list")
            if len(doc["files"]) > max_files:
                raise TooLarge(f"manifest lists {len(doc['files'])} files, over the max_files limit ({max_files})")
            files, seen, total = [], set(), 0
            for item in doc["files"]:
                path, size, cid = safe_name(item["path"]), item["size"], item["cid"]
                if type(size) is not int or size < 0:
                    raise ValueError(f"{path}: size {size!r} is not a byte count")
                if not isinstance(cid, str):
                    raise ValueError(f"{path}: cid {cid!r} is not a string")
                cid = canonical(cid)
                if codec_of(cid) == "raw" and size > MAX_BLOCK:
                    raise ValueError(f"{path}: {size} bytes cannot be one raw block")
                if max_file is not None and size > max_file:
                    raise TooLarge(f"{path} is {size} bytes, over the max_file limit ({max_file})")
                if path in seen or any(p in seen for p in _parents(path)):
                    raise ValueError(f"{path} is listed twice or under a file")
                seen.add(path)
                total += size
                files.append(FileEntry(path, size, cid))
        except (TooLarge, UnsafeName):
            raise
        except (ValueError, KeyError, TypeError, IntegrityError) as exc:
            raise BadManifest(f"not a folder manifest: {exc}") from None
        except RecursionError:
            raise BadManifest("not a folder manifest: JSON nested too deeply") from None
        if any(p in seen for path in seen for p in _parents(path)):
            raise BadManifest("not a folder manifest: a file is listed under another file")
        if total > max_total:
            raise TooLarge(f"manifest totals {total} bytes, over the max_total limit ({max_total})")
        return cls(tuple(files))


def _parents(path: str) -> list[str]:
    parts = path.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]
