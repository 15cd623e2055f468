"""Blocks in an S3-compatible bucket (AWS, MinIO, …) as ``PREFIX<cid>`` objects, with aiobotocore.

Credentials, region and endpoint come from configuration or the usual ``AWS_*`` environment
variables (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_ENDPOINT_URL_S3``, …), never
from the chain. Objects are checked against their CIDs like blocks from any other source.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError

from .cid import MAX_BLOCK, canonical, check_block, cid_of, inlined
from .errors import NotFound, StorageError, TooLarge
from .session import SharedClient

MISSING = ("NoSuchKey", "404", "NoSuchBucket")


@functools.cache
def _session() -> Any:
    """One botocore session per process: it caches the service models a client takes ~0.2 s to load."""
    return get_session()


class S3Store(SharedClient):
    name = "s3"

    def __init__(self, bucket: str, prefix: str = "blocks/", endpoint_url: str | None = None,
                 region: str | None = None, access_key: str | None = None, secret_key: str | None = None) -> None:
        self.bucket, self.prefix = bucket, prefix
        self._client_args = {k: v for k, v in {
            "endpoint_url": endpoint_url, "region_name": region or "us-east-1",
            "aws_access_key_id": access_key, "aws_secret_access_key": secret_key}.items() if v}

    async def _open(self) -> tuple[Any, Callable[[], Awaitable[Any]]]:
        context = _session().create_client("s3", **self._client_args)
        try:
            client = await context.__aenter__()
        except BotoCoreError as exc:  # e.g. no credentials anywhere
            raise StorageError(f"S3 client for {self.bucket}: {exc}") from None
        return client, lambda: context.__aexit__(None, None, None)

    async def put(self, data: bytes, codec: str = "raw") -> str:
        if len(data) > MAX_BLOCK:
            raise TooLarge(f"a block of {len(data)} bytes is over the {MAX_BLOCK}-byte block limit")
        cid = cid_of(data, codec)
        try:
            async with self.client() as s3:
                await s3.put_object(Bucket=self.bucket, Key=self.prefix + cid, Body=data)
        except (ClientError, BotoCoreError) as exc:
            raise StorageError(f"S3 put of {cid} to {self.bucket} failed: {exc}") from None
        return cid

    async def get(self, cid: str, max_size: int) -> bytes:
        if (data := inlined(cid)) is not None:
            return check_block(cid, data, max_size)
        key = self.prefix + canonical(cid)
        try:
            async with self.client() as s3:
                obj = await s3.get_object(Bucket=self.bucket, Key=key)
                if obj["ContentLength"] > max_size:
                    raise TooLarge(f"{cid} in {self.bucket} is {obj['ContentLength']} bytes, "
                                   f"over the {max_size}-byte limit for it")
                async with obj["Body"] as body:
                    data = await body.read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in MISSING:
                raise NotFound(f"{cid} is not in s3://{self.bucket}/{self.prefix}") from None
            raise StorageError(f"S3 get of {cid} from {self.bucket} failed: {exc}") from None
        except BotoCoreError as exc:
            raise StorageError(f"S3 get of {cid} from {self.bucket} failed: {exc}") from None
        return check_block(cid, data, max_size)
