"""The real pixel sizes of a task's images, read from the creator's own copy of its assets.

A result declares each image's width and height in its COCO file; a worker can lie about them (claim
640×480 for a 320×240 image and double every box, so the boxes look aligned when drawn against the claim).
The review page and the validators take sizes from the image files instead. OpenCV (already a
dependency) decodes the file: ~1 ms for the example's 320×240 JPEGs, cached by path, mtime and size.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path


@lru_cache(maxsize=4096)
def _decoded_size(path: str, mtime_ns: int, size: int) -> tuple[int, int] | None:
    import cv2  # on first use: OpenCV is ~30 MB of RSS, which a process that never reads an image does not pay

    image = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if image is None:
        return None
    height, width = image.shape[:2]
    return int(width), int(height)


def image_size(path: Path) -> tuple[int, int] | None:
    """(width, height) of an image file, or None when it is missing, a link, or not an image OpenCV reads."""
    try:
        if path.is_symlink() or not path.is_file():
            return None
        stat = path.stat()
    except OSError:
        return None
    return _decoded_size(str(path), stat.st_mtime_ns, stat.st_size)


def asset_image_sizes(assets: Path | None, files: list[str]) -> dict[str, tuple[int, int]]:
    """Sizes of a task's annotation files (by file name) that exist in ``assets/annotation_files``."""
    if assets is None:
        return {}
    sizes = {}
    for name in {Path(f).name for f in files}:
        found = image_size(assets / "annotation_files" / name)
        if found is not None:
            sizes[name] = found
    return sizes
