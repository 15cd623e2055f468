"""Fuzzing (hypothesis) the devnet's edges and the client's reading of chain data.

The devnet is a real process spoken to over a raw WebSocket: random and mutated JSON-RPC frames,
binary frames, truncated and mutated SCALE extrinsics, huge length prefixes, deep nesting. Each bad
input gets a clear error (never "Internal error"), the node keeps serving, and its state is unchanged.
Example counts are bounded so the file stays within a few tens of seconds.
"""

from __future__ import annotations

import json

import pytest
import websocket
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from decentralml_core.chain.model import Task
from decentralml_core.devnet.codec import CodecError, compact_bytes
from decentralml_core.devnet.metadata import runtime
from decentralml_core.storage.errors import StorageError
from decentralml_core.work import assets_of

RT = runtime("full")
TYPE_IDS = sorted(RT.codec._types)  # every type the runtime publishes in its metadata
INTERNAL_ERROR = -32603
SUBSCRIPTIONS = {"chain_subscribeNewHeads", "chain_subscribeNewHead", "chain_subscribeFinalizedHeads",
                 "chain_subscribeAllHeads", "state_subscribeStorage", "state_subscribeRuntimeVersion",
                 "author_submitAndWatchExtrinsic"}
FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck), database=None)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(max_size=40)
    | st.sampled_from(["0x", "0x00", "0x" + "ff" * 32, "0x" + "00" * 70, "latest", "\x00"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12)
huge_lengths = st.builds(lambda n, rest: compact_bytes(n) + rest, st.integers(0, 2**128), st.binary(max_size=40))
scale_bytes = st.binary(max_size=300) | huge_lengths


# -- the codec, in process: every runtime type, random bytes ----------------------------------
@FUZZ
@given(type_id=st.sampled_from(TYPE_IDS), data=scale_bytes)
def test_the_codec_refuses_any_bytes_with_a_codec_error(type_id, data):
    try:
        RT.codec.decode(type_id, data)
    except CodecError:
        pass


def test_a_call_nested_past_the_stack_is_a_codec_error():
    sudo_sudo = bytes([6, 0])  # Sudo.sudo(call): a RuntimeCall inside a RuntimeCall
    with pytest.raises(CodecError, match="nested too deeply"):
        RT.codec.decode(RT.runtime_call, sudo_sudo * 20_000 + bytes([0, 0, 0]))


# -- the devnet over the wire ---------------------------------------------------------------
class Wire:
    def __init__(self, url: str) -> None:
        self.ws = websocket.create_connection(url, timeout=20)
        self.next_id = 0

    def reply(self, want_id=None):
        while True:  # skip subscription notifications
            message = json.loads(self.ws.recv())
            if isinstance(message, list) or "id" in message and (want_id is None or message["id"] == want_id):
                return message

    def ask(self, method: str, params) -> dict:
        self.next_id += 1
        self.ws.send(json.dumps({"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params}))
        return self.reply(self.next_id)


@pytest.fixture(scope="module")
def wire(devnet):
    w = Wire(devnet.url)
    yield w
    w.ws.close()


@pytest.fixture(scope="module")
def chain_before(wire, devnet, substrate, keys):
    """A signed transfer to mutate, and what the chain looked like before any fuzzing."""
    call = substrate.compose_call("Balances", "transfer_keep_alive", {"dest": keys["bob"].ss58_address, "value": 10**12})
    xt = bytes(substrate.create_signed_extrinsic(call, keys["alice"]).data.data)
    state = snapshot(wire, keys)
    yield xt, state
    assert devnet.proc.poll() is None, "the devnet died"
    assert snapshot(wire, keys) == state, "fuzzing changed the chain"


def snapshot(wire: Wire, keys) -> tuple:
    head = wire.ask("chain_getHeader", [])["result"]
    nonce = wire.ask("system_accountNextIndex", [keys["alice"].ss58_address])["result"]
    return head["number"], head["stateRoot"], nonce


def clear_error(reply: dict) -> None:
    assert set(reply) >= {"jsonrpc", "id"} and ("result" in reply) != ("error" in reply), reply
    if "error" in reply:
        error = reply["error"]
        assert isinstance(error["code"], int) and error["code"] != INTERNAL_ERROR, reply
        assert isinstance(error["message"], str) and error["message"], reply


@pytest.fixture(scope="module")
def methods(wire):
    return sorted(set(wire.ask("rpc_methods", [])["result"]["methods"]) - SUBSCRIPTIONS
                  - {"author_submitExtrinsic"})  # a random call that happened to be valid would change state


@FUZZ
@given(data=st.data())
def test_random_requests_get_a_clear_answer(wire, chain_before, methods, data):
    method = data.draw(st.sampled_from(methods) | st.text(max_size=30))
    params = data.draw(st.lists(json_values, max_size=4) | json_values)
    clear_error(wire.ask(method, params))


@pytest.mark.parametrize("address", [None, 5, 1.5, [], {}, True])
def test_an_account_that_is_not_a_string_is_invalid_params(wire, chain_before, address):
    """Found by the random requests: scalecodec's ss58_decode raises AttributeError on a non-string."""
    reply = wire.ask("system_accountNextIndex", [address])
    clear_error(reply)
    assert reply["error"]["code"] == -32602, reply


@FUZZ
@given(frame=st.text(max_size=200) | st.binary(max_size=200)
       | st.integers(1, 200_000).map(lambda depth: "[" * depth + "]" * depth)
       | st.integers(1, 50_000).map(lambda depth: '{"a":' * depth + "1" + "}" * depth))
def test_malformed_frames_get_a_parse_error(wire, chain_before, frame):
    if isinstance(frame, bytes):
        wire.ws.send_binary(frame)
    else:
        wire.ws.send(frame)
    reply = wire.reply()
    replies = reply if isinstance(reply, list) else [reply]
    for r in replies:
        assert r.get("error", {}).get("code") in (-32700, -32600, -32601), (frame[:80], r)


def mutations(xt: bytes):
    position = st.integers(0, len(xt) - 1)
    return st.one_of(
        position.map(lambda i: xt[:i]),                                                      # truncated
        st.tuples(position, st.integers(1, 255)).map(lambda p: xt[:p[0]] + bytes([xt[p[0]] ^ p[1]]) + xt[p[0] + 1:]),
        st.tuples(position, st.binary(min_size=1, max_size=20)).map(lambda p: xt[:p[0]] + p[1] + xt[p[0]:]),
        st.integers(0, 2**128).map(lambda n: compact_bytes(n) + xt[2:]),                      # a lying length
        st.binary(max_size=20).map(lambda tail: xt + tail),                                  # trailing bytes
        st.integers(2, 3000).map(lambda depth: _wrapped_in_sudo(xt, depth)),                 # deep nesting
    )


def _wrapped_in_sudo(xt: bytes, depth: int) -> bytes:
    """The signed transfer's call nested ``depth`` times in Sudo.sudo (the signature no longer matches)."""
    body = xt[2:]  # after the two-byte length prefix of a ~150-byte extrinsic
    call_at = len(body) - 35  # Balances.transfer_keep_alive: 2 index bytes, MultiAddress (33), compact value
    call_at = body.index(bytes([4, 3]), call_at - 20)
    inner = body[:call_at] + bytes([6, 0]) * depth + body[call_at:]
    return compact_bytes(len(inner)) + inner


@FUZZ
@given(data=st.data())
def test_mutated_extrinsics_are_refused_with_a_clear_error(wire, chain_before, data):
    xt, _ = chain_before
    bad = data.draw(mutations(xt))
    if bad == xt:
        return
    method = data.draw(st.sampled_from(["author_submitExtrinsic", "payment_queryInfo", "state_call"]))
    params = ["TaggedTransactionQueue_validate_transaction", "0x00" + bad.hex() + "00" * 32] \
        if method == "state_call" else ["0x" + bad.hex()]
    reply = wire.ask(method, params)
    clear_error(reply)
    if method == "author_submitExtrinsic":
        assert "error" in reply, reply  # never admitted


# -- the client's reading of chain data -------------------------------------------------------
annotation_json = st.one_of(
    st.text(max_size=200),
    json_values.map(json.dumps),
    st.integers(900, 1500).map(lambda d: "[" * d + "]" * d),
    st.fixed_dictionaries({"assets": st.text(max_size=80) | json_values,
                           "script": st.text(max_size=80) | json_values}).map(json.dumps),
)


@FUZZ
@given(text=annotation_json)
def test_a_tasks_annotation_json_is_read_or_refused_never_raised(text):
    task = Task(task_id=1, status="Created", task_type="DataAnnotators", creator="x", pays_amount=1,
                creation_block=1, expiration_block=2, max_assignments=1, validation_strategy="AutoAccept",
                question="q", annotation_json=text)
    try:
        found = assets_of(task)
    except StorageError:
        return  # an unsafe script name: the policy skips the task with this reason
    if found is not None:
        ref, script = found
        assert isinstance(ref, str) and isinstance(script, str) and not script.startswith("/") and ".." not in script


@FUZZ
@given(data=st.data())
def test_the_client_decodes_mutated_task_storage_or_fails_cleanly(substrate, data):
    """A node (malicious or broken) serving garbage for a task: decoding fails with an exception the
    worker catches (it skips the task), or yields a Task whose fields have their declared types."""
    from scalecodec.base import ScaleBytes

    value_type = substrate.get_metadata_storage_function("DecentralMLModule", "Tasks").get_value_type_string()
    good = _a_task_value(substrate, value_type)
    i = data.draw(st.integers(0, len(good) - 1))
    raw = data.draw(st.sampled_from([good[:i], good[:i] + bytes([good[i] ^ 0xFF]) + good[i + 1:],
                                     good[:i] + compact_bytes(data.draw(st.integers(0, 2**64))) + good[i:]]))
    try:
        decoded = substrate.runtime_config.create_scale_object(
            value_type, data=ScaleBytes(raw), metadata=substrate.metadata).decode()
        task = Task.from_chain(1, decoded)
    except Exception:  # noqa: BLE001 - the property is "an Exception, caught by the agent", nothing wider
        return
    assert isinstance(task.pays_amount, int) and isinstance(task.annotation_files, list)
    assert task.question is None or isinstance(task.question, str)


_ENCODED: dict[str, bytes] = {}


def _a_task_value(substrate, value_type: str) -> bytes:
    if value_type not in _ENCODED:
        task = {"creator": "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY", "status": "Created",
                "task_type": "DataAnnotators", "question": "Label the samples", "pays_amount": 10**12,
                "creation_block": 1, "expiration_block": 100, "max_assignments": 3,
                "validation_strategy": "AutoAccept"}
        obj = substrate.runtime_config.create_scale_object(value_type, metadata=substrate.metadata)
        fields = {name: None for name in obj.type_mapping and [f[0] for f in obj.type_mapping]}
        _ENCODED[value_type] = bytes(obj.encode({**fields, **task,
                                                 "annotation_files": [["a.jpg"]], "annotation_json": '{"assets": "x"}'}
                                                ).data)
    return _ENCODED[value_type]
