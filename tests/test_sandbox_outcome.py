"""The sandbox's decisions without bubblewrap: the bwrap command line a run gets, the signal an exit status
means, and the status and error lines a run's observations become. (tests/test_sandbox.py runs real
scripts under bubblewrap; these check every rule in microseconds, on any machine.)"""

from __future__ import annotations

import dataclasses
import signal
import sys
from pathlib import Path

import pytest

from decentralml_core.sandbox import SandboxLimits
from decentralml_core.sandbox.outcome import Observed, classify, cut_short, signal_of
from decentralml_core.sandbox.runner import DATA, INNER, bwrap_argv

LIMITS = SandboxLimits(max_file_mb=1, memory_mb=64)


def pairs(argv: list[str], flag: str) -> list[tuple[str, str]]:
    """The (source, destination) operands of each ``flag SOURCE DEST`` in a bwrap command line."""
    return [(argv[i + 1], argv[i + 2]) for i, a in enumerate(argv) if a == flag]


def test_bwrap_isolates_everything_and_binds_only_the_task_dir_writable(tmp_path: Path) -> None:
    argv = bwrap_argv(tmp_path, "start_task.sh", SandboxLimits(tmp_mb=16))
    assert argv[0] == "bwrap" and argv[-2:] == ["sh", "start_task.sh"]
    for flag in ("--unshare-all", "--unshare-user", "--die-with-parent", "--new-session", "--clearenv",
                 "--disable-userns"):
        assert flag in argv
    assert argv[argv.index("--cap-drop") + 1] == "ALL"
    assert argv[argv.index("--uid") + 1] == argv[argv.index("--gid") + 1] == "65534"  # nobody
    assert pairs(argv, "--bind") == [(str(tmp_path), INNER)]  # the only writable bind
    assert argv[argv.index("--chdir") + 1] == INNER
    assert argv[argv.index("--size") + 1] == str(16 * 1024 * 1024) and argv[argv.index("--size") + 2] == "--tmpfs"
    assert "--remount-ro" in argv and argv[argv.index("--remount-ro") + 1] == "/"
    assert ("/usr", "/usr") in pairs(argv, "--ro-bind")
    assert all(not src.startswith(str(Path.home())) for src, _ in pairs(argv, "--ro-bind"))
    env = dict(pairs(argv, "--setenv"))
    assert env["HOME"] == INNER and env["PATH"] == "/usr/local/bin:/usr/bin:/bin" and "DECENTRALML_DATA" not in env


def test_bwrap_mounts_private_data_read_only_at_data(tmp_path: Path) -> None:
    data = tmp_path / "private"
    argv = bwrap_argv(tmp_path / "task", "start_task.sh", SandboxLimits(), data_dir=data)
    assert (str(data), DATA) in pairs(argv, "--ro-bind")
    assert (str(data), DATA) not in pairs(argv, "--bind")
    assert dict(pairs(argv, "--setenv"))["DECENTRALML_DATA"] == DATA


def test_bwrap_shares_the_agents_python_only_when_asked(tmp_path: Path) -> None:
    plain = bwrap_argv(tmp_path, "s.sh", SandboxLimits())
    shared = bwrap_argv(tmp_path, "s.sh", SandboxLimits(share_python=True))
    assert dict(pairs(shared, "--setenv"))["PATH"].startswith(f"{sys.prefix}/bin:")
    if not sys.prefix.startswith("/usr"):  # a venv outside /usr is bound read-only, and only when asked
        assert (sys.prefix, sys.prefix) in pairs(shared, "--ro-bind")
        assert (sys.prefix, sys.prefix) not in pairs(plain, "--ro-bind")


@pytest.mark.parametrize(("code", "isolated", "expected"), [
    (-9, False, signal.SIGKILL),           # a signal, as the kernel reports it
    (137, True, signal.SIGKILL),           # bwrap: 128 + the signal's number
    (153, True, signal.SIGXFSZ),
    (137, False, None),                    # outside bwrap, 137 is the script's own exit status
    (0, True, None), (1, True, None), (None, True, None),
    (128 + 99, True, None),                # no such signal
])
def test_signal_decoding(code: int | None, isolated: bool, expected: signal.Signals | None) -> None:
    assert signal_of(code, isolated) == expected


def test_a_clean_exit_is_ok() -> None:
    assert classify("start_task.sh", LIMITS, Observed(0, True)) == ("ok", [])


def test_a_non_zero_exit_fails_naming_the_script() -> None:
    assert classify("start_task.sh", LIMITS, Observed(3, True)) == ("failed", ["start_task.sh exited with 3"])


def test_a_stop_by_the_clock_or_the_watchdog_keeps_its_words() -> None:
    assert classify("s.sh", LIMITS, Observed(137, True, "timeout", "timed out after 5 s")) == \
        ("timeout", ["timed out after 5 s"])
    status, errors = classify("s.sh", LIMITS, Observed(-9, False, "killed", "disk limit: the task dir grew"))
    assert status == "killed" and errors == ["disk limit: the task dir grew"]  # the kill it caused adds nothing


def test_a_file_size_signal_names_the_limit() -> None:
    status, errors = classify("s.sh", LIMITS, Observed(128 + signal.SIGXFSZ, True))
    assert status == "killed"
    assert errors == ["killed by signal SIGXFSZ", "a write passed the file-size limit (1 MB, max_file_mb)"]


def test_the_memory_limit_is_named_first_when_the_cgroup_saw_it() -> None:
    status, errors = classify("s.sh", LIMITS, Observed(137, True, out_of_memory=True))
    assert status == "killed" and errors[0] == "memory limit reached (64 MB, memory_mb)"
    assert classify("s.sh", LIMITS, Observed(0, True, out_of_memory=True)) == ("ok", [])  # it finished anyway


@pytest.mark.parametrize("observed,status", [
    (Observed(137, True, "timeout", "timed out after 3 s", process_limit=True), "timeout"),  # storm outlived the clock
    (Observed(2, True, process_limit=True), "failed"),  # the storm's own shell could not fork: "Cannot fork"
])
def test_a_fork_storm_is_named_whichever_way_it_ended(observed: Observed, status: str) -> None:
    assert classify("s.sh", LIMITS, observed) == (status, [*classify("s.sh", LIMITS, dataclasses.replace(
        observed, process_limit=False))[1], f"process limit reached ({LIMITS.max_procs} processes, max_procs)"])
    assert classify("s.sh", LIMITS, Observed(0, True, process_limit=True)) == ("ok", [])  # it finished anyway


@pytest.mark.parametrize("tail", ["sh: 1: python3: not found", "ModuleNotFoundError: No module named 'numpy'"])
def test_a_missing_python_is_explained_unless_it_was_shared(tail: str) -> None:
    _, errors = classify("s.sh", LIMITS, Observed(127, True, stderr_tail=tail))
    assert "--share-python" in errors[-1]
    _, errors = classify("s.sh", SandboxLimits(share_python=True), Observed(127, True, stderr_tail=tail))
    assert not any("--share-python" in e for e in errors)


def test_an_output_at_the_file_size_limit_is_cut_short() -> None:
    mb = 1024 * 1024
    assert cut_short([("a.json", 10), ("b.bin", mb - 1)], LIMITS) is None
    assert cut_short([("a.json", 10), ("b.bin", mb)], LIMITS) == \
        "outputs/b.bin reached the file-size limit (1 MB, max_file_mb): it was cut short"
