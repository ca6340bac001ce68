"""Second opinions on a detector's faces: MTCNN's O-Net must also call each one a face (mirrored
too), duplicates go, and a face found upright that scores better turned by 90 degrees is dropped so
the rotation retry can find it with correct points. Thresholds measured on ``../shared/photos``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from faceedit.face.detect import Face
    from faceedit.face.mtcnn import Mtcnn

# O-Net's face probability (crop + mirror averaged) on the shared photos and their mirrored,
# 0.7x/1.1x/1.3x, JPEG-60 and gray copies: real faces >= 0.85 (mtcnn's own >= 0.93); leaves, a
# stair post and the other patterns <= 0.61 (benchmarks/face_pipeline.py prints them).
VERIFY_THRESHOLD = 0.8
# How much better a face scores turned 90/270 degrees than as found (detector score gain + O-Net
# gain): 0.37 for the sideways face of if_rot_90.jpg where O-Net confirmed it upright (mirrored,
# 1.1x), <= -0.05 for every upright face of the photos and copies.
SIDEWAYS_MARGIN = 0.1
# Two boxes of one face (YuNet on enlarged photos: a second box shifted by a third of the face
# overlaps the first by 0.33 IoU but 0.54 of its own area): overlap measured over the smaller box.
DUPLICATE_OVERLAP = 0.5
TURN_CROP_SIDE = 192  # px: the crop rescored turned is at most this (its face at most ~96 px)


@functools.lru_cache(maxsize=1)
def onet() -> Mtcnn:
    """The shared MTCNN (its O-Net gives the second opinion)."""
    from faceedit.face.mtcnn import Mtcnn

    return Mtcnn()


def onet_scores(rgb: np.ndarray, faces: Sequence[Face]) -> np.ndarray:
    """``[N,4]`` O-Net probabilities for each face turned by 0, 90, 180, 270 degrees."""
    return onet().verify(rgb, np.array([f.box for f in faces], dtype=np.float64).reshape(-1, 4))


def without_duplicates(faces: Sequence[Face], overlap: float = DUPLICATE_OVERLAP) -> list[Face]:
    """Faces, best score first, dropping any whose box lies more than ``overlap`` (fraction of the
    smaller box) inside a better one's."""
    kept: list[Face] = []
    for face in sorted(faces, key=lambda f: -f.score):
        if all(_overlap(face.box, k.box) <= overlap for k in kept):
            kept.append(face)
    return kept


def _overlap(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over the smaller box's area."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return w * h / smaller if smaller > 0 else 0.0


def confirmed(
    rgb: np.ndarray, faces: Sequence[Face], rescore: Callable[[np.ndarray], float] | None = None
) -> list[Face]:
    """The faces O-Net confirms upright (>= :data:`VERIFY_THRESHOLD`). With ``rescore`` (the
    detector's best score on an image), also drop faces that look sideways: see :func:`turned_gain`."""
    if not faces:
        return []
    scores = onet_scores(rgb, faces)
    keep = [bool(s[0] >= VERIFY_THRESHOLD) for s in scores]
    if rescore is not None:  # only where O-Net said yes: the check costs three detector runs
        keep = [
            k and turned_gain(rgb, f, s, rescore) <= SIDEWAYS_MARGIN
            for f, s, k in zip(faces, scores, keep, strict=True)
        ]
    return [f for f, k in zip(faces, keep, strict=True) if k]


def turned_gain(
    rgb: np.ndarray, face: Face, onet_turns: np.ndarray, rescore: Callable[[np.ndarray], float]
) -> float:
    """How much better ``face`` scores turned by 90 or 270 degrees than as found: the detector's
    score gain on a crop of twice the face's size plus O-Net's gain (``onet_turns`` is ``[4]``)."""
    cx, cy = face.center
    r = face.size
    h, w = rgb.shape[:2]
    x1, y1, x2, y2 = (round(v) for v in (cx - r, cy - r, cx + r, cy + r))
    crop = rgb[max(y1, 0) : min(y2, h), max(x1, 0) : min(x2, w)]
    if crop.size == 0:
        return 0.0
    if max(crop.shape[:2]) > TURN_CROP_SIDE:  # speed: a face of ~100 px is plenty to score
        import cv2

        k = TURN_CROP_SIDE / max(crop.shape[:2])
        size = (max(1, round(crop.shape[1] * k)), max(1, round(crop.shape[0] * k)))
        crop = cv2.resize(crop, size, interpolation=cv2.INTER_AREA)
    detector = [rescore(np.ascontiguousarray(np.rot90(crop, k))) for k in (0, 1, 3)]
    return max(detector[1:]) - detector[0] + max(onet_turns[1], onet_turns[3]) - onet_turns[0]
