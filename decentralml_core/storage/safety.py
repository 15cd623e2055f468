"""Names and files that cannot escape a work dir.

Names come from manifests and the chain, so they are hostile until checked: absolute paths, ``..``,
NUL and other control characters, backslashes, drive letters and empty parts are refused. Files are
created fresh (``O_EXCL``) under a directory opened once, one component at a time with
``O_NOFOLLOW``, so no symlink is ever followed or replaced; folders being published may not contain
links or devices, and files are opened for reading without following links either.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from .errors import TooLarge, UnsafeName

MAX_NAME = 512
NOFOLLOW = os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


def safe_name(name: str) -> str:
    """A relative POSIX path with only ordinary parts, or UnsafeName."""
    if not isinstance(name, str) or not name or len(name.encode("utf-8", "surrogatepass")) > MAX_NAME:
        raise UnsafeName(f"bad file name {name!r:.80}")
    if (any(ord(c) < 0x20 or ord(c) == 0x7F for c in name) or "\\" in name or name.startswith("/")
            or (len(name) > 1 and name[1] == ":")):
        raise UnsafeName(f"unsafe file name {name!r:.80}")
    parts = name.split("/")
    if any(p in ("", ".", "..") or len(p.encode("utf-8", "surrogatepass")) > 255 for p in parts):
        raise UnsafeName(f"unsafe file name {name!r:.80}")
    return str(PurePosixPath(*parts))


def target(root: Path, name: str) -> Path:
    """Where ``name`` goes under ``root``; refused if it would resolve outside it."""
    path = root.joinpath(*safe_name(name).split("/"))
    root_real = os.path.realpath(root)
    if os.path.commonpath([root_real, os.path.realpath(path)]) != root_real:
        raise UnsafeName(f"{name!r} resolves outside {root}")
    return path


def _open_dir(name: str, dir_fd: int | None, create: bool) -> int:
    """Open directory ``name`` (relative to ``dir_fd``) without following a link; made if missing."""
    if create:
        with contextlib.suppress(FileExistsError):
            os.mkdir(name, 0o755, dir_fd=dir_fd)
    try:
        return os.open(name, os.O_RDONLY | os.O_DIRECTORY | NOFOLLOW, dir_fd=dir_fd)
    except FileNotFoundError:
        raise
    except OSError as exc:  # ELOOP or ENOTDIR: a link or a file where a directory should be
        raise UnsafeName(f"{name!r} is not a plain directory ({exc.strerror})") from None


@contextlib.contextmanager
def create_new(root: Path, name: str) -> Iterator[BinaryIO]:
    """A new file ``name`` under ``root``, opened for writing; nothing existing is followed or replaced."""
    *dirs, leaf = safe_name(name).split("/")
    fd = _open_dir(str(root), None, create=False)
    try:
        for part in dirs:
            parent, fd = fd, -1
            try:
                fd = _open_dir(part, parent, create=True)
            finally:
                os.close(parent)
        try:
            out = os.open(leaf, os.O_WRONLY | os.O_CREAT | os.O_EXCL | NOFOLLOW, 0o644, dir_fd=fd)
        except FileExistsError:
            raise UnsafeName(f"{name!r} exists already (listed twice, or a link)") from None
    finally:
        if fd >= 0:
            os.close(fd)
    with os.fdopen(out, "wb") as f:
        yield f


def write_new(root: Path, name: str, chunks: Iterable[bytes]) -> int:
    """Create ``root/name`` holding ``chunks``; returns the bytes written."""
    written = 0
    with create_new(root, name) as out:
        for chunk in chunks:
            out.write(chunk)
            written += len(chunk)
    return written


@contextlib.contextmanager
def open_regular(path: Path, size: int | None = None) -> Iterator[BinaryIO]:
    """``path`` opened for reading if it is (still) a regular file of ``size`` bytes; links are refused."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | NOFOLLOW)
    except OSError as exc:
        if os.path.islink(path):
            raise UnsafeName(f"{path} is a symlink: links are not published") from None
        raise exc
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or (size is not None and info.st_size != size):
        os.close(fd)
        raise UnsafeName(f"{path} changed while being published (now not a regular file of {size} bytes)")
    with os.fdopen(fd, "rb") as f:
        yield f


def walk_folder(folder: Path, max_files: int, max_total: int) -> list[tuple[str, Path, int]]:
    """(relative name, path, size) of each regular file, sorted; links, devices and fifos refused."""
    folder = Path(folder)
    if folder.is_symlink() or not folder.is_dir():
        raise UnsafeName(f"{folder} is not a folder")
    found, total = [], 0
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            info = os.lstat(path)
            rel = path.relative_to(folder).as_posix()
            if stat.S_ISLNK(info.st_mode):
                raise UnsafeName(f"{rel} is a symlink: links are not published")
            if stat.S_ISDIR(info.st_mode):
                continue
            if not stat.S_ISREG(info.st_mode):
                raise UnsafeName(f"{rel} is not a regular file (devices, fifos and sockets are not published)")
            total += info.st_size
            found.append((safe_name(rel), path, info.st_size))
            if len(found) > max_files:
                raise TooLarge(f"{folder} has more than {max_files} files (limit max_files)")
            if total > max_total:
                raise TooLarge(f"{folder} holds more than {max_total} bytes (limit max_total)")
    return sorted(found)
