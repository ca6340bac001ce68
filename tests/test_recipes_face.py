"""``api.detect_many`` and ``api.align_many``: the face recipes on the pipeline (workers, input order,
per-file failures, a dead worker process) and the detectors each worker thread builds for itself."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from faceedit import api, images
from faceedit.batch import OutputPlan
from faceedit.errors import ModelUnavailableError
from faceedit.face import align, detect
from faceedit.steps import prepare as prepare_steps
from tests._standins import FixedFaces


@pytest.fixture
def folder(tmp_path: Path, astronaut_path: Path) -> list[Path]:
    """astronaut, a face-less wall, a broken file, the astronaut mirrored (in this order)."""
    rgb = np.asarray(Image.open(astronaut_path).convert("RGB"))
    paths = [tmp_path / n for n in ("a.png", "wall.png", "broken.png", "z.png")]
    Image.fromarray(rgb).save(paths[0])
    yy, xx = np.mgrid[:200, :300]
    Image.fromarray(np.dstack([xx % 256, yy % 256, (xx * yy) % 256]).astype(np.uint8)).save(paths[1])
    paths[2].write_bytes(b"\x89PNG\r\n\x1a\n not really")
    Image.fromarray(np.ascontiguousarray(rgb[:, ::-1])).save(paths[3])
    return paths


def test_detect_many_in_threads_matches_one_worker_in_input_order(folder: list[Path]) -> None:
    options = api.FaceOptions(detector="mtcnn")
    alone = api.detect_many(folder, options, workers=1)
    done: list[str] = []
    threads = api.detect_many(
        folder, options, workers=3, processes=False, on_done=lambda i: done.append(i.input.name)
    )
    assert [i.to_json() for i in threads.items] == [i.to_json() for i in alone.items]
    assert [i.status for i in threads.items] == ["ok", "no_face", "failed", "ok"]
    assert sorted(done) == sorted(p.name for p in folder)  # every outcome reached the progress callback
    boxes = [i.details["detections"][0]["box"] for i in threads.items if i.status == "ok"]
    assert boxes[0][0] != boxes[1][0]  # each photo's own faces, not its neighbour's
    assert threads.exit_code == 5


def test_align_many_in_worker_processes_survives_a_dead_worker(
    folder: list[Path], astronaut_path: Path, tmp_path: Path
) -> None:
    faces = detect.detect(images.read(astronaut_path).rgb)
    request = api.AlignRequest(
        template=align.get_template("ffhq"),
        size=64,
        faces=api.FaceOptions(detector=FixedFaces(faces, crash_width=300)),  # the wall kills its worker
    )
    out = tmp_path / "crops"
    report = api.align_many(folder, request, OutputPlan(out_dir=out), workers=2, processes=True)
    assert [i.status for i in report.items] == ["ok", "failed", "failed", "ok"]
    assert "worker process died" in (report.items[1].error or "")
    assert sorted(p.name for p in out.iterdir()) == ["a_0.png", "z_0.png"]
    crop = images.read(out / "a_0.png")
    assert (crop.width, crop.height) == (64, 64)
    assert report.items[0].details["crops"][0]["output"] == str(out / "a_0.png")


def test_a_missing_detector_stops_the_recipe_before_any_photo(
    folder: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    def unavailable(name: Any = None, device: str = "cpu") -> Any:
        raise ModelUnavailableError("no FAN weights", "faceedit models download fan")

    read: list[Path] = []
    monkeypatch.setattr(detect, "new_backend", unavailable)
    monkeypatch.setattr(images, "read", lambda path, **kw: read.append(path))
    prepare_steps.WORKER_DETECTORS.clear()
    with pytest.raises(ModelUnavailableError):
        api.detect_many(folder, api.FaceOptions(detector="fan"), workers=2, processes=False)
    assert read == []


def test_backends_are_built_once_per_thread_or_shared(monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[object] = []

    def new(name: Any = None, device: str = "cpu") -> object:
        built.append(object())
        return built[-1]

    monkeypatch.setattr(detect, "new_backend", new)

    def in_thread(backends: detect.Backends) -> object:
        got: list[object] = []
        worker = threading.Thread(target=lambda: got.append(backends.get("mtcnn")))
        worker.start()
        worker.join()
        return got[0]

    own = detect.Backends(per_thread=True)
    mine = own.get("mtcnn")
    assert own.get("auto") is mine  # "auto" is the default detector: the same backend
    assert in_thread(own) is not mine and own.get("mtcnn", "cuda") is not mine
    shared = detect.Backends()
    assert in_thread(shared) is shared.get("mtcnn")
    before = shared.get("mtcnn")
    shared.clear()
    assert shared.get("mtcnn") is not before
    assert len(built) == 5
