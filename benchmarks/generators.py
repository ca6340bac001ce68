"""Generator speed per model: the plain eager fp32 NCHW forward vs faceedit's fast path (runtime.Engine).

Run: ``python benchmarks/generators.py [--device cpu|cuda] [--models stargan,attgan,stgan,ugatit,ugatit-light]
[--batch 16] [--precision fp32[,bf16,fp16]] [--compile] [--cuda-graphs] [--reps 5] [--quick]``.
Default-config generators with random weights (nothing downloaded). Per model and batch size: median
latency of both paths measured in alternating rounds (so that machine load hits both alike), their ratio,
FLOPs per image (FlopCounterMode), the share of a matmul peak measured in the same run, and how far the
fast path's images are from the plain fp32 ones (uint8 mean/max abs difference of the generated crops).
On the CPU each round's process-CPU/wall ratio is checked: rounds that did not get the asked-for threads
(another job ran) are repeated and counted; ``--threads`` sets torch's thread count (default 2).
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

MODELS = {  # name -> (arch, generator kwargs beyond the constructor defaults, image size)
    "stargan": ("stargan", {}, 128),
    "attgan": ("attgan", {}, 128),
    "stgan": ("stgan", {}, 128),
    "ugatit": ("ugatit", {"light": False}, 256),
    "ugatit-light": ("ugatit", {"light": True}, 256),
}


# ------------------------------------------------------------------------------------ machine info


def header(title: str, device: Any) -> None:
    """Date, machine, library versions and threads (printed first by both benchmarks)."""
    import torch

    print(f"{title}, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    cpu = _cpu_name()
    print(f"machine: {cpu}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}")
    print(
        f"python {platform.python_version()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} torch threads, CPU capability {torch.backends.cpu.get_cpu_capability()}"
    )
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        print(f"GPU: {p.name}, {p.total_memory / 2**30:.0f} GiB, CUDA {torch.version.cuda}")
    from faceedit import runtime

    print(f"native bf16 on this CPU (oneDNN): {runtime.cpu_has_native_bf16()}")


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# ---------------------------------------------------------------------------------------- timing


@dataclass
class Timing:
    """Seconds per call of each variant over the clean rounds, and how many rounds were needed."""

    times: dict[str, list[float]] = field(default_factory=dict)
    rounds: int = 0
    busy: int = 0  # rounds thrown away because the process did not get its threads

    def median(self, name: str) -> float:
        return statistics.median(self.times[name]) if self.times.get(name) else float("nan")

    def spread(self, name: str) -> str:
        t = self.times.get(name) or [float("nan")]
        return f"{min(t) * 1e3:.1f}-{max(t) * 1e3:.1f}"

    def ratio(self, a: str, b: str) -> float:
        """Median of the per-round ratios a/b (each round measured both under the same load)."""
        pairs = [x / y for x, y in zip(self.times.get(a, []), self.times.get(b, []), strict=True)]
        return statistics.median(pairs) if pairs else float("nan")


def sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: Any) -> tuple[float, float]:
    """(wall seconds, process CPU seconds / wall) of one call; CUDA timed with events."""
    import torch

    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        sync(device)
        start.record()
        fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3, float("nan")
    cpu, wall = time.process_time(), time.perf_counter()
    fn()
    wall = time.perf_counter() - wall
    return wall, (time.process_time() - cpu) / wall


def alternate(
    variants: dict[str, Callable[[], Any]], device: Any, reps: int, threads: int, warmup: int = 1
) -> Timing:
    """Run the variants in turn, ``reps`` clean rounds (CPU: each variant got >= 85% of ``threads``)."""
    for fn in variants.values():
        for _ in range(warmup):
            fn()
        sync(device)
    result = Timing({name: [] for name in variants})
    while len(next(iter(result.times.values()))) < reps and result.rounds < 4 * reps:
        result.rounds += 1
        row = {name: timed(fn, device) for name, fn in variants.items()}
        if device.type == "cpu" and any(load < 0.85 * threads for _, load in row.values()):
            result.busy += 1
            continue
        for name, (seconds, _) in row.items():
            result.times[name].append(seconds)
    if not next(iter(result.times.values())):  # never a clean round: keep the last, flagged by `busy`
        for name, (seconds, _) in row.items():
            result.times[name].append(seconds)
    return result


def matmul_peak(device: Any, dtype: Any, reps: int = 5) -> float:
    """FLOP/s of a large square matmul in ``dtype`` (the practical ceiling the GPU/CPU reaches)."""
    import torch

    n = 8192 if device.type == "cuda" else 2048
    if device.type == "cpu" and dtype != torch.float32:
        n = 512  # emulated bf16 on CPUs without native support is ~100x slower: keep it short
    gen = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(n, n, device=device, dtype=dtype, generator=gen)
    b = torch.randn(n, n, device=device, dtype=dtype, generator=gen)
    with _true_fp32(device):
        t = alternate({"mm": lambda: a @ b}, device, reps, torch.get_num_threads())
    return 2 * n**3 / t.median("mm")


def _true_fp32(device: Any) -> Any:
    import contextlib

    from faceedit import runtime

    return (
        runtime.cuda_flags(benchmark=False, tf32=False) if device.type == "cuda" else contextlib.nullcontext()
    )


# ------------------------------------------------------------------------------------------ models


def build(name: str, seed: int = 0) -> Any:
    """A default-config FaceModel with random weights and non-trivial norm statistics (CPU)."""
    import torch

    from faceedit import models, specs

    arch, kwargs, size = MODELS[name]
    torch.manual_seed(seed)
    facts = specs.arch_spec(arch)  # the official attribute list, template and conditioning
    config = models.make_config(
        arch,
        kwargs,
        attributes=list(facts.attributes),
        image_size=size,
        template=facts.template,
        resize=facts.resize,
        conditioning=facts.conditioning(),
    )
    model = models.build(config)
    _norm_statistics(model.generator, seed)
    return model


def _norm_statistics(module: Any, seed: int) -> None:
    """BatchNorm running statistics and affine terms away from 0/1 (a trained model's are)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in module.state_dict().items():
            if name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=gen) + 0.5)
            elif name.endswith("running_mean"):
                t.copy_(torch.rand(t.shape, generator=gen) * 0.4 - 0.2)
            elif name.endswith(".rho"):
                t.copy_(torch.rand(t.shape, generator=gen))


def inputs(model: Any, batch: int, device: Any) -> tuple[Any, Any]:
    """Face-like inputs (the astronaut's face, shifted and re-lit per image) and random labels."""
    import cv2
    import torch

    from faceedit import images

    size = int(model.config["image_size"])
    rgb = astronaut()
    crops = []
    for i in range(batch):
        dx, dy = 4 * (i % 5) - 8, 3 * (i % 7) - 9
        face = rgb[40 + dy : 260 + dy, 110 + dx : 330 + dx]
        crop = cv2.resize(face, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32)
        crops.append(np.clip(crop * (0.8 + 0.05 * (i % 8)), 0, 255).astype(np.uint8))
    x = images.to_tensor(crops).to(device)
    n_attrs = len(model.config["attributes"])
    if not n_attrs:
        return x, None
    gen = torch.Generator().manual_seed(batch)
    labels = (torch.rand(batch, n_attrs, generator=gen) > 0.5).float()
    if model.config["conditioning"]["scheme"] == "attgan":
        labels = labels - 0.5
    return x, labels.to(device)


def astronaut() -> np.ndarray:
    import skimage

    from faceedit import images

    return images.read(Path(skimage.__file__).parent / "data" / "astronaut.png").rgb


def flops_per_image(generator: Any, x: Any, c: Any) -> float:
    """FLOPs of one image through ``generator`` (conv/linear/matmul, 2 per multiply-add)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        generator(x[:1]) if c is None else generator(x[:1], c[:1])
    return float(counter.get_total_flops())


# ---------------------------------------------------------------------------------------- measuring


@dataclass
class Row:
    model: str
    precision: str
    batch: int
    plain: float
    fast: float
    ratio: float
    spread: str
    gflops: float
    peak_plain: float
    peak_fast: float
    image_diff: str
    tensor_diff: float
    busy: str


# What a lower precision may change in the generated crops (uint8 levels) to be used by ``auto``: on
# average under half a level, and at most a few levels except at isolated pixels.
IMAGE_BUDGET = {"mean": 0.5, "p99.9": 4}


def image_difference(a: Any, b: Any) -> tuple[str, float]:
    """uint8 mean / 99.9th percentile / max abs difference of the generated crops, float max abs diff."""
    from faceedit import images

    ua = np.stack(images.from_tensor(a.float().cpu())).astype(np.int16)
    ub = np.stack(images.from_tensor(b.float().cpu())).astype(np.int16)
    diff = np.abs(ua - ub)
    text = f"{diff.mean():.3f}/{np.percentile(diff, 99.9):.0f}/{diff.max()}"
    return text, float((a.float() - b.float()).abs().max())


def within_budget(image_diff: str) -> bool:
    mean, p999, _ = (float(v) for v in image_diff.split("/"))
    return mean <= IMAGE_BUDGET["mean"] and p999 <= IMAGE_BUDGET["p99.9"]


def measure(name: str, args: argparse.Namespace, device: Any, peaks: dict[str, float]) -> list[Row]:
    """Both paths of one model at batch 1 and ``--batch``, for each ``--precision``."""
    import torch

    from faceedit import runtime

    model = build(name)
    x_full, c_full = inputs(model, args.batch, device)
    gflop = flops_per_image(model.generator, x_full.cpu(), None if c_full is None else c_full.cpu()) / 1e9
    model.generator.to(device)
    rows = []
    for precision in args.precision:
        engine = runtime.Engine(
            model,
            str(device),
            precision,
            compile=args.compile,
            cuda_graphs=args.cuda_graphs,
            channels_last=args.channels_last,
        )
        for note in engine.notes:
            print(f"  note: {note}")
        for batch in sorted({1, args.batch}):
            x, c = x_full[:batch], None if c_full is None else c_full[:batch]
            rows.append(_measure_batch(name, engine, model, x, c, gflop, peaks, args, device))
            print(_format(rows[-1]), flush=True)
        del engine
        gc.collect()
    del model
    gc.collect()
    if device.type == "cuda":
        print(f"  (peak GPU memory {torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB)")
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    return rows


def _measure_batch(
    name: str, engine: Any, model: Any, x: Any, c: Any, gflop: float, peaks: dict, args: Any, device: Any
) -> Row:
    import torch

    g = model.generator

    def plain() -> Any:
        with torch.no_grad(), _true_fp32(device):
            return g(x) if c is None else g(x, c)

    xf = engine._place(x)

    def fast() -> Any:
        with torch.inference_mode():
            return engine._run(xf, c)

    with torch.inference_mode():
        reference = plain()
        reference = reference[0] if isinstance(reference, tuple) else reference
        image_diff, tensor_diff = image_difference(fast()[0], reference)
    warmup = 3 if device.type == "cuda" else 1
    t = alternate({"plain": plain, "fast": fast}, device, args.reps, torch.get_num_threads(), warmup)
    n = x.shape[0]
    fast_peak = peaks[engine.precision]
    return Row(
        name,
        engine.precision,
        n,
        t.median("plain"),
        t.median("fast"),
        t.ratio("plain", "fast"),
        f"{t.spread('plain')} | {t.spread('fast')}",
        gflop,
        gflop * 1e9 * n / t.median("plain") / peaks["fp32"],
        gflop * 1e9 * n / t.median("fast") / fast_peak,
        image_diff,
        tensor_diff,
        f"{t.busy}/{t.rounds}",
    )


COLUMNS = (
    f"{'model':13s} {'prec':4s} {'batch':>5s} {'plain ms':>9s} {'fast ms':>9s} {'ratio':>6s} "
    f"{'fast img/s':>10s} {'GFLOP/img':>9s} {'%peak plain':>11s} {'%peak fast':>10s} "
    f"{'uint8 mean/p99.9/max':>20s} {'max|d|':>8s}  spread plain | fast (ms)  busy rounds"
)


def _format(r: Row) -> str:
    return (
        f"{r.model:13s} {r.precision:4s} {r.batch:5d} {r.plain * 1e3:9.1f} {r.fast * 1e3:9.1f} "
        f"{r.ratio:6.2f} {r.batch / r.fast:10.1f} {r.gflops:9.2f} {100 * r.peak_plain:10.1f}% "
        f"{100 * r.peak_fast:9.1f}% {r.image_diff:>20s} {r.tensor_diff:8.1e}  {r.spread}  {r.busy}"
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated: {', '.join(MODELS)}")
    parser.add_argument("--batch", type=int, default=16, help="throughput batch size (latency: batch 1)")
    parser.add_argument("--precision", default="fp32", help="comma-separated: fp32, bf16, fp16, auto")
    parser.add_argument("--compile", action="store_true", help="torch.compile the fast path")
    parser.add_argument("--cuda-graphs", action="store_true", help="replay CUDA graphs (CUDA only)")
    parser.add_argument("--channels-last", choices=("auto", "on", "off"), default="auto")
    parser.add_argument("--reps", type=int, default=5, help="clean timed rounds per figure (median)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--quick", action="store_true", help="stargan and ugatit-light, batch 4, 2 reps")
    args = parser.parse_args(argv)
    if args.quick:
        args.models, args.batch, args.reps = "stargan,ugatit-light", min(args.batch, 4), min(args.reps, 2)
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in args.models if m not in MODELS]
    if unknown:
        parser.error(f"unknown models {unknown}; known: {', '.join(MODELS)}")
    args.precision = [p.strip() for p in args.precision.split(",") if p.strip()]
    args.channels_last = {"auto": None, "on": True, "off": False}[args.channels_last]
    return args


def main(argv: list[str] | None = None) -> None:
    import torch

    from faceedit import runtime

    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    device = runtime.resolve_device(args.device)
    header("faceedit generator benchmark", device)
    names = {runtime.precision_name(runtime.resolve_precision(p, device)) for p in args.precision}
    peaks = {"fp32": matmul_peak(device, torch.float32)}
    for p in sorted(names - {"fp32"}):
        peaks[p] = matmul_peak(device, getattr(torch, runtime._DTYPES[p]))
    print("measured matmul peak: " + ", ".join(f"{k} {v / 1e12:.3g} TFLOP/s" for k, v in peaks.items()))
    print(
        f"compile={args.compile} cuda_graphs={args.cuda_graphs} reps={args.reps} "
        "(plain = eager fp32 NCHW under no_grad, TF32 off; fast = runtime.Engine)"
    )
    print(COLUMNS)
    rows = []
    for name in args.models:
        rows += measure(name, args, device, peaks)
    print("\nsummary (ratio = plain / fast, median of per-round ratios):")
    print(COLUMNS)
    for row in rows:
        print(_format(row))
    verdict(rows, device)


def verdict(rows: list[Row], device: Any) -> None:
    """Whether each lower precision kept every model's images within :data:`IMAGE_BUDGET` of fp32."""
    from faceedit import runtime

    auto = runtime.AUTO_PRECISION.get(device.type, "fp32")
    for precision in sorted({r.precision for r in rows} - {"fp32"}):
        bad = sorted({r.model for r in rows if r.precision == precision and not within_budget(r.image_diff)})
        speed = [r.ratio for r in rows if r.precision == precision and r.batch > 1]
        state = "within" if not bad else f"OUTSIDE for {', '.join(bad)}:"
        print(
            f"{precision} on {device.type}: images {state} the budget (mean <= {IMAGE_BUDGET['mean']}, "
            f"p99.9 <= {IMAGE_BUDGET['p99.9']} levels); batch speed-up vs plain fp32 "
            f"{min(speed, default=float('nan')):.2f}-{max(speed, default=float('nan')):.2f}x"
            + (f"; auto = {auto} here" if precision == auto else "")
        )


if __name__ == "__main__":
    main()
