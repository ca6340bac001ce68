"""Training speed: images/s of one official training iteration per model at its default configuration.

Run: ``python benchmarks/train_step.py [--models stargan,attgan,stgan,ugatit] [--device cuda]
[--amp bf16|fp16|off] [--channels-last] [--compile] [--batch-size N] [--steps N] [--max-seconds S]``.
Batches are random tensors already on the device, so this times the step (forward, losses, backward,
optimiser) and not decoding. The mix of D and G iterations follows each recipe (StarGAN/STGAN: G every
5th step; AttGAN: 5 D steps then a G step), so the default step count covers whole cycles.
Prints one table row per model; no assertions (speed targets live here, not in tests).
"""

from __future__ import annotations

import argparse
import platform
import time
from typing import Any

import torch

from faceedit.training import config, loop, trainer

CYCLE = {"stargan": 5, "attgan": 6, "stgan": 5, "ugatit": 1}  # iterations per D/G pattern


def fake_batch(cfg: config.TrainConfig, state: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Random uint8 images (and 0/1 labels) converted on the device exactly as real batches are."""
    n, s = cfg.batch_size, cfg.image_size
    images = torch.randint(0, 256, (n, 3, s, s), dtype=torch.uint8)
    second = torch.randint(0, 256, (n, 3, s, s), dtype=torch.uint8) if cfg.arch == "ugatit" else None
    labels = torch.randint(0, 2, (n, len(cfg.attrs))).float()
    return loop.to_device((images, second if second is not None else labels), state)


def measure(arch: str, args: argparse.Namespace) -> dict[str, Any]:
    overrides = {
        "device": args.device,
        "amp": args.amp,
        "channels_last": args.channels_last,
        "compile": args.compile,
        "batch_size": args.batch_size,
    }
    if arch == "ugatit" and args.light:
        overrides["light"] = True
    cfg = config.load(arch, overrides={k: v for k, v in overrides.items() if v is not None})
    d = loop.setup(cfg.device)
    state = loop.init_state(cfg, d, total_steps=10**6, steps_per_epoch=10**4)
    loop.wrap(state, cfg, d)
    step_fn, batch = trainer(arch).train_step, fake_batch(cfg, state)
    warmup = args.warmup if args.warmup is not None else CYCLE[arch]
    steps = args.steps if args.steps is not None else 2 * CYCLE[arch]
    for _ in range(warmup):  # cuDNN autotuning, allocator growth, torch.compile
        step_fn(state, cfg, batch)
        state.step += 1
    sync(d.device)
    if d.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(d.device)
    start, done = time.perf_counter(), 0
    while done < steps and (done == 0 or time.perf_counter() - start < args.max_seconds):
        step_fn(state, cfg, batch)
        state.step += 1
        done += 1
    sync(d.device)
    seconds = (time.perf_counter() - start) / done
    peak = torch.cuda.max_memory_allocated(d.device) / 2**30 if d.device.type == "cuda" else None
    return {
        "model": arch + ("-light" if arch == "ugatit" and cfg.light else ""),
        "size": cfg.image_size,
        "batch": cfg.batch_size,
        "steps": done,
        "s_per_step": seconds,
        "images_per_s": cfg.batch_size / seconds,
        "peak_gib": peak,
    }


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="stargan,attgan,stgan,ugatit")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    parser.add_argument("--amp", choices=("off", "bf16", "fp16"), default="off")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--batch-size", type=int, default=None, help="default: each recipe's")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default: two D/G cycles)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps (default: one cycle)")
    parser.add_argument("--max-seconds", type=float, default=120.0, help="stop timing a model after this")
    parser.add_argument("--light", action="store_true", help="U-GAT-IT light (the full one needs ~12 GB)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = loop.resolve_device(args.device)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    print(
        f"# faceedit train-step benchmark: torch {torch.__version__}, {where}, {torch.get_num_threads()} "
        f"CPU threads, amp={args.amp}, channels_last={args.channels_last}, compile={args.compile}"
    )
    print(f"{'model':<14} {'px':>4} {'batch':>5} {'steps':>5} {'s/step':>8} {'images/s':>9} {'peak GiB':>8}")
    for arch in args.models.split(","):
        r = measure(arch.strip(), args)
        peak = f"{r['peak_gib']:.1f}" if r["peak_gib"] is not None else "-"
        print(
            f"{r['model']:<14} {r['size']:>4} {r['batch']:>5} {r['steps']:>5} {r['s_per_step']:>8.3f} "
            f"{r['images_per_s']:>9.1f} {peak:>8}",
            flush=True,
        )
        loop.teardown()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
