"""Verified fetch: one hub file into the shared Hugging Face cache, checked (hub checksum, the card's
sha256, or the trust-on-first-use ledger) before anyone uses it; the ledger; re-verification of the cache.

Raw downloads stay in the shared Hugging Face cache (``hf cache ls`` sees them); converted folders and the
ledger live in the faceedit cache (:func:`faceedit.settings.cache_root`). Turning a model spec into a
model folder is :mod:`faceedit.store`, whose ``resolve``/``load``/``parse_spec``/``card_for`` stay
importable from here. Network waits are bounded (:mod:`faceedit.hubnet`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from faceedit import __version__, hubnet, settings
from faceedit.errors import CheckpointError, ModelUnavailableError, OutputError, UsageError
from faceedit.fsutil import write_bytes_atomic

if TYPE_CHECKING:
    from faceedit.registry import ModelCard

MODEL_FILES = ("config.json", "model.safetensors")
CHECKPOINT_SUFFIXES = (".ckpt", ".pth", ".pt", ".tar", ".index", ".bin")
_HEX40 = re.compile(r"^[0-9a-f]{40}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


# ------------------------------------------------------------------------------------ locations


def converted_dir(name: str) -> Path:
    """Where the model folder converted from card ``name``'s official files is kept."""
    return settings.cache_root() / "models" / name


# ------------------------------------------------------------------------------------ results


@dataclass(frozen=True)
class ResolvedModel:
    """A model folder on disk (config.json + model.safetensors) and how far it can be trusted."""

    spec: str
    folder: Path
    card: ModelCard | None
    verified: bool
    verification: str  # what was checked, in words (printed by `models download`)
    downloaded: bool  # this call fetched or converted something; False = straight from the cache


@dataclass
class _Fetched:
    repo_id: str
    filename: str
    path: Path  # snapshot path in the HF cache
    commit: str
    sha256: str
    size: int

    @property
    def key(self) -> str:
        return f"{self.repo_id}/{self.filename}@{self.commit}"


# ------------------------------------------------------------------------------------ ledger


class Ledger:
    """What each downloaded file held the first time (trust on first use) and our converted folders.

    ``files``: "repo/path@commit" -> {sha256, size}; ``pins``: "repo@rev" -> the commit the first
    download of a moving revision (a branch) resolved to; ``models``: card name -> converted folder hashes.
    """

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or settings.cache_root() / "ledger.json"
        self.data = self._read()

    def _read(self) -> dict[str, Any]:
        empty = {"format": "faceedit.ledger", "format_version": 1, "files": {}, "pins": {}, "models": {}}
        if not self.path.exists():
            return empty
        try:
            data = json.loads(self.path.read_text())
            assert data.get("format") == "faceedit.ledger"
        except (OSError, ValueError, AssertionError, AttributeError) as e:
            raise CheckpointError(
                f"the download ledger {self.path} is unreadable",
                "delete it and run `faceedit models download NAME --force`",
            ) from e
        return {**empty, **data}

    def file(self, key: str) -> dict[str, Any] | None:
        return self.data["files"].get(key)

    def pin(self, key: str) -> str | None:
        return self.data["pins"].get(key)

    def model(self, name: str) -> dict[str, Any] | None:
        return self.data["models"].get(name)

    def record(
        self,
        *,
        files: dict[str, Any] | None = None,
        pins: dict[str, str] | None = None,
        models: dict[str, Any] | None = None,
        forget_models: tuple[str, ...] = (),
    ) -> None:
        """Merge into the file on disk (re-read first: another process may have written meanwhile)."""
        data = self._read()
        data["files"].update(files or {})
        data["pins"].update(pins or {})
        data["models"].update(models or {})
        for name in forget_models:
            data["models"].pop(name, None)
        with _cache_writable():
            write_bytes_atomic(self.path, json.dumps(data, indent=1, sort_keys=True).encode(), overwrite=True)
        self.data = data


@contextlib.contextmanager
def _cache_writable() -> Iterator[None]:
    """A cache write that fails is about FACEEDIT_CACHE, not about an output folder (-o)."""
    try:
        yield
    except OutputError as e:
        raise ModelUnavailableError(
            f"cannot write to the faceedit cache: {e.message}", "set FACEEDIT_CACHE to a writable folder"
        ) from e


def _file_entry(f: _Fetched) -> dict[str, Any]:
    return {
        "sha256": f.sha256,
        "size": f.size,
        "first_seen": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


# ------------------------------------------------------------------------------------ hashing


def file_digests(path: Path, git_sha1: bool = False) -> tuple[str, str | None, int]:
    """(sha256, git blob sha1 or None, size) of a file, read once in 1 MiB chunks."""
    size = path.stat().st_size
    sha256 = hashlib.sha256()
    sha1 = hashlib.sha1(b"blob %d\0" % size) if git_sha1 else None
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            sha256.update(chunk)
            if sha1 is not None:
                sha1.update(chunk)
    return sha256.hexdigest(), sha1.hexdigest() if sha1 else None, size


def _hub_etag(path: Path) -> str:
    # The HF cache names each blob after the ETag the hub sent: sha256 (LFS) or git sha1 (small files).
    return Path(os.path.realpath(path)).name


def _commit_of(path: Path) -> str:
    parts = Path(path).parts
    return parts[parts.index("snapshots") + 1] if "snapshots" in parts else ""


def _discard(path: Path) -> None:
    """Remove a cached download: the snapshot link and the blob it points to."""
    blob = Path(os.path.realpath(path))
    for p in (Path(path), blob):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


# ------------------------------------------------------------------------------------ one download


@dataclass
class _Session:
    """Options of one resolve/download call, fixed at its start."""

    label: str  # what the user called the model (for messages and hints)
    offline: bool
    endpoint: str | None
    token: bool | str | None
    progress: bool
    force: bool = False
    update: bool = False
    ledger: Ledger = field(default_factory=Ledger)
    downloaded: bool = False


def _fetch(s: _Session, repo_id: str, filename: str, revision: str | None, sha256: str | None) -> _Fetched:
    """One file into the HF cache (or found there without a request), checked before it is returned."""
    path = _from_cache(repo_id, filename, revision, ask_hub=s.update)
    if path is not None and s.force:
        # hf_hub_download keeps an existing snapshot link even with force_download: drop it first so
        # that what is verified below is what was downloaded now.
        _discard(path)
        path = None
    if path is None:
        path = _download(s, repo_id, filename, revision)
    commit = _commit_of(path)
    etag = _hub_etag(path)
    digest, sha1, size = file_digests(path, git_sha1=bool(_HEX40.match(etag)))
    fetched = _Fetched(repo_id, filename, path, commit, digest, size)
    if (_HEX64.match(etag) and etag != digest) or (sha1 is not None and etag != sha1):
        _reject(s, fetched, etag, "the checksum the hub sent (corrupted in transit or by a proxy)")
    if sha256 is not None and digest != sha256:
        _reject(s, fetched, sha256, "the sha256 pinned by the model card")
    seen = s.ledger.file(fetched.key)
    if sha256 is None and seen is not None and seen["sha256"] != digest:
        _reject(s, fetched, seen["sha256"], f"what the first download had on {seen.get('first_seen', '?')}")
    return fetched


def _from_cache(repo_id: str, filename: str, revision: str | None, ask_hub: bool = False) -> Path | None:
    # A moving revision (branch) is only asked of the hub with --update; a commit never needs asking.
    if ask_hub and not (revision and _HEX40.match(revision)):
        return None
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, filename, revision=revision or "main")
    return Path(found) if isinstance(found, str) else None


def _get_hint(s: _Session) -> str:
    return f"run `faceedit models download {s.label}`"


def _hub_errors(s: _Session, repo_id: str, filename: str, revision: str | None) -> Any:
    """:func:`faceedit.hubnet.hub_errors` with this session's label, endpoint and offline mode."""
    return hubnet.hub_errors(
        repo_id,
        filename,
        label=s.label,
        get=_get_hint(s),
        endpoint=s.endpoint,
        offline=s.offline,
        revision=revision,
    )


def _network_checks(s: _Session) -> None:
    """Before the first request: library logs quiet, and an unresolvable hub name fails at once."""
    hubnet.quiet_library_logs()
    if not s.offline:
        hubnet.check_resolvable(s.endpoint, s.label, _get_hint(s))


def _download(s: _Session, repo_id: str, filename: str, revision: str | None) -> Path:
    from huggingface_hub import hf_hub_download

    if s.force and s.offline:
        raise UsageError(
            "--force downloads again and needs the network", "drop --offline / unset HF_HUB_OFFLINE"
        )
    _network_checks(s)
    bar_label = f"{s.label}: {filename}"
    with (
        _hub_errors(s, repo_id, filename, revision),
        hubnet.bounded(),
        hubnet.download_bar(bar_label, s.progress) as bar,
    ):
        path = hf_hub_download(
            repo_id,
            filename,
            revision=revision,
            endpoint=s.endpoint,
            token=s.token,
            local_files_only=s.offline,
            force_download=s.force,
            library_name="faceedit",
            library_version=__version__,
            tqdm_class=bar,
        )
    s.downloaded = True
    return Path(path)


def _reject(s: _Session, f: _Fetched, expected: str, against: str) -> None:
    """A file that fails verification is deleted (with anything built from it) and never used."""
    _discard(f.path)
    card_name = s.label if not s.label.startswith(("hf:", "local:")) else None
    if card_name:
        shutil.rmtree(converted_dir(card_name), ignore_errors=True)
        s.ledger.record(forget_models=(card_name,))
    raise CheckpointError(
        f"{f.repo_id}/{f.filename} (commit {f.commit[:10]}) does not match {against}: sha256 "
        f"{f.sha256[:16]}… instead of {expected[:16]}…; the file was deleted from the cache",
        f"run `faceedit models download {s.label} --force`; if it fails again the file on the hub changed",
    )


# ------------------------------------------------------------------------------------ cache state


@dataclass(frozen=True)
class Check:
    """One cached file re-hashed by :func:`verify`."""

    model: str  # card name or hf:ORG/REPO
    item: str  # the file, as shown to the user
    status: str  # "ok" | "mismatch" | "missing" (deleted from the cache by hand: nothing to check)
    against: str  # "card" | "ledger" | "hub checksum"
    removed: bool = False  # a mismatching file is deleted so that it is never used


def cached_state(card: ModelCard) -> str:
    """ "yes" (converted folder ready), "raw" (downloads cached, not converted) or "no". No network."""
    ledger = Ledger()
    if ledger.model(card.name) and all((converted_dir(card.name) / n).is_file() for n in MODEL_FILES):
        return "yes"
    paths = [f"{card.source.repo_id}/{f.path}@" for f in card.source.files]
    for key in ledger.data["files"]:
        if any(key.startswith(p) for p in paths) and _cached_file(key) is not None:
            return "raw"
    return "no"


def _cached_file(key: str) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    where, _, commit = key.rpartition("@")
    org, name, filename = where.split("/", 2)
    found = try_to_load_from_cache(f"{org}/{name}", filename, revision=commit)
    return Path(found) if isinstance(found, str) else None


def verify(name: str | None = None) -> list[Check]:
    """Re-hash every cached download and converted folder (or those of one model) offline.

    Downloads are compared with the card's sha256, else with the ledger (first download) and the hub's
    ETag; converted folders with the hashes recorded when they were written. Mismatches are deleted.
    """
    ledger = Ledger()
    from faceedit.store import card_for

    card = card_for(name) if name and not name.startswith("hf:") else None
    repo = (card.source.repo_id if card else name[3:].partition("@")[0] if name else None) or None
    checks = [
        _verify_file(ledger, key)
        for key in sorted(ledger.data["files"])
        if repo is None or key.startswith(f"{repo}/")
    ]
    for model_name in sorted(ledger.data["models"]):
        if name is None or (card is not None and model_name == card.name):
            checks += _verify_converted(ledger, model_name)
    return [c for c in checks if c is not None]


def _pinned_sha256(repo_filename: str) -> str | None:
    from faceedit.registry import CARDS

    for card in CARDS:
        for f in card.source.files:
            path = f"{card.source.folder}/{f.path}" if card.source.folder else f.path
            if f"{card.source.repo_id}/{path}" == repo_filename and f.sha256:
                return f.sha256
    return None


def _verify_file(ledger: Ledger, key: str) -> Check | None:
    where = key.rpartition("@")[0]
    path = _cached_file(key)
    if path is None:
        return Check(where, key, "missing", "ledger")
    pinned = _pinned_sha256(where)
    etag = _hub_etag(path)
    digest, sha1, _ = file_digests(path, git_sha1=bool(_HEX40.match(etag)))
    hub_ok = etag == digest if _HEX64.match(etag) else sha1 is None or etag == sha1
    expected = pinned or ledger.data["files"][key]["sha256"]
    if hub_ok and digest == expected:
        return Check(where, key, "ok", "card" if pinned else "ledger")
    _discard(path)
    return Check(where, key, "mismatch", "card" if pinned else "ledger" if hub_ok else "hub checksum", True)


def _verify_converted(ledger: Ledger, name: str) -> list[Check]:
    entry, folder = ledger.data["models"][name], converted_dir(name)
    expected = {"model.safetensors": entry.get("sha256"), "config.json": entry.get("config_sha256")}
    checks = []
    for filename, sha256 in expected.items():
        path = folder / filename
        status = "missing" if not path.is_file() else "ok" if file_digests(path)[0] == sha256 else "mismatch"
        checks.append(Check(name, str(path), status, "ledger"))
    if any(c.status == "mismatch" for c in checks):
        shutil.rmtree(folder, ignore_errors=True)
        ledger.record(forget_models=(name,))
        checks = [Check(c.model, c.item, c.status, c.against, c.status == "mismatch") for c in checks]
    return checks


# ------------------------------------------------------------------------------------ old import paths

_STORE_NAMES = ("resolve", "load", "parse_spec", "card_for")


def __getattr__(name: str) -> Any:
    """``faceedit.hub.resolve`` & co. live in :mod:`faceedit.store` (imported on first use: no cycle)."""
    if name in _STORE_NAMES:
        from faceedit import store

        return getattr(store, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
