"""The tensor paste-back (the GPU path) writes what the OpenCV paste writes, within one grey level:
every depth and layout, the pre-shrink for small faces, colour match, each interpolation, Poisson."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from faceedit import images
from faceedit.face import align, blend, blend_torch, detect


@pytest.fixture(scope="module")
def astronaut(astronaut_path: Path) -> tuple[np.ndarray, detect.Face]:
    rgb = images.read(astronaut_path).rgb
    return rgb, detect.detect(rgb)[0]


def _case(
    rgb: np.ndarray, face: detect.Face, size: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    aligned = align.align(rgb, face, "celeba-178", size)
    rng = np.random.default_rng(seed)
    edited = np.clip(aligned.crop.astype(np.int16) + rng.integers(-60, 60, aligned.crop.shape), 0, 255)
    return aligned.crop, edited.astype(np.uint8), aligned.matrix


def _both(
    pixels: np.ndarray, edited: np.ndarray, matrix: np.ndarray, **options: object
) -> tuple[np.ndarray, np.ndarray]:
    cpu = pixels.copy()
    blend.paste_into(cpu, edited, matrix, **options)  # type: ignore[arg-type]
    tensor = torch.from_numpy(pixels.copy())
    mode = options.pop("blend", "feather")
    blend_torch.paste_into(tensor, edited, matrix, blend_mode=mode, **options)  # type: ignore[arg-type]
    return cpu, tensor.numpy()


def _assert_close(cpu: np.ndarray, gpu: np.ndarray, pixels: np.ndarray, full: int = 255) -> None:
    diff = np.abs(cpu.astype(np.int64) - gpu.astype(np.int64))
    assert diff.max() <= max(1, full // 255), diff.max()  # one grey level (of 8 bits)
    assert (cpu != pixels).sum() > 1000  # the face really was pasted


@pytest.mark.parametrize("interpolation", ["bicubic", "bilinear", "lanczos"])
def test_rgb_paste_matches_within_one_level(astronaut: tuple, interpolation: str) -> None:
    rgb, face = astronaut
    original, edited, matrix = _case(rgb, face, 128)
    cpu, gpu = _both(
        rgb, edited, matrix, original=original, color_match="partial", interpolation=interpolation
    )
    _assert_close(cpu, gpu, rgb)


def test_a_large_crop_of_a_small_face_is_shrunk_first(astronaut: tuple) -> None:
    rgb, face = astronaut  # a 512 crop of a ~100 px face: scale > 2, the INTER_AREA pre-shrink
    original, edited, matrix = _case(rgb, face, 512, seed=1)
    assert blend._shrunk_crop(edited, matrix)[0].shape[0] < 512
    cpu, gpu = _both(rgb, edited, matrix, original=original)
    _assert_close(cpu, gpu, rgb)


def test_deep_gray_alpha_and_float_photos(astronaut: tuple) -> None:
    rgb, face = astronaut
    original, edited, matrix = _case(rgb, face, 128, seed=2)
    deep = rgb.astype(np.uint16) * 257
    _assert_close(*_both(deep, edited, matrix, original=original), deep, full=65535)
    gray = np.ascontiguousarray(rgb[..., 1])
    _assert_close(*_both(gray, edited, matrix, original=original, color_match="off"), gray)
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 200, np.uint8)])
    cpu, gpu = _both(rgba, edited, matrix, original=original, color_match="full")
    _assert_close(cpu, gpu, rgba)
    assert (gpu[..., 3] == 200).all()  # alpha left alone
    unit = rgb.astype(np.float32) / 255
    cpu, gpu = _both(unit, edited, matrix, original=original)
    assert np.abs(cpu - gpu).max() < 1 / 255


def test_poisson_and_a_face_half_outside_the_photo(astronaut: tuple) -> None:
    rgb, face = astronaut
    original, edited, matrix = _case(rgb, face, 128, seed=3)
    cpu, gpu = _both(rgb, edited, matrix, original=original, blend="poisson")
    _assert_close(cpu, gpu, rgb)
    corner = np.ascontiguousarray(rgb[120:, 150:])  # the face runs over the top and left edges
    shifted = align.compose(matrix, np.array([[1.0, 0, 150], [0, 1.0, 120]]))
    _assert_close(*_both(corner, edited, shifted, original=original), corner)


def test_feather_mask_equals_opencv(astronaut: tuple) -> None:
    import cv2

    _, _, matrix = _case(*astronaut, 128)
    for w_edge in (1, 3, 5, 9):  # the fixed small Gaussian kernels and the computed ones
        dsize = (140, 150)
        ours = blend_torch.feather_mask(128, None, matrix, dsize, w_edge).numpy()
        theirs = blend._feather_mask(128, None, cv2.invertAffineTransform(matrix), dsize, w_edge)
        assert np.abs(ours - theirs).max() < 1e-4, w_edge


def _change(rgb: np.ndarray, face: detect.Face, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A visible change in the crop's top third (a 'hair colour' shift) and a faint one below it."""
    aligned = align.align(rgb, face, "celeba-178", size)
    rng = np.random.default_rng(seed)
    delta = np.zeros((size, size, 3), np.float32)
    delta[: size // 3] = [0.15, 0.08, -0.05]
    delta[size // 3 :] = rng.normal(0, 0.002, (size - size // 3, size, 3))  # under the mask's threshold
    return delta, aligned.matrix


@pytest.mark.parametrize("interpolation", ["bicubic", "bilinear", "lanczos"])
@pytest.mark.parametrize("layout", ["rgb", "rgba16", "gray", "float"])
def test_change_transfer_matches_within_one_level(astronaut: tuple, interpolation: str, layout: str) -> None:
    rgb, face = astronaut
    delta, matrix = _change(rgb, face, 128)
    pixels = {
        "rgb": rgb,
        "rgba16": np.dstack([rgb.astype(np.uint16) * 257, np.full(rgb.shape[:2], 40000, np.uint16)]),
        "gray": (rgb @ np.array([0.299, 0.587, 0.114])).astype(np.uint8),
        "float": rgb.astype(np.float32) / 255,
    }[layout]
    cpu = pixels.copy()
    assert blend.add_change_into(cpu, delta, matrix, interpolation=interpolation)
    tensor = torch.from_numpy(pixels.copy())
    assert blend_torch.add_change_into(tensor, delta, matrix, interpolation=interpolation)
    gpu = tensor.numpy()
    full = 1.0 if layout == "float" else float(np.iinfo(pixels.dtype).max)
    diff = np.abs(cpu.astype(np.float64) - gpu.astype(np.float64)) / full * 255
    assert diff.max() <= 1.0 + 1e-6, diff.max()  # one grey level of 8 bits
    assert (cpu != pixels).sum() > 1000  # the change really landed
    untouched = cpu == pixels
    assert (gpu[untouched] == pixels[untouched]).mean() > 0.999  # both leave the same pixels exact
    if layout == "rgba16":
        np.testing.assert_array_equal(gpu[..., 3], pixels[..., 3])  # alpha never touched


def test_change_transfer_of_nothing_changes_nothing(astronaut: tuple) -> None:
    rgb, face = astronaut
    _, matrix = _change(rgb, face, 128)
    tensor = torch.from_numpy(rgb.copy())
    assert not blend_torch.add_change_into(tensor, np.zeros((128, 128, 3), np.float32), matrix)
    np.testing.assert_array_equal(tensor.numpy(), rgb)
    with pytest.raises(ValueError, match="non-finite"):
        blend_torch.add_change_into(tensor, np.full((128, 128, 3), np.nan, np.float32), matrix)
