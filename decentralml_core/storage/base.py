"""The one storage interface: blocks in and out by CID; files and folders on top, the same for every backend.

A backend implements :class:`BlockStore` (``put`` a block → its CID, ``get`` a CID → the verified
block, bounded). The functions here turn files into IPFS UnixFS DAGs (:mod:`.unixfs`) and folders
into a manifest of file CIDs (:mod:`.manifest`): ``put_folder(store, path) → reference`` and
``get_folder(store, reference, dest) → Path``, plus ``put_blob``/``get_blob`` for single files.
Nothing fetched is used before its hash is checked; a folder appears at its destination only when
complete, so a half-finished download is never mistaken for a finished one.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import structlog

from .cid import CHUNK, canonical, check_block, cid_of, inlined
from .errors import StorageError, TooLarge
from .manifest import MAX_MANIFEST, FileEntry, Manifest
from .safety import create_new, open_regular, walk_folder
from .session import connected
from .unixfs import WINDOW, FileBuilder, ordered, read_file

log = structlog.get_logger(__name__)

Progress = Callable[[int, int], None]
"""Called with (bytes done, bytes in all) as a folder moves; for progress bars."""


@dataclass(frozen=True)
class Limits:
    """Bounds on what is published or fetched; errors name the limit that was hit."""

    max_files: int = 10_000
    max_total: int = 2 * 1024**3
    max_file: int = 1024**3


class BlockStore(Protocol):
    name: str

    async def put(self, data: bytes, codec: str = "raw") -> str:
        """Store a block (a raw leaf or a dag-pb node, at most 1 MiB); returns its CID."""

    async def get(self, cid: str, max_size: int) -> bytes:
        """The block, checked against ``cid`` and ``max_size``; NotFound, IntegrityError or TooLarge otherwise."""


FileAdder = Callable[[Path | bytes, int], Awaitable[str]]
"""A store's optional ``add_file(source, size) → CID``: it imports whole files itself (an IPFS node
does); ``put_file`` then checks the CID it answers against the one computed here."""


async def put_file(store: BlockStore, source: Path | bytes, size: int | None = None,
                   progress: Callable[[int], None] | None = None, window: int = WINDOW) -> str:
    """Publish one file (a path, read without following links, or bytes); returns its IPFS CID."""
    adder: FileAdder | None = getattr(store, "add_file", None)
    builder = FileBuilder()
    stored: set[str] = set()

    async def put(data: bytes, codec: str, cid: str) -> None:
        if cid not in stored:  # repeated chunks (zeros) are stored once
            stored.add(cid)
            got = await store.put(data, codec)
            if got != cid:
                raise StorageError(f"{store.name} stored {got}, expected {cid}")

    root: list[str] = []

    def blocks() -> Iterator[tuple[bytes, str, str]]:
        """Each block to store, in order, as the file is read: (bytes, codec, CID)."""
        with _reader(source, size) as read:
            while chunk := read(CHUNK):
                cid = builder.leaf(chunk)
                if progress:
                    progress(len(chunk))
                yield chunk, "raw", cid
                yield from ((node, "dag-pb", node_cid) for node_cid, node in builder.take_nodes())
        root.append(builder.finish())
        if builder.size == 0:
            yield b"", "raw", root[0]  # the empty leaf an empty file is
        yield from ((node, "dag-pb", node_cid) for node_cid, node in builder.take_nodes())

    if adder is None:
        async with contextlib.aclosing(ordered(blocks(), lambda block: put(*block), window)) as puts:
            async for _ in puts:
                pass
        return root[0]
    for _ in blocks():  # computed here, so what the store answers is checked
        pass
    answered = canonical(await adder(source, builder.size))
    if answered != root[0]:
        raise StorageError(f"{store.name} imported the file as {answered}, expected {root[0]} "
                           "(its chunker or layout differs from IPFS's defaults?)")
    return root[0]


@contextlib.contextmanager
def _reader(source: Path | bytes, size: int | None) -> Iterator[Callable[[int], bytes]]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        view = memoryview(source)
        offset = 0

        def read(n: int) -> bytes:
            nonlocal offset
            chunk = bytes(view[offset:offset + n])
            offset += len(chunk)
            return chunk

        yield read
        return
    with open_regular(Path(source), size) as f:
        done = 0

        def read_file_chunk(n: int) -> bytes:
            nonlocal done
            chunk = f.read(n)
            done += len(chunk)
            if size is not None and done > size:
                raise StorageError(f"{source} grew while being published")
            return chunk

        yield read_file_chunk
        if size is not None and done != size:
            raise StorageError(f"{source} shrank while being published")


async def put_blob(store: BlockStore, data: bytes) -> str:
    """Publish ``data`` as one IPFS file; returns its CID."""
    async with connected(store):
        return await put_file(store, data, len(data))


async def iter_blob(store: BlockStore, cid: str, max_size: int, size: int | None = None) -> AsyncGenerator[bytes, None]:
    """The verified bytes of the file ``cid``, in order, without holding them all; at most ``max_size``."""
    if (data := inlined(cid)) is not None:
        check_block(cid, data, max_size if size is None else min(size, max_size))
        if size is not None and len(data) != size:
            raise StorageError(f"{cid} holds {len(data)} bytes, expected {size}")
        yield data
        return
    async with contextlib.aclosing(read_file(store.get, canonical(cid), max_size, size)) as chunks:
        async for chunk in chunks:
            yield chunk


async def get_blob(store: BlockStore, cid: str, max_size: int) -> bytes:
    """The verified bytes of the file ``cid`` (a raw block or a UnixFS DAG), at most ``max_size``."""
    parts = bytearray()
    async with connected(store), contextlib.aclosing(iter_blob(store, cid, max_size)) as chunks:
        async for chunk in chunks:
            parts += chunk
    return bytes(parts)


async def put_folder(store: BlockStore, folder: str | Path, limits: Limits = Limits(),
                     progress: Progress | None = None) -> str:
    """Publish every regular file under ``folder``; returns the manifest's CID (the folder's reference)."""
    found = walk_folder(Path(folder), limits.max_files, limits.max_total)
    total, done = sum(size for _, _, size in found), 0

    def advance(n: int) -> None:
        nonlocal done
        done += n
        if progress:
            progress(done, total)

    for name, _, size in found:
        if size > limits.max_file:
            raise TooLarge(f"{name} is {size} bytes, over the max_file limit ({limits.max_file})")
    async with connected(store):
        entries = [FileEntry(name, size, await put_file(store, path, size, advance)) for name, path, size in found]
        manifest = Manifest(tuple(entries))
        ref = await put_blob(store, manifest.encode())
    log.info("folder_published", ref=ref, files=len(entries), bytes=manifest.total_size, store=store.name)
    return ref


async def get_manifest(store: BlockStore, ref: str, limits: Limits = Limits()) -> Manifest:
    """The folder manifest ``ref`` names, verified and checked against ``limits``."""
    return Manifest.decode(await get_blob(store, ref, MAX_MANIFEST), limits.max_files, limits.max_total,
                           limits.max_file)


async def get_folder(store: BlockStore, ref: str, dest: str | Path, limits: Limits = Limits(),
                     progress: Progress | None = None) -> Path:
    """Fetch and verify the folder ``ref`` into ``dest`` (which must not exist yet).

    Files are written into a fresh hidden directory next to ``dest``, renamed to ``dest`` only when
    every byte has been checked; on any error it is removed.
    """
    dest = Path(dest)
    if dest.exists() or dest.is_symlink():
        raise StorageError(f"{dest} already exists")
    async with connected(store):
        return await _get_folder(store, ref, dest, limits, progress)


async def _get_folder(store: BlockStore, ref: str, dest: Path, limits: Limits, progress: Progress | None) -> Path:
    manifest = await get_manifest(store, ref, limits)
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.partial-", dir=dest.parent))
    done = 0
    try:
        for entry in manifest.files:
            with create_new(staging, entry.path) as out:
                async with contextlib.aclosing(iter_blob(store, entry.cid, limits.max_file, entry.size)) as chunks:
                    async for chunk in chunks:
                        out.write(chunk)
                        done += len(chunk)
                        if progress:
                            progress(done, manifest.total_size)
        os.rename(staging, dest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    log.info("folder_fetched", ref=ref, files=len(manifest.files), bytes=manifest.total_size, dest=str(dest))
    return dest


__all__ = ["BlockStore", "FileAdder", "Limits", "Progress", "put_file", "put_blob", "get_blob", "iter_blob",
           "put_folder", "get_folder", "get_manifest", "check_block", "cid_of"]
