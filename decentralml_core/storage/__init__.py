"""Task assets and results: folders published as IPFS content (UnixFS files under a JSON manifest),
fetched and verified byte for byte.

``open_store(storage_type, config)`` maps the pallet's StorageType ("IPFS", "S3"; "Crust", "GCP",
"Azure" are refused with :class:`UnsupportedStorage`) or "local" to a :class:`BlockStore`;
``put_folder(store, path) → reference`` and ``get_folder(store, reference, dest) → Path`` (and
``put_blob``/``get_blob`` for single files) work the same on all of them.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import structlog

from ..chain.model import STORAGE_TYPES
from ..settings import computed_setting, setting
from .base import BlockStore, Limits, get_blob, get_folder, get_manifest, iter_blob, put_blob, put_file, put_folder
from .cid import cid_of
from .errors import IntegrityError, NotFound, StorageError, TooLarge, Unreachable, UnsafeName, UnsupportedStorage
from .gateway import GatewayStore, gateway_app
from .ipfs import IpfsRpcStore
from .local import LocalStore
from .session import connected
from .unixfs import file_cid, file_cid_of_path

log = structlog.get_logger(__name__)


def default_root() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "decentralml" / "store"


@dataclass
class StorageConfig:
    """Where blocks go and come from. Secrets (S3 keys) come from the usual AWS_* variables."""

    root: Path = computed_setting(default_root, "local content-addressed block store "
                                                "($XDG_DATA_HOME/decentralml/store)")
    gateways: list[str] = computed_setting(list, "IPFS trustless gateways to fetch from, in order "
                                                 "(e.g. another machine's `decentralml storage serve`)")
    ipfs_api: str | None = setting(None, "an IPFS node's RPC API URL: publish and fetch there")
    s3_bucket: str | None = setting(None, "bucket for storage type S3 (keys from AWS_* variables)")
    s3_prefix: str = setting("decentralml/blocks/", "key prefix of the blocks in the S3 bucket")
    s3_endpoint: str | None = setting(None, "S3-compatible endpoint URL (MinIO, …); unset: AWS")
    s3_region: str | None = setting(None, "S3 region (unset: us-east-1)")


class FallbackStore:
    """Reads from the first store that has a block (a wrong or failing one is skipped); writes to one."""

    def __init__(self, writer: BlockStore, readers: list[BlockStore]) -> None:
        self.writer, self.readers = writer, readers
        self.name = "+".join(r.name for r in readers)
        self.add_file = getattr(writer, "add_file", None)  # an IPFS node imports whole files itself

    @contextlib.asynccontextmanager
    async def connected(self) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            for store in {id(s): s for s in (self.writer, *self.readers)}.values():
                await stack.enter_async_context(connected(store))
            yield

    async def put(self, data: bytes, codec: str = "raw") -> str:
        return await self.writer.put(data, codec)

    async def get(self, cid: str, max_size: int) -> bytes:
        failure: StorageError = NotFound(f"{cid} not found in {self.name}")
        for store in self.readers:
            try:
                return await store.get(cid, max_size)
            except NotFound as exc:
                failure = exc if isinstance(failure, NotFound) else failure
            except (IntegrityError, StorageError) as exc:
                log.warning("block_source_failed", cid=cid, store=store.name, error=str(exc))
                failure = exc
        raise failure


def open_store(storage_type: str, config: StorageConfig) -> BlockStore:
    """The backend for a StorageType from the chain ("IPFS", "S3", …) or "local"."""
    local = LocalStore(config.root)
    if storage_type == "local":
        return local
    if storage_type == "IPFS":
        ipfs = [IpfsRpcStore(config.ipfs_api)] if config.ipfs_api else []
        readers: list[BlockStore] = [local, *(GatewayStore(url) for url in config.gateways), *ipfs]
        return FallbackStore(ipfs[0] if ipfs else local, readers)
    if storage_type == "S3":
        if not config.s3_bucket:
            raise UnsupportedStorage("storage type S3 needs a bucket (storage.s3_bucket)")
        from .s3 import S3Store

        return S3Store(config.s3_bucket, config.s3_prefix, config.s3_endpoint, config.s3_region)
    raise UnsupportedStorage(f"storage type {storage_type} is not supported by this agent")


def __getattr__(name: str) -> object:
    """``S3Store`` on first use: aiobotocore and botocore are ~20 MB of RSS and 0.5 s of import that an
    agent whose tasks are on IPFS never needs."""
    if name == "S3Store":
        from .s3 import S3Store

        return S3Store
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def credentials_for_chain(credentials: str | None, publish: bool = False) -> str:
    """What goes in a ``*_storage_credentials`` field on chain: ``""`` unless publishing is asked for.

    The chain is public: credentials there are readable by anyone. Publishing them needs an explicit
    flag and logs a warning.
    """
    if not credentials:
        return ""
    if not publish:
        raise StorageError("refusing to put storage credentials on chain in plain text "
                           "(pass --publish-credentials if that is really meant)")
    log.warning("credentials_published_on_chain", chars=len(credentials))
    return credentials


__all__ = ["STORAGE_TYPES", "BlockStore", "Limits", "StorageConfig", "open_store", "put_folder", "get_folder", "get_manifest",
           "put_file", "put_blob", "get_blob", "iter_blob", "cid_of", "file_cid", "file_cid_of_path", "credentials_for_chain", "LocalStore", "GatewayStore", "IpfsRpcStore", "S3Store", "FallbackStore",
           "gateway_app", "StorageError", "IntegrityError", "NotFound", "TooLarge", "UnsafeName",
           "Unreachable", "UnsupportedStorage"]
