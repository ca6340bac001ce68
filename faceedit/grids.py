"""Comparison grids and intensity sweeps: the official per-attribute test grids (StarGAN create_labels,
AttGAN test.py, STGAN test()) and the slider/sweep strips, as lists of EditSpecs or conditioning stacks.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from faceedit.attributes import Conditioning, EditSpec, _check_number, encode
from faceedit.errors import UsageError


def grid_specs(
    attributes: Sequence[str], intensity: float = 1.0, *, reconstruction: bool = True
) -> list[EditSpec]:
    """The official comparison grid: (the reconstruction, then) one toggle per attribute, as test.py."""
    specs = [EditSpec(toggle=(name,), intensity=intensity) for name in attributes]
    return [EditSpec(intensity=intensity), *specs] if reconstruction else specs


def grid(
    conditioning: Mapping[str, Any] | Conditioning,
    attributes: Sequence[str],
    source: np.ndarray,
    intensity: float = 1.0,
    *,
    reconstruction: bool = True,
) -> tuple[list[str], np.ndarray]:
    """Column labels and conditioning [K,N,A] of the official per-attribute grid (K = A (+1)).

    StarGAN: Solver.create_labels; AttGAN: test.py (intensity = test_int); STGAN port: test()'s
    difference vectors (0.5 gives its training-time sample grid).
    """
    specs = grid_specs(attributes, intensity, reconstruction=reconstruction)
    conds = [encode(conditioning, attributes, source, spec) for spec in specs]
    if not conds or any(c is None for c in conds):
        raise UsageError("this model has no attributes: there is no attribute grid")
    labels = ["reconstruction"] * reconstruction + list(attributes)
    return labels, np.stack(conds)


def sweep(spec: EditSpec, values: Iterable[float]) -> list[EditSpec]:
    """One EditSpec per intensity (an intensity strip; with ``slide`` the official slider)."""
    return [spec.with_intensity(float(v)) for v in values]


def parse_sweep(text: str) -> tuple[float, ...]:
    """``"-1:1:5"`` (start:stop:steps, ends included, as test_slide.py) or ``"0.25,0.5,1"``."""
    try:
        if ":" in text:
            start, stop, steps = text.split(":")
            ends = (float(start), float(stop))
            if int(steps) < 2 or not all(map(math.isfinite, ends)):
                raise ValueError
            values = tuple(float(v) for v in np.linspace(*ends, int(steps)))
        else:
            values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise UsageError(
            f"cannot read the sweep {text!r}", "write START:STOP:STEPS (STEPS >= 2) or V1,V2,..."
        ) from None
    for value in values:
        _check_number(f"sweep value in {text!r}", value)
    if not values:
        raise UsageError(f"the sweep {text!r} has no values", "write START:STOP:STEPS or V1,V2,...")
    return values
