"""CelebA as the official training code reads it: layout checks, attribute table, splits, crops.

Layout: ``img_align_celeba/*.jpg`` (178x218 aligned photos), ``list_attr_celeba.txt`` (count line,
header line, one ``name ±1 ...`` row per image), optionally ``list_eval_partition.txt`` (``name 0|1|2``).
"""

from __future__ import annotations

import os
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from faceedit.data import common
from faceedit.data.common import ImageSource, LoaderSpec, Template, TrainData
from faceedit.errors import UsageError
from faceedit.fsutil import atomic_dir

IMAGE_DIR = "img_align_celeba"
ATTR_FILE = "list_attr_celeba.txt"
PARTITION_FILE = "list_eval_partition.txt"

# Split schemes: "official" = the split of the model's official code, "celeba" = list_eval_partition.txt,
# "all" = every image is a training image (small or custom datasets).
SPLITS = ("official", "celeba", "all")
_MAX_LISTED = 5  # problems name at most this many offending lines/files


@dataclass(frozen=True)
class CelebAIndex:
    """The checked attribute table: file names in file order and 0/1 labels of the chosen attributes."""

    root: Path
    names: tuple[str, ...]
    labels: np.ndarray  # [N, A] float32 in {0, 1}, columns in the order of ``attributes``
    attributes: tuple[str, ...]
    partition: np.ndarray | None  # [N] int8 (0 train, 1 valid, 2 test), None without the file


def expected_layout() -> str:
    """One sentence saying what a CelebA-format folder holds (used in every layout error)."""
    return (
        f"a CelebA-format folder holds {IMAGE_DIR}/ (the aligned 178x218 JPEGs), {ATTR_FILE} "
        f"(a count line, a header line of attribute names, then 'name ±1 ...' rows) and optionally "
        f"{PARTITION_FILE} ('name 0|1|2' rows)"
    )


def read_index(root: Path | str, attributes: Sequence[str], split: str = "official") -> CelebAIndex:
    """Check the folder and read the attribute table; every problem is reported in one UsageError."""
    root = Path(root).expanduser()
    problems: list[str] = []
    if not root.is_dir():
        raise UsageError(f"data folder {root} does not exist or is not a folder", expected_layout())
    if not (root / IMAGE_DIR).is_dir() and not (root / f"{IMAGE_DIR}.npy").is_file():
        problems.append(f"{root / IMAGE_DIR}/ is missing")
    table = _read_attr_file(root / ATTR_FILE, problems)
    partition = None
    if (root / PARTITION_FILE).is_file():
        partition = _read_partition(root / PARTITION_FILE, table[0] if table else None, problems)
    elif split == "celeba":
        problems.append(f"{root / PARTITION_FILE} is missing (split = 'celeba' needs it)")
    labels = np.zeros((0, len(attributes)), np.float32)
    names: tuple[str, ...] = ()
    if table is not None:
        names, header, values = table
        missing = [a for a in attributes if a not in header]
        if missing:
            problems.append(
                f"{ATTR_FILE} has no column for {', '.join(missing)} (it has: {', '.join(header)})"
            )
        else:
            cols = [header.index(a) for a in attributes]
            labels = (values[:, cols] > 0).astype(np.float32)
        if (root / IMAGE_DIR).is_dir():
            _check_images_exist(root / IMAGE_DIR, names, problems)
    if problems:
        raise UsageError("the training data is not usable: " + "; ".join(problems), expected_layout())
    return CelebAIndex(root, names, labels, tuple(attributes), partition)


def _read_attr_file(path: Path, problems: list[str]) -> tuple[tuple[str, ...], list[str], np.ndarray] | None:
    """-> (names, header, values [N,H] int8 of ±1), or None after adding what is wrong to ``problems``."""
    if not path.is_file():
        problems.append(f"{path} is missing")
        return None
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        problems.append(f"{path} cannot be read ({e})")
        return None
    if len(lines) < 3 or not lines[0].strip().isdigit():
        problems.append(f"{path}: expected a count line, a header line and rows; got {len(lines)} line(s)")
        return None
    header = lines[1].split()
    names, rows, bad = [], [], []
    for number, line in enumerate(lines[2:], start=3):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != len(header) + 1 or any(v not in ("1", "-1") for v in fields[1:]):
            bad.append(number)
            continue
        names.append(fields[0])
        rows.append([int(v) for v in fields[1:]])
    if bad:
        listed = ", ".join(str(n) for n in bad[:_MAX_LISTED]) + (" ..." if len(bad) > _MAX_LISTED else "")
        problems.append(
            f"{path}: {len(bad)} malformed row(s) (line {listed}); each row is a file name and "
            f"{len(header)} values of 1 or -1"
        )
    if int(lines[0]) != len(names) + len(bad):
        problems.append(
            f"{path}: the count line says {int(lines[0])} images but {len(names) + len(bad)} rows follow"
        )
    return tuple(names), header, np.asarray(rows, np.int8).reshape(len(rows), len(header))


def _read_partition(path: Path, names: Sequence[str] | None, problems: list[str]) -> np.ndarray | None:
    parts: dict[str, int] = {}
    bad = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        fields = line.split()
        if fields and (len(fields) != 2 or fields[1] not in ("0", "1", "2")):
            bad.append(number)
        elif fields:
            parts[fields[0]] = int(fields[1])
    if bad:
        problems.append(
            f"{path}: malformed line(s) {', '.join(map(str, bad[:_MAX_LISTED]))}; expected 'name 0|1|2'"
        )
        return None
    if names is None:
        return None
    unknown = [n for n in names if n not in parts]
    if unknown:
        problems.append(
            f"{path} lists no split for {len(unknown)} image(s) of {ATTR_FILE} (e.g. {unknown[0]})"
        )
        return None
    return np.asarray([parts[n] for n in names], np.int8)


def _check_images_exist(folder: Path, names: Sequence[str], problems: list[str]) -> None:
    present = set(os.listdir(folder))  # one listing: 200k stat calls would take seconds on network disks
    missing = [n for n in names if n not in present]
    if missing:
        listed = ", ".join(missing[:_MAX_LISTED]) + (" ..." if len(missing) > _MAX_LISTED else "")
        problems.append(f"{len(missing)} image(s) listed in {ATTR_FILE} are not in {folder}/ ({listed})")


def split_rows(index: CelebAIndex, arch: str, scheme: str) -> dict[str, np.ndarray]:
    """Row numbers of the train and test images under ``scheme`` (see SPLITS) for ``arch``'s code.

    official: StarGAN shuffles the rows with ``random.seed(1234)`` and holds out the first 1,999;
    AttGAN-PyTorch trains on rows [:182000] and tests on [182637:]; the STGAN port holds out the last
    2,000 (its test set is the last 1,800); U-GAT-IT has no CelebA split.
    """
    n = len(index.names)
    rows = np.arange(n)
    if scheme == "all":
        return {"train": rows, "test": rows[:0]}
    if scheme == "celeba":
        assert index.partition is not None  # read_index reports the missing file
        return {"train": rows[index.partition == 0], "test": rows[index.partition == 2]}
    if arch == "stargan":
        order = list(range(n))
        random.Random(1234).shuffle(order)  # same stream as random.seed(1234); random.shuffle(lines)
        return {"train": np.asarray(order[1999:], np.int64), "test": np.asarray(order[:1999], np.int64)}
    if arch == "attgan":
        return {"train": rows[:182000], "test": rows[182637:]}
    return {"train": rows[: max(n - 2000, 0)], "test": rows[max(n - 1800, 0) :]}


class CelebADataset(Dataset):
    """(image uint8 [3,S,S], labels float [A]) for keys ``(row, epoch)``; random horizontal flip if asked."""

    def __init__(self, images: ImageSource, labels: np.ndarray, flip: bool, seed: int) -> None:
        self.images, self.labels, self.flip, self.seed = images, labels, flip, seed

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        i, epoch = key
        image = self.images[i]
        if self.flip and common.augment_rng(self.seed, 0, epoch, i).random() < 0.5:
            image = image[:, ::-1]
        return common.to_chw_tensor(image), torch.from_numpy(self.labels[i])


def open_training(
    index: CelebAIndex,
    arch: str,
    split: str,
    template: Template,
    size: int,
    flip: bool,
    spec: LoaderSpec,
    n_fixed: int = 8,
) -> TrainData:
    """Batches of the train split from step ``spec.start`` and a fixed batch of held-out images."""
    rows = split_rows(index, arch, split)
    train, test = rows["train"], rows["test"]
    if len(train) == 0:
        raise UsageError(
            f"the {split!r} split of {arch} leaves no training images among {len(index.names)}",
            "use split = 'all' (or 'celeba' with list_eval_partition.txt) for small datasets",
        )
    dataset = CelebADataset(_subset(index, train, template, size), index.labels[train], flip, spec.seed)
    batches, per_epoch = common.make_loader(dataset, len(train), spec)
    shown = test if len(test) >= n_fixed else train
    fixed_set = CelebADataset(
        _subset(index, shown[:n_fixed], template, size), index.labels[shown[:n_fixed]], False, spec.seed
    )
    items = [fixed_set[(i, 0)] for i in range(len(fixed_set))]
    fixed = (torch.stack([x for x, _ in items]), torch.stack([a for _, a in items]))
    return TrainData(batches, fixed, per_epoch, {"train": len(train), "test": len(test)})


def _subset(index: CelebAIndex, rows: np.ndarray, template: Template, size: int) -> ImageSource:
    return common.open_images(index.root, IMAGE_DIR, [index.names[r] for r in rows], template, size)


def prepare(
    src: Path,
    dst: Path,
    template: Template,
    size: int,
    workers: int,
    advance: Any = None,
    overwrite: bool = False,
) -> int:
    """Crop and resize every image of ``src`` once into ``dst`` (same layout, images as one uint8 array).

    Training from ``dst`` decodes nothing; the attribute and partition files are copied. Returns the
    number of images.
    """
    if common.read_prepared(src) is not None:
        raise UsageError(f"{src} is already a prepared dataset", "prepare from the original CelebA folder")
    index = read_index(src, (), split="all")
    copies = [p for p in (src / ATTR_FILE, src / PARTITION_FILE) if p.is_file()]
    with atomic_dir(dst, overwrite=overwrite) as tmp:
        common.prepare_folder(src / IMAGE_DIR, index.names, template, size, tmp, IMAGE_DIR, workers, advance)
        common.write_prepared(tmp, template, {IMAGE_DIR: {"size": size, "count": len(index.names)}}, copies)
    return len(index.names)
