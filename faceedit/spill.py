"""Large numpy arrays cross between worker processes as files in a memory-backed folder (/dev/shm),
not through pipes: the receiver maps the file instead of copying the bytes four times.

Measured (benchmarks/pipeline.py): a 1-MP photo through a pipe costs the main process ~5 ms of CPU
each way, 15 % of what the workers spend on it, and the main process is the one thing that does not
scale with workers. With spilling it maps the photo, never touches it, and hands the same file on to
the worker that pastes and encodes. Files go as soon as nobody needs them (see :func:`_load`), and
the whole folder when the pipeline closes (whatever a dead worker left behind).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import uuid
import weakref
from multiprocessing.reduction import ForkingPickler
from typing import Any

import numpy as np

THRESHOLD = 256 * 1024  # bytes: smaller arrays (face crops) are cheaper to pickle than to map
_state: dict[str, Any] = {"folder": None, "owner": False}


def make_folder() -> str:
    """A private folder on /dev/shm where there is one (Linux), else in the temp folder."""
    shm = "/dev/shm"
    base = shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else None
    return tempfile.mkdtemp(prefix="faceedit-spill-", dir=base)


def install(folder: str | None, owner: bool = False) -> None:
    """Spill large arrays into ``folder`` from now on (None: stop). The ``owner`` (the main process)
    deletes each file once it drops the array it mapped from it."""
    ForkingPickler.register(np.ndarray, _reduce)
    ForkingPickler.register(np.memmap, _reduce)
    _state.update(folder=folder, owner=owner)


def _reduce(a: np.ndarray) -> tuple[Any, ...]:
    path = getattr(a, "_spill_path", None)
    if path is not None and os.path.exists(path):
        return _load, (path, a.dtype.str, a.shape, False)  # mapped here from a spill file: pass it on
    folder = _state["folder"]
    if folder is None or a.nbytes < THRESHOLD or a.dtype.hasobject:
        return _plain(a)
    path = os.path.join(folder, uuid.uuid4().hex)
    try:
        np.ascontiguousarray(a).tofile(path)
    except OSError:  # the folder is full (Docker's /dev/shm is 64 MB) or gone: the pipe still works
        _unlink(path)
        return _plain(a)
    return _load, (path, a.dtype.str, a.shape, _state["owner"])


def _plain(a: np.ndarray) -> tuple[Any, ...]:
    return np.asarray(a).__reduce_ex__(4)


def _load(path: str, dtype: str, shape: tuple[int, ...], consume: bool) -> np.ndarray:
    """The array mapped copy-on-write (writes stay private). A file the main process wrote has one
    reader, which deletes it at once (the mapping outlives the name); one a worker wrote goes when
    the main process drops the array (it may pass the file on first)."""
    mapped = np.memmap(path, dtype=np.dtype(dtype), mode="c", shape=shape)
    if consume:
        _unlink(path)
        return mapped
    mapped._spill_path = path  # type: ignore[attr-defined]
    if _state["owner"]:
        weakref.finalize(mapped, _unlink, path)
    return mapped


def _unlink(path: str) -> None:
    with contextlib.suppress(OSError):  # already gone with its folder
        os.unlink(path)
