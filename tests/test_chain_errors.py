"""sp_runtime's own DispatchErrors (Token, Arithmetic …) as the chain client reports them: typed, with a
plain message, from a real devnet whose transfers fail as a polkadot-v1.0.0 node's do."""

from __future__ import annotations

import pytest
from substrateinterface import Keypair

from decentralml_core.chain import ChainClient, DispatchFailed
from decentralml_core.chain.errors import RUNTIME_ERRORS, TransactionRejected, runtime_dispatch_error
from decentralml_core.chain.market import Market
from decentralml_core.chain.model import AnnotationType, StorageType, TaskSpec, TaskType, ValidationStrategy


@pytest.mark.parametrize("decoded,pallet,error", [
    ({"Token": "FundsUnavailable"}, "Token", "FundsUnavailable"),
    ({"Token": "BelowMinimum"}, "Token", "BelowMinimum"),
    ({"Arithmetic": "Underflow"}, "Arithmetic", "Underflow"),
    ({"Transactional": "LimitReached"}, "Transactional", "LimitReached"),
    ("BadOrigin", "System", "BadOrigin"),
    ({"CannotLookup": None}, "System", "CannotLookup"),
])
def test_runtime_errors_get_a_name_and_a_plain_message(decoded, pallet, error):
    failed = runtime_dispatch_error(decoded, 7)
    assert (failed.pallet, failed.error, failed.block_number) == (pallet, error, 7)
    assert failed.docs == RUNTIME_ERRORS[(pallet, error)] and str(failed) == f"{pallet}.{error}: {failed.docs}"


@pytest.mark.parametrize("message,data", [
    ("Invalid Transaction", "Transaction is outdated"),  # a node, and the devnet
    ('{"invalid":{"stale":null}}', ""),  # chopsticks: a CI run's creator gave up here instead of resyncing
])
def test_a_stale_nonce_resyncs_however_the_node_words_it(message, data):
    refused = TransactionRejected(1010, message, data)
    assert refused.cause == "Transaction is outdated" and refused.is_nonce_conflict
    assert not refused.needs_new_signature and not refused.cannot_pay_fees


@pytest.mark.parametrize("variant,new_signature,fees", [
    ("badProof", True, False), ("ancientBirthBlock", True, False), ("payment", False, True),
    ("future", False, False), ("exhaustsResources", False, False),
])
def test_chopsticks_refusals_are_classified_as_a_nodes(variant, new_signature, fees):
    refused = TransactionRejected(1010, f'{{"invalid":{{"{variant}":null}}}}')
    assert (refused.needs_new_signature, refused.cannot_pay_fees, refused.is_nonce_conflict) == \
        (new_signature, fees, False)
    assert TransactionRejected(1010, "Invalid Transaction", refused.cause).needs_new_signature == new_signature


def test_an_unknown_variant_is_still_named():
    assert str(runtime_dispatch_error({"Token": "SomethingNew"})) == "Token.SomethingNew"


def spec(pays_amount: int, max_assignments: int) -> TaskSpec:
    return TaskSpec(task_type=TaskType.DATA_ANNOTATORS, question="Find the samples", pays_amount=pays_amount,
                    expiration_block=10_000, max_assignments=max_assignments,
                    validation_strategy=ValidationStrategy.MANUAL_ACCEPT, annotation_type=AnnotationType.IMAGE,
                    annotation_files=["file_1.jpg"], annotation_files_storage_type=StorageType.IPFS)


async def test_an_escrow_beyond_the_balance_fails_with_the_v1_token_error(devnet):
    alice, poor = Keypair.create_from_uri("//Alice"), Keypair.create_from_mnemonic(Keypair.generate_mnemonic())
    async with await ChainClient.connect(devnet.url, inclusion_timeout=30) as client:
        await client.submit(alice, "Balances", "transfer_keep_alive", {"dest": poor.ss58_address, "value": 10**12})
        market = Market(client)
        with pytest.raises(DispatchFailed) as info:  # 2 x 10^12 escrow from 10^12 minus fees
            await market.create_task(poor, spec(10**12, 2))
        assert (info.value.pallet, info.value.error) == ("Token", "FundsUnavailable")
        assert "free balance is below the amount" in str(info.value)
        with pytest.raises(DispatchFailed) as info:  # above the total issuance: checked first
            await market.create_task(poor, spec(10**30, 1))
        assert (info.value.pallet, info.value.error) == ("Arithmetic", "Underflow")
