"""``decentralml account balance [ADDRESS]``."""

from __future__ import annotations

import argparse

from ._shared import add_key_options, add_node_options, emit, keypair, runner


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    account = commands.add_parser("account", parents=[common], help="accounts and balances")
    sub = account.add_subparsers(dest="account_command", required=True, metavar="ACTION")
    balance = sub.add_parser("balance", parents=[common], help="free balance of an address (default: your key's)")
    add_node_options(balance)
    add_key_options(balance)
    balance.add_argument("address", nargs="?")
    balance.set_defaults(run=runner(show_balance))


async def show_balance(args, client) -> None:
    address = args.address or keypair(args).ss58_address
    account = await client.storage("System", "Account", [address])
    emit(args, {"address": address, "free": account["data"]["free"], "nonce": account["nonce"]})
