"""The ``decentralml`` command. Subcommands live in :mod:`agents.commands`, one module each.

Only the subcommand being run is imported: the chain client, storage, the sandbox and the validators
cost about a second of imports together, and ``decentralml --help`` or ``task list`` need few of them
(bench/cli_latency.py measures it; figures in docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS: dict[str, tuple[str, str]] = {
    "devnet": ("devnet", "run a local DecentralML chain"),
    "task": ("task", "create, list, show and take tasks"),
    "result": ("result", "send, list and decide results"),
    "account": ("account", "accounts and balances"),
    "storage": ("storage", "publish, fetch and serve task assets"),
    "sandbox": ("sandbox", "run task scripts isolated"),
    "agent": ("agent", "run a role's agent from a YAML file"),
    "status": ("agent", "local agents' work, from their journals"),
    "farm": ("farm", "run and watch many agents from one YAML file"),
    "review": ("review", "results waiting for a person (ManualAccept)"),
    "campaign": ("campaign", "federated training campaigns"),
    "demo": ("demo", "run a demo market on a fresh devnet"),
}
"""Subcommand → (module in agents.commands that registers it, its one-line help)."""
LEVELS = ["debug", "info", "warning", "error"]


class Parser(argparse.ArgumentParser):
    """Usage mistakes in one line naming the full subcommand and where help is, not a usage dump."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: {message} (see `{self.prog} --help`)\n")


def _common() -> argparse.ArgumentParser:
    """Options every subcommand takes too, so they may come before or after its name."""
    common = Parser(add_help=False)
    common.add_argument("--log-level", default=argparse.SUPPRESS, choices=LEVELS, help="log lines at this level and above")
    common.add_argument("--log-json", action="store_true", default=argparse.SUPPRESS,
                        help="one JSON object per log line")
    return common


def chosen(argv: list[str]) -> str | None:
    """The subcommand named in ``argv`` (the first word that is one), if any."""
    for word in argv:
        if word in COMMANDS:
            return word
        if not word.startswith("-") and word not in LEVELS:
            return None  # an unknown command: argparse says so
    return None


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The full parser; with ``only``, that subcommand's module imported and the others' names and help only
    (``only=""``: none imported, for ``--help`` and mistakes)."""
    parser = Parser(prog="decentralml", description="DecentralML agents and local devnet.")
    parser.add_argument("--log-level", default="info", choices=LEVELS, help="log lines at this level and above")
    parser.add_argument("--log-json", action="store_true", help="JSON log lines even on a terminal "
                        "(the default when stderr is not one)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = _common()
    registered: set[str] = set()
    for name, (module, text) in COMMANDS.items():
        if only is None or (only and COMMANDS[only][0] == module):
            if module not in registered:
                importlib.import_module(f"agents.commands.{module}").register(commands, common)
                registered.add(module)
        else:
            commands.add_parser(name, help=text)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(chosen(argv) or "").parse_args(argv)
    from decentralml_core import logs

    logs.configure(args.log_level, json=args.log_json or not sys.stderr.isatty(),
                   lazy=getattr(args.run, "reads_only", False))
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
