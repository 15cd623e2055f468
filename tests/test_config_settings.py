"""The YAML sections ``sandbox`` and ``storage`` are built from the library's settings dataclasses: every
setting is a key with the library's default, meaning and bounds, and a section gives back the library's
object unchanged — no field is declared twice."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from pydantic import ValidationError

from agents.config import SandboxSection, StorageSection
from decentralml_core.sandbox import SandboxLimits
from decentralml_core.storage import StorageConfig


@pytest.mark.parametrize(("section", "source"), [(SandboxSection, SandboxLimits), (StorageSection, StorageConfig)])
def test_every_library_setting_is_a_yaml_key_with_its_meaning(section, source) -> None:
    for f in dataclasses.fields(source):
        key = section.model_fields[f.name]
        assert key.description == f.metadata["description"]
        assert f.metadata["description"]


def test_the_sandbox_section_gives_back_the_library_limits() -> None:
    assert SandboxSection().limits() == SandboxLimits()
    assert SandboxSection(cpu_s=5, tmp_mb=8, share_python=True).limits() == \
        SandboxLimits(cpu_s=5, tmp_mb=8, share_python=True)
    assert set(SandboxSection.model_fields) == {f.name for f in dataclasses.fields(SandboxLimits)} | {
        "allow_unsandboxed"}  # the one agent-only key: whether to run without isolation at all


@pytest.mark.parametrize("bad", [{"cpu_s": 0}, {"timeout_s": -1}, {"min_free_disk_mb": -1}, {"no_such_limit": 1}])
def test_the_library_bounds_are_enforced_on_load(bad: dict) -> None:
    with pytest.raises(ValidationError):
        SandboxSection(**bad)
    SandboxSection(min_free_disk_mb=0)  # ge=0: zero is allowed


def test_the_storage_section_gives_back_the_library_config() -> None:
    assert StorageSection().config() == StorageConfig()
    assert StorageSection(root="blocks", gateways=["http://127.0.0.1:8080"], s3_region="eu-west-1").config() == \
        StorageConfig(root=Path("blocks"), gateways=["http://127.0.0.1:8080"], s3_region="eu-west-1")
