"""What a model card is: where the weights come from, their licences, and the config a checkpoint
needs (the table of cards itself is :mod:`faceedit.registry`). Standard library only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any

# How a card's weights reach the user (ModelSource.kind).
HUB_UPSTREAM = "hub-upstream"  # official-format checkpoint(s) on the hub -> upstream.import_checkpoint
HUB_TF = "hub-tf"  # official TF checkpoint on the hub; generator fetched by HTTP Range -> tfimport
HUB_FACEEDIT = "hub-faceedit"  # a hub repo in our own format (config.json + model.safetensors)
IMPORT_ONLY = "import-only"  # published outside the hub: the user downloads it and runs `models import`
GITHUB_RAW = "github-raw"  # files in a GitHub repo, pinned by git blob id -> faceedit.github_fetch
SOURCE_KINDS = (HUB_UPSTREAM, HUB_TF, HUB_FACEEDIT, IMPORT_ONLY, GITHUB_RAW)
TASKS = ("edit", "anime", "classify")

CELEBA_NONCOMMERCIAL = (
    "CelebA (MMLAB, CUHK): available for non-commercial research purposes only; images are not "
    "owned by MMLAB and must not be redistributed or used commercially"
)


def _frozen(mapping: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    return None if mapping is None else MappingProxyType(dict(mapping))


@dataclass(frozen=True)
class SourceFile:
    """One file of a card's source, pinned by content where the hash is known."""

    path: str  # path inside the hub repo (or inside the upstream download)
    role: str  # generator | discriminator | checkpoint-index | checkpoint-data | config | weights
    sha256: str | None = None  # 64 hex; None = not known yet (trust-on-first-use ledger instead)
    size: int | None = None  # exact bytes, or None
    git_blob: str | None = None  # 40 hex: sha1 of b"blob <size>\0" + content (github-raw sources)


@dataclass(frozen=True)
class ModelSource:
    """Where the weights are published and how they become a faceedit model folder."""

    kind: str  # one of SOURCE_KINDS
    repo_id: str | None = None  # hub repo (org/name) for hub-* kinds; GitHub owner/name for github-raw
    revision: str | None = None  # full 40-hex commit, or None (then the first download's commit is recorded)
    files: tuple[SourceFile, ...] = ()
    folder: str | None = None  # hub-tf: folder holding the checkpoint inside the repo
    download_mb: float | None = None  # roughly what faceedit downloads (for `models list`)
    url: str | None = None  # where a human finds the files (hub page, release page, Drive folder)
    instructions: str | None = None  # import-only: what to download and which command converts it


@dataclass(frozen=True)
class Licences:
    """Licences of the code, the weights and the training data (all printed by `models info`)."""

    code: str
    weights: str
    dataset: str


@dataclass(frozen=True)
class ModelCard:
    """Everything needed to rebuild, feed and trust one checkpoint (mirrors config.json + hub fields)."""

    name: str  # arch-dataset-resolution[-variant], kebab-case
    task: str  # "edit" (attribute editing) or "anime" (image-to-image)
    arch: str  # key of faceedit.models.ARCHS
    variant: str  # "port" (PyTorch implementation's layout) or "tf" (official TensorFlow numerics)
    generator_kwargs: Mapping[str, Any]  # exact generator constructor kwargs
    attributes: tuple[str, ...]  # CelebA names in training order; () for U-GAT-IT
    image_size: int
    template: str  # crop template of face/align.py: celeba-178 | celeba-170 | celeba-tf | selfie | ffhq
    resize: str  # interpolation the training preprocessing used: bilinear | bicubic
    conditioning: Mapping[str, Any]  # {"scheme": stargan|attgan|stgan|none, "thres_int", "rules": port|tf}
    source: ModelSource
    licences: Licences
    upstream: str  # code the weights were trained with (URL)
    paper: str
    classifier: bool = False  # the model folder carries an attribute classifier (official D's head)
    direction: str | None = None  # U-GAT-IT only: A2B or B2A
    notes: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)  # importer options (e.g. {"smoothing": True})

    def __post_init__(self) -> None:
        # The table is module-global: freeze its mappings so no caller can edit a card in place.
        for name in ("generator_kwargs", "conditioning", "extra"):
            object.__setattr__(self, name, _frozen(getattr(self, name)))
        object.__setattr__(self, "attributes", tuple(self.attributes))

    @property
    def import_only(self) -> bool:
        return self.source.kind == IMPORT_ONLY

    def config_fields(self) -> dict[str, Any]:
        """The config.json fields this card prescribes (see the shared config schema)."""
        config: dict[str, Any] = {
            "arch": self.arch,
            "variant": self.variant,
            "generator_kwargs": dict(self.generator_kwargs),
            "attributes": list(self.attributes),
            "image_size": self.image_size,
            "template": self.template,
            "resize": self.resize,
            "conditioning": dict(self.conditioning),
        }
        if self.direction is not None:
            config["direction"] = self.direction
        return config

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict of every field (for `models info --json`)."""
        return _plain(self)


def _plain(value: Any) -> Any:
    if hasattr(value, "__dataclass_fields__"):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


# ---------------------------------------------------------------------------------------------------
# The table. Facts: ../shared/reference/official-models.md and tf-import.md; hub facts gathered by hand
# (revision/sha256 stay None until someone has read them off the hub: the ledger covers the gap).
