"""Signing keys from what an operator has: a dev URI (``//Alice``), a mnemonic, or an encrypted
keyfile (the polkadot.js JSON keystore). Secrets are read here and never appear in a repr or a log.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from substrateinterface import Keypair

SS58_FORMAT = 42
DEV_ACCOUNTS = ("Alice", "Bob", "Charlie", "Dave", "Eve", "Ferdie")
"""The well-known development accounts (``//Alice`` …), endowed on a devnet's genesis."""


class KeyLoadError(ValueError):
    """A key could not be loaded; the message never contains the secret."""


def load_keypair(secret: str | None = None, *, keyfile: str | Path | None = None, password: str | None = None,
                 ss58_format: int = SS58_FORMAT) -> Keypair:
    """One keypair from exactly one source.

    ``secret`` is a URI (``//Alice``, ``<mnemonic>//hard/soft``) or a bare mnemonic; ``keyfile`` is
    a polkadot.js JSON keystore, decrypted with ``password`` (or ``$DECENTRALML_KEY_PASSWORD``).
    """
    from substrateinterface import Keypair  # here: the command line imports this module for DEV_ACCOUNTS alone

    if (secret is None) == (keyfile is None):
        raise KeyLoadError("give exactly one of a secret (URI or mnemonic) and a keyfile")
    if keyfile is not None:
        password = password if password is not None else os.environ.get("DECENTRALML_KEY_PASSWORD")
        if password is None:
            raise KeyLoadError(f"keyfile {keyfile} needs a password (--password-env or $DECENTRALML_KEY_PASSWORD)")
        try:
            data = json.loads(Path(keyfile).read_text())
            return Keypair.create_from_encrypted_json(data, password, ss58_format=ss58_format)
        except OSError as exc:
            raise KeyLoadError(f"cannot read keyfile {keyfile}: {exc.strerror}") from None
        except Exception:  # wrong password, corrupt file: the library's message may echo input
            raise KeyLoadError(f"cannot decrypt keyfile {keyfile}: wrong password or not a keystore file") from None
    assert secret is not None  # exactly one of the two was given, and it was not the keyfile
    try:
        if secret.startswith("//") or "//" in secret or "/" in secret:
            return Keypair.create_from_uri(secret, ss58_format=ss58_format)
        return Keypair.create_from_mnemonic(secret, ss58_format=ss58_format)
    except Exception:
        raise KeyLoadError("not a valid key URI or mnemonic") from None

