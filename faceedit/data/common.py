"""Training data plumbing the dataset modules share: crop templates, image sources, batches, loaders, prepare.

Images leave the workers as uint8 ``[N,3,S,S]`` (4x less to pin and copy than float) and become float
in [-1, 1] on the device (:func:`to_input`, the formula of ``images.to_tensor``). The batch order and every
random flip or crop are pure functions of (seed, step), so a resumed run sees exactly the same data.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from faceedit import specs
from faceedit.errors import UsageError
from faceedit.fsutil import write_bytes_atomic

if TYPE_CHECKING:  # torch is imported where it is used: `faceedit prepare`'s workers never load it
    import torch
    from torch.utils.data import Dataset

PREPARED_FILE = "faceedit-prepared.json"
PREPARED_FORMAT = "faceedit.prepared-data"
_RESAMPLE = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}


@dataclass(frozen=True)
class Template:
    """How a training photo becomes a square: a crop box (None = whole picture), then a resize.

    ``top``/``left`` None centre the box as torchvision's CenterCrop does (``round((H - crop) / 2)``).
    """

    name: str
    crop: int | None
    top: int | None
    left: int | None
    resize: str  # "bilinear" | "bicubic" (PIL filters, as torchvision's Resize uses on PIL images)

    def box(self, width: int, height: int) -> tuple[int, int, int, int]:
        """(left, top, right, bottom) of the crop inside a ``width`` x ``height`` photo."""
        if self.crop is None:
            return 0, 0, width, height
        top = round((height - self.crop) / 2) if self.top is None else self.top
        left = round((width - self.crop) / 2) if self.left is None else self.left
        return left, top, left + self.crop, top + self.crop


def _from_spec(spec: specs.TemplateSpec) -> Template:
    """The training crop of a template: centred boxes stay centred (torchvision's CenterCrop)."""
    if spec.crop is None:
        return Template(spec.name, None, None, None, spec.resize)
    top, left = (None, None) if spec.centred else (spec.top, spec.left)
    return Template(spec.name, spec.crop, top, left, spec.resize)


# Training crops of the templates that are defined on CelebA's aligned photos, plus U-GAT-IT's selfie.
TEMPLATES: dict[str, Template] = {
    name: _from_spec(t) for name, t in specs.TEMPLATES.items() if t.crop is not None or name == "selfie"
}


def load_image(path: Path, template: Template, size: int) -> np.ndarray:
    """Decode ``path``, crop by ``template``, resize to ``size`` x ``size`` -> uint8 [S,S,3] RGB."""
    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            box = template.box(*im.size)
            if box != (0, 0, *im.size):
                im = im.crop(box)
            if im.size != (size, size):
                im = im.resize((size, size), _RESAMPLE[template.resize])
            return np.asarray(im, dtype=np.uint8)
    except (OSError, UnidentifiedImageError) as e:
        raise UsageError(f"cannot decode training image {path}: {e}", "remove or replace the file") from e


class ImageSource:
    """The images of one folder in a fixed order, from JPEGs (decoded per call) or a prepared array.

    Picklable: each DataLoader worker opens the memory map itself on first use.
    """

    def __init__(
        self,
        folder: Path,
        names: Sequence[str],
        template: Template,
        size: int,
        array: Path | None = None,
        rows: np.ndarray | None = None,
    ) -> None:
        self.folder, self.names, self.template, self.size = folder, tuple(names), template, size
        self.array_path, self.rows = array, rows  # rows: positions of ``names`` inside the array
        self._array: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, i: int) -> np.ndarray:
        """Image ``i`` as uint8 [S,S,3] RGB, already cropped and resized."""
        if self.array_path is None:
            return load_image(self.folder / self.names[i], self.template, self.size)
        if self._array is None:
            self._array = np.load(self.array_path, mmap_mode="r")
        return np.asarray(self._array[self.rows[i] if self.rows is not None else i])

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_array": None}


def open_images(root: Path, folder: str, names: Sequence[str], template: Template, size: int) -> ImageSource:
    """The source for ``root/folder``: the prepared array when ``root`` was prepared, else the files."""
    manifest = read_prepared(root)
    if manifest is None:
        return ImageSource(root / folder, names, template, size)
    entry = manifest["folders"].get(folder)
    problems = []
    if entry is None:
        problems.append(f"it holds no {folder}")
    elif manifest["template"] != template.name or entry["size"] != size:
        problems.append(
            f"{folder} holds {manifest['template']} crops at {entry['size']} px, "
            f"this run needs {template.name} at {size} px"
        )
    if problems:
        raise UsageError(
            f"{root} is a prepared dataset but {problems[0]}",
            "run `faceedit prepare` again for this model and --image-size, or use the original folder",
        )
    stored = (root / f"{folder}.txt").read_text(encoding="utf-8").split("\n")
    position = {name: i for i, name in enumerate(stored)}
    missing = [n for n in names if n not in position]
    if missing:
        raise UsageError(
            f"{root}/{folder}.npy lacks {len(missing)} listed image(s) (e.g. {missing[0]})",
            "run `faceedit prepare` again",
        )
    rows = np.asarray([position[n] for n in names], np.int64)
    return ImageSource(root / folder, names, template, size, root / f"{folder}.npy", rows)


def read_prepared(root: Path) -> dict[str, Any] | None:
    """The manifest of a folder written by ``faceedit prepare``, or None for an ordinary dataset."""
    path = Path(root) / PREPARED_FILE
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise UsageError(f"{path} is unreadable ({e})", "run `faceedit prepare` again") from e
    if manifest.get("format") != PREPARED_FORMAT:
        raise UsageError(f"{path} is not a faceedit prepared-data manifest", "run `faceedit prepare` again")
    return manifest


def augment_rng(seed: int, stream: int, epoch: int, index: int) -> np.random.Generator:
    """The random generator of one sample's flip/crop: a pure function of where it sits in the run."""
    return np.random.default_rng([seed, stream, epoch, index])


def to_chw_tensor(image: np.ndarray) -> torch.Tensor:
    """uint8 [H,W,3] -> uint8 tensor [3,H,W] (contiguous, so pinning and copies stay cheap)."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))


def to_input(x: torch.Tensor, device: torch.device, channels_last: bool = False) -> torch.Tensor:
    """uint8 [N,3,S,S] -> float32 [N,3,S,S] in [-1, 1] on ``device`` (x / 127.5 - 1, as images.to_tensor)."""
    import torch

    x = x.to(device, non_blocking=True).float().div_(127.5).sub_(1.0)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


# ------------------------------------------------------------------------------------ batch order


class StepBatches:
    """Batch sampler: each step one batch per rank, sharded by DistributedSampler, forever, from ``start``.

    Yields lists of ``(index, epoch)`` keys; the dataset seeds its augmentation from them. Epoch ``e`` is
    DistributedSampler's permutation for ``set_epoch(e)`` (seed + e), so step ``t`` always sees the same
    images whether the run was resumed or not.
    """

    def __init__(
        self,
        n: int,
        batch_size: int,
        seed: int,
        rank: int = 0,
        world: int = 1,
        start: int = 0,
        shuffle: bool = True,
    ) -> None:
        from torch.utils.data import DistributedSampler

        self.sampler = DistributedSampler(
            range(n), num_replicas=world, rank=rank, shuffle=shuffle, seed=seed, drop_last=True
        )
        self.batch_size, self.start = batch_size, start
        self.steps_per_epoch = len(self.sampler) // batch_size

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        epoch, offset = divmod(self.start, self.steps_per_epoch)
        while True:
            self.sampler.set_epoch(epoch)
            order = list(self.sampler)
            for b in range(offset, self.steps_per_epoch):
                chunk = order[b * self.batch_size : (b + 1) * self.batch_size]
                yield [(i, epoch) for i in chunk]
            epoch, offset = epoch + 1, 0


@dataclass(frozen=True)
class LoaderSpec:
    """How batches are cut and delivered: per-process batch size, shard, first step, workers."""

    batch_size: int
    seed: int
    start: int = 0  # first step to deliver (resume)
    rank: int = 0
    world: int = 1
    workers: int = 0
    pin_memory: bool = False


@dataclass
class TrainData:
    """What the loop consumes: endless batches from step ``start``, a fixed sample batch, sizes."""

    batches: Iterator[Any]  # celeba: (x uint8 [N,3,S,S], labels [N,A]); unpaired: (x_A, x_B)
    fixed: Any  # same structure, from held-out images where there are any; never flipped or cropped
    steps_per_epoch: int
    counts: dict[str, int]  # images per split/folder (provenance)


def make_loader(dataset: Dataset, n: int, spec: LoaderSpec, stream: int = 0) -> tuple[Iterator[Any], int]:
    """(endless iterator of batches from step ``spec.start``, steps per epoch)."""
    from torch.utils.data import DataLoader

    batches = StepBatches(
        n, spec.batch_size, spec.seed + 1_000_003 * stream, spec.rank, spec.world, spec.start
    )
    if batches.steps_per_epoch < 1:
        raise UsageError(
            f"{n} training image(s) cannot fill one batch of {spec.batch_size} per process "
            f"({spec.world} process(es))",
            "use a smaller --batch-size or more data",
        )
    loader = DataLoader(
        dataset,
        batch_sampler=batches,
        num_workers=spec.workers,
        pin_memory=spec.pin_memory,
        persistent_workers=spec.workers > 0,
        prefetch_factor=4 if spec.workers > 0 else None,
        worker_init_fn=_leave_signals_to_the_trainer,
    )
    return iter(loader), batches.steps_per_epoch


def _leave_signals_to_the_trainer(worker_id: int) -> None:
    # Ctrl-C and SIGTERM reach the whole process group. The training process finishes its step, saves
    # and shuts the workers down; a worker killed first would make the DataLoader raise mid-step.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def default_workers() -> int:
    """Decoding processes per training process: the CPUs this process may use, at most 8."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    return max(0, min(8, cpus // local - 1))


# ------------------------------------------------------------------------------------ prepare


def _prepare_chunk(args: tuple[str, list[str], Template, int, str, int]) -> int:
    folder, names, template, size, array_path, first = args
    out = np.load(array_path, mmap_mode="r+")
    for k, name in enumerate(names):
        out[first + k] = load_image(Path(folder) / name, template, size)
    out.flush()
    return len(names)


def prepare_folder(
    src: Path,
    names: Sequence[str],
    template: Template,
    size: int,
    dst: Path,
    name: str,
    workers: int,
    advance: Any = None,
) -> None:
    """Write ``dst/name.npy`` (uint8 [N,S,S,3]) and ``dst/name.txt`` (names) from ``src`` images."""
    array_path = dst / f"{name}.npy"
    np.lib.format.open_memmap(
        array_path, mode="w+", dtype=np.uint8, shape=(len(names), size, size, 3)
    ).flush()
    chunk = 256
    jobs = [
        (str(src), list(names[i : i + chunk]), template, size, str(array_path), i)
        for i in range(0, len(names), chunk)
    ]
    if workers > 0:
        # spawn, not fork: forking a process that already runs torch's threads can deadlock the child
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            for done in pool.map(_prepare_chunk, jobs):
                if advance:
                    advance(done)
    else:
        for job in jobs:
            done = _prepare_chunk(job)
            if advance:
                advance(done)
    (dst / f"{name}.txt").write_text("\n".join(names), encoding="utf-8")


def write_prepared(
    dst: Path, template: Template, folders: dict[str, dict[str, int]], copies: Sequence[Path]
) -> None:
    """Finish a prepared folder: copy the label files and write the manifest last."""
    for path in copies:
        write_bytes_atomic(dst / path.name, path.read_bytes())
    manifest = {
        "format": PREPARED_FORMAT,
        "version": 1,
        "template": template.name,
        "resize": template.resize,
        "folders": folders,
    }
    write_bytes_atomic(dst / PREPARED_FILE, json.dumps(manifest, indent=2).encode())
