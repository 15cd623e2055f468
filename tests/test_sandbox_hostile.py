"""Every trick a hostile start_task.sh can try, against the real sandbox (bubblewrap, rlimits, cgroup,
disk watchdog): each is contained and reported with a reason, and nothing outside its task dir (the
agent, its secrets, other tasks, the host's processes) is read, written, signalled or left running."""

from __future__ import annotations

import dataclasses
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from decentralml_core.sandbox import SandboxLimits, bubblewrap_works, run_task_script

pytestmark = pytest.mark.skipif(not bubblewrap_works(), reason="bubblewrap cannot create namespaces here")
LIMITS = SandboxLimits(timeout_s=8, max_file_mb=10, max_procs=50, max_output_mb=5, memory_mb=128, disk_mb=40,
                       max_entries=2000, share_python=True)


def task(tmp_path: Path, body: str, name: str = "task") -> Path:
    folder = tmp_path / "work" / name
    folder.mkdir(parents=True)
    (folder / "start_task.sh").write_text(body)
    return folder


def processes_running(arg: str, timeout: float = 10) -> list[int]:
    """Host processes with ``arg`` in their argv, after up to ``timeout`` s for a killed tree to go."""
    deadline = time.monotonic() + timeout
    while True:
        found = []
        for entry in Path("/proc").iterdir():
            try:
                if entry.name.isdigit() and arg.encode() in (entry / "cmdline").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
            except OSError:
                continue
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


async def run(tmp_path: Path, body: str, limits: SandboxLimits = LIMITS):
    folder = task(tmp_path, body)
    report = await run_task_script(folder, limits=limits)
    return folder, report


@pytest.mark.parametrize("body,status,reason", [
    # a memory hog: the memory cgroup kills it, and the report says why
    ("python3 -c 'a = []\nwhile True: a.append(bytearray(8 << 20))'", "killed", "memory limit"),
    # a disk fill made of files each under the per-file limit: the watchdog stops it
    ("i=0; while true; do i=$((i+1)); head -c 4000000 /dev/zero > f$i || exit 9; done", "killed", "disk limit"),
    # an inode fill: empty files by the hundred thousand
    ("mkdir d; cd d; i=0; while true; do i=$((i+1)); : > $i; done", "killed", "disk limit"),
    # a process that stops itself to sit out the clock
    ("kill -STOP $$", "timeout", "timed out"),
    # signals it ignores
    ("trap '' TERM INT HUP; while true; do :; done", "timeout", "timed out"),
    # outputs that are not regular files, or whose names are unsafe
    ("mknod outputs/null c 1 3 || ln -s /dev/null outputs/null", "rejected", "symlink"),
    ("touch \"outputs/$(printf 'a\\nb')\"", "rejected", "unsafe file name"),
    ("mkdir -p outputs/d; ln -s / outputs/d/root", "rejected", "symlink"),
    ("rm -rf outputs; ln -s /etc outputs", "rejected", "outputs"),
])
async def test_resource_and_output_tricks_are_contained(tmp_path, body, status, reason):
    # 8 s lets the memory and disk hogs reach their limits on a loaded machine; a script that sits out the
    # clock shows it at 2 s as well (it waited the 8 s out for nothing)
    limits = dataclasses.replace(LIMITS, timeout_s=2) if status == "timeout" else LIMITS
    folder, report = await run(tmp_path, body, limits)
    assert report.status == status and reason in " ".join(report.errors), report
    assert report.wall_s < 30


async def test_fork_storm_and_cpu_burn_leave_nothing_behind(tmp_path):
    script = f"storm-{os.getpid()}.sh"  # every process of the storm runs `sh <script>`
    folder = task(tmp_path, "")
    (folder / script).write_text("f() { f | f & }; f & while true; do :; done")
    report = await run_task_script(folder, script, SandboxLimits(timeout_s=3, max_procs=40, memory_mb=256))
    assert report.status == "timeout"
    assert processes_running(script) == []


async def test_orphans_daemons_and_escapes_from_the_session_are_killed(tmp_path):
    seconds = f"3{os.getpid() % 1000:03d}"
    marker = f"sleep {seconds}"
    body = (f"nohup {marker} >/dev/null 2>&1 &\n(setsid {marker} &) ; ( ( {marker} & ) & )\n"
            f"sh -c 'trap \"\" HUP TERM; exec {marker}' &\necho done > outputs/x\n")
    _, report = await run(tmp_path, body)
    assert report.status == "ok", report
    assert processes_running(seconds) == []


async def test_secrets_other_tasks_and_the_host_are_out_of_reach(tmp_path, monkeypatch):
    monkeypatch.setenv("DECENTRALML_KEY", "//secret-seed")
    state = tmp_path / "state"
    state.mkdir()
    (state / "key.json").write_text("secret-keyfile")
    other = task(tmp_path, "echo mine", name="other-task")
    (other / "result.json").write_text("secret-other-task")
    body = rf"""
cat {state}/key.json {other}/result.json /task/../other-task/result.json > outputs/read 2>&1
grep -rl secret- /etc /tmp /var /home /root /run /mnt /opt /srv /sys 2>/dev/null > /tmp/grep
find / \( -path /proc -o -path /usr -o -path /task/start_task.sh \) -prune -o \( -name key.json -o -name result.json \) -print >> /tmp/grep 2>/dev/null
mv /tmp/grep outputs/grep
cat /proc/*/environ 2>/dev/null | tr '\0' '\n' > outputs/environ
ls /proc | grep -E '^[0-9]+$' > outputs/pids
cat /proc/1/cmdline | tr '\0' ' ' > outputs/init
ls /sys /home /root /var /run 2>&1 | head -20 > outputs/dirs
ls -a /dev > outputs/dev
echo evil > /proc/sys/kernel/hostname 2>/dev/null  # its own UTS namespace at most
echo x > /usr/evil 2>/dev/null && echo wrote >> outputs/escape
echo x > {state}/journal.sqlite 2>/dev/null && echo wrote >> outputs/escape
unshare -r true 2>/dev/null && echo userns >> outputs/escape
touch outputs/escape
"""
    folder, report = await run(tmp_path, body, dataclasses.replace(LIMITS, share_python=False))
    assert report.status == "ok", report
    out = {p.name: p.read_text() for p in (folder / "outputs").iterdir()}
    assert "secret-" not in out["read"] and out["grep"].strip() == "", out["grep"]
    assert "secret-seed" not in out["environ"] and "DECENTRALML" not in out["environ"]
    assert len(out["pids"].split()) < 10 and str(os.getpid()) not in out["pids"].split()  # its own pid namespace
    assert "bwrap" in out["init"] or "sh" in out["init"]
    assert out["escape"] == ""  # no write to /usr or the agent's state; no new user namespace
    assert socket.gethostname() != "evil"
    assert not (state / "journal.sqlite").exists() and not Path("/usr/evil").exists()
    assert set(out["dev"].split()) <= {".", "..", "console", "core", "fd", "full", "mqueue", "null", "ptmx", "pts",
                                       "random", "shm", "stderr", "stdin", "stdout", "tty", "urandom", "zero"}


async def test_no_signal_reaches_the_agent_or_the_host(tmp_path):
    victim = subprocess.Popen(["sleep", "60"])
    try:
        body = (f"kill -9 {victim.pid} {os.getpid()} 2>/dev/null; kill -9 -1 2>/dev/null; "
                f"kill -TERM {os.getppid()} 2>/dev/null; echo tried > outputs/x")
        folder = task(tmp_path, body)
        report = await run_task_script(folder, limits=LIMITS)
        # kill -9 -1 inside the sandbox kills only the sandbox's own processes, the script included
        assert report.status in ("ok", "killed"), report
        assert victim.poll() is None, "a host process was killed from inside the sandbox"
    finally:
        victim.kill()
        victim.wait()


async def test_no_network_not_even_abstract_unix_sockets_or_loopback(tmp_path):
    name = f"\0decentralml-test-{os.getpid()}"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(name)
    listener.listen()
    tcp = socket.socket()
    tcp.bind(("127.0.0.1", 0))
    tcp.listen()
    try:
        script = f"""
import socket
for family, addr in ((socket.AF_UNIX, {name!r}), (socket.AF_INET, ("127.0.0.1", {tcp.getsockname()[1]})),
                     (socket.AF_INET, ("192.0.2.1", 80))):
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(2)
    try:
        s.connect(addr)
        print("connected", addr)
    except OSError as exc:
        print("refused", exc.errno)
"""
        folder = task(tmp_path, "python3 outputs/../probe.py > outputs/net")
        (folder / "probe.py").write_text(script)
        report = await run_task_script(folder, limits=LIMITS)
        assert report.status == "ok", report
        lines = (folder / "outputs" / "net").read_text().splitlines()
        assert len(lines) == 3 and all(line.startswith("refused") for line in lines), lines
    finally:
        listener.close()
        tcp.close()


async def test_a_symlink_planted_in_the_task_dir_is_not_followed_by_later_steps(tmp_path):
    """A script may leave links in its task dir: the agent's own writes there (task.json on a resumed
    run) must not follow them out."""
    from decentralml_core.work import write_task_parameters

    outside = tmp_path / "agent-secret"
    outside.write_text("keep")
    folder, report = await run(tmp_path, f"ln -s {outside} task.json; echo x > outputs/a")
    assert report.status == "ok"
    write_task_parameters(folder, {"task_id": 1})
    assert outside.read_text() == "keep"
    assert (folder / "task.json").read_text().startswith("{") and not (folder / "task.json").is_symlink()


async def test_the_agents_python_is_shared_read_only(tmp_path):
    python = Path(sys.executable).resolve()
    folder, report = await run(tmp_path, f"echo x >> {python} 2>/dev/null && echo wrote > outputs/w; touch outputs/w")
    assert report.status == "ok" and not (folder / "outputs" / "w").read_text()
