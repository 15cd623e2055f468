"""Task assets and results: folders published as content-addressed blocks, fetched and verified.

``open_store(storage_type, config)`` maps the pallet's StorageType to a backend; ``put_folder`` and
``get_folder`` work the same on all of them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from .base import BlockStore, Limits, get_folder, get_manifest, put_folder
from .errors import IntegrityError, NotFound, StorageError, TooLarge, UnsafeName, UnsupportedStorage
from .gateway import GatewayStore, gateway_app
from .ipfs import IpfsRpcStore
from .local import LocalStore
from .s3 import S3Store

log = structlog.get_logger(__name__)


def default_root() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "decentralml" / "store"


@dataclass
class StorageConfig:
    """Where blocks go and come from. Secrets (S3 keys) come from the usual AWS_* variables."""

    local_root: Path = field(default_factory=default_root)
    gateways: list[str] = field(default_factory=list)  # trustless gateways to fetch from, in order
    ipfs_api: str | None = None  # an IPFS node's RPC API: publish there instead of locally
    s3_bucket: str | None = None
    s3_prefix: str = "decentralml/blocks/"
    s3_endpoint: str | None = None
    s3_region: str | None = None


class FallbackStore:
    """Reads from the first store that has a block (a wrong or failing one is skipped); writes to one."""

    def __init__(self, writer: BlockStore, readers: list[BlockStore]) -> None:
        self.writer, self.readers = writer, readers
        self.name = "+".join(r.name for r in readers)

    async def put(self, data: bytes) -> str:
        return await self.writer.put(data)

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
    local = LocalStore(config.local_root)
    if storage_type == "local":
        return local
    if storage_type == "IPFS":
        ipfs = [IpfsRpcStore(config.ipfs_api)] if config.ipfs_api else []
        readers = [local, *(GatewayStore(url) for url in config.gateways), *ipfs]
        return FallbackStore(ipfs[0] if ipfs else local, readers)
    if storage_type == "S3":
        if not config.s3_bucket:
            raise UnsupportedStorage("storage type S3 needs a bucket (storage.s3_bucket)")
        return S3Store(config.s3_bucket, config.s3_prefix, config.s3_endpoint, config.s3_region)
    raise UnsupportedStorage(f"storage type {storage_type} is not supported by this agent")


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


__all__ = ["BlockStore", "Limits", "StorageConfig", "open_store", "put_folder", "get_folder", "get_manifest",
           "credentials_for_chain", "LocalStore", "GatewayStore", "IpfsRpcStore", "S3Store", "FallbackStore",
           "gateway_app", "StorageError", "IntegrityError", "NotFound", "TooLarge", "UnsafeName",
           "UnsupportedStorage"]
