"""Building blocks shared by the four architectures, and pure state-dict helpers for key maps.

Only torch is imported here; model files import this module and torch, nothing else.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

StateDict = dict[str, torch.Tensor]

# Wrappers that prefix every key: DataParallel / DistributedDataParallel and torch.compile.
WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def tile(a: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Label vector [N,A] -> [N,A,H,W], constant over the spatial size of ``like`` [N,C,H,W]."""
    n, _, h, w = like.shape
    return a.view(a.size(0), -1, 1, 1).expand(n, a.size(1), h, w)


class InstanceNorm2dPerImage(nn.InstanceNorm2d):
    """``InstanceNorm2d(affine=True, track_running_stats=True)`` that always normalises per image.

    StarGAN's official test code never calls ``eval()``, so the released generators are only known to
    work with per-image statistics. This module keeps the running buffers (same state-dict keys, still
    updated in training mode exactly as before) but ignores them in ``eval()``.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1) -> None:
        super().__init__(num_features, eps=eps, momentum=momentum, affine=True, track_running_stats=True)

    def _apply_instance_norm(self, x: torch.Tensor) -> torch.Tensor:
        # [N,C,H,W] -> [N,C,H,W]. Passing the buffers only while training updates them exactly as
        # nn.InstanceNorm2d does (it never counts num_batches_tracked); eval() leaves them untouched.
        update = self.training
        return F.instance_norm(
            x,
            self.running_mean if update else None,
            self.running_var if update else None,
            self.weight,
            self.bias,
            use_input_stats=True,
            momentum=self.momentum if self.momentum is not None else 0.0,
            eps=self.eps,
        )


def strip_wrapper_prefixes(state: Mapping[str, torch.Tensor]) -> StateDict:
    """Remove leading ``module.`` / ``_orig_mod.`` (in any nesting) from every key."""
    out: StateDict = {}
    for key, value in state.items():
        changed = True
        while changed:
            changed = False
            for prefix in WRAPPER_PREFIXES:
                if key.startswith(prefix):
                    key, changed = key[len(prefix) :], True
        out[key] = value
    return out


def unwrapped_with(state: Mapping[str, torch.Tensor], keys: tuple[str, ...], what: str) -> StateDict:
    """``state`` without wrapper prefixes; KeyMapError naming ``what`` when one of ``keys`` is missing."""
    state = strip_wrapper_prefixes(state)
    missing = [key for key in keys if key not in state]
    if missing:
        raise KeyMapError(f"not {what}: no {missing[0]} among {list(state)[:4]}")
    return state


def judge_to_classifier(d_state: Mapping[str, torch.Tensor], head_key: str, what: str) -> StateDict:
    """A discriminator state dict -> its classifier's (``fc_adv.*`` dropped), checked for ``head_key``."""
    return drop_prefix(unwrapped_with(d_state, (head_key,), what), ("fc_adv.",))


def as_float32(state: Mapping[str, torch.Tensor]) -> StateDict:
    """Floating tensors -> float32 (half/double checkpoints exist); integer buffers unchanged."""
    return {
        k: v.float() if v.is_floating_point() and v.dtype != torch.float32 else v for k, v in state.items()
    }


def fill_batch_counters(state: Mapping[str, torch.Tensor], expected_keys: list[str]) -> StateDict:
    """Add ``num_batches_tracked`` entries the model has but the file lacks (PyTorch 0.4.0 files)."""
    out = dict(state)
    for key in expected_keys:
        if key.endswith("num_batches_tracked") and key not in out:
            out[key] = torch.tensor(0, dtype=torch.long)
    return out


def drop_prefix(state: Mapping[str, torch.Tensor], prefixes: tuple[str, ...]) -> StateDict:
    """The entries whose key does not start with any of ``prefixes`` (e.g. drop a D's adversarial head)."""
    return {k: v for k, v in state.items() if not k.startswith(prefixes)}


def count_indexed(state: Mapping[str, torch.Tensor], head: str, tail: str) -> int:
    """Number of distinct ``<n>`` in keys ``{head}<n>{tail}`` (e.g. ``main.``, ``.main.0.weight``)."""
    found = set()
    for key in state:
        if key.startswith(head) and key.endswith(tail):
            middle = key[len(head) : len(key) - len(tail)]
            if middle.isdigit():
                found.add(int(middle))
    return len(found)


class KeyMapError(ValueError):
    """A checkpoint's keys cannot be mapped onto the official layout (message says which and why)."""


def module_groups(state: Mapping[str, torch.Tensor]) -> dict[str, list[str]]:
    """Keys grouped by owning module (key minus its last component), in the mapping's own order."""
    groups: dict[str, list[str]] = {}
    for key in state:
        owner, _, _ = key.rpartition(".")
        groups.setdefault(owner, []).append(key)
    return groups


def is_norm_group(state: Mapping[str, torch.Tensor], keys: list[str]) -> bool:
    """True for a normalisation layer (1-D weight), False for a conv/linear layer."""
    weights = [k for k in keys if k.endswith(".weight")]
    return bool(weights) and state[weights[0]].dim() == 1
