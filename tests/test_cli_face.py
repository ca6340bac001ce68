"""``faceedit detect`` and ``faceedit align``: outputs, batches with bad files, exit codes, a real process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from faceedit.cli import app

runner = CliRunner()
REF_LEFT_EYE = (206, 102)


def _invoke(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def photos(tmp_path: Path, astronaut_path: Path) -> Path:
    """A folder: the astronaut (PNG and EXIF-turned JPEG), a 16-bit RGBA copy, a face-less image."""
    folder = tmp_path / "in"
    folder.mkdir()
    rgb = np.asarray(Image.open(astronaut_path).convert("RGB"))
    Image.fromarray(rgb).save(folder / "astronaut.png")
    exif = Image.Exif()
    exif[0x0112] = 8
    Image.fromarray(np.ascontiguousarray(np.rot90(rgb, 3))).save(folder / "turned.jpg", exif=exif.tobytes())
    deep = np.dstack([rgb[..., ::-1], np.full(rgb.shape[:2], 255, np.uint8)]).astype(np.uint16) * 257
    cv2.imwrite(str(folder / "deep.png"), deep)
    yy, xx = np.mgrid[:200, :300]
    Image.fromarray(np.dstack([xx % 256, yy % 256, (xx * yy) % 256]).astype(np.uint8)).save(
        folder / "wall.png"
    )
    return folder


def test_detect_json(photos: Path) -> None:
    code, out, err = _invoke("detect", "--json", str(photos / "astronaut.png"), str(photos / "turned.jpg"))
    assert code == 0, err
    doc = json.loads(out)
    assert doc["detector"] == "mtcnn" and len(doc["items"]) == 2
    for item in doc["items"]:
        assert item["status"] == "ok" and item["faces"] == 1 and (item["width"], item["height"]) == (512, 512)
        det = item["detections"][0]
        assert det["index"] == 0 and len(det["points5"]) == 5 and det["points68"] is None
        assert np.abs(np.array(det["points5"][0]) - REF_LEFT_EYE).max() < 3  # upright coordinates


def test_detect_table_and_batch_with_bad_files(photos: Path) -> None:
    (photos / "empty.jpg").write_bytes(b"")
    (photos / "notes.png").write_text("not an image")
    code, out, err = _invoke("detect", str(photos))
    assert code == 5  # some inputs failed; the rest were reported
    assert "astronaut.png" in out and "turned.jpg" in out
    assert "empty.jpg is empty" in err and "notes.png is not an image" in err and "wall.png" in err
    assert "Traceback" not in err
    code, out, _ = _invoke("detect", "--json", str(photos))
    statuses = {Path(i["input"]).name: i["status"] for i in json.loads(out)["items"]}
    assert statuses == {"astronaut.png": "ok", "deep.png": "ok", "turned.jpg": "ok", "wall.png": "no_face",
                        "empty.jpg": "failed", "notes.png": "failed"}  # fmt: skip


def test_no_face_anywhere_is_exit_3_and_min_face_size(photos: Path) -> None:
    code, _, err = _invoke("detect", str(photos / "wall.png"))
    assert code == 3 and "no face found" in err
    code, _, err = _invoke("detect", "--min-face-size", "200", str(photos / "astronaut.png"))
    assert code == 3 and "lower --min-face-size" in err


def test_no_inputs_and_bad_options_are_usage_errors(tmp_path: Path, photos: Path) -> None:
    (tmp_path / "empty").mkdir()
    assert _invoke("detect", str(tmp_path / "empty"))[0] == 2
    assert _invoke("align", str(tmp_path / "nothing-*.jpg"), "-o", str(tmp_path / "o"))[0] == 2
    assert _invoke("detect", "--detector", "dlib", str(photos / "astronaut.png"))[0] == 2
    assert _invoke("detect", "--face", "biggest", str(photos / "astronaut.png"))[0] == 2
    assert _invoke("align", "-t", "celeba", str(photos / "astronaut.png"), "-o", str(tmp_path / "o"))[0] == 2


def test_align_writes_crops_keeping_depth_and_alpha(photos: Path, tmp_path: Path) -> None:
    out_dir = tmp_path / "crops"
    code, out, err = _invoke("align", str(photos), "-o", str(out_dir), "-t", "stargan", "--size", "96")
    assert code == 0, err  # wall.png has no face: reported, not a failure (issue 12)
    assert "1 without a face" in err and "no face found" in err
    names = sorted(p.name for p in out_dir.iterdir())
    assert names == ["astronaut_0.png", "deep_0.png", "turned_0.png"]
    assert out.split() == [str(out_dir / n) for n in ("astronaut_0.png", "deep_0.png", "turned_0.png")]
    crop = np.asarray(Image.open(out_dir / "astronaut_0.png"))
    assert crop.shape == (96, 96, 3)
    deep = cv2.imread(str(out_dir / "deep_0.png"), cv2.IMREAD_UNCHANGED)
    assert deep.dtype == np.uint16 and deep.shape == (96, 96, 4)
    turned = np.asarray(Image.open(out_dir / "turned_0.png"))
    assert np.abs(turned.astype(int) - crop).mean() < 12  # EXIF applied: the same upright face


@pytest.mark.parametrize(
    ("template", "size"), [("ffhq", 1024), ("selfie", 256), ("attgan", 128), ("celeba-tf", 128)]
)
def test_align_default_sizes(photos: Path, tmp_path: Path, template: str, size: int) -> None:
    code, out, err = _invoke(
        "align", str(photos / "astronaut.png"), "-o", str(tmp_path), "-t", template, "--json"
    )
    assert code == 0, err
    doc = json.loads(out)
    assert doc["size"] == size and doc["items"][0]["crops"][0]["index"] == 0
    assert Image.open(tmp_path / "astronaut_0.png").size == (size, size)


def test_align_existing_outputs(photos: Path, tmp_path: Path) -> None:
    args = ["align", str(photos / "astronaut.png"), "-o", str(tmp_path), "-t", "stgan"]
    assert _invoke(*args)[0] == 0
    target = tmp_path / "astronaut_0.png"
    target.write_bytes(b"mine")
    code, _, err = _invoke(*args)
    assert code == 5 and "already exists" in err and target.read_bytes() == b"mine"
    code, _, err = _invoke(*args, "--skip-existing")
    assert code == 0 and "skipped" in err and target.read_bytes() == b"mine"
    assert _invoke(*args, "--overwrite")[0] == 0 and Image.open(target).size == (128, 128)
    assert _invoke(*args, "--overwrite", "--skip-existing")[0] == 2


def test_align_unwritable_output(photos: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where the folder should go")
    code, out, err = _invoke("align", str(photos / "astronaut.png"), "-o", str(blocker / "crops"))
    assert code == 5 and "cannot create output folder" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and out == ""


def test_real_process_and_light_import(photos: Path) -> None:
    env = {**os.environ, "FACEEDIT_NO_PROGRESS": "1"}
    command = [sys.executable, "-m", "faceedit", "detect", "--json", str(photos / "astronaut.png")]
    command.append(str(photos / "wall.png"))
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120, check=False)
    assert done.returncode == 0, done.stderr  # a photo without a face is no failure
    doc = json.loads(done.stdout)
    assert [i["status"] for i in doc["items"]] == ["ok", "no_face"]
    probe = "import sys, faceedit.cli; print(sorted(m for m in ('cv2', 'torch') if m in sys.modules))"
    light = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert light.stdout.strip() == "[]"
