"""Files as IPFS builds them: UnixFS DAGs of raw leaves, so a file's CID is the one IPFS gives it.

:class:`FileBuilder` cuts a byte stream into 256 KiB raw leaves and links them in dag-pb nodes of at
most 174 children, balanced, level by level: the layout and encoding of ``ipfs add --cid-version 1
--raw-leaves`` (chunker ``size-262144``, balanced layout, the JS ``ipfs-unixfs-importer`` defaults).
A file of one chunk is its leaf (``bafkrei…``); a longer one gets a dag-pb root (``bafybei…``).

:func:`decode_node` reads a dag-pb node fetched from anywhere, strictly; :func:`read_file` walks a
file's DAG from its root, checking every block against its CID (the store does) and every node's
sizes against its parent's, so a hostile DAG cannot write more bytes than the size it declared.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from .cid import CHUNK, MAX_BLOCK, cid_of, codec_of, parse
from .errors import IntegrityError, TooLarge
from .safety import open_regular

MAX_LINKS = 174
"""Children per node in IPFS's balanced layout (kubo and the JS importer)."""

MAX_DEPTH = 16
"""Deepest DAG we walk; an honest one of 2**64 bytes is 7 levels deep."""

MAX_LINKS_READ = 4096
"""Most links we accept in one node fetched from elsewhere (other importers use up to 1024)."""

WINDOW = 8
"""Blocks fetched at once while walking a file."""

# UnixFS Data.Type values (unixfs.proto)
RAW, DIRECTORY, FILE = 0, 1, 2

GetBlock = Callable[[str, int], Awaitable[bytes]]
Item = TypeVar("Item")
Result = TypeVar("Result")
"""``get(cid, max_size)`` → the verified block: a store's ``get``."""


# --- protobuf, just the wire format dag-pb and UnixFS use -------------------------------------------

def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, wire: int) -> bytes:
    return _varint(number << 3 | wire)


def _bytes_field(number: int, data: bytes) -> bytes:
    return _field(number, 2) + _varint(len(data)) + data


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            if shift and not byte:
                raise ValueError("varint not minimally encoded")
            return value, pos
        shift += 7
        if shift >= 64:
            raise ValueError("varint over 64 bits")


def _fields(buf: bytes) -> Iterable[tuple[int, int, int | bytes]]:
    """(field number, wire type, value) of each field; only varint and length-delimited wire types."""
    pos = 0
    while pos < len(buf):
        key, pos = _read_varint(buf, pos)
        number, wire = key >> 3, key & 7
        value: int | bytes
        if wire == 0:
            value, pos = _read_varint(buf, pos)
        elif wire == 2:
            length, pos = _read_varint(buf, pos)
            if pos + length > len(buf):
                raise ValueError("length-delimited field runs past the end")
            value, pos = bytes(buf[pos:pos + length]), pos + length
        else:
            raise ValueError(f"wire type {wire} is not used by dag-pb or UnixFS")
        yield number, wire, value


def _int(value: int | bytes) -> int:
    """A varint field's value (the callers have checked its wire type)."""
    if not isinstance(value, int):
        raise ValueError("a length-delimited field where a varint belongs")
    return value


def _bytes(value: int | bytes) -> bytes:
    """A length-delimited field's value (the callers have checked its wire type)."""
    if not isinstance(value, bytes):
        raise ValueError("a varint where a length-delimited field belongs")
    return value


# --- nodes --------------------------------------------------------------------------------------------

def encode_file_node(children: list[Child]) -> bytes:
    """The dag-pb block of a UnixFS file node over ``children``, byte for byte as IPFS encodes it."""
    filesize = sum(c.filesize for c in children)
    data = _field(1, 0) + _varint(FILE) + _field(3, 0) + _varint(filesize)
    data += b"".join(_field(4, 0) + _varint(c.filesize) for c in children)
    links = b"".join(_bytes_field(2, _bytes_field(1, parse(c.cid).binary) + _bytes_field(2, b"")
                                  + _field(3, 0) + _varint(c.tsize)) for c in children)
    return links + _bytes_field(1, data)  # dag-pb's canonical order: Links before Data


@dataclass(frozen=True)
class Link:
    cid: str
    tsize: int | None


@dataclass(frozen=True)
class Node:
    """A decoded UnixFS file node: its own bytes (``data``) come before its children's."""

    kind: int
    data: bytes
    filesize: int | None
    blocksizes: tuple[int, ...]
    links: tuple[Link, ...]


def decode_node(block: bytes) -> Node:
    """A dag-pb block holding UnixFS file data; IntegrityError for anything else or anything malformed."""
    try:
        links: list[Link] = []
        data: bytes | None = None
        for number, wire, value in _fields(block):
            if number == 2 and wire == 2:
                if data is not None:
                    raise ValueError("Links after Data")
                links.append(_decode_link(_bytes(value)))
                if len(links) > MAX_LINKS_READ:
                    raise ValueError(f"more than {MAX_LINKS_READ} links")
            elif number == 1 and wire == 2 and data is None:
                data = _bytes(value)
            else:
                raise ValueError(f"unexpected field {number} in a dag-pb node")
        if data is None:
            raise ValueError("no UnixFS Data")
        kind: int | None = None
        content = b""
        filesize: int | None = None
        blocksizes: list[int] = []
        for number, wire, value in _fields(data):
            if number == 1 and wire == 0:
                kind = _int(value)
            elif number == 2 and wire == 2:
                content = _bytes(value)
            elif number == 3 and wire == 0:
                filesize = _int(value)
            elif number == 4 and wire == 0:
                blocksizes.append(_int(value))
            elif number == 4 and wire == 2:  # packed, as some encoders write repeated varints
                packed, pos = _bytes(value), 0
                while pos < len(packed):
                    size, pos = _read_varint(packed, pos)
                    blocksizes.append(size)
            elif number in (1, 3, 5, 6, 7) and wire != 0 or number in (2, 8) and wire != 2:
                raise ValueError(f"UnixFS field {number} has the wrong wire type")
            # hashType, fanout, mode, mtime and unknown fields do not change a file's bytes
    except ValueError as exc:
        raise IntegrityError(f"not a UnixFS dag-pb node: {exc}") from None
    if kind is None or kind not in (RAW, FILE):
        raise IntegrityError(f"UnixFS node of type {kind} is not a file")
    return Node(kind, content, filesize, tuple(blocksizes), tuple(links))


def _decode_link(buf: bytes) -> Link:
    cid: str | None = None
    tsize: int | None = None
    for number, wire, value in _fields(buf):
        if number == 1 and wire == 2:
            cid = parse(_bytes(value)).text  # IntegrityError for a non-CID, or codecs and hashes we cannot verify
        elif number == 2 and wire == 2:
            pass  # a file's links have empty names; a name changes nothing here
        elif number == 3 and wire == 0:
            tsize = _int(value)
        else:
            raise ValueError(f"unexpected field {number} in a dag-pb link")
    if cid is None:
        raise ValueError("a link without a Hash")
    return Link(cid, tsize)


# --- building -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Child:
    """A leaf or node as its parent links it: CID, cumulative block bytes, file bytes."""

    cid: str
    tsize: int
    filesize: int


@dataclass
class FileBuilder:
    """Feed a file's chunks in order (:meth:`leaf`), then :meth:`finish`: the file's CID and its nodes.

    Streaming: a node is made as soon as its children are complete, so memory stays at
    ``max_links`` entries per level whatever the file's size.
    """

    chunk_size: int = CHUNK
    max_links: int = MAX_LINKS
    levels: list[list[Child]] = field(default_factory=lambda: [[]])
    nodes: list[tuple[str, bytes]] = field(default_factory=list)
    leaves: int = 0
    size: int = 0
    short: bool = False

    def leaf(self, chunk: bytes) -> str:
        """Add the next chunk (``chunk_size`` bytes, only the last may be shorter); its raw CID."""
        if len(chunk) > self.chunk_size or self.short:
            raise ValueError("only a file's last chunk may be short")
        self.short = len(chunk) < self.chunk_size
        cid = cid_of(chunk)
        self.leaves += 1
        self.size += len(chunk)
        self._push(0, Child(cid, len(chunk), len(chunk)))
        return cid

    def take_nodes(self) -> list[tuple[str, bytes]]:
        """The (CID, block) of nodes made since the last call: store them."""
        nodes, self.nodes = self.nodes, []
        return nodes

    def finish(self) -> str:
        """The file's CID; the remaining nodes are then in :meth:`take_nodes`."""
        if self.leaves == 0:
            self.leaf(b"")  # IPFS chunks an empty file into one empty leaf
        if self.leaves == 1:
            return self.levels[0][0].cid  # a single leaf is the file (reduceSingleLeafToSelf)
        level = 0
        while True:
            higher = any(self.levels[level + 1:])
            if level and not higher and len(self.levels[level]) == 1:
                return self.levels[level][0].cid
            if self.levels[level]:
                self._reduce(level)
            level += 1

    def _push(self, level: int, child: Child) -> None:
        if len(self.levels) == level:
            self.levels.append([])
        self.levels[level].append(child)
        if len(self.levels[level]) == self.max_links:
            self._reduce(level)

    def _reduce(self, level: int) -> None:
        children, self.levels[level] = self.levels[level], []
        block = encode_file_node(children)
        cid = cid_of(block, "dag-pb")
        self.nodes.append((cid, block))
        self._push(level + 1, Child(cid, len(block) + sum(c.tsize for c in children),
                                    sum(c.filesize for c in children)))


def file_cid(data: bytes, chunk_size: int = CHUNK, max_links: int = MAX_LINKS) -> str:
    """The CID ``ipfs add --cid-version 1 --raw-leaves`` gives ``data``."""
    builder = FileBuilder(chunk_size, max_links)
    for start in range(0, len(data), chunk_size):
        builder.leaf(data[start:start + chunk_size])
    return builder.finish()


def file_cid_of_path(path: str | Path) -> str:
    """The CID of a file on disk, streamed (``ipfs add --only-hash --cid-version 1 --raw-leaves``)."""
    builder = FileBuilder()
    with open_regular(Path(path)) as f:
        while chunk := f.read(builder.chunk_size):
            builder.leaf(chunk)
            builder.take_nodes()
    return builder.finish()


# --- reading ------------------------------------------------------------------------------------------

async def read_file(get: GetBlock, cid: str, max_size: int, size: int | None = None,
                    window: int = WINDOW) -> AsyncGenerator[bytes, None]:
    """The bytes of the file ``cid`` (a raw leaf or a UnixFS DAG), in order, each block verified.

    ``size`` is the size the file must have (from a manifest); without it the root's declared size is
    used, and either must be at most ``max_size``. Use inside ``contextlib.aclosing``.
    """
    if size is not None and size > max_size:
        raise TooLarge(f"{cid} is {size} bytes, over the {max_size}-byte limit")
    raw = codec_of(cid) == "raw"
    root = await get(cid, min(MAX_BLOCK, max_size) if raw else MAX_BLOCK)
    if size is None:
        size = len(root) if raw else _declared_size(root)
        if size > max_size:
            raise TooLarge(f"{cid} is {size} bytes, over the {max_size}-byte limit")
    async with contextlib.aclosing(_walk(get, cid, root, size, 0, window)) as chunks:
        async for chunk in chunks:
            yield chunk


def _declared_size(block: bytes) -> int:
    node = decode_node(block)
    return len(node.data) + sum(node.blocksizes) if node.filesize is None else node.filesize


async def _walk(get: GetBlock, cid: str, block: bytes, size: int, depth: int, window: int) -> AsyncGenerator[bytes, None]:
    if codec_of(cid) == "raw":
        if len(block) != size:
            raise IntegrityError(f"leaf {cid} holds {len(block)} bytes, expected {size} (from its parent or manifest)")
        if block:
            yield block
        return
    if depth >= MAX_DEPTH:
        raise IntegrityError(f"DAG under {cid} is deeper than {MAX_DEPTH} levels")
    node = decode_node(block)
    if len(node.blocksizes) != len(node.links):
        raise IntegrityError(f"node {cid} has {len(node.links)} links but {len(node.blocksizes)} block sizes")
    total = len(node.data) + sum(node.blocksizes)
    if total != size or (node.filesize is not None and node.filesize != size):
        raise IntegrityError(f"node {cid} holds {total} bytes (declares {node.filesize}), expected {size} "
                             "(from its parent or manifest)")
    if node.links and 0 in node.blocksizes:
        raise IntegrityError(f"node {cid} links an empty block")  # no importer does; it would only cost fetches
    if node.data:
        yield node.data
    children = list(zip(node.links, node.blocksizes, strict=True))

    def fetch(link: Link, child_size: int) -> Awaitable[bytes]:
        bound = child_size if codec_of(link.cid) == "raw" else MAX_BLOCK
        if bound > MAX_BLOCK:
            raise IntegrityError(f"{link.cid} is a raw leaf of {child_size} bytes, over the block limit")
        return get(link.cid, bound)

    async with contextlib.aclosing(ordered(children, lambda c: fetch(*c), window)) as fetched:
        async for (link, child_size), child_block in fetched:
            async with contextlib.aclosing(_walk(get, link.cid, child_block, child_size, depth + 1, window)) as sub:
                async for chunk in sub:
                    yield chunk


async def ordered(items: Iterable[Item], start: Callable[[Item], Awaitable[Result]],
                  window: int) -> AsyncGenerator[tuple[Item, Result], None]:
    """(item, await start(item)) in order, with at most ``window`` started ahead; the rest cancelled on exit."""
    pending: deque[tuple[Item, asyncio.Future[Result]]] = deque()
    todo = iter(items)
    try:
        for item in todo:
            pending.append((item, asyncio.ensure_future(start(item))))
            if len(pending) >= window:
                break
        while pending:
            item, future = pending.popleft()
            result = await future
            for nxt in todo:
                pending.append((nxt, asyncio.ensure_future(start(nxt))))
                break
            yield item, result
    finally:
        for _, future in pending:
            future.cancel()
        if pending:
            await asyncio.gather(*(f for _, f in pending), return_exceptions=True)
        if hasattr(todo, "close"):
            todo.close()  # a generator reading a file closes it now

