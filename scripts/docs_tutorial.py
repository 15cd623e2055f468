"""Run the commands of a tutorial page (docs/tutorial-data-annotation.md unless ``--page`` names another
of :data:`PAGES`) against a fresh devnet and compare (or rewrite) their outputs, so the tutorial shows
real output and cannot rot.

    python scripts/docs_tutorial.py --check   # exit 1 and show a diff where the page differs
    python scripts/docs_tutorial.py --write   # run everything and put the real outputs in the page
    python scripts/docs_tutorial.py --write --page docs/tutorial-model-engineering.md

The page's convention: a fenced block opened with ```console is run; in it a line starting with
``$ `` is a command, following lines starting with ``> `` continue it (here-documents), and the other
lines up to the next command are what it prints on stdout (log lines go to stderr and are not shown).
Every command must exit 0. Other fenced blocks (```sh, ```yaml, …) are for reading only.

``decentralml`` commands (except ``agent``, which runs for real) go through a small shim to a
process that has imported the CLI and loaded the devnet's runtime already and forks one child per
command, with the command's cwd, environment and output: the same ``agents.cli.main``, without ~2 s of
imports and ~1 s of metadata decoding each (``--slow`` starts ``.venv/bin/decentralml`` every time instead).

The commands run one after another in one bash (so ``cd``, variables and ``&`` jobs carry over) in a
scratch directory holding a link to the repository's ``assets/``, with the repository's
``.venv/bin`` first on PATH, ``$XDG_DATA_HOME`` in the scratch dir (the default storage), and
``COLUMNS=140``. The devnet listens on a free port; ``ws://127.0.0.1:9944`` in a command is
rewritten to it and back in the output. Before comparing, both sides are normalised by
:func:`normalise`: decimal fractions (durations, memory peaks) become ``N.N``, the sandbox report's
``leftover_processes`` count ``N`` (the script's last process may still be exiting when counted), and
runs of spaces or table rules (``─``, ``━``) become one, since their widths follow those numbers.
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from decentralml_core.testing.devnet_process import DevnetProcess  # noqa: E402

PAGE = ROOT / "docs" / "tutorial-data-annotation.md"
PAGES = (PAGE, ROOT / "docs" / "tutorial-model-engineering.md")
"""The pages checked. tutorial-federated-training.md is not: its campaign alone (``decentralml demo
federated``) runs ~80 s, more than the minute a page may add to the test suite."""
COMMAND = "python scripts/docs_tutorial.py --write"
DOC_URL = "ws://127.0.0.1:9944"
COMMAND_TIMEOUT_S = 180
FENCE = re.compile(r"^```console\n(.*?)^```$", re.M | re.S)


@dataclass
class Step:
    command: str
    expected: str
    line: int  # where the command is in the page (1-based)
    output: str | None = field(default=None)


def parse(page: str) -> list[Step]:
    steps: list[Step] = []
    for block in FENCE.finditer(page):
        first_line = page[:block.start(1)].count("\n") + 1
        current: Step | None = None
        for offset, line in enumerate(block.group(1).splitlines()):
            if line.startswith("$ "):
                current = Step(line[2:], "", first_line + offset)
                steps.append(current)
            elif line.startswith("> ") or line == ">":
                current.command += "\n" + line[2:]
            elif current is not None:
                current.expected += line + "\n"
    return steps


def normalise(text: str) -> str:
    """What may differ from run to run, made equal: see the module docstring."""
    text = re.sub(r"\b\d+\.\d+\b", "N.N", text)
    text = re.sub(r"(leftover_processes\W+)\d+", r"\1N", text)  # a process may still be exiting when counted
    text = re.sub(r"([ ─━])\1+", r"\1", text)
    return "\n".join(line.rstrip() for line in text.strip("\n").splitlines())


SHIM = """#!/bin/bash
# docs_tutorial.py's stand-in for .venv/bin/decentralml: the same agents.cli.main, run in a process
# forked from one that imported it already (saves ~2 s of imports per command). Agents run for real.
[ "$1" = agent ] && exec "$DOCS_REAL_CLI" "$@"
exec 3<>"/dev/tcp/127.0.0.1/$DOCS_CLI_PORT" || exit 99
printf '%s\\0' "$$" "$PWD" "$#" "$@" >&3
read -r code <&3
[ "$code" = 111 ] && exec "$DOCS_REAL_CLI" "$@"   # the server could not take our output: run for real
exit "${code:-98}"
"""


FALLBACK = 111  # the shim's cue to run the real command instead


def serve_cli(port_file: Path, node: str | None = None) -> None:
    """Fork one child per shim connection; it takes the shim's cwd, environment, stdout and stderr
    (through /proc), runs ``agents.cli.main(argv)`` and its exit status goes back to the shim. With
    ``node``, its runtime is loaded first, so every child signs with it (the chain client shares a loaded
    runtime within a process: ``decentralml_core.chain.runtime``)."""
    import asyncio
    import importlib
    import socket

    from agents import cli

    cli.build_parser()  # every subcommand's module, and what the commands import when they run (the CLI
    for name in ("decentralml_core.chain.client", "decentralml_core.chain.market", "decentralml_core.tasks",
                 "decentralml_core.work", "decentralml_core.storage", "decentralml_core.sandbox.runner",
                 "agents.validators", "rich.console", "rich.table"):  # itself imports them lazily)
        importlib.import_module(name)
    if node:
        asyncio.run(_load_runtime(node))
    parent = os.getppid()
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(1.0)
    port_file.write_text(str(server.getsockname()[1]))
    while os.getppid() == parent:  # the runner went away (killed): so do we
        try:
            conn, _ = server.accept()
        except TimeoutError:
            continue
        conn.settimeout(None)
        data = b""
        while True:
            fields = data.split(b"\0")
            if len(fields) > 3 and len(fields) > 3 + int(fields[2]):
                break
            chunk = conn.recv(65536)
            if not chunk:
                break
            data += chunk
        fields = [f.decode() for f in data.split(b"\0")]
        pid, cwd, argv = fields[0], fields[1], fields[3:3 + int(fields[2])]
        child = os.fork()
        if child == 0:
            conn.close()
            server.close()
            os._exit(_run_cli(cli, pid, cwd, argv))
        _, status = os.waitpid(child, 0)
        conn.sendall(f"{os.waitstatus_to_exitcode(status)}\n".encode())
        conn.close()


async def _load_runtime(node: str) -> None:
    from decentralml_core.chain.runtime import Runtime

    runtime = await Runtime.load(node)
    await runtime.full()
    await runtime.close()


def _run_cli(cli, pid: str, cwd: str, argv: list[str]) -> int:
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    os.environ.clear()
    os.environ.update(dict(e.decode().split("=", 1) for e in environ if b"=" in e))
    os.chdir(cwd)
    try:
        outputs = [os.open(f"/proc/{pid}/fd/{fd}", os.O_WRONLY | os.O_APPEND) for fd in (1, 2)]
    except OSError:  # e.g. ENXIO: not reopenable this way; the shim then runs the real command
        return FALLBACK
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    for fd, opened in zip((1, 2), outputs, strict=True):
        os.dup2(opened, fd)
    try:
        code = cli.main(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    return code or 0


class Shell:
    """One bash, fed command after command; each one's stdout is read up to a marker with its status."""

    def __init__(self, cwd: Path, env: dict[str, str]) -> None:
        self.marker = f"__docs_{uuid.uuid4().hex}__"
        self.stderr = cwd / ".stderr.log"
        self.proc = subprocess.Popen(["bash", "--noprofile", "--norc"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, cwd=cwd, env=env, text=True, start_new_session=True)

    def run(self, command: str) -> tuple[int, str]:
        self.proc.stdin.write(f"{{ {command}\n}} 2>>{self.stderr}\nprintf '\\n{self.marker} %d\\n' $?\n")
        self.proc.stdin.flush()
        lines = []
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"bash exited during {command!r}")
            if line.startswith(self.marker):
                return int(line.split()[1]), "".join(lines)[:-1]  # the marker's leading newline
            lines.append(line)

    def close(self) -> None:
        """End the bash and anything the page left running in its process group."""
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=30)


def run_page(steps: list[Step], progress=None, fast: bool = True) -> list[str]:
    """Run every step (filling ``step.output``); return the failures (non-zero exits) as messages.

    ``fast``: ``decentralml`` commands other than ``agent`` run in processes forked from one that has
    imported the CLI (see :data:`SHIM`); else each starts ``.venv/bin/decentralml`` afresh."""
    failures = []
    with tempfile.TemporaryDirectory(prefix="decentralml-tutorial-") as scratch, DevnetProcess() as node:
        cwd = Path(scratch)
        (cwd / "assets").symlink_to(ROOT / "assets")
        bin_dirs = [ROOT / ".venv" / "bin"]
        env = {**os.environ, "XDG_DATA_HOME": str(cwd / ".local" / "share"), "COLUMNS": "140",
               "DECENTRALML_URL": node.url}
        server = None
        if fast:
            port_file, shim = cwd / ".cli-port", cwd / ".bin" / "decentralml"
            server = subprocess.Popen([sys.executable, __file__, "--serve-cli", str(port_file), "--node", node.url], cwd=ROOT,
                                      start_new_session=True)
            shim.parent.mkdir()
            shim.write_text(SHIM)
            shim.chmod(0o755)
            bin_dirs.insert(0, shim.parent)
            deadline = time.monotonic() + 60
            while not port_file.exists() or not port_file.read_text():
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("the CLI fork server did not start")
                time.sleep(0.05)
            env.update(DOCS_CLI_PORT=port_file.read_text(), DOCS_REAL_CLI=str(ROOT / ".venv" / "bin" / "decentralml"))
        env["PATH"] = os.pathsep.join([*map(str, bin_dirs), os.environ.get("PATH", "")])
        for name in ("DECENTRALML_KEY", "DECENTRALML_STORE", "DECENTRALML_GATEWAYS", "DECENTRALML_IPFS_API"):
            env.pop(name, None)
        shell = Shell(cwd, env)
        try:
            for step in steps:
                if progress:
                    progress(step)
                status, output = _with_timeout(shell, step.command.replace(DOC_URL, node.url))
                step.output = output.replace(node.url, DOC_URL)
                if status != 0:
                    errors = shell.stderr.read_text()[-2000:] if shell.stderr.exists() else ""
                    failures.append(f"line {step.line}: `{step.command}` exited {status}\n{errors}")
                    break
        finally:
            shell.close()
            if server is not None:
                os.killpg(server.pid, signal.SIGTERM)
                server.wait(timeout=30)
    return failures


def _with_timeout(shell: Shell, command: str) -> tuple[int, str]:
    def expire(*_):
        raise TimeoutError(f"`{command}` took more than {COMMAND_TIMEOUT_S} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(COMMAND_TIMEOUT_S)
    try:
        return shell.run(command)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def differences(steps: list[Step]) -> list[str]:
    out = []
    for step in steps:
        if step.output is None:
            continue
        expected, actual = normalise(step.expected), normalise(step.output)
        if expected != actual:
            diff = "\n".join(difflib.unified_diff(expected.splitlines(), actual.splitlines(), "page", "real",
                                                  lineterm=""))
            out.append(f"line {step.line}: `{step.command.splitlines()[0]}` prints something else:\n{diff}")
    return out


def rewrite(page: str, steps: list[Step]) -> str:
    """The page with each command's output replaced by what it really printed."""
    outputs = iter(steps)

    def block(match: re.Match) -> str:
        lines = []
        for line in match.group(1).splitlines():
            if line.startswith("$ "):
                step = next(outputs)
                lines.append(line)
                continuation = step.command.splitlines()[1:]
                lines += [f"> {c}" if c else ">" for c in continuation]
                if step.output:
                    lines += [out.rstrip() for out in step.output.rstrip("\n").splitlines()]
        return "```console\n" + "\n".join(lines) + "\n```"

    return FENCE.sub(block, page)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true", help="rewrite the page with real outputs")
    mode.add_argument("--check", action="store_true", help="exit 1 if the page differs from what the commands print")
    mode.add_argument("--serve-cli", type=Path, metavar="PORT_FILE", help=argparse.SUPPRESS)
    parser.add_argument("--node", help=argparse.SUPPRESS)  # --serve-cli's: load this node's runtime first
    parser.add_argument("--verbose", action="store_true", help="print each command as it runs")
    parser.add_argument("--slow", action="store_true", help="start every decentralml command as its own process")
    parser.add_argument("--page", type=Path, default=PAGE, help="the page (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.serve_cli:
        serve_cli(args.serve_cli, args.node)
        return 0
    path = args.page.resolve()
    page = path.read_text()
    steps = parse(page)
    clock = [time.monotonic()]

    def progress(step: Step) -> None:
        print(f"[{time.monotonic() - clock[0]:6.1f} s] $ {step.command.splitlines()[0]}", file=sys.stderr)

    progress = progress if args.verbose else None
    failures = run_page(steps, progress, fast=not args.slow)
    if failures:
        print("\n".join(failures), file=sys.stderr)
        return 1
    if args.write:
        path.write_text(rewrite(page, steps))
        print(f"wrote {path.relative_to(ROOT)} ({len(steps)} commands)")
        return 0
    diffs = differences(steps)
    if diffs:
        print("\n\n".join(diffs) + f"\n\n{path.relative_to(ROOT)} is out of date: run `{COMMAND} --page "
              f"{path.relative_to(ROOT)}`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
