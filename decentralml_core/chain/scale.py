"""scalecodec type registries that decode with themselves only, so several can live in one process.

scalecodec attaches a registry to a decoder *class* (``cls.runtime_config = self`` on every lookup) and an
object made by ``create_scale_object`` reads it from its class. The classes are global: a registry in one
thread steals the attribute of a class another thread's objects are decoding with, and those objects then
look their members up in the wrong registry. If that registry is being reloaded at that moment (its types
emptied for ~1 ms), the lookup fails: CI saw ``Decoder class for "Compact<u32>" not found`` while four
in-process agents loaded their runtimes at once; upstream's reports (py-polkadot-sdk #246, #336, #369) say
the same happens with one substrate-interface per thread. A farm engine runs one client per worker, so
this is a production race, not only a test one.

:func:`scale_config` gives every object it makes its own registry explicitly, so lookups no longer go
through the shared class (``tests/test_chain_scale.py`` counts them: 20 lookups on another thread's
registry in two decodes of our metadata before, 0 after).
"""

from __future__ import annotations

from functools import cache
from typing import Any


@cache
def _own_config_class() -> type:
    from scalecodec.base import RuntimeConfigurationObject, ScaleBytes

    class OwnRuntimeConfiguration(RuntimeConfigurationObject):  # type: ignore[misc]  # scalecodec has no types
        """A registry whose objects carry it (as ``runtime_config=``) instead of reading their class's."""

        def create_scale_object(self, type_string: str, data: ScaleBytes | None = None, **kwargs: Any) -> Any:
            kwargs.setdefault("runtime_config", self)
            return super().create_scale_object(type_string, data, **kwargs)

    return OwnRuntimeConfiguration


def scale_config(**kwargs: Any) -> Any:
    """A scalecodec ``RuntimeConfigurationObject`` (same arguments) safe beside others in other threads."""
    return _own_config_class()(**kwargs)
