"""``faceedit detect`` (boxes, scores, points per face) and ``faceedit align`` (aligned crops to a folder).

Both take files, folders and globs, go on past a bad file, and exit with the batch's code
(0 done, 2 usage, 3 no face in any input, 4 detector weights unavailable, 5 some inputs failed).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from faceedit import console
from faceedit.errors import FaceeditError, NoFaceError

if TYPE_CHECKING:
    from faceedit.batch import Item, OutputPlan, Report
    from faceedit.face.align import Template
    from faceedit.face.detect import Backend, Face
    from faceedit.images import Photo

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
) -> None:
    """Find every face: box, score and 5 landmarks (68 with --detector fan) per face.

    Faces are numbered left to right (0 = leftmost). Coordinates are pixels of the upright photo
    (EXIF orientation applied), pixel centres at integers.
    """
    from faceedit.batch import Item, Report, expand_inputs
    from faceedit.face import detect

    paths = expand_inputs(inputs, recursive=recursive)
    detect.parse_selection(face)
    backend = detect.get_backend(detect.resolve_detector(detector), device)
    report = Report()
    with console.progress(
        len(paths), "detecting faces", enabled=console.progress_enabled(json_out)
    ) as advance:
        for path in paths:
            try:
                photo, faces, indices, skipped = _find(path, backend, face, min_face_size)
                detections = [{"index": i, **f.to_json()} for i, f in zip(indices, faces, strict=True)]
                details: dict[str, Any] = {
                    "width": photo.width,
                    "height": photo.height,
                    "detections": detections,
                }
                if skipped:
                    details["skipped_small"] = skipped
                report.add(Item(input=path, faces=len(faces), details=details))
            except FaceeditError as e:
                report.fail(path, e)
            advance()
    if json_out:
        console.emit_json({"detector": backend.name, "items": [i.to_json() for i in report.items]})
    else:
        _print_table(report)
    _finish(report)


def _find(
    path: Path, backend: Backend, select: str, min_face_size: float
) -> tuple[Photo, list[Face], list[int], int]:
    """Read ``path`` and detect: (photo, selected faces, their indices, number of too-small faces)."""
    from faceedit import images
    from faceedit.face import detect

    photo = images.read(path)
    found = detect.find_faces(photo.rgb, backend, min_face_size=min_face_size)
    kept, small = detect.split_small(found, min_face_size)
    if not kept:
        extra = f" ({len(small)} smaller than {min_face_size:g} px)" if small else ""
        hint = "lower --min-face-size" if small else "try another --detector, or a larger photo of the face"
        raise NoFaceError(f"no face found in {path}{extra}", hint)
    chosen = detect.select_faces(kept, select, photo.rgb.shape)
    return photo, chosen, [next(i for i, k in enumerate(kept) if k is f) for f in chosen], len(small)


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
    pad_blur: Annotated[
        bool, typer.Option("--pad-blur", help="Fill parts outside the photo as FFHQ did (reflect + blur).")
    ] = False,
    detector: DetectorOpt = "auto",
    face: FaceOpt = "all",
    min_face_size: MinSizeOpt = 20.0,
    device: DeviceOpt = "auto",
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing crops.")] = False,
    skip_existing: Annotated[
        bool, typer.Option("--skip-existing", help="Keep existing crops, do not redo them.")
    ] = False,
    json_out: JsonOpt = False,
    recursive: RecursiveOpt = False,
) -> None:
    """Write each face cropped and aligned the way a model was trained (FFHQ by default, 1024 px).

    Crops keep the photo's bit depth, gray and alpha; files are {stem}_{face}.png in --out.
    """
    from faceedit.batch import OutputPlan, Report, expand_inputs
    from faceedit.face import align, detect
    from faceedit.fsutil import ensure_dir

    paths = expand_inputs(inputs, recursive=recursive)
    tpl = align.get_template(template)
    detect.parse_selection(face)
    plan = OutputPlan(out_dir=out, format="png", overwrite=overwrite, skip_existing=skip_existing)
    plan = plan.for_inputs(paths)  # a/p.png and b/p.png go to out/a/ and out/b/: nothing is lost
    ensure_dir(out)
    backend = detect.get_backend(detect.resolve_detector(detector), device)
    options = {"size": size or tpl.size, "margin": margin, "pad_blur": pad_blur}
    report = Report()
    with console.progress(
        len(paths), "aligning faces", enabled=console.progress_enabled(json_out)
    ) as advance:
        for path in paths:
            try:
                report.add(_align_one(path, backend, tpl, plan, face, min_face_size, options))
            except FaceeditError as e:
                report.fail(path, e)
            advance()
    if json_out:
        console.emit_json(
            {"template": tpl.name, "size": options["size"], "items": [i.to_json() for i in report.items]}
        )
    else:
        for item in report.items:
            for output in item.outputs:
                console.emit(str(output))
    _finish(report)


def _align_one(
    path: Path,
    backend: Backend,
    tpl: Template,
    plan: OutputPlan,
    select: str,
    min_face_size: float,
    options: dict[str, Any],
) -> Item:
    from faceedit import images
    from faceedit.batch import Item
    from faceedit.face import align

    photo, faces, indices, _ = _find(path, backend, select, min_face_size)
    item = Item(input=path, faces=len(faces), details={"crops": []})
    for index, f in zip(indices, faces, strict=True):
        target = plan.path_for(path, tag=f"_{index}")
        if not plan.check(target, source=path):
            item.status = "skipped" if not item.outputs else item.status
            continue
        aligned = align.align(
            photo.pixels, f, tpl, options["size"], margin=options["margin"], pad_blur=options["pad_blur"]
        )
        alpha = None
        if photo.alpha is not None:
            alpha = align.warp_affine(photo.alpha, aligned.matrix, aligned.size, border="constant")
        images.write(target, photo.replace(pixels=aligned.crop, alpha=alpha), overwrite=plan.overwrite)
        item.outputs.append(target)
        item.status = "ok"
        crop = {"index": index, "output": str(target), "scale": round(aligned.scale, 3), **f.to_json()}
        if aligned.scale > 4:
            console.warn(f"face {index} in {path.name} is small: the crop enlarges it {aligned.scale:.1f}x")
        item.details["crops"].append(crop)
    return item
