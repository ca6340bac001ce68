"""U-GAT-IT (znxlwm/UGATIT-pytorch @ b8c4251): ResnetGenerator (full and light), Discriminator, key maps.

Keys are the port's (``DownBlock``, ``gap_fc``, ``FC``, ``UpBlock1_k``, ``UpBlock2``; D with spectral-norm
``weight_orig/_u/_v``). Flags ``conv_bias, in_affine, unbiased_var, cam_bias, mlp_bias`` select the TF
original (taki0112/UGATIT) instead; defaults = the port. No attribute classifier (no labels).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from faceedit.models.layers import KeyMapError, StateDict, count_indexed, strip_wrapper_prefixes

UPSTREAM = "znxlwm/UGATIT-pytorch@b8c4251"
GENERATORS = ("genA2B", "genB2A")
CHECKPOINT_ENTRIES = ("genA2B", "genB2A", "disGA", "disGB", "disLA", "disLB")


def _mixed_norm(x: torch.Tensor, rho: torch.Tensor, eps: float, unbiased: bool) -> torch.Tensor:
    """ρ·instance-norm + (1-ρ)·layer-norm of x [N,C,H,W]; the port uses torch.var's unbiased divisor."""
    in_mean, in_var = x.mean(dim=(2, 3), keepdim=True), x.var(dim=(2, 3), keepdim=True, unbiased=unbiased)
    ln_mean, ln_var = (
        x.mean(dim=(1, 2, 3), keepdim=True),
        x.var(dim=(1, 2, 3), keepdim=True, unbiased=unbiased),
    )
    out_in = (x - in_mean) / torch.sqrt(in_var + eps)
    out_ln = (x - ln_mean) / torch.sqrt(ln_var + eps)
    return rho * out_in + (1 - rho) * out_ln


class adaILN(nn.Module):
    """AdaLIN with γ, β [N,C] from the MLP; ρ [1,C,1,1] used as stored (training clamps it to [0,1])."""

    def __init__(self, num_features: int, eps: float = 1e-5, unbiased_var: bool = True) -> None:
        super().__init__()
        self.eps, self.unbiased_var = eps, unbiased_var
        self.rho = nn.Parameter(torch.full((1, num_features, 1, 1), 0.9))

    def forward(self, x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
        out = _mixed_norm(x, self.rho, self.eps, self.unbiased_var)
        return out * gamma[:, :, None, None] + beta[:, :, None, None]


class ILN(nn.Module):
    """LIN with learned ρ (init 0), γ (1), β (0), each [1,C,1,1]."""

    def __init__(self, num_features: int, eps: float = 1e-5, unbiased_var: bool = True) -> None:
        super().__init__()
        self.eps, self.unbiased_var = eps, unbiased_var
        self.rho = nn.Parameter(torch.zeros(1, num_features, 1, 1))
        self.gamma = nn.Parameter(torch.ones(1, num_features, 1, 1))
        self.beta = nn.Parameter(torch.zeros(1, num_features, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _mixed_norm(x, self.rho, self.eps, self.unbiased_var) * self.gamma + self.beta


class AffineInstanceNorm(nn.InstanceNorm2d):
    """TF's instance norm (``tf.contrib.layers.instance_norm``): affine, biased variance, and TF's
    ``x * inv + (beta - mean * inv)`` with ``inv = gamma * rsqrt(var + eps)`` — the same maths as
    ``nn.InstanceNorm2d(affine=True)`` in another order, which keeps converted TF weights within 4e-6."""

    def __init__(self, num_features: int, eps: float = 1e-5) -> None:
        super().__init__(num_features, eps=eps, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=(2, 3), keepdim=True)
        var = (x - mean).square().mean(dim=(2, 3), keepdim=True)
        inv = torch.rsqrt(var + self.eps) * self.weight[None, :, None, None]
        return x * inv + (self.bias[None, :, None, None] - mean * inv)


def _conv_in_relu(n_in: int, n_out: int, k: int, stride: int, bias: bool, affine: bool) -> list[nn.Module]:
    pad = nn.ReflectionPad2d(k // 2)
    norm = AffineInstanceNorm(n_out) if affine else nn.InstanceNorm2d(n_out)
    return [pad, nn.Conv2d(n_in, n_out, k, stride, 0, bias=bias), norm, nn.ReLU(True)]


class ResnetBlock(nn.Module):
    """[pad, conv3, IN, ReLU, pad, conv3, IN] + identity (keys ``conv_block.{1,5}``)."""

    def __init__(self, dim: int, use_bias: bool, affine: bool = False) -> None:
        super().__init__()
        first = _conv_in_relu(dim, dim, 3, 1, use_bias, affine)
        second = _conv_in_relu(dim, dim, 3, 1, use_bias, affine)[:3]
        self.conv_block = nn.Sequential(*first, *second)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class ResnetAdaILNBlock(nn.Module):
    """[pad, conv3, AdaLIN(γ,β), ReLU, pad, conv3, AdaLIN(γ,β)] + identity."""

    def __init__(self, dim: int, use_bias: bool, unbiased_var: bool = True) -> None:
        super().__init__()
        self.pad1, self.pad2 = nn.ReflectionPad2d(1), nn.ReflectionPad2d(1)
        self.conv1 = nn.Conv2d(dim, dim, 3, 1, 0, bias=use_bias)
        self.norm1 = adaILN(dim, unbiased_var=unbiased_var)
        self.relu1 = nn.ReLU(True)
        self.conv2 = nn.Conv2d(dim, dim, 3, 1, 0, bias=use_bias)
        self.norm2 = adaILN(dim, unbiased_var=unbiased_var)

    def forward(self, x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.norm1(self.conv1(self.pad1(x)), gamma, beta))
        return x + self.norm2(self.conv2(self.pad2(out)), gamma, beta)


class ResnetGenerator(nn.Module):
    """G(x) -> (image [N,3,S,S], CAM logits [N,2] = [gap, gmp], heatmap [N,1,S/4,S/4]).

    Defaults are main.py's (``--ch 64 --n_res 4 --img_size 256``). The full model (``light=False``)
    flattens the S/4 bottleneck into a Linear layer, so it only runs at ``img_size``; light runs at any
    multiple of 4. TF original = all five flags flipped (conv_bias, in_affine, cam_bias, mlp_bias True;
    unbiased_var False).
    """

    def __init__(
        self,
        input_nc: int = 3,
        output_nc: int = 3,
        ngf: int = 64,
        n_blocks: int = 4,
        img_size: int = 256,
        light: bool = False,
        conv_bias: bool = False,
        in_affine: bool = False,
        unbiased_var: bool = True,
        cam_bias: bool = False,
        mlp_bias: bool = False,
    ) -> None:
        super().__init__()
        self.n_blocks, self.light, self.cam_bias = n_blocks, light, cam_bias
        down = _conv_in_relu(input_nc, ngf, 7, 1, conv_bias, in_affine)
        for i in range(2):
            down += _conv_in_relu(ngf * 2**i, ngf * 2 ** (i + 1), 3, 2, conv_bias, in_affine)
        dim = ngf * 4
        down += [ResnetBlock(dim, conv_bias, in_affine) for _ in range(n_blocks)]
        self.DownBlock = nn.Sequential(*down)
        self.gap_fc = nn.Linear(dim, 1, bias=cam_bias)
        self.gmp_fc = nn.Linear(dim, 1, bias=cam_bias)
        self.conv1x1 = nn.Conv2d(dim * 2, dim, 1, 1, bias=True)
        self.relu = nn.ReLU(True)
        fc_in = dim if light else (img_size // 4) ** 2 * dim
        self.FC = nn.Sequential(
            nn.Linear(fc_in, dim, bias=mlp_bias),
            nn.ReLU(True),
            nn.Linear(dim, dim, bias=mlp_bias),
            nn.ReLU(True),
        )
        self.gamma = nn.Linear(dim, dim, bias=mlp_bias)
        self.beta = nn.Linear(dim, dim, bias=mlp_bias)
        for k in range(n_blocks):
            setattr(self, f"UpBlock1_{k + 1}", ResnetAdaILNBlock(dim, conv_bias, unbiased_var))
        up: list[nn.Module] = []
        for i in range(2):
            c = dim // 2**i
            up += [
                nn.Upsample(scale_factor=2, mode="nearest"),
                nn.ReflectionPad2d(1),
                nn.Conv2d(c, c // 2, 3, 1, 0, bias=conv_bias),
                ILN(c // 2, unbiased_var=unbiased_var),
                nn.ReLU(True),
            ]
        up += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, 7, 1, 0, bias=conv_bias), nn.Tanh()]
        self.UpBlock2 = nn.Sequential(*up)

    def _cam_weight(self, fc: nn.Linear) -> torch.Tensor:
        # Port: features re-weighted by the raw FC weight. TF: by kernel + bias (bias on every channel).
        w = fc.weight if not self.cam_bias else fc.weight + fc.bias[:, None]
        return w[:, :, None, None]

    def forward(self, input: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.DownBlock(input)
        gap_logit = self.gap_fc(F.adaptive_avg_pool2d(x, 1).flatten(1))
        gmp_logit = self.gmp_fc(F.adaptive_max_pool2d(x, 1).flatten(1))
        cam_logit = torch.cat([gap_logit, gmp_logit], 1)
        x = torch.cat([x * self._cam_weight(self.gap_fc), x * self._cam_weight(self.gmp_fc)], 1)
        x = self.relu(self.conv1x1(x))
        heatmap = torch.sum(x, dim=1, keepdim=True)
        x_ = F.adaptive_avg_pool2d(x, 1) if self.light else x
        x_ = self.FC(x_.flatten(1))  # full model: flattened in (C, H, W) order
        gamma, beta = self.gamma(x_), self.beta(x_)
        for k in range(self.n_blocks):
            x = getattr(self, f"UpBlock1_{k + 1}")(x, gamma, beta)
        return self.UpBlock2(x), cam_logit, heatmap


Generator = ResnetGenerator


def _sn(module: nn.Module) -> nn.Module:
    # The legacy hook-based API on purpose: it stores weight_orig / weight_u / weight_v like the port.
    return nn.utils.spectral_norm(module)


class Discriminator(nn.Module):
    """D(x) -> (patch logits [N,1,h,w], CAM logits [N,2], heatmap [N,1,h',w']); spectral norm everywhere
    except ``conv1x1``. The trainer builds global (n_layers=7) and local (n_layers=5) critics."""

    def __init__(self, input_nc: int = 3, ndf: int = 64, n_layers: int = 5) -> None:
        super().__init__()
        model: list[nn.Module] = [
            nn.ReflectionPad2d(1),
            _sn(nn.Conv2d(input_nc, ndf, 4, 2, 0, bias=True)),
            nn.LeakyReLU(0.2, True),
        ]
        for i in range(1, n_layers - 2):
            c = ndf * 2 ** (i - 1)
            model += [
                nn.ReflectionPad2d(1),
                _sn(nn.Conv2d(c, c * 2, 4, 2, 0, bias=True)),
                nn.LeakyReLU(0.2, True),
            ]
        c = ndf * 2 ** (n_layers - 3)
        model += [
            nn.ReflectionPad2d(1),
            _sn(nn.Conv2d(c, c * 2, 4, 1, 0, bias=True)),
            nn.LeakyReLU(0.2, True),
        ]
        c *= 2
        self.gap_fc = _sn(nn.Linear(c, 1, bias=False))
        self.gmp_fc = _sn(nn.Linear(c, 1, bias=False))
        self.conv1x1 = nn.Conv2d(c * 2, c, 1, 1, bias=True)
        self.leaky_relu = nn.LeakyReLU(0.2, True)
        self.pad = nn.ReflectionPad2d(1)
        self.conv = _sn(nn.Conv2d(c, 1, 4, 1, 0, bias=False))
        self.model = nn.Sequential(*model)

    def forward(self, input: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.model(input)
        gap_logit = self.gap_fc(F.adaptive_avg_pool2d(x, 1).flatten(1))
        gmp_logit = self.gmp_fc(F.adaptive_max_pool2d(x, 1).flatten(1))
        # As in the port: the re-weighting uses the module's first parameter, i.e. weight_orig (the
        # un-normalised weight), while the logits use the spectrally normalised one.
        gap = x * self.gap_fc.weight_orig[:, :, None, None]
        gmp = x * self.gmp_fc.weight_orig[:, :, None, None]
        x = self.leaky_relu(self.conv1x1(torch.cat([gap, gmp], 1)))
        heatmap = torch.sum(x, dim=1, keepdim=True)
        return self.conv(self.pad(x)), torch.cat([gap_logit, gmp_logit], 1), heatmap


# --------------------------------------------------------------------------------------------------
# Key maps and shape-based configuration recovery (pure functions)


def generator_state(
    checkpoint: Mapping[str, Mapping[str, torch.Tensor]], direction: str = "A2B"
) -> StateDict:
    """The six-entry training checkpoint -> the state dict of ``gen<direction>`` (our keys = the port's)."""
    name = f"gen{direction}"
    if name not in GENERATORS:
        raise KeyMapError(f"direction must be A2B or B2A, got {direction!r}")
    if not isinstance(checkpoint, Mapping) or name not in checkpoint:
        found = list(checkpoint)[:6] if isinstance(checkpoint, Mapping) else type(checkpoint).__name__
        raise KeyMapError(
            f"not a U-GAT-IT checkpoint: expected entries {', '.join(CHECKPOINT_ENTRIES)}, found {found}"
        )
    state = strip_wrapper_prefixes(checkpoint[name])
    if "DownBlock.1.weight" not in state:
        raise KeyMapError(f"{name} is not a U-GAT-IT generator: no DownBlock.1.weight")
    return state


def generator_kwargs(state: Mapping[str, torch.Tensor]) -> dict[str, int | bool]:
    """Constructor arguments recovered from a generator state dict (TF flags from the extra keys).

    Not visible in the weights: ``unbiased_var`` (the port's True) and a light model's ``img_size``
    (main.py's 256; light generators run at any multiple of 4).
    """
    ngf = int(state["DownBlock.1.weight"].shape[0])
    fc_in = int(state["FC.0.weight"].shape[1])
    light = fc_in == 4 * ngf
    return {
        "input_nc": int(state["DownBlock.1.weight"].shape[1]),
        "output_nc": int(state["UpBlock2.11.weight"].shape[0]),
        "ngf": ngf,
        "n_blocks": count_indexed(state, "UpBlock1_", ".conv1.weight"),
        "img_size": 256 if light else 4 * round((fc_in / (4 * ngf)) ** 0.5),
        "light": light,
        "conv_bias": "DownBlock.1.bias" in state,
        "in_affine": "DownBlock.2.weight" in state,
        "unbiased_var": True,
        "cam_bias": "gap_fc.bias" in state,
        "mlp_bias": "FC.0.bias" in state,
    }


# ------------------------------------------------------------------------------ fused inference form
# runtime.optimise() runs this copy on inference: the same function (tests/test_runtime.py, 1e-4 fp32,
# 1e-9 float64) in fewer passes over memory. benchmarks/generators.py measures what it gains.


class OnePassNorm(nn.Module):
    """ILN / AdaLIN / instance norm from one statistics pass and one ``x*a + b`` pass (+ ReLU).

    ``rho`` mixes instance and layer statistics (None = instance norm); the layer statistics are
    derived exactly from the per-channel ones; ``correction`` 1 = torch.var's unbiased divisor.
    ``gamma``/``beta`` are ``[1,C,1,1]`` or come per image with the call ``[N,C]``.
    """

    def __init__(self, eps: float, correction: int, rho=None, gamma=None, beta=None, relu=False) -> None:
        super().__init__()
        self.eps, self.correction, self.relu = float(eps), int(correction), relu
        for name, value in (("rho", rho), ("gamma", gamma), ("beta", beta)):
            self.register_buffer(name, None if value is None else value.detach())  # shared, not copied

    def forward(self, x: torch.Tensor, gamma: torch.Tensor | None = None, beta: torch.Tensor | None = None):
        scale, shift = self._affine(x)
        g = self.gamma if gamma is None else gamma[:, :, None, None]
        b = self.beta if beta is None else beta[:, :, None, None]
        if g is not None:
            scale, shift = scale * g, shift * g
        if b is not None:
            shift = shift + b
        out = torch.addcmul(shift.to(x.dtype), x, scale.to(x.dtype))
        return out.relu_() if self.relu else out

    def _affine(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per (image, channel) ``a, b`` with norm(x) = a*x + b, computed in float32 (or float64)."""
        stats = x.to(torch.promote_types(x.dtype, torch.float32))
        var, mean = torch.var_mean(stats, dim=(2, 3), keepdim=True, correction=self.correction)
        inv = (var + self.eps).rsqrt()
        if self.rho is None:
            return inv, -mean * inv
        hw, c = x.shape[2] * x.shape[3], x.shape[1]
        ln_mean = mean.mean(dim=1, keepdim=True)
        squares = var * (hw - self.correction) + hw * (mean - ln_mean).square()
        ln_inv = (squares.sum(dim=1, keepdim=True) / (c * hw - self.correction) + self.eps).rsqrt()
        rho = self.rho.to(inv.dtype)
        scale = rho * inv + (1 - rho) * ln_inv
        return scale, -(rho * mean * inv + (1 - rho) * ln_mean * ln_inv)


def _one_pass(module: nn.Module) -> OnePassNorm | None:
    """The :class:`OnePassNorm` computing ``module`` (ILN, TF's affine instance norm), else None."""
    if isinstance(module, ILN):
        return OnePassNorm(module.eps, int(module.unbiased_var), module.rho, module.gamma, module.beta)
    if isinstance(module, AffineInstanceNorm):
        shape = (1, module.num_features, 1, 1)
        return OnePassNorm(module.eps, 0, gamma=module.weight.view(shape), beta=module.bias.view(shape))
    return None


def _fused_sequential(seq: nn.Sequential) -> nn.Sequential:
    """Norms -> :class:`OnePassNorm` with a following ReLU folded in; residual blocks recursively."""
    items, out, i = list(seq), [], 0
    while i < len(items):
        norm = _one_pass(items[i])
        if norm is None:
            if isinstance(items[i], ResnetBlock):
                items[i].conv_block = _fused_sequential(items[i].conv_block)
            out.append(items[i])
            i += 1
            continue
        norm.relu = i + 1 < len(items) and isinstance(items[i + 1], nn.ReLU)
        out.append(norm)
        i += 1 + norm.relu
    return nn.Sequential(*out)


class FusedAdaILNBlock(nn.Module):
    """:class:`ResnetAdaILNBlock` with one-pass AdaLIN norms (ReLU folded into the first)."""

    def __init__(self, block: ResnetAdaILNBlock) -> None:
        super().__init__()
        self.pad, self.conv1, self.conv2 = block.pad1, block.conv1, block.conv2
        n1, n2 = block.norm1, block.norm2
        self.norm1 = OnePassNorm(n1.eps, int(n1.unbiased_var), n1.rho, relu=True)
        self.norm2 = OnePassNorm(n2.eps, int(n2.unbiased_var), n2.rho)

    def forward(self, x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
        out = self.norm1(self.conv1(self.pad(x)), gamma, beta)
        return self.norm2(self.conv2(self.pad(out)), gamma, beta).add_(x)


class FusedGenerator(nn.Module):
    """:class:`ResnetGenerator` with the CAM re-weighting folded into the 1x1 conv (exact: both are
    linear) and one-pass norms. Built from an eval-mode generator whose tensors it shares (the full
    model's 1 GB FC weight is not copied); same call and outputs."""

    def __init__(self, g: ResnetGenerator) -> None:
        super().__init__()
        self.light = g.light
        self.DownBlock = _fused_sequential(g.DownBlock)
        self.gap_fc, self.gmp_fc, self.FC, self.gamma, self.beta = g.gap_fc, g.gmp_fc, g.FC, g.gamma, g.beta
        # conv1x1(cat[x * w_gap, x * w_gmp]) = conv1x1'(x) with W' = W[:, :C] * w_gap + W[:, C:] * w_gmp.
        c = g.conv1x1.out_channels
        w = g.conv1x1.weight[:, :, 0, 0]
        self.conv1x1 = nn.Conv2d(c, c, 1, bias=True, dtype=w.dtype).to(w.device)
        with torch.no_grad():
            gap, gmp = g._cam_weight(g.gap_fc)[:, :, 0, 0], g._cam_weight(g.gmp_fc)[:, :, 0, 0]
            self.conv1x1.weight.copy_((w[:, :c] * gap + w[:, c:] * gmp)[:, :, None, None])
            self.conv1x1.bias.copy_(g.conv1x1.bias)
        self.blocks = nn.ModuleList(
            FusedAdaILNBlock(getattr(g, f"UpBlock1_{k + 1}")) for k in range(g.n_blocks)
        )
        self.UpBlock2 = _fused_sequential(g.UpBlock2)

    def forward(self, input: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.DownBlock(input)
        gap_logit = self.gap_fc(x.mean(dim=(2, 3)))
        gmp_logit = self.gmp_fc(x.amax(dim=(2, 3)))
        x = self.conv1x1(x).relu_()
        heatmap = torch.sum(x, dim=1, keepdim=True)
        x_ = x.mean(dim=(2, 3)) if self.light else x.contiguous().flatten(1)  # (C, H, W) order
        x_ = self.FC(x_)
        gamma, beta = self.gamma(x_), self.beta(x_)
        for block in self.blocks:
            x = block(x, gamma, beta)
        return self.UpBlock2(x), torch.cat([gap_logit, gmp_logit], 1), heatmap


def fused(generator: ResnetGenerator) -> FusedGenerator:
    """The fused inference form of an eval-mode ``generator`` (a shared copy: see runtime.optimise)."""
    return FusedGenerator(generator).eval()


# ------------------------------------------------------------------------------ TF original's key map


def tf_key_rules(s: str, n_res: int, light: bool) -> list[tuple[str, str, str]]:
    """(state-dict key, TF variable, layout op) for taki0112's generator under scope ``s`` (e.g.
    ``generator_B/``) with ``n_res`` blocks; ops are convert.tf_plans' (kernel, dense, fc_nhwc, vec,
    rho_ada, rho_lin, copy). shared/reference/tf-import.md §3.2."""

    def conv(tf: str, key: str) -> list[tuple[str, str, str]]:
        return [
            (f"{key}.weight", f"{s}{tf}/conv2d/kernel", "kernel"),
            (f"{key}.bias", f"{s}{tf}/conv2d/bias", "copy"),
        ]

    def affine(tf: str, key: str) -> list[tuple[str, str, str]]:
        return [(f"{key}.weight", f"{s}{tf}/gamma", "copy"), (f"{key}.bias", f"{s}{tf}/beta", "copy")]

    def dense(tf: str, key: str, op: str = "dense") -> list[tuple[str, str, str]]:
        return [
            (f"{key}.weight", f"{s}{tf}/dense/kernel", op),
            (f"{key}.bias", f"{s}{tf}/dense/bias", "copy"),
        ]

    rules = conv("conv", "DownBlock.1") + affine("ins_norm", "DownBlock.2")
    rules += conv("conv_0", "DownBlock.5") + affine("ins_norm_0", "DownBlock.6")
    rules += conv("conv_1", "DownBlock.9") + affine("ins_norm_1", "DownBlock.10")
    for i in range(n_res):
        block, tf = f"DownBlock.{12 + i}.conv_block", f"resblock_{i}"
        rules += conv(f"{tf}/res1/conv_0", f"{block}.1") + affine(f"{tf}/res1/instance_norm", f"{block}.2")
        rules += conv(f"{tf}/res2/conv_0", f"{block}.5") + affine(f"{tf}/res2/instance_norm", f"{block}.6")
    for fc in ("gap_fc", "gmp_fc"):  # one TF CAM layer, re-used for both pooled branches
        rules += [
            (f"{fc}.weight", f"{s}CAM_logit/kernel", "dense"),
            (f"{fc}.bias", f"{s}CAM_logit/bias", "copy"),
        ]
    rules += conv("conv_1x1", "conv1x1")
    rules += dense("MLP/linear_0", "FC.0", "dense" if light else "fc_nhwc") + dense("MLP/linear_1", "FC.2")
    rules += dense("MLP/gamma", "gamma") + dense("MLP/beta", "beta")
    for i in range(n_res):
        block, tf = f"UpBlock1_{i + 1}", f"adaptive_resblock{i}"
        for half, n in (("res1", 1), ("res2", 2)):
            rules += conv(f"{tf}/{half}/conv_0", f"{block}.conv{n}")
            rules.append((f"{block}.norm{n}.rho", f"{s}{tf}/{half}/instance_layer_norm/rho", "rho_ada"))
    for j, (conv_i, norm_i) in enumerate(((2, 3), (7, 8))):
        rules += conv(f"up_conv_{j}", f"UpBlock2.{conv_i}")
        rules.append((f"UpBlock2.{norm_i}.rho", f"{s}layer_ins_norm_{j}/rho", "rho_lin"))
        rules += [(f"UpBlock2.{norm_i}.{p}", f"{s}layer_ins_norm_{j}/{p}", "vec") for p in ("gamma", "beta")]
    return rules + conv("G_logit", "UpBlock2.11")
