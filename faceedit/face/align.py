"""Cropping a face exactly the way a model's training data was cropped: named templates, similarity fits.

Pure functions: points in, 2x3 matrix (photo -> crop, pixel centres at integers) out; the crop and the
matrix travel together in :class:`AlignedFace` so that paste-back can invert them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from faceedit import specs
from faceedit.errors import UsageError
from faceedit.face.detect import Face

Fit = Literal["points5", "celeba3", "ffhq-quad"]

# The 5-point frames come from the facts table (faceedit.specs), as numpy arrays for the maths here.
CELEBA_FRAME = specs.CELEBA_FRAME
CELEBA_POINTS5 = np.array(specs.CELEBA_POINTS5, dtype=np.float64)
CELEBA_TARGETS3 = np.array(specs.CELEBA_TARGETS3, dtype=np.float64)
FFHQ_POINTS5_512 = np.array(specs.FFHQ_POINTS5_512, dtype=np.float64)
SELFIE_POINTS5_256 = np.array(specs.SELFIE_POINTS5_256, dtype=np.float64)


@dataclass(frozen=True)
class Template:
    """Where the 5 points of a face land in a model's square input frame of ``size`` pixels."""

    name: str
    size: int  # default output size
    points5: np.ndarray  # [5,2] at `frame` pixels
    frame: int  # the size `points5` are given at
    fit: Fit
    border: Literal["replicate", "reflect", "constant"]
    targets3: np.ndarray | None = None  # celeba3 fit: LE, RE, mouth centre at `frame`
    description: str = ""

    def points_at(self, size: int) -> np.ndarray:
        """``points5`` in a ``size`` x ``size`` frame (pixel centres: ``(p + 0.5) * k - 0.5``)."""
        return _rescale(self.points5, size / self.frame)


def _rescale(points: np.ndarray, k: float) -> np.ndarray:
    return (np.asarray(points, dtype=np.float64) + 0.5) * k - 0.5


def _template(t: specs.TemplateSpec) -> Template:
    """A facts-table template with its points in a ``frame`` px square (CelebA crops: 128 px)."""
    if t.points5 is None:  # a crop of CelebA's aligned photo at (left, top), resized to 128

        def to_crop(points: np.ndarray) -> np.ndarray:
            return _rescale(points - [t.left, t.top], 128 / t.crop)

        points, targets = to_crop(CELEBA_POINTS5), to_crop(CELEBA_TARGETS3)
    else:
        points, targets = np.array(t.points5, dtype=np.float64), None
    return Template(t.name, t.size, points, t.frame, t.fit, t.border, targets, t.description)  # type: ignore[arg-type]


TEMPLATES: dict[str, Template] = {name: _template(t) for name, t in specs.TEMPLATES.items()}
ALIASES = dict(specs.TEMPLATE_ALIASES)
INTERPOLATIONS = {"bilinear": 1, "bicubic": 2, "area": 3, "lanczos": 4}  # cv2.INTER_* values


def get_template(name: str) -> Template:
    """The template called ``name`` (or an alias: stargan, attgan, stgan, ugatit)."""
    key = ALIASES.get(name.lower(), name.lower())
    if key not in TEMPLATES:
        names = ", ".join([*TEMPLATES, *ALIASES])
        raise UsageError(f"unknown crop template {name!r}", f"use one of {names}")
    return TEMPLATES[key]


@dataclass(frozen=True, eq=False)
class AlignedFace:
    """A face crop plus the 2x3 ``matrix`` that maps photo pixels to crop pixels (for paste-back)."""

    crop: np.ndarray  # S x S x C, dtype of the warped image
    matrix: np.ndarray  # 2x3 float64, photo -> crop
    template: str
    size: int
    face: Face | None = None

    @property
    def scale(self) -> float:
        """Crop pixels per photo pixel (> 4: the crop is a blurry upscale of a small face)."""
        return float(math.sqrt(abs(np.linalg.det(self.matrix[:, :2]))))


# ------------------------------------------------------------------------------------------ fitting


def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation; no reflection) taking src to dst.

    The exact linear least squares of MATLAB's ``cp2tform('nonreflective similarity')`` (= Umeyama);
    OpenCV's ``estimateAffinePartial2D`` is a robust estimator, not this exact fit. Returns 2x3.
    """
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    x, y = src[:, 0], src[:, 1]
    one, zero = np.ones_like(x), np.zeros_like(x)
    # [u, v] = [[a, -b], [b, a]] @ [x, y] + [tx, ty]
    rows = np.concatenate([np.stack([x, -y, one, zero], 1), np.stack([y, x, zero, one], 1)])
    (a, b, tx, ty), *_ = np.linalg.lstsq(rows, np.concatenate([dst[:, 0], dst[:, 1]]), rcond=None)
    return np.array([[a, -b, tx], [b, a, ty]])


def ffhq_quad(
    eye_left: np.ndarray,
    eye_right: np.ndarray,
    mouth_left: np.ndarray,
    mouth_right: np.ndarray,
    rotate: bool = True,
) -> np.ndarray:
    """The FFHQ crop square ``[4,2]`` (top-left, bottom-left, bottom-right, top-right) from eyes and mouth.

    Steps 1-4 of NVlabs' ``recreate_aligned_images`` (face-pipeline.md §3).
    """
    eye_avg = (eye_left + eye_right) * 0.5
    eye_to_eye = eye_right - eye_left
    mouth_avg = (mouth_left + mouth_right) * 0.5
    eye_to_mouth = mouth_avg - eye_avg
    x = eye_to_eye - np.flipud(eye_to_mouth) * [-1, 1] if rotate else np.array([1.0, 0.0])
    x = x / np.hypot(*x) * max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    y = np.flipud(x) * [-1, 1]
    c = eye_avg + eye_to_mouth * 0.1
    return np.stack([c - x - y, c - x + y, c + x + y, c + x - y])


def quad_matrix(quad: np.ndarray, size: int) -> np.ndarray:
    """The similarity taking the quad's corners to the crop's outer pixel edges (PIL QUAD's convention)."""
    s = size - 0.5
    corners = np.array([[-0.5, -0.5], [-0.5, s], [s, s], [s, -0.5]])
    return similarity(quad, corners)


def _eyes_mouth(face: Face) -> tuple[np.ndarray, ...]:
    """Eye centres and mouth corners: from 68 points when there are some (as FFHQ did), else from 5."""
    if face.points68 is not None:
        lm = np.asarray(face.points68, np.float64)
        return lm[36:42].mean(0), lm[42:48].mean(0), lm[48], lm[54]
    p = np.asarray(face.points5, np.float64)
    return p[0], p[1], p[3], p[4]


def template_matrix(
    face: Face, template: str | Template, size: int | None = None, margin: float = 0.0, fit: Fit | None = None
) -> np.ndarray:
    """The 2x3 photo -> crop matrix for ``face`` under ``template`` at ``size``.

    ``fit``: ``celeba3`` fits eyes + mouth centre to CelebA's own alignment targets (how the dataset
    was made); ``points5`` fits all 5 points to the template (least squares); ``ffhq-quad`` is the
    FFHQ recipe. ``margin`` > 0 zooms out (0.2 = the crop shows 20% more on each axis).
    """
    t = template if isinstance(template, Template) else get_template(template)
    size = int(size or t.size)
    method = fit or t.fit
    if method == "ffhq-quad":
        matrix = quad_matrix(ffhq_quad(*_eyes_mouth(face)), size)
    elif method == "celeba3" and t.targets3 is not None:
        le, re, ml, mr = _eyes_mouth(face)
        matrix = similarity(np.stack([le, re, (ml + mr) / 2]), _rescale(t.targets3, size / t.frame))
    else:
        matrix = similarity(face.points5, t.points_at(size))
    if margin:
        centre = (size - 1) / 2  # zoom about the crop centre
        k = 1.0 / (1.0 + margin)
        matrix = matrix * k
        matrix[:, 2] += centre * (1 - k)
    return matrix


# ------------------------------------------------------------------------------------------ warping


def compose(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """2x3 affine ``outer(inner(x))``."""
    return np.hstack([outer[:, :2] @ inner[:, :2], (outer[:, :2] @ inner[:, 2] + outer[:, 2])[:, None]])


def footprint(matrix: np.ndarray, size: int, image_shape: tuple[int, ...], pad: float = 0) -> tuple[int, ...]:
    """Photo-pixel box (x0, y0, x1, y1; clipped, end-exclusive) covered by the crop, grown by ``pad``."""
    import cv2

    inverse = cv2.invertAffineTransform(matrix)
    s = size - 0.5
    corners = np.array([[-0.5, -0.5], [s, -0.5], [s, s], [-0.5, s]]) @ inverse[:, :2].T + inverse[:, 2]
    h, w = image_shape[:2]
    x0, y0 = np.floor(corners.min(0) - pad).astype(int)
    x1, y1 = np.ceil(corners.max(0) + pad).astype(int) + 1
    return max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)


def warp_affine(
    image: np.ndarray,
    matrix: np.ndarray,
    size: int,
    interpolation: str = "bicubic",
    border: str = "replicate",
) -> np.ndarray:
    """Warp ``image`` (HW or HWC, any dtype OpenCV takes) to a ``size`` crop; work scales with the face.

    Only the region the crop covers is touched; when the crop shrinks it by more than 2x, that region
    is first shrunk with INTER_AREA (integer factor) so that the final warp does not alias.
    """
    import cv2

    x0, y0, x1, y1 = footprint(matrix, size, image.shape, pad=4)
    region = image[y0:y1, x0:x1] if x1 > x0 and y1 > y0 else image[:1, :1] * 0
    matrix = compose(matrix, np.array([[1.0, 0, x0], [0, 1.0, y0]]))  # region -> crop
    scale = math.sqrt(abs(np.linalg.det(matrix[:, :2])))
    shrink = int(1 / scale) if scale < 0.5 else 1
    if shrink > 1 and min(region.shape[:2]) > 2 * shrink:
        h, w = region.shape[:2]
        nw, nh = max(1, round(w / shrink)), max(1, round(h / shrink))
        region = cv2.resize(region, (nw, nh), interpolation=cv2.INTER_AREA)
        sx, sy = w / nw, h / nh  # small -> region, pixel centres
        matrix = compose(matrix, np.array([[sx, 0, 0.5 * sx - 0.5], [0, sy, 0.5 * sy - 0.5]]))
    return _warp_affine(region, matrix, size, interpolation, border)


def _warp_affine(
    image: np.ndarray, matrix: np.ndarray, size: int, interpolation: str, border: str
) -> np.ndarray:
    import cv2

    flags = INTERPOLATIONS.get(interpolation)
    if flags is None:
        raise UsageError(
            f"unknown interpolation {interpolation!r}", f"use one of {', '.join(INTERPOLATIONS)}"
        )
    border_mode = {
        "replicate": cv2.BORDER_REPLICATE,
        "reflect": cv2.BORDER_REFLECT_101,
        "constant": cv2.BORDER_CONSTANT,
    }[border]
    flags = cv2.INTER_CUBIC if flags == cv2.INTER_AREA else flags  # area is for the pre-shrink only
    out = cv2.warpAffine(image, matrix, (size, size), flags=flags, borderMode=border_mode)
    return out


def ffhq_pad_blur(image: np.ndarray, quad: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """FFHQ step 7: where the quad leaves the photo, reflect-pad and blur towards the padded edge.

    Returns the padded float32 image (same channels) and the 2x3 map photo -> padded coordinates.
    Works on the quad's neighbourhood only (cropped first, as FFHQ's step 6 does).
    """
    import cv2

    qsize = float(np.hypot(*(quad[3] - quad[0])))
    border = max(int(np.rint(qsize * 0.1)), 3)
    h, w = image.shape[:2]
    lo, hi = np.floor(quad.min(0)).astype(int), np.ceil(quad.max(0)).astype(int)
    x0, y0 = max(lo[0] - border, 0), max(lo[1] - border, 0)
    x1, y1 = min(hi[0] + border, w), min(hi[1] + border, h)
    region = image[y0:y1, x0:x1].astype(np.float32)
    pads = np.array(
        [x0 - (lo[0] - border), y0 - (lo[1] - border), (hi[0] + border) - x1, (hi[1] + border) - y1]
    )
    to_region = np.array([[1.0, 0, -x0], [0, 1.0, -y0]])
    if pads.max() <= border - 4:
        return region, to_region
    pl, pt, pr, pb = np.maximum(pads, int(np.rint(qsize * 0.3)))
    padded = np.pad(region, ((pt, pb), (pl, pr)) + ((0, 0),) * (region.ndim - 2), mode="reflect")
    ph, pw = padded.shape[:2]
    yy, xx = np.ogrid[:ph, :pw]
    mask = np.maximum(
        1.0 - np.minimum(xx / pl, (pw - 1 - xx) / pr),
        1.0 - np.minimum(yy / pt, (ph - 1 - yy) / pb),
    ).astype(np.float32)
    if padded.ndim == 3:
        mask = mask[..., None]
    sigma = qsize * 0.02
    blurred = cv2.GaussianBlur(padded, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT)
    blurred = blurred.reshape(padded.shape)
    padded += (blurred - padded) * np.clip(mask * 3.0 + 1.0, 0.0, 1.0)
    padded += (np.median(padded.reshape(-1, *padded.shape[2:]), axis=0) - padded) * np.clip(mask, 0.0, 1.0)
    return padded, np.array([[1.0, 0, pl - x0], [0, 1.0, pt - y0]])


def align(
    image: np.ndarray,
    face: Face,
    template: str | Template = "ffhq",
    size: int | None = None,
    *,
    margin: float = 0.0,
    fit: Fit | None = None,
    interpolation: str | None = None,
    border: str | None = None,
    pad_blur: bool = False,
) -> AlignedFace:
    """Crop ``face`` out of ``image`` (HWC RGB, uint8 or uint16) the way ``template``'s models were trained.

    ``pad_blur`` (ffhq): fill the part of the crop outside the photo as FFHQ did (reflect, blur,
    median) instead of ``border``. Defaults come from the template (size, fit, border) and
    ``interpolation`` is bicubic.
    """
    t = template if isinstance(template, Template) else get_template(template)
    size = int(size or t.size)
    matrix = template_matrix(face, t, size, margin=margin, fit=fit)
    interpolation = interpolation or "bicubic"
    if pad_blur:
        quad = _crop_quad(matrix, size)
        padded, to_padded = ffhq_pad_blur(image, quad)
        crop = warp_affine(padded, compose(matrix, _invert(to_padded)), size, interpolation, "reflect")
        crop = _cast_like(crop, image.dtype)
    else:
        crop = warp_affine(image, matrix, size, interpolation, border or t.border)
    return AlignedFace(crop, matrix, t.name, size, face)


warp = align  # the name design.md uses: warp(image, face, template) -> AlignedFace


def _crop_quad(matrix: np.ndarray, size: int) -> np.ndarray:
    import cv2

    inverse = cv2.invertAffineTransform(matrix)
    s = size - 0.5
    corners = np.array([[-0.5, -0.5], [-0.5, s], [s, s], [s, -0.5]])
    return corners @ inverse[:, :2].T + inverse[:, 2]


def _invert(matrix: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.invertAffineTransform(np.asarray(matrix, np.float64))


def _cast_like(array: np.ndarray, dtype: Any) -> np.ndarray:
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.rint(array), info.min, info.max).astype(dtype)
    return array.astype(dtype)
