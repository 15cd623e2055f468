"""npm packages for tests, installed once per package.json into a cache (no lockfile: it would record
the registry's address). Used by the @polkadot/api and IPFS tests."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

needs_node = pytest.mark.skipif(not (shutil.which("node") and shutil.which("npm")), reason="needs Node.js and npm")


def installed(source: Path, *scripts: str) -> Path:
    """A directory with ``source/package.json``'s node_modules and the named scripts copied in."""
    manifest = (source / "package.json").read_bytes()
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "decentralml-tests"
    target = cache / f"{source.name}-{hashlib.sha256(manifest).hexdigest()[:16]}"
    if not (target / "node_modules").is_dir():
        staging = target.with_name(target.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        (staging / "package.json").write_bytes(manifest)
        install = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--ignore-scripts", "--no-package-lock"],
                                 cwd=staging, capture_output=True, text=True, timeout=600)
        assert install.returncode == 0, f"npm install failed:\n{install.stderr[-2000:]}"
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    for script in scripts:
        shutil.copy(source / script, target / script)
    return target
