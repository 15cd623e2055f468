"""Keys from a URI, a mnemonic or an encrypted keystore; errors never echo a secret."""

from __future__ import annotations

import json

import pytest
from substrateinterface import Keypair

from decentralml_core.keys import KeyLoadError, load_keypair

ALICE = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"


def test_uri_mnemonic_and_keystore(tmp_path, monkeypatch):
    assert load_keypair("//Alice").ss58_address == ALICE
    mnemonic = Keypair.generate_mnemonic()
    key = load_keypair(mnemonic)
    assert key.ss58_address == Keypair.create_from_mnemonic(mnemonic).ss58_address
    assert load_keypair(mnemonic + "//farm/1").ss58_address != key.ss58_address
    keyfile = tmp_path / "annotator.json"
    keyfile.write_text(json.dumps(key.export_to_encrypted_json("s3cret-pass", name="annotator")))
    assert load_keypair(keyfile=keyfile, password="s3cret-pass").public_key == key.public_key
    monkeypatch.setenv("DECENTRALML_KEY_PASSWORD", "s3cret-pass")
    assert load_keypair(keyfile=keyfile).public_key == key.public_key


def test_errors_name_the_problem_not_the_secret(tmp_path, monkeypatch):
    monkeypatch.delenv("DECENTRALML_KEY_PASSWORD", raising=False)
    with pytest.raises(KeyLoadError) as info:
        load_keypair("seven words that are not a real mnemonic phrase")
    assert "mnemonic" in str(info.value) and "seven" not in str(info.value)
    keyfile = tmp_path / "k.json"
    keyfile.write_text(json.dumps(load_keypair("//Bob").export_to_encrypted_json("right", name="k")))
    with pytest.raises(KeyLoadError, match="needs a password"):
        load_keypair(keyfile=keyfile)
    with pytest.raises(KeyLoadError) as info:
        load_keypair(keyfile=keyfile, password="wrong-guess")
    assert "wrong password" in str(info.value) and "wrong-guess" not in str(info.value)
    with pytest.raises(KeyLoadError, match="exactly one"):
        load_keypair("//Alice", keyfile=keyfile)
    with pytest.raises(KeyLoadError, match="cannot read"):
        load_keypair(keyfile=tmp_path / "missing.json", password="x")


def test_the_devnets_dev_public_keys_are_the_dev_uris_keys():
    """The devnet endows these without deriving them (keys.DEV_PUBLIC_KEYS): each is ``//Name``'s and
    ``//Name//stash``'s key as substrate-interface derives it, for every dev account."""
    from decentralml_core.keys import DEV_ACCOUNTS, DEV_PUBLIC_KEYS

    assert tuple(DEV_PUBLIC_KEYS) == DEV_ACCOUNTS
    for name, (account, stash) in DEV_PUBLIC_KEYS.items():
        assert Keypair.create_from_uri(f"//{name}").public_key.hex() == account
        assert Keypair.create_from_uri(f"//{name}//stash").public_key.hex() == stash
