"""Ranges of the numeric training settings, checked with the rest of the config (issue 10).

Without them ``n_critic = 0`` or ``lr_update_step = 0`` divided by zero mid-run, a negative width
crashed when the networks were built and ``--image-size 100000`` tried to allocate it: each is now a
line of the config's one UsageError (exit 2), before anything is built.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

IMAGE_SIZE = (8, 2048)  # the same bounds as a model folder's image_size (faceedit.models.checks)
_EXACT: dict[str, tuple[float, float]] = {
    "image_size": IMAGE_SIZE,
    "batch_size": (1, 4096),
    "n_samples": (1, 64),
    "stu_kernel_size": (1, 15),
    "thres_int": (1e-6, 10.0),
    "lr_decay_gamma": (1e-6, 1.0),
}
# (name ending, range): widths, depths, divisors of the step counter, loss weights
_SUFFIX: tuple[tuple[str, tuple[float, float]], ...] = (
    ("_dim", (1, 8192)),
    ("shortcut_layers", (0, 32)),
    ("inject_layers", (0, 32)),
    ("_layers", (1, 32)),
    ("repeat_num", (0, 32)),
    ("n_critic", (1, 1000)),
    ("n_d", (1, 1000)),
    ("lr_update_step", (1, 10**9)),
    ("lr_decay_iters", (1, 10**9)),
    ("lr_decay_epochs", (1, 10**9)),
    ("lr_decay_step", (1, 10**9)),
)
_PREFIX: tuple[tuple[str, tuple[float, float]], ...] = (
    ("lambda_", (0.0, 1e6)),
    ("ch", (1, 8192)),
    ("n_res", (0, 32)),
)


def value_range(name: str) -> tuple[float, float] | None:
    """The allowed [low, high] of a numeric setting, or None when it has no range here."""
    if name in _EXACT:
        return _EXACT[name]
    for suffix, bounds in _SUFFIX:
        if name.endswith(suffix):
            return bounds
    for prefix, bounds in _PREFIX:
        if name == prefix or (prefix.endswith("_") and name.startswith(prefix)):
            return bounds
    if name.endswith("_weight") or name == "weight_decay":
        return (0.0, 1e6)
    return None


def problems(cfg: Any, already: list[str]) -> list[str]:
    """One line per numeric field of ``cfg`` outside its range (fields ``already`` reports are skipped)."""
    flagged = {line.split(" ", 1)[0] for line in already}
    found = []
    for field in dataclasses.fields(cfg):
        value, bounds = getattr(cfg, field.name), value_range(field.name)
        if bounds is None or field.name in flagged or isinstance(value, bool) or value is None:
            continue
        if not isinstance(value, int | float):
            continue
        low, high = bounds
        if not (math.isfinite(value) and low <= value <= high):
            found.append(f"{field.name} = {value}: must be between {low:g} and {high:g}")
    return found
