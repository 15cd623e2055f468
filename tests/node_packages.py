"""npm packages for tests, installed once per package.json (and package-lock.json) into a cache.

Used by the @polkadot/api and IPFS tests. A folder with a ``package-lock.json`` is installed with
``npm ci``, exactly as locked; the lockfile must not name a registry, so write it with
``npm install --package-lock-only --ignore-scripts --omit-lockfile-registry-resolved`` (no
``resolved`` URLs; the integrity hashes stay). A folder without one is resolved afresh from package.json."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

needs_node = pytest.mark.skipif(not (shutil.which("node") and shutil.which("npm")), reason="needs Node.js and npm")


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "decentralml-tests"


@contextlib.contextmanager
def cache_locked():
    """One writer of the test cache at a time: the suite's parallel workers (pytest-xdist) would otherwise
    install the same packages into the same staging folder at once."""
    cache = cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield cache
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def installed(source: Path, *scripts: str) -> Path:
    """A directory with ``source``'s packages in node_modules and the named scripts copied in."""
    with cache_locked() as cache:
        return _installed(cache, source, scripts)


def _installed(cache: Path, source: Path, scripts: tuple[str, ...]) -> Path:
    manifests = {name: (source / name).read_bytes() for name in ("package.json", "package-lock.json")
                 if (source / name).is_file()}
    target = cache / f"{source.name}-{hashlib.sha256(b''.join(manifests.values())).hexdigest()[:16]}"
    if not (target / "node_modules").is_dir():
        staging = target.with_name(target.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        for name, data in manifests.items():
            (staging / name).write_bytes(data)
        npm = ["npm", "ci"] if "package-lock.json" in manifests else ["npm", "install", "--no-package-lock"]
        install = subprocess.run([*npm, "--no-audit", "--no-fund", "--ignore-scripts"],
                                 cwd=staging, capture_output=True, text=True, timeout=600)
        assert install.returncode == 0, f"npm install failed:\n{install.stderr[-2000:]}"
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    for script in scripts:
        shutil.copy(source / script, target / script)
    return target


def registry_hosts(source: Path) -> set[str]:
    """Registry hosts a folder's lockfile names (none allowed: see the module's docstring)."""
    lock = (source / "package-lock.json").read_text()
    hosts = set(re.findall(r"https?://([^/\"]+)", lock))
    found = {h for h in hosts if "npm" in h or "yarn" in h or "registry" in h}
    return found | ({"resolved"} if '"resolved"' in lock else set())


def locked_version(source: Path, package: str) -> str:
    """The version the lockfile pins for a direct dependency (it must equal package.json's)."""
    return json.loads((source / "package-lock.json").read_text())["packages"][f"node_modules/{package}"]["version"]
