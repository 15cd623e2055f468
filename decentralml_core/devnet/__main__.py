"""``python -m decentralml_core.devnet`` is ``decentralml devnet`` (handy where the CLI is not installed)."""

import sys

from .cli import main

sys.exit(main())
