"""The generated docs match the code they describe: a stale page fails here with the command to fix it."""

from __future__ import annotations

import subprocess
import sys

import pytest
from devnet_process import ROOT
from docs_scripts import load_script


@pytest.fixture(scope="module")
def gen_config_docs():
    return load_script("gen_config_docs")


def test_configuration_reference_is_generated_from_the_config_models():
    out = subprocess.run([sys.executable, "scripts/gen_config_docs.py", "--check"], cwd=ROOT, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr


def test_a_stale_reference_names_the_command_that_regenerates_it(gen_config_docs, tmp_path, monkeypatch, capsys):
    stale = tmp_path / "configuration.md"
    stale.write_text(gen_config_docs.render().replace("`policy.min_pay`", "`policy.minimum_pay`"))
    monkeypatch.setattr(gen_config_docs, "PAGE", stale)
    monkeypatch.setattr(gen_config_docs, "ROOT", tmp_path)
    assert gen_config_docs.main(["--check"]) == 1
    assert "run `python scripts/gen_config_docs.py --write`" in capsys.readouterr().err


def test_every_config_model_is_documented_and_every_key_described(gen_config_docs):
    from agents.config import AgentConfig

    models = gen_config_docs.config_models()
    assert AgentConfig in gen_config_docs.roots(models)
    assert gen_config_docs.undocumented(models) == []
    page = gen_config_docs.render()
    for model in models:
        for name in model.model_fields:
            assert f"{name}`" in page, f"{model.__name__}.{name} is not in the reference"
