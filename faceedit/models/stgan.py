"""STGAN (bluestyle97/STGAN-pytorch @ 1136a5d): generator with STUs, discriminator, classifier, key maps.

Keys are the port's (``encoder.i``, ``stu.j``, ``decoder.i``; D: ``conv``, ``fc_adv``, ``fc_att``).
Flags select the official TF STGAN (csmliu/STGAN) instead: ``inject_layers``, ``stu_norm``, ``stu_bias``,
``one_more_conv``, ``bn_eps``, ``max_dim`` (defaults = the port).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial

import torch
from torch import nn

from faceedit.models import layers
from faceedit.models.layers import InstanceNorm2dPerImage, KeyMapError, StateDict, count_indexed, tile

UPSTREAM = "bluestyle97/STGAN-pytorch@1136a5d"


def _gate(
    n_in: int, n_out: int, kernel_size: int, norm: bool, bias: bool, bn_eps: float, act: nn.Module
) -> nn.Sequential:
    conv = nn.Conv2d(n_in, n_out, kernel_size, 1, (kernel_size - 1) // 2, bias=bias)
    return nn.Sequential(conv, nn.BatchNorm2d(n_out, eps=bn_eps), act) if norm else nn.Sequential(conv, act)


class ConvGRUCell(nn.Module):
    """Selective transfer unit: (encoder feature f, state s, labels a) -> (transformed skip, new state).

    ŝ = ConvT(cat[s, a]); r, z = σ(gate(cat[f, ŝ])); new state r·ŝ; h = tanh(gate(cat[f, r·ŝ]));
    output (1-z)·ŝ + z·h. ``state_dim`` defaults to the port's ``2*in_dim``.
    """

    def __init__(
        self,
        n_attrs: int,
        in_dim: int,
        out_dim: int,
        kernel_size: int = 3,
        state_dim: int | None = None,
        norm: bool = True,
        bias: bool = False,
        bn_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        state_dim = 2 * in_dim if state_dim is None else state_dim
        self.upsample = nn.ConvTranspose2d(state_dim + n_attrs, out_dim, 4, 2, 1, bias=bias)
        gate = {"kernel_size": kernel_size, "norm": norm, "bias": bias, "bn_eps": bn_eps}
        self.reset_gate = _gate(in_dim + out_dim, out_dim, act=nn.Sigmoid(), **gate)
        self.update_gate = _gate(in_dim + out_dim, out_dim, act=nn.Sigmoid(), **gate)
        self.hidden = _gate(in_dim + out_dim, out_dim, act=nn.Tanh(), **gate)

    def forward(
        self, input: torch.Tensor, old_state: torch.Tensor, attr: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        state_hat = self.upsample(torch.cat([old_state, tile(attr, old_state)], dim=1))
        r = self.reset_gate(torch.cat([input, state_hat], dim=1))
        z = self.update_gate(torch.cat([input, state_hat], dim=1))
        new_state = r * state_hat
        hidden = self.hidden(torch.cat([input, new_state], dim=1))
        return (1 - z) * state_hat + z * hidden, new_state


def _up(n_in: int, n_out: int, bn_eps: float) -> nn.Sequential:
    return nn.Sequential(
        nn.ConvTranspose2d(n_in, n_out, 4, 2, 1, bias=False),
        nn.BatchNorm2d(n_out, eps=bn_eps),
        nn.ReLU(inplace=True),
    )


class Generator(nn.Module):
    """G(x, diff): image [N,3,S,S] in [-1,1] and attribute difference [N,attr_dim] (target - source,
    ±1 for a full edit) -> image [N,3,S,S]; S a multiple of 2**n_layers.

    Defaults are the port's training yaml. TF STGAN (csmliu) = ``attr_dim=13, shortcut_layers=4,
    inject_layers=4, stu_norm=False, stu_bias=True, one_more_conv=0, bn_eps=1e-3, max_dim=1024``.
    ``one_more_conv``: False/0 = a single ConvT(4,2,1) to RGB; True = the port's ConvT(4,2,1) to
    ``conv_dim//4`` + BN + ReLU + ConvT(3,1,1); an int k = the same with a k x k last kernel (k odd).
    ``stu_bias`` also gives the last layer a bias (as in TF).
    """

    def __init__(
        self,
        attr_dim: int = 10,
        conv_dim: int = 64,
        n_layers: int = 5,
        shortcut_layers: int = 3,
        stu_kernel_size: int = 3,
        use_stu: bool = True,
        one_more_conv: bool | int = True,
        inject_layers: int = 0,
        stu_norm: bool = True,
        stu_bias: bool = False,
        bn_eps: float = 1e-5,
        max_dim: int | None = None,
    ) -> None:
        super().__init__()
        if not 0 <= shortcut_layers <= n_layers - 1:
            raise ValueError(f"shortcut_layers must be in 0..{n_layers - 1}, got {shortcut_layers}")
        self.n_layers, self.shortcut_layers, self.use_stu = n_layers, shortcut_layers, use_stu
        self.inject_layers = min(inject_layers, n_layers - 1)
        enc_w = [
            conv_dim * 2**i if max_dim is None else min(conv_dim * 2**i, max_dim) for i in range(n_layers)
        ]
        self.encoder = nn.ModuleList()
        n_in = 3
        for width in enc_w:
            self.encoder.append(
                nn.Sequential(
                    nn.Conv2d(n_in, width, 4, 2, 1, bias=False),
                    nn.BatchNorm2d(width, eps=bn_eps),
                    nn.LeakyReLU(0.2, inplace=True),
                )
            )
            n_in = width
        if use_stu:  # stu.0 is the deepest cell (level n_layers-2)
            stu = {"kernel_size": stu_kernel_size, "norm": stu_norm, "bias": stu_bias, "bn_eps": bn_eps}
            levels = range(n_layers - 2, n_layers - 2 - shortcut_layers, -1)
            self.stu = nn.ModuleList(
                ConvGRUCell(attr_dim, enc_w[lv], enc_w[lv], state_dim=enc_w[lv + 1], **stu) for lv in levels
            )
        # Decoder i (< n_layers-1) outputs the width of encoder level n_layers-2-i.
        self.decoder = nn.ModuleList([_up(enc_w[-1] + attr_dim, enc_w[-1], bn_eps)])
        for i in range(1, n_layers):
            n_in = enc_w[n_layers - i]
            n_in += enc_w[n_layers - 1 - i] if i <= shortcut_layers else 0
            n_in += attr_dim if self.inject_layers > i - 1 else 0
            self.decoder.append(
                _up(n_in, enc_w[n_layers - 1 - i], bn_eps)
                if i < n_layers - 1
                else self._last(n_in, conv_dim, one_more_conv, stu_bias, bn_eps)
            )

    @staticmethod
    def _last(
        n_in: int, conv_dim: int, one_more_conv: bool | int, bias: bool, bn_eps: float
    ) -> nn.Sequential:
        if not one_more_conv:
            return nn.Sequential(nn.ConvTranspose2d(n_in, 3, 4, 2, 1, bias=bias), nn.Tanh())
        k = 3 if one_more_conv is True else int(one_more_conv)
        if k % 2 == 0:
            raise ValueError(f"one_more_conv kernel must be odd, got {k}")
        mid = conv_dim // 4
        return nn.Sequential(
            *_up(n_in, mid, bn_eps), nn.ConvTranspose2d(mid, 3, k, 1, (k - 1) // 2, bias=bias), nn.Tanh()
        )

    def forward(self, x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        a = a.to(x.dtype)
        ys, h = [], x
        for layer in self.encoder:
            h = layer(h)
            ys.append(h)
        out = self.decoder[0](torch.cat([ys[-1], tile(a, ys[-1])], dim=1))
        state = ys[-1]
        for i in range(1, self.n_layers):
            if i <= self.shortcut_layers:
                skip = ys[-(i + 1)]
                if self.use_stu:
                    skip, state = self.stu[i - 1](skip, state, a)
                out = torch.cat([out, skip], dim=1)
            if self.inject_layers > i - 1:
                out = torch.cat([out, tile(a, out)], dim=1)
            out = self.decoder[i](out)
        return out


def _conv_trunk(conv_dim: int, n_layers: int, norm: type[nn.Module]) -> tuple[nn.Sequential, int]:
    layers, n_in = [], 3
    for i in range(n_layers):
        width = conv_dim * 2**i
        layers.append(
            nn.Sequential(nn.Conv2d(n_in, width, 4, 2, 1), norm(width), nn.LeakyReLU(0.2, inplace=True))
        )
        n_in = width
    return nn.Sequential(*layers), n_in


def _head(n_in: int, fc_dim: int, n_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, fc_dim), nn.LeakyReLU(0.2, inplace=True), nn.Linear(fc_dim, n_out))


class _Judge(nn.Module):
    """Conv trunk + the heads named in ``HEADS``, normalised by ``NORM``; the discriminator and the
    classifier differ only in those, so their keys stay the port's (``conv.*``, ``fc_adv.*``, ``fc_att.*``).
    """

    HEADS: tuple[str, ...] = ()
    NORM: Callable[[int], nn.Module] = InstanceNorm2dPerImage

    def __init__(
        self,
        image_size: int = 128,
        attr_dim: int = 10,
        conv_dim: int = 64,
        fc_dim: int = 1024,
        n_layers: int = 5,
    ) -> None:
        super().__init__()
        self.conv, width = _conv_trunk(conv_dim, n_layers, self.NORM)
        flat = width * (image_size // 2**n_layers) ** 2
        for name in self.HEADS:
            self.add_module(name, _head(flat, fc_dim, 1 if name == "fc_adv" else attr_dim))


class Discriminator(_Judge):
    """D(x): [N,3,S,S] -> (adversarial logit [N,1], attribute logits [N,attr_dim])."""

    HEADS = ("fc_adv", "fc_att")
    # D trains in training mode, where a tracked InstanceNorm normalises per image anyway.
    NORM = partial(nn.InstanceNorm2d, affine=True, track_running_stats=True)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.conv(x).flatten(1)
        return self.fc_adv(h), self.fc_att(h)


class Classifier(_Judge):
    """D's conv trunk + ``fc_att``: images [N,3,S,S] in [-1,1] -> logits [N,attr_dim].

    The trunk's InstanceNorms normalise per image (as D always did during training, where it runs in
    training mode); their running buffers are kept only so that D's keys load unchanged.
    """

    HEADS = ("fc_att",)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc_att(self.conv(x).flatten(1))


# --------------------------------------------------------------------------------------------------
# Key maps and shape-based configuration recovery (pure functions)


def generator_state(state: Mapping[str, torch.Tensor]) -> StateDict:
    """A port generator state dict (``module.``-prefixed as the 2-GPU default saves it) -> our keys."""
    return layers.unwrapped_with(state, ("encoder.0.0.weight", "decoder.0.0.weight"), "an STGAN generator")


def classifier_state(d_state: Mapping[str, torch.Tensor]) -> StateDict:
    """Discriminator state dict -> Classifier state dict (``fc_adv`` dropped)."""
    return layers.judge_to_classifier(d_state, "fc_att.2.weight", "an STGAN discriminator")


def generator_kwargs(state: Mapping[str, torch.Tensor]) -> dict[str, int | bool | None]:
    """Constructor arguments recovered from a generator state dict (bn_eps is not visible: 1e-5)."""
    n_layers = count_indexed(state, "encoder.", ".0.weight")
    conv_dim = int(state["encoder.0.0.weight"].shape[0])
    enc_w = [int(state[f"encoder.{i}.0.weight"].shape[0]) for i in range(n_layers)]
    uncapped = [conv_dim * 2**i for i in range(n_layers)]
    attr_dim = int(state["decoder.0.0.weight"].shape[0]) - enc_w[-1]
    n_stu = count_indexed(state, "stu.", ".upsample.weight")
    shortcut, inject = n_stu, 0
    for i in range(1, n_layers):
        extra = int(state[f"decoder.{i}.0.weight"].shape[0]) - enc_w[n_layers - i]
        if (
            not n_stu
            and extra in (enc_w[n_layers - 1 - i], enc_w[n_layers - 1 - i] + attr_dim)
            and shortcut == i - 1
        ):
            shortcut = i
        extra -= enc_w[n_layers - 1 - i] if i <= shortcut else 0
        if extra == attr_dim and inject == i - 1:
            inject, extra = i, 0
        if extra:
            raise KeyMapError(f"STGAN decoder layer {i} has {extra} unexplained input channels")
    last = f"decoder.{n_layers - 1}.3.weight"
    k = int(state[last].shape[-1]) if last in state else 0
    return {
        "attr_dim": attr_dim,
        "conv_dim": conv_dim,
        "n_layers": n_layers,
        "shortcut_layers": shortcut,
        "stu_kernel_size": int(state["stu.0.reset_gate.0.weight"].shape[-1]) if n_stu else 3,
        "use_stu": bool(n_stu),
        "one_more_conv": True if k == 3 else k,
        "inject_layers": inject,
        "stu_norm": "stu.0.reset_gate.1.weight" in state or not n_stu,
        "stu_bias": any(
            k in state for k in ("stu.0.upsample.bias", f"{last[:-9]}.bias", f"decoder.{n_layers - 1}.0.bias")
        ),
        "max_dim": None if enc_w == uncapped else max(enc_w),
    }


def classifier_kwargs(d_state: Mapping[str, torch.Tensor]) -> dict[str, int]:
    """Classifier (= Discriminator) arguments recovered from a discriminator state dict."""
    n_layers = count_indexed(d_state, "conv.", ".0.weight")
    width = int(d_state[f"conv.{n_layers - 1}.0.weight"].shape[0])
    side = round((int(d_state["fc_att.0.weight"].shape[1]) / width) ** 0.5)
    return {
        "image_size": side * 2**n_layers,
        "attr_dim": int(d_state["fc_att.2.weight"].shape[0]),
        "conv_dim": int(d_state["conv.0.0.weight"].shape[0]),
        "fc_dim": int(d_state["fc_att.0.weight"].shape[0]),
        "n_layers": n_layers,
    }


# ------------------------------------------------------------------------------ fused inference form


def _conv_bn(gate: nn.Sequential) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight and bias of ``gate``'s conv with its eval BatchNorm folded in (torch's public fusion)."""
    conv = gate[0]
    w = conv.weight
    bias = conv.bias if conv.bias is not None else w.new_zeros(conv.out_channels)
    if not isinstance(gate[1], nn.BatchNorm2d):
        return w, bias
    bn = gate[1]
    return nn.utils.fusion.fuse_conv_bn_weights(
        conv.weight, bias, bn.running_mean, bn.running_var, bn.eps, bn.weight, bn.bias
    )


class FusedSTU(nn.Module):
    """:class:`ConvGRUCell` with the reset and update gates as one convolution (they read the same
    input): one pass over ``cat[input, state_hat]`` instead of two. Eval mode only."""

    def __init__(self, cell: ConvGRUCell) -> None:
        super().__init__()
        self.upsample, self.hidden = cell.upsample, cell.hidden
        (w_r, b_r), (w_z, b_z) = _conv_bn(cell.reset_gate), _conv_bn(cell.update_gate)
        conv = cell.reset_gate[0]
        self.gates = nn.Conv2d(
            conv.in_channels, 2 * conv.out_channels, conv.kernel_size, padding=conv.padding, dtype=w_r.dtype
        ).to(w_r.device)
        with torch.no_grad():
            self.gates.weight.copy_(torch.cat([w_r, w_z]))
            self.gates.bias.copy_(torch.cat([b_r, b_z]))

    def forward(
        self, input: torch.Tensor, old_state: torch.Tensor, attr: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        state_hat = self.upsample(torch.cat([old_state, tile(attr, old_state)], dim=1))
        r, z = torch.sigmoid(self.gates(torch.cat([input, state_hat], dim=1))).chunk(2, dim=1)
        new_state = r * state_hat
        hidden = self.hidden(torch.cat([input, new_state], dim=1))
        return torch.lerp(state_hat, hidden, z), new_state


def fused(generator: Generator) -> Generator:
    """``generator`` (a shared eval-mode copy: see runtime.optimise) with its STUs fused, changed in place."""
    if getattr(generator, "use_stu", False):
        generator.stu = nn.ModuleList(FusedSTU(cell) for cell in generator.stu)
    return generator.eval()
