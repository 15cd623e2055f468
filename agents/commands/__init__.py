"""``decentralml`` subcommands: each module here has ``register(subparsers)`` adding its parser,
with ``set_defaults(run=...)`` naming the function that takes the parsed arguments and returns
the exit status."""
