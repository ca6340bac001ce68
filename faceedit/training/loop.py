"""The training loop: processes and devices, the run folder, and ``fit`` (steps, logs, samples,
checkpoints, Ctrl-C, export). Multi-GPU/multi-node runs are torch's DistributedDataParallel under torchrun.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from faceedit import console, images
from faceedit.data.common import LoaderSpec, TrainData, default_workers, to_input
from faceedit.errors import UsageError
from faceedit.fsutil import ensure_dir, write_bytes_atomic
from faceedit.runtime import resolve_device
from faceedit.training import StepFile, checkpoint, trainer
from faceedit.training.checkpoint import TrainState
from faceedit.training.config import TrainConfig, to_dict, to_toml

RELEASE_DIR = "release"


@dataclass(frozen=True)
class Dist:
    """This process's place in the job (world 1 without torchrun) and its device."""

    rank: int
    world: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup(requested_device: str) -> Dist:
    """Join the torchrun job when launched by torchrun (nccl on CUDA, gloo on CPU), else a world of 1.

    A process group that already exists (made by the caller) is used as it is.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(requested_device, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = True  # fixed input sizes: let cuDNN pick the fastest kernels
        torch.set_float32_matmul_precision("high")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(
            "nccl" if device.type == "cuda" else "gloo", device_id=device if device.type == "cuda" else None
        )
    return Dist(rank, world, local_rank, device)


def teardown() -> None:
    """Leave the process group (only the one :func:`fit` made; see there)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


# ------------------------------------------------------------------------------------ run folder


class RunFolder:
    """``RUN/{config.toml, log.jsonl, samples/step-N.png, checkpoints/step-N.pt, release/}``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.log = self.root / "log.jsonl"

    def check_fresh(self) -> None:
        """Refuse to start a new run over an old one."""
        if self.root.exists() and (not self.root.is_dir() or any(self.root.iterdir())):
            raise UsageError(
                f"run folder {self.root} is not empty (it holds an earlier run)",
                "continue it with --resume auto, or choose a new --out",
            )

    def start(self, cfg: TrainConfig, resumed_step: int | None) -> None:
        ensure_dir(self.root)
        write_bytes_atomic(self.root / "config.toml", to_toml(cfg).encode(), overwrite=True)
        kept = []
        if resumed_step is not None and self.log.exists():  # drop records a crash left past the checkpoint
            kept = [line for line in self.log.read_text().splitlines() if _record_step(line) <= resumed_step]
        write_bytes_atomic(self.log, "".join(line + "\n" for line in kept).encode(), overwrite=True)

    def append(self, record: dict[str, Any]) -> None:
        with self.log.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    def write_samples(self, step: int, columns: list[torch.Tensor]) -> Path:
        """One PNG: a row per fixed image, a column per entry of ``columns`` ([N,3,S,S] each)."""
        rows = [np.concatenate(images.from_tensor(c), axis=0) for c in columns]
        path = self.root / "samples" / f"step-{step:08d}.png"
        return images.write(path, np.concatenate(rows, axis=1), overwrite=True)


def _record_step(line: str) -> int:
    try:
        return int(json.loads(line).get("step", 0))
    except (ValueError, AttributeError):
        return 0


# ------------------------------------------------------------------------------------ setup


def _open_data(cfg: TrainConfig, d: Dist, start: int) -> TrainData:
    workers = default_workers() if cfg.workers < 0 else cfg.workers
    spec = LoaderSpec(cfg.batch_size, cfg.seed, start, d.rank, d.world, workers, d.device.type == "cuda")
    if cfg.arch == "ugatit":
        from faceedit.data import unpaired

        return unpaired.open_training(cfg.data, cfg.image_size, spec, n_fixed=min(cfg.n_samples, 4))
    if getattr(cfg, "dataset", "celeba") != "celeba":  # StarGAN on RaFD, or CelebA + RaFD
        from faceedit.data import rafd

        return rafd.open_training(cfg, spec)
    from faceedit.data import celeba
    from faceedit.data.common import TEMPLATES

    index = celeba.read_index(cfg.data, cfg.attrs, cfg.split)
    return celeba.open_training(
        index,
        cfg.arch,
        cfg.split,
        TEMPLATES[cfg.template],
        cfg.image_size,
        cfg.flip,
        spec,
        n_fixed=cfg.n_samples,
    )


def check_data(cfg: TrainConfig) -> dict[str, int]:
    """Check the dataset folder for ``cfg`` without loading images; image counts per split/folder."""
    from faceedit.data import celeba, unpaired

    if not cfg.data:
        raise UsageError("no training data given", "pass --data DIR")
    if cfg.arch == "ugatit":
        return {k: len(v) for k, v in unpaired.list_folders(cfg.data).items()}
    if getattr(cfg, "dataset", "celeba") != "celeba":
        from faceedit.data import rafd

        return rafd.check_data(cfg)
    index = celeba.read_index(cfg.data, cfg.attrs, cfg.split)
    return {k: len(v) for k, v in celeba.split_rows(index, cfg.arch, cfg.split).items()}


def init_state(cfg: TrainConfig, d: Dist, total_steps: int, steps_per_epoch: int) -> TrainState:
    """Fresh networks (identical on every rank: same seed), optimisers, schedulers and scalers."""
    arch = trainer(cfg.arch)
    torch.manual_seed(cfg.seed)
    models = arch.build(cfg)
    fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
    for m in models.values():
        m.to(d.device, memory_format=fmt).train()
    optimizers, schedulers = arch.make_optimizers(cfg, models, total_steps, steps_per_epoch)
    scalers = {k: torch.amp.GradScaler(d.device.type, enabled=cfg.amp == "fp16") for k in optimizers}
    amp = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}[cfg.amp]
    return TrainState(
        models,
        optimizers,
        schedulers,
        scalers,
        d.device,
        amp,
        cfg.channels_last,
        total_steps=total_steps,
        steps_per_epoch=steps_per_epoch,
    )


def wrap(state: TrainState, cfg: TrainConfig, d: Dist) -> None:
    """DDP around every trained network when world > 1; torch.compile where the recipe allows it."""
    compilable = trainer(cfg.arch).COMPILABLE
    for name, model in state.models.items():
        compiled = cfg.compile and name in compilable
        state.local_nets[name] = torch.compile(model) if compiled else model
        if d.world == 1:
            state.nets[name] = state.local_nets[name]
            continue
        ids = [d.device.index] if d.device.type == "cuda" else None
        # Buffers are broadcast from rank 0 before each forward (DDP's default): BN/IN running
        # statistics follow rank 0, as they followed replica 0 under the official DataParallel.
        ddp = nn.parallel.DistributedDataParallel(model, device_ids=ids)
        state.nets[name] = torch.compile(ddp) if compiled else ddp


def to_device(batch: Any, state: TrainState) -> Any:
    """uint8 image tensors -> float [-1, 1] on the device; other tensors (labels) -> float on the device."""
    if isinstance(batch, list | tuple):
        return type(batch)(to_device(b, state) for b in batch)
    if batch.dtype == torch.uint8:
        return to_input(batch, state.device, state.channels_last)
    return batch.to(state.device, non_blocking=True).float()


# ------------------------------------------------------------------------------------ interrupts


class StopRequest:
    """Ctrl-C / SIGTERM ask to stop after the current step (a second Ctrl-C aborts at once)."""

    def __init__(self) -> None:
        self.requested = False

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True
        console.warn("stopping after this step and saving a checkpoint (Ctrl-C again aborts without saving)")

    @contextlib.contextmanager
    def installed(self) -> Iterator[StopRequest]:
        """Handle SIGINT/SIGTERM inside the block (only the main thread may install handlers)."""
        signals = (signal.SIGINT, signal.SIGTERM) if _main_thread() else ()
        old = {s: signal.signal(s, self._handle) for s in signals}
        try:
            yield self
        finally:
            for s, handler in old.items():
                signal.signal(s, handler)

    def agreed(self, d: Dist) -> bool:
        """True when any process was asked to stop (all processes stop at the same step)."""
        if d.world == 1:
            return self.requested
        flag = torch.tensor([float(self.requested)], device=d.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


# ------------------------------------------------------------------------------------ fit


def fit(cfg: TrainConfig, run_dir: Path, resume: str | None = None) -> Path | None:
    """Train ``cfg`` into ``run_dir``; returns the release folder (rank 0) or None (other ranks)."""
    run = RunFolder(run_dir)
    ckpt_path = checkpoint.resolve(run.root, resume)
    if resume is None:
        run.check_fresh()
    joined = dist.is_available() and dist.is_initialized()  # a caller's group: leave it to the caller
    d = setup(cfg.device)
    try:
        if d.world > 1:
            dist.barrier()  # every rank has checked the run folder before rank 0 writes into it
        return _fit(cfg, run, ckpt_path, d)
    finally:
        if not joined:
            teardown()


def _fit(cfg: TrainConfig, run: RunFolder, ckpt_path: Path | None, d: Dist) -> Path | None:
    arch = trainer(cfg.arch)
    saved = checkpoint.load(ckpt_path) if ckpt_path is not None else None
    start = int(saved["step"]) if saved else 0
    data = _open_data(cfg, d, start)
    total = cfg.steps if cfg.steps is not None else cfg.epochs * data.steps_per_epoch
    state = init_state(cfg, d, total, data.steps_per_epoch)
    if saved:
        checkpoint.restore(state, saved)
    wrap(state, cfg, d)
    if d.is_main:
        run.start(cfg, start if saved else None)
        console.info(_banner(cfg, d, data, total, start))
    fixed = to_device(data.fixed, state)
    with (
        StopRequest().installed() as stop,
        _Display(total, start, d.is_main) as show,
        warnings.catch_warnings(),
    ):
        # G's scheduler also steps on D-only iterations (the official lr follows the iteration count)
        warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step\\(\\)` before")
        _run_steps(cfg, state, arch, data, fixed, run, d, stop, show)
    if not d.is_main:
        return None
    return checkpoint.export(cfg, state.models, state.step, data.counts, run.root / RELEASE_DIR)[0]


def _run_steps(
    cfg: TrainConfig,
    state: TrainState,
    arch: StepFile,
    data: TrainData,
    fixed: Any,
    run: RunFolder,
    d: Dist,
    stop: StopRequest,
    show: _Display,
) -> None:
    """The loop itself: one batch per step; logs, samples and checkpoints at their cadence."""
    meter = _Meter(cfg.batch_size * d.world)
    losses = _LossMeans()
    while state.step < state.total_steps:
        batch = to_device(next(data.batches), state)
        torch.manual_seed(checkpoint.step_seed(cfg.seed, state.step, d.rank))
        losses.add(arch.train_step(state, cfg, batch))
        for scheduler in state.schedulers.values():
            scheduler.step()
        state.step += 1
        meter.tick()
        stopping = stop.agreed(d)
        done = state.step == state.total_steps
        if d.is_main and (state.step % cfg.log_every == 0 or done or stopping):
            record = _record(state, losses.pop(), meter)
            run.append(record)
            show.update(record)
        if d.is_main and cfg.sample_every and (state.step % cfg.sample_every == 0 or done):
            run.write_samples(state.step, _sample(arch, state, cfg, fixed))
        if (cfg.checkpoint_every and state.step % cfg.checkpoint_every == 0) or done or stopping:
            _save(state, cfg, run, d, data.counts)
        if stopping and not done:
            if d.is_main:
                console.info(
                    f"saved {checkpoint.path_for(run.root, state.step)}; continue with --resume auto"
                )
            raise KeyboardInterrupt


def _save(state: TrainState, cfg: TrainConfig, run: RunFolder, d: Dist, counts: dict[str, int]) -> None:
    if d.is_main:
        data = checkpoint.payload(state, to_dict(cfg), d.world, counts)
        checkpoint.save(run.root, data, cfg.keep_checkpoints)


def _sample(arch: StepFile, state: TrainState, cfg: TrainConfig, fixed: Any) -> list[torch.Tensor]:
    """Sample-grid columns from the fixed batch, networks in eval mode (BN running statistics)."""
    for m in state.models.values():
        m.eval()
    try:
        with torch.no_grad(), state.autocast():
            return [c.float() for c in arch.sample(state, cfg, fixed)]
    finally:
        for m in state.models.values():
            m.train()


class _LossMeans:
    """Each loss averaged over the steps since the last record that computed it (G losses appear only
    where a G update happened in the interval). Sums stay on the device: no sync until a record."""

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, int] = {}

    def add(self, losses: dict[str, torch.Tensor]) -> None:
        for k, v in losses.items():
            self.sums[k] = self.sums[k] + v.float() if k in self.sums else v.float()
            self.counts[k] = self.counts.get(k, 0) + 1

    def pop(self) -> dict[str, float]:
        means = {k: float(v) / self.counts[k] for k, v in self.sums.items()}
        self.sums, self.counts = {}, {}
        return means


def _record(state: TrainState, losses: dict[str, float], meter: _Meter) -> dict[str, Any]:
    record: dict[str, Any] = {"step": state.step, "epoch": state.step // max(state.steps_per_epoch, 1)}
    record.update(losses)
    record.update({f"lr_{k}": o.param_groups[0]["lr"] for k, o in state.optimizers.items()})
    record.update({"images_per_s": round(meter.rate(), 2), "elapsed_s": round(meter.elapsed(), 1)})
    rate = meter.steps_per_s()
    record["eta_s"] = round((state.total_steps - state.step) / rate) if rate > 0 else None
    return record


class _Meter:
    """Throughput over the last few hundred steps (the first step, with its warm-up, is left out)."""

    def __init__(self, images_per_step: int) -> None:
        self.images_per_step = images_per_step
        self.t0 = time.perf_counter()
        self.times: list[float] = []

    def tick(self) -> None:
        self.times = [*self.times[-200:], time.perf_counter()]

    def steps_per_s(self) -> float:
        if len(self.times) < 2:
            return 0.0
        return (len(self.times) - 1) / max(self.times[-1] - self.times[0], 1e-9)

    def rate(self) -> float:
        return self.steps_per_s() * self.images_per_step

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0


class _Display:
    """The live line on stderr (rich) on an interactive terminal; plain log lines otherwise."""

    def __init__(self, total: int, start: int, enabled: bool) -> None:
        self.total, self.start, self.enabled = total, start, enabled and not console.is_quiet()
        self.live = self.enabled and console.progress_enabled()
        self._bar: Any = None

    def __enter__(self) -> _Display:
        if self.live:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._bar = Progress(
                TextColumn("step"),
                MofNCompleteColumn(),
                BarColumn(bar_width=20),
                TimeRemainingColumn(),
                TextColumn("{task.fields[text]}"),
                console=console.err,
            )
            self._bar.__enter__()
            self._task = self._bar.add_task("train", total=self.total, completed=self.start, text="")
        return self

    def update(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        losses = " ".join(f"{k}={v:.3f}" for k, v in record.items() if "/" in k)
        text = f"{losses}  {record['images_per_s']:.1f} img/s"
        if self._bar is not None:
            self._bar.update(self._task, completed=record["step"], text=text)
        else:
            eta = _hms(record["eta_s"]) if record["eta_s"] is not None else "?"
            console.info(f"step {record['step']}/{self.total}  {text}  eta {eta}")

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)


def _hms(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def _banner(cfg: TrainConfig, d: Dist, data: TrainData, total: int, start: int) -> str:
    what = ", ".join(f"{v} {k}" for k, v in data.counts.items())
    where = f"{d.world} processes on {d.device.type}" if d.world > 1 else str(d.device)
    begin = f"resuming at step {start}" if start else "starting"
    return f"{cfg.arch}: {begin}, {total} steps ({data.steps_per_epoch} per epoch), {what} images, {where}"
