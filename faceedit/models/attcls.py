"""The CelebA attribute classifier of csmliu/STGAN ``att_classification`` (= LynnHo/AttGAN-Tensorflow's),
which the STGAN paper uses to score attribute editing; and its TF key rules (``classifier/Conv*``, ...).

Facts: shared/fixtures/tf/README.md "attcls_tiny/". A model folder of arch ``attcls`` has no generator
(the identity fills the slot) and the classifier predicts all 40 CelebA attributes in file order.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from faceedit.models.layers import KeyMapError

UPSTREAM = "csmliu/STGAN att_classification (LynnHo/AttGAN-Tensorflow classifier)"
SCOPE = "classifier/"
N_CONVS = 10
# The model folder always holds a generator; a classifier alone fills the slot with the identity.
Generator = nn.Identity


def widths(dim: int) -> list[int]:
    """Output channels of the ten convolutions: dim/2, dim/2, dim, dim, 2dim, 2dim, 4dim, 4dim, 8dim, 8dim."""
    return [max(dim // 2, 1) if i < 2 else dim * 2 ** (i // 2 - 1) for i in range(N_CONVS)]


class Classifier(nn.Module):
    """``[N,3,S,S]`` RGB in [-1, 1] -> ``[N,att_dim]`` logits (sigmoid > 0.5 = present).

    Ten 3x3 conv (no bias) + BatchNorm + ReLU, a 2x2 max-pool after every second one, flatten in NHWC
    order (as TF did, so the FC weights keep TF's row order), FC ``16*dim`` + ReLU, FC ``att_dim``.
    """

    def __init__(self, dim: int = 32, att_dim: int = 40, img_size: int = 128, bn_eps: float = 1e-5) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        n_in = 3
        for i, n_out in enumerate(widths(dim)):
            layers += [nn.Conv2d(n_in, n_out, 3, 1, 1, bias=False), nn.BatchNorm2d(n_out, eps=bn_eps)]
            layers.append(nn.ReLU())
            if i % 2 == 1:
                layers.append(nn.MaxPool2d(2, 2))
            n_in = n_out
        self.features = nn.Sequential(*layers)
        side = img_size // 2 ** (N_CONVS // 2)
        self.fc = nn.Linear(side * side * n_in, 16 * dim)
        self.logits = nn.Linear(16 * dim, att_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(x).permute(0, 2, 3, 1).flatten(1)  # NHWC flatten: TF's order
        return self.logits(torch.relu(self.fc(h)))


# ------------------------------------------------------------------------------------ TF key rules


def _conv_scope(i: int) -> str:
    return f"{SCOPE}Conv" + (f"_{i}" if i else "")


def _feature_index(i: int) -> int:
    """Position of conv ``i`` in ``features``: 3 modules per conv plus a pool after every odd one."""
    return 3 * i + i // 2


def tf_rules() -> dict[str, tuple[str, str]]:
    """Our key -> (TF variable, op); op ``kernel`` (HWIO -> OIHW), ``dense`` (transpose) or ``copy``.

    Adam slots, ``beta*_power`` and ``counter/counter`` have no rule: they are training state.
    """
    rules: dict[str, tuple[str, str]] = {}
    for i in range(N_CONVS):
        tf, k = _conv_scope(i), _feature_index(i)
        rules[f"features.{k}.weight"] = (f"{tf}/weights", "kernel")
        for ours, theirs in (("weight", "gamma"), ("bias", "beta")):
            rules[f"features.{k + 1}.{ours}"] = (f"{tf}/BatchNorm/{theirs}", "copy")
        rules[f"features.{k + 1}.running_mean"] = (f"{tf}/BatchNorm/moving_mean", "copy")
        rules[f"features.{k + 1}.running_var"] = (f"{tf}/BatchNorm/moving_variance", "copy")
    for ours, scope in (("fc", "flatten_fully_connected"), ("logits", "flatten_fully_connected_1")):
        rules[f"{ours}.weight"] = (f"{SCOPE}{scope}/fully_connected/weights", "dense")
        rules[f"{ours}.bias"] = (f"{SCOPE}{scope}/fully_connected/biases", "copy")
    return rules


def tf_kwargs(shapes: Mapping[str, tuple[int, ...]]) -> dict[str, int]:
    """Constructor kwargs from TF shapes: ``dim`` from the first FC's width, ``img_size`` from its input."""
    rules = tf_rules()
    missing = [tf for tf, _ in rules.values() if tf not in shapes]
    if missing:
        raise KeyMapError(f"not the att_classification classifier: missing {', '.join(missing[:3])}")
    fc_in, fc_out = shapes[rules["fc.weight"][0]]
    dim = fc_out // 16
    last = shapes[rules[f"features.{_feature_index(N_CONVS - 1)}.weight"][0]][3]
    side = round((fc_in / max(last, 1)) ** 0.5)
    if dim < 1 or fc_out % 16 or last != 8 * dim or side * side * last != fc_in:
        raise KeyMapError(
            f"classifier shapes do not fit the official graph (fc {fc_in}x{fc_out}, last {last})"
        )
    return {
        "dim": dim,
        "att_dim": shapes[rules["logits.weight"][0]][1],
        "img_size": side * 2 ** (N_CONVS // 2),
    }


def tf_state(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """TF variables (by name, as tensors) -> our state dict (float32, contiguous)."""
    state = {}
    for key, (tf, op) in tf_rules().items():
        value = tensors[tf].float()
        if op == "kernel":
            value = value.permute(3, 2, 0, 1)
        elif op == "dense":
            value = value.t()
        state[key] = value.contiguous()
    return state
