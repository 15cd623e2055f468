"""A content-addressed block store in a local directory: ``ROOT/blocks/<cid>``."""

from __future__ import annotations

import os
from pathlib import Path

from .base import check_block
from .cid import cid_of, parse
from .errors import NotFound, TooLarge


class LocalStore:
    name = "local"

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.blocks = self.root / "blocks"
        self.blocks.mkdir(parents=True, exist_ok=True)

    def path(self, cid: str) -> Path:
        return self.blocks / str(parse(cid))  # parse: a CID is never a path trick

    async def put(self, data: bytes) -> str:
        cid = cid_of(data)
        path = self.path(cid)
        if not path.exists():
            tmp = path.with_name(f".{cid}.{os.getpid()}.tmp")
            tmp.write_bytes(data)
            os.replace(tmp, path)
        return cid

    def read(self, cid: str, max_size: int) -> bytes:
        path = self.path(cid)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise NotFound(f"{cid} is not in {self.root}") from None
        if size > max_size:
            raise TooLarge(f"block {cid} is {size} bytes, over {max_size}")
        return path.read_bytes()

    async def get(self, cid: str, max_size: int) -> bytes:
        return check_block(cid, self.read(cid, max_size), max_size)
