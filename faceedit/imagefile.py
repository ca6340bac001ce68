"""Opening untrusted image files: regular files only (never blocking on a FIFO), the pixel limit
checked per call before anything is decoded, and no process-wide Pillow setting ever changed.

Everything here raises one-line :class:`InputError` (or :class:`UsageError` for a bad limit).
"""

from __future__ import annotations

import io
import os
import stat
import struct
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from faceedit.errors import InputError, UsageError

MAX_PIXELS_ENV = "FACEEDIT_MAX_PIXELS"
DEFAULT_MAX_PIXELS = 250_000_000  # ~ a 16k x 16k photo; a 250 MP RGB copy is 750 MB of RAM


def max_pixels_limit(max_pixels: int | None = None) -> int:
    """The decompression-bomb guard: the argument, else ``$FACEEDIT_MAX_PIXELS``, else the default."""
    if max_pixels is not None:
        return int(max_pixels)
    raw = os.environ.get(MAX_PIXELS_ENV)
    if not raw:
        return DEFAULT_MAX_PIXELS
    try:
        value = int(float(raw))
    except (ValueError, OverflowError):
        value = 0
    if value <= 0:
        raise UsageError(
            f"{MAX_PIXELS_ENV}={raw!r} is not a pixel count", "give a positive number, e.g. 400000000"
        )
    return value


def open_image(data: bytes) -> Image.Image:
    """``Image.open`` minus its check against Pillow's process-wide ``MAX_IMAGE_PIXELS``.

    The format plugins parse only the header here (no pixels decoded), so the caller checks its own
    per-call limit (:func:`check_size`) before anything is decoded, and no thread changes a global.
    """
    Image.preinit()  # the common formats first, as Image.open tries them
    Image.init()
    prefix = data[:16]
    for fmt in list(Image.ID):
        factory, accept = Image.OPEN[fmt]
        verdict = accept(prefix) if accept else True
        if not verdict or isinstance(verdict, str):
            continue
        try:
            return factory(io.BytesIO(data), None)
        except (SyntaxError, IndexError, TypeError, struct.error):
            continue  # not this format after all, as Image.open does
    raise UnidentifiedImageError("cannot identify image file")


def read_bytes(path: Path) -> bytes:
    """The whole file; never opens (and so never blocks on) a FIFO, a device or a socket."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except FileNotFoundError:
        raise InputError(f"{path} does not exist", "check the path") from None
    except OSError as e:
        raise InputError(f"cannot read {path}: {e.strerror or e}", "check the path and permissions") from None
    try:
        _check_regular(path, os.fstat(fd).st_mode)
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read()
    except OSError as e:
        raise InputError(f"cannot read {path}: {e.strerror or e}", "check the file") from None
    finally:
        os.close(fd)
    if not data:
        raise InputError(f"{path} is empty (0 bytes)", "re-export or re-download the file")
    return data


def _check_regular(path: Path, mode: int) -> None:
    if stat.S_ISDIR(mode):
        raise InputError(f"{path} is a folder, not an image", "pass the folder itself to read all its images")
    if not stat.S_ISREG(mode):
        raise InputError(f"{path} is not a regular file (a pipe, device or socket)", "give image files")


def short(e: BaseException) -> str:
    return (str(e).splitlines() or [type(e).__name__])[0][:120]


def check_size(path: Path, size: tuple[int, int], limit: int) -> None:
    w, h = size
    if w * h > limit:
        raise InputError(
            f"{path} is {w}x{h} = {w * h / 1e6:.0f} MP, over the limit of {limit / 1e6:.0f} MP "
            "(a guard against decompression bombs)",
            f"if you trust the file, raise it: {MAX_PIXELS_ENV}={w * h}",
        )


def check_still(path: Path, im: Image.Image) -> None:
    # Editing only the first frame and writing a still would silently drop the animation.
    if im.format in {"GIF", "PNG", "WEBP"} and getattr(im, "n_frames", 1) > 1:
        raise InputError(
            f"{path} is animated ({im.n_frames} frames); faceedit edits still photos",
            "extract the frames you want as PNG files first",
        )
