"""``faceedit train``, ``faceedit export`` and ``faceedit prepare``.

Multi-GPU / multi-node: launch the same command with torchrun, e.g.
``torchrun --nproc-per-node 8 -m faceedit train stargan --data celeba/ --out runs/s``.
"""

from __future__ import annotations

import enum
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from faceedit.training.config import TrainConfig


class ArchName(enum.StrEnum):
    stargan = "stargan"
    attgan = "attgan"
    stgan = "stgan"
    ugatit = "ugatit"


class AmpMode(enum.StrEnum):
    off = "off"
    bf16 = "bf16"
    fp16 = "fp16"


Arch = Annotated[ArchName, typer.Argument(help="the model to train", show_default=False)]


def train_command(
    arch: Arch,
    data: Annotated[
        Path | None,
        typer.Option(
            "--data",
            help="dataset: CelebA layout (img_align_celeba/, list_attr_celeba.txt) or "
            "trainA/ trainB/ for ugatit; a folder written by `faceedit prepare` works too; "
            "stargan --dataset rafd: the RaFD folder",
        ),
    ] = None,
    dataset: Annotated[
        str | None,
        typer.Option(
            "--dataset",
            help="stargan: celeba (default), rafd (--data RAFD_DIR: a folder per expression or RaFD's "
            "file names) or both (--data CELEBA_DIR --rafd RAFD_DIR, the official train_multi)",
        ),
    ] = None,
    rafd: Annotated[
        Path | None, typer.Option("--rafd", help="stargan --dataset both: the RaFD folder")
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="run folder (default runs/ARCH-YYYYmmdd-HHMMSS)")
    ] = None,
    recipe: Annotated[Path | None, typer.Option("--config", help="recipe TOML (any config key)")] = None,
    steps: Annotated[int | None, typer.Option("--steps", help="iterations to train (one batch each)")] = None,
    batch_size: Annotated[
        int | None, typer.Option("--batch-size", help="images per step and process")
    ] = None,
    lr: Annotated[float | None, typer.Option("--lr", help="learning rate of G and D")] = None,
    image_size: Annotated[int | None, typer.Option("--image-size", help="training resolution")] = None,
    attrs: Annotated[
        str | None, typer.Option("--attrs", help="CelebA attributes in training order, comma-separated")
    ] = None,
    seed: Annotated[
        int | None, typer.Option("--seed", help="seed of weights, data order and sampling")
    ] = None,
    device: Annotated[str | None, typer.Option("--device", help="auto, cpu, cuda or cuda:N")] = None,
    amp: Annotated[
        AmpMode | None,
        typer.Option("--amp", help="CUDA mixed precision (fp16 adds a GradScaler)"),
    ] = None,
    channels_last: Annotated[
        bool | None, typer.Option("--channels-last/--no-channels-last", help="NHWC memory format")
    ] = None,
    compile_: Annotated[
        bool | None, typer.Option("--compile/--no-compile", help="torch.compile G (and U-GAT-IT's D)")
    ] = None,
    workers: Annotated[
        int | None, typer.Option("--workers", help="decoding processes (-1: automatic)")
    ] = None,
    settings: Annotated[
        list[str] | None, typer.Option("--set", help="any config key: --set lambda_rec=50 (repeatable)")
    ] = None,
    resume: Annotated[
        str | None,
        typer.Option("--resume", help="'auto' (the run's newest checkpoint) or a checkpoint/run path"),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="print the resolved config, check the data, exit")
    ] = False,
) -> None:
    """Train a model as its official code does; checkpoints, samples and log.jsonl go to the run folder.

    Ends by exporting RUN/release/, a model folder for `faceedit edit --model` (ugatit: `anime`).
    """
    from faceedit import console
    from faceedit.training import checkpoint, config, loop

    arch = arch.value
    if (dataset is not None or rafd is not None) and arch != "stargan":
        from faceedit.errors import UsageError

        raise UsageError("--dataset and --rafd apply to stargan only")
    overrides = _overrides(
        settings,
        data=data,
        dataset=dataset,
        rafd=str(rafd.expanduser().resolve()) if rafd is not None else None,
        # A RaFD-only model has no CelebA attributes: drop the CelebA default unless --attrs says otherwise.
        attrs_default="" if dataset == "rafd" and attrs is None else None,
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        image_size=image_size,
        attrs=attrs,
        seed=seed,
        device=device,
        amp=amp.value if amp else None,
        channels_last=channels_last,
        compile=compile_,
        workers=workers,
    )
    run_dir = out if out is not None else _default_run(arch, dry_run)
    saved = checkpoint.resolve(run_dir, resume)
    cfg = _resumed_config(arch, saved, recipe, overrides) if saved else config.load(arch, recipe, overrides)
    if dry_run:
        console.emit(config.to_toml(cfg).rstrip())
        counts = loop.check_data(cfg)
        console.info(
            f"data ok: {', '.join(f'{v} {k}' for k, v in counts.items())} images; run folder {run_dir}"
        )
        return
    loop.check_data(cfg)
    release = loop.fit(cfg, run_dir, str(saved) if saved else resume)
    if release is not None:
        flag = "anime" if arch == "ugatit" else "edit"
        console.info(f"exported {release} — use it with: faceedit {flag} PHOTO --model {release}")
        console.emit(str(release))


def _overrides(
    settings: list[str] | None, lr: float | None, data: Path | None, **values: Any
) -> dict[str, Any]:
    from faceedit.errors import UsageError

    result: dict[str, Any] = {}
    for item in settings or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--set {item!r} is not KEY=VALUE", "e.g. --set lambda_rec=50")
        result[key.strip()] = value.strip()
    attrs_default = values.pop("attrs_default", None)
    if attrs_default is not None and "attrs" not in result:
        result["attrs"] = attrs_default
    result.update({k: v for k, v in values.items() if v is not None})
    if lr is not None:
        result["lr_g"] = result["lr_d"] = lr
    if data is not None:
        result["data"] = str(data.expanduser().resolve())
    return result


def _default_run(arch: str, dry_run: bool) -> Path:
    from faceedit.errors import UsageError

    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dry_run:
        raise UsageError("under torchrun every process must write the same run", "give --out RUN_DIR")
    return Path("runs") / f"{arch}-{time.strftime('%Y%m%d-%H%M%S')}"


def _resumed_config(arch: str, path: Path, recipe: Path | None, overrides: dict[str, Any]) -> TrainConfig:
    """The checkpoint's config; options may change only what does not alter the model or its recipe."""
    from faceedit.errors import UsageError
    from faceedit.training import checkpoint, config

    saved = checkpoint.load(path)["config"]
    if saved["arch"] != arch:
        raise UsageError(
            f"{path} is a {saved['arch']} run, not {arch}", f"run: faceedit train {saved['arch']} ..."
        )
    base = {k: v for k, v in saved.items() if k != "arch"}
    cfg = config.load(arch, recipe, overrides, base=base)
    changed = [k for k, v in config.to_dict(cfg).items() if k not in config.RESUMABLE and v != saved.get(k)]
    if changed:
        raise UsageError(
            f"resuming {path} cannot change {', '.join(changed)}; it may change only "
            f"{', '.join(sorted(config.RESUMABLE))}",
            "start a new run (--out NEW) to train with other settings",
        )
    return cfg


def export_command(
    run: Annotated[Path, typer.Argument(help="run folder (its newest checkpoint) or a checkpoint .pt file")],
    out: Annotated[Path, typer.Option("--out", "-o", help="model folder to write", show_default=False)],
    overwrite: Annotated[bool, typer.Option("--overwrite", help="replace an existing --out folder")] = False,
) -> None:
    """Write a model folder (config.json + model.safetensors) from a training checkpoint.

    Attribute models include D's attribute-classifier head; ugatit also writes OUT-B2A (the B->A generator).
    """
    from faceedit import console
    from faceedit.training import checkpoint

    path = checkpoint.resolve(run, str(run))
    for folder in checkpoint.export_checkpoint(path, out, overwrite=overwrite):
        console.info(f"exported {path} -> {folder}")
        console.emit(str(folder))


def prepare_command(
    arch: Arch,
    data: Annotated[Path, typer.Option("--data", help="the original dataset folder", show_default=False)],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="prepared dataset folder to write", show_default=False)
    ],
    image_size: Annotated[int | None, typer.Option("--image-size", help="training resolution")] = None,
    template: Annotated[
        str | None,
        typer.Option("--template", help="celeba-178, celeba-170 or celeba-tf (default: the model's)"),
    ] = None,
    workers: Annotated[
        int, typer.Option("--workers", help="decoding processes (0: this one)")
    ] = os.cpu_count() or 1,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="replace an existing --out folder")] = False,
) -> None:
    """Crop and resize a dataset once for ARCH, so training decodes no JPEGs (pass --data OUT to train).

    The result keeps the layout (label files copied) and stores the images as one uint8 array; the
    random flips (and U-GAT-IT's random crops) still happen per step.
    """
    from faceedit import console
    from faceedit.data import celeba, unpaired
    from faceedit.data.common import TEMPLATES
    from faceedit.training import config

    arch = arch.value
    cfg = config.load(arch, overrides={"image_size": image_size, "template": template})
    with console.progress(None, "preparing", console.progress_enabled()) as advance:
        if arch == "ugatit":
            n = unpaired.prepare(data, out, cfg.image_size, workers, advance, overwrite)
        else:
            n = celeba.prepare(
                data, out, TEMPLATES[cfg.template], cfg.image_size, workers, advance, overwrite
            )
    console.info(
        f"prepared {n} images for {arch} at {cfg.image_size} px ({cfg.template}); train with --data {out}"
    )
    console.emit(str(out))


def register(app: typer.Typer) -> None:
    """Add ``train``, ``export`` and ``prepare`` to the root app."""
    app.command("train")(train_command)
    app.command("export")(export_command)
    app.command("prepare")(prepare_command)
