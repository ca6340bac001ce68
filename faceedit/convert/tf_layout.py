"""TensorFlow -> PyTorch tensor layouts: an import plan (constructor kwargs + key rules) and the ops that
turn each TF variable into our tensor (HWIO kernels -> OIHW, dense transposes, U-GAT-IT's NHWC-flattened
FC, rho clipping and smoothing). Plans are made by ``tf_plans``; the rules of each model sit beside it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

log = logging.getLogger("faceedit")


# ------------------------------------------------------------------------------------------ the plan


@dataclass(frozen=True)
class Rule:
    """One state-dict key filled from one TF variable through a layout op."""

    key: str
    tf: str
    op: str  # copy | kernel | dense | fc_nhwc | vec | rho_ada | rho_lin


@dataclass(frozen=True)
class ImportPlan:
    """Everything needed to convert: constructor kwargs and the key map (TF names are full names)."""

    arch: str
    generator_kwargs: dict[str, Any]
    rules: tuple[Rule, ...]
    fc_grid: tuple[int, int, int] | None = None  # (H, W, C) of U-GAT-IT's flattened bottleneck
    smoothing: bool = True

    @property
    def names(self) -> list[str]:
        """TF tensors to read, in first-use order."""
        return list(dict.fromkeys(r.tf for r in self.rules))


def _op_shape(op: str, shape: tuple[int, ...], plan: ImportPlan) -> tuple[int, ...]:
    if op == "kernel":  # conv HWIO -> OIHW; conv-transpose [kh,kw,out,in] -> [in,out,kh,kw]: same permutation
        return (shape[3], shape[2], shape[0], shape[1]) if len(shape) == 4 else shape
    if op in ("dense", "fc_nhwc"):
        return tuple(reversed(shape))
    if op in ("vec", "rho_ada", "rho_lin"):
        return (1, shape[0], 1, 1) if len(shape) == 1 else shape
    return shape


def _op_apply(op: str, value: np.ndarray, plan: ImportPlan) -> np.ndarray:
    if op == "kernel":
        return value.transpose(3, 2, 0, 1)
    if op == "dense":
        return value.T
    if op == "fc_nhwc":  # TF flattens the bottleneck as (h, w, c), the port as (c, h, w)
        h, w, c = plan.fc_grid
        return value.reshape(h, w, c, -1).transpose(3, 2, 0, 1).reshape(value.shape[1], -1)
    if op in ("rho_ada", "rho_lin"):
        rho = np.clip(value, 0.0, 1.0)  # the training constraint; values outside it are clipped by TF too
        if op == "rho_ada" and plan.smoothing:  # taki0112 since 3014f4a: forward uses clip(rho - 0.1, 0, 1)
            rho = np.clip(rho - 0.1, 0.0, 1.0)
        return rho.reshape(1, -1, 1, 1)
    if op == "vec":
        return value.reshape(1, -1, 1, 1)
    return value


def convert(plan: ImportPlan, tensors: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """TF arrays (by name) -> our state dict. Arrays are released as they are used (1 GiB U-GAT-IT FC)."""
    import torch

    uses: dict[str, int] = {}
    for rule in plan.rules:
        uses[rule.tf] = uses.get(rule.tf, 0) + 1
    state, out_of_range = {}, []
    for rule in plan.rules:
        value = tensors[rule.tf]
        if rule.op.startswith("rho") and (value.min() < 0 or value.max() > 1):
            out_of_range.append(rule.tf)  # training clips rho to [0, 1] after every step
        state[rule.key] = torch.from_numpy(
            np.ascontiguousarray(_op_apply(rule.op, value, plan), dtype=np.float32)
        )
        uses[rule.tf] -= 1
        if not uses[rule.tf]:
            del tensors[rule.tf]
    if out_of_range:
        log.warning("rho outside [0, 1] (clipped, as TF's constraint does): %s", ", ".join(out_of_range[:4]))
    _warn_rho(plan, state)
    return state


def _warn_rho(plan: ImportPlan, state: dict[str, torch.Tensor]) -> None:
    if plan.arch == "ugatit" and plan.smoothing:
        saturated = [
            k for k, v in state.items() if k.endswith(".rho") and ".norm" in k and bool((v == 0).all())
        ]
        if saturated:  # the pre-2019-08-14 code stored rho in [0, 0.9] and never subtracted 0.1
            log.info("%d AdaLIN rho vectors are all zero after smoothing", len(saturated))
