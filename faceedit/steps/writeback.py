"""The stage behind the generator: put the new faces back into the photo and write it, with the side
files (comparison strips, crops). Runs in the pipeline's writer workers; writes are atomic."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from faceedit import images, render
from faceedit.errors import InputError
from faceedit.workers import StageTimes, stage

if TYPE_CHECKING:
    from faceedit.api import PasteOptions
    from faceedit.batch import OutputPlan
    from faceedit.steps.prepare import Prepared


def check_finite(finite: np.ndarray) -> None:
    """A NaN/Inf from the generator is a damaged model, never something to paste (issue 10)."""
    bad = np.flatnonzero(~np.asarray(finite, bool))
    if bad.size:
        raise InputError(
            f"the model's output for face {', '.join(str(i) for i in bad)} is not finite (NaN/Inf); "
            "nothing was written for this photo",
            "the model's weights are likely damaged: download or export it again",
        )


def paste(
    prepared: Prepared,
    edited: Sequence[np.ndarray],
    options: PasteOptions,
    changes: Sequence[np.ndarray] | None = None,
    unchanged: np.ndarray | None = None,
) -> np.ndarray:
    """The photo's own pixels (its depth; gray/alpha handled by images.write) with every face's edit:
    its change added (``changes`` given and detail "transfer") or its crop pasted; ``unchanged`` faces
    are skipped."""
    from faceedit.face import blend

    out = prepared.photo.pixels.copy()
    order = sorted(range(len(edited)), key=lambda i: prepared.faces[i].width * prepared.faces[i].height)
    for i in order:  # largest face last: it wins where faces overlap
        if unchanged is not None and unchanged[i]:
            continue
        aligned = prepared.aligned[i]
        if changes is not None and options.detail == "transfer":
            blend.add_change_into(out, changes[i], aligned.matrix)
            continue
        blend.paste_into(
            out,
            edited[i],
            aligned.matrix,
            original=aligned.crop,
            color_match=options.color_match,  # type: ignore[arg-type]
            blend=options.blend,  # type: ignore[arg-type]
        )
    return out


def side_path(target: Path, tag: str) -> Path:
    """Where a side file of ``target`` goes: ``{stem}_{tag}.png`` next to it."""
    return target.with_name(f"{target.stem}_{tag}.png")


def write_photo(
    prepared: Prepared, pixels: np.ndarray, plan: OutputPlan, quality: int | None, timings: StageTimes | None
) -> Path:
    with stage(timings, "encode"):
        return images.write(
            prepared.target, pixels, like=prepared.photo, overwrite=plan.overwrite, quality=quality
        )


def write_mosaic(plan: OutputPlan, target: Path, columns: Sequence[Sequence[np.ndarray]]) -> Path:
    grid = side_path(target, "grid")
    images.write(grid, render.mosaic(columns), overwrite=plan.overwrite)
    return grid


def write_crops(prepared: Prepared, edited: Sequence[np.ndarray], plan: OutputPlan) -> list[Path]:
    """Each face's aligned input and generated crop (``{stem}_face{i}_in/out.png``)."""
    written = []
    for i, (aligned, out) in enumerate(zip(prepared.aligned, edited, strict=True)):
        for tag, crop in ((f"face{i}_in", aligned.crop), (f"face{i}_out", out)):
            target = side_path(prepared.target, tag)
            images.write(target, images.to_uint8(crop), overwrite=plan.overwrite)
            written.append(target)
    return written
