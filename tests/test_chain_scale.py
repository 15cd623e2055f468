"""scalecodec registries side by side in one process: each decodes with itself (decentralml_core.chain.scale).

The first test is the race in miniature, without threads: a second registry's lookup steals the class of
an object the first one made. The second is the race as CI met it: several runtimes loading our metadata
at once in threads, counting every lookup a registry serves to a thread other than its own.
"""

from __future__ import annotations

import threading

import pytest
from scalecodec.base import RuntimeConfigurationObject, ScaleBytes
from scalecodec.type_registry import load_type_registry_preset

from decentralml_core.chain.scale import scale_config
from decentralml_core.devnet.metadata import runtime

CORE = load_type_registry_preset("core")


def _loaded(make):
    config = make()
    config.update_type_registry(CORE)
    return config


@pytest.mark.parametrize("make, keeps_its_own", [(RuntimeConfigurationObject, False), (scale_config, True)],
                         ids=["scalecodec", "scale_config"])
def test_an_object_keeps_the_registry_that_made_it(make, keeps_its_own):
    first, second = _loaded(make), _loaded(make)
    made = first.create_scale_object("Bytes")
    second.create_scale_object("Bytes")  # looks the same (global) class up: scalecodec moves it to `second`
    assert (made.runtime_config is first) is keeps_its_own
    assert made.runtime_config is (first if keeps_its_own else second)


def test_runtimes_loading_in_threads_never_look_up_in_each_other(monkeypatch):
    """Three threads each do what substrate-interface's init_runtime does with a registry (load the core
    preset, decode the metadata, add its types, reload); every lookup must be served by the thread's own."""
    raw = runtime().metadata_bytes
    owner: dict[int, int] = {}
    foreign: list[str] = []
    lookup = RuntimeConfigurationObject.get_decoder_class

    def watched(self, type_string):
        if owner.get(id(self), threading.get_ident()) != threading.get_ident():
            foreign.append(str(type_string))
        return lookup(self, type_string)

    monkeypatch.setattr(RuntimeConfigurationObject, "get_decoder_class", watched)
    start = threading.Barrier(3)
    decoded: list[object] = []
    failures: list[BaseException] = []

    def load() -> None:
        try:
            config = scale_config()
            owner[id(config)] = threading.get_ident()
            start.wait(timeout=30)
            config.update_type_registry(CORE)
            metadata = config.create_scale_object("MetadataVersioned", data=ScaleBytes(raw))
            decoded.append(metadata.decode())
            config.add_portable_registry(metadata)
            config.clear_type_registry()
            config.update_type_registry(CORE)
            config.add_portable_registry(metadata)
        except BaseException as exc:  # noqa: BLE001 - reported below, with the others
            failures.append(exc)

    threads = [threading.Thread(target=load) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not failures and len(decoded) == 3
    assert decoded[0] == decoded[1] == decoded[2]
    assert foreign == []
