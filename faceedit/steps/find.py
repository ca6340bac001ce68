"""The ``detect`` and ``align`` flows' work on one photo: read it, find its faces (the no-face and
too-small rules), then report them or write each one's aligned crop. Runs in the pipeline's workers.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from faceedit import images
from faceedit.batch import Item, OutputPlan
from faceedit.errors import NoFaceError
from faceedit.face import detect
from faceedit.steps.prepare import NO_FACE_HINT, detector
from faceedit.workers import StageTimes, stage

if TYPE_CHECKING:
    from faceedit.api import AlignRequest, FaceOptions
    from faceedit.face.detect import Face


def find(
    path: Path, options: FaceOptions, timings: StageTimes | None = None
) -> tuple[images.Photo, list[Face], list[int], int]:
    """Read ``path`` and detect: (photo, selected faces, their indices, number of too-small faces)."""
    with stage(timings, "decode"):
        photo = images.read(path, max_pixels=options.max_pixels)
    with stage(timings, "detect"):
        found = detect.find_faces(photo.rgb, detector(options), min_face_size=options.min_face_size)
    kept, small = detect.split_small(found, options.min_face_size)
    if not kept:
        extra = f" ({len(small)} smaller than {options.min_face_size:g} px)" if small else ""
        hint = "lower --min-face-size" if small else NO_FACE_HINT
        raise NoFaceError(f"no face found in {path}{extra}", hint)
    chosen = detect.select_faces(kept, options.select, photo.rgb.shape)
    return photo, chosen, [next(i for i, k in enumerate(kept) if k is f) for f in chosen], len(small)


def detect_job(path: Path, target: Path, *, options: FaceOptions, timings: StageTimes | None = None) -> Item:
    """One photo's faces as an item: its size and each face's index, box, score and points."""
    photo, faces, indices, skipped = find(path, options, timings)
    detections = [{"index": i, **f.to_json()} for i, f in zip(indices, faces, strict=True)]
    details: dict[str, Any] = {"width": photo.width, "height": photo.height, "detections": detections}
    if skipped:
        details["skipped_small"] = skipped
    return Item(input=path, faces=len(faces), details=details)


def align_job(
    path: Path,
    target: Path,
    *,
    request: AlignRequest,
    plan: OutputPlan,
    timings: StageTimes | None = None,
) -> Item:
    """Each chosen face of ``path`` aligned to the request's template and written as
    ``{stem}_{index}.png`` (existing crops skipped or refused as ``plan`` says)."""
    photo, faces, indices, _ = find(path, request.faces, timings)
    item = Item(input=path, faces=len(faces), details={"crops": []})
    for index, face in zip(indices, faces, strict=True):
        target = plan.path_for(path, tag=f"_{index}")
        if not plan.check(target, source=path):
            item.status = "skipped" if not item.outputs else item.status
            continue
        crop = _write_crop(photo, face, target, request, plan, timings)
        item.outputs.append(target)
        item.status = "ok"
        item.details["crops"].append({"index": index, "output": str(target), "scale": crop, **face.to_json()})
    return item


def _write_crop(
    photo: images.Photo,
    face: Face,
    target: Path,
    request: AlignRequest,
    plan: OutputPlan,
    timings: StageTimes | None,
) -> float:
    """Write the aligned crop (the photo's depth, gray and alpha kept); the enlargement it took."""
    from faceedit.face import align

    with stage(timings, "align"):
        aligned = align.align(
            photo.pixels,
            face,
            request.template,
            request.size or request.template.size,
            margin=request.faces.margin,
            pad_blur=request.pad_blur,
        )
        alpha = None
        if photo.alpha is not None:
            alpha = align.warp_affine(photo.alpha, aligned.matrix, aligned.size, border="constant")
    with stage(timings, "encode"):
        images.write(target, photo.replace(pixels=aligned.crop, alpha=alpha), overwrite=plan.overwrite)
    return round(aligned.scale, 3)
