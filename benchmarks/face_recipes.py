"""``detect`` and ``align`` as recipes on the pipeline: seconds for the same photos with one worker (the
old serial loop's shape), with threads and with worker processes, and whether the results agree.

Run: ``python benchmarks/face_recipes.py [--photos ../shared/photos] [--workers 2] [--repeats 1]``.
Prints a table; ratios are against one worker measured in the same run (a shared machine is noisy).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from faceedit import api
from faceedit.batch import IMAGE_EXTENSIONS, OutputPlan
from faceedit.face import align


def run(flow: str, paths: list[Path], workers: int, processes: bool, out: Path) -> tuple[float, list]:
    """Seconds for one pass and the outcome per photo (status, faces)."""
    options = api.FaceOptions(detector="mtcnn")
    start = time.perf_counter()
    if flow == "detect":
        report = api.detect_many(paths, options, workers=workers, processes=processes)
    else:
        request = api.AlignRequest(template=align.get_template("ffhq"), size=256, faces=options)
        plan = OutputPlan(out_dir=out, format="png", overwrite=True)  # as faceedit align
        report = api.align_many(paths, request, plan, workers=workers, processes=processes)
    return time.perf_counter() - start, [(i.status, i.faces) for i in report.items]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=Path, default=Path(__file__).parents[1] / ".." / "shared" / "photos")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    paths = sorted(p for p in args.photos.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    print(f"{len(paths)} photos in {args.photos}, {args.workers} workers, load {os.getloadavg()[0]:.2f}")
    print(f"{'flow':7} {'lanes':22} {'s':>7} {'vs 1 worker':>12}  same results")
    with tempfile.TemporaryDirectory(prefix="faceedit-recipes-") as tmp:
        for flow in ("detect", "align"):
            base = None
            for label, workers, processes in (
                ("1 worker (inline)", 1, False),
                (f"{args.workers} threads", args.workers, False),
                (f"{args.workers} processes", args.workers, True),
            ):
                best, outcome = min(
                    run(flow, paths, workers, processes, Path(tmp)) for _ in range(args.repeats)
                )
                base = base or (best, outcome)
                print(f"{flow:7} {label:22} {best:7.2f} {base[0] / best:11.2f}x  {outcome == base[1]}")


if __name__ == "__main__":
    main()
