"""Model specs -> verified local model folders: card names, ``hf:ORG/REPO[@REV]`` and ``local:DIR``.

Raw downloads stay in the shared Hugging Face cache (``hf cache ls`` sees them); converted folders and
the trust-on-first-use ledger live in the faceedit cache (FACEEDIT_CACHE, default ~/.cache/faceedit).
Once a model has been fetched, resolving it again makes no network request at all.
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

from faceedit import __version__, console
from faceedit.errors import CheckpointError, ModelUnavailableError, OutputError, UsageError
from faceedit.fsutil import write_bytes_atomic
from faceedit.registry import (
    HUB_FACEEDIT,
    HUB_TF,
    HUB_UPSTREAM,
    ModelCard,
    UnknownModelError,
    get_card,
)

if TYPE_CHECKING:
    from faceedit.models import FaceModel

MODEL_FILES = ("config.json", "model.safetensors")
CHECKPOINT_SUFFIXES = (".ckpt", ".pth", ".pt", ".tar", ".index", ".bin")
_HEX40 = re.compile(r"^[0-9a-f]{40}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_TRUE = {"1", "true", "yes", "on"}


# ------------------------------------------------------------------------------------ locations


def cache_root() -> Path:
    """The faceedit cache: FACEEDIT_CACHE, else $XDG_CACHE_HOME/faceedit or ~/.cache/faceedit."""
    if env := os.environ.get("FACEEDIT_CACHE"):
        return Path(env).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser() / "faceedit"


def converted_dir(name: str) -> Path:
    """Where the model folder converted from card ``name``'s official files is kept."""
    return cache_root() / "models" / name


def hub_endpoint(endpoint: str | None = None) -> str | None:
    """Endpoint for this call: the argument, else FACEEDIT_HF_ENDPOINT, else HF_ENDPOINT (read now)."""
    return endpoint or os.environ.get("FACEEDIT_HF_ENDPOINT") or os.environ.get("HF_ENDPOINT") or None


def is_offline(flag: bool = False) -> bool:
    """``--offline``, or HF_HUB_OFFLINE=1 in the environment now (or when huggingface_hub was imported)."""
    if flag or os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE:
        return True
    import huggingface_hub.constants

    return bool(huggingface_hub.constants.HF_HUB_OFFLINE)


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
        self.path = path or cache_root() / "ledger.json"
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


def _quiet_library_logs() -> None:
    """huggingface_hub installs its own stderr handler on import; its retry chatter is not for users."""
    import logging

    from huggingface_hub.utils import logging as hf_logging

    if console.log.getEffectiveLevel() > logging.DEBUG:  # -vv shows everything
        hf_logging.set_verbosity_error()


def _check_resolvable(s: _Session) -> None:
    """Fail at once, not after huggingface_hub's ~23 s of retries, when the hub's name cannot resolve.

    A DNS failure is not transient the way a dropped connection is. Skipped behind a proxy, where the
    proxy and not this machine resolves the name.
    """
    import socket
    import urllib.parse

    if s.offline or any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return
    host = urllib.parse.urlsplit(_shown(s.endpoint)).hostname
    if not host:
        return
    try:
        socket.getaddrinfo(host, None)
    except (socket.gaierror, UnicodeError) as e:
        raise ModelUnavailableError(
            f"cannot reach the hub at {_shown(s.endpoint)} ({host}: {e.strerror or e}) "
            f"and {s.label} is not cached",
            f"check the connection, then run `faceedit models download {s.label}`",
        ) from None


def _download(s: _Session, repo_id: str, filename: str, revision: str | None) -> Path:
    from huggingface_hub import hf_hub_download

    if s.force and s.offline:
        raise UsageError(
            "--force downloads again and needs the network", "drop --offline / unset HF_HUB_OFFLINE"
        )
    _quiet_library_logs()
    _check_resolvable(s)
    with (
        _hub_errors(s, repo_id, filename, revision),
        _download_bar(f"{s.label}: {filename}", s.progress) as bar,
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


# ------------------------------------------------------------------------------------ hub errors


@contextlib.contextmanager
def _hub_errors(s: _Session, repo_id: str, filename: str, revision: str | None) -> Iterator[None]:
    """huggingface_hub exceptions -> ModelUnavailableError whose hint says what to do."""
    from huggingface_hub import errors as hf

    where = f"{repo_id}/{filename}" + (f"@{revision}" if revision else "")
    get = f"run `faceedit models download {s.label}`"
    try:
        yield
    except hf.GatedRepoError as e:  # a RepositoryNotFoundError: catch first
        raise ModelUnavailableError(
            f"{repo_id} is gated on the hub", "accept its conditions on the hub page, then set HF_TOKEN"
        ) from e
    except hf.RepositoryNotFoundError as e:
        raise ModelUnavailableError(
            f"hub repo {repo_id} not found (or private) at {_shown(s.endpoint)}",
            "check the name and HF_ENDPOINT; a private repo needs HF_TOKEN",
        ) from e
    except hf.RevisionNotFoundError as e:
        raise ModelUnavailableError(
            f"revision {revision} not found in {repo_id}",
            f"pass another @REV or run `faceedit models download {s.label} --update`",
        ) from e
    except hf.LocalEntryNotFoundError as e:  # an EntryNotFoundError too: catch it first
        raise _not_cached(s, where, e, get) from e
    except hf.RemoteEntryNotFoundError as e:
        raise ModelUnavailableError(
            f"{where} does not exist on the hub", "the repo's layout changed: update faceedit or report it"
        ) from e
    except hf.HfHubHTTPError as e:
        raise ModelUnavailableError(f"the hub refused {where}: {_first_line(e)}", "try again later") from e
    except OSError as e:  # consistency check (size), disk full
        raise ModelUnavailableError(
            f"download of {where} failed: {_first_line(e)}", "run the command again; check free disk space"
        ) from e


def _not_cached(s: _Session, where: str, e: Exception, get: str) -> ModelUnavailableError:
    from huggingface_hub import errors as hf

    cause = e.__cause__
    if s.offline or isinstance(cause, hf.OfflineModeIsEnabled):
        return ModelUnavailableError(
            f"{s.label} is not cached and offline mode is on",
            f"{get} once with internet (no --offline, HF_HUB_OFFLINE unset)",
        )
    if isinstance(cause, hf.FileMetadataError):
        return ModelUnavailableError(
            f"{_shown(s.endpoint)} does not answer like a Hugging Face hub",
            "check HF_ENDPOINT and any proxy settings",
        )
    return ModelUnavailableError(
        f"cannot reach the hub at {_shown(s.endpoint)} and {where} is not cached",
        f"check the connection or proxy, then {get}",
    )


def _shown(endpoint: str | None) -> str:
    return endpoint or "https://huggingface.co"


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:200]


# ------------------------------------------------------------------------------------ progress


@contextlib.contextmanager
def _download_bar(label: str, enabled: bool) -> Iterator[type]:
    """A tqdm class for hf_hub_download that draws a rich download bar on stderr (or nothing)."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn
    from tqdm.auto import tqdm

    bars = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=console.err,
        transient=True,
        disable=not enabled,
    )

    class RichTqdm(tqdm):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["disable"] = True  # tqdm draws nothing; rich does
            super().__init__(*args, **kwargs)
            self._task = bars.add_task(label, total=kwargs.get("total"))

        def update(self, n: float | None = 1) -> bool | None:
            bars.advance(self._task, n or 0)
            return None

    with bars:
        yield RichTqdm


# ------------------------------------------------------------------------------------ resolve


def resolve(
    spec: str,
    *,
    offline: bool = False,
    endpoint: str | None = None,
    token: bool | str | None = None,
    progress: bool | None = None,
    force: bool = False,
    update: bool = False,
) -> ResolvedModel:
    """Turn a model spec into a verified local model folder, downloading and converting only once.

    ``spec``: a card name (``faceedit models list``), ``hf:ORG/REPO[@REV]`` (a hub repo in faceedit's
    format), or ``local:DIR`` / a path to a model folder. Official checkpoint files are not accepted
    here: convert them with ``faceedit models import``. ``force`` downloads and converts again;
    ``update`` asks the hub for the newest commit of an unpinned source instead of the recorded one.
    """
    kind, value = parse_spec(spec)
    if kind == "local":
        return _resolve_local(spec, Path(value).expanduser())
    session = _Session(
        label=spec if kind == "hf" else value,
        offline=is_offline(offline),
        endpoint=hub_endpoint(endpoint),
        token=token,
        progress=console.progress_enabled() if progress is None else progress,
        force=force,
        update=update,
    )
    if kind == "hf":
        repo_id, _, revision = value.partition("@")
        return _resolve_hf(session, spec, repo_id, revision or None)
    return _resolve_card(session, card_for(value))


def load(spec: str, device: str = "cpu", **options: Any) -> FaceModel:
    """``resolve(spec, **options)`` then ``faceedit.models.load`` on ``device``."""
    from faceedit import models

    return models.load(resolve(spec, **options).folder, device=device)


def parse_spec(spec: str) -> tuple[str, str]:
    """("card", name) | ("hf", "org/repo[@rev]") | ("local", path); UsageError for an empty hf: spec."""
    spec = spec.strip()
    if spec.startswith("hf:"):
        repo = spec[3:]
        if not re.fullmatch(r"[\w.-]+/[\w.-]+(@[\w./-]+)?", repo):
            raise UsageError(f"bad hub spec {spec!r}", "write hf:ORG/REPO or hf:ORG/REPO@REVISION")
        return "hf", repo
    if spec.startswith("local:"):
        return "local", spec[6:]
    with contextlib.suppress(UnknownModelError):  # a card name wins over a same-named folder in cwd
        return "card", get_card(spec).name
    if os.sep in spec or "/" in spec or spec.startswith((".", "~")) or Path(spec).exists():
        return "local", spec
    return "card", spec


def card_for(name: str) -> ModelCard:
    """The registry card for ``name``; an unknown name is a UsageError listing the known ones."""
    try:
        return get_card(name)
    except UnknownModelError as e:
        raise UsageError(e.message, e.hint) from None


def _resolve_local(spec: str, path: Path) -> ResolvedModel:
    if path.is_file() and path.name.endswith(CHECKPOINT_SUFFIXES):
        raise UsageError(
            f"{path} is a checkpoint file, not a faceedit model folder",
            "convert it once: `faceedit models import ARCH PATH --out DIR`, then use local:DIR",
        )
    if path.is_file() and path.name in MODEL_FILES:
        path = path.parent
    missing = [name for name in MODEL_FILES if not (path / name).is_file()]
    if not path.is_dir() or missing:
        what = "does not exist" if not path.exists() else f"lacks {', '.join(missing)}"
        raise ModelUnavailableError(
            f"model folder {path} {what}",
            "pass a folder written by `faceedit models import` or `faceedit train`",
        )
    return ResolvedModel(spec, path, None, False, "local folder (not verified)", False)


def _resolve_hf(s: _Session, spec: str, repo_id: str, revision: str | None) -> ResolvedModel:
    """A hub repo in our format: both files from one commit, checked against the ledger."""
    pin_key = f"{repo_id}@{revision or 'main'}"
    wanted = revision
    if not (revision and _HEX40.match(revision)) and not s.update:
        wanted = s.ledger.pin(pin_key) or revision
    config = _fetch(s, repo_id, "config.json", wanted, None)
    weights = _fetch(s, repo_id, "model.safetensors", config.commit, None)
    new = {f.key: _file_entry(f) for f in (config, weights) if s.ledger.file(f.key) is None}
    if new or s.ledger.pin(pin_key) != config.commit:
        s.ledger.record(files=new, pins={pin_key: config.commit})
    how = "hub checksums; " + (
        "first download, recorded in the ledger" if new else "same sha256 as the first download"
    )
    return ResolvedModel(spec, config.path.parent, None, True, how, s.downloaded)


def _resolve_card(s: _Session, card: ModelCard) -> ResolvedModel:
    if card.import_only:
        raise ModelUnavailableError(
            f"{card.name} cannot be downloaded: its weights are published outside the hub",
            card.source.instructions,
        )
    if card.source.kind == HUB_FACEEDIT:
        rev = card.source.revision
        return _resolve_hf(s, card.name, card.source.repo_id or "", rev)
    folder = converted_dir(card.name)
    if not s.force and not s.update and (how := _converted_ok(s.ledger, card, folder)):
        return ResolvedModel(card.name, folder, card, True, how, False)
    if card.source.kind == HUB_UPSTREAM:
        how = _build_upstream(s, card, folder)
    elif card.source.kind == HUB_TF:
        how = _build_tf(s, card, folder)
    else:  # pragma: no cover - registry test keeps kinds valid
        raise ModelUnavailableError(f"{card.name}: unknown source kind {card.source.kind}")
    return ResolvedModel(card.name, folder, card, True, how, True)


# ------------------------------------------------------------------------------------ converted cards


def _converted_ok(ledger: Ledger, card: ModelCard, folder: Path) -> str | None:
    """How the cached converted folder was verified, or None when it must be (re)built. No network."""
    entry = ledger.model(card.name)
    if entry is None or not all((folder / name).is_file() for name in MODEL_FILES):
        return None
    if card.source.revision and entry.get("commit") != card.source.revision:
        return None  # this faceedit release pins another commit
    if any(f.sha256 and entry.get("sources", {}).get(f.role) != f.sha256 for f in card.source.files):
        return None
    weights, config = folder / "model.safetensors", folder / "config.json"
    stat = weights.stat()
    unchanged = stat.st_size == entry["size"] and stat.st_mtime_ns == entry.get("mtime_ns")
    if file_digests(config)[0] != entry.get("config_sha256") or (
        not unchanged and file_digests(weights)[0] != entry["sha256"]
    ):
        console.warn(f"{card.name}: the converted model in {folder} changed on disk; rebuilding it")
        shutil.rmtree(folder, ignore_errors=True)
        ledger.record(forget_models=(card.name,))
        return None
    if not unchanged:  # touched but identical: remember the new mtime so the next run skips hashing
        ledger.record(models={card.name: {**entry, "mtime_ns": stat.st_mtime_ns}})
    return entry.get("verification", "verified when converted")


def _pinned_revision(s: _Session, card: ModelCard) -> tuple[str, str | None]:
    """(ledger pin key, revision to ask for): the card's commit, else the first download's commit."""
    key = f"{card.source.repo_id}@{card.source.revision or 'main'}"
    if card.source.revision:
        return key, card.source.revision
    return key, None if s.update else s.ledger.pin(key)


def _build_upstream(s: _Session, card: ModelCard, folder: Path) -> str:
    """Official-format files on the hub -> verified download -> upstream.import_checkpoint -> folder."""
    src = card.source
    pin_key, revision = _pinned_revision(s, card)
    fetched: dict[str, _Fetched] = {}
    for f in src.files:  # every file from the commit the first one resolved to
        revision = next(iter(fetched.values())).commit if fetched else revision
        fetched[f.role] = _fetch(s, src.repo_id or "", f.path, revision, f.sha256)
    unconfirmed = [
        f
        for f, spec in zip(fetched.values(), src.files, strict=True)
        if spec.sha256 is None and s.ledger.file(f.key) is None
    ]
    try:
        model = _import_upstream(card, fetched)
        _check_against_card(card, model.config)
    except CheckpointError:
        for f in unconfirmed:  # never trusted: do not keep them for the next attempt
            _discard(f.path)
        raise
    how = _how(card, fetched, unconfirmed)
    _save_converted(s, card, model, folder, fetched, how, pin_key)
    return how


def _how(card: ModelCard, fetched: dict[str, _Fetched], unconfirmed: list[_Fetched]) -> str:
    if all(f.sha256 for f in card.source.files):
        return "sha256 of every file matches the model card"
    if unconfirmed:
        return "hub checksums; first download, recorded in the ledger (trust on first use)"
    return "hub checksums; same sha256 as the first download (ledger)"


def _import_upstream(card: ModelCard, fetched: dict[str, _Fetched]) -> FaceModel:
    """upstream.import_checkpoint on the fetched files, with the card's attribute names and size."""
    from faceedit import upstream

    options: dict[str, Any] = {"image_size": card.image_size}
    if card.attributes:
        options["attrs"] = list(card.attributes)
    if "discriminator" in fetched:
        options["discriminator"] = fetched["discriminator"].path
    try:
        return upstream.import_checkpoint(card.arch, fetched["generator"].path, **options)
    except UsageError as e:  # the card's own facts contradict the files: they are not the card's files
        hint = "the files on the hub changed; please report it"
        raise CheckpointError(f"{card.name}: {e.message}", hint) from e


def _check_against_card(card: ModelCard, config: dict[str, Any]) -> None:
    """The imported model must be the one the card describes (arch and every kwarg the card states)."""
    got = config.get("generator_kwargs", {})
    diffs = [f"{k}={got.get(k)!r} (card: {v!r})" for k, v in card.generator_kwargs.items() if got.get(k) != v]
    if config.get("arch") != card.arch:
        diffs.insert(0, f"arch={config.get('arch')!r} (card: {card.arch!r})")
    if diffs:
        raise CheckpointError(
            f"the weights fetched for {card.name} are not the model its card describes: "
            + ", ".join(diffs[:4]),
            "the files on the hub changed; please report it",
        )


def _build_tf(s: _Session, card: ModelCard, folder: Path) -> str:
    """Official TF checkpoint on the hub -> generator tensors by HTTP Range (crc32c each) -> folder.

    The index (whose sha256 is checked against the card or the ledger) holds every tensor's crc32c,
    so the ranged bytes are as well pinned as the index itself.
    """
    from faceedit.convert.tf_remote import import_ugatit_from_hub

    src = card.source
    pin_key, revision = _pinned_revision(s, card)
    if s.offline:
        raise ModelUnavailableError(
            f"{card.name} is not cached and offline mode is on",
            f"run `faceedit models download {card.name}` once with internet",
        )
    _quiet_library_logs()
    _check_resolvable(s)
    with _hub_errors(s, src.repo_id or "", src.folder or "", revision):
        model = import_ugatit_from_hub(
            src.repo_id or "",
            src.folder or "",
            revision=revision,
            direction=card.direction or "A2B",
            endpoint=s.endpoint,
            token=s.token,
            offline=s.offline,
            smoothing=card.extra.get("smoothing"),
        )
    s.downloaded = True
    sources = _tf_sources(card, model.config.get("provenance", {}))
    pinned = {f.role: f.sha256 for f in src.files if f.sha256}
    for role, got in sources.items():
        seen = s.ledger.file(got.key)
        expected = pinned.get(role) or (seen or {}).get("sha256")
        if expected and got.sha256 != expected:
            raise CheckpointError(
                f"{got.filename} (commit {got.commit[:10]}) differs from "
                + ("the model card" if role in pinned else "the first download"),
                f"run `faceedit models download {card.name} --force`; report it if it persists",
            )
    _check_against_card(card, model.config)
    how = "checkpoint index " + ("matches the card" if "checkpoint-index" in pinned else "as first seen")
    how += "; crc32c of every tensor"
    _save_converted(s, card, model, folder, sources, how, pin_key)
    return how


def _tf_sources(card: ModelCard, prov: dict[str, Any]) -> dict[str, _Fetched]:
    """The index and data file as tfremote reported them (data: the hub's sha256 ETag of the file)."""
    repo, commit = card.source.repo_id or "", prov.get("source_revision") or ""
    index_file = str(prov.get("source_file", "")).removeprefix(f"hf://{repo}/")
    index = _Fetched(
        repo, index_file, Path(), commit, prov.get("index_sha256") or "", prov.get("index_size") or 0
    )
    out = {"checkpoint-index": index}
    if prov.get("data_file") and prov.get("data_etag"):
        out["checkpoint-data"] = _Fetched(
            repo, prov["data_file"], Path(), commit, prov["data_etag"], prov.get("data_size") or 0
        )
    return out


def _save_converted(
    s: _Session,
    card: ModelCard,
    model: FaceModel,
    folder: Path,
    sources: dict[str, _Fetched],
    how: str,
    pin_key: str,
) -> None:
    """Write the converted folder (card fields + provenance in config.json) and record it in the ledger.

    ``sources``: role (as in the card's files) -> what was fetched for it.
    """
    from faceedit import models

    fields = card.config_fields()
    model.config.update(
        {k: fields[k] for k in ("attributes", "image_size", "template", "resize", "conditioning")}
    )
    if card.direction:
        model.config["direction"] = card.direction
    commit = next(iter(sources.values())).commit if sources else None
    model.config.setdefault("provenance", {}).update(
        {
            "card": card.name,
            "hub_repo": card.source.repo_id,
            "hub_revision": commit,
            "hub_files": {f.filename: f.sha256 for f in sources.values()},
            "verification": how,
            "created_by": f"faceedit {__version__}",
        }
    )
    with _cache_writable():
        models.save(model, folder, overwrite=True)
    weights = folder / "model.safetensors"
    digest, _, size = file_digests(weights)
    entry = {
        "sha256": digest,
        "size": size,
        "mtime_ns": weights.stat().st_mtime_ns,
        "commit": commit,
        "config_sha256": file_digests(folder / "config.json")[0],
        "verification": how,
        "sources": {role: f.sha256 for role, f in sources.items()},
    }
    files = {f.key: _file_entry(f) for f in sources.values() if s.ledger.file(f.key) is None}
    pins = {pin_key: commit} if commit and not card.source.revision else {}
    s.ledger.record(files=files, pins=pins, models={card.name: entry})


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
