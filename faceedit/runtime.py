"""Running a loaded model on a device: device and precision resolution, batched inference.

The only place inference decides where and how the generator runs; ``api`` builds one
:class:`Engine` per process and feeds it face crops as ``[N,3,S,S]`` float tensors in ``[-1, 1]``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from faceedit.errors import UsageError

if TYPE_CHECKING:
    import torch

    from faceedit.models import FaceModel

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def resolve_device(spec: str | None = "auto") -> torch.device:
    """``auto`` -> the first CUDA device when there is one, else the CPU; ``cuda[:N]`` is checked."""
    import torch

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
    """``auto`` is float32 (the reference numerics); bf16 works on CPU and CUDA, fp16 on CUDA only."""
    import torch

    text = (spec or "auto").strip().lower()
    if text not in PRECISIONS:
        raise UsageError(f"unknown precision {spec!r}", f"use one of {', '.join(PRECISIONS)}")
    if text == "fp16" and device.type != "cuda":
        raise UsageError("fp16 needs a CUDA device", "use --precision bf16 or fp32 on the CPU")
    return {"auto": torch.float32, "fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[text]


@dataclass
class GeneratorOutput:
    """Generated images ``[N,3,S,S]`` (float32, CPU, tanh range) and U-GAT-IT's CAM heatmaps [N,1,h,w]."""

    images: torch.Tensor
    heatmaps: torch.Tensor | None = None


class Engine:
    """A :class:`~faceedit.models.FaceModel` placed on a device, run in batches under inference mode."""

    def __init__(self, model: FaceModel, device: str | None = "auto", precision: str | None = "auto") -> None:
        self.model = model
        self.device = resolve_device(device)
        self.dtype = resolve_precision(precision, self.device)
        model.generator.to(self.device).eval()
        if model.classifier is not None:
            model.classifier.to(self.device).eval()

    @property
    def config(self) -> dict[str, Any]:
        return self.model.config

    @property
    def precision(self) -> str:
        return {"torch.float32": "fp32", "torch.bfloat16": "bf16", "torch.float16": "fp16"}[str(self.dtype)]

    def _autocast(self) -> Any:
        import contextlib

        import torch

        if self.dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def _chunks(
        self, x: torch.Tensor, extra: np.ndarray | None, batch_size: int
    ) -> Iterator[tuple[Any, Any]]:
        import torch

        for start in range(0, x.shape[0], max(1, batch_size)):
            xb = x[start : start + batch_size].to(self.device, non_blocking=True)
            cb = None
            if extra is not None:
                cb = torch.as_tensor(
                    extra[start : start + batch_size], dtype=torch.float32, device=self.device
                )
            yield xb, cb

    def generate(
        self, x: torch.Tensor, cond: np.ndarray | None = None, batch_size: int = 16
    ) -> GeneratorOutput:
        """``G(x, cond)`` (or ``G(x)`` for U-GAT-IT) over ``x`` ``[N,3,S,S]`` in chunks of ``batch_size``."""
        import torch

        images, heatmaps = [], []
        with torch.inference_mode(), self._autocast():
            for xb, cb in self._chunks(x, cond, batch_size):
                out = self.model.generator(xb) if cb is None else self.model.generator(xb, cb)
                if isinstance(out, tuple):  # U-GAT-IT: (image, cam_logit, heatmap)
                    out, heatmap = out[0], out[2]
                    heatmaps.append(heatmap.float().cpu())
                images.append(out.float().cpu())
        return GeneratorOutput(torch.cat(images), torch.cat(heatmaps) if heatmaps else None)

    def classify(self, x: torch.Tensor, batch_size: int = 16) -> np.ndarray | None:
        """Attribute logits ``[N,A]`` from the model's classifier, or None when it has none."""
        import torch

        if self.model.classifier is None:
            return None
        logits = []
        with torch.inference_mode(), self._autocast():
            for xb, _ in self._chunks(x, None, batch_size):
                logits.append(self.model.classifier(xb).float().cpu())
        return torch.cat(logits).numpy()
