"""The one storage interface: blocks in and out by CID; folders on top, the same for every backend.

A backend implements :class:`BlockStore` (``put`` bytes → CID, ``get`` CID → bytes, bounded); the
folder functions here cut files into blocks, publish a manifest, and fetch + verify everything into
a fresh directory. Nothing fetched is written before its hash is checked; a folder appears at its
destination only when complete.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import structlog

from .cid import CHUNK, cid_of, verify
from .errors import StorageError, TooLarge
from .manifest import FileEntry, Manifest
from .safety import target, walk_folder, write_new

log = structlog.get_logger(__name__)


Progress = Callable[[int, int], None]
"""Called with (bytes done, bytes in all) as a folder moves; for progress bars."""


@dataclass(frozen=True)
class Limits:
    max_files: int = 10_000
    max_total: int = 2 * 1024**3
    max_file: int = 1024**3


class BlockStore(Protocol):
    name: str

    async def put(self, data: bytes) -> str:
        """Store a block (≤ CHUNK bytes, or a manifest); returns its CID."""

    async def get(self, cid: str, max_size: int) -> bytes:
        """The verified block; NotFound, IntegrityError or TooLarge otherwise."""


async def put_folder(store: BlockStore, folder: str | Path, limits: Limits = Limits(),
                     progress: Progress | None = None) -> str:
    """Publish every regular file under ``folder``; returns the manifest's CID (the folder's reference)."""
    entries, done = [], 0
    found = walk_folder(Path(folder), limits.max_files, limits.max_total)
    total = sum(size for _, _, size in found)
    for name, path, size in found:
        if size > limits.max_file:
            raise TooLarge(f"{name} is {size} bytes, the limit is {limits.max_file}")
        blocks = []
        with open(path, "rb") as f:
            while chunk := f.read(CHUNK):
                blocks.append(await store.put(chunk))
                done += len(chunk)
                if progress:
                    progress(done, total)
        entries.append(FileEntry(name, size, tuple(blocks)))
    manifest = Manifest(tuple(entries))
    ref = await store.put(manifest.encode())
    log.info("folder_published", ref=ref, files=len(entries), bytes=manifest.total_size, store=store.name)
    return ref


async def get_manifest(store: BlockStore, ref: str, limits: Limits = Limits()) -> Manifest:
    from .manifest import MAX_MANIFEST

    return Manifest.decode(await store.get(ref, MAX_MANIFEST), limits.max_files, limits.max_total)


async def get_folder(store: BlockStore, ref: str, dest: str | Path, limits: Limits = Limits(),
                     progress: Progress | None = None) -> Path:
    """Fetch and verify the folder ``ref`` into ``dest`` (which must not exist yet)."""
    dest = Path(dest)
    if dest.exists() or dest.is_symlink():
        raise StorageError(f"{dest} already exists")
    manifest = await get_manifest(store, ref, limits)
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.partial-", dir=dest.parent))
    done = 0
    try:
        for entry in manifest.files:
            if entry.size > limits.max_file:
                raise TooLarge(f"{entry.path} is {entry.size} bytes, the limit is {limits.max_file}")
            chunks = []
            for block in entry.blocks:
                chunks.append(await store.get(block, CHUNK))
                done += len(chunks[-1])
                if progress:
                    progress(done, manifest.total_size)
            if sum(map(len, chunks)) != entry.size:
                raise StorageError(f"{entry.path}: blocks add up to {sum(map(len, chunks))} bytes, "
                                   f"the manifest says {entry.size}")
            write_new(target(staging, entry.path), chunks)
        os.rename(staging, dest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    log.info("folder_fetched", ref=ref, files=len(manifest.files), bytes=manifest.total_size, dest=str(dest))
    return dest


def check_block(cid: str, data: bytes, max_size: int) -> bytes:
    if len(data) > max_size:
        raise TooLarge(f"block {cid} is over {max_size} bytes")
    return verify(cid, data)


__all__ = ["BlockStore", "Limits", "put_folder", "get_folder", "get_manifest", "check_block", "cid_of"]
