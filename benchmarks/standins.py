"""Stand-ins for the pipeline benchmark: synthetic photos with known faces, a fixed detector and an
identity generator. A module of its own so that worker processes unpickle the detector by importing
this (numpy only), not the benchmark."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import generators  # sibling benchmark: astronaut
import numpy as np

# mtcnn on astronaut.png (box x1 y1 x2 y2, score, 5 points): what --detector fixed maps onto each copy.
ASTRONAUT_BOX = (182.46, 63.80, 269.25, 174.93)
ASTRONAUT_POINTS = [[206.34, 102.98], [249.41, 105.60], [227.58, 130.06], [204.64, 142.09], [247.25, 144.0]]
PATCH = (105, 0, 240)  # the face patch cut from astronaut.png: left, top, side


class FixedFaces:
    """Detector stand-in: the faces where the synthesiser put them (thread-safe)."""

    name = "fixed"

    def __init__(self, faces: list[Any]) -> None:
        self.faces = faces

    def detect(self, rgb: np.ndarray, min_size: float) -> list[Any]:
        return list(self.faces)


class IdentityEngine:
    """Generator stand-in: the model's config, crops handed back unchanged (no model cost), so a run
    measures the CPU stages around the generator only."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config, self.device = config, SimpleNamespace(type="cpu")

    def classify(self, x: Any, batch: int) -> None:
        return None

    def generate(self, x: Any, cond: Any, batch: int) -> Any:
        return SimpleNamespace(images=x, heatmaps=None)


def layout(width: int, height: int, n_faces: int) -> list[tuple[int, int, int]]:
    """(left, top, side) of each pasted face patch: one large centred face, or a grid of smaller ones."""
    if n_faces == 1:
        side = min(width, height) // 2
        return [((width - side) // 2, (height - side) // 2, side)]
    cols = int(np.ceil(np.sqrt(n_faces * width / height)))
    rows = int(np.ceil(n_faces / cols))
    side = int(min(width / cols, height / rows) * 0.9)
    cells = [(c, r) for r in range(rows) for c in range(cols)][:n_faces]
    return [
        (int((c + 0.5) * width / cols - side / 2), int((r + 0.5) * height / rows - side / 2), side)
        for c, r in cells
    ]


def synthesise(width: int, height: int, n_faces: int, seed: int = 0) -> np.ndarray:
    """A photo: the astronaut blurred into a faceless background, with ``n_faces`` face patches."""
    import cv2

    rgb = generators.astronaut()
    small = cv2.GaussianBlur(cv2.resize(rgb, (64, 48), interpolation=cv2.INTER_AREA), (0, 0), sigmaX=2)
    background = cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
    noise = np.random.default_rng(seed).normal(0, 4, background.shape).astype(np.float32)
    photo = np.clip(background + noise, 0, 255).astype(np.uint8)
    left, top, side = PATCH
    patch = rgb[top : top + side, left : left + side]
    for x, y, s in layout(width, height, n_faces):
        photo[y : y + s, x : x + s] = cv2.resize(patch, (s, s), interpolation=cv2.INTER_AREA)
    return photo


def known_faces(width: int, height: int, n_faces: int) -> list[Any]:
    """The :class:`Face` of every pasted patch (the astronaut's mtcnn face, scaled and moved)."""
    from faceedit.face.detect import Face, sort_faces

    left, top, side = PATCH
    base = Face(ASTRONAUT_BOX, 0.9998, np.asarray(ASTRONAUT_POINTS, np.float32))
    faces = []
    for x, y, s in layout(width, height, n_faces):
        k = s / side
        faces.append(base.transformed(np.array([[k, 0, x - left * k], [0, k, y - top * k]])))
    return sort_faces(faces)


def write_photo(path: Path, rgb: np.ndarray) -> Path:
    from faceedit import images

    return images.write(path, rgb, quality=92, overwrite=True)
