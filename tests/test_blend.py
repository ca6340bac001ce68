"""face/blend.py: identity round trips (RGB, RGBA, gray, 16-bit), untouched surroundings, colour, Poisson."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from faceedit import images
from faceedit.face import align, blend, detect


@pytest.fixture(scope="module")
def photo(astronaut_path: Path) -> images.Photo:
    return images.read(astronaut_path)


@pytest.fixture(scope="module")
def face(photo: images.Photo) -> detect.Face:
    return detect.detect(photo.rgb, "mtcnn")[0]


def _outside(matrix: np.ndarray, size: int, shape: tuple[int, ...]) -> np.ndarray:
    """Pixels farther than 1 px from the crop's footprint (computed independently of blend.py)."""
    inverse = cv2.invertAffineTransform(matrix)
    s = size - 0.5
    corners = np.array([[-0.5, -0.5], [s, -0.5], [s, s], [-0.5, s]]) @ inverse[:, :2].T + inverse[:, 2]
    inside = np.zeros(shape[:2], np.uint8)
    cv2.fillConvexPoly(inside, np.round(corners).astype(np.int32), 1)
    return cv2.dilate(inside, np.ones((3, 3), np.uint8)) == 0


@pytest.mark.parametrize("template", ["stargan", "attgan", "stgan", "ffhq", "selfie"])
def test_identity_round_trip(photo: images.Photo, face: detect.Face, template: str) -> None:
    aligned = align.align(photo.rgb, face, template)
    out = blend.paste_back(photo.pixels, aligned.crop, aligned.matrix)
    diff = np.abs(out.astype(int) - photo.pixels)
    assert diff.mean() < 1.0
    outside = _outside(aligned.matrix, aligned.size, photo.pixels.shape)
    assert outside.sum() > 0.5 * outside.size
    assert diff[outside].max() == 0
    assert out.dtype == photo.pixels.dtype and out.shape == photo.pixels.shape


def test_rgba_gray_and_16bit_files_round_trip(photo: images.Photo, face: detect.Face, tmp_path: Path) -> None:
    rgb = photo.rgb
    alpha = np.tile(np.linspace(0, 255, 512, dtype=np.uint8), (512, 1))
    Image.fromarray(np.dstack([rgb, alpha])).save(tmp_path / "rgba.png")
    Image.fromarray(rgb).convert("L").save(tmp_path / "gray.png")
    cv2.imwrite(str(tmp_path / "deep.png"), rgb[..., ::-1].astype(np.uint16) * 257 + 100)
    for name in ("rgba.png", "gray.png", "deep.png"):
        source = images.read(tmp_path / name)
        aligned = align.align(source.rgb, face, "celeba-178", 128)
        edited = blend.paste_back(source.pixels, aligned.crop, aligned.matrix)
        written = images.read(images.write(tmp_path / f"out-{name}", source.replace(pixels=edited)))
        assert written.mode == source.mode and written.pixels.dtype == source.pixels.dtype, name
        one_level = 257 if source.bit_depth == 16 else 1
        diff = np.abs(written.pixels.astype(np.int64) - source.pixels)
        assert diff.mean() < one_level, name
        outside = _outside(aligned.matrix, 128, source.pixels.shape)
        assert diff[outside].max() == 0, name  # 16-bit values outside the face keep full precision
        if source.alpha is not None:
            np.testing.assert_array_equal(written.alpha, source.alpha)


def test_plain_arrays_gray_2d_and_four_channels(photo: images.Photo, face: detect.Face) -> None:
    aligned = align.align(photo.rgb, face, "selfie", 256)
    gray = cv2.cvtColor(photo.rgb, cv2.COLOR_RGB2GRAY)
    out = blend.paste_back(gray, aligned.crop, aligned.matrix)
    assert out.shape == gray.shape and np.abs(out.astype(int) - gray).mean() < 1.0
    rgba = np.dstack([photo.rgb, np.full((512, 512), 77, np.uint8)])
    out = blend.paste_back(rgba, np.zeros_like(aligned.crop), aligned.matrix)
    assert (out[..., 3] == 77).all() and out[..., :3].mean() < rgba[..., :3].mean()


def test_edit_shows_inside_and_feathers(photo: images.Photo, face: detect.Face) -> None:
    aligned = align.align(photo.rgb, face, "celeba-178", 128)
    white = np.full_like(aligned.crop, 255)
    out = blend.paste_back(photo.pixels, white, aligned.matrix)
    cx, cy = face.points5[2].round().astype(int)
    assert (out[cy - 5 : cy + 5, cx - 5 : cx + 5] == 255).all()  # the centre is fully the edit
    outside = _outside(aligned.matrix, 128, photo.pixels.shape)
    assert (out[outside] == photo.pixels[outside]).all()
    changed = np.abs(out.astype(int) - photo.pixels).sum(2) > 0
    partial = changed & (out.min(2) < 250) & ~outside  # the feathered band: neither old nor new
    assert partial.sum() > 100


def test_colour_match_removes_a_colour_cast(photo: images.Photo, face: detect.Face) -> None:
    aligned = align.align(photo.rgb, face, "celeba-178", 128)
    cast = np.clip(aligned.crop * np.array([1.15, 1.0, 0.85]), 0, 255).astype(np.uint8)
    region = ~_outside(aligned.matrix, 128, photo.pixels.shape)

    def error(mode: str) -> float:
        """How far the face's mean colour moved (per channel, worst channel)."""
        out = blend.paste_back(photo.pixels, cast, aligned.matrix, color_match=mode)  # type: ignore[arg-type]
        return float(np.abs((out[region].astype(float) - photo.pixels[region]).mean(0)).max())

    off, partial, full = error("off"), error("partial"), error("full")
    assert full < partial < off and full < 0.25 * off


def test_poisson_blend(photo: images.Photo, face: detect.Face) -> None:
    aligned = align.align(photo.rgb, face, "celeba-178", 128)
    bright = np.clip(aligned.crop.astype(int) + 40, 0, 255).astype(np.uint8)
    out = blend.paste_back(photo.pixels, bright, aligned.matrix, blend="poisson")
    outside = _outside(aligned.matrix, 128, photo.pixels.shape)
    assert (out[outside] == photo.pixels[outside]).all()
    feather = blend.paste_back(photo.pixels, bright, aligned.matrix)
    inside = ~outside
    # the gradient-domain paste pulls the brightened face back towards its surroundings
    assert (
        np.abs(out[inside].astype(int) - photo.pixels[inside]).mean()
        < np.abs(feather[inside].astype(int) - photo.pixels[inside]).mean()
    )
    with pytest.raises(Exception, match="blend"):
        blend.paste_back(photo.pixels, bright, aligned.matrix, blend="alpha")  # type: ignore[arg-type]


def test_face_cut_by_the_photo_border(photo: images.Photo, face: detect.Face) -> None:
    cut = np.ascontiguousarray(photo.pixels[80:, 200:])  # the face's top-left leaves the frame
    shifted = face.transformed(np.array([[1.0, 0, -200], [0, 1.0, -80]]))
    aligned = align.align(cut, shifted, "ffhq", 256)
    for mode in ("feather", "poisson"):
        out = blend.paste_back(cut, aligned.crop, aligned.matrix, blend=mode)  # type: ignore[arg-type]
        assert out.shape == cut.shape and np.abs(out.astype(int) - cut).mean() < 1.5


def test_several_faces_and_cost_follows_the_face(photo: images.Photo) -> None:
    canvas = np.zeros((1400, 2600, 3), np.uint8)
    canvas[:512, :512] = photo.rgb
    canvas[600:1112, 1800:2312] = photo.rgb
    faces = detect.detect(canvas, "mtcnn")
    assert len(faces) == 2
    crops = [align.align(canvas, f, "celeba-170", 128) for f in faces]
    out = blend.paste_many(canvas, [(np.full_like(c.crop, 200), c.matrix) for c in crops])
    for c in crops:
        x0, y0, x1, y1 = align.footprint(c.matrix, 128, canvas.shape)
        assert (out[y0:y1, x0:x1] == 200).any()
    union = np.logical_and(*[_outside(c.matrix, 128, canvas.shape) for c in crops])
    assert (out[union] == canvas[union]).all()
    assert blend.feather_width(crops[0].matrix, 128) == pytest.approx(max(int(128 / crops[0].scale) // 20, 1))
