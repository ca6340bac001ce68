"""``faceedit detect`` (boxes, scores, points per face) and ``faceedit align`` (aligned crops to a folder).

Both take files, folders and globs, go on past a bad file, and exit with the batch's code
(0 done, 2 usage, 3 no face in any input, 4 detector weights unavailable, 5 some inputs failed).
The work is :func:`faceedit.api.detect_many` / :func:`~faceedit.api.align_many`; this is the shell.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from faceedit import console

if TYPE_CHECKING:
    from faceedit.api import FaceOptions
    from faceedit.batch import Item, Report

Inputs = Annotated[
    list[str],
    typer.Argument(help="Image files, folders or globs ('-' reads paths from stdin).", show_default=False),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout (no progress bar).")]
DetectorOpt = Annotated[
    str,
    typer.Option(
        "--detector",
        envvar="FACEEDIT_DETECTOR",
        show_envvar=True,
        help="auto (= mtcnn), mtcnn, yunet (needs yuface) or fan (face-alignment, 68 points; fan:blazeface).",
    ),
]
FaceOpt = Annotated[
    str, typer.Option("--face", help="Which faces: all, largest, center, or an index (0 = leftmost).")
]
MinSizeOpt = Annotated[
    float,
    typer.Option(
        "--min-face-size", min=0, help="Skip faces whose box is smaller than this (px, short side)."
    ),
]
DeviceOpt = Annotated[
    str,
    typer.Option(
        "--device", envvar="FACEEDIT_DEVICE", help="For --detector fan: auto, cpu, cuda, cuda:N, mps."
    ),
]
RecursiveOpt = Annotated[bool, typer.Option("--recursive", "-r", help="Look into sub-folders too.")]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Replace existing crops.")]
WORKERS_HELP = "Photos worked on at once (default: CPUs, up to 8)."
WorkersOpt = Annotated[
    int | None, typer.Option("--workers", min=1, envvar="FACEEDIT_WORKERS", help=WORKERS_HELP)
]
SkipExistingOpt = Annotated[
    bool, typer.Option("--skip-existing", help="Keep existing crops, do not redo them.")
]


def register(app: typer.Typer) -> None:
    """Add ``detect`` and ``align`` to the root app."""
    app.command("detect")(detect_command)
    app.command("align")(align_command)


# ------------------------------------------------------------------------------------------ detect


def detect_command(
    inputs: Inputs,
    json_out: JsonOpt = False,
    detector: DetectorOpt = "auto",
    face: FaceOpt = "all",
    min_face_size: MinSizeOpt = 20.0,
    device: DeviceOpt = "auto",
    recursive: RecursiveOpt = False,
    workers: WorkersOpt = None,
) -> None:
    """Find every face: box, score and 5 landmarks (68 with --detector fan) per face.

    Faces are numbered left to right (0 = leftmost). Coordinates are pixels of the upright photo
    (EXIF orientation applied), pixel centres at integers.
    """
    from faceedit import api
    from faceedit.batch import expand_inputs
    from faceedit.steps import prepare

    paths = expand_inputs(inputs, recursive=recursive)
    options = _face_options(detector, face, min_face_size, device)
    report = _run(
        lambda done: api.detect_many(paths, options, on_done=done, workers=workers),
        len(paths),
        "detecting faces",
        json_out,
    )
    if json_out:
        name = prepare.detector(options).name  # built by detect_many in this thread
        console.emit_json({"detector": name, "items": [i.to_json() for i in report.items]})
    else:
        _print_table(report)
    _finish(report)


def _face_options(
    detector: str, face: str, min_face_size: float, device: str, margin: float = 0.0
) -> FaceOptions:
    """The face options, usage errors (unknown detector, bad --face) before any photo is read."""
    from faceedit import api
    from faceedit.face import detect

    name = detect.resolve_detector(detector)
    detect.parse_selection(face)
    return api.FaceOptions(
        detector=name, device=device, select=face, min_face_size=min_face_size, margin=margin
    )


def _run(job: Any, total: int, label: str, json_out: bool) -> Report:
    """``job(on_done)`` with a progress bar that advances as each photo is done."""
    with console.progress(total, label, enabled=console.progress_enabled(json_out)) as advance:
        return job(lambda item: advance())


def _print_table(report: Report) -> None:
    import sys

    from rich.console import Console
    from rich.table import Table

    table = Table("file", "face", "box x1,y1,x2,y2", "score", "eyes (x,y)", "mouth (x,y)", box=None)
    for item in report.items:
        for d in item.details.get("detections", []):
            p = d["points5"]
            table.add_row(
                item.input.name,
                str(d["index"]),
                ",".join(f"{v:.0f}" for v in d["box"]),
                f"{d['score']:.3f}",
                f"{p[0][0]:.0f},{p[0][1]:.0f}  {p[1][0]:.0f},{p[1][1]:.0f}",
                f"{p[3][0]:.0f},{p[3][1]:.0f}  {p[4][0]:.0f},{p[4][1]:.0f}",
            )
    if table.row_count:
        # Piped output gets a fixed wide console: rich would wrap rows at 80 columns.
        Console(file=sys.stdout, highlight=False, width=None if sys.stdout.isatty() else 200).print(table)


def _finish(report: Report) -> None:
    """List failures and photos without a face after the run, the summary on stderr, and exit with the
    batch's code (0 also when some photos had no face, 3 when none had one, 5 when some failed)."""
    report.print_problems()
    console.info(report.summary())
    raise typer.Exit(report.exit_code)


# ------------------------------------------------------------------------------------------- align


def align_command(
    inputs: Inputs,
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Folder for the crops ({stem}_{face}.png).")
    ] = Path("aligned"),
    template: Annotated[
        str,
        typer.Option(
            "--template",
            "-t",
            help="ffhq, celeba-178, celeba-170, celeba-tf, selfie (or stargan, attgan, stgan, ugatit).",
        ),
    ] = "ffhq",
    size: Annotated[
        int | None,
        typer.Option("--size", "-s", min=16, max=8192, help="Crop side in px (default: the template's)."),
    ] = None,
    margin: Annotated[
        float, typer.Option("--margin", min=-0.5, max=3.0, help="Zoom out (0.2 = 20% more around the face).")
    ] = 0.0,
    detector: DetectorOpt = "auto",
    face: FaceOpt = "all",
    min_face_size: MinSizeOpt = 20.0,
    device: DeviceOpt = "auto",
    pad_blur: Annotated[
        bool, typer.Option("--pad-blur", help="Fill parts outside the photo as FFHQ did (reflect + blur).")
    ] = False,
    overwrite: OverwriteOpt = False,
    skip_existing: SkipExistingOpt = False,
    json_out: JsonOpt = False,
    recursive: RecursiveOpt = False,
    workers: WorkersOpt = None,
) -> None:
    """Write each face cropped and aligned the way a model was trained (FFHQ by default, 1024 px).

    Crops keep the photo's bit depth, gray and alpha; files are {stem}_{face}.png in --out.
    """
    from faceedit import api
    from faceedit.batch import OutputPlan, expand_inputs
    from faceedit.face import align
    from faceedit.fsutil import ensure_dir

    paths = expand_inputs(inputs, recursive=recursive)
    tpl = align.get_template(template)
    faces = _face_options(detector, face, min_face_size, device, margin)
    request = api.AlignRequest(template=tpl, size=size or tpl.size, pad_blur=pad_blur, faces=faces)
    plan = OutputPlan(out_dir=out, format="png", overwrite=overwrite, skip_existing=skip_existing)
    ensure_dir(out)
    report = _run(
        lambda done: api.align_many(
            paths, request, plan, on_done=lambda item: (_warn_small(item), done(item))
        ),
        len(paths),
        "aligning faces",
        json_out,
    )
    if json_out:
        console.emit_json(
            {"template": tpl.name, "size": request.size, "items": [i.to_json() for i in report.items]}
        )
    else:
        for item in report.items:
            for output in item.outputs:
                console.emit(str(output))
    _finish(report)


def _warn_small(item: Item) -> None:
    """A face enlarged more than 4x makes a blurry crop: say so as its photo is done."""
    for crop in item.details.get("crops", []):
        if crop["scale"] > 4:
            what = f"face {crop['index']} in {item.input.name}"
            console.warn(f"{what} is small: the crop enlarges it {crop['scale']:.1f}x")
