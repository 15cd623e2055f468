"""Our compiled SCALE codec against scalecodec, the reference, on the runtime's own types."""

from __future__ import annotations

import pytest
from scalecodec.base import RuntimeConfiguration, ScaleBytes
from scalecodec.type_registry import load_type_registry_preset

from decentralml_core.devnet.codec import Codec, CodecError, compact_bytes, decode_compact
from decentralml_core.devnet.metadata import runtime

ALICE = bytes.fromhex("d43593c715fdd31c61141abd04a99fd6822c8558854ccde39a5684e7a56da27d")


@pytest.fixture(scope="module")
def rt():
    return runtime("full")


@pytest.fixture(scope="module")
def reference(rt):
    """scalecodec configured from the metadata our runtime publishes."""
    rc = RuntimeConfiguration()
    rc.update_type_registry(load_type_registry_preset("legacy"))
    meta = rc.create_scale_object("MetadataVersioned", data=ScaleBytes(rt.metadata_bytes))
    meta.decode()
    rc.add_portable_registry(meta)
    rc.metadata = meta
    return rc


def ref_decode(rc, type_id, data):
    obj = rc.create_scale_object(f"scale_info::{type_id}", data=ScaleBytes(data))
    return obj.decode()


@pytest.mark.parametrize("value", [0, 1, 63, 64, 16383, 16384, 2**30 - 1, 2**30, 2**64, 2**128 - 1])
def test_compact_round_trip(value):
    raw = compact_bytes(value)
    assert decode_compact(raw, 0) == (value, len(raw))
    rc = RuntimeConfiguration()
    rc.update_type_registry(load_type_registry_preset("core"))
    assert bytes(rc.create_scale_object("Compact<u128>").encode(value).data) == raw


def test_account_info_matches_scalecodec(rt, reference):
    value = {"nonce": 7, "consumers": 0, "providers": 1, "sufficients": 0,
             "data": {"free": 10**18, "reserved": 3, "frozen": 0, "flags": 1 << 127}}
    raw = rt.codec.encode(rt.types.account_info, value)
    assert ref_decode(reference, rt.types.account_info, raw) == value
    assert rt.codec.decode(rt.types.account_info, raw) == value


def test_task_info_matches_scalecodec(rt, reference):
    storage, _ = rt.storage_entry("DecentralMLModule", "Tasks")
    value = {
        "status": "Created", "task_type": "DataAnnotators", "creator": ALICE, "pays_amount": 1000,
        "creation_block": 3, "expiration_block": 1000, "max_assignments": 2, "validation_strategy": "AutoAccept",
        "question": b"Find the samples", "model_contributor_script_path": None,
        "model_contributor_script_storage_type": None, "model_contributor_script_storage_credentials": None,
        "annotation_type": "Image", "annotation_media_samples": [b"sample_1.jpg", b"sample_2.jpg"],
        "annotation_files": [b"file_1.jpg"], "annotation_class_labels": b"cat,dog",
        "annotation_class_coordinates": None, "annotation_json": b'{"a": 1}',
        "annotation_files_storage_type": "IPFS", "annotation_files_storage_credentials": None,
        "model_engineer_path": None, "model_engineer_storage_type": None, "model_engineer_storage_credentials": None,
    }
    raw = rt.codec.encode(storage.value, value)
    ref = ref_decode(reference, storage.value, raw)
    assert ref["creator"] == "0x" + ALICE.hex()
    assert ref["annotation_media_samples"] == ["sample_1.jpg", "sample_2.jpg"]
    assert ref["question"] == "Find the samples" and ref["annotation_type"] == "Image"
    assert ref["annotation_files_storage_type"] == "IPFS" and ref["model_engineer_path"] is None
    assert rt.codec.decode(storage.value, raw) == value


def test_event_records_match_scalecodec(rt, reference):
    records = [
        {"phase": {"ApplyExtrinsic": 0}, "event": {"Balances": {"Transfer": {"from": ALICE, "to": ALICE,
                                                                            "amount": 5}}}, "topics": []},
        {"phase": {"ApplyExtrinsic": 1}, "event": {"System": {"ExtrinsicFailed": {
            "dispatch_error": {"Module": {"index": 7, "error": bytes([13, 0, 0, 0])}},
            "dispatch_info": {"weight": {"ref_time": 1, "proof_size": 0}, "class": "Normal", "pays_fee": "Yes"}}}},
         "topics": []},
        {"phase": "Initialization", "event": {"DecentralMLModule": {"TaskInprogress": (4, 9)}}, "topics": []},
        {"phase": "Finalization", "event": {"Sudo": {"Sudid": {"sudo_result": {"Err": "BadOrigin"}}}},
         "topics": [b"\x01" * 32]},
    ]
    raw = rt.codec.encode(rt.event_records, records)
    ref = ref_decode(reference, rt.event_records, raw)
    assert len(ref) == 4
    assert (ref[0]["module_id"], ref[0]["event_id"], ref[0]["attributes"]["amount"]) == ("Balances", "Transfer", 5)
    assert ref[0]["extrinsic_idx"] == 0
    assert ref[1]["attributes"]["dispatch_error"]["Module"]["index"] == 7
    assert ref[2]["attributes"] == (4, 9) or list(ref[2]["attributes"]) == [4, 9]
    assert (ref[3]["phase"], ref[3]["event_id"]) == ("Finalization", "Sudid")
    assert rt.codec.decode(rt.event_records, raw) == records


def test_header_and_era_match_scalecodec(rt, reference):
    header = {"parent_hash": b"\x01" * 32, "number": 70000, "state_root": b"\x02" * 32,
              "extrinsics_root": b"\x03" * 32, "digest": {"logs": []}}
    raw = rt.codec.encode(rt.types.header, header)
    assert ref_decode(reference, rt.types.header, raw)["number"] == 70000
    assert rt.codec.decode(rt.types.header, raw) == header
    assert rt.codec.decode(rt.types.era, b"\x00") == "Immortal"
    assert rt.codec.decode(rt.types.era, b"\x15\x03") == {"Mortal21": 3}


def test_scalecodec_encodings_decode_with_ours(rt, reference):
    addr = reference.create_scale_object(f"scale_info::{rt.types.multi_address}")
    raw = bytes(addr.encode({"Id": "0x" + ALICE.hex()}).data)
    assert rt.codec.decode(rt.types.multi_address, raw) == {"Id": ALICE}
    call = reference.create_scale_object("Call", metadata=reference.metadata)
    raw = bytes(call.encode({"call_module": "DecentralMLModule", "call_function": "assign_task",
                             "call_args": {"task_id": 5}}).data)
    assert rt.codec.decode(rt.runtime_call, raw) == {"DecentralMLModule": {"assign_task": {"task_id": 5}}}


@pytest.mark.parametrize("data", [b"", b"\x01", b"\x08\x00", b"\xff" * 3])
def test_truncated_and_garbage_input_raise_codec_error(rt, data):
    with pytest.raises(CodecError):
        rt.codec.decode(rt.types.account_info, data)


def test_huge_length_prefix_is_refused_before_allocating(rt):
    events = rt.event_records
    with pytest.raises(CodecError):
        rt.codec.decode(events, compact_bytes(2**31) + b"\x00")


def test_unknown_variant_and_bad_values(rt):
    with pytest.raises(CodecError):
        rt.codec.encode(rt.types.era, "Eternal")
    with pytest.raises(CodecError):
        rt.codec.encode(rt.types.u32, 2**32)
    with pytest.raises(CodecError):
        rt.codec.encode(rt.types.account, b"short")
    with pytest.raises(CodecError):
        Codec(rt.registry.portable()).decode(rt.types.bool, b"\x02")
