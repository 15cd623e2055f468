"""CIDs and UnixFS DAGs: known vectors from the real importer, and hostile blocks and DAGs.

The vectors were computed with ``ipfs-unixfs-importer`` 15.4.0 on Node 20 (``tests/js_ipfs/vectors.mjs``,
its packages installed with ``--ignore-scripts``), whose defaults (CIDv1, raw leaves, 256 KiB chunks,
balanced layout, 174 links per node) are those of ``ipfs add --cid-version 1 --raw-leaves``.
``test_storage_ipfs.py`` checks the same against the running importer.
"""

from __future__ import annotations

import contextlib
import hashlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from decentralml_core.storage import IntegrityError, NotFound, TooLarge
from decentralml_core.storage.cid import CHUNK, canonical, cid_of, parse, verify
from decentralml_core.storage.unixfs import Child, FileBuilder, decode_node, encode_file_node, file_cid, read_file


def data(n: int) -> bytes:
    """The deterministic content the vectors were made from."""
    return hashlib.shake_128(b"decentralml").digest(n)


VECTORS = {  # size → CID, default parameters
    0: "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku",
    CHUNK: "bafkreicrbkcvnk5hetphy3nyor2fpo332ucf46dndxtpkzmnzkoxddqa5e",
    CHUNK + 1: "bafybeics5qwq2nx6quxqjp7wl7xhjoqjh4f6wl3caqrcq44wnbylovz4gi",
    3 * CHUNK + 1000: "bafybeigvawakh7qtggemhcqzixrxtdqbg5vmitr2t3cestqopu7looowia",
    4 * CHUNK + 7: "bafybeichfhljdjgr5ib4s2yfbtv6bkzuotq2jbnjc4xwfjbjd5sq44bg3u",  # > 1 MiB
}
BIG = (175 * CHUNK + 5, "bafybeicdc7qhqhufncso54pb3a5nlprfr47syedvxuhz5ezifdxdi3slem")  # two levels of nodes
SMALL = {  # (size, chunk size, links per node) → CID: deep trees from small parameters
    (16, 16, 3): "bafkreicvg2bbtptbsof6waz6fnpp2spw345meiqueplh6shsgcqaqmc7ai",
    (48, 16, 3): "bafybeiag6mzuyokuvdmdlrybee3nmzwxq4pzrphgdirqxyawfvofoavnti",
    (49, 16, 3): "bafybeidqm7k23l2yd3gtie7ntltlev2se7l3ellhjwqhsot6yknxo6ogfm",
    (433, 16, 3): "bafybeifmuftgc7ut4uri34gqqwtoq2d26a4qrlrrqx7vh76l6hwnzmswem",
    (1000, 16, 3): "bafybeihsjebi67b634svcewr3mppqfdx6nivb224xobitfbwpaxh2p4hey",
    (1296, 16, 3): "bafybeihmrdj6tb6nodwftkhwmfb2xhpbsgsjprcb23tlfhbr5bojbg2cly",  # a full tree, 4 levels
    (1297, 16, 3): "bafybeigreetpwgukeopfis6nqzyqlxzg3d3r5vwln6wx2url6jpyu22tbi",
    (5000, 16, 3): "bafybeidixtxlfxs3p63ukxp5o47bujchfmbfxp2wsujlz5cvbuv3md3ujq",
    (100000, 1000, 4): "bafybeid3ydlsmbk7qme5jgerhardyex52jjo7qablghkyl24mofhb6qkua",
}


def test_raw_block_cids():
    assert cid_of(b"hello") == "bafkreibm6jg3ux5qumhcn2b3flc3tyu6dmlb4xa7u5bf44yegnrjhc4yeq"
    assert file_cid(b"hello") == cid_of(b"hello")  # a one-chunk file is its raw leaf
    assert cid_of(b"") == "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"


@pytest.mark.parametrize("size", sorted(VECTORS))
def test_file_cids_equal_the_importers(size):
    assert file_cid(data(size)) == VECTORS[size]


def test_a_file_of_two_node_levels():
    size, cid = BIG
    assert file_cid(data(size)) == cid


@pytest.mark.parametrize("params", sorted(SMALL))
def test_deep_trees_equal_the_importers(params):
    size, chunk, links = params
    assert file_cid(data(size), chunk, links) == SMALL[params]


def test_cids_are_parsed_strictly_and_canonically():
    with pytest.raises(IntegrityError, match="does not match"):
        verify(cid_of(b"hello"), b"hellO")
    with pytest.raises(IntegrityError, match="not a CID"):
        verify("../../etc/passwd", b"x")
    with pytest.raises(IntegrityError, match="only raw and dag-pb"):  # dag-cbor: not something we verify
        parse("bafyreigdmqpykrgxyaxtlafqpqhzrb7qy2rh75nldvfd4tucqmqqme5yje")
    v0 = "QmdfTbBqBPQ7VNxZEYEj14VmRuZBkqFbiwReogJgS1zR1n"
    assert canonical(v0) == "bafybeihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
    assert verify("bafkqaaa", b"") == b""  # the identity CID of nothing: the gateway probe
    with pytest.raises(IntegrityError):
        verify("bafkqaaa", b"x")


def test_builder_refuses_a_short_chunk_before_the_last():
    builder = FileBuilder(16, 3)
    builder.leaf(b"x" * 10)
    with pytest.raises(ValueError, match="last chunk"):
        builder.leaf(b"y" * 16)


class Blocks(dict):
    """A dict-backed block source with the store's contract: verified, bounded."""

    async def get(self, cid: str, max_size: int) -> bytes:
        if cid not in self:
            raise NotFound(cid)
        block = self[cid]
        if len(block) > max_size:
            raise TooLarge(cid)
        return verify(cid, block)


def build(content: bytes, chunk: int = 16, links: int = 3) -> tuple[str, Blocks]:
    builder, blocks = FileBuilder(chunk, links), Blocks()
    for start in range(0, len(content), chunk):
        piece = content[start:start + chunk]
        blocks[builder.leaf(piece)] = piece
    root = builder.finish()
    if not content:
        blocks[root] = b""
    blocks.update(builder.take_nodes())
    return root, blocks


async def read_all(blocks: Blocks, root: str, max_size: int = 10**9, size: int | None = None) -> bytes:
    out = bytearray()
    async with contextlib.aclosing(read_file(blocks.get, root, max_size, size)) as chunks:
        async for chunk in chunks:
            out += chunk
    return bytes(out)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=st.binary(max_size=900), chunk=st.integers(1, 40), links=st.integers(2, 6))
async def test_dags_read_back_exactly(content, chunk, links):
    root, blocks = build(content, chunk, links)
    assert await read_all(blocks, root) == content
    assert await read_all(blocks, root, size=len(content)) == content


@settings(max_examples=300, deadline=None)
@given(block=st.binary(max_size=200))
def test_decoding_garbage_only_ever_raises_integrity_error(block):
    try:
        decode_node(block)
    except IntegrityError:
        pass


async def test_hostile_dags_are_refused():
    content = data(500)
    root, blocks = build(content)
    with pytest.raises(IntegrityError, match="expected 499"):
        await read_all(blocks, root, size=499)  # the manifest and the DAG disagree
    with pytest.raises(TooLarge, match="limit"):
        await read_all(blocks, root, max_size=499)

    leaf = blocks.pop(cid_of(content[:16]))
    with pytest.raises(NotFound):
        await read_all(blocks, root)
    blocks[cid_of(content[:16])] = leaf

    # A node whose block sizes claim more than its children hold: refused at the short child.
    liar_children = [Child(cid_of(b"a" * 16), 16, 16), Child(cid_of(b"b" * 16), 16, 20)]
    liar = encode_file_node(liar_children)
    lying = Blocks({cid_of(b"a" * 16): b"a" * 16, cid_of(b"b" * 16): b"b" * 16, cid_of(liar, "dag-pb"): liar})
    with pytest.raises(IntegrityError, match="expected 20"):
        await read_all(lying, cid_of(liar, "dag-pb"))

    # A chain of single-child nodes deeper than any honest file: refused before the bottom.
    deep, tip = Blocks({cid_of(b"x"): b"x"}), Child(cid_of(b"x"), 1, 1)
    for _ in range(40):
        node = encode_file_node([tip])
        deep[cid_of(node, "dag-pb")] = node
        tip = Child(cid_of(node, "dag-pb"), len(node) + tip.tsize, 1)
    with pytest.raises(IntegrityError, match="deeper than"):
        await read_all(deep, tip.cid)


@settings(max_examples=50, deadline=None)
@given(block=st.binary(max_size=300), codec=st.sampled_from(["raw", "dag-pb"]))
def test_the_fast_path_agrees_with_multiformats(block, codec):
    from multiformats import CID, multihash

    expected = str(CID("base32", 1, codec, multihash.wrap(hashlib.sha256(block).digest(), "sha2-256")))
    assert cid_of(block, codec) == expected
    parsed = parse(expected)
    assert parsed.codec == codec and parsed.binary == bytes(CID.decode(expected)) and parse(parsed.binary) == parsed
    assert canonical(str(CID.decode(expected).set(base="base58btc"))) == expected  # other bases: the slow path
