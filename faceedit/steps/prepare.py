"""The stage ahead of the generator: read a photo, find its faces, align each to the model's frame.

Runs in the pipeline's prepare workers (threads or processes). Each worker thread detects with its
own backend, built on first use and kept in :data:`WORKER_DETECTORS` (OpenCV DNN nets must not run
in two threads at once; a worker process has one thread, so one backend).
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from faceedit import images
from faceedit.errors import NoFaceError
from faceedit.face import detect
from faceedit.workers import StageTimes, stage

if TYPE_CHECKING:
    from faceedit.api import FaceOptions
    from faceedit.face.align import AlignedFace
    from faceedit.face.detect import Backend, Face

WORKER_DETECTORS = detect.Backends(per_thread=True)


@dataclass
class Prepared:
    """One photo read, its faces found and aligned to the model's frame (crops uint8 S x S x 3)."""

    path: Path
    target: Path
    photo: images.Photo
    faces: list[Face] = field(default_factory=list)
    aligned: list[AlignedFace] = field(default_factory=list)


def detector(options: FaceOptions) -> Backend:
    """This worker thread's backend for ``options``; a backend object (tests, benchmarks) as it is."""
    if options.detector is not None and not isinstance(options.detector, str):
        return options.detector
    return WORKER_DETECTORS.get(options.detector, options.device)


NO_FACE_HINT = "try another --detector (e.g. fan), a smaller --min-face-size, or a larger photo of the face"


def prepare(
    path: Path,
    target: Path,
    *,
    config: dict[str, Any],
    options: FaceOptions,
    timings: StageTimes | None = None,
) -> Prepared:
    """``path`` read, its faces found and aligned to ``config``'s template; :class:`NoFaceError` if none.
    A pipeline stage: a ``functools.partial`` over ``config`` and ``options`` pickles."""
    from faceedit.face import align

    with stage(timings, "decode"):
        photo = images.read(path, max_pixels=options.max_pixels)
    with stage(timings, "detect"):
        faces = detect.detect(
            photo.rgb, detector(options), select=options.select, min_face_size=options.min_face_size
        )
    if not faces:
        raise NoFaceError(f"{path}: no face found", NO_FACE_HINT)
    size, interpolation = int(config["image_size"]), config.get("resize", "bilinear")
    with stage(timings, "align"):
        aligned = [
            align.align(
                photo.rgb, face, config["template"], size, margin=options.margin, interpolation=interpolation
            )
            for face in faces
        ]
    return Prepared(path, target, photo, faces, aligned)


def prepare_whole(path: Path, target: Path, timings: StageTimes | None = None) -> Prepared:
    """The photo alone, no faces (``anime --whole`` translates the whole picture)."""
    with stage(timings, "decode"):
        return Prepared(path, target, images.read(path))


def use_processes(asked: bool | None, options: FaceOptions) -> bool | None:
    """Threads unless asked otherwise when processes would not pay or cannot work: FAN detects with
    torch (a copy per process costs more than threads sharing one); a detector object that does not
    pickle cannot reach a worker process."""
    if asked is not None:
        return asked
    chosen = options.detector
    if isinstance(chosen, str):
        return False if chosen.lower().startswith("fan") else None
    try:
        pickle.dumps(chosen)
    except Exception:  # any object: pickling may fail in many ways
        return False
    return None
