"""A real Substrate runtime on loopback, for tests: chopsticks running Rococo Asset Hub's wasm.

chopsticks (npm) executes a runtime's wasm with a real executor and serves the usual JSON-RPC, fully
offline: signatures, nonces, fees, dispatch, events and metadata are the runtime's own (statemine
runtime, spec 900, metadata V14, 30+ pallets); blocks are built as transactions arrive (a batch per block), instantly final.
It has no DecentralML pallet, so it checks what every Substrate chain has — System, Balances, signing,
the pool's refusals, events, reconnects — and the upstream-compat paths that use only those.

The packages (chopsticks and the chain spec's package) install once into the test cache with
``--ignore-scripts`` (no native sqlite build: 20-35 s, ~250 MB); the node starts in ~4 s.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

from devnet_process import free_port
from node_packages import cache_locked, installed
from substrateinterface import Keypair

PACKAGES = Path(__file__).parent / "chopsticks"
SPEC_MODULE = "@substrate/connect-known-chains/rococo_v2_2_asset_hub"
SPEC_FILE = "rococo-asset-hub-raw.json"
ENDOWMENT = 10**18
"""Each dev account's free balance at start (a string in the config: above 2**53)."""
SS58 = 42
"""The spec names no ``ss58Format``: substrate-interface needs it given."""
STARTUP_S = 60.0
LISTENING = re.compile(r"RPC listening on .*?ws://[^:\s]+:(\d+)")
DEV_ACCOUNTS = ("Alice", "Bob", "Charlie", "Dave", "Eve", "Ferdie")


def packages() -> Path:
    """The installed packages with the chain spec written next to them (both cached)."""
    target = installed(PACKAGES)
    with cache_locked():
        if not (target / SPEC_FILE).is_file():
            _write_spec(target)
    return target


def _write_spec(target: Path) -> None:
    """The chain spec the spec package exports, as a file chopsticks reads."""
    script = (f"import({json.dumps(SPEC_MODULE)}).then(m => require('fs').writeFileSync("
              f"{json.dumps(SPEC_FILE + '.partial')}, m.chainSpec))")
    run = subprocess.run(["node", "-e", script], cwd=target, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, f"cannot extract the chain spec:\n{run.stderr[-2000:]}"
    (target / (SPEC_FILE + ".partial")).rename(target / SPEC_FILE)


class Chopsticks:
    """``with Chopsticks(workdir) as node: node.url`` — a fresh real-runtime node, dev accounts endowed."""

    def __init__(self, workdir: Path, accounts: tuple[str, ...] = DEV_ACCOUNTS) -> None:
        self.workdir, self.accounts = workdir, accounts
        self.log_path = workdir / "chopsticks.log"
        self.proc: subprocess.Popen | None = None
        self.url = ""

    def __enter__(self) -> Chopsticks:
        home = packages()
        self.workdir.mkdir(parents=True, exist_ok=True)
        endowed = [[[Keypair.create_from_uri(f"//{name}").ss58_address],
                    {"providers": 1, "data": {"free": str(ENDOWMENT)}}] for name in self.accounts]
        config = {"genesis": str(home / SPEC_FILE), "host": "127.0.0.1", "port": free_port(),
                  "build-block-mode": "Batch", "import-storage": {"System": {"Account": endowed}}}
        (self.workdir / "chopsticks.yml").write_text(json.dumps(config))  # JSON is YAML
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                ["node", str(home / "node_modules/@acala-network/chopsticks/chopsticks.cjs"),
                 f"--config={self.workdir / 'chopsticks.yml'}"],
                cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + STARTUP_S
        while time.monotonic() < deadline:
            # a taken port makes chopsticks listen on the next one: the log line says which
            found = LISTENING.search(self.log_path.read_text(errors="replace"))
            if found:
                self.url = f"ws://127.0.0.1:{found.group(1)}"
                return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"chopsticks did not start in {STARTUP_S:.0f} s:\n{self.log_tail()}")

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""
