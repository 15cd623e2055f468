"""Blocks in an S3-compatible bucket (AWS, MinIO, …) as ``PREFIX<cid>`` objects, with aiobotocore.

Credentials and endpoint come from configuration or the usual ``AWS_*`` environment variables,
never from the chain.
"""

from __future__ import annotations

from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError

from .base import check_block
from .cid import cid_of, parse
from .errors import NotFound, StorageError, TooLarge


class S3Store:
    name = "s3"

    def __init__(self, bucket: str, prefix: str = "blocks/", endpoint_url: str | None = None,
                 region: str | None = None, access_key: str | None = None, secret_key: str | None = None) -> None:
        self.bucket, self.prefix = bucket, prefix
        self._client_args = {k: v for k, v in {
            "endpoint_url": endpoint_url, "region_name": region or "us-east-1",
            "aws_access_key_id": access_key, "aws_secret_access_key": secret_key}.items() if v}

    def _client(self):
        return get_session().create_client("s3", **self._client_args)

    async def put(self, data: bytes) -> str:
        cid = cid_of(data)
        try:
            async with self._client() as s3:
                await s3.put_object(Bucket=self.bucket, Key=self.prefix + cid, Body=data)
        except (ClientError, BotoCoreError) as exc:
            raise StorageError(f"S3 put of {cid} to {self.bucket} failed: {exc}") from None
        return cid

    async def get(self, cid: str, max_size: int) -> bytes:
        key = self.prefix + str(parse(cid))
        try:
            async with self._client() as s3:
                obj = await s3.get_object(Bucket=self.bucket, Key=key)
                if obj["ContentLength"] > max_size:
                    raise TooLarge(f"{cid} in {self.bucket} is {obj['ContentLength']} bytes, over {max_size}")
                async with obj["Body"] as body:
                    data = await body.read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NoSuchBucket"):
                raise NotFound(f"{cid} is not in s3://{self.bucket}/{self.prefix}") from None
            raise StorageError(f"S3 get of {cid} from {self.bucket} failed: {exc}") from None
        except BotoCoreError as exc:
            raise StorageError(f"S3 get of {cid} from {self.bucket} failed: {exc}") from None
        return check_block(cid, data, max_size)
