"""Synthetic training sets in the real layouts, whose attributes are visible, checkable features.

CelebA format: 178x218 JPEGs in img_align_celeba/, list_attr_celeba.txt with all 40 columns,
list_eval_partition.txt. A face-coloured ellipse on a noisy background; Blond_Hair paints the hair band
yellow (else near-black); Eyeglasses paints a dark bar over the eyes; the other 38 columns are random.
Unpaired format: trainA/ (bright discs) and trainB/ (dark squares), testA/, testB/.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from faceedit.attributes import CELEBA_ATTRIBUTES

WIDTH, HEIGHT = 178, 218
HAIR_ROWS = (28, 72)  # rows of the hair band in the 178x218 photo
EYE_ROWS = (102, 128)  # rows of the glasses bar
EYE_COLS = (34, 144)
BLOND, DARK_HAIR = (235, 200, 70), (30, 25, 25)
SKIN, GLASSES = (205, 160, 130), (20, 20, 20)


def draw_face(rng: np.random.Generator, blond: bool, glasses: bool) -> np.ndarray:
    """One 218x178 RGB photo with the two visible attributes."""
    background = rng.integers(60, 200, size=3)
    image = np.clip(background + rng.normal(0, 12, (HEIGHT, WIDTH, 3)), 0, 255).astype(np.uint8)
    cv2.ellipse(image, (89, 125), (58, 72), 0, 0, 360, SKIN, -1)
    image[HAIR_ROWS[0] : HAIR_ROWS[1], 20:158] = BLOND if blond else DARK_HAIR
    if glasses:
        image[EYE_ROWS[0] : EYE_ROWS[1], EYE_COLS[0] : EYE_COLS[1]] = GLASSES
    cv2.circle(image, (89, 160), 8, (150, 60, 60), -1)  # a mouth, so faces are not all the same
    return image


def make_celeba(root: Path, n: int = 48, seed: int = 0, partition: bool = True) -> Path:
    """Write a CelebA-format folder of ``n`` images; Blond_Hair and Eyeglasses are drawn, 50/50 each."""
    rng = np.random.default_rng(seed)
    (root / "img_align_celeba").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        values = rng.choice([-1, 1], size=len(CELEBA_ATTRIBUTES))
        blond, glasses = bool(rng.random() < 0.5), bool(rng.random() < 0.5)
        values[CELEBA_ATTRIBUTES.index("Blond_Hair")] = 1 if blond else -1
        values[CELEBA_ATTRIBUTES.index("Eyeglasses")] = 1 if glasses else -1
        name = f"{i + 1:06d}.jpg"
        image = draw_face(rng, blond, glasses)
        cv2.imwrite(str(root / "img_align_celeba" / name), image[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
        rows.append(name + " " + " ".join(f"{v:2d}" for v in values))
    header = " ".join(CELEBA_ATTRIBUTES)
    (root / "list_attr_celeba.txt").write_text(f"{n}\n{header}\n" + "\n".join(rows) + "\n")
    if partition:
        split = [0 if i < n * 3 // 4 else (1 if i < n * 7 // 8 else 2) for i in range(n)]
        lines = [f"{i + 1:06d}.jpg {s}" for i, s in enumerate(split)]
        (root / "list_eval_partition.txt").write_text("\n".join(lines) + "\n")
    return root


def read_features(image: np.ndarray, top: int, crop: int) -> tuple[bool, bool]:
    """Rule-based (blond, glasses) of an S x S RGB crop taken at ``top`` with side ``crop`` (no model).

    Blond: the hair band is yellow (red and green clearly above blue). Glasses: the eye bar is much
    darker than the cheeks below it.
    """
    scale = image.shape[0] / crop
    rows = lambda a, b: slice(int((a - top) * scale) + 1, int((b - top) * scale))  # noqa: E731
    cols = slice(int(EYE_COLS[0] * scale) + 1, int(EYE_COLS[1] * scale))
    band = image[rows(*HAIR_ROWS), int(30 * scale) : int(148 * scale)].reshape(-1, 3).astype(float).mean(0)
    bar = image[rows(*EYE_ROWS), cols].astype(float).mean()
    cheeks = image[rows(EYE_ROWS[1] + 6, EYE_ROWS[1] + 22), cols].astype(float).mean()
    blond = band[0] > 120 and band[1] > 100 and band[0] - band[2] > 60
    return bool(blond), bool(bar < cheeks - 60)


def make_unpaired(root: Path, n: int = 6, size: int = 48, seed: int = 0) -> Path:
    """trainA/testA: bright discs on light grey; trainB/testB: dark squares on dark blue (PNG)."""
    rng = np.random.default_rng(seed)
    for folder in ("trainA", "trainB", "testA", "testB"):
        (root / folder).mkdir(parents=True, exist_ok=True)
        for i in range(n if folder.startswith("train") else 2):
            image = np.full(
                (size, size, 3), (200, 200, 200) if folder.endswith("A") else (40, 40, 90), np.uint8
            )
            c, r = [int(v) for v in rng.integers(size // 3, 2 * size // 3, size=2)], size // 4
            if folder.endswith("A"):
                cv2.circle(image, tuple(c), r, (250, 240, 60), -1)
            else:
                cv2.rectangle(image, (c[0] - r, c[1] - r), (c[0] + r, c[1] + r), (10, 10, 10), -1)
            cv2.imwrite(str(root / folder / f"{i:04d}.png"), image[:, :, ::-1])
    return root


# RaFD format: the same drawn faces, each with its expression as a coloured band over the mouth.
RAFD_EXPRESSIONS = ("angry", "contemptuous", "disgusted", "fearful", "happy", "neutral", "sad", "surprised")
EXPRESSION_COLOURS = (
    (220, 30, 30), (30, 200, 30), (30, 30, 220), (230, 230, 40),
    (245, 245, 245), (15, 15, 15), (30, 220, 220), (220, 30, 220),
)  # fmt: skip
MOUTH_ROWS, MOUTH_COLS = (146, 182), (50, 128)


def draw_expression(rng: np.random.Generator, expression: str) -> np.ndarray:
    """A 218x178 face (random hair, no glasses) whose mouth band has the expression's colour."""
    image = draw_face(rng, blond=bool(rng.random() < 0.5), glasses=False)
    colour = EXPRESSION_COLOURS[RAFD_EXPRESSIONS.index(expression)]
    image[MOUTH_ROWS[0] : MOUTH_ROWS[1], MOUTH_COLS[0] : MOUTH_COLS[1]] = colour
    return image


def make_rafd(root: Path, n_per: int = 2, seed: int = 0, rafd_names: bool = False) -> Path:
    """A RaFD-format folder: ``root/<expression>/NNN.png`` (ImageFolder) or, with ``rafd_names``, RaFD's
    own file names in one folder (``Rafd090_07_Caucasian_female_happy_frontal.png``)."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for person in range(n_per):
        for expression in RAFD_EXPRESSIONS:
            image = draw_expression(rng, expression)
            if rafd_names:
                path = root / f"Rafd090_{person + 1:02d}_Caucasian_female_{expression}_frontal.png"
            else:
                (root / expression).mkdir(exist_ok=True)
                path = root / expression / f"{person:03d}.png"
            cv2.imwrite(str(path), image[:, :, ::-1])
    return root


def read_expression(image: np.ndarray, top: int, crop: int) -> str | None:
    """Rule-based expression of an S x S RGB crop (taken at ``top``, side ``crop``): the palette colour
    nearest to the mouth band's mean, or None when no colour is near (no band, a smeared one)."""
    scale = image.shape[0] / crop
    rows = slice(int((MOUTH_ROWS[0] + 4 - top) * scale) + 1, int((MOUTH_ROWS[1] - 4 - top) * scale))
    cols = slice(int((MOUTH_COLS[0] + 6) * scale) + 1, int((MOUTH_COLS[1] - 6) * scale))
    mean = image[rows, cols].reshape(-1, 3).astype(float).mean(0)
    distance = np.linalg.norm(np.asarray(EXPRESSION_COLOURS, float) - mean, axis=1)
    return RAFD_EXPRESSIONS[int(distance.argmin())] if distance.min() < 80 else None
