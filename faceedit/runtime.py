"""Running a loaded model on a device: device and precision, the fast copy of the generator, batched calls.

``api`` builds one :class:`Engine` per process and feeds it face crops ``[N,3,S,S]`` float in ``[-1, 1]``.
:func:`optimise` returns a copy of a generator that computes the same function with fewer passes over
memory (equal within 1e-4 in fp32: tests/test_runtime.py; figures: benchmarks/generators.py).
"""

from __future__ import annotations

import contextlib
import copy
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from faceedit.errors import UsageError

if TYPE_CHECKING:
    from faceedit.models import FaceModel

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
# What ``auto`` means per device type, chosen by measurement (benchmarks/generators.py, README):
# on the CPU fp32 (bf16 without AVX512-BF16/AMX runs ~100x slower than fp32; where those exist the gain is
# unmeasured, so it stays opt-in); on CUDA fp16 autocast (image differences in the README's table).
AUTO_PRECISION = {"cpu": "fp32", "cuda": "fp16"}
# Memory layout of the fast path per (device type, arch), by measurement: on the CPU channels_last speeds
# up oneDNN's transposed convs (AttGAN, STGAN).
CHANNELS_LAST = {
    "cpu": {"stargan": False, "attgan": True, "stgan": True, "ugatit": False},
    "cuda": {"stargan": True, "attgan": True, "stgan": True, "ugatit": True},
}
_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def resolve_device(spec: str | None = "auto", local_rank: int | None = None) -> torch.device:
    """``auto`` -> the first CUDA device when there is one, else the CPU; ``cuda[:N]`` is checked.
    ``local_rank`` (torchrun) picks the GPU that ``auto``/``cuda`` mean for this process."""
    text = (spec or "auto").strip().lower()
    if text == "auto":
        text = "cuda" if torch.cuda.is_available() else "cpu"
    if text == "cuda" and local_rank is not None and torch.cuda.is_available():
        text = f"cuda:{local_rank}"
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


# ------------------------------------------------------------------------------------ fast copy


def _fold_batchnorm(module: nn.Module) -> None:
    """Every ``conv -> eval BatchNorm`` pair inside an ``nn.Sequential`` becomes one convolution
    (torch.nn.utils.fusion), recursively, and a ReLU right after a conv runs in place; the folded
    convs are new modules, every other tensor is shared."""
    for name, child in module.named_children():
        if isinstance(child, nn.Sequential):
            setattr(module, name, _folded_sequential(child))
        else:
            _fold_batchnorm(child)


def _folded_sequential(seq: nn.Sequential) -> nn.Sequential:
    out: list[nn.Module] = []
    for item in seq:
        after_conv = bool(out) and isinstance(out[-1], nn.Conv2d | nn.ConvTranspose2d)
        if isinstance(item, nn.BatchNorm2d) and after_conv and _foldable(out[-1], item):
            out[-1] = fuse_conv_bn_eval(out[-1], item, transpose=isinstance(out[-1], nn.ConvTranspose2d))
            continue
        if isinstance(item, nn.ReLU | nn.LeakyReLU) and after_conv:
            item.inplace = True  # a copy's module; the conv's output is a fresh tensor: one pass less
        _fold_batchnorm(item)
        out.append(item)
    return nn.Sequential(*out)


def _foldable(conv: nn.Module, bn: nn.BatchNorm2d) -> bool:
    return not (conv.training or bn.training) and bn.track_running_stats and bn.running_mean is not None


def _shared_copy(module: nn.Module) -> nn.Module:
    """A copy of the module tree that shares every parameter and buffer with ``module`` (no tensor copied)."""
    memo: dict[int, Any] = {id(t): t for t in module.parameters()}
    memo.update({id(t): t for t in module.buffers()})
    return copy.deepcopy(module, memo)


def optimise(generator: nn.Module, arch: str, *, channels_last: bool = False) -> nn.Module:
    """A fast copy of ``generator`` (eval mode, same call signature and outputs); ``generator`` is left
    untouched and shares its unchanged tensors (U-GAT-IT's 1 GB FC weight is not copied).

    BatchNorm is folded into the convolutions before it; an architecture whose module defines
    ``fused(generator)`` (U-GAT-IT, STGAN: where benchmarks/generators.py measured a gain) gets its
    fused inference form. ``channels_last``: the caller's input layout, which the conv weights then share.
    """
    if generator.training:
        raise ValueError("optimise() folds eval-mode statistics: call generator.eval() first")
    from faceedit import models

    fast = _shared_copy(generator)
    _fold_batchnorm(fast)
    fused = getattr(models.ARCHS.get(arch), "fused", None)
    fast = fused(fast) if fused is not None else fast
    if channels_last:
        _channels_last_weights(fast)
    return fast.eval()


def _channels_last_weights(module: nn.Module) -> None:
    """Conv weights of the copy in channels_last, as its inputs are: oneDNN would otherwise reorder
    them on every call. New tensors on the copy's modules; the original's stay as they are."""
    for conv in module.modules():
        if isinstance(conv, nn.Conv2d | nn.ConvTranspose2d):
            weight = conv.weight.detach().contiguous(memory_format=torch.channels_last)
            conv.weight = nn.Parameter(weight, requires_grad=False)


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
            self.generator = _optimise(model.generator, arch, channels_last=self.channels_last)
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
