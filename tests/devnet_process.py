"""Tests start devnets through the library's launcher (kept importable under this short name)."""

from decentralml_core.testing.devnet_process import ROOT, DevnetProcess, free_port

__all__ = ["ROOT", "DevnetProcess", "free_port"]
