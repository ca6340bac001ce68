"""StarGAN (yunjey/stargan @ 94dd002): generator, discriminator, attribute classifier, official key maps.

State-dict keys are the official ones (``main.N...``, ``conv1``, ``conv2``). The generator normalises
with per-image statistics in ``eval()`` too, because the official test code runs it in training mode.
Label layouts (``c_dim`` CelebA attributes, ``c2_dim`` RaFD expressions): CelebA ``[c]``, RaFD
``[c2]``, both (``main.py --dataset Both``) ``[c, c2, mask(2)]`` where the mask says which part is valid.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from faceedit.models.layers import (
    InstanceNorm2dPerImage,
    KeyMapError,
    StateDict,
    count_indexed,
    drop_prefix,
    is_norm_group,
    module_groups,
    strip_wrapper_prefixes,
    tile,
)

UPSTREAM = "yunjey/stargan@94dd002"


class ResidualBlock(nn.Module):
    """Conv3-IN-ReLU-Conv3-IN with an identity shortcut and no activation after the sum."""

    def __init__(self, dim_in: int, dim_out: int) -> None:
        super().__init__()
        self.main = nn.Sequential(
            nn.Conv2d(dim_in, dim_out, 3, 1, 1, bias=False),
            InstanceNorm2dPerImage(dim_out),
            nn.ReLU(inplace=True),
            nn.Conv2d(dim_out, dim_out, 3, 1, 1, bias=False),
            InstanceNorm2dPerImage(dim_out),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.main(x)


def label_channels(c_dim: int, c2_dim: int = 0) -> int:
    """Width of G's label input: c_dim (CelebA), c2_dim (RaFD) or c_dim + c2_dim + 2 (both, the mask)."""
    return c_dim + c2_dim + (2 if c_dim and c2_dim else 0)


class Generator(nn.Module):
    """G(x, c): image [N,3,H,W] in [-1,1], labels [N,label_channels] -> image [N,3,H,W] (H, W multiples of 4).

    ``c2_dim`` > 0 adds RaFD's expression one-hot (the official ``c_dim`` of a RaFD model is our c2_dim).
    """

    def __init__(self, conv_dim: int = 64, c_dim: int = 5, repeat_num: int = 6, c2_dim: int = 0) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.Conv2d(3 + label_channels(c_dim, c2_dim), conv_dim, 7, 1, 3, bias=False),
            InstanceNorm2dPerImage(conv_dim),
            nn.ReLU(inplace=True),
        ]
        dim = conv_dim
        for _ in range(2):
            layers += [
                nn.Conv2d(dim, dim * 2, 4, 2, 1, bias=False),
                InstanceNorm2dPerImage(dim * 2),
                nn.ReLU(True),
            ]
            dim *= 2
        layers += [ResidualBlock(dim, dim) for _ in range(repeat_num)]
        for _ in range(2):
            layers += [
                nn.ConvTranspose2d(dim, dim // 2, 4, 2, 1, bias=False),
                InstanceNorm2dPerImage(dim // 2),
                nn.ReLU(inplace=True),
            ]
            dim //= 2
        layers += [nn.Conv2d(dim, 3, 7, 1, 3, bias=False), nn.Tanh()]
        self.main = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        # Labels are tiled and concatenated after the 3 image channels, only at the input.
        return self.main(torch.cat([x, tile(c.to(x.dtype), x)], dim=1))


def _trunk(conv_dim: int, repeat_num: int) -> tuple[nn.Sequential, int]:
    layers: list[nn.Module] = [nn.Conv2d(3, conv_dim, 4, 2, 1), nn.LeakyReLU(0.01)]
    dim = conv_dim
    for _ in range(1, repeat_num):
        layers += [nn.Conv2d(dim, dim * 2, 4, 2, 1), nn.LeakyReLU(0.01)]
        dim *= 2
    return nn.Sequential(*layers), dim


def _cls_kernel(image_size: int, repeat_num: int) -> int:
    kernel = image_size // 2**repeat_num
    if kernel < 1 or kernel * 2**repeat_num != image_size:
        raise ValueError(f"image_size {image_size} is not a multiple of 2**repeat_num ({2**repeat_num})")
    return kernel


class Discriminator(nn.Module):
    """D(x) -> (PatchGAN logits [N,1,h,w], class logits [N,c_dim + c2_dim]); no normalisation.

    Class logits in the official order: CelebA attributes first, then the RaFD expressions.
    """

    def __init__(
        self, image_size: int = 128, conv_dim: int = 64, c_dim: int = 5, repeat_num: int = 6, c2_dim: int = 0
    ) -> None:
        super().__init__()
        self.main, dim = _trunk(conv_dim, repeat_num)
        self.conv1 = nn.Conv2d(dim, 1, 3, 1, 1, bias=False)
        self.conv2 = nn.Conv2d(dim, c_dim + c2_dim, _cls_kernel(image_size, repeat_num), bias=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.main(x)
        out_cls = self.conv2(h)
        return self.conv1(h), out_cls.view(out_cls.size(0), out_cls.size(1))


class Classifier(nn.Module):
    """D's trunk + classification head (``conv2``): images [N,3,S,S] in [-1,1] -> logits [N,c_dim + c2_dim]
    (CelebA attribute logits, then RaFD expression logits: softmax over the last c2_dim)."""

    def __init__(
        self, image_size: int = 128, conv_dim: int = 64, c_dim: int = 5, repeat_num: int = 6, c2_dim: int = 0
    ) -> None:
        super().__init__()
        self.main, dim = _trunk(conv_dim, repeat_num)
        self.conv2 = nn.Conv2d(dim, c_dim + c2_dim, _cls_kernel(image_size, repeat_num), bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(self.main(x))
        return out.view(out.size(0), out.size(1))


# --------------------------------------------------------------------------------------------------
# Key maps (pure functions: official or hub layouts -> our keys, which are the official ones)


def classifier_state(d_state: Mapping[str, torch.Tensor]) -> StateDict:
    """Discriminator state dict -> Classifier state dict (the adversarial head ``conv1`` dropped)."""
    return drop_prefix(strip_wrapper_prefixes(d_state), ("conv1.",))


def generator_state(state: Mapping[str, torch.Tensor]) -> StateDict:
    """A StarGAN generator state dict in any known layout -> the official ``main.N`` layout.

    Accepted: the official bare state dict, and the named layout of the StarGAN copies on the
    Hugging Face hub (goodfellowliu/StarGAN-PyTorch: ``first_layer``, ``down_sampling``, ``trunk``,
    ``up_sampling``, ``last_layer``; see :func:`_from_named_blocks`).
    """
    state = strip_wrapper_prefixes(state)
    if "conv1.weight" in state:
        raise KeyMapError("this is a StarGAN discriminator (it has conv1/conv2 heads), not a generator")
    tops = {key.split(".", 1)[0] for key in state}
    if tops == {"main"}:
        return dict(state)
    if tops and tops <= set(NAMED_BLOCKS):
        return _from_named_blocks(state)
    raise KeyMapError(f"not a StarGAN generator: top-level keys {sorted(tops)[:6]}, expected main.*")


# Layer order of the hub copy, block by block. ASSUMPTION (names not seen in our reference material):
# each block holds the official layers in the official order, conv/ConvT layers carrying only `weight`
# and affine tracked InstanceNorms carrying weight/bias/running_mean/running_var(/num_batches_tracked).
# The sub-module names inside a block are therefore not relied on: conv layers and norm layers are
# matched separately, each in the order they appear in the file (= module registration order), and
# every tensor's shape is then checked by the strict load.
NAMED_BLOCKS = ("first_layer", "down_sampling", "trunk", "up_sampling", "last_layer")


def _official_layers(repeat_num: int) -> dict[str, list[str]]:
    R = repeat_num
    return {
        "first_layer": ["main.0", "main.1"],
        "down_sampling": ["main.3", "main.4", "main.6", "main.7"],
        "trunk": [f"main.{9 + k}.main.{j}" for k in range(R) for j in (0, 1, 3, 4)],
        "up_sampling": [f"main.{9 + R}", f"main.{10 + R}", f"main.{12 + R}", f"main.{13 + R}"],
        "last_layer": [f"main.{15 + R}"],
    }


def _from_named_blocks(state: Mapping[str, torch.Tensor]) -> StateDict:
    groups = module_groups(state)
    trunk_convs = [
        g for g, keys in groups.items() if g.startswith("trunk.") and not is_norm_group(state, keys)
    ]
    if len(trunk_convs) % 2:
        raise KeyMapError(f"StarGAN trunk has {len(trunk_convs)} conv layers; residual blocks have 2 each")
    official = _official_layers(len(trunk_convs) // 2)
    out: StateDict = {}
    for block in NAMED_BLOCKS:
        src = [g for g in groups if g == block or g.startswith(block + ".")]
        dst = official[block]
        # Official lists alternate conv, norm (last_layer: conv only).
        dst_kinds = [i % 2 == 1 for i in range(len(dst))]
        for want_norm in (False, True):
            s = [g for g in src if is_norm_group(state, groups[g]) == want_norm]
            d = [name for name, kind in zip(dst, dst_kinds, strict=True) if kind == want_norm]
            if len(s) != len(d):
                kind = "norm" if want_norm else "conv"
                raise KeyMapError(f"StarGAN block {block!r} has {len(s)} {kind} layers, expected {len(d)}")
            for s_name, d_name in zip(s, d, strict=True):
                for key in groups[s_name]:
                    out[d_name + key[len(s_name) :]] = state[key]
    return out


def generator_kwargs(state: Mapping[str, torch.Tensor]) -> dict[str, int]:
    """Constructor arguments recovered from an official-layout generator state dict (``c_dim`` = all
    label channels, as the official constructor counts them; the importer splits them by dataset)."""
    w = state["main.0.weight"]
    return {
        "conv_dim": int(w.shape[0]),
        "c_dim": int(w.shape[1]) - 3,
        "repeat_num": count_indexed(state, "main.", ".main.0.weight"),
    }


def classifier_kwargs(d_state: Mapping[str, torch.Tensor]) -> dict[str, int]:
    """Classifier (= Discriminator) arguments recovered from a discriminator state dict (``c_dim`` = all
    class outputs, as the official constructor counts them)."""
    repeat_num = count_indexed(d_state, "main.", ".weight")
    conv2 = d_state["conv2.weight"]
    return {
        "image_size": int(conv2.shape[-1]) * 2**repeat_num,
        "conv_dim": int(d_state["main.0.weight"].shape[0]),
        "c_dim": int(conv2.shape[0]),
        "repeat_num": repeat_num,
    }
