"""IPFS content identifiers: computing them, parsing hostile ones, and checking bytes against them.

Our blocks are raw leaves (``bafkrei…``: CIDv1, raw, sha2-256, base32) and UnixFS dag-pb nodes
(``bafybei…``), the two kinds ``ipfs add --cid-version 1 --raw-leaves`` makes; identity CIDs (data
inlined in the CID, such as the gateway probe ``bafkqaaa``) are understood too. Every CID we store
or compare is in one canonical form (CIDv1, base32), whatever form it arrived in.

The CID prefixes and every CID not already canonical go through ``multiformats``; the hot path —
the sha2-256 digest after a known prefix, in base32 — uses the standard library, because
``multiformats`` takes about 2 ms per CID (4096 CIDs a GiB). Tests check both agree.
"""

from __future__ import annotations

import base64
import functools
import hashlib
from dataclasses import dataclass

from multiformats import CID, multihash

from .errors import IntegrityError, TooLarge

CHUNK = 256 * 1024
"""IPFS's fixed-size chunker default (``size-262144``): the size of every leaf but a file's last."""

MAX_BLOCK = 1024 * 1024
"""IPFS's block size limit: no single block fetched from anywhere may be bigger."""

CODECS = ("raw", "dag-pb")
HASHES = ("sha2-256", "identity")
PREFIX = {codec: bytes(CID("base32", 1, codec, multihash.wrap(bytes(32), "sha2-256")))[:-32] for codec in CODECS}
"""CIDv1 header + sha2-256 multihash header of each codec: a CID is this followed by the digest."""
_CODEC_OF_PREFIX = {prefix: codec for codec, prefix in PREFIX.items()}


@dataclass(frozen=True)
class Parsed:
    """A verifiable CID: ``text`` is its canonical form, ``binary`` its bytes (as dag-pb links hold it)."""

    text: str
    binary: bytes
    codec: str
    digest: bytes
    identity: bool

    def __str__(self) -> str:
        return self.text


def _base32(binary: bytes) -> str:
    return "b" + base64.b32encode(binary).decode("ascii").rstrip("=").lower()


def cid_of(data: bytes, codec: str = "raw") -> str:
    """The canonical CID of a block (``raw`` or ``dag-pb``)."""
    return _base32(PREFIX[codec] + hashlib.sha256(data).digest())


def _fast(binary: bytes) -> Parsed | None:
    """The usual case — a sha2-256 raw or dag-pb CIDv1 — without multiformats."""
    codec = _CODEC_OF_PREFIX.get(binary[:-32]) if len(binary) == len(PREFIX["raw"]) + 32 else None
    return Parsed(_base32(binary), binary, codec, binary[-32:], False) if codec else None


@functools.lru_cache(maxsize=16384)
def parse(cid: str | bytes) -> Parsed:
    """A CID we can verify (raw or dag-pb; sha2-256 or identity), from text or bytes; IntegrityError otherwise."""
    if isinstance(cid, str) and cid[:1] == "b" and len(cid) == 59:
        try:
            parsed = _fast(base64.b32decode(cid[1:].upper() + "======"))
        except ValueError:
            parsed = None
        if parsed and parsed.text == cid:
            return parsed
    elif isinstance(cid, bytes) and (parsed := _fast(cid)):
        return parsed
    try:
        decoded = CID.decode(cid)
    except Exception:  # multiformats raises several types for malformed input
        raise IntegrityError(f"not a CID: {str(cid)[:80]!r}") from None
    if decoded.codec.name not in CODECS or decoded.hashfun.name not in HASHES:
        raise IntegrityError(f"{str(cid)[:80]}: only raw and dag-pb blocks hashed with sha2-256 are verifiable "
                             f"here, not {decoded.codec.name}/{decoded.hashfun.name}")
    if decoded.hashfun.name == "identity" and len(decoded.raw_digest) > CHUNK:
        raise TooLarge(f"identity CID inlines {len(decoded.raw_digest)} bytes, over {CHUNK}")
    v1 = decoded.set(version=1, base="base32")
    return Parsed(str(v1), bytes(v1), decoded.codec.name, bytes(decoded.raw_digest),
                  decoded.hashfun.name == "identity")


def canonical(cid: str) -> str:
    """``cid`` as CIDv1 base32, the form stores use as a key (a ``Qm…`` v0 CID becomes ``bafybei…``)."""
    return parse(cid).text


def codec_of(cid: str) -> str:
    return parse(cid).codec


def inlined(cid: str) -> bytes | None:
    """The data an identity CID carries in itself (nothing to fetch), else None."""
    parsed = parse(cid)
    return parsed.digest if parsed.identity else None


def verify(cid: str, data: bytes) -> bytes:
    """``data`` if it is the content ``cid`` names; IntegrityError otherwise."""
    parsed = parse(cid)
    actual = data if parsed.identity else hashlib.sha256(data).digest()
    if actual != parsed.digest:
        raise IntegrityError(f"content for {cid} does not match its hash ({len(data)} bytes refused)")
    return data


def check_block(cid: str, data: bytes, max_size: int) -> bytes:
    """``data`` if it is no bigger than ``max_size`` and matches ``cid``."""
    if len(data) > max_size:
        raise TooLarge(f"block {cid} is {len(data)} bytes, over the {max_size}-byte limit for it")
    return verify(cid, data)
