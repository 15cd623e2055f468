"""Whether a process is still there, by its pid (a farm's supervisor, the agent that made a cgroup)."""

from __future__ import annotations

import os


def pid_alive(pid: int) -> bool:
    """Whether a process with ``pid`` exists; one we may not signal (another user's) exists too."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
