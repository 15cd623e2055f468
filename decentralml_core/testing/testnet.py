"""Test hosts on one machine: network namespaces on a private bridge, for tests and benchmarks.

``with TestNetwork() as net: chain = net.host("chain")`` makes a namespace per host, each linked by a
veth pair to a bridge that lives in a namespace of its own (the machine's own interfaces and routes
are never touched), with addresses ``10.77.0.N/24``. ``host.popen([...])`` runs a process on that
host (``ip netns exec``); ``net.cut(host)`` / ``net.restore(host)`` pull and plug its cable (the
switch-side port goes down). Closing kills every process left in the namespaces and deletes them,
on failure too. Needs root and iproute2.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SUBNET = "10.77.0"


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=30)


def unavailable() -> str | None:
    """Why test hosts cannot be made here, or None."""
    if shutil.which("ip") is None:
        return "iproute2's ip is not installed (scripts/ensure-system-packages.sh installs it)"
    probe = f"dmlprobe{secrets.token_hex(3)}"
    made = _ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"cannot create a network namespace: {made.stderr.strip()} (needs root)"
    _ip("netns", "del", probe, check=False)
    return None


@dataclass
class Host:
    name: str
    ns: str
    address: str
    port: str  # its switch-side veth
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def command(self, cmd: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.ns, *cmd]

    def popen(self, cmd: list[str], log: Path | None = None, env: dict[str, Any] | None = None,
              **kw: Any) -> subprocess.Popen[bytes]:
        """Start ``cmd`` on this host (its output appended to ``log``)."""
        out = open(log, "ab") if log else None  # noqa: SIM115 - the child keeps its own copy
        try:
            proc = subprocess.Popen(self.command(cmd), stdout=out or subprocess.DEVNULL, stderr=subprocess.STDOUT,
                                    env={**os.environ, **(env or {})}, **kw)
        finally:
            if out is not None:
                out.close()
        self.procs.append(proc)
        return proc

    def run(self, cmd: list[str], env: dict[str, Any] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.command(cmd), capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, **(env or {})})

    def wait_listening(self, address: str, port: int, timeout: float = 30, proc: subprocess.Popen[bytes] | None = None) -> None:
        """Until a TCP connection from this host to ``address:port`` succeeds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"{proc.args!r} exited with {proc.returncode} before listening")
            probe = self.run(["bash", "-c", f"exec 3<>/dev/tcp/{address}/{port}"], timeout=10)
            if probe.returncode == 0:
                return
            time.sleep(0.2)
        raise TimeoutError(f"nothing listens on {address}:{port} as seen from {self.name}")


class TestNetwork:
    """A bridge and hosts on it; a context manager that removes everything it made."""

    __test__ = False  # not a pytest test class

    def __init__(self) -> None:
        self.tag = f"dml{secrets.token_hex(3)}"
        self.switch = f"{self.tag}-sw"
        self.hosts: dict[str, Host] = {}

    def __enter__(self) -> TestNetwork:
        try:
            _ip("netns", "add", self.switch)
            _ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
            _ip("-n", self.switch, "link", "set", "br0", "up")
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def host(self, name: str) -> Host:
        """A new host on the bridge, at the next address."""
        number = len(self.hosts) + 1
        host = Host(name, f"{self.tag}-{name}", f"{SUBNET}.{number}", f"p{number}")
        self.hosts[name] = host
        _ip("netns", "add", host.ns)
        _ip("-n", host.ns, "link", "set", "lo", "up")
        _ip("-n", self.switch, "link", "add", host.port, "type", "veth", "peer", "name", "eth0", "netns", host.ns)
        _ip("-n", self.switch, "link", "set", host.port, "master", "br0", "up")
        _ip("-n", host.ns, "addr", "add", f"{host.address}/24", "dev", "eth0")
        _ip("-n", host.ns, "link", "set", "eth0", "up")
        return host

    def cut(self, host: Host) -> None:
        _ip("-n", self.switch, "link", "set", host.port, "down")

    def restore(self, host: Host) -> None:
        _ip("-n", self.switch, "link", "set", host.port, "up")

    def close(self) -> None:
        """SIGTERM to what the hosts run (SIGKILL after 30 s), then delete the namespaces."""
        for host in self.hosts.values():
            for proc in host.procs:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 30
        for host in self.hosts.values():
            for proc in host.procs:
                try:
                    proc.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        for ns in [h.ns for h in self.hosts.values()] + [self.switch]:
            leftovers = _ip("netns", "pids", ns, check=False).stdout.split()
            for pid in leftovers:  # anything a host process left behind
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
            _ip("netns", "del", ns, check=False)
