"""A result's COCO file reduced to what the review page draws (:class:`~agents.review_view.Drawable`),
in a child process when the file is big.

Parsing is the cost: a 100,000-box result is 9 MB of JSON, and ``json.loads`` alone held the agent's
event loop 1.5 s (one C call: the GIL is not released), then grouping the boxes took 1.3 s more. Files up
to IN_PROCESS_BYTES (~40 ms to parse) are read in a thread; bigger ones by ``python -m
agents.review_digest FILE`` under a memory and a time limit, printing the digest (a few hundred boxes).
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import sys
from pathlib import Path

from .review_view import Drawable, drawable

IN_PROCESS_BYTES = 256 * 1024
CHILD_MEMORY = 3 * 1024**3  # address space of the child: a 1 GB result (the storage limit) is refused, not swapped
CHILD_TIMEOUT_S = 60.0


def read_drawable(path: Path) -> Drawable | None:
    return drawable(json.loads(path.read_text()))


async def digest(path: Path) -> Drawable | None:
    """The drawable boxes of ``path``; ValueError (with the child's last line) when it cannot be read."""
    if path.stat().st_size <= IN_PROCESS_BYTES:
        return await asyncio.to_thread(read_drawable, path)
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "agents.review_digest", str(path), env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), CHILD_TIMEOUT_S)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise ValueError(f"reading the result took over {CHILD_TIMEOUT_S:g} s") from None
    if proc.returncode != 0:
        lines = err.decode(errors="replace").strip().splitlines()
        raise ValueError(lines[-1] if lines else f"the reader exited with {proc.returncode}")
    found = json.loads(out)
    return None if found is None else Drawable.from_json(found)


def main(argv: list[str]) -> int:
    resource.setrlimit(resource.RLIMIT_AS, (CHILD_MEMORY, CHILD_MEMORY))
    try:
        found = read_drawable(Path(argv[0]))
    except MemoryError:
        print("MemoryError: the result is too big to draw", file=sys.stderr)
        return 1
    except Exception as exc:  # not COCO: the page says why there are no boxes
        print(f"{type(exc).__name__}: {exc}"[:300], file=sys.stderr)
        return 1
    json.dump(None if found is None else found.to_json(), sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
