"""The generated docs match the code they describe: a stale page fails here with the command to fix it."""

from __future__ import annotations

import re
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


OPERATIONS = ROOT / "docs" / "operations.md"
LOG_CALL = re.compile(r"\blog\.(?:debug|info|warning|error|exception|critical)\(\s*\"([a-z_]+)\"")
METRIC_CALL = re.compile(r"\bmetrics\.(inc|set|observe)\(\s*\"([a-z_]+)\"")


def section(marker: str) -> str:
    """The part of operations.md from ``<!-- marker`` to the next heading."""
    text = OPERATIONS.read_text()
    start = text.index(f"<!-- {marker}")
    end = text.find("\n#", start)
    return text[start:] if end < 0 else text[start:end]


def first_column(table: str) -> set[str]:
    return {name for line in table.splitlines() if line.startswith("| `")
            for name in re.findall(r"`([A-Za-z_]+)`", line.split("|")[1])}


def sources() -> str:
    return "\n".join(p.read_text() for d in ("agents", "decentralml_core") for p in (ROOT / d).rglob("*.py"))


def test_operations_lists_every_log_event_the_code_emits_and_no_other():
    in_code, documented = set(LOG_CALL.findall(sources())), first_column(section("log-events"))
    assert in_code - documented == set(), "log events missing from docs/operations.md (Log events)"
    assert documented - in_code == set(), "docs/operations.md lists log events the code no longer emits"


def test_operations_lists_every_metric_the_agents_export():
    in_code = {f"decentralml_{name}_total" if kind == "inc" else f"decentralml_{name}"  # set: gauge, observe: histogram
               for kind, name in METRIC_CALL.findall(sources())} | {"decentralml_uptime_seconds"}
    documented = first_column(section("metrics"))
    assert in_code == documented


def test_operations_explains_every_pallet_error():
    from decentralml_core.devnet.metadata import DECENTRALML_ADDED_ERRORS, DECENTRALML_UPSTREAM_ERRORS

    documented = first_column(section("pallet-errors"))
    assert set(DECENTRALML_UPSTREAM_ERRORS + DECENTRALML_ADDED_ERRORS) - documented == set()


def test_architecture_names_every_subcommand_and_top_level_package():
    from agents.cli import build_parser

    page = (ROOT / "docs" / "architecture.md").read_text()
    commands = next(a for a in build_parser()._actions if a.dest == "command").choices
    assert [c for c in commands if f"`{c}`" not in page] == []
    packages = [p.name for d in ("agents", "decentralml_core") for p in (ROOT / d).iterdir()
                if p.is_dir() and (p / "__init__.py").exists()]
    assert [p for p in packages if f"{p}/" not in page] == []


def test_the_grafana_dashboard_graphs_only_metrics_the_agents_export():
    import json

    dashboard = json.loads((ROOT / "configs" / "grafana-farm.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    used = {re.sub(r"_(bucket|count|sum)$", "", name) for e in exprs for name in re.findall(r"decentralml_[a-z_]+", e)}
    assert used and used - first_column(section("metrics")) == set()
    assert {"process_resident_memory_bytes", "process_cpu_seconds_total", "process_open_fds"} <= {
        name for e in exprs for name in re.findall(r"process_[a-z_]+", e)}
