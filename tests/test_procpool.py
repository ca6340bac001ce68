"""Worker processes around the generator: the same bytes as threads, input order, per-file failures,
a crashing worker failing only its own file, Ctrl-C keeping finished outputs, bounded queues, and
workers that stay free of torch."""

from __future__ import annotations

import multiprocessing
import os
import threading
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from faceedit import api, attributes, images, pipeline, runtime
from faceedit.batch import Item, OutputPlan, Report
from faceedit.face import detect
from tests._standins import FixedFaces, brighter, die_if, modules_loaded, spill_files
from tests._tiny import tiny_model
from tests.conftest import photo_folder


@pytest.fixture
def folder(astronaut_path: Path, tmp_path: Path) -> Path:
    return photo_folder(astronaut_path, tmp_path, 7)


def _edit(paths: list[Path], engine: runtime.Engine, detector: Any, out: Path, **kwargs: Any) -> Report:
    request = api.EditRequest(
        spec=attributes.parse_edit(["Blond_Hair"], [], 1.0),
        faces=api.FaceOptions(detector=detector),
        batch_size=2,
    )
    return api.edit_many(paths, engine, request, OutputPlan(out_dir=out, suffix="_edited"), **kwargs)


def test_processes_write_the_same_bytes_as_threads_in_input_order(
    folder: Path, engine: runtime.Engine, astronaut_faces: list[detect.Face], tmp_path: Path
) -> None:
    paths = sorted(folder.iterdir())
    detector = FixedFaces(astronaut_faces)
    threads = _edit(paths, engine, detector, tmp_path / "threads", workers=2, processes=False)
    timings = api.StageTimes()
    done: list[str] = []
    procs = _edit(
        paths,
        engine,
        FixedFaces(astronaut_faces, no_torch=True),
        tmp_path / "procs",
        workers=2,
        processes=True,
        timings=timings,
        on_done=lambda item: done.append(item.input.name),
    )
    for report in (threads, procs):
        assert [i.input.name for i in report.items] == [p.name for p in paths]
        assert [i.status for i in report.items] == ["ok", "ok", "ok", "failed", "ok", "ok", "ok"]
    assert procs.items[3].error == threads.items[3].error  # the same one-line error, hint included
    assert "p3.png" in (procs.items[3].error or "")
    assert sorted(done) == sorted(p.name for p in paths)  # progress saw every outcome
    for name in ("p0", "p1", "p2", "p4", "p5", "p6"):
        a = (tmp_path / "threads" / f"{name}_edited.png").read_bytes()
        assert a == (tmp_path / "procs" / f"{name}_edited.png").read_bytes()
    # stage times measured inside the workers came back to the caller, wall and CPU
    assert timings.calls["decode"] == 7 and timings.calls["paste"] == timings.calls["encode"] == 6
    assert timings.calls["generate"] >= 3 and timings.cpu["detect"] >= 0 and timings.seconds["encode"] > 0


def test_a_dying_worker_fails_only_its_own_file(
    folder: Path, engine: runtime.Engine, astronaut_faces: list[detect.Face], tmp_path: Path
) -> None:
    rgb = images.read(folder / "p0.png").rgb
    images.write(folder / "p5.png", cv2.resize(rgb, (300, 300)), overwrite=True)  # kills its worker
    report = _edit(
        sorted(folder.iterdir()),
        engine,
        FixedFaces(astronaut_faces, crash_width=300),
        tmp_path / "out",
        workers=2,
        processes=True,
    )
    status = {i.input.name: i.status for i in report.items}
    assert status == {f"p{i}.png": "ok" for i in (0, 1, 2, 4, 6)} | {"p3.png": "failed", "p5.png": "failed"}
    assert "worker process died" in (report.items[5].error or "") and "p5.png" in (
        report.items[5].error or ""
    )
    assert report.exit_code == 5
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        f"p{i}_edited.png" for i in (0, 1, 2, 4, 6)
    ]
    assert not multiprocessing.active_children()


def test_ctrl_c_stops_the_workers_and_keeps_finished_outputs(
    folder: Path, engine: runtime.Engine, astronaut_faces: list[detect.Face], tmp_path: Path
) -> None:
    seen: list[Item] = []

    def interrupt(item: Item) -> None:
        seen.append(item)
        if len(seen) == 2:
            raise KeyboardInterrupt

    paths = [p for p in sorted(folder.iterdir()) if p.name != "p3.png"]
    with pytest.raises(KeyboardInterrupt):
        _edit(
            paths,
            engine,
            FixedFaces(astronaut_faces),
            tmp_path / "out",
            workers=2,
            processes=True,
            on_done=interrupt,
        )
    written = sorted((tmp_path / "out").iterdir())
    assert {i.outputs[0] for i in seen} <= set(written)  # what was reported done is there
    assert all(p.name.endswith("_edited.png") for p in written)  # and nothing half-written
    for path in written:
        assert images.read(path).rgb.shape == (512, 512, 3)
    assert not multiprocessing.active_children()


def test_workers_do_not_import_torch_and_keep_results_in_order() -> None:
    timings = pipeline.StageTimes()
    lane = pipeline.Processes(2, timings)
    try:
        loaded = lane.submit(modules_loaded, ["torch", "cv2", "faceedit.workers"]).result()
        handles = [lane.submit(die_if, v) for v in (1, 2, -1, 4, 5)]
        results = [pipeline._collect(h, Path(f"f{i}")) for i, h in enumerate(handles)]
    finally:
        lane.close()
    assert loaded == {"torch": False, "cv2": True, "faceedit.workers": True}
    assert results[:2] == [10, 20] and results[3:] == [40, 50]
    assert isinstance(results[2], pipeline.WorkerDied) and str(results[2]).startswith(
        "f2: a worker process died"
    )


class _CountingLane:
    """An inline lane that records how many calls were submitted and not yet collected; its calls
    look unfinished until collected, so only the caller's own bound limits them."""

    def __init__(self) -> None:
        self.open, self.peak = 0, 0

    def submit(self, fn: Any, *args: Any) -> Any:
        self.open += 1
        self.peak = max(self.peak, self.open)
        return _Pending(self, fn(*args, timings=None))


class _Pending:
    def __init__(self, lane: _CountingLane, value: Any) -> None:
        self.lane, self.value = lane, value

    def done(self) -> bool:
        return False

    def result(self) -> Any:
        self.lane.open -= 1
        return self.value


def test_queues_stay_bounded_for_any_folder_size() -> None:
    lane = _CountingLane()
    jobs = [(Path(f"{i}.png"), Path(f"{i}_out.png")) for i in range(500)]
    stream = pipeline.ahead(jobs, lambda path, target, timings: path.stem, lane, depth=6, timings=None)
    assert [p for _, p in stream] == [str(i) for i in range(500)]
    assert lane.peak == 7  # 6 ahead, and the next one submitted while the oldest is collected

    report = Report()
    writes = _CountingLane()
    writer = pipeline.Writer(pipeline.Sink(report, None), writes, limit=3)
    for i in range(50):
        writer.submit(lambda timings, i=i: Item(input=Path(f"{i}")), path=Path(f"{i}"))
    writer.drain()
    assert [i.input.name for i in report.items] == [str(i) for i in range(50)]
    assert writes.peak == 4  # the limit waiting, plus the one just handed over


def test_folders_use_processes_and_fan_keeps_threads() -> None:
    assert pipeline.Pipeline.make(2, jobs=100).processes
    assert not pipeline.Pipeline.make(2, jobs=3).processes  # a few photos: not worth a process start
    assert not pipeline.Pipeline.make(1, jobs=100).processes  # one worker: inline
    assert pipeline.Pipeline.make(1, processes=True).processes  # unless asked (benchmarks)
    assert api._processes(None, api.FaceOptions(detector="fan")) is False
    assert api._processes(None, api.FaceOptions(detector="mtcnn")) is None
    assert api._processes(None, api.FaceOptions(detector=FixedFaces([]))) is None
    assert api._processes(None, api.FaceOptions(detector=threading.Lock())) is False  # cannot pickle
    assert api._processes(True, api.FaceOptions(detector="fan")) is True


def test_photos_cross_processes_through_spill_files_that_go_with_them() -> None:
    import gc

    rng = np.random.default_rng(0)
    photo = rng.integers(0, 250, (600, 800, 3), dtype=np.uint8)  # 1.4 MB: spilled
    crop = rng.integers(0, 250, (64, 64, 3), dtype=np.uint8)  # 12 kB: pickled
    lane = pipeline.Processes(1, None)
    try:
        back = lane.submit(brighter, photo).result()
        assert isinstance(back, np.memmap) and np.array_equal(back, photo + 1)
        assert os.listdir(lane.folder) == [os.path.basename(back.filename)]
        again = lane.submit(brighter, back).result()  # handed on by name, mapped copy-on-write
        assert np.array_equal(again, photo + 2) and np.array_equal(back, photo + 1)
        small = lane.submit(brighter, crop).result()
        assert not isinstance(small, np.memmap) and np.array_equal(small, crop + 1)
        del back, again
        gc.collect()
        assert lane.submit(spill_files, lane.folder).result() == 0  # dropped here = deleted
    finally:
        lane.close()
    assert not os.path.exists(lane.folder)


def test_anime_in_processes_writes_what_threads_write(
    folder: Path, astronaut_faces: list[detect.Face], tmp_path: Path
) -> None:
    engine = runtime.Engine(tiny_model("ugatit"), "cpu", "fp32")
    paths = [p for p in sorted(folder.iterdir()) if p.name != "p3.png"][:4]
    request = api.AnimeRequest(faces=api.FaceOptions(detector=FixedFaces(astronaut_faces)), grid=True)
    outputs = {}
    for processes in (False, True):
        out = tmp_path / str(processes)
        report = api.anime_many(
            paths, engine, request, OutputPlan(out_dir=out), workers=2, processes=processes
        )
        assert [i.status for i in report.items] == ["ok"] * 4
        outputs[processes] = {p.name: p.read_bytes() for p in out.iterdir()}
    assert len(outputs[True]) == 8 and outputs[True] == outputs[False]  # photos and heatmap grids
