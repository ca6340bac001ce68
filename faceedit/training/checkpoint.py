"""The training state and its checkpoints: plain data that ``torch.load(weights_only=True)`` reads.

A checkpoint holds every module's, optimiser's, scheduler's and grad scaler's state dict, the config as
a dict, the step and the RNG states; ``run/checkpoints/step-00001000.pt``, the newest K kept.
"""

from __future__ import annotations

import contextlib
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from faceedit import __version__
from faceedit.errors import CheckpointError, UsageError
from faceedit.fsutil import atomic_file

FORMAT = "faceedit.train-checkpoint"
FORMAT_VERSION = 1
CHECKPOINT_DIR = "checkpoints"
_NAME = re.compile(r"^step-(\d+)\.pt$")


@dataclass
class TrainState:
    """Everything a step changes. ``models`` are the plain modules (saved, exported). ``nets`` are what a
    step calls for the passes that train a network (DDP averages their gradients across processes; maybe
    compiled); ``local_nets`` for passes that train nothing of it (no-grad fakes, a frozen critic)."""

    models: dict[str, nn.Module]
    optimizers: dict[str, torch.optim.Optimizer]
    schedulers: dict[str, torch.optim.lr_scheduler.LRScheduler]
    scalers: dict[str, torch.amp.GradScaler]  # one per optimiser; disabled unless amp = fp16
    device: torch.device
    amp_dtype: torch.dtype | None = None
    channels_last: bool = False
    step: int = 0
    total_steps: int = 0
    steps_per_epoch: int = 1
    nets: dict[str, nn.Module] = field(default_factory=dict)
    local_nets: dict[str, nn.Module] = field(default_factory=dict)

    def net(self, name: str) -> nn.Module:
        """The module to call for a pass that trains ``name`` (DDP-wrapped under torchrun)."""
        return self.nets.get(name, self.models[name])

    def local(self, name: str) -> nn.Module:
        """The module to call for a pass that does not train ``name``: never DDP, compiled if asked."""
        return self.local_nets.get(name, self.models[name])

    def autocast(self) -> contextlib.AbstractContextManager:
        """Mixed precision for the forward passes (a no-op when amp is off)."""
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def update(self, name: str, loss: torch.Tensor) -> None:
        """Backward ``loss`` and step optimiser ``name`` (through its GradScaler: a no-op unless fp16)."""
        optimizer, scaler = self.optimizers[name], self.scalers[name]
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()


@contextlib.contextmanager
def frozen(*modules: nn.Module) -> Iterator[None]:
    """Parameters of ``modules`` need no gradient inside the block (D during a G update)."""
    params = [p for m in modules for p in m.parameters()]
    flags = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(params, flags, strict=True):
            p.requires_grad_(flag)


# ------------------------------------------------------------------------------------ RNG


def rng_state() -> dict[str, Any]:
    """Python, numpy, torch CPU and CUDA generator states as weights_only-loadable data."""
    np_state = np.random.get_state(legacy=False)
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore :func:`rng_state` (CUDA states only when the device count matches)."""
    random.setstate(_as_tuple(state["python"]))
    n = state["numpy"]
    np.random.set_state(
        {
            "bit_generator": "MT19937",
            "state": {"key": n["key"].numpy().astype(np.uint32), "pos": n["pos"]},
            "has_gauss": n["has_gauss"],
            "gauss": n["gauss"],
        }
    )
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


def _as_tuple(value: Any) -> Any:
    return tuple(_as_tuple(v) for v in value) if isinstance(value, list | tuple) else value


def step_seed(seed: int, step: int, rank: int) -> int:
    """The torch seed of one step of one process: random draws depend on (seed, step, rank) only."""
    return int(np.random.SeedSequence([seed, step, rank]).generate_state(1, np.uint64)[0])


# ------------------------------------------------------------------------------------ files


def path_for(run_dir: Path, step: int) -> Path:
    return Path(run_dir) / CHECKPOINT_DIR / f"step-{step:08d}.pt"


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Checkpoints of a run, oldest first."""
    folder = Path(run_dir) / CHECKPOINT_DIR
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def latest(run_dir: Path) -> Path | None:
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def payload(
    state: TrainState, config: dict[str, Any], world_size: int, counts: dict[str, int]
) -> dict[str, Any]:
    """The checkpoint dict of ``state``; ``counts`` = images per split (provenance of exports)."""
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "created_by": f"faceedit {__version__}",
        "arch": config["arch"],
        "config": config,
        "step": state.step,
        "total_steps": state.total_steps,
        "world_size": world_size,
        "data_counts": dict(counts),
        "models": {k: m.state_dict() for k, m in state.models.items()},
        "optimizers": {k: o.state_dict() for k, o in state.optimizers.items()},
        "schedulers": {k: s.state_dict() for k, s in state.schedulers.items()},
        "scalers": {k: s.state_dict() for k, s in state.scalers.items()},
        "rng": rng_state(),
    }


def save(run_dir: Path, data: dict[str, Any], keep: int) -> Path:
    """Write ``data`` atomically as the checkpoint of its step, then delete all but the newest ``keep``."""
    path = path_for(run_dir, data["step"])
    with atomic_file(path, overwrite=True) as tmp:
        _torch_save(data, tmp)
    for old in list_checkpoints(run_dir)[:-keep]:
        old.unlink(missing_ok=True)
    return path


class _Sink:
    """A file that remembers its OSError: torch.save turns a full disk into a bare RuntimeError."""

    def __init__(self, file: Any) -> None:
        self.file, self.error = file, None

    def write(self, data: Any) -> int:
        try:
            return self.file.write(data)
        except OSError as e:
            self.error = e
            raise

    def flush(self) -> None:
        try:
            self.file.flush()
        except OSError as e:
            self.error = e
            raise


def _torch_save(data: dict[str, Any], tmp: Path) -> None:
    """``torch.save`` whose write failures surface as the OSError (ENOSPC...) that caused them."""
    with open(tmp, "wb") as f:
        sink = _Sink(f)
        try:
            torch.save(data, sink)
        except RuntimeError as e:
            if sink.error is not None:
                raise sink.error from e
            raise


def load(path: Path) -> dict[str, Any]:
    """Read a checkpoint safely (weights_only) onto the CPU; CheckpointError if it is not one of ours."""
    path = Path(path)
    hint = "resume from another checkpoint of the run (--resume PATH), or start a new run"
    if not path.is_file():
        raise UsageError(
            f"checkpoint {path} does not exist", "give a .pt file under RUN/checkpoints/ or a run folder"
        )
    try:
        data = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:  # torch raises RuntimeError, UnpicklingError, EOFError, zipfile errors...
        raise CheckpointError(
            f"checkpoint {path} is damaged or not a faceedit checkpoint ({type(e).__name__})", hint
        ) from e
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a faceedit training checkpoint", hint)
    if data.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format {data.get('format_version')}, this faceedit reads "
            f"{FORMAT_VERSION}",
            "use the faceedit version that wrote it",
        )
    return data


def resolve(run_dir: Path, resume: str | None) -> Path | None:
    """The checkpoint ``--resume`` names: auto = the run's newest (None if it has none), or a path."""
    if resume is None:
        return None
    if resume == "auto":
        return latest(run_dir)
    path = Path(resume).expanduser()
    if path.is_dir():
        found = latest(path)
        if found is None:
            raise UsageError(f"{path} holds no checkpoints", f"expected {path / CHECKPOINT_DIR}/step-*.pt")
        return found
    return path


def restore(state: TrainState, data: dict[str, Any]) -> None:
    """Load a checkpoint's state dicts into ``state`` (strict) and continue from its step."""
    try:
        for group, target in (
            ("models", state.models),
            ("optimizers", state.optimizers),
            ("schedulers", state.schedulers),
            ("scalers", state.scalers),
        ):
            for name, obj in target.items():
                saved = data[group].get(name)
                if saved is None:
                    raise KeyError(f"{group}.{name}")
                if group == "scalers" and not saved:
                    continue  # written while fp16 was off: a fresh scaler is right
                obj.load_state_dict(saved)
    except (KeyError, RuntimeError, ValueError) as e:
        raise CheckpointError(
            f"the checkpoint does not match this model: {e}",
            "resume with the settings the run was started with",
        ) from e
    state.step = int(data["step"])
    set_rng_state(data["rng"])


# ------------------------------------------------------------------------------------ export


def export(
    cfg: Any,
    models: dict[str, nn.Module],
    step: int,
    counts: dict[str, int],
    out: Path,
    overwrite: bool = True,
) -> list[Path]:
    """Write the trained networks as model folder(s): ``out``, and ``out-B2A`` for U-GAT-IT's second G.

    Every target is checked before the first is written, so a refused export writes nothing.
    """
    from faceedit.errors import OutputError
    from faceedit.models import folder as registry
    from faceedit.training import config as config_module
    from faceedit.training import trainer

    recipe = config_module.to_dict(cfg)
    provenance = {
        "upstream": f"trained with faceedit {__version__}",
        "trained": {"steps": step, "data": str(cfg.data), "images": dict(counts), "recipe": recipe},
    }
    releases = trainer(cfg.arch).release(cfg, models, provenance)
    targets = {
        out.with_name(out.name + (f"-{suffix}" if suffix else "")): m for suffix, m in releases.items()
    }
    for target in targets:
        if not overwrite and target.exists() and (not target.is_dir() or any(target.iterdir())):
            raise OutputError(
                f"{target} already exists and is not empty", "pass --overwrite or choose another --out"
            )
    return [registry.save(model, target, overwrite=overwrite) for target, model in targets.items()]


def export_checkpoint(path: Path, out: Path, overwrite: bool = False) -> list[Path]:
    """``faceedit export``: rebuild the networks of a checkpoint and write their model folder(s)."""
    from faceedit.training import config as config_module
    from faceedit.training import trainer

    data = load(path)
    cfg = config_module.from_dict(data["config"])
    models = trainer(cfg.arch).build(cfg)
    for name, model in models.items():
        try:
            model.load_state_dict(data["models"][name])
        except (KeyError, RuntimeError) as e:
            raise CheckpointError(
                f"{path} does not hold a matching {name} network ({e})".split("\n")[0]
            ) from e
    return export(cfg, models, int(data["step"]), data.get("data_counts", {}), out, overwrite)


def release_model(
    arch: str,
    cfg: Any,
    generator: nn.Module,
    generator_kwargs: dict[str, Any],
    provenance: dict[str, Any],
    discriminator: nn.Module | None = None,
    classifier_kwargs: dict[str, Any] | None = None,
    direction: str | None = None,
) -> Any:
    """A FaceModel (faceedit.models) holding copies of ``generator`` and D's attribute classifier head."""
    from faceedit.data.common import TEMPLATES
    from faceedit.models import folder as registry
    from faceedit.training.common import thres_conditioning

    conditioning = thres_conditioning(arch, cfg)
    config = registry.make_config(
        arch,
        generator_kwargs,
        attributes=list(cfg.attrs),
        image_size=cfg.image_size,
        template=cfg.template,
        resize=TEMPLATES[cfg.template].resize,
        conditioning=conditioning,
        classifier_kwargs=classifier_kwargs,
        variant="port",
        direction=direction,
        provenance=provenance,
    )
    model = registry.build(config)
    registry.load_weights(model.generator, generator.state_dict(), "trained generator")
    if discriminator is not None:
        head = registry.ARCHS[arch].classifier_state(discriminator.state_dict())
        registry.load_weights(model.classifier, head, "trained classifier")
    return model
