"""The STGAN paper's measurements for any attribute model on CelebA: per-attribute editing accuracy and
preservation error with an attribute classifier (protocol of csmliu/STGAN ``att_classification/test.py``),
and reconstruction PSNR / SSIM. Images are uint8 RGB at the model's size, as the papers saved them.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from faceedit import attributes, expressions
from faceedit.errors import UsageError

SPLITS = ("test", "all")
OFFICIAL_TEST_START = 182637  # CelebA's test images are 182638.jpg .. 202599.jpg (file rows 182637..)


@dataclass(frozen=True)
class Options:
    """How one evaluation runs (shared by every model of a run)."""

    split: str = "test"
    limit: int | None = None
    batch_size: int = 16
    intensity: float = 1.0  # test_int: the STGAN paper's numbers need 2
    save_images: Path | None = None


# ------------------------------------------------------------------------------------------ the data


def eval_rows(index: Any, split: str, limit: int | None) -> np.ndarray:
    """Rows of ``index`` (a CelebAIndex) to score: CelebA's test partition (list_eval_partition.txt,
    else the official image range) or every row; the first ``limit`` of them."""
    if split not in SPLITS:
        raise UsageError(f"unknown split {split!r}", f"use one of {', '.join(SPLITS)}")
    rows = np.arange(len(index.names))
    if split == "test":
        rows = rows[index.partition == 2] if index.partition is not None else rows[OFFICIAL_TEST_START:]
    if len(rows) == 0:
        raise UsageError(
            f"{index.root} has no test images (partition 2 of list_eval_partition.txt, or rows from "
            f"{OFFICIAL_TEST_START + 1})",
            "pass --split all to score every image of a small folder",
        )
    return rows[:limit] if limit else rows


def check_model(config: dict[str, Any], label: str) -> list[str]:
    """The attributes ``config`` edits; a model without any (U-GAT-IT, a classifier) is a usage error."""
    if config["conditioning"]["scheme"] == "none" or not config["attributes"]:
        raise UsageError(
            f"{label} ({config['arch']}) does not edit attributes",
            "eval scores attribute editors: StarGAN, AttGAN, STGAN",
        )
    return list(config["attributes"])


def classifier_columns(names: Sequence[str], known: Sequence[str], label: str) -> list[int]:
    """Column of each model attribute among the classifier's outputs."""
    missing = [n for n in names if n not in known]
    if missing:
        raise UsageError(
            f"the classifier does not know {', '.join(missing)} (edited by {label})",
            "use a classifier trained on every attribute of the model (the default knows all 40 of CelebA)",
        )
    return [list(known).index(n) for n in names]


# ------------------------------------------------------------------------------------------ geometry


def frame_matrix(src: str, src_size: int, dst: str, dst_size: int) -> np.ndarray | None:
    """2x3 matrix from ``dst`` crop pixels to ``src`` crop pixels (pixel centres), both being crops of
    CelebA's aligned 178x218 frame (faceedit.data.TEMPLATES boxes); None when the frames coincide."""
    from faceedit.data import TEMPLATES

    boxes = []
    for name in (src, dst):
        template = TEMPLATES.get(name)
        if template is None or template.crop is None:
            raise UsageError(
                f"the {name} crop is not a box of CelebA's aligned images",
                "eval needs a model trained on CelebA crops (celeba-178, celeba-170, celeba-tf)",
            )
        boxes.append(template.box(178, 218))
    (sx, sy, sr, _), (dx, dy, dr, _) = boxes
    k_src, k_dst = (sr - sx) / src_size, (dr - dx) / dst_size  # frame pixels per crop pixel
    scale = k_dst / k_src
    # frame x = left + (u + 0.5) * k - 0.5 in both crops; solve for the src pixel of a dst pixel
    offset = [(d - s + 0.5 * k_dst) / k_src - 0.5 for d, s in ((dx, sx), (dy, sy))]
    matrix = np.array([[scale, 0.0, offset[0]], [0.0, scale, offset[1]]])
    same = src_size == dst_size and np.allclose(matrix, [[1, 0, 0], [0, 1, 0]], atol=1e-9)
    return None if same else matrix


def to_frame(crops: Sequence[np.ndarray], matrix: np.ndarray | None, size: int) -> list[np.ndarray]:
    """uint8 crops resampled into another frame (bicubic, edges replicated where it reaches past them)."""
    import cv2

    if matrix is None:
        return list(crops)
    flags = cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP
    return [
        cv2.warpAffine(c, matrix, (size, size), flags=flags, borderMode=cv2.BORDER_REPLICATE) for c in crops
    ]


def describe_mapping(src: str, src_size: int, dst: str, dst_size: int) -> str:
    matrix = frame_matrix(src, src_size, dst, dst_size)
    if matrix is None:
        return f"{src}@{src_size} is the classifier's frame: no resampling"
    return (
        f"{src}@{src_size} -> {dst}@{dst_size}: affine (scale {matrix[0, 0]:.4f}, offset "
        f"{matrix[0, 2]:.2f}, {matrix[1, 2]:.2f} px), bicubic, edges replicated"
    )


# ------------------------------------------------------------------------------------------ metrics


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR of two uint8 images, data range 255 (inf when identical)."""
    from skimage.metrics import peak_signal_noise_ratio

    with np.errstate(divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(peak_signal_noise_ratio(a, b, data_range=255))


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """scikit-image SSIM of two uint8 RGB images (channel_axis=-1, data range 255)."""
    from skimage.metrics import structural_similarity

    return float(structural_similarity(a, b, channel_axis=-1, data_range=255))


def require_skimage() -> None:
    try:
        import skimage.metrics  # noqa: F401
    except ImportError:
        raise UsageError(
            "faceedit eval needs scikit-image for PSNR/SSIM", "pip install 'faceedit[eval]'"
        ) from None


@dataclass
class Tally:
    """Counts of one model's run; ``result`` turns them into the paper's figures."""

    names: list[str]
    hits: np.ndarray = field(init=False)  # [A] edited attribute predicted as the target
    errors: np.ndarray = field(init=False)  # [A] other attributes predicted unlike the image's labels
    psnrs: list[float] = field(default_factory=list)
    ssims: list[float] = field(default_factory=list)
    images: int = 0

    def __post_init__(self) -> None:
        self.hits = np.zeros(len(self.names), np.int64)
        self.errors = np.zeros(len(self.names), np.int64)

    def result(self) -> dict[str, Any]:
        n, others = max(self.images, 1), max(len(self.names) - 1, 1)
        acc, err = self.hits / n, self.errors / (n * others)
        mean_psnr = float(np.mean(self.psnrs)) if self.psnrs else math.nan
        return {
            "images": self.images,
            "attributes": {
                a: {"accuracy": float(acc[i]), "preservation_error": float(err[i])}
                for i, a in enumerate(self.names)
            },
            "mean_accuracy": float(acc.mean()),
            "mean_preservation_error": float(err.mean()),
            "psnr": "inf" if math.isinf(mean_psnr) else mean_psnr,
            "ssim": float(np.mean(self.ssims)) if self.ssims else math.nan,
        }


# ------------------------------------------------------------------------------------------ the protocol


@dataclass
class Scorer:
    """One model against the classifier: ``editor`` and ``classifier`` are runtime Engines."""

    editor: Any
    classifier: Any
    label: str
    options: Options
    names: list[str] = field(init=False)
    columns: list[int] = field(init=False)
    matrix: np.ndarray | None = field(init=False)
    tally: Tally = field(init=False)

    def __post_init__(self) -> None:
        config, cls_config = self.editor.config, self.classifier.config
        self.names = check_model(config, self.label)
        self.columns = classifier_columns(self.names, cls_config["attributes"], self.label)
        self.matrix = frame_matrix(
            config["template"], config["image_size"], cls_config["template"], cls_config["image_size"]
        )
        self.tally = Tally(self.names)

    def _generate(self, crops: list[np.ndarray], cond: np.ndarray | None) -> list[np.ndarray]:
        from faceedit import images

        out = self.editor.generate(images.to_tensor(crops), cond, self.options.batch_size)
        return images.from_tensor(out.images)

    def _predict(self, crops: list[np.ndarray]) -> np.ndarray:
        """0/1 predictions [N,A] of the model's attributes on uint8 crops of the model's frame."""
        from faceedit import images

        size = self.classifier.config["image_size"]
        x = images.to_tensor(to_frame(crops, self.matrix, size))
        logits = self.classifier.classify(x, self.options.batch_size)
        return (logits[:, self.columns] > 0).astype(np.float64)  # sigmoid > 0.5

    def score(self, crops: list[np.ndarray], labels: np.ndarray, stems: Sequence[str]) -> None:
        """Add a batch: crops uint8 [S,S,3] at the model's size, labels [N,A] 0/1 in model order."""
        cond_config, opts = self.editor.config["conditioning"], self.options
        recon = self._generate(crops, self._cond(labels, attributes.EditSpec()))
        self.tally.psnrs += [psnr(a, b) for a, b in zip(crops, recon, strict=True)]
        self.tally.ssims += [ssim(a, b) for a, b in zip(crops, recon, strict=True)]
        self._save(stems, {"input": crops, "recon": recon})
        for i, name in enumerate(self.names):
            spec = attributes.EditSpec(toggle=(name,), intensity=opts.intensity)
            edited = self._generate(crops, self._cond(labels, spec))
            target = attributes.targets(cond_config, self.names, labels, spec)
            pred = self._predict(edited)
            self.tally.hits[i] += int((pred[:, i] == target[:, i]).sum())
            others = np.arange(len(self.names)) != i
            self.tally.errors[i] += int((pred[:, others] != labels[:, others]).sum())
            self._save(stems, {name: edited})
        self.tally.images += len(crops)

    def _cond(self, labels: np.ndarray, spec: attributes.EditSpec) -> np.ndarray | None:
        """G's labels for a CelebA edit; StarGAN on both datasets gets test_multi's CelebA rows
        ``[celeba, 0 (RaFD), 1 0]`` (the RaFD part is zero, so the faces' expressions are not needed)."""
        config = self.editor.config
        n_expr = len(expressions.expressions_of(config))
        full = np.concatenate([labels, np.zeros((len(labels), n_expr))], axis=1) if n_expr else labels
        return expressions.encode(config, full, spec)

    def _save(self, stems: Sequence[str], outputs: dict[str, list[np.ndarray]]) -> None:
        if self.options.save_images is None:
            return
        from faceedit import images

        self.options.save_images.mkdir(parents=True, exist_ok=True)
        for tag, crops in outputs.items():
            for stem, crop in zip(stems, crops, strict=True):
                images.write(self.options.save_images / f"{stem}_{tag}.png", crop)


def evaluate(
    scorer: Scorer,
    index: Any,
    rows: np.ndarray,
    advance: Callable[[int], None] = lambda n: None,
) -> dict[str, Any]:
    """Run the protocol over ``rows`` of ``index`` (a CelebAIndex read for ``scorer.names``)."""
    from faceedit.data import TEMPLATES, open_images
    from faceedit.data.celeba import IMAGE_DIR

    config = scorer.editor.config
    names = [index.names[r] for r in rows]
    source = open_images(index.root, IMAGE_DIR, names, TEMPLATES[config["template"]], config["image_size"])
    labels = index.labels[rows].astype(np.float64)
    step = max(1, scorer.options.batch_size)
    for start in range(0, len(names), step):
        crops = [source[i] for i in range(start, min(start + step, len(names)))]
        stems = [Path(n).stem for n in names[start : start + len(crops)]]
        scorer.score(crops, labels[start : start + len(crops)], stems)
        advance(len(crops))
    cls_config = scorer.classifier.config
    return {
        "model": scorer.label,
        "arch": config["arch"],
        "variant": config.get("variant", "port"),
        "image_size": config["image_size"],
        "template": config["template"],
        "intensity": scorer.options.intensity,
        "crop_mapping": describe_mapping(
            config["template"], config["image_size"], cls_config["template"], cls_config["image_size"]
        ),
        **scorer.tally.result(),
    }


def run(
    specs: Sequence[str],
    data: Path,
    classifier: str | None,
    options: Options,
    device: str = "auto",
    offline: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """``faceedit eval``: every model of ``specs`` scored on the same CelebA images, one document."""
    from faceedit import classifier as attcls
    from faceedit import console, hub
    from faceedit.runtime import Engine

    require_skimage()
    if options.split not in SPLITS:
        raise UsageError(f"unknown split {options.split!r}", f"use one of {', '.join(SPLITS)}")
    _check_output(options.save_images)
    _read_data(data, ())  # the folder's layout is checked before any model is downloaded or loaded
    judge = Engine(attcls.load(classifier, offline=offline), device, "fp32", optimise=False)
    editors = [(spec, Engine(hub.load(spec, offline=offline), device, "fp32")) for spec in specs]
    folders = _save_folders(options.save_images, specs)
    scorers = [
        Scorer(e, judge, spec, replace(options, save_images=folder))
        for (spec, e), folder in zip(editors, folders, strict=True)
    ]
    index = _read_data(data, list(dict.fromkeys(n for s in scorers for n in s.names)))
    rows = eval_rows(index, options.split, options.limit)
    jobs = [(scorer, _columns(index, scorer.names), rows) for scorer in scorers]
    results = []
    with console.progress(sum(len(r) for _, _, r in jobs), "evaluating", enabled=progress) as advance:
        for scorer, index, rows in jobs:
            advance(0, description=f"{scorer.label} ({len(scorer.names) + 1} passes per image)")
            results.append(evaluate(scorer, index, rows, advance))
    return {
        "data": str(Path(data).expanduser()),
        "split": options.split,
        "images": len(rows),
        "classifier": classifier or attcls.DEFAULT_CARD,
        "intensity": options.intensity,
        "models": results,
    }


def _read_data(root: Path, names: Sequence[str]) -> Any:
    """The checked CelebA index with ``names`` as label columns; problems in one line (exit 2)."""
    from faceedit.data.celeba import read_index

    try:
        return read_index(root, names, split="all")
    except UsageError as e:
        raise UsageError(e.message.replace("the training data", "the evaluation data"), e.hint) from None


def _columns(index: Any, names: Sequence[str]) -> Any:
    """``index`` with its label columns narrowed to ``names`` (in that order)."""
    cols = [index.attributes.index(n) for n in names]
    return replace(index, labels=index.labels[:, cols], attributes=tuple(names))


def _check_output(folder: Path | None) -> None:
    if folder is not None and folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise UsageError(f"--save-images {folder} already exists and is not empty", "choose a new folder")


def _save_folders(root: Path | None, specs: Sequence[str]) -> list[Path | None]:
    """Where each model's images go: ``root`` for one model, ``root/NAME`` (unique) for several."""
    if root is None or len(specs) == 1:
        return [root] * len(specs)
    names: list[str] = []
    for spec in specs:
        base = name = safe_label(spec)
        while name in names:
            name = f"{base}-{len(names) + 1}"
        names.append(name)
    return [root / name for name in names]


def safe_label(label: str) -> str:
    """A folder name for a model spec (``local:~/m/x`` -> ``x``)."""
    tail = label.rstrip("/").split(":")[-1].rstrip("/").split("/")[-1]
    return re.sub(r"[^\w.-]+", "_", tail) or "model"
