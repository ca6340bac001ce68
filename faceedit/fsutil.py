"""Atomic, no-clobber file and folder writes: a crash or a full disk never leaves half a file behind.

Every writer in faceedit (images, model folders, JSON reports, checkpoints) goes through here.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

from faceedit.errors import OutputError


def ensure_dir(folder: Path) -> Path:
    """Create ``folder`` (and parents) and check that we can write into it."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(
            f"cannot create output folder {folder}: {e.strerror or e}", "choose another folder with -o"
        ) from e
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"output folder {folder} is not writable", "choose another folder with -o")
    return folder


def _temp_sibling(target: Path, is_dir: bool = False) -> Path:
    # Same folder (so the final rename is atomic) and same suffix (writers pick the format from it).
    tag = secrets.token_hex(4)
    suffix = "" if is_dir else target.suffix
    return target.with_name(f".{target.stem}.tmp-{os.getpid()}-{tag}{suffix}")


def _publish(tmp: Path, target: Path, overwrite: bool) -> None:
    if overwrite:
        os.replace(tmp, target)
        return
    try:  # a hard link fails if the target appeared meanwhile: no race can clobber a file
        os.link(tmp, target)
    except FileExistsError as e:
        raise OutputError(f"{target} already exists", "pass --overwrite or --skip-existing") from e
    except OSError:  # filesystems without hard links
        if target.exists():
            raise OutputError(f"{target} already exists", "pass --overwrite or --skip-existing") from None
        os.replace(tmp, target)
        return
    tmp.unlink()


@contextlib.contextmanager
def atomic_file(target: Path | str, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; when the block succeeds it becomes ``target``.

    Without ``overwrite`` an existing target is an :class:`OutputError` (checked before and after).
    On any exception the temporary file is removed and ``target`` is untouched.
    """
    target = Path(target)
    if not overwrite and target.exists():
        raise OutputError(f"{target} already exists", "pass --overwrite or --skip-existing")
    ensure_dir(target.parent)
    tmp = _temp_sibling(target)
    try:
        yield tmp
        if not tmp.exists():
            raise OutputError(f"nothing was written for {target}")
        _publish(tmp, target, overwrite)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def write_bytes_atomic(target: Path | str, data: bytes, overwrite: bool = False) -> Path:
    """Write ``data`` to ``target`` atomically (see :func:`atomic_file`)."""
    target = Path(target)
    with atomic_file(target, overwrite=overwrite) as tmp:
        try:
            tmp.write_bytes(data)
        except OSError as e:
            raise OutputError(f"cannot write {target}: {e.strerror or e}") from e
    return target


@contextlib.contextmanager
def atomic_dir(target: Path | str, overwrite: bool = False) -> Iterator[Path]:
    """Yield an empty temporary folder next to ``target``; on success it replaces ``target``.

    A non-empty existing ``target`` is an :class:`OutputError` unless ``overwrite``; then the old
    folder is moved aside and only deleted once the new one is in place.
    """
    target = Path(target)
    if target.exists() and not overwrite and (not target.is_dir() or any(target.iterdir())):
        raise OutputError(
            f"{target} already exists and is not empty", "pass --overwrite or choose another --out"
        )
    ensure_dir(target.parent)
    tmp = _temp_sibling(target, is_dir=True)
    tmp.mkdir()
    try:
        yield tmp
        old = None
        if target.exists():
            old = _temp_sibling(target, is_dir=True)
            os.replace(target, old)
        os.replace(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
