"""Putting an edit back into the full-resolution photo: as a change (default) or as a replaced crop.

``add_change_into`` (detail "transfer"): the model's change (edited minus its own reconstruction) is
warped back at the photo's resolution and added under a soft mask of where it is significant, so
detail the model cannot represent survives and untouched pixels stay exact. ``paste_into`` (detail
"replace", the official test output): the crop itself, inverse-warped inside the face's region, with
an eroded and feathered mask (facexlib's maths), optional Lab colour match and Poisson blending.
Both work in the photo's own depth (uint8 / uint16 / float) and leave alpha alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal, TypedDict, Unpack

import numpy as np

from faceedit.errors import UsageError
from faceedit.face.align import INTERPOLATIONS, compose, footprint

ColorMatch = Literal["off", "partial", "full"]
Blend = Literal["feather", "poisson"]
Detail = Literal["transfer", "replace"]
DETAILS: tuple[str, ...] = ("transfer", "replace")
COLOR_STRENGTH = {"off": 0.0, "partial": 0.5, "full": 1.0}
# A change counts from CHANGE_LOW (fully from CHANGE_HIGH) of the full range, after smoothing: a
# generator's reconstruction noise stays below it, a visible edit (a hair colour) is far above it.
CHANGE_LOW, CHANGE_HIGH = 2.0 / 255, 6.0 / 255


def _full_scale(dtype: np.dtype) -> float:
    return float(np.iinfo(dtype).max) if np.issubdtype(dtype, np.integer) else 1.0


def feather_width(matrix: np.ndarray, size: int) -> int:
    """facexlib's edge width: 1/20 of the side of the crop's footprint in the photo (at least 1 px)."""
    scale = math.sqrt(abs(np.linalg.det(np.asarray(matrix)[:, :2])))
    return max(int(size / scale) // 20, 1)


def color_transfer(
    edited: np.ndarray, original: np.ndarray, strength: float = 1.0, mask: np.ndarray | None = None
) -> np.ndarray:
    """Reinhard mean/std transfer in Lab: ``edited`` takes ``original``'s colour statistics.

    Both are HWC RGB float32 in [0, 1]; ``mask`` (HW bool) picks the pixels the statistics come from;
    ``strength`` 0..1 blends between the edited colours and the fully matched ones.
    """
    import cv2

    if strength <= 0:
        return edited
    lab_e = cv2.cvtColor(np.ascontiguousarray(edited, np.float32), cv2.COLOR_RGB2Lab)
    lab_o = cv2.cvtColor(np.ascontiguousarray(original, np.float32), cv2.COLOR_RGB2Lab)
    pick = np.ones(lab_e.shape[:2], bool) if mask is None else mask
    mean_e, std_e = lab_e[pick].mean(0), lab_e[pick].std(0)
    mean_o, std_o = lab_o[pick].mean(0), lab_o[pick].std(0)
    matched = (lab_e - mean_e) * (std_o / np.maximum(std_e, 1e-3)) + mean_o
    lab = lab_e + (matched - lab_e) * float(strength)
    return np.clip(cv2.cvtColor(lab.astype(np.float32), cv2.COLOR_Lab2RGB), 0.0, 1.0)


def _inner_mask(size: int, mask: np.ndarray | None) -> np.ndarray:
    """Where colour statistics are taken: the user's mask, else the crop without a 1/8 border."""
    if mask is not None:
        return mask > 0.5
    inner = np.zeros((size, size), bool)
    b = size // 8
    inner[b : size - b, b : size - b] = True
    return inner


def _shrunk_crop(crop: np.ndarray, matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """When the crop is > 2x larger than the face in the photo, INTER_AREA it down first (no aliasing)."""
    import cv2

    scale = math.sqrt(abs(np.linalg.det(matrix[:, :2])))
    k = int(scale)
    if k < 2:
        return crop, matrix
    size = crop.shape[0]
    n = max(round(size / k), 1)
    small = cv2.resize(crop, (n, n), interpolation=cv2.INTER_AREA)
    r = n / size  # crop -> small crop, pixel centres
    return small, compose(np.array([[r, 0, 0.5 * r - 0.5], [0, r, 0.5 * r - 0.5]]), matrix)


class PasteKwargs(TypedDict, total=False):
    """The keyword options of :func:`paste_into`, which :func:`paste_back` and :func:`paste_many` pass on."""

    original: np.ndarray | None
    color_match: ColorMatch | float
    blend: Blend
    mask: np.ndarray | None
    interpolation: str


def paste_back(
    pixels: np.ndarray, edited: np.ndarray, matrix: np.ndarray, **options: Unpack[PasteKwargs]
) -> np.ndarray:
    """A copy of ``pixels`` with ``edited`` (S x S x 3 RGB crop, uint8 or [0,1] float) put back in place.

    ``pixels`` is HWC RGB(A) or HW gray in its own depth; ``matrix`` is the 2x3 photo -> crop map of
    the alignment. ``options`` as :func:`paste_into`: ``original`` is the unedited crop (for the colour
    match; re-warped when None), ``mask`` (S x S, [0,1]) limits the pasted area inside the crop.
    """
    out = pixels.copy()
    paste_into(out, edited, matrix, **options)
    return out


def paste_many(
    pixels: np.ndarray, faces: Sequence[tuple[np.ndarray, np.ndarray]], **options: Unpack[PasteKwargs]
) -> np.ndarray:
    """Paste several ``(edited crop, matrix)`` pairs into one copy of ``pixels``; largest face last."""
    out = pixels.copy()
    order = sorted(range(len(faces)), key=lambda i: feather_width(faces[i][1], faces[i][0].shape[0]))
    for i in order:
        paste_into(out, faces[i][0], faces[i][1], **options)
    return out


def paste_into(
    out: np.ndarray,
    edited: np.ndarray,
    matrix: np.ndarray,
    *,
    original: np.ndarray | None = None,
    color_match: ColorMatch | float = "off",
    blend: Blend = "feather",
    mask: np.ndarray | None = None,
    interpolation: str = "bicubic",
) -> None:
    """In-place :func:`paste_back`: only the face's region of ``out`` is read and written."""
    import cv2

    matrix = np.asarray(matrix, np.float64)
    size = edited.shape[0]
    face = _as_unit_float(edited)
    strength = COLOR_STRENGTH[color_match] if isinstance(color_match, str) else float(color_match)
    if strength > 0:
        if original is None:
            from faceedit.face.align import warp_affine

            original = warp_affine(_rgb_view(out), matrix, size)
        face = color_transfer(face, _as_unit_float(original), strength, _inner_mask(size, mask))
    w_edge = feather_width(matrix, size)
    x0, y0, x1, y1 = footprint(matrix, size, out.shape, pad=2)
    if x1 <= x0 or y1 <= y0:
        return  # the crop lies entirely outside the photo
    roi_matrix = compose(matrix, np.array([[1.0, 0, x0], [0, 1.0, y0]]))  # ROI -> crop
    small, small_matrix = _shrunk_crop(face, roi_matrix)
    flags = _interpolation_flag(interpolation)
    dsize = (x1 - x0, y1 - y0)
    inverse = cv2.invertAffineTransform(small_matrix)
    warped = cv2.warpAffine(small, inverse, dsize, flags=flags, borderMode=cv2.BORDER_REPLICATE)
    weight = _feather_mask(size, mask, cv2.invertAffineTransform(roi_matrix), dsize, w_edge)
    region = out[y0:y1, x0:x1]
    _blend_region(region, warped, weight, blend)


def _feather_mask(
    size: int, mask: np.ndarray | None, inverse: np.ndarray, dsize: tuple[int, int], w_edge: int
) -> np.ndarray:
    """The crop's footprint in the ROI, eroded by 1 + w_edge px and blurred over w_edge (facexlib)."""
    import cv2

    ones = np.ones((size, size), np.float32) if mask is None else np.clip(mask, 0, 1).astype(np.float32)
    m = cv2.warpAffine(ones, inverse, dsize, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    m = cv2.erode(m, np.ones((2, 2), np.uint8))  # drop the half-covered edge pixels
    m = cv2.erode(m, np.ones((2 * w_edge, 2 * w_edge), np.uint8))
    m = cv2.GaussianBlur(m, (2 * w_edge + 1, 2 * w_edge + 1), 0)
    return np.clip(m, 0.0, 1.0)


def _blend_region(region: np.ndarray, warped: np.ndarray, weight: np.ndarray, blend: Blend) -> None:
    """``region = w * warped + (1 - w) * region`` in float32, in the region's own depth and layout."""
    full = _full_scale(region.dtype)
    gray = region.ndim == 2
    colour = region[..., None].astype(np.float32) if gray else region[..., :3].astype(np.float32)
    face = warped * full
    if gray:
        face = (face[..., 0] * 0.299 + face[..., 1] * 0.587 + face[..., 2] * 0.114)[..., None]
    if blend == "poisson":
        face = _poisson(face, colour, weight, full)
    elif blend != "feather":
        raise UsageError(f"unknown blend {blend!r}", "use feather or poisson")
    w = weight[..., None]
    mixed = colour + (face - colour) * w  # exactly the old value wherever w == 0
    if np.issubdtype(region.dtype, np.integer):
        mixed = np.clip(np.rint(mixed), 0, full)
    if gray:
        region[...] = mixed[..., 0].astype(region.dtype)
    else:
        region[..., :3] = mixed.astype(region.dtype)


def _poisson(face: np.ndarray, background: np.ndarray, weight: np.ndarray, full: float) -> np.ndarray:
    """cv2.seamlessClone (NORMAL_CLONE) of the face onto the background, in 8 bits; same range out."""
    import cv2

    def to8(a: np.ndarray) -> np.ndarray:
        a = np.repeat(a, 3, axis=2) if a.shape[2] == 1 else a
        return np.clip(np.rint(a * (255.0 / full)), 0, 255).astype(np.uint8)

    binary = (weight > 0.5).astype(np.uint8) * 255
    binary[[0, -1], :] = 0  # seamlessClone needs the mask away from the image border
    binary[:, [0, -1]] = 0
    if cv2.countNonZero(binary) < 16:
        return face
    x, y, w, h = cv2.boundingRect(binary)
    cloned = cv2.seamlessClone(to8(face), to8(background), binary, (x + w // 2, y + h // 2), cv2.NORMAL_CLONE)
    result = cloned.astype(np.float32) * (full / 255.0)
    return result[..., :1] if face.shape[2] == 1 else result


def _as_unit_float(crop: np.ndarray) -> np.ndarray:
    """HWC RGB in float32 [0, 1] (uint8/uint16 scaled; floats assumed to be in [0, 1] already)."""
    crop = np.asarray(crop)
    if crop.ndim == 2:
        crop = np.repeat(crop[..., None], 3, axis=2)
    if np.issubdtype(crop.dtype, np.integer):
        return crop[..., :3].astype(np.float32) / _full_scale(crop.dtype)
    return np.clip(crop[..., :3].astype(np.float32), 0.0, 1.0)


def _rgb_view(pixels: np.ndarray) -> np.ndarray:
    return np.repeat(pixels[..., None], 3, axis=2) if pixels.ndim == 2 else pixels[..., :3]


# --------------------------------------------------------------------------- detail "transfer"


def change_weight(delta: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Where a change matters, S x S float32 in [0, 1] (crop frame).

    ``delta`` is S x S x 3 (edited minus reconstruction, fractions of the full range). Its largest
    channel magnitude, smoothed over ~1/100 of the crop, ramps from CHANGE_LOW to CHANGE_HIGH; the
    result is feathered over ~1/40 of the crop and limited to the crop (and to ``mask``) by a ramp that
    is 0 on its outer 1/32 and rises smoothly over the next 1/16: no seam at the crop's edge.
    """
    import cv2

    size = delta.shape[0]
    magnitude = np.abs(delta).max(axis=2).astype(np.float32)
    magnitude = cv2.GaussianBlur(magnitude, (0, 0), max(size / 100, 0.8))
    ramp = np.clip((magnitude - CHANGE_LOW) / (CHANGE_HIGH - CHANGE_LOW), 0.0, 1.0)
    if not ramp.any():
        return ramp  # nothing significant: keep exact zeros (no blur can make them non-zero)
    ramp = cv2.dilate(ramp, np.ones((3, 3), np.uint8))  # the ramp's own edge still belongs to the change
    weight = cv2.GaussianBlur(ramp, (0, 0), max(size / 40, 1.0))
    border = max(size // 32, 1)
    edge = np.minimum(np.arange(size), np.arange(size)[::-1]).astype(np.float32)  # px to the crop's edge
    t = np.clip((edge - border) / (2 * border), 0.0, 1.0)
    ramp_1d = t * t * (3 - 2 * t)  # smoothstep: exactly 0 at the edge band, 1 inside
    region = np.minimum.outer(ramp_1d, ramp_1d)
    if mask is not None:
        region *= np.clip(mask, 0, 1).astype(np.float32)
    return np.clip(weight, 0.0, 1.0) * region


def add_change_into(
    out: np.ndarray,
    delta: np.ndarray,
    matrix: np.ndarray,
    *,
    mask: np.ndarray | None = None,
    interpolation: str = "bicubic",
) -> bool:
    """``out += warp(delta * change_weight(delta))`` in place, at the photo's own resolution.

    ``out`` is HWC RGB(A) or HW gray in its own depth; ``delta`` S x S x 3 float (edited minus the
    model's reconstruction of the same crop, in fractions of the full range: [-1, 1]); ``matrix``
    the 2x3 photo -> crop map. Integer pixels whose change rounds to 0 keep their exact value; alpha
    is not touched. Returns False when nothing could change (no significant change in the crop).
    """
    import cv2

    delta = np.asarray(delta, np.float32)
    if not np.isfinite(delta).all():
        raise ValueError("the change has non-finite values (NaN/Inf)")
    weighted = delta * change_weight(delta, mask)[..., None]
    matrix = np.asarray(matrix, np.float64)
    x0, y0, x1, y1 = footprint(matrix, delta.shape[0], out.shape, pad=2)
    if not weighted.any() or x1 <= x0 or y1 <= y0:
        return False
    roi_matrix = compose(matrix, np.array([[1.0, 0, x0], [0, 1.0, y0]]))  # ROI -> crop
    small, small_matrix = _shrunk_crop(weighted, roi_matrix)
    flags = _interpolation_flag(interpolation)
    inverse = cv2.invertAffineTransform(small_matrix)
    change = cv2.warpAffine(small, inverse, (x1 - x0, y1 - y0), flags=flags, borderMode=cv2.BORDER_CONSTANT)
    _add_region(out[y0:y1, x0:x1], change)
    return True


def _interpolation_flag(interpolation: str) -> int:
    flags = INTERPOLATIONS.get(interpolation)
    if flags is None:
        raise UsageError(
            f"unknown interpolation {interpolation!r}", f"use one of {', '.join(INTERPOLATIONS)}"
        )
    return flags


def _add_region(region: np.ndarray, change: np.ndarray) -> None:
    """``region += change`` (HW x 3, fractions of the full range) in the region's depth and layout."""
    full = _full_scale(region.dtype)
    change = change * np.float32(full)
    if region.ndim == 2:
        change = change[..., 0] * 0.299 + change[..., 1] * 0.587 + change[..., 2] * 0.114
        colour = region
    else:
        colour = region[..., :3]
    mixed = colour.astype(np.float32) + change
    if np.issubdtype(region.dtype, np.integer):
        mixed = np.clip(np.rint(mixed), 0, full)  # a change under half a level leaves the pixel exact
    else:  # float photos: clip only what changed (values beyond [0, 1] elsewhere are the photo's own)
        mixed = np.where(change != 0, np.clip(mixed, 0.0, 1.0), colour)
    colour[...] = mixed.astype(region.dtype)
