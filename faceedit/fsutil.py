"""Atomic, no-clobber file and folder writes: a crash or a full disk never leaves half a file behind.

Every writer in faceedit (images, model folders, JSON reports, checkpoints) goes through here. A full
disk, a quota or a read-only folder is an :class:`OutputError`; temp files of killed writers are swept.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

from faceedit.errors import FaceeditError, OutputError

# Errnos that mean "this output cannot be written here", whatever wrote it.
_NO_SPACE = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_NOT_WRITABLE = {errno.EROFS, errno.EACCES, errno.EPERM}
_RUST_OS_ERROR = re.compile(r"\(os error (\d+)\)")  # how safetensors (Rust) reports an errno
# ".NAME.tmp-PID-TAG[.suffix]": the names _temp_sibling makes, and nothing else.
_TEMP_NAME = re.compile(r"^\..+\.tmp-(?P<pid>\d+)-[0-9a-f]{8}(\.[^./]+)?$")
# A temp file is stale only when its writer's pid is gone AND nobody touched it for this long: the
# age guards writers this host cannot see (another container or machine sharing the folder).
STALE_AFTER_S = 60.0
_swept: dict[Path, float] = {}


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


def write_failure(e: BaseException, target: Path, tmp: Path | None = None) -> OutputError | None:
    """The one-line OutputError for a write of ``target`` that failed for want of space or permission.

    ``e`` may be an OSError or a library error quoting an errno (safetensors); None for anything else,
    and for a permission error about another file (an input read inside the write block).
    """
    if isinstance(e, FaceeditError):
        return None
    code = e.errno if isinstance(e, OSError) else None
    if code is None and (m := _RUST_OS_ERROR.search(str(e))):
        code = int(m.group(1))
    if code in _NO_SPACE:
        hint = "free some disk space or write somewhere else, then run again"
    elif code in _NOT_WRITABLE and _about_output(e, target, tmp):
        hint = "choose a folder you can write to"
    else:
        return None
    return OutputError(f"cannot write {target}: {os.strerror(code)}", hint)


def _about_output(e: BaseException, target: Path, tmp: Path | None) -> bool:
    name = getattr(e, "filename", None)
    if not name:
        return True
    path = Path(os.fsdecode(name))
    return path in (target, target.parent) or (tmp is not None and (path == tmp or tmp in path.parents))


def remove_stale_temps(folder: Path | str, now: float | None = None) -> list[Path]:
    """Delete the temp files and folders that killed writers (``kill -9``, power loss) left in ``folder``.

    Only names :func:`_temp_sibling` makes, whose pid is no running process here and which nobody
    touched for :data:`STALE_AFTER_S`; a live writer's file is never removed. Returns what was removed.
    """
    now = time.time() if now is None else now
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    removed = []
    for entry in entries:
        m = _TEMP_NAME.match(entry.name)
        if m is None or _pid_alive(int(m["pid"])) or _last_touched(entry) > now - STALE_AFTER_S:
            continue
        with contextlib.suppress(OSError):
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
            removed.append(Path(entry.path))
    return removed


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid() or os.name == "nt":  # Windows' os.kill would terminate it: never probe there
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists, owned by someone else
        return True
    return True


def _last_touched(entry: os.DirEntry) -> float:
    """Newest mtime of the entry and, for a temp folder, of what is directly inside it."""
    try:
        times = [entry.stat(follow_symlinks=False).st_mtime]
        if entry.is_dir(follow_symlinks=False):
            times += [e.stat(follow_symlinks=False).st_mtime for e in os.scandir(entry.path)]
    except OSError:
        return float("inf")  # vanished or unreadable: leave it alone
    return max(times)


def _sweep(folder: Path) -> None:
    # Once per folder per STALE_AFTER_S: a batch writes thousands of files into one folder.
    now = time.monotonic()
    if now - _swept.get(folder, -STALE_AFTER_S) >= STALE_AFTER_S:
        _swept[folder] = now
        remove_stale_temps(folder)


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
    _sweep(target.parent)
    tmp = _temp_sibling(target)
    try:
        yield tmp
        if not tmp.exists():
            raise OutputError(f"nothing was written for {target}")
        _publish(tmp, target, overwrite)
    except BaseException as e:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if (failure := write_failure(e, target, tmp)) is not None:
            raise failure from e
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
    _sweep(target.parent)
    tmp = _temp_sibling(target, is_dir=True)
    try:
        tmp.mkdir()
        yield tmp
        old = None
        if target.exists():
            old = _temp_sibling(target, is_dir=True)
            os.replace(target, old)
        os.replace(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if (failure := write_failure(e, target, tmp)) is not None:
            raise failure from e
        raise
