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
DEV_PUBLIC_KEYS = {
    "Alice": ("d43593c715fdd31c61141abd04a99fd6822c8558854ccde39a5684e7a56da27d",
              "be5ddb1579b72e84524fc29e78609e3caf42e85aa118ebfe0b0ad404b5bdd25f"),
    "Bob": ("8eaf04151687736326c9fea17e25fc5287613693c912909cb226aa4794f26a48",
            "fe65717dad0447d715f660a0a58411de509b42e6efb8375f562f58a554d5860e"),
    "Charlie": ("90b5ab205c6974c9ea841be688864633dc9ca8a357843eeacf2314649965fe22",
                "1e07379407fecc4b89eb7dbd287c2c781cfb1907a96947a3eb18e4f8e7198625"),
    "Dave": ("306721211d5404bd9da88e0204360a1a9ab8b87c66c1bc2fcdd37f3c2222cc20",
             "e860f1b1c7227f7c22602f53f15af80747814dffd839719731ee3bba6edc126c"),
    "Eve": ("e659a7a1628cdd93febc04a4e0646ea20e9f5f0ce097d9a05290d4a9e054df4e",
            "8ac59e11963af19174d0b94d5d78041c233f55d2e19324665bafdfb62925af2d"),
    "Ferdie": ("1cbd2d43530a44705ad088af313e18f80b53ef16b36177cd4b77b846f2a5f07c",
               "101191192fc877c24d725b337120fa3edc63d227bbc92705db1e2cb65f56981a"),
}
"""The sr25519 public keys (hex) of ``//Name`` and ``//Name//stash`` for each dev account: a devnet's genesis
endows them without deriving a key, so the devnet does not import substrate-interface (~0.3 s of CPU of its
~1.4 s start-up, and a test run starts ~50 devnets). tests/test_keys.py derives them again."""


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

