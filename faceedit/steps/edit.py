"""The edit flow's generator step and finish: a group's faces through the generator with their
reconstruction (for detail transfer), edits that ask nothing found and left alone, then paste, write
and the per-face report in a writer worker.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from faceedit import attributes, expressions, grids, images, sources
from faceedit.batch import Item, OutputPlan
from faceedit.errors import FaceeditError
from faceedit.pipeline import Writer
from faceedit.steps.writeback import check_finite, paste, write_crops, write_mosaic, write_photo
from faceedit.workers import StageTimes, stage

if TYPE_CHECKING:
    from faceedit.api import EditRequest
    from faceedit.face.detect import Face
    from faceedit.runtime import Engine
    from faceedit.steps.prepare import Prepared


def edit_group(
    group: list[Prepared],
    engine: Engine,
    request: EditRequest,
    spec: attributes.EditSpec,
    plan: OutputPlan,
    writer: Writer,
    timings: StageTimes | None,
) -> None:
    """Generator work for a group here (this thread owns the engine); pasting and writing in the writer."""
    config = engine.config
    names = expressions.label_names(config)  # CelebA attributes, then RaFD expressions (if any)
    crops = [a.crop for p in group for a in p.aligned]
    x = images.to_tensor(crops)
    with stage(timings, "classify"):
        logits = engine.classify(x, request.batch_size)
    estimate = expressions.estimate(config, logits)
    source = sources.source_labels(names, len(crops), request.source, estimate)
    cond = expressions.encode(config, source, spec)
    reconstruct = expressions.encode(config, source, _reconstruction_spec(spec))
    transfer = request.paste.detail == "transfer"
    with stage(timings, "generate"):
        faces = generate(engine, x, cond, reconstruct if transfer else None, request.batch_size)
    faces.unchanged |= asks_nothing(config["conditioning"], names, source, spec, cond, reconstruct)
    start = 0
    for prepared in group:
        these = slice(start, start + len(prepared.aligned))
        start = these.stop
        face_logits = None if logits is None else logits[these]
        grid = _grid_columns(prepared, engine, request, source[these], x[these]) if request.grid else None
        writer.submit(
            functools.partial(
                finish_edit,
                prepared,
                faces.part(these),
                source[these],
                face_logits,
                grid,
                request,
                plan,
                names,
            ),
            path=prepared.path,
        )


@dataclass
class Generated:
    """A group's generator results per face: crops (uint8 S x S x 3), changes (float32 S x S x 3,
    edited minus reconstruction in fractions of the full range; None when replacing), and flags."""

    edited: list[np.ndarray]
    changes: list[np.ndarray] | None
    finite: np.ndarray  # [N] bool: False where the output (or the change) has NaN/Inf
    unchanged: np.ndarray  # [N] bool: the edit asks for nothing, the face is left as it is

    def part(self, faces: slice) -> Generated:
        changes = None if self.changes is None else self.changes[faces]
        return Generated(self.edited[faces], changes, self.finite[faces], self.unchanged[faces])


def generate(
    engine: Engine, x: Any, cond: np.ndarray | None, reconstruct: np.ndarray | None, batch_size: int
) -> Generated:
    """``G(x, cond)``, and with ``reconstruct`` also ``G(x, reconstruct)`` in the same batch ([2N])."""
    import torch

    n = x.shape[0]
    if reconstruct is None or cond is None:
        out = engine.generate(x, cond, batch_size).images
        finite = torch.isfinite(out).flatten(1).all(1).numpy()
        return Generated(images.from_tensor(out), None, finite, np.zeros(n, bool))
    both = engine.generate(torch.cat([x, x]), np.concatenate([cond, reconstruct]), 2 * batch_size).images
    finite = torch.isfinite(both).flatten(1).all(1).numpy()
    edited, rebuilt = both[:n].clamp(-1, 1), both[n:].clamp(-1, 1)
    change = ((edited - rebuilt) * 0.5).permute(0, 2, 3, 1).contiguous().numpy()  # [N,S,S,3]
    return Generated(images.from_tensor(edited), list(change), finite[:n] & finite[n:], np.zeros(n, bool))


def _reconstruction_spec(spec: attributes.EditSpec) -> attributes.EditSpec:
    """The edit that asks the model to rebuild the face: no attribute change; for an expression edit the
    same label set (mask) with the face's own expression (intensity 0)."""
    if spec.expression is not None:
        return dataclasses.replace(spec, intensity=0.0)
    return attributes.EditSpec()


def asks_nothing(
    conditioning: dict[str, Any],
    names: list[str],
    source: np.ndarray,
    spec: attributes.EditSpec,
    cond: np.ndarray | None,
    reconstruct: np.ndarray | None,
) -> np.ndarray:
    """[N] bool: faces whose edit is a no-op (target = source, every intensity 0, or conditioning equal
    to the reconstruction's); their pixels are not touched in any detail mode."""
    n = source.shape[0]
    same = np.zeros(n, bool) if cond is None or reconstruct is None else np.all(cond == reconstruct, axis=1)
    if spec.slide or spec.expression is not None:
        # a slider sets absolute values, and an expression edit's reconstruction is the face's own
        # expression at intensity 0: only an identical conditioning is a no-op
        return same
    source = np.asarray(source)[:, : len(names)]  # StarGAN on both datasets: the CelebA part
    if all(spec.strength(name) == 0 for name, _ in spec.edits):
        return np.ones(n, bool)
    target = attributes.targets(conditioning, names, source, spec)
    return same | np.all(target == np.asarray(source, np.float32), axis=1)


def finish_edit(
    prepared: Prepared,
    faces: Generated,
    source: np.ndarray,
    logits: np.ndarray | None,
    grid: list[list[np.ndarray]] | None,
    request: EditRequest,
    plan: OutputPlan,
    names: list[str],
    timings: StageTimes | None = None,
) -> Item:
    """Paste the edited faces back and write the photo (+ grid, crops): runs in a writer thread."""
    item = Item(input=prepared.path, faces=len(faces.edited))
    try:
        check_finite(faces.finite)
        with stage(timings, "paste"):
            pixels = paste(prepared, faces.edited, request.paste, faces.changes, faces.unchanged)
        item.outputs.append(write_photo(prepared, pixels, plan, request.quality, timings))
        if grid is not None:
            item.outputs.append(write_mosaic(plan, prepared.target, grid))
        if request.save_crops:
            item.outputs.extend(write_crops(prepared, faces.edited, plan))
    except FaceeditError as e:
        return Item(
            input=prepared.path, status="failed", faces=len(faces.edited), error=str(e), outputs=item.outputs
        )
    item.details["faces_detail"] = [
        _face_json(f, source[i], None if logits is None else logits[i], names)
        for i, f in enumerate(prepared.faces)
    ]
    return item


def _face_json(face: Face, source: np.ndarray, logits: np.ndarray | None, names: list[str]) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "box": [round(float(v), 1) for v in face.box],
        "score": round(float(face.score), 4),
        "source": [n for n, v in zip(names, source, strict=True) if v > 0.5],
    }
    if logits is not None:
        doc["probabilities"] = expressions.probabilities(names, logits)
    return doc


def _grid_columns(
    prepared: Prepared, engine: Engine, request: EditRequest, source: np.ndarray, x: Any
) -> list[list[np.ndarray]]:
    """A comparison strip's columns per face (rows): input, reconstruction, each edit (or sweep value)."""
    config = engine.config
    columns = [list(a.crop for a in prepared.aligned)]
    for spec in _grid_specs(request):
        cond = expressions.encode(config, source, spec)
        columns.append(images.from_tensor(engine.generate(x, cond, request.batch_size).images))
    return columns


def _grid_specs(request: EditRequest) -> list[attributes.EditSpec]:
    reconstruction = attributes.EditSpec()
    if request.spec.expression is not None and not request.sweep:
        return expressions.grid_specs(request.spec)  # every expression, as test_multi's RaFD row
    if request.sweep:
        return [reconstruction, *grids.sweep(request.spec, request.sweep)]
    singles = [attributes.EditSpec(add=(n,), intensity=request.spec.strength(n)) for n in request.spec.add]
    singles += [
        attributes.EditSpec(remove=(n,), intensity=request.spec.strength(n)) for n in request.spec.remove
    ]
    combined = [request.spec] if len(singles) != 1 else []
    return [reconstruction, *singles, *combined]
