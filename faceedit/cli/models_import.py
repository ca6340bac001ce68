"""``faceedit models import ARCH PATH --out DIR``: official checkpoints -> our model folder."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from faceedit.models import FaceModel


def import_command(
    arch: Annotated[
        str,
        typer.Argument(
            help="stargan, attgan, stgan, ugatit or attcls (the STGAN authors' attribute classifier)",
            show_default=False,
        ),
    ],
    path: Annotated[
        Path,
        typer.Argument(
            help="checkpoint file or training run folder (e.g. 200000-G.ckpt, output/NAME/, G_20000.pth.tar, "
            "results/DATASET/model/)",
            show_default=False,
        ),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="model folder to write", show_default=False)],
    attrs: Annotated[
        str | None,
        typer.Option(
            "--attrs", help="attribute names in training order, comma-separated (default: official)"
        ),
    ] = None,
    image_size: Annotated[
        int | None, typer.Option("--image-size", help="training resolution when the files do not say it")
    ] = None,
    direction: Annotated[
        str | None, typer.Option("--direction", help="U-GAT-IT generator: A2B (default) or B2A")
    ] = None,
    discriminator: Annotated[
        Path | None,
        typer.Option("--discriminator", help="discriminator file, when it is not beside the generator"),
    ] = None,
    dataset: Annotated[
        str | None,
        typer.Option(
            "--dataset",
            help="StarGAN: celeba, rafd or both (CelebA + RaFD), when the label channels do not tell",
        ),
    ] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="replace an existing --out folder")] = False,
) -> None:
    """Convert an official checkpoint into a faceedit model folder (config.json + model.safetensors).

    Prints a summary on stderr and the folder's path on stdout.
    """
    from faceedit import console, models, upstream
    from faceedit.errors import OutputError

    if out.exists() and not overwrite and (not out.is_dir() or any(out.iterdir())):
        raise OutputError(
            f"{out} already exists and is not empty", "pass --overwrite or choose another --out"
        )
    model = upstream.import_checkpoint(
        arch,
        path,
        attrs=attrs,
        image_size=image_size,
        direction=direction,
        discriminator=discriminator,
        dataset=dataset,
    )
    folder = models.save(model, out, overwrite=overwrite)
    for line in summary(model):
        console.info(line)
    console.emit(str(folder))


def summary(model: FaceModel) -> list[str]:
    """A few human lines about an imported model (stderr)."""
    from faceedit import expressions

    config, prov = model.config, model.config["provenance"]
    n_params = sum(p.numel() for p in model.generator.parameters())
    attrs = ", ".join(config["attributes"]) or "none"
    classifier = f"yes ({prov.get('classifier_source_file', 'same file')})" if model.classifier else "no"
    extra = f", direction {config['direction']}" if "direction" in config else ""
    if expressions.expressions_of(config):
        attrs += f"; dataset {expressions.dataset_of(config)}, expressions: "
        attrs += ", ".join(expressions.expressions_of(config))
    return [
        f"imported {config['arch']} from {prov['source_file']} (upstream {prov['upstream']}{extra})",
        f"generator: {n_params:,} parameters at {config['image_size']} px; attributes: {attrs}",
        f"classifier: {classifier}; crop template {config['template']}",
        f"sha256 {prov['source_sha256']}",
    ]
