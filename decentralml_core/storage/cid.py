"""IPFS content identifiers for raw blocks: CIDv1, raw codec, sha2-256, base32 (``bafkrei…``).

A block of at most :data:`CHUNK` bytes has the CID ``ipfs add --cid-version 1 --raw-leaves`` gives
the same bytes, and larger files are cut into such blocks, which are exactly IPFS's raw leaves.
"""

from __future__ import annotations

import hashlib

from multiformats import CID, multihash

from .errors import IntegrityError

CHUNK = 256 * 1024
"""IPFS's default chunk size: our blocks are its leaves."""


def cid_of(data: bytes) -> str:
    return str(CID("base32", 1, "raw", multihash.wrap(hashlib.sha256(data).digest(), "sha2-256")))


def parse(cid: str) -> CID:
    """A CID we can verify (raw codec, sha2-256), or IntegrityError naming what is wrong."""
    try:
        parsed = CID.decode(cid)
    except Exception:  # multiformats raises several types for malformed input
        raise IntegrityError(f"not a CID: {cid[:80]!r}") from None
    if parsed.codec.name != "raw" or parsed.hashfun.name != "sha2-256":
        raise IntegrityError(f"{cid}: only raw sha2-256 blocks are verifiable here, not "
                             f"{parsed.codec.name}/{parsed.hashfun.name}")
    return parsed


def verify(cid: str, data: bytes) -> bytes:
    """``data`` if it is the content ``cid`` names; IntegrityError otherwise."""
    expected = parse(cid).raw_digest
    if hashlib.sha256(data).digest() != expected:
        raise IntegrityError(f"content for {cid} does not match its hash ({len(data)} bytes refused)")
    return data
