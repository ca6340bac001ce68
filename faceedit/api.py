"""One readable recipe per flow: ``edit`` (attribute GANs) and ``anime`` (U-GAT-IT) over many photos.

read -> detect -> align to the model's training crop -> batch through the generator (faces of several
photos together) -> paste back -> write. :mod:`faceedit.pipeline` runs the per-photo stages ahead of
and behind the generator in worker threads or processes; the model is loaded once per process.
"""

from __future__ import annotations

import dataclasses
import functools
import pickle
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from faceedit import attributes, expressions, grids, images, pipeline, render, sources
from faceedit.batch import Item, OutputPlan, Report
from faceedit.errors import FaceeditError, InputError, NoFaceError, UsageError
from faceedit.pipeline import Pipeline, StageTimes, default_workers, plan_jobs  # noqa: F401 (re-exported)

if TYPE_CHECKING:
    from faceedit.face.align import AlignedFace
    from faceedit.face.detect import Backend, Face
    from faceedit.runtime import Engine


@dataclass(frozen=True)
class FaceOptions:
    """How faces are found and cut out (``--detector``, ``--face``, ``--min-face-size``, ``--margin``).

    ``detector`` is a backend name, or a thread-safe backend object used as it is (benchmarks, tests).
    """

    detector: str | Backend | None = None
    select: str = "all"
    min_face_size: float = 20.0
    margin: float = 0.0
    max_pixels: int | None = None


@dataclass(frozen=True)
class PasteOptions:
    """How edited faces go back into the photo (``--detail``, ``--color-match``, ``--blend``).

    ``detail`` "transfer" adds the model's change to the photo's own pixels (attribute models only);
    "replace" pastes the generated crop (official test output; colour match and blend apply to it).
    """

    color_match: str = "partial"
    blend: str = "feather"
    detail: str = "transfer"


@dataclass(frozen=True)
class EditRequest:
    """Everything ``edit`` needs besides the inputs: what to change and how to write it."""

    spec: attributes.EditSpec
    source: sources.SourceSpec | None = None
    faces: FaceOptions = FaceOptions()
    paste: PasteOptions = PasteOptions()
    batch_size: int = 8
    grid: bool = False
    sweep: tuple[float, ...] = ()
    save_crops: bool = False
    quality: int | None = None


@dataclass(frozen=True)
class AnimeRequest:
    """``anime``: U-GAT-IT on each face (selfie framing) or on the whole picture, blended by intensity."""

    intensity: float = 1.0
    whole: bool = False
    faces: FaceOptions = FaceOptions()
    paste: PasteOptions = PasteOptions(color_match="off", detail="replace")  # U-GAT-IT always replaces
    batch_size: int = 4
    grid: bool = False
    save_crops: bool = False
    quality: int | None = None


# ------------------------------------------------------------------------------------------ loading


@functools.lru_cache(maxsize=2)
def load_engine(
    spec: str,
    device: str = "auto",
    precision: str = "auto",
    offline: bool = False,
    *,
    compile: bool = False,
    cuda_graphs: bool = False,
) -> Engine:
    """The model ``spec`` (card name, ``hf:org/repo``, folder) on ``device``; built once per process."""
    from faceedit import hub
    from faceedit.runtime import Engine, resolve_device, resolve_precision

    resolved_device = resolve_device(device)  # usage errors before any download
    resolve_precision(precision, resolved_device)
    model = hub.load(spec, device="cpu", offline=offline)
    where = resolved_device.type if resolved_device.index is None else str(resolved_device)
    return Engine(model, where, precision, compile=compile, cuda_graphs=cuda_graphs)


def describe(engine: Engine, spec: str) -> str:
    """One line naming the model and where it runs (printed once on stderr)."""
    config = engine.config
    n = len(config.get("attributes") or [])
    what = f"{config['arch']} {config.get('variant', 'port')}, {config['image_size']}px"
    if n:
        what += f", {n} attributes"
    if expressions.expressions_of(config):
        what += f", {len(expressions.expressions_of(config))} expressions"
    if engine.model.classifier is not None:
        what += ", attribute classifier"
    return f"model {spec} ({what}) on {engine.device} ({engine.precision})"


# ------------------------------------------------------------------------------------- preparing


@dataclass
class Prepared:
    """One photo read, its faces found and aligned to the model's frame (crops uint8 S x S x 3)."""

    path: Path
    target: Path
    photo: images.Photo
    faces: list[Face] = field(default_factory=list)
    aligned: list[AlignedFace] = field(default_factory=list)


_stage = pipeline.stage
_Writer = pipeline.Writer
_threads = threading.local()


def _detector(name: str | Backend | None) -> Any:
    """A detector backend for this thread: OpenCV DNN nets must not be shared between threads."""
    from faceedit.face import detect

    if name is not None and not isinstance(name, str):
        return name
    key = detect.resolve_detector(name)
    backends = _threads.__dict__.setdefault("backends", {})
    if key not in backends:
        backends[key] = detect.get_backend.__wrapped__(key)  # a fresh instance, not the shared one
    return backends[key]


def _prepare(
    path: Path,
    target: Path,
    config: dict[str, Any],
    options: FaceOptions,
    timings: StageTimes | None = None,
) -> Prepared:
    from faceedit.face import align, detect

    with _stage(timings, "decode"):
        photo = images.read(path, max_pixels=options.max_pixels)
    with _stage(timings, "detect"):
        faces = detect.detect(
            photo.rgb,
            _detector(options.detector),
            select=options.select,
            min_face_size=options.min_face_size,
        )
    if not faces:
        raise NoFaceError(f"{path}: no face found", "try --detector fan or a smaller --min-face-size")
    size = int(config["image_size"])
    interpolation = config.get("resize", "bilinear")
    with _stage(timings, "align"):
        aligned = [
            align.align(
                photo.rgb, face, config["template"], size, margin=options.margin, interpolation=interpolation
            )
            for face in faces
        ]
    return Prepared(path, target, photo, faces, aligned)


# ------------------------------------------------------------------------------------------- edit


def edit_many(
    paths: Sequence[Path],
    engine: Engine,
    request: EditRequest,
    plan: OutputPlan,
    *,
    on_done: Callable[[Item], None] | None = None,
    workers: int | None = None,
    processes: bool | None = None,
    timings: StageTimes | None = None,
) -> Report:
    """Edit every face of every photo in ``paths``; one :class:`Item` per input in the report.

    ``workers`` prepare and finish photos around the generator; ``processes`` (default: for folders)
    makes them processes instead of threads.
    """
    config = engine.config
    spec = expressions.check(config, request.spec, model=_model_name(config))
    report = Report()
    sink = pipeline.Sink(report, on_done)
    jobs = plan_jobs(paths, plan, report)
    pipe = Pipeline.make(workers, processes=_processes(processes, request.faces), jobs=len(jobs))
    prepare = functools.partial(_prepare_job, config=config, options=request.faces)
    with pipe.run(sink, timings) as run:
        for group in run.groups(jobs, prepare, request.batch_size):
            _edit_group(group, engine, request, spec, plan, run.writer, timings)
    return pipeline.in_input_order(report, paths)


def _processes(asked: bool | None, options: FaceOptions) -> bool | None:
    """Threads unless asked otherwise when processes would not pay or cannot work: FAN detects with
    torch (a copy per process costs more than threads sharing one); a detector object that does not
    pickle cannot reach a worker process."""
    if asked is not None:
        return asked
    detector = options.detector
    if isinstance(detector, str):
        return False if detector.lower().startswith("fan") else None
    try:
        pickle.dumps(detector)
    except Exception:  # any object: pickling may fail in many ways
        return False
    return None


def _prepare_job(
    path: Path,
    target: Path,
    *,
    config: dict[str, Any],
    options: FaceOptions,
    timings: StageTimes | None = None,
) -> Prepared:
    return _prepare(path, target, config, options, timings)


def _model_name(config: dict[str, Any]) -> str:
    return f"this {config['arch']} model"


def _edit_group(
    group: list[Prepared],
    engine: Engine,
    request: EditRequest,
    spec: attributes.EditSpec,
    plan: OutputPlan,
    writer: _Writer,
    timings: StageTimes | None,
) -> None:
    """Generator work for a group here (this thread owns the engine); pasting and writing in the writer."""
    config = engine.config
    names = expressions.label_names(config)  # CelebA attributes, then RaFD expressions (if any)
    crops = [a.crop for p in group for a in p.aligned]
    x = images.to_tensor(crops)
    with _stage(timings, "classify"):
        logits = engine.classify(x, request.batch_size)
    estimate = expressions.estimate(config, logits)
    source = sources.source_labels(names, len(crops), request.source, estimate)
    cond = expressions.encode(config, source, spec)
    reconstruct = expressions.encode(config, source, _reconstruction_spec(spec))
    transfer = request.paste.detail == "transfer"
    with _stage(timings, "generate"):
        faces = _generate(engine, x, cond, reconstruct if transfer else None, request.batch_size)
    faces.unchanged |= _asks_nothing(config["conditioning"], names, source, spec, cond, reconstruct)
    start = 0
    for prepared in group:
        these = slice(start, start + len(prepared.aligned))
        start = these.stop
        face_logits = None if logits is None else logits[these]
        grid = _grid_columns(prepared, engine, request, source[these], x[these]) if request.grid else None
        writer.submit(
            functools.partial(
                _finish_edit,
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


def _generate(
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


def _asks_nothing(
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


def _finish_edit(
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
        _check_finite(faces.finite)
        with _stage(timings, "paste"):
            pixels = _paste(prepared, faces.edited, request.paste, faces.changes, faces.unchanged)
        item.outputs.append(_write_photo(prepared, pixels, plan, request.quality, timings))
        if grid is not None:
            item.outputs.append(_write_mosaic(plan, prepared.target, grid))
        if request.save_crops:
            item.outputs.extend(_write_crops(prepared, faces.edited, plan))
    except FaceeditError as e:
        return Item(
            input=prepared.path, status="failed", faces=len(faces.edited), error=str(e), outputs=item.outputs
        )
    item.details["faces_detail"] = [
        _face_json(f, source[i], None if logits is None else logits[i], names)
        for i, f in enumerate(prepared.faces)
    ]
    return item


def _check_finite(finite: np.ndarray) -> None:
    """A NaN/Inf from the generator is a damaged model, never something to paste (issue 10)."""
    bad = np.flatnonzero(~np.asarray(finite, bool))
    if bad.size:
        raise InputError(
            f"the model's output for face {', '.join(str(i) for i in bad)} is not finite (NaN/Inf); "
            "nothing was written for this photo",
            "the model's weights are likely damaged: download or export it again",
        )


def _face_json(face: Face, source: np.ndarray, logits: np.ndarray | None, names: list[str]) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "box": [round(float(v), 1) for v in face.box],
        "score": round(float(face.score), 4),
        "source": [n for n, v in zip(names, source, strict=True) if v > 0.5],
    }
    if logits is not None:
        doc["probabilities"] = expressions.probabilities(names, logits)
    return doc


def _paste(
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


def _side_path(plan: OutputPlan, target: Path, tag: str) -> Path:
    return target.with_name(f"{target.stem}_{tag}.png")


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


def _write_photo(
    prepared: Prepared, pixels: np.ndarray, plan: OutputPlan, quality: int | None, timings: StageTimes | None
) -> Path:
    with _stage(timings, "encode"):
        return images.write(
            prepared.target, pixels, like=prepared.photo, overwrite=plan.overwrite, quality=quality
        )


def _write_mosaic(plan: OutputPlan, target: Path, columns: Sequence[Sequence[np.ndarray]]) -> Path:
    grid = _side_path(plan, target, "grid")
    images.write(grid, render.mosaic(columns), overwrite=plan.overwrite)
    return grid


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


def _write_crops(prepared: Prepared, edited: Sequence[np.ndarray], plan: OutputPlan) -> list[Path]:
    written = []
    for i, (aligned, out) in enumerate(zip(prepared.aligned, edited, strict=True)):
        for tag, crop in ((f"face{i}_in", aligned.crop), (f"face{i}_out", out)):
            target = _side_path(plan, prepared.target, tag)
            images.write(target, images.to_uint8(crop), overwrite=plan.overwrite)
            written.append(target)
    return written


# ------------------------------------------------------------------------------------------ anime


def anime_many(
    paths: Sequence[Path],
    engine: Engine,
    request: AnimeRequest,
    plan: OutputPlan,
    *,
    on_done: Callable[[Item], None] | None = None,
    workers: int | None = None,
    processes: bool | None = None,
    timings: StageTimes | None = None,
) -> Report:
    """U-GAT-IT on every face (pasted back) or, with ``whole``, on each whole picture."""
    if engine.config["arch"] != "ugatit":
        raise UsageError(
            f"faceedit anime needs a U-GAT-IT model, not {engine.config['arch']}",
            "use --model ugatit-selfie2anime-256 (or faceedit edit for attribute models)",
        )
    if not 0.0 <= request.intensity <= 1.0:
        raise UsageError("anime --intensity blends with the input: give a value from 0 to 1")
    report = Report()
    sink = pipeline.Sink(report, on_done)
    jobs = plan_jobs(paths, plan, report)
    asked = False if request.whole and processes is None else processes  # decode only: threads will do
    pipe = Pipeline.make(workers, processes=_processes(asked, request.faces), jobs=len(jobs))
    prepare = (
        _prepare_whole
        if request.whole
        else functools.partial(_prepare_job, config=engine.config, options=request.faces)
    )
    with pipe.run(sink, timings) as run:
        for group in run.groups(jobs, prepare, request.batch_size):
            _anime_group(group, engine, request, plan, run.writer, timings)
    return pipeline.in_input_order(report, paths)


def _prepare_whole(path: Path, target: Path, timings: StageTimes | None = None) -> Prepared:
    with _stage(timings, "decode"):
        return Prepared(path, target, images.read(path))


def _anime_group(
    group: list[Prepared],
    engine: Engine,
    request: AnimeRequest,
    plan: OutputPlan,
    writer: _Writer,
    timings: StageTimes | None,
) -> None:
    size = int(engine.config["image_size"])
    crops = (
        [_whole_crop(p, size) for p in group] if request.whole else [a.crop for p in group for a in p.aligned]
    )
    x = images.to_tensor(crops)
    with _stage(timings, "generate"):
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
            functools.partial(_finish_anime, prepared, chunk, heat, request, plan, finite=ok),
            path=prepared.path,
        )


def _whole_crop(prepared: Prepared, size: int) -> np.ndarray:
    import cv2

    # The official test resizes the whole picture to S x S (aspect ratio not kept), bilinear.
    return cv2.resize(prepared.photo.rgb, (size, size), interpolation=cv2.INTER_LINEAR)


def _blend_intensity(x: Any, generated: Any, intensity: float) -> list[np.ndarray]:
    mixed = x * (1.0 - intensity) + generated * intensity
    return images.from_tensor(mixed)


def _finish_anime(
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
        _check_finite(np.ones(len(outputs), bool) if finite is None else finite)
        with _stage(timings, "paste"):
            pixels = (
                _whole_back(prepared, outputs[0])
                if request.whole
                else _paste(prepared, outputs, request.paste)
            )
        item.outputs.append(_write_photo(prepared, pixels, plan, request.quality, timings))
        if request.grid:
            item.outputs.append(_write_anime_grid(prepared, outputs, heatmaps, request, plan))
        if request.save_crops and not request.whole:
            item.outputs.extend(_write_crops(prepared, outputs, plan))
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
    return _write_mosaic(plan, prepared.target, columns)
