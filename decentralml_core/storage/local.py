"""A content-addressed block store in a local directory: ``ROOT/blocks/<cid>``, the devnet default.

Blocks are written under a temporary name and renamed into place, so a crash never leaves a
half-written block under its CID; reads never follow links and are checked like any fetched block.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .cid import MAX_BLOCK, canonical, check_block, cid_of, inlined
from .errors import NotFound, TooLarge
from .safety import NOFOLLOW


class LocalStore:
    name = "local"

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.blocks = self.root / "blocks"
        self.blocks.mkdir(parents=True, exist_ok=True)

    def path(self, cid: str) -> Path:
        return self.blocks / canonical(cid)  # canonical: a CID is never a path trick

    def has(self, cid: str) -> bool:
        return inlined(cid) is not None or self.path(cid).is_file()

    async def put(self, data: bytes, codec: str = "raw") -> str:
        if len(data) > MAX_BLOCK:
            raise TooLarge(f"a block of {len(data)} bytes is over the {MAX_BLOCK}-byte block limit")
        cid = cid_of(data, codec)
        path = self.path(cid)
        try:
            if os.lstat(path).st_size == len(data):
                return cid
        except FileNotFoundError:
            pass
        fd, tmp = tempfile.mkstemp(prefix=f".{cid}.", suffix=".tmp", dir=self.blocks)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
        return cid

    def read(self, cid: str, max_size: int) -> bytes:
        """The stored bytes of ``cid``, unchecked (``get`` checks them); NotFound or TooLarge."""
        if (data := inlined(cid)) is not None:
            return data
        try:
            fd = os.open(self.path(cid), os.O_RDONLY | NOFOLLOW)
        except OSError:  # missing, or a link planted in the store
            raise NotFound(f"{cid} is not in {self.root}") from None
        with os.fdopen(fd, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > max_size:
                raise TooLarge(f"block {cid} is {size} bytes, over the {max_size}-byte limit for it")
            return f.read(max_size + 1)

    async def get(self, cid: str, max_size: int) -> bytes:
        return check_block(cid, self.read(cid, max_size), max_size)
