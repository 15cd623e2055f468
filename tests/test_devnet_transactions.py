"""Transactions against a real devnet with unmodified substrate-interface: every validity rule."""

from __future__ import annotations

import pytest
from substrateinterface import Keypair, KeypairType
from substrateinterface.exceptions import SubstrateRequestException

ED = 500


def free(si, who) -> int:
    return si.query("System", "Account", [who.ss58_address]).value["data"]["free"]


def nonce(si, who) -> int:
    return si.query("System", "Account", [who.ss58_address]).value["nonce"]


def remark(si, text: bytes = b"hi"):
    return si.compose_call("System", "remark", {"remark": "0x" + text.hex()})


def rejected(si, xt) -> dict:
    with pytest.raises(SubstrateRequestException) as info:
        si.submit_extrinsic(xt, wait_for_inclusion=True)
    return info.value.args[0]


def test_transfer_moves_balance_and_charges_a_fee(substrate, keys):
    alice, charlie = keys["alice"], keys["charlie"]
    a0, c0 = free(substrate, alice), free(substrate, charlie)
    call = substrate.compose_call("Balances", "transfer_keep_alive", {"dest": charlie.ss58_address, "value": 10**12})
    receipt = substrate.submit_extrinsic(substrate.create_signed_extrinsic(call, keypair=alice),
                                         wait_for_inclusion=True)
    assert receipt.is_success
    fee = receipt.total_fee_amount
    assert fee > 0
    assert free(substrate, charlie) == c0 + 10**12
    assert free(substrate, alice) == a0 - 10**12 - fee
    names = [(e.value["module_id"], e.value["event_id"]) for e in receipt.triggered_events]
    assert names == [("Balances", "Withdraw"), ("Balances", "Transfer"),
                     ("TransactionPayment", "TransactionFeePaid"), ("System", "ExtrinsicSuccess")]


def test_dispatch_error_is_reported_in_extrinsic_failed(substrate, keys):
    poor = Keypair.create_from_mnemonic(Keypair.generate_mnemonic())
    alice = keys["alice"]
    fund = substrate.compose_call("Balances", "transfer_keep_alive", {"dest": poor.ss58_address, "value": 10**9})
    assert substrate.submit_extrinsic(substrate.create_signed_extrinsic(fund, keypair=alice),
                                      wait_for_inclusion=True).is_success
    too_much = substrate.compose_call("Balances", "transfer_keep_alive",
                                      {"dest": alice.ss58_address, "value": 10**9})
    receipt = substrate.submit_extrinsic(substrate.create_signed_extrinsic(too_much, keypair=poor),
                                         wait_for_inclusion=True)
    assert not receipt.is_success
    assert receipt.error_message is None  # substrate-interface names Module errors only: read the event
    failed = [e.value["attributes"] for e in receipt.triggered_events if e.value["event_id"] == "ExtrinsicFailed"]
    assert failed[0]["dispatch_error"] == {"Token": "FundsUnavailable"}  # as polkadot-v1.0.0's pallet_balances
    assert nonce(substrate, poor) == 1  # a failed call still uses its nonce and pays its fee


def test_bad_signature(substrate, keys):
    bob = keys["bob"]
    call = remark(substrate, b"forged")
    forged = keys["eve"].sign(b"something else entirely")
    xt = substrate.create_signed_extrinsic(call, keypair=bob, signature=forged)
    err = rejected(substrate, xt)
    assert (err["code"], err["message"], err["data"]) == (1010, "Invalid Transaction",
                                                         "Transaction has a bad signature")


def test_wrong_genesis_is_a_bad_signature(substrate, keys, monkeypatch):
    real = substrate.get_block_hash
    monkeypatch.setattr(substrate, "get_block_hash",
                        lambda n=None: "0x" + "12" * 32 if n == 0 else real(n))
    xt = substrate.create_signed_extrinsic(remark(substrate, b"other chain"), keypair=keys["bob"])
    monkeypatch.undo()
    assert rejected(substrate, xt)["data"] == "Transaction has a bad signature"


def test_stale_nonce(substrate, keys):
    bob = keys["bob"]
    current = nonce(substrate, bob)
    assert substrate.submit_extrinsic(substrate.create_signed_extrinsic(remark(substrate, b"a"), keypair=bob),
                                      wait_for_inclusion=True).is_success
    xt = substrate.create_signed_extrinsic(remark(substrate, b"b"), keypair=bob, nonce=current)
    err = rejected(substrate, xt)
    assert (err["code"], err["data"]) == (1010, "Transaction is outdated")


def test_future_nonce_waits_for_the_gap(substrate, keys):
    dave = keys["dave"]
    current = nonce(substrate, dave)
    later = substrate.create_signed_extrinsic(remark(substrate, b"second"), keypair=dave, nonce=current + 1)
    later_receipt = substrate.submit_extrinsic(later, wait_for_inclusion=False)
    assert later_receipt.extrinsic_hash
    assert nonce(substrate, dave) == current  # held in the pool, not applied
    first = substrate.create_signed_extrinsic(remark(substrate, b"first"), keypair=dave, nonce=current)
    assert substrate.submit_extrinsic(first, wait_for_inclusion=True).is_success
    for _ in range(100):
        if nonce(substrate, dave) == current + 2:
            break
    assert nonce(substrate, dave) == current + 2
    assert substrate.rpc_request("system_accountNextIndex", [dave.ss58_address])["result"] == current + 2


def test_cannot_pay_fees(substrate):
    broke = Keypair.create_from_mnemonic(Keypair.generate_mnemonic())
    err = rejected(substrate, substrate.create_signed_extrinsic(remark(substrate), keypair=broke))
    assert (err["code"], err["data"]) == (1010, "Inability to pay some fees (e.g. account balance too low)")


def test_expired_mortal_era_is_refused(substrate, keys):
    ferdie = keys["ferdie"]
    start = substrate.get_block_number(None)
    xt = substrate.create_signed_extrinsic(remark(substrate, b"late"), keypair=ferdie,
                                           era={"period": 4, "current": start})
    for i in range(8):  # move the chain past the era's death
        substrate.submit_extrinsic(substrate.create_signed_extrinsic(remark(substrate, bytes([i])),
                                                                     keypair=keys["charlie"]),
                                   wait_for_inclusion=True)
    assert rejected(substrate, xt)["data"] == "Transaction has a bad signature"


def test_duplicate_and_same_nonce_in_pool(substrate, keys):
    eve = keys["eve"]
    current = nonce(substrate, eve)
    future = substrate.create_signed_extrinsic(remark(substrate, b"x"), keypair=eve, nonce=current + 5)
    substrate.submit_extrinsic(future, wait_for_inclusion=False)
    with pytest.raises(SubstrateRequestException) as info:
        substrate.submit_extrinsic(future, wait_for_inclusion=False)
    assert info.value.args[0]["code"] == 1013
    rival = substrate.create_signed_extrinsic(remark(substrate, b"y"), keypair=eve, nonce=current + 5)
    with pytest.raises(SubstrateRequestException) as info:
        substrate.submit_extrinsic(rival, wait_for_inclusion=False)
    assert info.value.args[0]["code"] == 1014


def test_malformed_extrinsic_bytes(substrate):
    for raw in ("0x", "0x00", "0x1084ff", "0x" + "ff" * 40):
        with pytest.raises(SubstrateRequestException) as info:
            substrate.rpc_request("author_submitExtrinsic", [raw])
        assert info.value.args[0]["code"] == 1001, raw


def test_ed25519_signer(substrate, keys):
    ed = Keypair.create_from_mnemonic(Keypair.generate_mnemonic(), crypto_type=KeypairType.ED25519)
    fund = substrate.compose_call("Balances", "transfer_keep_alive", {"dest": ed.ss58_address, "value": 10**12})
    assert substrate.submit_extrinsic(substrate.create_signed_extrinsic(fund, keypair=keys["alice"]),
                                      wait_for_inclusion=True).is_success
    receipt = substrate.submit_extrinsic(substrate.create_signed_extrinsic(remark(substrate), keypair=ed),
                                         wait_for_inclusion=True)
    assert receipt.is_success


def test_sudo_is_alice_only(substrate, keys):
    target = Keypair.create_from_mnemonic(Keypair.generate_mnemonic())
    inner = substrate.compose_call("Balances", "force_set_balance", {"who": target.ss58_address, "new_free": 10**6})
    sudo = substrate.compose_call("Sudo", "sudo", {"call": inner})
    receipt = substrate.submit_extrinsic(substrate.create_signed_extrinsic(sudo, keypair=keys["alice"]),
                                         wait_for_inclusion=True)
    assert receipt.is_success
    assert free(substrate, target) == 10**6
    receipt = substrate.submit_extrinsic(substrate.create_signed_extrinsic(sudo, keypair=keys["bob"]),
                                         wait_for_inclusion=True)
    assert not receipt.is_success and receipt.error_message["name"] == "RequireSudo"
    direct = substrate.submit_extrinsic(substrate.create_signed_extrinsic(inner, keypair=keys["bob"]),
                                        wait_for_inclusion=True)
    assert not direct.is_success and direct.error_message["name"] == "BadOrigin"


def test_remark_with_event_and_query_map(substrate, keys):
    call = substrate.compose_call("System", "remark_with_event", {"remark": "0x" + b"verdict".hex()})
    receipt = substrate.submit_extrinsic(substrate.create_signed_extrinsic(call, keypair=keys["alice"]),
                                         wait_for_inclusion=True)
    assert any(e.value["event_id"] == "Remarked" for e in receipt.triggered_events)
    accounts = {k.value: v.value for k, v in substrate.query_map("System", "Account", page_size=5)}
    assert keys["alice"].ss58_address in accounts and len(accounts) >= 12
