"""Typed training configs, one frozen dataclass per model with the official recipe as defaults.

``load(arch, recipe, overrides)`` layers defaults < recipe TOML < command-line overrides, checks every
field once and raises one UsageError listing every problem. Nothing below the CLI sees raw flags.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import tomllib
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from faceedit.errors import UsageError
from faceedit.specs import (
    ATTGAN_ATTRIBUTES,
    CELEBA_ATTRIBUTES,
    STARGAN_ATTRIBUTES,
    STGAN_PORT_ATTRIBUTES,
    TEMPLATES,
    arch_spec,
)
from faceedit.training import limits

AMP_MODES = ("off", "bf16", "fp16")
SPLITS = ("official", "celeba", "all")
CELEBA_TEMPLATES = tuple(name for name, t in TEMPLATES.items() if t.crop is not None)
# Fields that may change when a run is resumed; everything else must match the checkpoint.
RESUMABLE = frozenset(
    {
        "data",
        "rafd",
        "steps",
        "epochs",
        "device",
        "amp",
        "channels_last",
        "compile",
        "workers",
        "log_every",
        "sample_every",
        "checkpoint_every",
        "keep_checkpoints",
    }
)


@dataclass(frozen=True)
class TrainConfig:
    """Fields every recipe has. One step = one batch = one iteration of the official loop."""

    arch: ClassVar[str] = ""
    data: str = ""  # dataset folder (CelebA layout, or trainA/trainB for U-GAT-IT)
    steps: int | None = None  # iterations to train; None = `epochs` passes over the train split
    epochs: int | None = None  # used only when `steps` is None (AttGAN's recipe counts epochs)
    batch_size: int = 16  # per process; the global batch under torchrun is batch_size x processes
    lr_g: float = 1e-4  # generator learning rate (--lr sets both)
    lr_d: float = 1e-4  # discriminator learning rate
    beta1: float = 0.5  # Adam betas, as all four official recipes
    beta2: float = 0.999
    image_size: int = 128  # square training resolution in pixels
    attrs: tuple[str, ...] = ()  # CelebA attributes in training order (the order is part of the weights)
    split: str = "official"  # official (the model's own code) | celeba (list_eval_partition.txt) | all
    template: str = arch_spec("stargan").template  # crop of the aligned photo (specs.TEMPLATES names)
    flip: bool = True  # random horizontal flips where the official code flips
    seed: int = 0  # seeds weights, batch order, augmentation and every random draw of a step
    device: str = "auto"  # auto | cpu | cuda | cuda:N (torchrun: each process takes cuda:LOCAL_RANK)
    amp: str = "off"  # mixed precision off | bf16 | fp16 (fp16 adds a GradScaler); meant for CUDA
    channels_last: bool = False  # NHWC memory format on CUDA (faster convolutions with AMP)
    compile: bool = False  # torch.compile the networks whose losses need no double backward
    workers: int = -1  # decoding processes per training process; -1 = automatic
    log_every: int = 10  # steps between log.jsonl records
    sample_every: int = 1000  # steps between sample grids (0 = never)
    checkpoint_every: int = 5000  # steps between checkpoints (0 = only at the end or on Ctrl-C)
    keep_checkpoints: int = 3  # newest checkpoints kept on disk
    n_samples: int = 8  # images in the fixed sample batch

    def problems(self) -> list[str]:
        """Everything wrong with this config, phrased for the user (empty when valid)."""
        p = []
        positive = {
            "batch_size": self.batch_size,
            "image_size": self.image_size,
            "log_every": self.log_every,
            "keep_checkpoints": self.keep_checkpoints,
            "n_samples": self.n_samples,
        }
        p += [f"{k} = {v}: must be at least 1" for k, v in positive.items() if v < 1]
        p += [
            f"{k} = {v}: must be 0 or more"
            for k, v in {"sample_every": self.sample_every, "checkpoint_every": self.checkpoint_every}.items()
            if v < 0
        ]
        if self.steps is None and self.epochs is None:
            p.append("steps and epochs are both unset: give --steps")
        for k in ("steps", "epochs"):
            if getattr(self, k) is not None and getattr(self, k) < 1:
                p.append(f"{k} = {getattr(self, k)}: must be at least 1")
        for k in ("lr_g", "lr_d"):
            if not (math.isfinite(getattr(self, k)) and getattr(self, k) > 0):
                p.append(f"{k} = {getattr(self, k)}: must be a positive number")
        if not (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1):
            p.append(f"beta1, beta2 = {self.beta1}, {self.beta2}: must be in [0, 1)")
        if self.amp not in AMP_MODES:
            p.append(f"amp = {self.amp!r}: must be one of {', '.join(AMP_MODES)}")
        if self.split not in SPLITS:
            p.append(f"split = {self.split!r}: must be one of {', '.join(SPLITS)}")
        if self.workers < -1:
            p.append(f"workers = {self.workers}: must be -1 (automatic) or 0 or more")
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            p.append(f"device = {self.device!r}: must be auto, cpu, cuda or cuda:N")
        return p + self._attribute_problems() + self.model_problems()

    def _attribute_problems(self) -> list[str]:
        p = []
        unknown = [a for a in self.attrs if a not in CELEBA_ATTRIBUTES]
        for name in unknown:
            close = difflib.get_close_matches(name, CELEBA_ATTRIBUTES, n=1)
            p.append(
                f"attribute {name!r} is not a CelebA attribute"
                + (f" (did you mean {close[0]}?)" if close else "")
            )
        if len(set(self.attrs)) != len(self.attrs):
            p.append("attrs lists an attribute twice")
        if not self.attrs:
            p.append("attrs is empty: this model edits attributes; give --attrs")
        if self.template not in CELEBA_TEMPLATES:
            p.append(f"template = {self.template!r}: must be one of {', '.join(CELEBA_TEMPLATES)}")
        return p

    def model_problems(self) -> list[str]:
        """Checks of the model-specific fields (overridden per model)."""
        return []


def _multiple(name: str, value: int, factor: int, why: str) -> list[str]:
    return [] if value % factor == 0 else [f"{name} = {value}: must be a multiple of {factor} ({why})"]


STARGAN_DATASETS = ("celeba", "rafd", "both")


@dataclass(frozen=True)
class StarGANConfig(TrainConfig):
    """yunjey/stargan main.py defaults (CelebA, 128 px); ``dataset`` rafd / both as ``--dataset RaFD|Both``
    (c2_dim = RaFD's 8 expressions, rafd_crop_size 256, the same iterations and optimiser)."""

    arch: ClassVar[str] = "stargan"
    steps: int | None = 200_000  # num_iters
    attrs: tuple[str, ...] = STARGAN_ATTRIBUTES  # selected_attrs (() for dataset = "rafd")
    dataset: str = "celeba"  # celeba | rafd (data = the RaFD folder) | both (data = CelebA, rafd = RaFD)
    rafd: str = ""  # RaFD folder of dataset = "both" (a folder per expression, or RaFD's own file names)
    rafd_crop: int = 256  # rafd_crop_size: CenterCrop of each RaFD image before the resize
    g_conv_dim: int = 64
    d_conv_dim: int = 64
    g_repeat_num: int = 6  # residual blocks in G
    d_repeat_num: int = 6  # stride-2 convolutions in D
    lambda_cls: float = 1.0  # domain classification, D on real and G on fake
    lambda_rec: float = 10.0  # cycle reconstruction L1
    lambda_gp: float = 10.0
    n_critic: int = 5  # D every step, G every n_critic-th step on the same batch
    lr_decay_iters: int = (
        100_000  # num_iters_decay: lr -= lr0 / this every lr_update_step after num_iters - this
    )
    lr_update_step: int = 1000

    def model_problems(self) -> list[str]:
        p = _multiple("image_size", self.image_size, 2**self.d_repeat_num, "D halves it d_repeat_num times")
        if self.dataset not in STARGAN_DATASETS:
            p.append(f"dataset = {self.dataset!r}: must be one of {', '.join(STARGAN_DATASETS)}")
        if self.dataset != "both" and self.rafd:
            p.append(f"rafd = {self.rafd!r} is only read with dataset = 'both' (RaFD alone: --data DIR)")
        if self.rafd_crop < 1:
            p.append(f"rafd_crop = {self.rafd_crop}: must be at least 1")
        return p

    def _attribute_problems(self) -> list[str]:
        if self.dataset != "rafd":
            return super()._attribute_problems()
        if self.attrs:
            return [
                "attrs: a RaFD-only StarGAN has no CelebA attributes; drop --attrs (or use --dataset both)"
            ]
        return (
            [] if self.template in CELEBA_TEMPLATES else [f"template = {self.template!r}: not a CelebA crop"]
        )


@dataclass(frozen=True)
class AttGANConfig(TrainConfig):
    """elvisyjlin/AttGAN-PyTorch train.py defaults (the port endorsed by the official README)."""

    arch: ClassVar[str] = "attgan"
    steps: int | None = None
    epochs: int | None = 200
    batch_size: int = 32
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    attrs: tuple[str, ...] = ATTGAN_ATTRIBUTES
    template: str = arch_spec("attgan").template
    flip: bool = False  # the port does not flip
    enc_dim: int = 64
    enc_layers: int = 5
    enc_norm: str = "batchnorm"
    enc_acti: str = "lrelu"
    dec_dim: int = 64
    dec_layers: int = 5
    dec_norm: str = "batchnorm"
    dec_acti: str = "relu"
    dis_dim: int = 64
    dis_norm: str = "instancenorm"
    dis_acti: str = "lrelu"
    dis_fc_dim: int = 1024
    dis_fc_norm: str = "none"
    dis_fc_acti: str = "relu"
    dis_layers: int = 5
    shortcut_layers: int = 1
    inject_layers: int = 0
    lambda_rec: float = 100.0  # lambda_1
    lambda_cls_g: float = 10.0  # lambda_2
    lambda_cls_d: float = 1.0  # lambda_3
    lambda_gp: float = 10.0
    n_d: int = 5  # steps with (step+1) % (n_d+1) != 0 train D, the others G (each on its own batch)
    thres_int: float = 0.5  # labels fed as ±thres_int
    b_distribution: str = "none"  # none | uniform | truncated_normal scaling of the target labels
    lr_decay_epochs: int = 100  # lr = lr0 / 10 ** (epoch // lr_decay_epochs)

    def model_problems(self) -> list[str]:
        p = _multiple(
            "image_size", self.image_size, 2**self.enc_layers, "the encoder halves it enc_layers times"
        )
        if self.enc_layers != self.dec_layers or self.enc_dim != self.dec_dim:
            p.append("enc_layers/enc_dim must equal dec_layers/dec_dim (the official generator assumes it)")
        if self.b_distribution not in ("none", "uniform", "truncated_normal"):
            p.append(f"b_distribution = {self.b_distribution!r}: must be none, uniform or truncated_normal")
        return p


@dataclass(frozen=True)
class STGANConfig(TrainConfig):
    """bluestyle97/STGAN-pytorch configs/train_stgan.yaml defaults."""

    arch: ClassVar[str] = "stgan"
    steps: int | None = 1_000_000  # max_iters
    batch_size: int = 32
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    attrs: tuple[str, ...] = STGAN_PORT_ATTRIBUTES
    g_conv_dim: int = 64
    d_conv_dim: int = 64
    d_fc_dim: int = 1024
    g_layers: int = 5
    d_layers: int = 5
    shortcut_layers: int = 3  # the yaml's value (the class default is 2)
    stu_kernel_size: int = 3
    use_stu: bool = True
    one_more_conv: bool = True
    lambda_cls_d: float = 1.0  # lambda1
    lambda_cls_g: float = 10.0  # lambda2
    lambda_rec: float = 100.0  # lambda3
    lambda_gp: float = 10.0
    n_critic: int = 5  # D every step, G every n_critic-th step on the same batch
    thres_int: float = 0.5  # training differences have random magnitudes up to 2 * thres_int
    lr_decay_step: int = 800_000  # StepLR step_size (stepped every iteration)
    lr_decay_gamma: float = 0.1

    def model_problems(self) -> list[str]:
        p = _multiple("image_size", self.image_size, 2**self.d_layers, "D halves it d_layers times")
        if not 0 <= self.shortcut_layers <= self.g_layers - 1:
            p.append(f"shortcut_layers = {self.shortcut_layers}: must be between 0 and g_layers - 1")
        return p


@dataclass(frozen=True)
class UGATITConfig(TrainConfig):
    """znxlwm/UGATIT-pytorch main.py defaults (selfie2anime, 256 px)."""

    arch: ClassVar[str] = "ugatit"
    steps: int | None = 1_000_000  # iteration
    batch_size: int = 1
    image_size: int = 256
    attrs: tuple[str, ...] = ()
    template: str = arch_spec("ugatit").template  # the whole picture is resized (no face crop)
    weight_decay: float = 1e-4  # Adam weight decay of G and D
    ch: int = 64  # ngf/ndf
    n_res: int = 4  # residual blocks
    light: bool = False  # light model: global-average-pooled FC input (fits small GPUs)
    dis_global_layers: int = 7  # disGA/disGB n_layers
    dis_local_layers: int = 5  # disLA/disLB n_layers
    adv_weight: float = 1.0
    cycle_weight: float = 10.0
    identity_weight: float = 10.0
    cam_weight: float = 1000.0
    decay_flag: bool = True  # linear lr decay to 0 over the second half of the steps

    def _attribute_problems(self) -> list[str]:
        p = [] if not self.attrs else ["attrs: U-GAT-IT translates whole images and takes no attributes"]
        return p + (
            [] if self.template == "selfie" else [f"template = {self.template!r}: U-GAT-IT uses 'selfie'"]
        )

    def model_problems(self) -> list[str]:
        p = _multiple("image_size", self.image_size, 4, "G down-samples twice")
        if self.weight_decay < 0:
            p.append(f"weight_decay = {self.weight_decay}: must be 0 or more")
        return p


CONFIGS: dict[str, type[TrainConfig]] = {
    c.arch: c for c in (StarGANConfig, AttGANConfig, STGANConfig, UGATITConfig)
}


def field_names(arch: str) -> list[str]:
    """Every settable field of ``arch``'s config (recipe keys and --set names)."""
    return [f.name for f in dataclasses.fields(CONFIGS[arch])]


def load(
    arch: str,
    recipe: Path | None = None,
    overrides: dict[str, Any] | None = None,
    base: dict[str, Any] | None = None,
) -> TrainConfig:
    """Defaults (or ``base``, a saved config) < ``recipe`` TOML < ``overrides``.

    Raises one UsageError naming every problem (unknown keys, wrong types, invalid values).
    """
    if arch not in CONFIGS:
        raise UsageError(f"unknown model {arch!r}", f"choose one of {', '.join(CONFIGS)}")
    values: dict[str, Any] = dict(base or {})
    problems: list[str] = []
    if recipe is not None:
        values.update(read_recipe(Path(recipe), arch, problems))
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    cfg = _build(CONFIGS[arch], values, problems)
    problems += cfg.problems()
    problems += limits.problems(cfg, problems)  # ranges: no zero divisors, no 100000-px images
    if problems:
        raise UsageError(
            f"the {arch} training config is not valid: " + "; ".join(problems),
            "fix these in the recipe or the options (--dry-run shows the resolved config)",
        )
    return cfg


def read_recipe(path: Path, arch: str, problems: list[str]) -> dict[str, Any]:
    """Top-level keys of a recipe TOML (an ``arch`` key, if present, must name this model)."""
    try:
        values = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        problems.append(f"recipe {path} does not exist")
        return {}
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        problems.append(f"recipe {path} cannot be read: {e}")
        return {}
    recipe_arch = values.pop("arch", arch)
    if recipe_arch != arch:
        problems.append(f"recipe {path} is for {recipe_arch!r}, not {arch!r}")
    return values


def _build(cls: type[TrainConfig], values: dict[str, Any], problems: list[str]) -> TrainConfig:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in values.items():
        if key not in names:
            close = difflib.get_close_matches(key, names, n=1)
            problems.append(f"unknown setting {key!r}" + (f" (did you mean {close[0]}?)" if close else ""))
            continue
        try:
            kwargs[key] = coerce(value, hints[key])
        except (TypeError, ValueError):
            problems.append(f"{key} = {value!r}: expected {_type_name(hints[key])}")
    return cls(**kwargs)  # fields that failed to convert keep their defaults; their problem is listed


def coerce(value: Any, kind: Any) -> Any:
    """A TOML value or a command-line string -> the field's type (ValueError/TypeError if impossible)."""
    args = typing.get_args(kind)
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "")):
            return None
        return coerce(value, next(a for a in args if a is not type(None)))
    if kind is bool:
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        if not isinstance(value, bool):
            raise TypeError
        return value
    if typing.get_origin(kind) is tuple:
        items = [v.strip() for v in value.split(",") if v.strip()] if isinstance(value, str) else value
        if not isinstance(items, list | tuple) or not all(isinstance(v, str) for v in items):
            raise TypeError
        return tuple(items)
    if kind is int and (isinstance(value, bool) or (isinstance(value, float) and not value.is_integer())):
        raise TypeError
    if kind in (int, float) and isinstance(value, str | int | float):
        return kind(value)
    if kind is str and isinstance(value, str):
        return value
    raise TypeError


def _type_name(kind: Any) -> str:
    return {int: "an integer", float: "a number", bool: "true or false", str: "text"}.get(
        kind, "a list of names" if typing.get_origin(kind) is tuple else "an integer or none"
    )


def to_dict(cfg: TrainConfig) -> dict[str, Any]:
    """Plain JSON/TOML-able dict (tuples become lists), with ``arch`` first."""
    values = {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(cfg).items()}
    return {"arch": cfg.arch, **values}


def from_dict(values: dict[str, Any]) -> TrainConfig:
    """A config saved by :func:`to_dict` (checkpoints, config.toml)."""
    values = dict(values)
    return load(values.pop("arch"), base=values)


def to_toml(cfg: TrainConfig) -> str:
    """The config as a recipe file (flat keys; TOML has no null, so ``None`` is written "none")."""
    lines = [f"# faceedit training recipe ({cfg.arch}); reuse with: faceedit train {cfg.arch} --config FILE"]
    lines += [f"{key} = {_toml_value(value)}" for key, value in to_dict(cfg).items()]
    return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    if value is None:
        return '"none"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(value)
