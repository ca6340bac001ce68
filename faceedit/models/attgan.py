"""AttGAN (elvisyjlin/AttGAN-PyTorch @ be2d6c6): generator, discriminators, attribute classifier, key maps.

State-dict keys are the port's (``enc_layers.i.layers.j``, ``dec_layers...``, ``conv``, ``fc_adv``,
``fc_cls``). ``lrelu_slope``/``bn_eps`` select the port (0.01, 1e-5) or the TF original (0.2, 1e-3).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from faceedit.models import layers
from faceedit.models.layers import KeyMapError, StateDict, count_indexed, tile

UPSTREAM = "elvisyjlin/AttGAN-PyTorch@be2d6c6"
MAX_DIM = 1024
NORMS = ("none", "batchnorm", "instancenorm")
ACTIVATIONS = ("none", "relu", "lrelu", "sigmoid", "tanh")


def _norm(fn: str, n: int, bn_eps: float) -> list[nn.Module]:
    if fn == "batchnorm":
        return [nn.BatchNorm2d(n, eps=bn_eps)]
    if fn == "instancenorm":
        return [nn.InstanceNorm2d(n, affine=True)]
    if fn == "none":
        return []
    raise ValueError(f"unsupported norm {fn!r}; expected one of {NORMS}")


def _acti(fn: str, slope: float) -> list[nn.Module]:
    table = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh}
    if fn == "lrelu":
        return [nn.LeakyReLU(slope)]
    if fn in table:
        return [table[fn]()]
    if fn == "none":
        return []
    raise ValueError(f"unsupported activation {fn!r}; expected one of {ACTIVATIONS}")


class Block(nn.Module):
    """The port's Conv2dBlock / ConvTranspose2dBlock / LinearBlock: layer (bias only without norm),
    norm, activation, under ``layers.<i>`` so that keys match."""

    def __init__(
        self,
        layer: type[nn.Module],
        n_in: int,
        n_out: int,
        norm: str,
        acti: str,
        slope: float = 0.01,
        bn_eps: float = 1e-5,
        **conv: int,
    ) -> None:
        super().__init__()
        core = layer(n_in, n_out, bias=norm == "none", **conv)
        self.layers = nn.Sequential(core, *_norm(norm, n_out, bn_eps), *_acti(acti, slope))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class Generator(nn.Module):
    """G(x, a): image [N,3,S,S] in [-1,1] and scaled labels [N,n_attrs] (±thres_int, edited ±test_int)
    -> image [N,3,S,S].

    Labels are tiled to the actual feature-map size: identical to the port at its training size
    (where it tiles to ``img_size // 2**enc_layers``) and also defined at other sizes.
    """

    def __init__(
        self,
        enc_dim: int = 64,
        enc_layers: int = 5,
        enc_norm_fn: str = "batchnorm",
        enc_acti_fn: str = "lrelu",
        dec_dim: int = 64,
        dec_layers: int = 5,
        dec_norm_fn: str = "batchnorm",
        dec_acti_fn: str = "relu",
        n_attrs: int = 13,
        shortcut_layers: int = 1,
        inject_layers: int = 0,
        img_size: int = 128,
        lrelu_slope: float = 0.01,
        bn_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.shortcut_layers = min(shortcut_layers, dec_layers - 1)
        self.inject_layers = min(inject_layers, dec_layers - 1)
        self.img_size = img_size
        conv = {"kernel_size": 4, "stride": 2, "padding": 1}
        act = {"slope": lrelu_slope, "bn_eps": bn_eps}
        enc, n_in = [], 3
        for i in range(enc_layers):
            n_out = min(enc_dim * 2**i, MAX_DIM)
            enc.append(Block(nn.Conv2d, n_in, n_out, enc_norm_fn, enc_acti_fn, **act, **conv))
            n_in = n_out
        self.enc_layers = nn.ModuleList(enc)
        dec, n_in = [], n_in + n_attrs
        for i in range(dec_layers):
            if i < dec_layers - 1:
                n_out = min(dec_dim * 2 ** (dec_layers - i - 1), MAX_DIM)
                dec.append(Block(nn.ConvTranspose2d, n_in, n_out, dec_norm_fn, dec_acti_fn, **act, **conv))
                # The port's width rule (assumes the skip is half as wide): kept for identical shapes.
                n_in = n_out + (n_out // 2 if self.shortcut_layers > i else 0)
                n_in += n_attrs if self.inject_layers > i else 0
            else:
                dec.append(Block(nn.ConvTranspose2d, n_in, 3, "none", "tanh", **act, **conv))
        self.dec_layers = nn.ModuleList(dec)

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """[N,3,S,S] -> encoder outputs, shallowest first."""
        zs, z = [], x
        for layer in self.enc_layers:
            z = layer(z)
            zs.append(z)
        return zs

    def decode(self, zs: list[torch.Tensor], a: torch.Tensor) -> torch.Tensor:
        """Encoder outputs + labels [N,n_attrs] -> image; concat order [feature, skip, labels]."""
        a = a.to(zs[-1].dtype)
        z = torch.cat([zs[-1], tile(a, zs[-1])], dim=1)
        for i, layer in enumerate(self.dec_layers):
            z = layer(z)
            if self.shortcut_layers > i:
                z = torch.cat([z, zs[len(self.dec_layers) - 2 - i]], dim=1)
            if self.inject_layers > i:
                z = torch.cat([z, tile(a, z)], dim=1)
        return z

    def forward(
        self, x: torch.Tensor | list[torch.Tensor], a: torch.Tensor | None = None, mode: str = "enc-dec"
    ) -> torch.Tensor | list[torch.Tensor]:
        """The port's signature: ``mode`` is 'enc-dec' (default), 'enc' (x -> zs) or 'dec' (zs, a -> x)."""
        if mode == "enc-dec":
            assert a is not None, "attribute vector required"
            return self.decode(self.encode(x), a)  # type: ignore[arg-type]
        if mode == "enc":
            return self.encode(x)  # type: ignore[arg-type]
        if mode == "dec":
            assert a is not None, "attribute vector required"
            return self.decode(x, a)  # type: ignore[arg-type]
        raise ValueError(f"unrecognized mode {mode!r}")


def _conv_trunk(
    dim: int, norm_fn: str, acti_fn: str, n_layers: int, slope: float
) -> tuple[nn.Sequential, int]:
    layers, n_in = [], 3
    for i in range(n_layers):
        n_out = min(dim * 2**i, MAX_DIM)
        layers.append(
            Block(nn.Conv2d, n_in, n_out, norm_fn, acti_fn, slope, kernel_size=4, stride=2, padding=1)
        )
        n_in = n_out
    return nn.Sequential(*layers), n_in


def _fc_head(
    n_in: int, fc_dim: int, n_out: int, fc_norm_fn: str, fc_acti_fn: str, slope: float
) -> nn.Sequential:
    # Only a 1-D norm would make sense here; the port's default 'none' is the only one we build.
    if fc_norm_fn != "none":
        raise ValueError(f"unsupported dis_fc_norm {fc_norm_fn!r}; only 'none' is supported")
    return nn.Sequential(
        Block(nn.Linear, n_in, fc_dim, "none", fc_acti_fn, slope),
        Block(nn.Linear, fc_dim, n_out, "none", "none", slope),
    )


class _Judge(nn.Module):
    """Conv trunk + the fully connected heads named in ``HEADS``; the discriminator and the classifier
    differ only in which heads they keep, so their keys stay the port's (``conv.*``, ``fc_adv.*``,
    ``fc_cls.*``).

    Defaults are train.py's (``dis_fc_acti`` 'relu'; the port's class default says 'lrelu'). The port
    hard-codes 13 attributes and a 1024-wide last feature map; here ``n_attrs`` is an argument (default
    13) and the flatten width follows the actual last conv width (1024 with the defaults).
    """

    HEADS: tuple[str, ...] = ()

    def __init__(
        self,
        dim: int = 64,
        norm_fn: str = "instancenorm",
        acti_fn: str = "lrelu",
        fc_dim: int = 1024,
        fc_norm_fn: str = "none",
        fc_acti_fn: str = "relu",
        n_layers: int = 5,
        img_size: int = 128,
        n_attrs: int = 13,
        lrelu_slope: float = 0.01,
    ) -> None:
        super().__init__()
        self.conv, width = _conv_trunk(dim, norm_fn, acti_fn, n_layers, lrelu_slope)
        flat = width * (img_size // 2**n_layers) ** 2
        for name in self.HEADS:
            n_out = 1 if name == "fc_adv" else n_attrs
            self.add_module(name, _fc_head(flat, fc_dim, n_out, fc_norm_fn, fc_acti_fn, lrelu_slope))


class Discriminators(_Judge):
    """D(x): [N,3,S,S] -> (adversarial logit [N,1], attribute logits [N,n_attrs])."""

    HEADS = ("fc_adv", "fc_cls")

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.conv(x).flatten(1)
        return self.fc_adv(h), self.fc_cls(h)


class Classifier(_Judge):
    """Conv trunk + ``fc_cls`` of the discriminator: images [N,3,S,S] in [-1,1] -> logits [N,n_attrs]."""

    HEADS = ("fc_cls",)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc_cls(self.conv(x).flatten(1))


# --------------------------------------------------------------------------------------------------
# Key maps and shape-based configuration recovery (pure functions)


def generator_state(state: Mapping[str, torch.Tensor]) -> StateDict:
    """A port generator state dict (possibly ``module.``-prefixed) -> our keys (the port's)."""
    return layers.unwrapped_with(state, ("enc_layers.0.layers.0.weight",), "an AttGAN generator")


def classifier_state(d_state: Mapping[str, torch.Tensor]) -> StateDict:
    """Discriminators state dict -> Classifier state dict (``fc_adv`` dropped)."""
    return layers.judge_to_classifier(d_state, "fc_cls.1.layers.0.weight", "an AttGAN discriminator")


def _norm_of(state: Mapping[str, torch.Tensor], prefix: str) -> str:
    if f"{prefix}.layers.1.running_mean" in state:
        return "batchnorm"
    if f"{prefix}.layers.1.weight" in state:
        return "instancenorm"
    return "none"


def generator_shapes(state: Mapping[str, torch.Tensor]) -> dict[str, int | str]:
    """Everything the weights tell about the generator (the rest is only in setting.txt).

    ``shortcut_layers``/``inject_layers`` follow from each decoder layer's extra input channels; when a
    skip and the label are equally wide the split is ambiguous and ``shortcut_layers`` is preferred.
    """
    enc_layers = count_indexed(state, "enc_layers.", ".layers.0.weight")
    dec_layers = count_indexed(state, "dec_layers.", ".layers.0.weight")
    enc_dim = int(state["enc_layers.0.layers.0.weight"].shape[0])
    enc_out = int(state[f"enc_layers.{enc_layers - 1}.layers.0.weight"].shape[0])
    n_attrs = int(state["dec_layers.0.layers.0.weight"].shape[0]) - enc_out
    shortcut = inject = 0
    for i in range(1, dec_layers):
        prev = int(state[f"dec_layers.{i - 1}.layers.0.weight"].shape[1])
        extra = int(state[f"dec_layers.{i}.layers.0.weight"].shape[0]) - prev
        if extra in (prev // 2, prev // 2 + n_attrs) and shortcut == i - 1:
            shortcut, extra = i, extra - prev // 2
        if extra == n_attrs and inject == i - 1:
            inject, extra = i, 0
        if extra not in (0,):
            raise KeyMapError(f"AttGAN decoder layer {i} has {extra} unexplained input channels")
    dec_dim = (
        int(state[f"dec_layers.{dec_layers - 2}.layers.0.weight"].shape[1]) // 2
        if dec_layers > 1
        else enc_dim
    )
    return {
        "enc_dim": enc_dim,
        "enc_layers": enc_layers,
        "enc_norm_fn": _norm_of(state, "enc_layers.0"),
        "dec_dim": dec_dim,
        "dec_layers": dec_layers,
        "dec_norm_fn": _norm_of(state, "dec_layers.0"),
        "n_attrs": n_attrs,
        "shortcut_layers": shortcut,
        "inject_layers": inject,
    }


def classifier_shapes(d_state: Mapping[str, torch.Tensor]) -> dict[str, int | str]:
    """Classifier arguments the discriminator's weights reveal (img_size from the flatten width)."""
    n_layers = count_indexed(d_state, "conv.", ".layers.0.weight")
    width = int(d_state[f"conv.{n_layers - 1}.layers.0.weight"].shape[0])
    flat = int(d_state["fc_cls.0.layers.0.weight"].shape[1])
    side = round((flat / width) ** 0.5)
    return {
        "dim": int(d_state["conv.0.layers.0.weight"].shape[0]),
        "norm_fn": _norm_of(d_state, "conv.0"),
        "fc_dim": int(d_state["fc_cls.0.layers.0.weight"].shape[0]),
        "n_layers": n_layers,
        "img_size": side * 2**n_layers,
        "n_attrs": int(d_state["fc_cls.1.layers.0.weight"].shape[0]),
    }


# The names every models/<arch>.py gives its key-map helpers (convert/torch_import calls them); AttGAN's
# say "shapes" because setting.txt completes what the weights tell.
generator_kwargs = generator_shapes
classifier_kwargs = classifier_shapes
