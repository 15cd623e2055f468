"""The node's runtime: metadata, call composition, signing, decoding.

Reads of the market's storage go through a :class:`~.schema.ReadSchema` (cached on disk, keyed by the hash
of the node's metadata); everything else — signing, events, extrinsics, other storage — through
substrate-interface, loaded on first need: a command that only reads (``task list``) never imports it nor
decodes the whole metadata (1.9 s → see docs/benchmarks.md).

substrate-interface is synchronous and its objects are not thread-safe, so every use goes through
one worker thread (a one-thread executor): the event loop never blocks on it and calls never interleave.

A loaded substrate-interface is shared by every :class:`Runtime` of the process for the same chain (genesis
hash) and metadata, and so is its thread: decoding the metadata costs 0.7–1 s of CPU per client, paid once
per process instead of once per client (a farm engine runs a client per worker; a test process runs
dozens). After loading it is local data (compose, sign and decode never ask the node), so sharing it
changes no answer; sharing its one thread keeps its calls from interleaving.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property, partial
from typing import TYPE_CHECKING, Any, TypeVar

from ..netguard import NODE_TOKEN_ENV, bearer_headers
from .errors import ConnectionLost
from .events import EventDecoder, EventLayout, MalformedEvents
from .rpc import RpcError
from .scale import scale_config
from .schema import ReadSchema, SchemaCache, metadata_hash

if TYPE_CHECKING:
    from substrateinterface import Keypair, SubstrateInterface

    from .rpc import RpcTransport

T = TypeVar("T")

MAP_ROWS_KEPT = 50_000
"""Decoded map rows a runtime remembers at most (:meth:`Runtime.decode_map`), oldest dropped first: ~1 kB each."""
INLINE_HEX = 4096
"""Storage values and single blocks' events up to this many hex characters are decoded on the caller's
thread, with the schema's own registry (never substrate-interface's): the hop to the runtime's thread and
back cost ~0.27 ms of CPU, more than decoding what an agent reads per task (an account: 0.15 ms; a
block's event records: ~0.15 ms), and a farm engine read ~12 values and 4 blocks a task. Larger ones (a
sweep's maps, a catch-up's batches) still go to the thread, off the event loop."""


def _substrate(url: str, through: RpcTransport | None = None,
               loop: asyncio.AbstractEventLoop | None = None) -> SubstrateInterface:
    """substrate-interface with the runtime loaded, its socket closed (everything after is local); with
    ``through``, its requests go over that transport instead, on ``loop`` (a node without a socket: the
    devnet in process), from the runtime's thread while the loop answers."""
    from substrateinterface import SubstrateInterface
    from substrateinterface.exceptions import SubstrateRequestException

    class _Interface(SubstrateInterface):  # type: ignore[misc]  # substrate-interface ships no types
        """substrate-interface that loads the runtime once per connection instead of before each call.

        Stock ``init_runtime()`` asks the node for its head and header before every compose/sign; a
        client that pipelines hundreds of extrinsics would spend most of its time there. A runtime
        upgrade is picked up when the client reconnects.
        """

        _genesis: str | None = None

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self._through = through  # set first: the constructor already asks the node its chain name
            super().__init__(*args, **kwargs)

        def rpc_request(self, method: str, params: Any, result_handler: Any = None) -> Any:
            if self._through is None or loop is None:
                return super().rpc_request(method, params, result_handler)
            if result_handler is not None:
                raise SubstrateRequestException("subscriptions go through the chain client, not the runtime")
            request = self._through.request(method, params)
            try:
                answer = asyncio.run_coroutine_threadsafe(request, loop)
            except RuntimeError:  # the loop has closed (the client stopped while the runtime still loaded)
                request.close()  # never scheduled: closed here rather than warned about as never awaited
                raise
            try:
                result = answer.result()
            except RpcError as exc:
                raise SubstrateRequestException({"code": exc.code, "message": exc.message,
                                                 "data": exc.data}) from exc
            return {"jsonrpc": "2.0", "result": result}

        def init_runtime(self, block_hash: str | None = None, block_id: int | None = None) -> None:
            if block_hash is None and block_id is None and self.metadata is not None:
                return
            super().init_runtime(block_hash=block_hash, block_id=block_id)

        def get_block_hash(self, block_id: int | None = None) -> str:
            if block_id == 0:
                if self._genesis is None:
                    self._genesis = super().get_block_hash(0)
                return self._genesis
            block_hash: str = super().get_block_hash(block_id)
            return block_hash

    headers = [f"{k}: {v}" for k, v in bearer_headers(NODE_TOKEN_ENV).items()]
    if through is None:
        si = _Interface(url=url, ws_options={"max_size": 64 * 1024 * 1024, "header": headers, "timeout": 60},
                        runtime_config=scale_config())
    else:  # requests go over ``through``; the interface's own transport is never used
        si = _Interface(url=url, runtime_config=scale_config())
    si.init_runtime()
    si.get_block_hash(0)  # cached: signing needs the genesis hash
    si.close()  # everything after this is local (metadata); the client's own socket talks to the node
    return si


RuntimeKey = tuple[str, str]
"""(metadata hash, genesis hash): a loaded substrate-interface signs for one chain and decodes one metadata."""

_loaded: dict[RuntimeKey, SubstrateInterface] = {}
_threads: dict[RuntimeKey, ThreadPoolExecutor] = {}
_threads_lock = threading.Lock()


def _thread_for(key: RuntimeKey) -> ThreadPoolExecutor:
    """The one thread on which the substrate-interface of ``key`` is used, made on first need."""
    with _threads_lock:
        thread = _threads.get(key)
        if thread is None:
            thread = _threads[key] = ThreadPoolExecutor(max_workers=1, thread_name_prefix="runtime")
        return thread


def _after_fork_in_child() -> None:
    """Threads do not survive a fork (an executor copied with its thread gone would never run a call); the
    loaded runtimes, plain data, do: the child makes new threads for them."""
    global _threads_lock
    _threads.clear()
    _threads_lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _given(value: Any) -> Any:
    return value


def _in_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


def _probe(url: str) -> tuple[str, bytes]:
    """(genesis hash, metadata bytes) of the node, over one short-lived socket (websocket-client, which
    substrate-interface uses too: a fraction of the import of either of them)."""
    import websocket

    headers = [f"{k}: {v}" for k, v in bearer_headers(NODE_TOKEN_ENV).items()]
    ws = websocket.create_connection(url, header=headers, timeout=60, skip_utf8_validation=True)
    try:
        replies = []
        for rid, (method, params) in enumerate((("chain_getBlockHash", [0]), ("state_getMetadata", []))):
            ws.send(json.dumps({"jsonrpc": "2.0", "id": rid, "method": method, "params": params}))
            reply = json.loads(ws.recv())
            if "result" not in reply:
                raise ConnectionLost(f"{url} did not answer {method}: {reply.get('error')}")
            replies.append(reply["result"])
    finally:
        ws.close()
    return replies[0], bytes.fromhex(replies[1].removeprefix("0x"))


@dataclass(frozen=True)
class Event:
    """One event of a block, addressed by (block_number, index); its ``attributes`` decoded on first read
    (most events a follower passes over are never read: see :mod:`.events`)."""

    block_number: int
    block_hash: str
    index: int
    extrinsic_index: int | None
    pallet: str
    name: str
    source: Callable[[], Any] = field(repr=False, compare=False)

    @cached_property
    def attributes(self) -> Any:
        return self.source()

    @property
    def position(self) -> tuple[int, int]:
        return self.block_number, self.index


class Runtime:
    """Metadata-driven encoding and decoding for one node connection; ``await Runtime.load(url)``."""

    def __init__(self, schema: ReadSchema, genesis: str, url: str, si: SubstrateInterface | None = None,
                 through: RpcTransport | None = None, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.schema, self.url, self._genesis = schema, url, genesis
        self._through, self._loop = through, loop
        self._key: RuntimeKey = (schema.key, genesis)
        if si is not None:
            _loaded.setdefault(self._key, si)
        self._si = si  # this client's, once it needs it: the process's shared one when there is one
        self._thread = _thread_for(self._key)
        self.ss58_format = schema.ss58_format
        self._events_type_string: str | None = None
        self._event_reader: tuple[EventLayout, EventDecoder] | None = None
        self._event_reader_built = asyncio.Lock()
        # Map rows decoded lately, by their key bytes (which hold the item's prefix): the value's bytes and the
        # decoded row, one version a key (as many rows as the maps read hold). A creator's sweep reads every
        # submission every 2 s, and decoding rows unchanged since was ~10 % of its CPU (60 tasks, yappi).
        # Used on the runtime's thread only.
        self._map_rows: dict[str, tuple[str, tuple[Any, Any]]] = {}

    @classmethod
    async def load(cls, url: str, rpc: RpcTransport | None = None, cache: SchemaCache | None = None) -> Runtime:
        """The runtime of the node at ``url``: from the cached schema of its metadata when there is one
        (substrate-interface then loads on first need), else fully, caching the schema for next time. Read
        over a socket of its own, or over ``rpc`` if given (a transport without a URL to dial, such as the
        devnet's in-process one)."""
        cache = cache or SchemaCache()
        if rpc is not None:
            loop = asyncio.get_running_loop()
            genesis = await rpc.request("chain_getBlockHash", [0])
            raw = bytes.fromhex((await rpc.request("state_getMetadata", [])).removeprefix("0x"))
            schema = cache.get(metadata_hash(raw))
            if schema is not None:
                return cls(schema, genesis, url, through=rpc, loop=loop)
            si = await asyncio.to_thread(_substrate, url, rpc, loop)
            schema = ReadSchema.from_substrate(si, bytes(si.metadata.data.data))
            cache.put(schema)
            return cls(schema, genesis, url, si, through=rpc, loop=loop)

        def load() -> Runtime:
            from websocket import WebSocketException

            try:
                genesis, raw = _probe(url)
            except (WebSocketException, OSError, ValueError) as exc:
                raise ConnectionLost(f"cannot read the metadata of {url}: {exc}") from exc
            schema = cache.get(metadata_hash(raw))
            if schema is not None:
                return cls(schema, genesis, url)
            si = _substrate(url)
            schema = ReadSchema.from_substrate(si, bytes(si.metadata.data.data))
            cache.put(schema)
            return cls(schema, si.get_block_hash(0), url, si)

        return await asyncio.to_thread(load)

    @property
    def si(self) -> SubstrateInterface:
        """substrate-interface with the runtime loaded (here, blocking, on first use: prefer :meth:`full`)."""
        if self._si is None:
            shared = _loaded.get(self._key)
            if shared is None:
                if self._loop is not None and self._loop.is_running() and _in_loop(self._loop):
                    raise RuntimeError("the runtime loads over the client's transport: await runtime.full() first")
                shared = _loaded.setdefault(self._key, _substrate(self.url, self._through, self._loop))
            self._si = shared
        return self._si

    async def full(self) -> SubstrateInterface:
        """substrate-interface with the runtime loaded, loaded on its thread on first use."""
        if self._si is None:
            await self.run(lambda: self.si)
        return self._si

    @property
    def genesis_hash(self) -> str:
        """The chain's identity (block 0's hash, read once at load): a journal names the chain it belongs to."""
        return self._genesis

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on the runtime's own thread. substrate-interface's socket is closed after
        loading; should a call of it still reach the node (it reconnects on its own), its failure is a
        :class:`ConnectionLost`, which callers retry, not a task's fault."""
        from websocket import WebSocketException

        try:
            return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)
        except (WebSocketException, ConnectionError, TimeoutError) as exc:
            raise ConnectionLost(f"node connection of the runtime: {type(exc).__name__}: {exc}") from exc

    async def close(self) -> None:
        """Nothing to release: the loaded runtime and its thread stay for the process's next client of the
        same chain (its socket was closed after loading)."""

    # -- calls ------------------------------------------------------------------------------------
    def has_call(self, pallet: str, call: str) -> bool:
        return self.schema.has_call(pallet, call)

    async def sign(self, keypair: Keypair, pallet: str, call: str, params: dict[str, Any], nonce: int) -> tuple[bytes, str]:
        """The signed extrinsic's bytes and hash (immortal era, no tip)."""
        si = await self.full()

        def build() -> tuple[bytes, str]:
            composed = si.compose_call(pallet, call, params)
            xt = si.create_signed_extrinsic(composed, keypair=keypair, nonce=nonce)
            return bytes(xt.data.data), "0x" + xt.extrinsic_hash.hex()

        return await self.run(build)

    # -- decoding ---------------------------------------------------------------------------------
    def _decode(self, type_string: str, raw_hex: str) -> Any:
        from scalecodec.base import ScaleBytes

        si = self.si
        obj = si.runtime_config.create_scale_object(type_string, data=ScaleBytes(raw_hex), metadata=si.metadata)
        return obj.decode()

    async def _events_type(self) -> str:
        """``System.Events``' type string, looked up once: scalecodec re-encodes the pallet's storage
        entries on every lookup (0.6 ms a block on the event loop; 3.6 s of a 10.5 s catch-up of 1,500
        blocks under cProfile)."""
        if self._events_type_string is None:
            si = await self.full()
            storage = si.metadata.get_metadata_pallet("System").get_storage_function("Events")
            self._events_type_string = storage.get_value_type_string()
        return self._events_type_string

    async def _events_reader(self) -> tuple[EventLayout, EventDecoder]:
        """The layout of ``System.Events`` and a decoder of single events, built once from the runtime's
        types: the cached schema's when it has them (no full runtime to load first), else the full one's."""
        async with self._event_reader_built:  # once: a catch-up's first batches ask at the same time
            if self._event_reader is None:
                events_type = self.schema.data.get("events_type")
                if events_type is not None:
                    types, preset = self.schema.data["types"], self.schema.data["preset"]
                else:
                    si = await self.full()
                    types, preset = si.metadata.portable_registry.value["types"], si.type_registry_preset
                    events_type = int((await self._events_type()).rsplit("::", 1)[1])

                def build() -> tuple[EventLayout, EventDecoder]:
                    layout = EventLayout({t["id"]: t for t in types}, events_type)
                    return layout, EventDecoder(types, self.ss58_format, preset)

                self._event_reader = await self.run(build)
        return self._event_reader

    async def decode_events(self, block_number: int, block_hash: str, raw_hex: str | None) -> list[Event]:
        """A block's events (see :meth:`decode_blocks_events`)."""
        return (await self.decode_blocks_events([(block_number, block_hash, raw_hex)]))[0]

    async def decode_blocks_events(self, blocks: list[tuple[int, str, str | None]]) -> list[list[Event]]:
        """Each (number, hash, ``System.Events`` bytes) block's events: split into records on the runtime's
        thread, all the blocks in one hop, each event's attributes decoded when read. Bytes the layout walk
        cannot follow are decoded whole by substrate-interface instead, which raises its own error if they
        are not events at all."""
        if not any(raw for _, _, raw in blocks):
            return [[] for _ in blocks]
        layout, decoder = await self._events_reader()

        def split() -> list[list[Event] | None]:
            found: list[list[Event] | None] = []
            for number, block_hash, raw_hex in blocks:
                if not raw_hex:
                    found.append([])
                    continue
                data = bytes.fromhex(raw_hex.removeprefix("0x"))
                try:
                    records = layout.records(data)
                except MalformedEvents:
                    found.append(None)
                    continue
                found.append([Event(number, block_hash, index, r.extrinsic_index, r.pallet, r.name,
                                    partial(decoder.attributes, data, r)) for index, r in enumerate(records)])
            return found

        small = len(blocks) == 1 and len(blocks[0][2] or "") <= INLINE_HEX  # following the head
        split_up = split() if small else await self.run(split)
        return [events if events is not None else await self._decode_events_whole(number, block_hash, raw_hex or "")
                for events, (number, block_hash, raw_hex) in zip(split_up, blocks, strict=True)]

    async def _decode_events_whole(self, block_number: int, block_hash: str, raw_hex: str) -> list[Event]:
        records = await self.run(self._decode, await self._events_type(), raw_hex)
        events = []
        for index, record in enumerate(records):
            extrinsic = record.get("extrinsic_idx") if record["phase"] == "ApplyExtrinsic" else None
            events.append(Event(block_number, block_hash, index, extrinsic, record["module_id"], record["event_id"],
                                partial(_given, record["attributes"])))
        return events

    async def decode_extrinsic(self, raw_hex: str) -> dict[str, Any]:
        """A block's extrinsic as substrate-interface shows it (``address``, ``call`` …)."""
        from scalecodec.base import ScaleBytes

        si = await self.full()

        def decode() -> dict[str, Any]:
            xt = si.create_scale_object("Extrinsic", metadata=si.metadata)
            decoded: dict[str, Any] = xt.decode(data=ScaleBytes(raw_hex))
            return decoded

        return await self.run(decode)

    def module_error(self, index: int, error: int) -> tuple[str, str, str]:
        """(pallet, error name, docs) of ``DispatchError::Module``."""
        return self.schema.module_error(index, error) or (f"pallet#{index}", f"error#{error}", "")

    async def storage_key(self, pallet: str, item: str, params: list[Any] | None = None) -> str:
        key = self.schema.storage_key(pallet, item, params)
        if key is not None:
            return key
        si = await self.full()
        hex_key: str = await self.run(lambda: si.create_storage_key(pallet, item, params or []).to_hex())
        return hex_key

    def _item(self, pallet: str, item: str) -> dict[str, Any]:
        found = self.schema.item(pallet, item)
        if found is None:
            raise ValueError(f"{pallet}.{item}: no such storage item in the runtime")
        return found

    async def _decoder(self, pallet: str, item: str) -> Callable[[str, str], Any]:
        """Decodes a value of the item's types: the schema's for a read item, else the full runtime's."""
        if self.schema.readable(pallet, item):
            return self.schema.decode
        await self.full()
        return self._decode

    async def decode_map(self, pallet: str, item: str, prefix: str, changes: list[list[str]]) -> list[tuple[Any, Any]]:
        """(key, value) of a map's raw ``[key_hex, value_hex]`` pairs read under ``prefix``: the key's
        hasher bytes skipped (only the transparent hashers, ``…Concat`` and ``Identity``, keep it)."""
        found = self._item(pallet, item)
        key_types, hashers = found["key_types"], found["hashers"]
        hash_len = {"Blake2_128Concat": 16, "Twox64Concat": 8, "Identity": 0}
        if not key_types or any(h not in hash_len for h in hashers):
            raise ValueError(f"{pallet}.{item}: not a map with readable keys")
        key_type = "(" + ", ".join(f"[u8; {hash_len[h]}], {t}" for h, t in zip(hashers, key_types, strict=True)) + ")"
        value_type = found["value_type"]
        decode_as = await self._decoder(pallet, item)
        seen = self._map_rows

        def decode() -> list[tuple[Any, Any]]:
            rows = []
            for key_hex, value_hex in changes:
                if value_hex is None:
                    continue
                known = seen.get(key_hex)
                if known is None or known[0] != value_hex:  # new, or changed since: its new value replaces it
                    parts = decode_as(key_type, "0x" + key_hex[len(prefix):])
                    key = parts[1] if len(key_types) == 1 else tuple(parts[1::2])
                    known = seen[key_hex] = (value_hex, (key, decode_as(value_type, value_hex)))
                    if len(seen) > MAP_ROWS_KEPT:
                        del seen[next(iter(seen))]
                rows.append(copy.deepcopy(known[1]))  # the caller's own copy: a remembered row is never changed
            return rows

        return await self.run(decode)

    async def decode_storage(self, pallet: str, item: str, raw_hex: str | None) -> Any:
        """The item's value; for an absent ``ValueQuery`` entry its default, else None."""
        found = self._item(pallet, item)
        if raw_hex is None:
            raw_hex = self.schema.default_hex(pallet, item)
            if raw_hex is None:
                return None
        decode_as = await self._decoder(pallet, item)
        if decode_as == self.schema.decode and len(raw_hex) <= INLINE_HEX:
            return decode_as(found["value_type"], raw_hex)
        return await self.run(decode_as, found["value_type"], raw_hex)

    def ss58(self, public_key: bytes) -> str:
        from scalecodec.utils.ss58 import ss58_encode

        address: str = ss58_encode(public_key, self.ss58_format)
        return address
