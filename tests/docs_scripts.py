"""The docs generators in scripts/ (not a package), imported by path for the docs tests."""

from __future__ import annotations

import importlib.util
import sys

from devnet_process import ROOT


def load_script(name: str):
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module
