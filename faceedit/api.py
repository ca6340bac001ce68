"""One short recipe per flow: ``edit`` (attribute GANs), ``anime`` (U-GAT-IT), ``align`` and ``detect``
over many photos, and the requests they take.

read -> detect -> align to the model's training crop -> batch through the generator (faces of several
photos together) -> paste back -> write. :mod:`faceedit.pipeline` runs the per-photo stages ahead of
and behind the generator in worker threads or processes; the steps live in :mod:`faceedit.steps`.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict, Unpack

from faceedit import attributes, expressions, pipeline, sources
from faceedit.batch import Item, OutputPlan, Report
from faceedit.engines import describe, load_engine  # noqa: F401 (known from here)
from faceedit.errors import UsageError
from faceedit.pipeline import Pipeline, StageTimes, default_workers, plan_jobs  # noqa: F401 (known from here)
from faceedit.steps import anime, edit, find, prepare, writeback
from faceedit.steps.prepare import Prepared

# Steps that scripts, tests and benchmarks reach through this module (their code moved out).
Generated = edit.Generated
_generate, _asks_nothing = edit.generate, edit.asks_nothing
_prepare, _processes = prepare.prepare, prepare.use_processes
_paste = writeback.paste

if TYPE_CHECKING:
    from faceedit.face.align import Template
    from faceedit.face.detect import Backend
    from faceedit.runtime import Engine


@dataclass(frozen=True)
class FaceOptions:
    """How faces are found and cut out (``--detector``, ``--face``, ``--min-face-size``, ``--margin``).

    ``detector`` is a backend name, or a thread-safe backend object used as it is (benchmarks, tests).
    """

    detector: str | Backend | None = None
    device: str = "cpu"  # where FAN detects (the other detectors run on the CPU)
    select: str = "all"
    min_face_size: float = 20.0
    margin: float = 0.0
    max_pixels: int | None = None


@dataclass(frozen=True)
class PasteOptions:
    """How edited faces go back into the photo (``--detail``, ``--color-match``, ``--blend``).

    ``detail`` "transfer" adds the model's change to the photo's own pixels (attribute models only);
    "replace" pastes the generated crop (official test output; colour match and blend apply to it).
    """

    color_match: str = "partial"
    blend: str = "feather"
    detail: str = "transfer"


@dataclass(frozen=True)
class EditRequest:
    """Everything ``edit`` needs besides the inputs: what to change and how to write it."""

    spec: attributes.EditSpec
    source: sources.SourceSpec | None = None
    faces: FaceOptions = FaceOptions()
    paste: PasteOptions = PasteOptions()
    batch_size: int = 8
    grid: bool = False
    sweep: tuple[float, ...] = ()
    save_crops: bool = False
    quality: int | None = None


@dataclass(frozen=True)
class AnimeRequest:
    """``anime``: U-GAT-IT on each face (selfie framing) or on the whole picture, blended by intensity."""

    intensity: float = 1.0
    whole: bool = False
    faces: FaceOptions = FaceOptions()
    paste: PasteOptions = PasteOptions(color_match="off", detail="replace")  # U-GAT-IT always replaces
    batch_size: int = 4
    grid: bool = False
    save_crops: bool = False
    quality: int | None = None


@dataclass(frozen=True)
class AlignRequest:
    """``align``: each face cropped to ``template`` at ``size`` px (default: the template's);
    ``pad_blur`` fills outside the photo as FFHQ did. ``faces.margin`` zooms out."""

    template: Template
    size: int | None = None
    pad_blur: bool = False
    faces: FaceOptions = FaceOptions()


# ---------------------------------------------------------------------------------------- recipes


class RunOptions(TypedDict, total=False):
    """How a recipe runs (keywords of every ``*_many``): ``on_done`` is called with each input's item as
    it is done, from the calling thread; ``workers`` work on photos at once; ``processes`` makes them
    processes instead of threads (default: for folders); ``timings`` collects seconds per stage."""

    on_done: Callable[[Item], None] | None
    workers: int | None
    processes: bool | None
    timings: StageTimes | None


def edit_many(
    paths: Sequence[Path], engine: Engine, request: EditRequest, plan: OutputPlan, **run: Unpack[RunOptions]
) -> Report:
    """Edit every face of every photo in ``paths``; one :class:`Item` per input in the report."""
    config = engine.config
    spec = expressions.check(config, request.spec, model=f"this {config['arch']} model")
    stage = functools.partial(prepare.prepare, config=config, options=request.faces)
    plan = plan.for_inputs(paths)  # one name per input: a/p.png and b/p.png give two outputs
    report = Report()
    with _pipeline(paths, plan, report, request.faces, run) as (lanes, jobs):
        for group in lanes.groups(jobs, stage, request.batch_size):
            edit.edit_group(group, engine, request, spec, plan, lanes.writer, run.get("timings"))
    return pipeline.in_input_order(report, paths)


def anime_many(
    paths: Sequence[Path], engine: Engine, request: AnimeRequest, plan: OutputPlan, **run: Unpack[RunOptions]
) -> Report:
    """U-GAT-IT on every face (pasted back) or, with ``whole``, on each whole picture."""
    _check_anime(engine, request)
    stage: Callable[..., Prepared] = prepare.prepare_whole
    if not request.whole:
        stage = functools.partial(prepare.prepare, config=engine.config, options=request.faces)
    elif run.get("processes") is None:
        run = {**run, "processes": False}  # decoding alone: threads will do
    plan = plan.for_inputs(paths)
    report = Report()
    with _pipeline(paths, plan, report, request.faces, run) as (lanes, jobs):
        for group in lanes.groups(jobs, stage, request.batch_size):
            anime.anime_group(group, engine, request, plan, lanes.writer, run.get("timings"))
    return pipeline.in_input_order(report, paths)


def align_many(
    paths: Sequence[Path], request: AlignRequest, plan: OutputPlan, **run: Unpack[RunOptions]
) -> Report:
    """Write every chosen face of every photo as an aligned crop (``plan.path_for(path, tag="_{i}")``).
    The detector is built first: a missing one stops the run before any photo is read."""
    prepare.detector(request.faces)
    plan = plan.for_inputs(paths)  # a/p.png and b/p.png go to out/a/ and out/b/: nothing is lost
    return _each(paths, functools.partial(find.align_job, request=request, plan=plan), request.faces, run)


def detect_many(paths: Sequence[Path], options: FaceOptions, **run: Unpack[RunOptions]) -> Report:
    """Every chosen face of every photo: an item per photo with its faces' boxes, scores, points."""
    prepare.detector(options)  # a missing detector stops the run before any photo is read
    return _each(paths, functools.partial(find.detect_job, options=options), options, run)


# ---------------------------------------------------------------------------------------- helpers


def _check_anime(engine: Engine, request: AnimeRequest) -> None:
    if engine.config["arch"] != "ugatit":
        raise UsageError(
            f"faceedit anime needs a U-GAT-IT model, not {engine.config['arch']}",
            "use --model ugatit-selfie2anime-256 (or faceedit edit for attribute models)",
        )
    if not 0.0 <= request.intensity <= 1.0:
        raise UsageError("anime --intensity blends with the input: give a value from 0 to 1")


def _lanes(faces: FaceOptions, run: RunOptions, jobs: int) -> Pipeline:
    asked = prepare.use_processes(run.get("processes"), faces)
    return Pipeline.make(run.get("workers"), processes=asked, jobs=jobs)


@contextlib.contextmanager
def _pipeline(
    paths: Sequence[Path], plan: OutputPlan, report: Report, faces: FaceOptions, run: RunOptions
) -> Iterator[tuple[pipeline.Run, list[pipeline.Job]]]:
    """The jobs still to do (existing outputs skipped or refused) and a pipeline run sized for them."""
    sink = pipeline.Sink(report, run.get("on_done"))
    jobs = plan_jobs(paths, plan, report)
    with _lanes(faces, run, len(jobs)).run(sink, run.get("timings")) as lanes:
        yield lanes, jobs


def _each(paths: Sequence[Path], work: Callable[..., Item], faces: FaceOptions, run: RunOptions) -> Report:
    """``work`` on every photo in the pipeline's workers (no generator step between)."""
    report = Report()
    jobs = [(path, path) for path in paths]  # work names its own outputs (one per face)
    with _lanes(faces, run, len(jobs)).run(
        pipeline.Sink(report, run.get("on_done")), run.get("timings")
    ) as lanes:
        lanes.each(jobs, work)
    return pipeline.in_input_order(report, paths)
