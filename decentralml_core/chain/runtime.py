"""The node's runtime as substrate-interface knows it: metadata, call composition, signing, decoding.

substrate-interface is synchronous and its objects are not thread-safe, so every use goes through
one worker thread (a capacity-1 limiter): the event loop never blocks on it and calls never interleave.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
from scalecodec.base import ScaleBytes
from substrateinterface import Keypair, SubstrateInterface
from substrateinterface.exceptions import SubstrateRequestException
from websocket import WebSocketException

from ..netguard import NODE_TOKEN_ENV, bearer_headers
from .errors import ConnectionLost
from .rpc import RpcError

if TYPE_CHECKING:
    from .rpc import RpcTransport

T = TypeVar("T")


class _Interface(SubstrateInterface):  # type: ignore[misc]  # substrate-interface ships no types
    """substrate-interface that loads the runtime once per connection instead of before each call.

    Stock ``init_runtime()`` asks the node for its head and header before every compose/sign; a
    client that pipelines hundreds of extrinsics would spend most of its time there. A runtime
    upgrade is picked up when the client reconnects.
    """

    _genesis: str | None = None

    def __init__(self, *args: Any, through: RpcTransport | None = None, **kwargs: Any) -> None:
        self._through = through  # set first: the constructor already asks the node its chain name
        super().__init__(*args, **kwargs)

    def rpc_request(self, method: str, params: Any, result_handler: Any = None) -> Any:
        """Over ``through`` if given — the client's own transport, from the runtime's thread while the event
        loop answers — so a node without a socket (the devnet in process) loads too."""
        if self._through is None:
            return super().rpc_request(method, params, result_handler)
        if result_handler is not None:
            raise SubstrateRequestException("subscriptions go through the chain client, not the runtime")
        try:
            result = anyio.from_thread.run(self._through.request, method, params)
        except RpcError as exc:
            raise SubstrateRequestException({"code": exc.code, "message": exc.message, "data": exc.data}) from exc
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


@dataclass(frozen=True)
class Event:
    """One decoded event of a block, addressed by (block_number, index)."""

    block_number: int
    block_hash: str
    index: int
    extrinsic_index: int | None
    pallet: str
    name: str
    attributes: Any

    @property
    def position(self) -> tuple[int, int]:
        return self.block_number, self.index


class Runtime:
    """Metadata-driven encoding and decoding for one node connection; ``await Runtime.load(url)``."""

    def __init__(self, si: SubstrateInterface) -> None:
        self.si = si
        self._limiter = anyio.CapacityLimiter(1)
        self._events_type = si.metadata.get_metadata_pallet("System").get_storage_function(
            "Events").get_value_type_string()
        self.ss58_format = si.ss58_format

    @classmethod
    async def load(cls, url: str, rpc: RpcTransport | None = None) -> Runtime:
        """The runtime of the node at ``url``, read over a socket of its own, or over ``rpc`` if given
        (a transport without a URL to dial, such as the devnet's in-process one)."""

        def connect() -> SubstrateInterface:
            headers = [f"{k}: {v}" for k, v in bearer_headers(NODE_TOKEN_ENV).items()]
            if rpc is None:
                si = _Interface(url=url, ws_options={"max_size": 64 * 1024 * 1024, "header": headers, "timeout": 60})
            else:  # requests go over ``rpc``; the interface's own transport is never used
                si = _Interface(url=url, through=rpc)
            si.init_runtime()
            si.get_block_hash(0)  # cached: signing needs the genesis hash
            si.close()  # everything after this is local (metadata); the client's own socket talks to the node
            return si

        return cls(await anyio.to_thread.run_sync(connect))

    @property
    def genesis_hash(self) -> str:
        """The chain's identity (block 0's hash, read once at load): a journal names the chain it belongs to."""
        genesis: str = self.si.get_block_hash(0)
        return genesis

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on the runtime's own thread. substrate-interface's socket is closed after
        loading; should a call of it still reach the node (it reconnects on its own), its failure is a
        :class:`ConnectionLost`, which callers retry, not a task's fault."""
        try:
            return await anyio.to_thread.run_sync(fn, *args, limiter=self._limiter)
        except (WebSocketException, ConnectionError, TimeoutError) as exc:
            raise ConnectionLost(f"node connection of the runtime: {type(exc).__name__}: {exc}") from exc

    async def close(self) -> None:
        await self.run(self.si.close)

    # -- calls ------------------------------------------------------------------------------------
    def has_call(self, pallet: str, call: str) -> bool:
        found = self.si.metadata.get_metadata_pallet(pallet)
        return found is not None and any(c.name == call for c in found.calls or [])

    async def sign(self, keypair: Keypair, pallet: str, call: str, params: dict[str, Any], nonce: int) -> tuple[bytes, str]:
        """The signed extrinsic's bytes and hash (immortal era, no tip)."""

        def build() -> tuple[bytes, str]:
            composed = self.si.compose_call(pallet, call, params)
            xt = self.si.create_signed_extrinsic(composed, keypair=keypair, nonce=nonce)
            return bytes(xt.data.data), "0x" + xt.extrinsic_hash.hex()

        return await self.run(build)

    # -- decoding ---------------------------------------------------------------------------------
    def _decode(self, type_string: str, raw_hex: str) -> Any:
        obj = self.si.runtime_config.create_scale_object(type_string, data=ScaleBytes(raw_hex), metadata=self.si.metadata)
        return obj.decode()

    async def decode_events(self, block_number: int, block_hash: str, raw_hex: str | None) -> list[Event]:
        if not raw_hex:
            return []
        records = await self.run(self._decode, self._events_type, raw_hex)
        events = []
        for index, record in enumerate(records):
            extrinsic = record.get("extrinsic_idx") if record["phase"] == "ApplyExtrinsic" else None
            events.append(Event(block_number, block_hash, index, extrinsic, record["module_id"], record["event_id"],
                                record["attributes"]))
        return events

    async def decode_extrinsic(self, raw_hex: str) -> dict[str, Any]:
        """A block's extrinsic as substrate-interface shows it (``address``, ``call`` …)."""

        def decode() -> dict[str, Any]:
            xt = self.si.create_scale_object("Extrinsic", metadata=self.si.metadata)
            decoded: dict[str, Any] = xt.decode(data=ScaleBytes(raw_hex))
            return decoded

        return await self.run(decode)

    def module_error(self, index: int, error: int) -> tuple[str, str, str]:
        """(pallet, error name, docs) of ``DispatchError::Module``."""
        pallet = next((p for p in self.si.metadata.pallets if p["index"] == index), None)
        if pallet is None or not pallet.errors or error >= len(pallet.errors):
            return f"pallet#{index}", f"error#{error}", ""
        err = pallet.errors[error]
        return pallet.name, err.name, " ".join(err.docs or [])

    async def storage_key(self, pallet: str, item: str, params: list[Any] | None = None) -> str:
        return await self.run(lambda: self.si.create_storage_key(pallet, item, params or []).to_hex())

    async def decode_map(self, pallet: str, item: str, prefix: str, changes: list[list[str]]) -> list[tuple[Any, Any]]:
        """(key, value) of a map's raw ``[key_hex, value_hex]`` pairs read under ``prefix``: the key's
        hasher bytes skipped (only the transparent hashers, ``…Concat`` and ``Identity``, keep it)."""
        fn = self.si.metadata.get_metadata_pallet(pallet).get_storage_function(item)
        key_types, hashers = fn.get_params_type_string(), fn.get_param_hashers()
        hash_len = {"Blake2_128Concat": 16, "Twox64Concat": 8, "Identity": 0}
        if not key_types or any(h not in hash_len for h in hashers):
            raise ValueError(f"{pallet}.{item}: not a map with readable keys")
        key_type = "(" + ", ".join(f"[u8; {hash_len[h]}], {t}" for h, t in zip(hashers, key_types, strict=True)) + ")"
        value_type = fn.get_value_type_string()

        def decode() -> list[tuple[Any, Any]]:
            rows = []
            for key_hex, value_hex in changes:
                if value_hex is None:
                    continue
                parts = self._decode(key_type, "0x" + key_hex[len(prefix):])
                key = parts[1] if len(key_types) == 1 else tuple(parts[1::2])
                rows.append((key, self._decode(value_type, value_hex)))
            return rows

        return await self.run(decode)

    async def decode_storage(self, pallet: str, item: str, raw_hex: str | None) -> Any:
        """The item's value; for an absent ``ValueQuery`` entry its default, else None."""
        fn = self.si.metadata.get_metadata_pallet(pallet).get_storage_function(item)
        if raw_hex is None:
            if fn.value["modifier"] != "Default":
                return None
            default = fn.value["default"]  # scalecodec shows bytes that are valid UTF-8 as str
            raw_hex = default if default.startswith("0x") else "0x" + default.encode().hex()
        return await self.run(self._decode, fn.get_value_type_string(), raw_hex)

    def ss58(self, public_key: bytes) -> str:
        address: str = self.si.ss58_encode(public_key)
        return address
