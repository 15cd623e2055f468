"""Names and files that cannot escape a work dir.

Names come from manifests and the chain, so they are hostile until checked: absolute paths, ``..``,
NUL, backslashes, drive letters and empty parts are refused. Files are created fresh (``O_EXCL``,
``O_NOFOLLOW``), never through a symlink; folders being published may not contain links or devices.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path, PurePosixPath

from .errors import TooLarge, UnsafeName

MAX_NAME = 512


def safe_name(name: str) -> str:
    """A relative POSIX path with only ordinary parts, or UnsafeName."""
    if not isinstance(name, str) or not name or len(name.encode()) > MAX_NAME:
        raise UnsafeName(f"bad file name {name!r:.80}")
    if "\x00" in name or "\\" in name or name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise UnsafeName(f"unsafe file name {name!r:.80}")
    parts = name.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise UnsafeName(f"unsafe file name {name!r:.80}")
    return str(PurePosixPath(*parts))


def target(root: Path, name: str) -> Path:
    """Where ``name`` goes under ``root``; refused if it would resolve outside it."""
    path = root.joinpath(*safe_name(name).split("/"))
    root_real = os.path.realpath(root)
    if os.path.commonpath([root_real, os.path.realpath(path)]) != root_real:
        raise UnsafeName(f"{name!r} resolves outside {root}")
    return path


def write_new(path: Path, chunks) -> int:
    """Create ``path`` (and its folders) and write the chunks; never follows or replaces anything."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for parent in path.parents:
        if parent.is_symlink():
            raise UnsafeName(f"{parent} is a symlink")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), 0o644)
    written = 0
    with os.fdopen(fd, "wb") as out:
        for chunk in chunks:
            out.write(chunk)
            written += len(chunk)
    return written


def walk_folder(folder: Path, max_files: int, max_total: int) -> list[tuple[str, Path, int]]:
    """(relative name, path, size) of each regular file, sorted; links, devices and fifos refused."""
    folder = Path(folder)
    if folder.is_symlink() or not folder.is_dir():
        raise UnsafeName(f"{folder} is not a folder")
    found, total = [], 0
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            mode = os.lstat(path).st_mode
            rel = path.relative_to(folder).as_posix()
            if stat.S_ISLNK(mode):
                raise UnsafeName(f"{rel} is a symlink: links are not published")
            if stat.S_ISDIR(mode):
                continue
            if not stat.S_ISREG(mode):
                raise UnsafeName(f"{rel} is not a regular file")
            size = os.lstat(path).st_size
            total += size
            found.append((safe_name(rel), path, size))
            if len(found) > max_files:
                raise TooLarge(f"{folder} has more than {max_files} files")
            if total > max_total:
                raise TooLarge(f"{folder} holds more than {max_total} bytes")
    return sorted(found)
