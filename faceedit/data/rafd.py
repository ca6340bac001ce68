"""RaFD as StarGAN's official loader reads it, and the CelebA + RaFD pair of ``Solver.train_multi``.

Layout: a folder per expression (``torchvision.datasets.ImageFolder``: class = sorted folder names =
the 8 expressions), or one folder of RaFD's own files (``Rafd090_01_Caucasian_female_angry_frontal.jpg``:
the expression is a field of the name). Images: (flip) -> CenterCrop(rafd_crop) -> Resize(image_size).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from faceedit.data import common
from faceedit.data.common import TEMPLATES, ImageSource, LoaderSpec, Template, TrainData
from faceedit.errors import UsageError
from faceedit.expressions import RAFD_EXPRESSIONS

EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")  # ImageFolder's
_MAX_LISTED = 3


@dataclass(frozen=True)
class RaFDIndex:
    """Image paths relative to ``root`` in ImageFolder order, and their expression index [N] int64."""

    root: Path
    names: tuple[str, ...]
    labels: np.ndarray


def expected_layout() -> str:
    """One sentence saying what a RaFD-format folder holds (used in every layout error)."""
    return (
        f"a RaFD folder holds one sub-folder per expression ({', '.join(RAFD_EXPRESSIONS)}), as "
        "torchvision's ImageFolder reads it, or RaFD's own files whose names carry the expression "
        "(Rafd090_01_Caucasian_female_angry_frontal.jpg)"
    )


def expression_of(name: str) -> str | None:
    """The expression field of a RaFD file name (``..._happy_frontal.jpg`` -> happy), or None."""
    fields = [f.lower() for f in Path(name).stem.split("_")]
    found = [f for f in fields if f in RAFD_EXPRESSIONS]
    return found[0] if len(found) == 1 else None


def _images(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_file() and p.suffix.lower() in EXTENSIONS)


def read_index(root: Path | str) -> RaFDIndex:
    """Check the folder and list its images with their expression; all problems in one UsageError."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise UsageError(f"RaFD folder {root} does not exist or is not a folder", expected_layout())
    folders = sorted(d.name for d in root.iterdir() if d.is_dir())
    problems: list[str] = []
    names: list[str] = []
    labels: list[int] = []
    if folders:
        # ImageFolder numbers the classes by sorted folder name: another folder would shift them all.
        extra = [f for f in folders if f.lower() not in RAFD_EXPRESSIONS]
        missing = [e for e in RAFD_EXPRESSIONS if e not in {f.lower() for f in folders}]
        if extra:
            problems.append(
                f"{root} has folder(s) that are not expressions: {', '.join(extra[:_MAX_LISTED])}"
            )
        if missing:
            problems.append(f"{root} has no folder for {', '.join(missing)}")
        for folder in folders:
            if folder.lower() in RAFD_EXPRESSIONS:
                found = _images(root / folder)
                if not found:
                    problems.append(f"{root / folder}/ holds no images ({', '.join(EXTENSIONS)})")
                names += [f"{folder}/{n}" for n in found]
                labels += [RAFD_EXPRESSIONS.index(folder.lower())] * len(found)
    else:
        found = _images(root)
        unnamed = [n for n in found if expression_of(n) is None]
        if unnamed:
            problems.append(
                f"{len(unnamed)} file(s) name no expression (e.g. {', '.join(unnamed[:_MAX_LISTED])})"
            )
        names = [n for n in found if expression_of(n) is not None]
        labels = [RAFD_EXPRESSIONS.index(expression_of(n) or "") for n in names]
        if not found:
            problems.append(f"{root} holds no images and no expression folders")
    if problems:
        raise UsageError("the RaFD data is not usable: " + "; ".join(problems), expected_layout())
    return RaFDIndex(root, tuple(names), np.asarray(labels, np.int64))


def template(crop: int) -> Template:
    """The official RaFD transform: CenterCrop(crop) (zero padding around smaller images), bilinear."""
    return Template(f"rafd-{crop}", crop, None, None, "bilinear")


class RaFDDataset(Dataset):
    """(image uint8 [3,S,S], expression index int64 []) for keys ``(row, epoch)``; random flip if asked."""

    def __init__(self, images: ImageSource, labels: np.ndarray, flip: bool, seed: int, stream: int) -> None:
        self.images, self.labels, self.flip, self.seed, self.stream = images, labels, flip, seed, stream

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        i, epoch = key
        image = self.images[i]
        if self.flip and common.augment_rng(self.seed, self.stream, epoch, i).random() < 0.5:
            image = image[:, ::-1]
        return common.to_chw_tensor(image), torch.tensor(int(self.labels[i]))


def _fixed(dataset: RaFDDataset, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n images spread over the whole list (so the sample grid shows several expressions), unflipped."""
    rows = np.unique(np.linspace(0, len(dataset) - 1, min(n, len(dataset))).round().astype(int))
    shown = RaFDDataset(dataset.images, dataset.labels, False, dataset.seed, dataset.stream)
    items = [shown[(int(r), 0)] for r in rows]
    return torch.stack([x for x, _ in items]), torch.stack([y for _, y in items])


def _rafd_loader(root: str, cfg: Any, spec: LoaderSpec, stream: int) -> tuple[Any, int, RaFDDataset]:
    index = read_index(root)
    source = ImageSource(index.root, index.names, template(cfg.rafd_crop), cfg.image_size)
    dataset = RaFDDataset(source, index.labels, cfg.flip, spec.seed, stream)
    batches, per_epoch = common.make_loader(dataset, len(dataset), spec, stream)
    return batches, per_epoch, dataset


def open_training(cfg: Any, spec: LoaderSpec) -> TrainData:
    """rafd: batches (x, expression) of ``cfg.data``. both: batches ((x, CelebA labels), (x, expression))
    from ``cfg.data`` (CelebA) and ``cfg.rafd``, one of each per step as train_multi; fixed = CelebA's."""
    if cfg.dataset == "rafd":
        batches, per_epoch, dataset = _rafd_loader(cfg.data, cfg, spec, 0)
        return TrainData(batches, _fixed(dataset, cfg.n_samples), per_epoch, {"rafd": len(dataset)})
    from faceedit.data import celeba

    _need_rafd(cfg)
    index = celeba.read_index(cfg.data, cfg.attrs, cfg.split)
    celeba_spec = dataclasses.replace(spec, workers=spec.workers - spec.workers // 2)
    faces = celeba.open_training(
        index,
        "stargan",
        cfg.split,
        TEMPLATES[cfg.template],
        cfg.image_size,
        cfg.flip,
        celeba_spec,
        cfg.n_samples,
    )
    rafd_spec = dataclasses.replace(spec, workers=spec.workers // 2)
    batches, _, dataset = _rafd_loader(cfg.rafd, cfg, rafd_spec, 1)
    counts = {**faces.counts, "rafd": len(dataset)}
    return TrainData(zip(faces.batches, batches, strict=True), faces.fixed, faces.steps_per_epoch, counts)


def _need_rafd(cfg: Any) -> None:
    if not cfg.rafd:
        raise UsageError(
            "dataset both trains on CelebA (--data) and RaFD, but no RaFD folder is given", "pass --rafd DIR"
        )


def check_data(cfg: Any) -> dict[str, int]:
    """Image counts of the folders ``cfg`` trains on (nothing decoded)."""
    if cfg.dataset == "rafd":
        return {"rafd": len(read_index(cfg.data).names)}
    from faceedit.data import celeba

    index = celeba.read_index(cfg.data, cfg.attrs, cfg.split)
    counts = {k: len(v) for k, v in celeba.split_rows(index, "stargan", cfg.split).items()}
    _need_rafd(cfg)
    return {**counts, "rafd": len(read_index(cfg.rafd).names)}
