"""The paste-back of :mod:`faceedit.face.blend` as torch tensor ops, so that on CUDA a photo can stay on
the device between decode and encode: the change transfer (``--detail transfer``) and the feathered paste
(inverse warp, facexlib's feathered mask, the blend).

Same maths as the CPU path, OpenCV's quirks included (the 2x2 erosion's anchor, the fixed small
Gaussian kernels, BORDER_REFLECT_101), so outputs agree within one grey level. The
S x S crop work (colour match, pre-shrink) stays with numpy: it is tiny. Poisson blending and Lanczos
warps have no tensor form here and run that step with OpenCV.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from faceedit.face import blend
from faceedit.face.align import INTERPOLATIONS, compose, footprint

if TYPE_CHECKING:
    import torch

_MODES = {"bilinear": "bilinear", "area": "bilinear", "bicubic": "bicubic"}  # cv2 warps INTER_AREA bilinearly


def paste_into(
    out: torch.Tensor,
    edited: np.ndarray,
    matrix: np.ndarray,
    *,
    original: np.ndarray | None = None,
    color_match: blend.ColorMatch | float = "off",
    blend_mode: blend.Blend = "feather",
    mask: np.ndarray | None = None,
    interpolation: str = "bicubic",
) -> None:
    """:func:`faceedit.face.blend.paste_into` on a tensor ``out`` (HWC RGB(A) or HW gray, uint8 /
    uint16 / float, any device), in place: only the face's region is read and written."""
    import torch

    matrix = np.asarray(matrix, np.float64)
    size = edited.shape[0]
    face = _colour_matched(out, edited, matrix, original, color_match, mask)
    x0, y0, x1, y1 = footprint(matrix, size, tuple(out.shape), pad=2)
    if x1 <= x0 or y1 <= y0:
        return  # the crop lies entirely outside the photo
    roi_matrix = compose(matrix, np.array([[1.0, 0, x0], [0, 1.0, y0]]))  # ROI -> crop
    small, small_matrix = blend._shrunk_crop(face, roi_matrix)
    dsize = (x1 - x0, y1 - y0)
    source = torch.from_numpy(np.ascontiguousarray(small)).to(out.device)
    warped = _warp(source, small_matrix, dsize, interpolation)
    weight = feather_mask(size, mask, roi_matrix, dsize, blend.feather_width(matrix, size), out.device)
    region = out[y0:y1, x0:x1]
    if blend_mode == "poisson":  # seamlessClone is OpenCV's: blend this region on the host
        host = region.cpu().numpy()
        blend._blend_region(host, warped.cpu().numpy(), weight.cpu().numpy(), "poisson")
        region.copy_(torch.from_numpy(host))
        return
    blend_region(region, warped, weight)


def _colour_matched(
    out: torch.Tensor,
    edited: np.ndarray,
    matrix: np.ndarray,
    original: np.ndarray | None,
    color_match: blend.ColorMatch | float,
    mask: np.ndarray | None,
) -> np.ndarray:
    """The edited crop in float32 [0, 1], colour-matched on the host (S x S: cheap)."""
    face = blend._as_unit_float(edited)
    strength = blend.COLOR_STRENGTH[color_match] if isinstance(color_match, str) else float(color_match)
    if strength <= 0:
        return face
    if original is None:
        from faceedit.face.align import warp_affine

        original = warp_affine(blend._rgb_view(out.cpu().numpy()), matrix, edited.shape[0])
    inner = blend._inner_mask(edited.shape[0], mask)
    return blend.color_transfer(face, blend._as_unit_float(original), strength, inner)


def add_change_into(
    out: torch.Tensor,
    delta: np.ndarray,
    matrix: np.ndarray,
    *,
    mask: np.ndarray | None = None,
    interpolation: str = "bicubic",
) -> bool:
    """:func:`faceedit.face.blend.add_change_into` (the default ``--detail transfer``) on a tensor ``out``
    in place: the S x S weighting stays with numpy, the warp to full resolution and the addition run on
    ``out``'s device. Returns False when nothing could change."""
    import torch

    delta = np.asarray(delta, np.float32)
    if not np.isfinite(delta).all():
        raise ValueError("the change has non-finite values (NaN/Inf)")
    weighted = delta * blend.change_weight(delta, mask)[..., None]
    matrix = np.asarray(matrix, np.float64)
    x0, y0, x1, y1 = footprint(matrix, delta.shape[0], tuple(out.shape), pad=2)
    if not weighted.any() or x1 <= x0 or y1 <= y0:
        return False
    roi_matrix = compose(matrix, np.array([[1.0, 0, x0], [0, 1.0, y0]]))  # ROI -> crop
    small, small_matrix = blend._shrunk_crop(weighted, roi_matrix)
    source = torch.from_numpy(np.ascontiguousarray(small)).to(out.device)
    change = _warp(source, small_matrix, (x1 - x0, y1 - y0), interpolation, constant=True)
    add_region(out[y0:y1, x0:x1], change)
    return True


def add_region(region: torch.Tensor, change: torch.Tensor) -> None:
    """``region += change`` (h x w x 3, fractions of the full range) in the region's depth and layout;
    integer pixels whose change rounds to 0 keep their value (as :func:`blend._add_region`)."""
    import torch

    full = _full_scale(region.dtype)
    change = change * full
    if region.dim() == 2:
        change = change[..., 0] * 0.299 + change[..., 1] * 0.587 + change[..., 2] * 0.114
        colour = region
    else:
        colour = region[..., :3]
    mixed = colour.float() + change
    if not region.dtype.is_floating_point:
        mixed = torch.round(mixed).clamp(0, full)
    else:  # float photos: clip only what changed
        mixed = torch.where(change != 0, mixed.clamp(0.0, 1.0), colour.float())
    colour.copy_(mixed.to(region.dtype))


def _grid(
    dst_to_src: np.ndarray, dsize: tuple[int, int], src_hw: tuple[int, int], device: torch.device
) -> torch.Tensor:
    """grid_sample's grid [1,h,w,2] (``align_corners=True``) of the source position of every ROI pixel.

    OpenCV 5 warps at exact float positions (4.x rounded them to 1/32 px: outputs then differ by up
    to ~2 % of the local contrast, still within a grey level on photos)."""
    import torch

    w, h = dsize
    m = dst_to_src
    xs, ys = np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64)
    grid = []
    for row in (0, 1):
        position = m[row, 0] * xs[None, :] + (m[row, 1] * ys + m[row, 2])[:, None]
        extent = max(src_hw[1 - row] - 1, 1)
        grid.append(torch.from_numpy(position * (2.0 / extent) - 1.0))
    return torch.stack(grid, dim=-1)[None].to(device=device, dtype=torch.float32)


def _warp(
    source: torch.Tensor,
    small_matrix: np.ndarray,
    dsize: tuple[int, int],
    interpolation: str,
    constant: bool = False,
) -> torch.Tensor:
    """The crop [n,n,3] float warped into the ROI [h,w,3] (cv2.warpAffine, BORDER_REPLICATE, or with
    ``constant`` BORDER_CONSTANT 0: a change is zero outside its crop)."""
    import cv2
    import torch
    import torch.nn.functional as F

    if interpolation not in INTERPOLATIONS:
        from faceedit.errors import UsageError

        raise UsageError(
            f"unknown interpolation {interpolation!r}", f"use one of {', '.join(INTERPOLATIONS)}"
        )
    inverse = cv2.invertAffineTransform(small_matrix)  # as blend.paste_into passes it to cv2
    if interpolation not in _MODES:  # Lanczos: OpenCV's own 8x8 kernel, on the host
        host = cv2.warpAffine(
            source.cpu().numpy(),
            inverse,
            dsize,
            flags=INTERPOLATIONS[interpolation],
            borderMode=cv2.BORDER_CONSTANT if constant else cv2.BORDER_REPLICATE,
        )
        return torch.from_numpy(host).to(source.device)
    grid = _grid(cv2.invertAffineTransform(inverse), dsize, tuple(source.shape[:2]), source.device)
    image = source.permute(2, 0, 1)[None]
    padding = "zeros" if constant else "border"
    out = F.grid_sample(image, grid, mode=_MODES[interpolation], padding_mode=padding, align_corners=True)
    return out[0].permute(1, 2, 0)


def feather_mask(
    size: int,
    mask: np.ndarray | None,
    roi_matrix: np.ndarray,
    dsize: tuple[int, int],
    w_edge: int,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """The crop's footprint in the ROI [h,w] float32, eroded by 1 + w_edge px and blurred over w_edge
    (blend._feather_mask's facexlib maths: bilinear warp with a zero border, two erosions, Gaussian)."""
    import cv2
    import torch
    import torch.nn.functional as F

    ones = np.ones((size, size), np.float32) if mask is None else np.clip(mask, 0, 1).astype(np.float32)
    grid = _grid(np.asarray(roi_matrix, np.float64), dsize, (size, size), torch.device(device))
    m = F.grid_sample(
        torch.from_numpy(ones).to(device)[None, None],
        grid,
        mode="bilinear",
        padding_mode="zeros",
        align_corners=True,
    )
    m = _erode(m, 2, 1)  # drop the half-covered edge pixels (cv2's anchor: offsets -1..0)
    m = _erode(m, 2 * w_edge, w_edge)
    kernel = torch.from_numpy(cv2.getGaussianKernel(2 * w_edge + 1, 0, ktype=cv2.CV_32F)[:, 0]).to(m.device)
    m = F.pad(m, (w_edge, w_edge, w_edge, w_edge), mode="reflect")  # = cv2's BORDER_REFLECT_101
    m = F.conv2d(m, kernel.view(1, 1, 1, -1))
    m = F.conv2d(m, kernel.view(1, 1, -1, 1))
    return m[0, 0].clamp(0.0, 1.0)


def _erode(m: torch.Tensor, k: int, anchor: int) -> torch.Tensor:
    """cv2.erode with a k x k box anchored at ``anchor``; outside the image never erodes."""
    import torch.nn.functional as F

    pad = (anchor, k - 1 - anchor, anchor, k - 1 - anchor)
    return -F.max_pool2d(F.pad(-m, pad, value=float("-inf")), k, stride=1)


def blend_region(region: torch.Tensor, warped: torch.Tensor, weight: torch.Tensor) -> None:
    """``region = w * warped + (1 - w) * region`` in float32, in the region's own depth and layout."""
    import torch

    full = _full_scale(region.dtype)
    gray = region.dim() == 2
    colour = region[..., None].float() if gray else region[..., :3].float()
    face = warped * full
    if gray:
        face = (face[..., 0] * 0.299 + face[..., 1] * 0.587 + face[..., 2] * 0.114)[..., None]
    mixed = colour + (face - colour) * weight[..., None]  # exactly the old value wherever w == 0
    if not region.dtype.is_floating_point:
        mixed = torch.round(mixed).clamp(0, full)  # round half to even, as np.rint
    if gray:
        region.copy_(mixed[..., 0].to(region.dtype))
    else:
        region[..., :3] = mixed.to(region.dtype)


def _full_scale(dtype: torch.dtype) -> float:
    import torch

    return 1.0 if dtype.is_floating_point else float(torch.iinfo(dtype).max)
