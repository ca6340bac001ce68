"""The options ``faceedit edit`` and ``faceedit anime`` share, declared once: their typer types, the
``RunOptions`` value a command receives, and ``with_run_options``, which adds them to its signature.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

Inputs = Annotated[
    list[str], typer.Argument(help="Image files, folders or globs ('-' reads paths from stdin).")
]
ModelOpt = Annotated[
    str | None,
    typer.Option(
        "--model",
        "-m",
        envvar="FACEEDIT_MODEL",
        help="Card name (faceedit models list), hf:ORG/REPO[@REV] or a model folder.",
    ),
]
DeviceOpt = Annotated[
    str, typer.Option("--device", envvar="FACEEDIT_DEVICE", help="auto, cpu, cuda or cuda:N.")
]
PrecisionOpt = Annotated[
    str,
    typer.Option(
        "--precision",
        envvar="FACEEDIT_PRECISION",
        help="auto (fp32 on the CPU, fp16 on CUDA), fp32, bf16 (CUDA, or CPUs with AMX/AVX512-BF16) or "
        "fp16 (CUDA).",
    ),
]
CompileOpt = Annotated[
    bool, typer.Option("--compile", help="torch.compile the generator (pays off on large batch jobs).")
]
GraphsOpt = Annotated[
    bool, typer.Option("--cuda-graphs", help="CUDA: replay captured graphs (fixed batch size; batch jobs).")
]
WorkersOpt = Annotated[
    int | None,
    typer.Option(
        "--workers",
        min=1,
        envvar="FACEEDIT_WORKERS",
        help="Workers that read, detect and align ahead of the model and paste and write behind it "
        "(processes for folders, threads for a few photos). Default: CPUs, up to 8.",
    ),
]
OutOpt = Annotated[
    Path | None, typer.Option("--out", "-o", help="Output folder (default: next to each input).")
]
FormatOpt = Annotated[
    str, typer.Option("--format", help="auto (keep the input's), png, jpg, webp, bmp or tiff.")
]
QualityOpt = Annotated[int | None, typer.Option("--quality", min=1, max=100, help="JPEG/WebP quality.")]
FaceOpt = Annotated[str, typer.Option("--face", help="all, largest, center or a 0-based face index.")]
DetectorOpt = Annotated[
    str | None, typer.Option("--detector", envvar="FACEEDIT_DETECTOR", help="mtcnn (default), yunet or fan.")
]
MinFaceOpt = Annotated[
    float, typer.Option("--min-face-size", min=1, help="Skip faces smaller than this (px).")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="One JSON document on stdout instead of lines.")]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Replace existing outputs.")]
SkipOpt = Annotated[bool, typer.Option("--skip-existing", help="Leave inputs whose output exists alone.")]
GridOpt = Annotated[bool, typer.Option("--grid", help="Also write a comparison strip per photo (_grid.png).")]
CropsOpt = Annotated[
    bool, typer.Option("--save-crops", help="Also write each aligned face before and after.")
]
OfflineOpt = Annotated[
    bool,
    typer.Option("--offline", help="Use only cached weights (also: HF_HUB_OFFLINE=1 or FACEEDIT_OFFLINE=1)."),
]
RecursiveOpt = Annotated[
    bool, typer.Option("--recursive", "-r", help="Look into sub-folders of folder inputs.")
]

# The options edit and anime share, in --help order: (parameter, annotation, default).
SHARED_OPTIONS: tuple[tuple[str, Any, Any], ...] = (
    ("model", ModelOpt, None),
    ("device", DeviceOpt, "auto"),
    ("precision", PrecisionOpt, "auto"),
    ("compile", CompileOpt, False),
    ("cuda_graphs", GraphsOpt, False),
    ("workers", WorkersOpt, None),
    ("out", OutOpt, None),
    ("fmt", FormatOpt, "auto"),
    ("quality", QualityOpt, None),
    ("face", FaceOpt, "all"),
    ("detector", DetectorOpt, None),
    ("min_face_size", MinFaceOpt, 20.0),
    ("grid", GridOpt, False),
    ("save_crops", CropsOpt, False),
    ("overwrite", OverwriteOpt, False),
    ("skip_existing", SkipOpt, False),
    ("recursive", RecursiveOpt, False),
    ("offline", OfflineOpt, False),
    ("json_out", JsonOpt, False),
)


@dataclass(frozen=True)
class RunOptions:
    """The values of :data:`SHARED_OPTIONS` for one command: model and device, outputs, faces, report."""

    model: str | None
    device: str
    precision: str
    compile: bool
    cuda_graphs: bool
    workers: int | None
    out: Path | None
    fmt: str
    quality: int | None
    face: str
    detector: str | None
    min_face_size: float
    grid: bool
    save_crops: bool
    overwrite: bool
    skip_existing: bool
    recursive: bool
    offline: bool
    json_out: bool


def with_run_options(command: Callable[..., None]) -> Callable[..., None]:
    """``command(..., run: RunOptions)`` as typer sees it: its own options, then the shared ones."""
    own = inspect.signature(command, eval_str=True)
    params = [p for p in own.parameters.values() if p.name != "run"]
    keyword = inspect.Parameter.KEYWORD_ONLY
    params += [inspect.Parameter(n, keyword, annotation=a, default=d) for n, a, d in SHARED_OPTIONS]

    @functools.wraps(command)
    def wrapper(**kwargs: Any) -> None:
        run = RunOptions(**{name: kwargs.pop(name) for name, _, _ in SHARED_OPTIONS})
        command(**kwargs, run=run)

    # typer reads the signature (and the type hints) of what it registers.
    wrapper.__signature__ = own.replace(parameters=params)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in params} | {"return": None}
    return wrapper
