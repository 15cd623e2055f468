"""The ``decentralml`` command as an operator meets it: help, argument errors, start and stop."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from devnet_process import free_port
from substrateinterface import SubstrateInterface

CLI = str(Path(sys.executable).parent / "decentralml")


def run(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=timeout)


def test_help_names_the_devnet_options():
    out = run("devnet", "--help")
    assert out.returncode == 0
    for option in ("--port", "--block-time", "--db", "--tmp", "--pallet"):
        assert option in out.stdout


def test_bad_arguments_exit_2_with_a_reason(tmp_path):
    out = run("devnet", "--block-time", "-1")
    assert out.returncode == 2 and "instant seal" in out.stderr
    out = run("devnet", "--db", str(tmp_path / "c.sqlite"), "--tmp")
    assert out.returncode == 2 and "not allowed with" in out.stderr
    out = run("devnet", "--pallet", "mine")
    assert out.returncode == 2 and "invalid choice" in out.stderr


def test_taken_port_is_a_one_line_error():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        out = run("devnet", "--port", str(port), "--tmp")
    assert out.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in out.stderr
    assert "Traceback" not in out.stderr


def test_serves_until_sigterm_then_exits_cleanly(tmp_path):
    port = free_port()
    proc = subprocess.Popen([CLI, "--log-json", "devnet", "--port", str(port), "--db", str(tmp_path / "c.sqlite")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None, "devnet did not start"
                time.sleep(0.05)
        si = SubstrateInterface(url=f"ws://127.0.0.1:{port}")
        assert si.chain == "Development" and si.properties["ss58Format"] == 42
        si.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0
    assert '"event": "devnet_ready"' in err and '"event": "devnet_stopped"' in err
