"""``faceedit edit`` (attribute GANs) and ``faceedit anime`` (U-GAT-IT): parse, call api, report."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from faceedit import console
from faceedit.cli.options import Inputs, RunOptions, with_run_options

if TYPE_CHECKING:
    from faceedit.batch import Report

BatchOpt = Annotated[int, typer.Option("--batch-size", min=1, help="Faces per generator call.")]
ColorOpt = Annotated[str, typer.Option("--color-match", help="off, partial or full (Lab colour transfer).")]
BlendOpt = Annotated[str, typer.Option("--blend", help="feather (default) or poisson.")]
# edit's: only with --detail replace, and None (= not given) tells a transfer run that nobody asked.
ReplaceColorOpt = Annotated[
    str | None,
    typer.Option(
        "--color-match", help="--detail replace: off, partial (default) or full (Lab colour transfer)."
    ),
]
ReplaceBlendOpt = Annotated[
    str | None, typer.Option("--blend", help="--detail replace: feather (default) or poisson.")
]
DetailOpt = Annotated[
    str,
    typer.Option(
        "--detail",
        help="transfer (default): add the model's change to the photo's own pixels, so the face keeps "
        "its resolution and untouched pixels stay exact; replace: paste the generated crop (the "
        "official test output, at the model's resolution; --color-match and --blend apply to it).",
    ),
]


def register(app: typer.Typer) -> None:
    """Add ``edit`` and ``anime`` to the root app."""
    app.command("edit")(with_run_options(edit))
    app.command("anime")(with_run_options(anime))


def edit(
    inputs: Inputs,
    add: Annotated[
        list[str], typer.Option("--add", "-a", help="Attribute to turn on (repeat, or A,B; NAME=INTENSITY).")
    ] = [],  # noqa: B006
    remove: Annotated[list[str], typer.Option("--remove", help="Attribute to turn off (same forms).")] = [],  # noqa: B006
    expression: Annotated[
        str | None,
        typer.Option(
            "--expression",
            "-e",
            help="StarGAN trained on RaFD or CelebA + RaFD: the target expression (angry, contemptuous, "
            "disgusted, fearful, happy, neutral, sad, surprised). One expression per output, and not "
            "together with --add/--remove (the official labels mark one label set valid).",
        ),
    ] = None,
    intensity: Annotated[
        float,
        typer.Option(
            "--intensity",
            "-i",
            help="Strength of the edit (1 = the official test). StarGAN, attributes and expressions: "
            "labels = source + intensity x (target - source).",
        ),
    ] = 1.0,
    source: Annotated[
        str | None,
        typer.Option(
            "--source",
            help="The faces' attributes: 'Male,Young' (all others off) or '+Male,-Young' (fix the estimate).",
        ),
    ] = None,
    sweep: Annotated[
        str | None,
        typer.Option("--sweep", help="With --grid: intensities to compare, e.g. -1:1:5 or 0.5,1,1.5."),
    ] = None,
    slide: Annotated[
        bool, typer.Option("--slide", help="AttGAN: set the attribute to the intensity (test_slide).")
    ] = False,
    suffix: Annotated[str, typer.Option("--suffix", help="Added to each output's file name.")] = "_edited",
    detail: DetailOpt = "transfer",
    color_match: ReplaceColorOpt = None,
    blend: ReplaceBlendOpt = None,
    batch_size: BatchOpt = 8,
    *,
    run: RunOptions,
) -> None:
    """Edit face attributes: [bold]faceedit edit photo.jpg --add Blond_Hair --intensity 0.8[/bold]."""
    from faceedit import api, attributes, expressions, sources

    if not add and not remove and expression is None:
        from faceedit.errors import UsageError

        raise UsageError(
            "nothing to edit",
            "name attributes with --add and/or --remove, or an --expression (faceedit models info NAME)",
        )
    spec = attributes.parse_edit(add, remove, intensity, slide=slide, expression=expression)
    paste = _edit_paste_options(detail, color_match, blend)
    request_kwargs: dict[str, Any] = {
        "spec": spec,
        "faces": _face_options(run),
        "paste": paste,
        "batch_size": batch_size,
        "grid": run.grid,
        "sweep": _sweep(sweep, run.grid),
        "save_crops": run.save_crops,
        "quality": run.quality,
    }

    def request(engine: Any) -> Any:
        if source is not None:  # names and their exclusive groups come from the loaded model
            parsed = sources.parse_source(source, expressions.label_names(engine.config))
            request_kwargs["source"] = expressions.exclusive_source(engine.config, parsed)
        return api.EditRequest(**request_kwargs)

    _batch("edit", "editing", inputs, suffix, run, request, api.edit_many)


def anime(
    inputs: Inputs,
    intensity: Annotated[
        float,
        typer.Option("--intensity", "-i", min=0.0, max=1.0, help="Blend with the input (1 = full anime)."),
    ] = 1.0,
    whole: Annotated[
        bool, typer.Option("--whole", help="Translate the whole picture (no face detection).")
    ] = False,
    margin: Annotated[
        float, typer.Option("--margin", help="Extra room around the face (0.2 = 20% wider crop).")
    ] = 0.0,
    suffix: Annotated[str, typer.Option("--suffix", help="Added to each output's file name.")] = "_anime",
    color_match: ColorOpt = "off",
    blend: BlendOpt = "feather",
    batch_size: BatchOpt = 4,
    *,
    run: RunOptions,
) -> None:
    """Selfie to anime with U-GAT-IT: [bold]faceedit anime selfie.png[/bold].

    U-GAT-IT translates the whole face, so its crop replaces the face (there is no --detail transfer).
    """
    from faceedit import api

    request = api.AnimeRequest(
        intensity=intensity,
        whole=whole,
        faces=_face_options(run, margin),
        paste=_paste_options(color_match, blend),
        batch_size=batch_size,
        grid=run.grid,
        save_crops=run.save_crops,
        quality=run.quality,
    )
    _batch("anime", "anime", inputs, suffix, run, lambda engine: request, api.anime_many)


# ----------------------------------------------------------------------------------------- helpers


def _batch(
    command: str,
    label: str,
    inputs: list[str],
    suffix: str,
    run: RunOptions,
    request: Callable[[Any], Any],
    many: Callable[..., Report],
) -> None:
    """Expand the inputs, load the model, run ``many`` (api.edit_many/anime_many) on the request that
    ``request(engine)`` makes, then report; usage errors in the options come before any of it."""
    from faceedit import registry

    plan = _plan(run, suffix)
    paths = _inputs(inputs, run.recursive)
    spec_name = run.model or registry.DEFAULTS[command]
    engine = _engine(spec_name, run)
    job = request(engine)
    report = _run(
        lambda done: many(paths, engine, job, plan, on_done=done, workers=run.workers),
        len(paths),
        label,
        run.json_out,
    )
    _finish(command, report, spec_name, engine, run.json_out)


def _engine(spec: str, run: RunOptions) -> Any:
    """The model loaded once per process; one line on stderr saying what runs where, then any caveat."""
    from faceedit import api

    engine = api.load_engine(
        spec, run.device, run.precision, run.offline, compile=run.compile, cuda_graphs=run.cuda_graphs
    )
    console.info(api.describe(engine, spec))
    for note in engine.notes:
        console.warn(note)
    return engine


def _face_options(run: RunOptions, margin: float = 0.0) -> Any:
    from faceedit import api
    from faceedit.face import detect

    detect.resolve_detector(run.detector)  # usage errors before any work
    detect.parse_selection(run.face)
    return api.FaceOptions(
        detector=run.detector, select=run.face, min_face_size=run.min_face_size, margin=margin
    )


MAX_SWEEP = 25  # columns of a comparison strip; more would be unreadable (and unbounded work)


def _sweep(sweep: str | None, grid: bool) -> tuple[float, ...]:
    from faceedit import grids
    from faceedit.errors import UsageError

    if sweep is None:
        return ()
    if not grid:
        raise UsageError("--sweep only shapes the --grid strip", "add --grid, or drop --sweep")
    steps = sweep.rsplit(":", 1)[-1].strip() if ":" in sweep else ""
    count = int(steps) if steps.isdigit() else len(sweep.split(","))  # before np.linspace allocates it
    if count > MAX_SWEEP:
        raise UsageError(f"--sweep {sweep} asks for {count} columns", f"give at most {MAX_SWEEP} values")
    return grids.parse_sweep(sweep)


def _paste_options(color_match: str, blend: str) -> Any:
    from faceedit import api
    from faceedit.errors import UsageError

    if color_match not in {"off", "partial", "full"}:
        raise UsageError(f"--color-match {color_match!r} is not off, partial or full")
    if blend not in {"feather", "poisson"}:
        raise UsageError(f"--blend {blend!r} is not feather or poisson")
    return api.PasteOptions(color_match=color_match, blend=blend)


def _edit_paste_options(detail: str, color_match: str | None, blend: str | None) -> Any:
    """``--detail`` and the replace-only options; asking for those with transfer is a usage error."""
    from faceedit.errors import UsageError

    if detail not in {"transfer", "replace"}:
        raise UsageError(f"--detail {detail!r} is not transfer or replace")
    if detail == "transfer" and (color_match not in {None, "off"} or blend not in {None, "feather"}):
        given = f"--color-match {color_match}" if color_match not in {None, "off"} else f"--blend {blend}"
        raise UsageError(
            f"{given} applies to pasted crops only; --detail transfer keeps the photo's own pixels",
            "add --detail replace to paste the generated crop",
        )
    import dataclasses

    return dataclasses.replace(_paste_options(color_match or "partial", blend or "feather"), detail=detail)


def _plan(run: RunOptions, suffix: str) -> Any:
    from faceedit.batch import OutputPlan
    from faceedit.fsutil import ensure_dir

    plan = OutputPlan(
        out_dir=run.out,
        suffix=suffix,
        format=run.fmt,
        overwrite=run.overwrite,
        skip_existing=run.skip_existing,
    )
    if run.out is not None:
        ensure_dir(run.out)
    return plan


def _inputs(inputs: list[str], recursive: bool) -> list[Path]:
    from faceedit.batch import expand_inputs

    paths = expand_inputs(inputs, recursive=recursive)
    console.info(f"found {len(paths)} input{'s' * (len(paths) != 1)}")
    return paths


def _run(job: Any, total: int, label: str, json_out: bool) -> Report:
    with console.progress(total, label, enabled=console.progress_enabled(json_out)) as advance:
        return job(lambda item: advance(description=f"{label} {item.input.name}"))


def _finish(command: str, report: Report, spec_name: str, engine: Any, json_out: bool) -> None:
    if json_out:
        console.emit_json(
            {
                "command": command,
                "model": spec_name,
                "device": str(engine.device),
                "precision": engine.precision,
                "items": [item.to_json() for item in report.items],
                "summary": {s: report.count(s) for s in ("ok", "skipped", "no_face", "failed")},
                "exit_code": report.exit_code,
            }
        )
    else:
        for item in report.items:
            if item.status == "ok":
                for path in item.outputs:
                    console.emit(str(path))
        report.print_problems()  # after the outputs, as the README says
    console.info(f"{command}: {report.summary()}")
    if report.exit_code:
        raise typer.Exit(report.exit_code)
