"""face/align.py: template numbers, the similarity fit, CelebA and FFHQ crops vs independent recipes."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image

from faceedit.errors import UsageError
from faceedit.face import align
from faceedit.face.detect import Face

RNG = np.random.default_rng(3)

# face-pipeline.md §0/§4 tables (128 frames): LE, RE, nose, LM, RM and the 3-point CelebA targets.
REFERENCE_128 = {
    "celeba-178": ([[49.48, 65.30], [77.52, 65.30], [63.14, 83.28], [51.63, 94.78], [75.37, 94.78]],
                   [[50.01, 65.30], [76.97, 65.30], [63.45, 95.15]]),
    "celeba-170": ([[48.82, 65.38], [78.18, 65.38], [63.12, 84.21], [51.08, 96.25], [75.92, 96.25]],
                   [[49.38, 65.38], [77.61, 65.38], [63.45, 96.64]]),
    "celeba-tf": ([[49.57, 63.88], [78.94, 63.88], [63.88, 82.70], [51.83, 94.75], [76.68, 94.75]],
                  [[50.13, 63.88], [78.36, 63.88], [64.20, 95.13]]),
}  # fmt: skip
CELEBA_CROPS = {"celeba-178": (0, 20, 178), "celeba-170": (4, 24, 170), "celeba-tf": (3, 26, 170)}


def _face(points: np.ndarray) -> Face:
    points = np.asarray(points, np.float32)
    lo, hi = points.min(0) - 20, points.max(0) + 20
    return Face((*lo.tolist(), *hi.tolist()), 0.99, points)


def _apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return np.asarray(points) @ matrix[:, :2].T + matrix[:, 2]


def _random_similarity(scale: float) -> np.ndarray:
    angle = RNG.uniform(-0.6, 0.6)
    c, s = np.cos(angle) * scale, np.sin(angle) * scale
    return np.array([[c, -s, RNG.uniform(100, 300)], [s, c, RNG.uniform(100, 300)]])


def _smooth_image(h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    channels = [np.sin(xx / 23 + k) * np.cos(yy / 31 - k) * 100 + 128 + (xx + yy) * 0.05 for k in range(3)]
    return np.clip(np.dstack(channels), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("name", list(REFERENCE_128))
def test_celeba_templates_match_reference_tables(name: str) -> None:
    points, targets = REFERENCE_128[name]
    t = align.get_template(name)
    np.testing.assert_allclose(t.points_at(128), points, atol=0.01)
    np.testing.assert_allclose(t.targets3, targets, atol=0.01)


def test_aliases_and_unknown_template() -> None:
    assert align.get_template("stargan").name == "celeba-178"
    assert align.get_template("AttGAN").name == "celeba-170"
    assert align.get_template("stgan").name == "celeba-tf"
    assert align.get_template("ugatit").name == "selfie"
    # facexlib multiplies by 2 for 1024; with pixel centres at integers it is (p + 0.5) * 2 - 0.5.
    np.testing.assert_allclose(
        align.get_template("ffhq").points_at(1024)[0], [385.96 + 0.5, 479.9 + 0.5], atol=0.01
    )
    with pytest.raises(UsageError):
        align.get_template("celeba")


def test_similarity_exact_least_squares_no_reflection() -> None:
    from skimage.transform import SimilarityTransform

    src = RNG.uniform(0, 200, (5, 2))
    truth = _random_similarity(1.7)
    np.testing.assert_allclose(align.similarity(src, _apply(truth, src)), truth, atol=1e-9)
    noisy = _apply(truth, src) + RNG.normal(0, 2, (5, 2))
    reference = SimilarityTransform.from_estimate(src, noisy).params[:2]
    np.testing.assert_allclose(align.similarity(src, noisy), reference, atol=1e-9)
    mirrored = src * [-1, 1]  # a reflection cannot be fitted: the determinant stays positive
    assert np.linalg.det(align.similarity(mirrored, src)[:, :2]) > 0
    robust, _ = cv2.estimateAffinePartial2D(src, _apply(truth, src), method=cv2.LMEDS)
    np.testing.assert_allclose(align.similarity(src, _apply(truth, src)), robust, atol=1e-6)


@pytest.mark.parametrize("name", ["celeba-178", "celeba-170", "celeba-tf", "selfie", "ffhq"])
@pytest.mark.parametrize("size", [128, 256])
def test_synthetic_faces_land_on_the_template(name: str, size: int) -> None:
    t = align.get_template(name)
    to_photo = _random_similarity(RNG.uniform(0.5, 3.0))
    points = _apply(to_photo, t.points_at(size))
    matrix = align.template_matrix(_face(points), name, size)
    landed = _apply(matrix, points)
    exact = 0.01 if t.fit == "points5" else 0.03 * size  # celeba3/ffhq-quad fit other targets
    assert np.abs(landed - t.points_at(size)).max() < exact
    noisy = points + RNG.uniform(-1.5, 1.5, points.shape) * np.sqrt(abs(np.linalg.det(to_photo[:, :2])))
    landed = _apply(align.template_matrix(_face(noisy), name, size), noisy)
    assert np.abs(landed - t.points_at(size)).max() < exact + 4 * size / 128


@pytest.mark.parametrize("name", list(CELEBA_CROPS))
def test_celeba_crop_is_the_training_crop(name: str) -> None:
    """A face at CelebA's own alignment targets comes out as the model's crop of the aligned image."""
    left, top, side = CELEBA_CROPS[name]
    le, re, mouth = align.CELEBA_TARGETS3
    points = np.array([le, re, [88.4, 135.0], mouth - np.array([16, 0]), mouth + np.array([16, 0])])
    matrix = align.template_matrix(_face(points), name, 128)
    k = 128 / side
    expected = np.array([[k, 0, (0.5 - left) * k - 0.5], [0, k, (0.5 - top) * k - 0.5]])
    np.testing.assert_allclose(matrix, expected, atol=1e-4)  # Face points are float32
    frame = _smooth_image(218, 178)
    crop = align.align(frame, _face(points), name, 128, interpolation="bilinear").crop
    resample = Image.Resampling.BICUBIC if name == "celeba-tf" else Image.Resampling.BILINEAR
    reference = np.asarray(
        Image.fromarray(frame).crop((left, top, left + side, top + side)).resize((128, 128), resample)
    )
    assert np.abs(crop.astype(int) - reference).mean() < 1.5


def _ffhq_reference(image: np.ndarray, lm5: np.ndarray, size: int) -> np.ndarray:
    """NVlabs' recipe (steps 1-4 and 8, no shrink/pad) written out again: quad, then PIL QUAD."""
    eye_left, eye_right, mouth_left, mouth_right = lm5[0], lm5[1], lm5[3], lm5[4]
    eye_avg = (eye_left + eye_right) * 0.5
    eye_to_eye = eye_right - eye_left
    mouth_avg = (mouth_left + mouth_right) * 0.5
    eye_to_mouth = mouth_avg - eye_avg
    x = eye_to_eye - np.flipud(eye_to_mouth) * [-1, 1]
    x /= np.hypot(*x)
    x *= max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    y = np.flipud(x) * [-1, 1]
    c = eye_avg + eye_to_mouth * 0.1
    quad = np.stack([c - x - y, c - x + y, c + x + y, c + x - y])
    img = Image.fromarray(image).transform(
        (size, size), Image.Transform.QUAD, (quad + 0.5).flatten(), Image.Resampling.BILINEAR
    )
    return np.asarray(img)


def test_ffhq_crop_matches_the_reference_recipe() -> None:
    image = _smooth_image(512, 512)
    to_photo = np.array([[0.3, -0.08, 180], [0.08, 0.3, 150]])  # ~15 degrees, face ~170 px
    points = _apply(to_photo, align.FFHQ_POINTS5_512) + RNG.normal(0, 1.0, (5, 2))
    ours = align.align(image, _face(points), "ffhq", 256, interpolation="bilinear").crop
    reference = _ffhq_reference(image, points, 256)
    assert np.abs(ours.astype(int) - reference).mean() < 1.0


def test_ffhq_quad_on_the_facexlib_template() -> None:
    """face-pipeline.md §3: the quad of the 512 template is a ~503.7 px square ~3 px off the frame."""
    quad = align.ffhq_quad(*align.FFHQ_POINTS5_512[[0, 1, 3, 4]])
    side = np.hypot(*(quad[3] - quad[0]))
    assert side == pytest.approx(503.7, abs=1.0)
    assert np.abs(quad[0] - [-0.5, -0.5]).max() < 6


def test_ffhq_uses_68_points_when_present() -> None:
    lm = RNG.uniform(100, 200, (68, 2)).astype(np.float32)
    with_68 = Face((0, 0, 300, 300), 1.0, np.zeros((5, 2), np.float32), lm)
    eyes_mouth = np.stack([lm[36:42].mean(0), lm[42:48].mean(0), lm[48], lm[54]])
    np.testing.assert_allclose(
        align.template_matrix(with_68, "ffhq", 512),
        align.quad_matrix(align.ffhq_quad(*eyes_mouth), 512),
        rtol=1e-5,
    )


def test_warp_touches_only_the_face_region_and_matches_a_full_warp() -> None:
    image = _smooth_image(900, 1200)
    matrix = np.array([[0.9, -0.2, -300], [0.2, 0.9, -250]])
    ours = align.warp_affine(image, matrix, 200)
    full = cv2.warpAffine(image, matrix, (200, 200), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
    diff = np.abs(ours.astype(int) - full)
    assert diff.max() <= 1 and diff.mean() < 0.01


def test_large_faces_are_pre_shrunk_without_aliasing() -> None:
    checker = ((np.indices((2000, 2000)).sum(0) % 2) * 255).astype(np.uint8)
    matrix = np.array([[0.1037, 0, 0], [0, 0.1037, 0]])  # ~1930 px -> 200 px
    ours = align.warp_affine(checker, matrix, 200)
    naive = cv2.warpAffine(checker, matrix, (200, 200), flags=cv2.INTER_CUBIC)
    assert abs(ours.mean() - 127.5) < 2 and ours.std() < 3
    assert naive.std() > 30  # what the pre-shrink avoids


def test_margin_zooms_out_about_the_centre() -> None:
    t = align.get_template("selfie")
    points = t.points_at(256)
    face = _face(points)
    plain = align.template_matrix(face, "selfie", 256)
    wide = align.template_matrix(face, "selfie", 256, margin=0.25)
    centre = 127.5
    np.testing.assert_allclose(
        _apply(wide, points), centre + (_apply(plain, points) - centre) / 1.25, atol=1e-9
    )


def test_crop_keeps_dtype_and_matrix() -> None:
    image = (_smooth_image(300, 300).astype(np.uint16) * 257) + 3
    points = _apply(np.array([[0.4, 0, 60], [0, 0.4, 50]]), align.FFHQ_POINTS5_512)
    aligned = align.align(image, _face(points), "ffhq", 128)
    assert aligned.crop.dtype == np.uint16 and aligned.crop.shape == (128, 128, 3)
    assert aligned.template == "ffhq" and aligned.matrix.shape == (2, 3)
    assert aligned.scale == pytest.approx(
        128
        / np.hypot(*(align.ffhq_quad(*points[[0, 1, 3, 4]])[3] - align.ffhq_quad(*points[[0, 1, 3, 4]])[0])),
        rel=1e-6,
    )
    assert align.warp is align.align


def test_pad_blur_fills_outside_the_photo_smoothly() -> None:
    noise = RNG.integers(0, 256, (400, 400, 3), dtype=np.uint8)
    points = _apply(
        np.array([[0.5, 0, -60], [0, 0.5, -70]]), align.FFHQ_POINTS5_512
    )  # face cut by the corner
    face = _face(points)
    plain = align.align(noise, face, "ffhq", 256, border="reflect").crop.astype(np.float32)
    padded = align.align(noise, face, "ffhq", 256, pad_blur=True)
    assert padded.crop.dtype == np.uint8
    outside = padded.crop[:40, :40].astype(np.float32)  # maps to negative photo coordinates
    assert np.abs(np.diff(outside, axis=1)).mean() < 0.3 * np.abs(np.diff(plain[:40, :40], axis=1)).mean()
    inside = (slice(180, 256), slice(180, 256))
    assert np.abs(padded.crop[inside].astype(np.float32) - plain[inside]).mean() < 1.0
