"""The anime flow's generator step and finish: U-GAT-IT on aligned faces (pasted back, the crop
replacing the face) or on whole pictures (resized back), blended with the input by intensity, and
the comparison strip with the CAM attention heatmap.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from faceedit import images, render
from faceedit.batch import Item, OutputPlan
from faceedit.errors import FaceeditError
from faceedit.pipeline import Writer
from faceedit.steps.writeback import check_finite, paste, write_crops, write_mosaic, write_photo
from faceedit.workers import StageTimes, stage

if TYPE_CHECKING:
    from faceedit.api import AnimeRequest
    from faceedit.runtime import Engine
    from faceedit.steps.prepare import Prepared


def anime_group(
    group: list[Prepared],
    engine: Engine,
    request: AnimeRequest,
    plan: OutputPlan,
    writer: Writer,
    timings: StageTimes | None,
) -> None:
    size = int(engine.config["image_size"])
    crops = (
        [_whole_crop(p, size) for p in group] if request.whole else [a.crop for p in group for a in p.aligned]
    )
    x = images.to_tensor(crops)
    with stage(timings, "generate"):
        result = engine.generate(x, None, request.batch_size)
        finite = result.images.isfinite().flatten(1).all(1).numpy()
        out = _blend_intensity(x, result.images, request.intensity)
    heatmaps = None if result.heatmaps is None else result.heatmaps.numpy()  # workers have no torch
    start = 0
    for prepared in group:
        n = 1 if request.whole else len(prepared.aligned)
        chunk, ok = out[start : start + n], finite[start : start + n]
        heat = None if heatmaps is None else heatmaps[start : start + n]
        start += n
        writer.submit(
            functools.partial(finish_anime, prepared, chunk, heat, request, plan, finite=ok),
            path=prepared.path,
        )


def _whole_crop(prepared: Prepared, size: int) -> np.ndarray:
    import cv2

    # The official test resizes the whole picture to S x S (aspect ratio not kept), bilinear.
    return cv2.resize(prepared.photo.rgb, (size, size), interpolation=cv2.INTER_LINEAR)


def _blend_intensity(x: Any, generated: Any, intensity: float) -> list[np.ndarray]:
    mixed = x * (1.0 - intensity) + generated * intensity
    return images.from_tensor(mixed)


def finish_anime(
    prepared: Prepared,
    outputs: list[np.ndarray],
    heatmaps: Any,
    request: AnimeRequest,
    plan: OutputPlan,
    timings: StageTimes | None = None,
    finite: np.ndarray | None = None,
) -> Item:
    """Paste back (or resize back) and write: runs in a writer thread. U-GAT-IT translates the whole
    face, so its crop always replaces the face (detail "replace")."""
    item = Item(input=prepared.path, faces=0 if request.whole else len(outputs))
    try:
        check_finite(np.ones(len(outputs), bool) if finite is None else finite)
        with stage(timings, "paste"):
            pixels = (
                _whole_back(prepared, outputs[0])
                if request.whole
                else paste(prepared, outputs, request.paste)
            )
        item.outputs.append(write_photo(prepared, pixels, plan, request.quality, timings))
        if request.grid:
            item.outputs.append(_write_anime_grid(prepared, outputs, heatmaps, request, plan))
        if request.save_crops and not request.whole:
            item.outputs.extend(write_crops(prepared, outputs, plan))
    except FaceeditError as e:
        return Item(input=prepared.path, status="failed", error=str(e), outputs=item.outputs)
    if not request.whole:
        item.details["faces_detail"] = [
            {"box": [round(float(v), 1) for v in f.box], "score": round(float(f.score), 4)}
            for f in prepared.faces
        ]
    return item


def _whole_back(prepared: Prepared, translated: np.ndarray) -> np.ndarray:
    """The translated S x S picture resized back to the photo's size and depth."""
    import cv2

    h, w = prepared.photo.height, prepared.photo.width
    big = cv2.resize(translated, (w, h), interpolation=cv2.INTER_CUBIC)
    if prepared.photo.pixels.dtype == np.uint16:
        return big.astype(np.uint16) * 257
    return big


def _write_anime_grid(
    prepared: Prepared, outputs: list[np.ndarray], heatmaps: Any, request: AnimeRequest, plan: OutputPlan
) -> Path:
    """Per face: input crop, translation, and the CAM attention heatmap (jet colour map)."""
    size = outputs[0].shape[0]
    inputs = [_whole_crop(prepared, size)] if request.whole else [a.crop for a in prepared.aligned]
    columns = [inputs, outputs]
    if heatmaps is not None:
        columns.append([render.heatmap_image(h, size) for h in heatmaps])
    return write_mosaic(plan, prepared.target, columns)
