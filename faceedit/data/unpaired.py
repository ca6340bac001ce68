"""Two unpaired image folders (U-GAT-IT's ``trainA/ trainB/ testA/ testB/``) and their augmentation.

Training augmentation as the official code: random horizontal flip, resize to (S+30, S+30), random
S x S crop. The resize happens when an image is loaded (or once, by ``faceedit prepare``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from faceedit.data import common
from faceedit.data.common import TEMPLATES, ImageSource, LoaderSpec, TrainData
from faceedit.errors import UsageError
from faceedit.fsutil import atomic_dir

FOLDERS = ("trainA", "trainB", "testA", "testB")
EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
MARGIN = 30  # official: Resize((S + 30, S + 30)) then RandomCrop(S)


def expected_layout() -> str:
    """One sentence saying what an unpaired folder holds (used in every layout error)."""
    return (
        "an unpaired folder holds trainA/ and trainB/ (images of the two domains, e.g. selfies and "
        "anime faces) and optionally testA/ and testB/ (used for the sample grids)"
    )


def list_folders(root: Path | str) -> dict[str, list[str]]:
    """Sorted image names per present folder; every problem reported together in one UsageError."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise UsageError(f"data folder {root} does not exist or is not a folder", expected_layout())
    manifest = common.read_prepared(root)
    problems, found = [], {}
    for folder in FOLDERS:
        if manifest is not None and folder in manifest["folders"]:
            found[folder] = (root / f"{folder}.txt").read_text(encoding="utf-8").split("\n")
        elif (root / folder).is_dir():
            names = sorted(p.name for p in (root / folder).iterdir() if p.suffix.lower() in EXTENSIONS)
            if not names:
                problems.append(f"{root / folder}/ holds no images ({', '.join(EXTENSIONS)})")
            found[folder] = names
        elif folder.startswith("train"):
            problems.append(f"{root / folder}/ is missing")
    if problems:
        raise UsageError("the training data is not usable: " + "; ".join(problems), expected_layout())
    return found


class UnpairedDataset(Dataset):
    """uint8 [3,S,S] crops of (S+30)-px images for keys ``(index, epoch)``: random flip and crop."""

    def __init__(self, images: ImageSource, size: int, seed: int, stream: int, train: bool = True) -> None:
        self.images, self.size, self.seed, self.stream, self.train = images, size, seed, stream, train

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, key: tuple[int, int]) -> torch.Tensor:
        i, epoch = key
        image = self.images[i]
        room = image.shape[0] - self.size
        if not self.train:  # sample grids: the centre crop, no flip
            top = left = room // 2
        else:
            rng = common.augment_rng(self.seed, self.stream, epoch, i)
            if rng.random() < 0.5:
                image = image[:, ::-1]
            top, left = (int(v) for v in rng.integers(0, room + 1, size=2))
        return common.to_chw_tensor(image[top : top + self.size, left : left + self.size])


def open_training(root: Path | str, size: int, spec: LoaderSpec, n_fixed: int = 4) -> TrainData:
    """Batches (x_A, x_B) from step ``spec.start``, and a fixed pair batch from testA/testB (else train)."""
    root = Path(root).expanduser()
    names = list_folders(root)
    load = size + MARGIN
    sources = {f: common.open_images(root, f, n, TEMPLATES["selfie"], load) for f, n in names.items()}
    workers = (spec.workers - spec.workers // 2, spec.workers // 2)
    loaders, per_epoch = [], []
    for stream, domain in enumerate("AB"):
        source = sources[f"train{domain}"]
        dataset = UnpairedDataset(source, size, spec.seed, stream)
        it, n = common.make_loader(
            dataset, len(source), dataclasses.replace(spec, workers=workers[stream]), stream
        )
        loaders.append(it)
        per_epoch.append(n)
    fixed = []
    for domain in "AB":
        source = sources.get(f"test{domain}") or sources[f"train{domain}"]
        shown = UnpairedDataset(source, size, spec.seed, 0, train=False)
        fixed.append(torch.stack([shown[(i, 0)] for i in range(min(n_fixed, len(shown)))]))
    counts = {f: len(n) for f, n in names.items()}
    return TrainData(zip(*loaders, strict=True), tuple(fixed), min(per_epoch), counts)


def prepare(
    src: Path, dst: Path, size: int, workers: int, advance: Any = None, overwrite: bool = False
) -> int:
    """Resize every image of ``src`` once to (size + 30)² into ``dst``; flips and crops stay random."""
    if common.read_prepared(src) is not None:
        raise UsageError(f"{src} is already a prepared dataset", "prepare from the original folders")
    names = list_folders(src)
    with atomic_dir(dst, overwrite=overwrite) as tmp:
        for folder, found in names.items():
            common.prepare_folder(
                src / folder, found, TEMPLATES["selfie"], size + MARGIN, tmp, folder, workers, advance
            )
        folders = {f: {"size": size + MARGIN, "count": len(found)} for f, found in names.items()}
        common.write_prepared(tmp, TEMPLATES["selfie"], folders, [])
    return sum(len(found) for found in names.values())
