"""Model files published in a GitHub repository (registry kind ``github-raw``), fetched from its raw-file
URLs and pinned by git blob id (sha1 of ``b"blob <size>\\0" + content``), as ``git ls-tree`` shows them.

Downloads are cached in ``FACEEDIT_CACHE/github/OWNER/REPO/...`` and re-checked on every use;
FACEEDIT_GITHUB_RAW replaces ``https://raw.githubusercontent.com`` (mirrors, tests).
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

from faceedit import console
from faceedit.errors import CheckpointError, ModelUnavailableError
from faceedit.fsutil import atomic_file

if TYPE_CHECKING:
    from faceedit.models import FaceModel
    from faceedit.registry import ModelCard, SourceFile

RAW_ENV = "FACEEDIT_GITHUB_RAW"
DEFAULT_RAW = "https://raw.githubusercontent.com"
DEFAULT_REF = "HEAD"  # the default branch; content is pinned by blob id, so no commit is needed
TIMEOUT_S = 30.0
_CHUNK = 1 << 20


def raw_base() -> str:
    """Where raw files are read from: FACEEDIT_GITHUB_RAW (read now), else GitHub's raw host."""
    return (os.environ.get(RAW_ENV) or DEFAULT_RAW).rstrip("/")


def git_blob_id(path: Path) -> str:
    """The git blob id of a file: sha1 of ``b"blob <size>\\0"`` + its bytes."""
    digest = hashlib.sha1(b"blob %d\0" % path.stat().st_size)
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def cache_path(card: ModelCard, f: SourceFile) -> Path:
    from faceedit.settings import cache_root

    src = card.source
    return cache_root() / "github" / (src.repo_id or "") / (src.folder or "") / f.path


def fetch(card: ModelCard, f: SourceFile, *, offline: bool, progress: bool) -> Path:
    """One file of ``card``: from the cache when its blob id still matches, else downloaded and checked.

    A download that does not match the card is deleted and refused (CheckpointError, exit 4).
    """
    path = cache_path(card, f)
    if path.is_file():
        if git_blob_id(path) == f.git_blob:
            return path
        console.warn(f"{path} changed since it was downloaded; fetching it again")
        path.unlink()
    if offline:
        raise ModelUnavailableError(
            f"{card.name} is not cached and offline mode is on",
            f"run `faceedit models download {card.name}` once with internet",
        )
    url = f"{raw_base()}/{card.source.repo_id}/{card.source.revision or DEFAULT_REF}/"
    url += f"{card.source.folder}/{f.path}" if card.source.folder else f.path
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path, overwrite=True) as tmp:
        _download(url, tmp, f.size, progress)
        got = git_blob_id(tmp)
        if got != f.git_blob:
            raise CheckpointError(
                f"{f.path} from {url} has git blob {got[:12]}, the model card pins {(f.git_blob or '')[:12]}",
                "the file was corrupted in transit or changed upstream; nothing was kept",
            )
    return path


def _download(url: str, target: Path, size: int | None, progress: bool) -> None:
    request = urllib.request.Request(url, headers={"User-Agent": "faceedit"})
    try:
        with (
            urllib.request.urlopen(request, timeout=TIMEOUT_S) as response,
            target.open("wb") as out,
            console.progress(size, f"downloading {Path(url).name}", enabled=progress) as advance,
        ):
            while chunk := response.read(_CHUNK):
                out.write(chunk)
                advance(len(chunk))
    except urllib.error.HTTPError as e:
        raise ModelUnavailableError(
            f"{url} answered HTTP {e.code}", "check the address or try later"
        ) from None
    except (urllib.error.URLError, TimeoutError, OSError) as e:
        reason = getattr(e, "reason", None) or e
        raise ModelUnavailableError(
            f"cannot download {url}: {reason}", "check the internet connection, or use --offline with a cache"
        ) from None


def import_card(card: ModelCard, *, offline: bool, progress: bool) -> tuple[FaceModel, str]:
    """Fetch and check every file of a ``github-raw`` card, import it; (model, how it was verified)."""
    from faceedit import upstream

    paths = {f.role: fetch(card, f, offline=offline, progress=progress) for f in card.source.files}
    index = paths.get("checkpoint-index") or next(iter(paths.values()))
    model = upstream.import_checkpoint(card.arch, index)
    src = card.source
    model.config.setdefault("provenance", {}).update(
        github_repo=src.repo_id,
        github_ref=src.revision or DEFAULT_REF,
        github_blobs={f.path: f.git_blob for f in src.files},
    )
    return model, "git blob id of every file matches the model card"
