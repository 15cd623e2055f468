"""The Substrate JSON-RPC methods the devnet answers, as plain functions of the chain.

Subscriptions are the server's business (they need connections); everything here is a request in,
a JSON value out, or an :class:`JsonRpcError` with the code a Substrate node would give.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from scalecodec.utils.ss58 import ss58_decode

from .chain import Chain
from .codec import CodecError, compact_bytes, decode_compact
from .executive import BASE_WEIGHT, CALL_WEIGHT, InvalidTransaction
from .metadata import (
    METADATA_VERSION,
    RUNTIME_APIS,
    SPEC_NAME,
    SPEC_VERSION,
    SS58_PREFIX,
    TOKEN_DECIMALS,
    TOKEN_SYMBOL,
    TRANSACTION_VERSION,
)
from .subscriptions import SUBSCRIPTION_METHODS

METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
UNKNOWN_BLOCK = 4003  # what a node answers for a hash it does not know
METADATA_CALLS = ("Metadata_metadata", "Metadata_metadata_versions", "Metadata_metadata_at_version")


class JsonRpcError(Exception):
    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code, self.message, self.data = code, message, data

    def to_json(self) -> dict[str, Any]:
        error = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error


def hexs(data: bytes) -> str:
    return "0x" + data.hex()


def unhex(value: Any, what: str = "hex string") -> bytes:
    if not isinstance(value, str) or not value.startswith("0x"):
        raise JsonRpcError(INVALID_PARAMS, "Invalid params", f"expected a 0x-prefixed {what}")
    try:
        return bytes.fromhex(value[2:])
    except ValueError:
        raise JsonRpcError(INVALID_PARAMS, "Invalid params", f"invalid {what}") from None


def runtime_version() -> dict[str, Any]:
    return {
        "specName": SPEC_NAME, "implName": SPEC_NAME, "authoringVersion": 1, "specVersion": SPEC_VERSION,
        "implVersion": 1, "apis": [[h, v] for h, v in RUNTIME_APIS],
        "transactionVersion": TRANSACTION_VERSION, "stateVersion": 1,
    }


def header_json(header: dict[str, Any]) -> dict[str, Any]:
    return {
        "parentHash": hexs(header["parent_hash"]), "number": hex(header["number"]),
        "stateRoot": hexs(header["state_root"]), "extrinsicsRoot": hexs(header["extrinsics_root"]),
        "digest": {"logs": []},
    }


def account_id(value: Any) -> bytes:
    """An account given as SS58 or 0x-hex public key."""
    if not isinstance(value, str):  # ss58_decode would fail with AttributeError: an internal error
        raise JsonRpcError(INVALID_PARAMS, "Invalid params", "an account is an SS58 or 0x-hex string")
    if value.startswith("0x"):
        raw = unhex(value, "account id")
    else:
        try:
            raw = bytes.fromhex(ss58_decode(value))
        except (ValueError, TypeError, IndexError):
            raise JsonRpcError(INVALID_PARAMS, "Invalid params", "invalid SS58 address") from None
    if len(raw) != 32:
        raise JsonRpcError(INVALID_PARAMS, "Invalid params", "an account id has 32 bytes")
    return raw


class Methods:
    """Request/response methods; ``table`` maps JSON-RPC names to callables taking the params list."""

    def __init__(self, chain: Chain) -> None:
        self.chain = chain
        self.table: dict[str, Callable[..., Any]] = {
            "rpc_methods": self.rpc_methods,
            "system_chain": lambda: "Development",
            "system_chainType": lambda: "Development",
            "system_name": lambda: "DecentralML devnet",
            "system_version": lambda: "0.1.0",
            "system_properties": lambda: {"ss58Format": SS58_PREFIX, "tokenDecimals": TOKEN_DECIMALS,
                                          "tokenSymbol": TOKEN_SYMBOL},
            "system_health": lambda: {"peers": 0, "isSyncing": False, "shouldHavePeers": False},
            "system_localPeerId": lambda: "12D3KooWDevnetDecentralMLLocalNodeNoPeers",
            "system_localListenAddresses": lambda: [],
            "system_peers": lambda: [],
            "system_nodeRoles": lambda: ["Authority"],
            "system_syncState": self.sync_state,
            "system_accountNextIndex": self.account_next_index,
            "chain_getBlockHash": self.get_block_hash,
            "chain_getHead": self.get_head,
            "chain_getFinalizedHead": self.get_head,
            "chain_getFinalisedHead": self.get_head,
            "chain_getHeader": self.get_header,
            "chain_getBlock": self.get_block,
            "chain_getRuntimeVersion": self.get_runtime_version,
            "state_getRuntimeVersion": self.get_runtime_version,
            "state_getMetadata": self.get_metadata,
            "state_getStorage": self.get_storage,
            "state_getStorageAt": self.get_storage,
            "state_getStorageHash": self.get_storage_hash,
            "state_getStorageSize": self.get_storage_size,
            "state_getKeysPaged": self.get_keys_paged,
            "state_getKeysPagedAt": self.get_keys_paged,
            "state_getKeys": self.get_keys,
            "state_queryStorageAt": self.query_storage_at,
            "state_call": self.state_call,
            "payment_queryInfo": self.payment_query_info,
            "author_submitExtrinsic": self.submit_extrinsic,
            "author_pendingExtrinsics": self.pending_extrinsics,
        }

    def call(self, method: str, params: Any) -> Any:
        fn = self.table.get(method)
        if fn is None:
            raise JsonRpcError(METHOD_NOT_FOUND, "Method not found")
        if params is None:
            params = []
        if not isinstance(params, list):
            raise JsonRpcError(INVALID_PARAMS, "Invalid params", "params must be an array")
        try:
            return fn(*params)
        except TypeError as exc:
            raise JsonRpcError(INVALID_PARAMS, "Invalid params", str(exc)) from None

    def rpc_methods(self) -> dict[str, Any]:
        return {"methods": sorted(list(self.table) + list(SUBSCRIPTION_METHODS))}

    def sync_state(self) -> dict[str, Any]:
        n = self.chain.best_number
        return {"startingBlock": 0, "currentBlock": n, "highestBlock": n}

    def _number(self, at: Any) -> int:
        if at is None:
            return self.chain.best_number
        number = self.chain.block_number(unhex(at, "block hash"))
        if number is None:
            raise JsonRpcError(UNKNOWN_BLOCK, "Unknown block", f"no block with hash {at}")
        return number

    def account_next_index(self, address: str) -> int:
        return self.chain.account_next_index(account_id(address))

    def get_block_hash(self, number: Any = None) -> Any:
        if isinstance(number, list):
            return [self.get_block_hash(n) for n in number]
        if number is None:
            return hexs(self.chain.best_hash)
        if isinstance(number, str):
            try:
                number = int(number, 16) if number.startswith("0x") else int(number)
            except ValueError:
                raise JsonRpcError(INVALID_PARAMS, "Invalid params", "block number") from None
        if not isinstance(number, int) or isinstance(number, bool) or number < 0:
            raise JsonRpcError(INVALID_PARAMS, "Invalid params", "block number")
        block_hash = self.chain.block_hash(number)
        return hexs(block_hash) if block_hash else None

    def get_head(self) -> str:
        return hexs(self.chain.best_hash)

    def get_header(self, at: Any = None) -> dict[str, Any] | None:
        header = self.chain.header(self._number(at))
        return header_json(header) if header else None

    def get_block(self, at: Any = None) -> dict[str, Any] | None:
        number = self._number(at)
        header = self.chain.header(number)
        bodies = self.chain.extrinsics(number)
        if header is None or bodies is None:
            return None
        return {"block": {"header": header_json(header), "extrinsics": [hexs(b) for b in bodies]},
                "justifications": None}

    def get_runtime_version(self, at: Any = None) -> dict[str, Any]:
        self._number(at)
        return runtime_version()

    def get_metadata(self, at: Any = None) -> str:
        self._number(at)
        return hexs(self.chain.runtime.metadata_bytes)

    def get_storage(self, key: Any, at: Any = None) -> str | None:
        value = self.chain.storage_at(unhex(key, "storage key"), self._number(at))
        return hexs(value) if value is not None else None

    def get_storage_hash(self, key: Any, at: Any = None) -> str | None:
        from .hashing import blake2_256
        value = self.chain.storage_at(unhex(key, "storage key"), self._number(at))
        return hexs(blake2_256(value)) if value is not None else None

    def get_storage_size(self, key: Any, at: Any = None) -> int | None:
        value = self.chain.storage_at(unhex(key, "storage key"), self._number(at))
        return len(value) if value is not None else None

    def get_keys_paged(self, prefix: Any = None, count: Any = 1000, start: Any = None, at: Any = None) -> list[str]:
        if not isinstance(count, int) or count < 0 or count > 1000:
            raise JsonRpcError(INVALID_PARAMS, "Invalid params", "count must be 0..1000")
        prefix_b = unhex(prefix, "key prefix") if prefix else b""
        start_b = unhex(start, "start key") if start else b""
        return [hexs(k) for k in self.chain.keys_paged(prefix_b, count, start_b, self._number(at))]

    def get_keys(self, prefix: Any, at: Any = None) -> list[str]:
        return [hexs(k) for k in self.chain.keys_paged(unhex(prefix, "key prefix"), 1 << 30, b"",
                                                         self._number(at))]

    def query_storage_at(self, keys: Any, at: Any = None) -> list[dict[str, Any]]:
        if not isinstance(keys, list):
            raise JsonRpcError(INVALID_PARAMS, "Invalid params", "keys must be an array")
        number = self._number(at)
        changes = []
        for key in keys:
            value = self.chain.storage_at(unhex(key, "storage key"), number)
            changes.append([key, hexs(value) if value is not None else None])
        block_hash = self.chain.block_hash(number)
        return [{"block": hexs(block_hash) if block_hash is not None else None, "changes": changes}]

    def state_call(self, method: Any, data: Any = "0x", at: Any = None) -> str:
        raw = unhex(data, "call data")
        number = self._number(at)
        if method in METADATA_CALLS:  # one runtime for the whole chain: the same answer at every block
            return hexs(self._metadata_call(method, raw))
        if number != self.chain.best_number:
            raise JsonRpcError(INVALID_PARAMS, "Invalid params", "runtime calls are answered at the best block only")
        if method == "AccountNonceApi_account_nonce":
            if len(raw) != 32:
                raise JsonRpcError(INVALID_PARAMS, "Invalid params", "AccountNonceApi takes an AccountId")
            return hexs(self.chain.executive.account_nonce(raw).to_bytes(4, "little"))
        if method == "TransactionPaymentApi_query_info":  # (uxt: length-prefixed extrinsic, len: u32)
            try:
                length, off = decode_compact(raw, 0)
            except CodecError as exc:
                raise JsonRpcError(INVALID_PARAMS, "Invalid params", str(exc)) from None
            if len(raw) != off + length + 4:
                raise JsonRpcError(INVALID_PARAMS, "Invalid params", "TransactionPaymentApi takes an extrinsic and a u32")
            info = self._fee(raw[:off + length])
            t = self.chain.runtime.types
            body = self.chain.runtime.codec.encode(t.weight, {"ref_time": info[0], "proof_size": 0})
            return hexs(body + b"\x00" + info[1].to_bytes(16, "little"))
        raise JsonRpcError(-32000, "Client error: Execution failed", f"runtime call {method} is not supported")

    def _metadata_call(self, method: str, raw: bytes) -> bytes:
        """Metadata runtime API v2, SCALE-encoded as a node answers it."""
        meta = self.chain.runtime.metadata_bytes
        opaque = compact_bytes(len(meta)) + meta  # OpaqueMetadata: a length-prefixed byte vector
        if method == "Metadata_metadata":
            return opaque
        if method == "Metadata_metadata_versions":  # Vec<u32>
            return compact_bytes(1) + METADATA_VERSION.to_bytes(4, "little")
        if len(raw) != 4:  # Metadata_metadata_at_version(u32) -> Option<OpaqueMetadata>
            raise JsonRpcError(INVALID_PARAMS, "Invalid params", "Metadata_metadata_at_version takes a u32")
        return b"\x01" + opaque if int.from_bytes(raw, "little") == METADATA_VERSION else b"\x00"

    def _fee(self, xt: bytes) -> tuple[int, int]:
        try:
            decoded, *_ = self.chain.executive.decode(xt)
        except InvalidTransaction as exc:
            raise JsonRpcError(exc.code, exc.message, exc.data) from None
        return BASE_WEIGHT + CALL_WEIGHT, decoded.fee

    def payment_query_info(self, extrinsic: Any, at: Any = None) -> dict[str, Any]:
        weight, fee = self._fee(unhex(extrinsic, "extrinsic"))
        return {"weight": {"refTime": weight, "proofSize": 0}, "class": "normal", "partialFee": str(fee)}

    def submit_extrinsic(self, extrinsic: Any) -> str:
        tx_hash, _ = self.submit(extrinsic)
        return hexs(tx_hash)

    def submit(self, extrinsic: Any) -> tuple[bytes, bool]:
        try:
            return self.chain.submit(unhex(extrinsic, "extrinsic"))
        except InvalidTransaction as exc:
            raise JsonRpcError(exc.code, exc.message, exc.data) from None

    def pending_extrinsics(self) -> list[str]:
        return [hexs(xt.raw) for xt in self.chain.pool.by_hash.values()]
