"""What the three WGAN-GP step files (``training/attgan|stgan|stargan.py``) do the same way: Adam for G
and D under one lr schedule, permuted target labels, the critic's pass, sample columns, the release.

Each step file keeps its own official loop; only the pieces that are the same to the letter live here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch
from torch import nn

from faceedit import attributes, grids
from faceedit.training import losses
from faceedit.training.checkpoint import TrainState, release_model

# A batch as the datasets give it: images [N,3,S,S] in [-1, 1] and labels [N,...] (or domain B images).
Batch = tuple[torch.Tensor, torch.Tensor]


def adam_pair(
    cfg: Any, models: dict[str, nn.Module], factor: Callable[[int], float]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Adam for G (``cfg.lr_g``) and D (``cfg.lr_d``) with ``(cfg.beta1, cfg.beta2)``, each under a
    LambdaLR of ``factor`` (the lr multiplier of iteration t, 0-based)."""
    betas = (cfg.beta1, cfg.beta2)
    opts = {
        "G": torch.optim.Adam(models["G"].parameters(), cfg.lr_g, betas),
        "D": torch.optim.Adam(models["D"].parameters(), cfg.lr_d, betas),
    }
    return opts, {k: torch.optim.lr_scheduler.LambdaLR(o, factor) for k, o in opts.items()}


def permuted(labels: torch.Tensor) -> torch.Tensor:
    """The batch's labels [N,...] in a random order: the official target labels."""
    return labels[torch.randperm(labels.size(0)).to(labels.device)]


def critic_pass(
    state: TrainState, x_real: torch.Tensor, g_input: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """D on real and (no-grad) fake images [N,3,S,S]: (D(real) adv, D(real) cls, D(fake) adv, GP).

    Run inside ``state.autocast()``; D returns ``(adversarial, classification)`` logits.
    """
    D = state.net("D")
    with torch.no_grad():
        x_fake = state.local("G")(x_real, g_input)
    d_real, d_cls = D(x_real)
    d_fake, _ = D(x_fake)
    gp = losses.gradient_penalty(lambda x: D(x)[0], x_real, x_fake, state.scalers["D"])
    return d_real, d_cls, d_fake, gp


def detached(out: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A step's losses as train_step returns them: detached from the graph."""
    return {k: v.detach() for k, v in out.items()}


def thres_conditioning(arch: str, cfg: Any) -> dict[str, Any]:
    """config.json's conditioning block of a trained model: the official one, with ``cfg.thres_int``
    where the recipe has it (AttGAN and STGAN labels are fed as ±thres_int)."""
    conditioning = attributes.default_conditioning(arch, "port")
    conditioning["thres_int"] = float(getattr(cfg, "thres_int", conditioning["thres_int"]))
    return conditioning


def grid_samples(state: TrainState, cfg: Any, fixed: Batch, **grid_options: Any) -> list[torch.Tensor]:
    """Sample columns of an AttGAN/STGAN run: the input, then G for each label column of grids.grid."""
    x, labels = fixed
    cond = thres_conditioning(cfg.arch, cfg)
    _, conds = grids.grid(cond, cfg.attrs, labels.cpu().numpy(), **grid_options)
    return columns(state.models["G"], x, conds)


def columns(G: nn.Module, x: torch.Tensor, conds: Iterable[np.ndarray]) -> list[torch.Tensor]:
    """Sample-grid columns: the input x [N,3,S,S], then G(x, c) for each label array c [N,C]."""
    return [x] + [G(x, torch.from_numpy(c).to(x.device)) for c in conds]


def release_pair(
    arch: str,
    cfg: Any,
    models: dict[str, nn.Module],
    provenance: dict[str, Any],
    g_kwargs: Callable[[Any], dict[str, Any]],
    d_kwargs: Callable[[Any], dict[str, Any]],
) -> Any:
    """The FaceModel of G and D's classifier head; ``g_kwargs``/``d_kwargs`` give their constructor kwargs."""
    return release_model(arch, cfg, models["G"], g_kwargs(cfg), provenance, models["D"], d_kwargs(cfg))
