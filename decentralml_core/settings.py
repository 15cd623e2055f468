"""A library setting a user may configure: its default, what it means and its bounds, in one place.

``SandboxLimits`` and ``StorageConfig`` are plain dataclasses the library uses; the agents' YAML
sections ``sandbox`` and ``storage`` are pydantic models built from their fields (types, defaults,
and this metadata), so a setting is declared once and its documentation page cannot drift from it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def setting(default: T, description: str, **bounds: float) -> T:
    """A dataclass field with a default; ``bounds`` are pydantic's names (``gt``, ``ge``, ``le``)."""
    result: T = dataclasses.field(default=default, metadata={"description": description, **bounds})
    return result


def computed_setting(factory: Callable[[], T], description: str) -> T:
    """A dataclass field whose default is computed when an instance is made (e.g. from the environment)."""
    result: T = dataclasses.field(default_factory=factory, metadata={"description": description})
    return result

