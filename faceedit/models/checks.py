"""What a model folder must hold beyond its schema: bounded constructor values, weights whose sha256
matches the one recorded in ``config.json``, and finite weights.

Used by ``faceedit.models.folder`` (validate_config, save, load); every failure is phrased as a problem
string or a one-line :class:`CheckpointError` (exit 4).
"""

from __future__ import annotations

import hashlib
import inspect
import math
import re
from pathlib import Path
from typing import Any

import torch

from faceedit.errors import CheckpointError

DIGEST_KEY = "weights_sha256"
IMAGE_SIZE_RANGE = (8, 2048)  # the official models use 128-384 px; a crop beyond 2048 px is a typo
_INT_RANGES: dict[str, tuple[int, int]] = {
    # depths: every down-sampling layer halves the image, 2**12 > the largest image_size
    **dict.fromkeys(("enc_layers", "dec_layers", "n_layers"), (1, 12)),
    **dict.fromkeys(("shortcut_layers", "inject_layers"), (0, 12)),
    **dict.fromkeys(("repeat_num", "n_blocks"), (0, 32)),  # residual blocks / D's stride-2 convs
    **dict.fromkeys(("n_attrs", "attr_dim"), (1, 256)),  # attributes (CelebA has 40)
    # StarGAN: CelebA attributes and RaFD expressions; either part is 0 for a single-dataset model
    **dict.fromkeys(("c_dim", "c2_dim"), (0, 256)),
    **dict.fromkeys(("image_size", "img_size"), IMAGE_SIZE_RANGE),
    **dict.fromkeys(("input_nc", "output_nc"), (1, 4)),
    "stu_kernel_size": (1, 15),
    "one_more_conv": (0, 15),
}
_DEFAULT_INT_RANGE = (1, 8192)  # channel widths (conv_dim, ngf, fc_dim, max_dim...)
_FLOAT_RANGES = {"lrelu_slope": (0.0, 1.0), "bn_eps": (1e-12, 1.0)}
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def is_int(value: Any) -> bool:
    """A JSON integer (``true`` is not one, although Python's bool is an int)."""
    return type(value) is int


def kwargs_problems(cls: type, kwargs: dict, what: str) -> list[str]:
    """Type and range problems of constructor ``kwargs`` for ``cls`` (unknown names are checked elsewhere)."""
    params = inspect.signature(cls.__init__).parameters
    problems = []
    for name, value in kwargs.items():
        if name in params and name != "self":
            problem = _value_problem(name, value, _annotation(params[name].annotation))
            if problem:
                problems.append(f"{what}.{name} = {value!r}: {problem}")
    return problems


def _annotation(annotation: Any) -> str:
    return annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))


def _value_problem(name: str, value: Any, annotation: str) -> str | None:
    kinds = {part.strip() for part in annotation.split("|")}
    if (value is None and "None" in kinds) or (type(value) is bool and "bool" in kinds):
        return None
    if is_int(value) and "int" in kinds:
        low, high = _INT_RANGES.get(name, _DEFAULT_INT_RANGE)
        return None if low <= value <= high else f"must be between {low} and {high}"
    if type(value) in (int, float) and "float" in kinds:
        low_f, high_f = _FLOAT_RANGES.get(name, (-1e6, 1e6))
        ok = math.isfinite(value) and low_f <= value <= high_f
        return None if ok else f"must be a number between {low_f:g} and {high_f:g}"
    if type(value) is str and "str" in kinds:
        return None if 0 < len(value) <= 64 else "must be a short name"
    return f"must be {' or '.join(sorted(kinds))}"


def image_size_problem(value: Any) -> str | None:
    low, high = IMAGE_SIZE_RANGE
    if is_int(value) and low <= value <= high:
        return None
    return f"image_size {value!r} must be an integer between {low} and {high} (pixels)"


def digest_problem(config: dict) -> str | None:
    value = config.get(DIGEST_KEY)
    if value is None or (isinstance(value, str) and _HEX64.match(value)):
        return None
    return f"{DIGEST_KEY} must be 64 lowercase hex digits"


# --------------------------------------------------------------------------------------------------
# weights


def file_sha256(path: Path, chunk: int = 16 << 20) -> str:
    """sha256 of a file, read in big chunks into one buffer (~1.5 GB/s with SHA-NI on an idle core)."""
    digest, buffer = hashlib.sha256(), bytearray(chunk)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buffer):
            digest.update(view[:n])
    return digest.hexdigest()


def check_digest(path: Path, expected: str, actual: str) -> None:
    """A weights file that is not the one the folder was written with is exit 4, never used."""
    if actual != expected:
        raise CheckpointError(
            f"{path} is damaged or was modified: sha256 {actual[:16]}… but config.json records "
            f"{expected[:16]}…",
            "re-import it with `faceedit models import`, re-export it, or re-download it "
            "(`faceedit models download NAME --force`)",
        )


def check_finite(tensors: dict[str, torch.Tensor], where: str, hint: str) -> None:
    """One CheckpointError naming the first tensor holding NaN or infinity (a flat brown face otherwise)."""
    for key, tensor in tensors.items():
        if tensor.is_floating_point() and tensor.numel() and not _finite(tensor):
            raise CheckpointError(f"{where}: {key} holds NaN or infinite values", hint)


def _finite(tensor: torch.Tensor) -> bool:
    # min and max propagate NaN and show +-inf: one pass, no bool temporary (isfinite().all() measured
    # 30x slower on 200 MB, see benchmarks/model_load_hash.py)
    low, high = torch.aminmax(tensor.detach())
    return bool(torch.isfinite(low) & torch.isfinite(high))
