"""``decentralml account balance [ADDRESS]`` and ``decentralml account transfer TO AMOUNT``."""

from __future__ import annotations

import argparse

from decentralml_core.units import format_units

from ._shared import add_key_options, add_node_options, amount, emit, keypair, runner


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    account = commands.add_parser("account", parents=[common], help="accounts and balances")
    sub = account.add_subparsers(dest="account_command", required=True, metavar="ACTION")
    balance = sub.add_parser("balance", parents=[common], help="free balance of an address (default: your key's)")
    add_node_options(balance)
    add_key_options(balance)
    balance.add_argument("address", nargs="?", help="an SS58 address (default: the signing key's)")
    balance.set_defaults(run=runner(show_balance))

    transfer = sub.add_parser("transfer", parents=[common], help="send funds from your key to an address "
                                                                 "(e.g. to pay an agent's fees)")
    add_node_options(transfer)
    add_key_options(transfer)
    transfer.add_argument("to", metavar="ADDRESS", help="the SS58 address to fund")
    transfer.add_argument("amount", type=amount, metavar="AMOUNT",
                          help="in UNIT (1.5) or planck (1500000000000planck)")
    transfer.set_defaults(run=runner(transfer_funds))


def check_address(address: str) -> str:
    """An SS58 address, or one line saying it is not one (before anything is signed)."""
    from substrateinterface.utils.ss58 import is_valid_ss58_address

    if not is_valid_ss58_address(address):
        raise ValueError(f"{address!r} is not an SS58 address (e.g. 5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty)")
    return address


async def show_balance(args, client) -> None:
    address = check_address(args.address) if args.address else keypair(args).ss58_address
    account = await client.storage("System", "Account", [address])
    emit(args, {"address": address, "free": account["data"]["free"], "free_units": format_units(account["data"]["free"]),
                "nonce": account["nonce"]})


async def fund(client, source, address: str, planck: int) -> int:
    """Transfer ``planck`` to ``address`` (keeping the source alive); returns the block it landed in."""
    receipt = await client.submit(source, "Balances", "transfer_keep_alive", {"dest": address, "value": planck})
    return receipt.block_number


async def transfer_funds(args, client) -> None:
    source, to = keypair(args), check_address(args.to)
    block = await fund(client, source, to, args.amount)
    emit(args, {"from": source.ss58_address, "to": to, "amount": args.amount, "amount_units": format_units(args.amount),
                "block": block})
