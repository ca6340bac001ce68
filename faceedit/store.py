"""Model specs -> verified local model folders: card names, ``hf:ORG/REPO[@REV]`` and ``local:DIR``.

Official checkpoints named by a card are fetched (:mod:`faceedit.hub`), converted once (``upstream`` or
``convert.tf_remote``) and kept as a model folder in the faceedit cache with their provenance; once a
model has been fetched, resolving it again makes no network request at all.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from faceedit import __version__, console, hubnet, settings
from faceedit.errors import CheckpointError, ModelUnavailableError, UsageError
from faceedit.hub import (
    _HEX40,
    CHECKPOINT_SUFFIXES,
    MODEL_FILES,
    Ledger,
    ResolvedModel,
    _cache_writable,
    _discard,
    _fetch,
    _Fetched,
    _file_entry,
    _hub_errors,
    _network_checks,
    _Session,
    converted_dir,
    file_digests,
)
from faceedit.registry import (
    GITHUB_RAW,
    HUB_FACEEDIT,
    HUB_TF,
    HUB_UPSTREAM,
    ModelCard,
    UnknownModelError,
    get_card,
)

if TYPE_CHECKING:
    from faceedit.models import FaceModel


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
        offline=settings.offline(offline),
        endpoint=settings.endpoint(endpoint),
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
    return ResolvedModel(
        spec,
        path,
        None,
        False,
        "local folder (weights checked against its config.json sha256 on load)",
        False,
    )


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
            f"{card.name} cannot be downloaded by faceedit (no hub copy of its weights)",
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
    elif card.source.kind == GITHUB_RAW:  # files pinned by git blob id, outside the hub
        from faceedit.github_fetch import import_card

        model, how = import_card(card, offline=s.offline, progress=s.progress)
        _save_converted(s, card, model, folder, {}, how, "")
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
    _network_checks(s)
    with _hub_errors(s, src.repo_id or "", src.folder or "", revision), hubnet.bounded():
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
