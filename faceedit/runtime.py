"""Running a loaded model on a device: device and precision, the fast copy of the generator, batched calls.

``api`` builds one :class:`Engine` per process and feeds it face crops ``[N,3,S,S]`` float in ``[-1, 1]``.
:func:`optimise` returns a copy of a generator that computes the same function with fewer passes over
memory (equal within 1e-4 in fp32: tests/test_runtime.py; figures: benchmarks/generators.py).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from faceedit.errors import UsageError

if TYPE_CHECKING:
    from faceedit.models import FaceModel

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
# What ``auto`` means per device type, chosen by measurement (benchmarks/generators.py, README):
# on the CPU fp32 (bf16 without AVX512-BF16/AMX runs ~100x slower than fp32; where those exist the gain is
# unmeasured, so it stays opt-in); on CUDA fp16 autocast (image differences in the README's table).
AUTO_PRECISION = {"cpu": "fp32", "cuda": "fp16"}
NNPACK_MODES = ("off", "auto", "always")
# Memory layout of the fast path per (device type, arch), by measurement: on the CPU channels_last speeds
# up oneDNN's transposed convs (AttGAN, STGAN) while NNPACK needs NCHW (StarGAN, U-GAT-IT).
CHANNELS_LAST = {
    "cpu": {"stargan": False, "attgan": True, "stgan": True, "ugatit": False},
    "cuda": {"stargan": True, "attgan": True, "stgan": True, "ugatit": True},
}
_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def resolve_device(spec: str | None = "auto") -> torch.device:
    """``auto`` -> the first CUDA device when there is one, else the CPU; ``cuda[:N]`` is checked."""
    text = (spec or "auto").strip().lower()
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise UsageError(f"unknown device {spec!r}", "use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError("CUDA was asked for but is not available here", "use --device cpu (or auto)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UsageError(
                f"there is no {device} (this machine has {torch.cuda.device_count()} CUDA device(s))",
                "use --device cuda:0 or auto",
            )
    elif device.type != "cpu":
        raise UsageError(f"device {spec!r} is not supported", "use auto, cpu, cuda or cuda:N")
    return device


def resolve_precision(spec: str | None, device: torch.device) -> torch.dtype:
    """``auto`` -> :data:`AUTO_PRECISION` of the device; bf16 works on CPU and CUDA, fp16 on CUDA only."""
    text = (spec or "auto").strip().lower()
    if text not in PRECISIONS:
        raise UsageError(f"unknown precision {spec!r}", f"use one of {', '.join(PRECISIONS)}")
    if text == "auto":
        text = AUTO_PRECISION.get(device.type, "fp32")
    if text == "fp16" and device.type != "cuda":
        raise UsageError("fp16 needs a CUDA device", "use --precision fp32 (or bf16 on a CPU with AMX)")
    return getattr(torch, _DTYPES[text])


def cpu_has_native_bf16() -> bool:
    """True when oneDNN has bf16 kernels for this CPU (AVX512-BF16 or AMX); else bf16 is emulated."""
    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    try:
        return bool(check()) if check is not None else False
    except RuntimeError:
        return False


def precision_note(device: torch.device, dtype: torch.dtype) -> str | None:
    """A warning worth printing for this choice (bf16 on a CPU that only emulates it), else None."""
    if device.type == "cpu" and dtype == torch.bfloat16 and not cpu_has_native_bf16():
        return (
            "this CPU has no native bf16 (AVX512-BF16/AMX): bf16 runs about 100x slower than fp32 here; "
            "use --precision fp32"
        )
    return None


def precision_name(dtype: torch.dtype) -> str:
    return {"torch.float32": "fp32", "torch.bfloat16": "bf16", "torch.float16": "fp16"}[str(dtype)]


# ------------------------------------------------------------------------------------ fast modules


def nnpack_pays(batch: int, c_in: int, c_out: int, pixels: int) -> bool:
    """Whether NNPACK (Winograd / FFT) beats oneDNN for a stride-1 fp32 conv on the CPU, by measurement
    (benchmarks/generators.py, 2-core AVX2 EPYC): 1.2-1.5x for 3x3 and 7x7 kernels from 8 images of at
    least 16x16 on; 1.5-1.9x for one image of at least 64x64 with 16+ input channels; 2.4-2.9x for
    7x7 layers down to RGB at any batch; 1.2-1.7x for 7x7 layers from RGB (+ labels) from 4 images on.
    Slower for 2-4 images of wide layers, for one image from RGB, and for maps under 16x16."""
    if c_in < 16:
        return batch >= 4
    if c_out < 16:
        return True
    if batch >= 8:
        return pixels >= 16 * 16
    return batch == 1 and pixels >= 64 * 64


@functools.cache
def nnpack_ready() -> bool:
    """NNPACK is built in and initialised (its op fails until ``_nnpack_available`` has run once)."""
    try:
        return bool(torch._nnpack_available())
    except (AttributeError, RuntimeError):
        return False


def _activation(module: nn.Module) -> tuple[str, float] | None:
    """(name, slope) of an element-wise activation module that can run in place, else None."""
    if isinstance(module, nn.ReLU):
        return ("relu", 0.0)
    if isinstance(module, nn.LeakyReLU):
        return ("lrelu", float(module.negative_slope))
    if isinstance(module, nn.Sigmoid):
        return ("sigmoid", 0.0)
    if isinstance(module, nn.Tanh):
        return ("tanh", 0.0)
    return None


def _apply_act(y: torch.Tensor, act: tuple[str, float] | None) -> torch.Tensor:
    if act is None:
        return y
    name, slope = act
    if name == "relu":
        return y.relu_()
    if name == "lrelu":
        return F.leaky_relu_(y, slope)
    return torch.sigmoid_(y) if name == "sigmoid" else torch.tanh_(y)


class Conv(nn.Module):
    """A convolution or transposed convolution with fixed weights (eval BatchNorm folded in), followed by
    an optional in-place activation. ``nnpack``: "auto" sends stride-1 fp32 convs on the CPU to NNPACK
    where :func:`nnpack_pays`, "always" wherever it can run (tests), "off" never.
    """

    def __init__(
        self,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        *,
        stride: tuple[int, int],
        padding: tuple[int, int],
        transposed: bool = False,
        output_padding: tuple[int, int] = (0, 0),
        act: tuple[str, float] | None = None,
        nnpack: str = "off",
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        self.register_buffer("weight", weight.detach().contiguous(memory_format=fmt))
        self.register_buffer("bias", None if bias is None else bias.detach().contiguous())
        self.stride, self.padding, self.output_padding = stride, padding, output_padding
        self.transposed, self.act = transposed, act
        stride_one = tuple(stride) == (1, 1) and not transposed
        self.nnpack = nnpack if stride_one and nnpack != "off" and nnpack_ready() else "off"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _apply_act(self._conv(x), self.act)

    def _conv(self, x: torch.Tensor) -> torch.Tensor:
        if self.nnpack != "off" and self._nnpack_for(x):
            try:
                return torch._nnpack_spatial_convolution(x, self.weight, self.bias, list(self.padding))
            except RuntimeError:  # a shape NNPACK refuses: oneDNN takes it from now on
                self.nnpack = "off"
        if self.transposed:
            return F.conv_transpose2d(
                x, self.weight, self.bias, self.stride, self.padding, self.output_padding
            )
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding)

    def _nnpack_for(self, x: torch.Tensor) -> bool:
        if not _nnpack_input(x, self.weight):
            return False
        c_out, c_in = self.weight.shape[:2]
        return self.nnpack == "always" or nnpack_pays(x.shape[0], c_in, c_out, x.shape[2] * x.shape[3])


def _nnpack_input(x: torch.Tensor, weight: torch.Tensor) -> bool:
    return (
        x.device.type == "cpu"
        and x.dtype == torch.float32
        and weight.dtype == torch.float32
        and x.is_contiguous()
        and not torch.is_autocast_enabled("cpu")
    )


def _folded(conv: nn.Module, bn: nn.Module | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Weights and bias of ``bn(conv(x))`` as one convolution (eval BatchNorm is an affine map)."""
    weight, bias = conv.weight, conv.bias
    if bn is None:
        return weight, bias
    scale = bn.running_var.add(bn.eps).rsqrt()
    if bn.weight is not None:
        scale = scale * bn.weight
    shift = -bn.running_mean * scale
    if bn.bias is not None:
        shift = shift + bn.bias
    transposed = isinstance(conv, nn.ConvTranspose2d)
    shape = (1, -1, 1, 1) if transposed else (-1, 1, 1, 1)
    with torch.no_grad():
        return weight * scale.reshape(shape), shift if bias is None else bias * scale + shift


def _foldable_bn(module: nn.Module) -> bool:
    return (
        isinstance(module, nn.BatchNorm2d)
        and not module.training
        and module.track_running_stats
        and module.running_mean is not None
    )


def fast_conv(
    conv: nn.Module,
    bn: nn.Module | None = None,
    act: tuple[str, float] | None = None,
    *,
    nnpack: str = "off",
    channels_last: bool = False,
) -> Conv:
    """``act(bn(conv(x)))`` as one :class:`Conv` (``conv``: an ``nn.Conv2d`` or ``nn.ConvTranspose2d``)."""
    if conv.groups != 1 or tuple(conv.dilation) != (1, 1) or conv.padding_mode != "zeros":
        raise ValueError(f"unsupported convolution {conv}")
    weight, bias = _folded(conv, bn)
    transposed = isinstance(conv, nn.ConvTranspose2d)
    padding = tuple(conv.padding)
    if transposed and tuple(conv.stride) == (1, 1) and tuple(conv.output_padding) == (0, 0):
        # A stride-1 transposed conv is a conv with the kernel flipped and in/out swapped (STGAN's last).
        k = weight.shape[-2:]
        weight = weight.transpose(0, 1).flip(2, 3)
        padding, transposed = (k[0] - 1 - padding[0], k[1] - 1 - padding[1]), False
    return Conv(
        weight,
        bias,
        stride=tuple(conv.stride),
        padding=padding,
        transposed=transposed,
        output_padding=tuple(conv.output_padding) if transposed else (0, 0),
        act=act,
        nnpack=nnpack,
        channels_last=channels_last,
    )


def _fuse_sequential(seq: nn.Sequential, options: dict[str, Any]) -> nn.Sequential:
    """Conv [+ eval BatchNorm] [+ activation] runs -> :class:`Conv`; norms -> fused norms; recursive."""
    items, out, i = list(seq), [], 0
    while i < len(items):
        module = items[i]
        if isinstance(module, nn.Conv2d | nn.ConvTranspose2d):
            bn = items[i + 1] if i + 1 < len(items) and _foldable_bn(items[i + 1]) else None
            j = i + 1 + (bn is not None)
            act = _activation(items[j]) if j < len(items) else None
            out.append(fast_conv(module, bn, act, **options))
            i = j + (act is not None)
            continue
        norm = _fast_norm(module, options["channels_last"])
        if norm is not None:
            act = _activation(items[i + 1]) if i + 1 < len(items) else None
            norm.relu = act is not None and act[0] == "relu"
            out.append(norm)
            i += 1 + norm.relu
            continue
        _fuse_children(module, options)
        out.append(module)
        i += 1
    return nn.Sequential(*out)


def _fuse_children(module: nn.Module, options: dict[str, Any]) -> None:
    for name, child in module.named_children():
        if isinstance(child, nn.Sequential):
            setattr(module, name, _fuse_sequential(child, options))
        else:
            _fuse_children(child, options)


class FastNorm(nn.Module):
    """The generators' per-image norms from one statistics pass and one ``x*a + b`` pass (+ ReLU).

    ``rho`` mixes instance and layer statistics (U-GAT-IT's LIN/AdaLIN; 1 = instance norm); layer
    statistics are derived exactly from the per-channel ones; ``correction`` 1 = torch.var's unbiased
    divisor. ``gamma``/``beta`` are per channel ``[1,C,1,1]`` or come per image with the call ``[N,C]``.
    """

    def __init__(
        self,
        eps: float,
        correction: int,
        rho: torch.Tensor | None = None,
        gamma: torch.Tensor | None = None,
        beta: torch.Tensor | None = None,
        relu: bool = False,
    ) -> None:
        super().__init__()
        self.eps, self.correction, self.relu = float(eps), int(correction), relu
        for name, value in (("rho", rho), ("gamma", gamma), ("beta", beta)):
            self.register_buffer(name, None if value is None else value.detach())  # shared, not copied

    def forward(
        self, x: torch.Tensor, gamma: torch.Tensor | None = None, beta: torch.Tensor | None = None
    ) -> torch.Tensor:
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


def _fast_norm(module: nn.Module, channels_last: bool = False) -> FastNorm | None:
    """A :class:`FastNorm` computing ``module``, else None: U-GAT-IT's ILN and TF instance norm always;
    per-image instance norms too in channels_last (PyTorch's would copy to NCHW and back each time)."""
    from faceedit.models import ugatit
    from faceedit.models.layers import InstanceNorm2dPerImage

    if isinstance(module, ugatit.ILN):
        return FastNorm(module.eps, int(module.unbiased_var), module.rho, module.gamma, module.beta)
    per_image = isinstance(module, InstanceNorm2dPerImage) or (
        isinstance(module, nn.InstanceNorm2d) and not module.track_running_stats
    )
    if isinstance(module, ugatit.AffineInstanceNorm) or (channels_last and per_image):
        shape = (1, module.num_features, 1, 1)
        weight, bias = (module.weight, module.bias) if module.affine else (None, None)
        return FastNorm(
            module.eps,
            0,
            gamma=None if weight is None else weight.view(shape),
            beta=None if bias is None else bias.view(shape),
        )
    return None


def _shared_copy(module: nn.Module) -> nn.Module:
    """A copy of the module tree that shares every parameter and buffer with ``module`` (no tensor copied)."""
    memo: dict[int, Any] = {id(t): t for t in module.parameters()}
    memo.update({id(t): t for t in module.buffers()})
    return copy.deepcopy(module, memo)


class FastSTU(nn.Module):
    """STGAN's selective transfer unit with the reset and update gates as one convolution (same inputs)."""

    def __init__(self, cell: nn.Module, options: dict[str, Any]) -> None:
        super().__init__()
        self.upsample = fast_conv(cell.upsample, **options)
        parts = [self._gate_parts(cell.reset_gate), self._gate_parts(cell.update_gate)]
        weight = torch.cat([parts[0][0], parts[1][0]])
        bias = None if parts[0][1] is None else torch.cat([parts[0][1], parts[1][1]])
        conv = cell.reset_gate[0]
        self.gates = Conv(
            weight, bias, stride=(1, 1), padding=tuple(conv.padding), act=("sigmoid", 0.0), **options
        )
        self.hidden = _fuse_sequential(cell.hidden, options)

    @staticmethod
    def _gate_parts(gate: nn.Sequential) -> tuple[torch.Tensor, torch.Tensor | None]:
        return _folded(gate[0], gate[1] if len(gate) == 3 else None)

    def forward(
        self, input: torch.Tensor, old_state: torch.Tensor, attr: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        from faceedit.models.layers import tile

        state_hat = self.upsample(torch.cat([old_state, tile(attr, old_state)], dim=1))
        r, z = self.gates(torch.cat([input, state_hat], dim=1)).chunk(2, dim=1)
        new_state = r * state_hat
        hidden = self.hidden(torch.cat([input, new_state], dim=1))
        return torch.lerp(state_hat, hidden, z), new_state


class FastResnetAdaILNBlock(nn.Module):
    """U-GAT-IT's AdaLIN residual block with fast convs and one-pass norms (ReLU fused into the first)."""

    def __init__(self, block: nn.Module, options: dict[str, Any]) -> None:
        super().__init__()
        self.pad = block.pad1
        self.conv1 = fast_conv(block.conv1, **options)
        self.conv2 = fast_conv(block.conv2, **options)
        n1, n2 = block.norm1, block.norm2
        self.norm1 = FastNorm(n1.eps, int(n1.unbiased_var), n1.rho, relu=True)
        self.norm2 = FastNorm(n2.eps, int(n2.unbiased_var), n2.rho)

    def forward(self, x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
        out = self.norm1(self.conv1(self.pad(x)), gamma, beta)
        return self.norm2(self.conv2(self.pad(out)), gamma, beta).add_(x)


class FastUGATIT(nn.Module):
    """U-GAT-IT's generator with the CAM re-weighting folded into the 1x1 conv (exact: both are linear)."""

    def __init__(self, g: nn.Module, options: dict[str, Any]) -> None:
        super().__init__()
        self.light = g.light
        self.DownBlock = _fuse_sequential(g.DownBlock, options)
        self.gap_fc, self.gmp_fc, self.FC, self.gamma, self.beta = g.gap_fc, g.gmp_fc, g.FC, g.gamma, g.beta
        # conv1x1(cat[x * w_gap, x * w_gmp]) = conv1x1'(x) with W' = W[:, :C] * w_gap + W[:, C:] * w_gmp.
        c = g.conv1x1.out_channels
        w = g.conv1x1.weight[:, :, 0, 0]
        with torch.no_grad():
            gap, gmp = g._cam_weight(g.gap_fc)[:, :, 0, 0], g._cam_weight(g.gmp_fc)[:, :, 0, 0]
            merged = (w[:, :c] * gap + w[:, c:] * gmp)[:, :, None, None]
        self.conv1x1 = Conv(
            merged,
            g.conv1x1.bias,
            stride=(1, 1),
            padding=(0, 0),
            act=("relu", 0.0),
            channels_last=options["channels_last"],
        )
        self.blocks = nn.ModuleList(
            FastResnetAdaILNBlock(getattr(g, f"UpBlock1_{k + 1}"), options) for k in range(g.n_blocks)
        )
        self.UpBlock2 = _fuse_sequential(g.UpBlock2, options)

    def forward(self, input: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.DownBlock(input)
        gap_logit = self.gap_fc(x.mean(dim=(2, 3)))
        gmp_logit = self.gmp_fc(x.amax(dim=(2, 3)))
        x = self.conv1x1(x)
        heatmap = torch.sum(x, dim=1, keepdim=True)
        x_ = x.mean(dim=(2, 3)) if self.light else x.contiguous().flatten(1)  # (C, H, W) order
        x_ = self.FC(x_)
        gamma, beta = self.gamma(x_), self.beta(x_)
        for block in self.blocks:
            x = block(x, gamma, beta)
        return self.UpBlock2(x), torch.cat([gap_logit, gmp_logit], 1), heatmap


def optimise(
    generator: nn.Module, arch: str, *, nnpack: str = "off", channels_last: bool = False
) -> nn.Module:
    """A fast copy of ``generator`` (eval mode, same call signature and outputs); ``generator`` is left
    untouched and shares its unchanged tensors (U-GAT-IT's 1 GB FC weight is not copied)."""
    if nnpack not in NNPACK_MODES:
        raise ValueError(f"nnpack must be one of {NNPACK_MODES}, not {nnpack!r}")
    options = {"nnpack": nnpack, "channels_last": channels_last}
    if generator.training:
        raise ValueError("optimise() folds eval-mode statistics: call generator.eval() first")
    fast = _shared_copy(generator)
    if arch == "ugatit":
        return FastUGATIT(fast, options).eval()
    _fuse_children(fast, options)
    if arch == "stgan" and getattr(fast, "use_stu", False):
        fast.stu = nn.ModuleList(FastSTU(cell, options) for cell in fast.stu)
    return fast.eval()


_optimise = optimise  # Engine's keyword argument of the same name hides the function


# ------------------------------------------------------------------------------------------ engine


@dataclass
class GeneratorOutput:
    """Generated images ``[N,3,S,S]`` (float32, CPU, tanh range) and U-GAT-IT's CAM heatmaps [N,1,h,w]."""

    images: torch.Tensor
    heatmaps: torch.Tensor | None = None


class _Graphed:
    """One CUDA graph per input shape: inputs copied into static buffers, the captured forward replayed."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn
        self.graphs: dict[tuple[Any, ...], tuple[Any, list[Any], Any]] = {}

    def __call__(self, *args: torch.Tensor) -> Any:
        key = tuple((tuple(a.shape), a.dtype, a.stride()) for a in args)
        if key not in self.graphs:
            self.graphs[key] = self._capture(args)
        graph, static_in, static_out = self.graphs[key]
        for buffer, a in zip(static_in, args, strict=True):
            buffer.copy_(a)
        graph.replay()
        return static_out

    def _capture(self, args: tuple[torch.Tensor, ...]) -> tuple[Any, list[Any], Any]:
        static_in = [a.clone() for a in args]
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(3):  # warm-up outside the graph (cuDNN autotuning, lazy init)
                self.fn(*static_in)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        # thread_local: CUDA work of other threads (a detector on the GPU) must not break the capture.
        with torch.cuda.graph(graph, capture_error_mode="thread_local"):
            static_out = self.fn(*static_in)
        return graph, static_in, static_out


class _CompiledOrEager:
    """``torch.compile(module)``, falling back to the eager module for good if compiling fails (no C++
    toolchain, an unsupported op): the run goes on, and the reason is kept in ``notes``."""

    def __init__(self, module: Callable[..., Any], notes: list[str]) -> None:
        self.eager, self.notes = module, notes
        self.compiled: Callable[..., Any] | None = torch.compile(module, dynamic=False)

    def __call__(self, *args: Any) -> Any:
        if self.compiled is not None:
            try:
                return self.compiled(*args)
            except Exception as e:  # inductor raises many kinds; the eager call below re-raises real bugs
                out = self.eager(*args)
                self.compiled = None
                why = (str(e).strip().splitlines() or [type(e).__name__])[0][:100]
                self.notes.append(f"--compile failed ({why}): running eager")
                warnings.warn(self.notes[-1], stacklevel=2)
                return out
        return self.eager(*args)


class Engine:
    """A :class:`~faceedit.models.FaceModel` placed on a device, run in batches under inference mode.

    ``optimise`` runs the fast copy of the generator (:func:`optimise`); ``compile`` wraps it in
    ``torch.compile``; ``cuda_graphs`` replays captured CUDA graphs (fixed batch shapes: the last batch
    is padded). The model's own modules stay as they were (``model.generator`` is the reference path).
    """

    def __init__(
        self,
        model: FaceModel,
        device: str | None = "auto",
        precision: str | None = "auto",
        *,
        optimise: bool = True,
        compile: bool = False,
        cuda_graphs: bool = False,
        channels_last: bool | None = None,
        nnpack: str = "auto",
    ) -> None:
        self.model = model
        self.device = resolve_device(device)
        self.dtype = resolve_precision(precision, self.device)
        self.notes = [n for n in [precision_note(self.device, self.dtype)] if n]
        model.generator.to(self.device).eval()
        if model.classifier is not None:
            model.classifier.to(self.device).eval()
        arch = model.config["arch"]
        on_cuda = self.device.type == "cuda"
        layout = CHANNELS_LAST.get(self.device.type, {}).get(arch, False)
        self.channels_last = layout if channels_last is None else channels_last
        self.generator: Callable[..., Any] = model.generator
        if optimise:
            # NNPACK only for eager fp32 on the CPU (torch.compile picks its own kernels).
            cpu_fp32 = self.device.type == "cpu" and self.dtype == torch.float32
            self.generator = _optimise(
                model.generator,
                arch,
                nnpack=nnpack if cpu_fp32 and not compile else "off",
                channels_last=self.channels_last,
            )
        if compile:
            self.generator = self._compiled(self.generator)
        self.cuda_graphs = bool(cuda_graphs) and on_cuda
        if cuda_graphs and not on_cuda:
            self.notes.append("--cuda-graphs needs a CUDA device: ignored")
        self._graphed = _Graphed(self._forward) if self.cuda_graphs else None
        self._fp32_fallback_warned = False

    @property
    def config(self) -> dict[str, Any]:
        return self.model.config

    @property
    def precision(self) -> str:
        return precision_name(self.dtype)

    def _compiled(self, module: Callable[..., Any]) -> Callable[..., Any]:
        return _CompiledOrEager(module, self.notes)

    # -------------------------------------------------------------------------------- execution

    @contextlib.contextmanager
    def _precision_context(self, dtype: torch.dtype) -> Iterator[None]:
        """Autocast for bf16/fp16; on CUDA cuDNN autotuning (fixed batch shapes) and, for fp32, true
        fp32 convs and matmuls (TF32 off)."""
        with contextlib.ExitStack() as stack:
            if dtype != torch.float32:
                # The autocast weight cache must stay off while a CUDA graph is captured.
                stack.enter_context(
                    torch.autocast(self.device.type, dtype=dtype, cache_enabled=not self.cuda_graphs)
                )
            if self.device.type == "cuda":
                stack.enter_context(cuda_flags(benchmark=True, tf32=dtype != torch.float32))
            yield

    def _forward(self, xb: torch.Tensor, cb: torch.Tensor | None = None) -> tuple[torch.Tensor, Any]:
        """``G`` on one device batch -> (images [B,3,S,S], heatmaps [B,1,h,w] or None), in float32."""
        with self._precision_context(self.dtype):
            out = self.generator(xb) if cb is None else self.generator(xb, cb)
        if isinstance(out, tuple):  # U-GAT-IT: (image, cam_logit, heatmap)
            return out[0].float(), out[2].float()
        return out.float(), None

    def _place(self, x: torch.Tensor) -> torch.Tensor:
        if self.device.type == "cuda" and not x.is_cuda:
            x = x.pin_memory().to(self.device, non_blocking=True)
        else:
            x = x.to(self.device)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def _chunks(
        self, x: torch.Tensor, extra: np.ndarray | None, batch_size: int
    ) -> Iterator[tuple[int, Any, Any]]:
        """(real size, images, labels) per chunk; with CUDA graphs the last chunk is padded to size."""
        step = max(1, batch_size)
        for start in range(0, x.shape[0], step):
            xb = x[start : start + step]
            cb = None if extra is None else torch.as_tensor(extra[start : start + step], dtype=torch.float32)
            n = xb.shape[0]
            if self.cuda_graphs and n < step and x.shape[0] > step:
                xb = torch.cat([xb, xb[-1:].expand(step - n, *xb.shape[1:])])
                cb = None if cb is None else torch.cat([cb, cb[-1:].expand(step - n, *cb.shape[1:])])
            yield n, self._place(xb), None if cb is None else cb.to(self.device)

    def generate(
        self, x: torch.Tensor, cond: np.ndarray | None = None, batch_size: int = 16
    ) -> GeneratorOutput:
        """``G(x, cond)`` (or ``G(x)`` for U-GAT-IT) over ``x`` ``[N,3,S,S]`` in chunks of ``batch_size``."""
        images, heatmaps = [], []
        with torch.inference_mode():
            for n, xb, cb in self._chunks(x, cond, batch_size):
                out, heat = self._run(xb, cb)
                images.append(out[:n].cpu())
                if heat is not None:
                    heatmaps.append(heat[:n].cpu())
        return GeneratorOutput(torch.cat(images), torch.cat(heatmaps) if heatmaps else None)

    def _run(self, xb: torch.Tensor, cb: torch.Tensor | None) -> tuple[torch.Tensor, Any]:
        """One batch through the fast path; a graph's outputs are its static buffers (read them now)."""
        args = (xb,) if cb is None else (xb, cb)
        if self._graphed is not None:
            try:
                out, heat = self._graphed(*args)
            except RuntimeError as e:  # capture refused (an op that syncs, a driver limit): run eager
                self._graphed = None
                self.notes.append(f"CUDA graph capture failed ({str(e).splitlines()[0][:100]}): eager")
                warnings.warn(self.notes[-1], stacklevel=2)
                out, heat = self._forward(*args)
        else:
            out, heat = self._forward(*args)
        if self.dtype == torch.float16 and not bool(torch.isfinite(out).all()):
            # fp16 overflowed somewhere in this batch: redo it in fp32 rather than paste garbage.
            if not self._fp32_fallback_warned:
                warnings.warn("fp16 overflowed on a batch; it was recomputed in fp32", stacklevel=2)
                self._fp32_fallback_warned = True
            with cuda_flags(benchmark=True, tf32=False):
                out = self.generator(xb) if cb is None else self.generator(xb, cb)
            out, heat = (out[0].float(), out[2].float()) if isinstance(out, tuple) else (out.float(), heat)
        return out, heat

    def classify(self, x: torch.Tensor, batch_size: int = 16) -> np.ndarray | None:
        """Attribute logits ``[N,A]`` from the model's classifier, or None when it has none."""
        if self.model.classifier is None:
            return None
        logits = []
        with torch.inference_mode(), self._precision_context(self.dtype):
            for start in range(0, x.shape[0], max(1, batch_size)):
                xb = x[start : start + batch_size].to(self.device)
                logits.append(self.model.classifier(xb).float().cpu())
        return torch.cat(logits).numpy()


@contextlib.contextmanager
def cuda_flags(benchmark: bool = False, tf32: bool = False) -> Iterator[None]:
    """cuDNN autotuning on or off, and TF32 for convs and matmuls: fp32 means fp32 (cuDNN convs default
    to TF32 on Ampere and later, ~1e-3 relative). The previous settings come back afterwards."""
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # newer torch nudges towards fp32_precision; these still work
        saved = cudnn.benchmark, cudnn.allow_tf32, matmul.allow_tf32
        cudnn.benchmark, cudnn.allow_tf32, matmul.allow_tf32 = benchmark, tf32, tf32
    try:
        yield
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cudnn.benchmark, cudnn.allow_tf32, matmul.allow_tf32 = saved
