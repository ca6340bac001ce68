"""``faceedit eval MODEL [MODEL ...] --data CELEBA``: the STGAN paper's table for any attribute model
(editing accuracy and preservation error per attribute with the authors' classifier, PSNR, SSIM)."""

from __future__ import annotations

import enum
import math
from pathlib import Path
from typing import Annotated, Any

import typer


class Split(enum.StrEnum):
    test = "test"
    all = "all"


def register(app: typer.Typer) -> None:
    """Add ``eval`` to the root app."""
    app.command("eval")(eval_command)


def eval_command(
    models: Annotated[
        list[str],
        typer.Argument(
            help="models to score side by side: card names, local:DIR or folders", show_default=False
        ),
    ],
    data: Annotated[
        Path,
        typer.Option(
            "--data",
            help="CelebA folder: img_align_celeba/, list_attr_celeba.txt [, list_eval_partition.txt]",
        ),
    ],
    split: Annotated[
        Split, typer.Option("--split", help="test: CelebA's official test images; all: every image")
    ] = Split.test,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="score only the first N images")] = None,
    classifier: Annotated[
        str | None,
        typer.Option(
            "--classifier", help="attribute classifier: card name or folder [default: attcls-celeba-128]"
        ),
    ] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="images per forward pass")] = 16,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N")] = "auto",
    intensity: Annotated[
        float,
        typer.Option("--intensity", help="test_int of the edited attribute (STGAN's published numbers: 2)"),
    ] = 1.0,
    json_out: Annotated[bool, typer.Option("--json", help="one JSON document on stdout")] = False,
    save_images: Annotated[
        Path | None,
        typer.Option("--save-images", help="new folder for NAME_input/NAME_recon/NAME_ATTRIBUTE.png"),
    ] = None,
    offline: Annotated[bool, typer.Option("--offline", help="use cached models only")] = False,
) -> None:
    """Score attribute editors the way the STGAN paper does, on CelebA's test images.

    Acc.: the classifier sees the attribute flipped; Err.: it sees another attribute change;
    PSNR/SSIM: reconstruction (target = source) against the input, uint8 at the model's size.
    """
    from faceedit import console, evaluation

    options = evaluation.Options(split.value, limit, batch_size, intensity, save_images)
    document = evaluation.run(
        models, data, classifier, options, device, offline, console.progress_enabled(json_out)
    )
    if json_out:
        console.emit_json(document)
        return
    for line in table(document):
        console.emit(line)
    for result in document["models"]:
        console.info(f"{result['model']}: {result['crop_mapping']}")


def _pct(value: float) -> str:
    return f"{100 * value:5.1f}"


def _number(value: Any, digits: int) -> str:
    if value == "inf" or (isinstance(value, float) and math.isinf(value)):
        return "inf"
    return "n/a" if isinstance(value, float) and math.isnan(value) else f"{value:.{digits}f}"


def table(document: dict[str, Any]) -> list[str]:
    """Plain-text table: one row per attribute, one Acc./Err. (%) column pair per model."""
    results = document["models"]
    names = list(dict.fromkeys(a for r in results for a in r["attributes"]))
    width = max([len(n) for n in names] + [24])
    heads = [r["model"][-15:] for r in results]
    lines = [" " * width + "".join(f"  {h:>15}" for h in heads)]
    lines.append(f"{'attribute':<{width}}" + "".join(f"  {'Acc.%':>7} {'Err.%':>7}" for _ in results))
    for name in names:
        cells = []
        for r in results:
            s = r["attributes"].get(name)
            cells.append(f"  {_pct(s['accuracy']):>7} {_pct(s['preservation_error']):>7}" if s else " " * 17)
        lines.append(f"{name:<{width}}" + "".join(cells))
    rows = (
        ("mean", lambda r: f"  {_pct(r['mean_accuracy']):>7} {_pct(r['mean_preservation_error']):>7}"),
        ("reconstruction PSNR (dB)", lambda r: f"  {_number(r['psnr'], 2):>15}"),
        ("reconstruction SSIM", lambda r: f"  {_number(r['ssim'], 4):>15}"),
        ("images", lambda r: f"  {r['images']:>15}"),
    )
    lines += [f"{label:<{width}}" + "".join(cell(r) for r in results) for label, cell in rows]
    return lines
