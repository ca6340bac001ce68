"""The photo pipeline around the generator: threads ahead and behind change no output, memory stays
bounded, failures stay per file, stage times are recorded; the CLI's performance options. (Worker
processes: tests/test_procpool.py. These tests patch functions in this process, so they ask for
threads.)"""

from __future__ import annotations

import shutil
import threading
import time
import weakref
from pathlib import Path

import pytest
from typer.testing import CliRunner

from faceedit import api, attributes, images, runtime
from faceedit.batch import OutputPlan
from faceedit.cli import app
from faceedit.errors import OutputError
from faceedit.face import detect
from faceedit.steps import edit as edit_steps
from faceedit.steps import prepare as prepare_steps
from tests._standins import FixedFaces
from tests._tiny import tiny_model
from tests.conftest import photo_folder

runner = CliRunner()


@pytest.fixture
def folder(astronaut_path: Path, tmp_path: Path) -> Path:
    return photo_folder(astronaut_path, tmp_path, 6)


def _edit(
    paths: list[Path], engine: runtime.Engine, faces: list[detect.Face], out: Path, **kwargs: object
) -> api.Report:
    request = api.EditRequest(
        spec=attributes.parse_edit(["Blond_Hair"], [], 1.0),
        faces=api.FaceOptions(detector=FixedFaces(faces)),
        batch_size=kwargs.pop("batch_size", 2),  # type: ignore[arg-type]
    )
    plan = OutputPlan(out_dir=out, suffix="_edited")
    kwargs.setdefault("processes", False)
    return api.edit_many(paths, engine, request, plan, **kwargs)  # type: ignore[arg-type]


def test_threads_change_no_output_and_items_keep_input_order(
    folder: Path, engine: runtime.Engine, astronaut_faces: list[detect.Face], tmp_path: Path
) -> None:
    paths = sorted(folder.iterdir())
    inline = _edit(paths, engine, astronaut_faces, tmp_path / "inline", workers=1)
    threaded = _edit(paths, engine, astronaut_faces, tmp_path / "threaded", workers=4)
    for report in (inline, threaded):
        assert [i.input.name for i in report.items] == [p.name for p in paths]
        assert [i.status for i in report.items] == ["ok", "ok", "ok", "failed", "ok", "ok"]
    for name in ("p0", "p1", "p2", "p4", "p5"):
        a = (tmp_path / "inline" / f"{name}_edited.png").read_bytes()
        assert a == (tmp_path / "threaded" / f"{name}_edited.png").read_bytes()
    assert sorted(p.name for p in (tmp_path / "threaded").iterdir()) == [
        f"p{i}_edited.png" for i in (0, 1, 2, 4, 5)
    ]


def test_a_failed_write_is_reported_for_its_file_only(
    folder: Path,
    engine: runtime.Engine,
    astronaut_faces: list[detect.Face],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    write = images.write

    def failing(path: Path, *args: object, **kwargs: object) -> Path:
        if Path(path).name == "p1_edited.png":
            raise OutputError(f"cannot write {path}: disk full")
        return write(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(images, "write", failing)
    done: list[str] = []
    report = _edit(
        sorted(folder.iterdir()), engine, astronaut_faces, tmp_path / "out", workers=3, on_done=done.append
    )
    status = {i.input.name: (i.status, i.error) for i in report.items}
    assert status["p1.png"] == ("failed", f"cannot write {tmp_path / 'out' / 'p1_edited.png'}: disk full")
    assert [s for s, _ in status.values()].count("ok") == 4 and report.exit_code == 5
    assert len(done) == 6  # every outcome reached the progress callback, failures included
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [f"p{i}_edited.png" for i in (0, 2, 4, 5)]


def test_an_unexpected_error_in_a_writer_thread_is_raised(
    folder: Path,
    engine: runtime.Engine,
    astronaut_faces: list[detect.Face],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("bug in paste")

    monkeypatch.setattr(edit_steps, "paste", broken)  # the edit flow's paste step
    with pytest.raises(RuntimeError, match="bug in paste"):
        _edit(sorted(folder.iterdir()), engine, astronaut_faces, tmp_path / "out", workers=3)


def test_photos_in_memory_stay_bounded(
    astronaut_path: Path,
    engine: runtime.Engine,
    astronaut_faces: list[detect.Face],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    photos = tmp_path / "many"
    photos.mkdir()
    for i in range(24):
        shutil.copy(astronaut_path, photos / f"{i:02d}.png")
    alive, peak = [0], [0]
    lock = threading.Lock()
    prepare = prepare_steps.prepare

    def released() -> None:
        with lock:
            alive[0] -= 1

    def counting(*args: object, **kwargs: object) -> api.Prepared:
        prepared = prepare(*args, **kwargs)  # type: ignore[arg-type]
        with lock:
            alive[0] += 1
            peak[0] = max(peak[0], alive[0])
        weakref.finalize(prepared, released)
        return prepared

    monkeypatch.setattr(prepare_steps, "prepare", counting)
    report = _edit(sorted(photos.iterdir()), engine, astronaut_faces, tmp_path / "out", workers=2)
    assert report.count("ok") == 24 and peak[0] >= 3  # it did read ahead
    # 2*workers read ahead + one batch of 2 + 2 waiting for a writer, and the one being handed over
    assert peak[0] <= 2 * 2 + 2 + 2 + 2, peak[0]


def test_reading_and_writing_overlap_the_generator(
    folder: Path, astronaut_faces: list[detect.Face], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Slow stages record when they ran: with read-ahead and background writing, photos are read and
    # written while the generator works (never possible if everything ran in one thread).
    engine = runtime.Engine(tiny_model("stargan"), "cpu", "fp32")
    spans: dict[str, list[tuple[float, float]]] = {"generate": [], "read": [], "write": []}

    def slowed(name: str, fn: object) -> object:
        def run(*args: object, **kwargs: object) -> object:
            start = time.perf_counter()
            time.sleep(0.15)
            result = fn(*args, **kwargs)  # type: ignore[operator]
            spans[name].append((start, time.perf_counter()))
            return result

        return run

    monkeypatch.setattr(engine, "generate", slowed("generate", engine.generate))
    monkeypatch.setattr(engine, "classify", slowed("generate", engine.classify))  # model work, both
    monkeypatch.setattr(images, "read", slowed("read", images.read))
    monkeypatch.setattr(images, "write", slowed("write", images.write))
    paths = [p for p in sorted(folder.iterdir()) if p.name != "p3.png"]  # 5 photos, batches of 1
    # 2 workers read 4 ahead: the 5th photo is read while the first is in the model
    report = _edit(paths, engine, astronaut_faces, tmp_path / "out", workers=2, batch_size=1)
    assert report.count("ok") == 5

    def overlaps(a: str, b: str) -> bool:
        return any(s1 < e2 and s2 < e1 for s1, e1 in spans[a] for s2, e2 in spans[b])

    assert overlaps("read", "generate") and overlaps("write", "generate")


def test_stage_times_cover_every_stage(
    folder: Path, engine: runtime.Engine, astronaut_faces: list[detect.Face], tmp_path: Path
) -> None:
    timings = api.StageTimes()
    _edit(sorted(folder.iterdir()), engine, astronaut_faces, tmp_path / "out", workers=2, timings=timings)
    assert timings.calls["decode"] == 6 and timings.calls["paste"] == timings.calls["encode"] == 5
    for stage in ("decode", "detect", "align", "classify", "generate", "paste", "encode"):
        assert timings.seconds[stage] > 0, stage


# -------------------------------------------------------------------------------------------- CLI


@pytest.fixture(scope="module")
def stargan_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from faceedit import models

    return models.save(tiny_model("stargan"), tmp_path_factory.mktemp("models") / "stargan-tiny")


def test_cli_performance_options(astronaut_path: Path, stargan_dir: Path, tmp_path: Path) -> None:
    base = ["edit", str(astronaut_path), "--add", "Male", "-m", str(stargan_dir), "-o", str(tmp_path)]
    result = runner.invoke(app, [*base, "--workers", "2", "--precision", "fp32", "--cuda-graphs"])
    assert result.exit_code == 0, result.output
    assert "(fp32)" in result.output and "cuda-graphs needs a CUDA device" in result.output
    assert (tmp_path / "astronaut_edited.png").exists()
    refused = runner.invoke(app, [*base, "--precision", "fp16", "--overwrite"])
    assert refused.exit_code == 2 and "fp16 needs a CUDA device" in refused.output
    assert runner.invoke(app, [*base, "--workers", "0", "--overwrite"]).exit_code == 2
