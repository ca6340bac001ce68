"""U-GAT-IT training as znxlwm/UGATIT-pytorch's ``UGATIT.train``: two generators, global and local
LSGAN critics with CAM heads, cycle/identity L1, generator CAM BCE, ρ clipped to [0, 1] after each G step.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from faceedit import render
from faceedit.models import ugatit
from faceedit.training import common, losses
from faceedit.training.checkpoint import TrainState, frozen, release_model
from faceedit.training.config import UGATITConfig

GENERATORS = ("genA2B", "genB2A")
CRITICS = ("disGA", "disGB", "disLA", "disLB")
# Only the generators: a critic's spectral norm updates its power-iteration vectors in place during the
# forward pass, and a compiled graph that saved them for backward then fails (seen on torch 2.11 CUDA).
COMPILABLE = GENERATORS


def generator_kwargs(cfg: UGATITConfig) -> dict[str, Any]:
    return {
        "input_nc": 3,
        "output_nc": 3,
        "ngf": cfg.ch,
        "n_blocks": cfg.n_res,
        "img_size": cfg.image_size,
        "light": cfg.light,
    }


def build(cfg: UGATITConfig) -> dict[str, nn.Module]:
    models: dict[str, nn.Module] = {
        name: ugatit.ResnetGenerator(**generator_kwargs(cfg)) for name in GENERATORS
    }
    for name in CRITICS:
        layers = cfg.dis_global_layers if name.startswith("disG") else cfg.dis_local_layers
        models[name] = ugatit.Discriminator(input_nc=3, ndf=cfg.ch, n_layers=layers)
    return models


def lr_factor(cfg: UGATITConfig, total_steps: int) -> Callable[[int], float]:
    """The official linear decay: from step ``total // 2`` on, lr drops by lr0 / (total // 2) per step
    (applied before the update), reaching 0 at the last step. Factor of iteration ``t`` (0-based)."""
    half = max(total_steps // 2, 1)
    return lambda t: 1.0 - max(0, t + 1 - half) / half if cfg.decay_flag else 1.0


def make_optimizers(
    cfg: UGATITConfig, models: dict[str, nn.Module], total_steps: int, steps_per_epoch: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    def adam(names: tuple[str, ...], lr: float) -> torch.optim.Adam:
        params = itertools.chain(*(models[n].parameters() for n in names))
        return torch.optim.Adam(params, lr, (cfg.beta1, cfg.beta2), weight_decay=cfg.weight_decay)

    opts = {"G": adam(GENERATORS, cfg.lr_g), "D": adam(CRITICS, cfg.lr_d)}
    factor = lr_factor(cfg, total_steps)
    return opts, {k: torch.optim.lr_scheduler.LambdaLR(o, factor) for k, o in opts.items()}


def _critic_terms(net: nn.Module, x: torch.Tensor, real: bool) -> tuple[torch.Tensor, torch.Tensor]:
    logit, cam_logit, _ = net(x)
    return losses.lsgan(logit, real), losses.lsgan(cam_logit, real)


def train_step(state: TrainState, cfg: UGATITConfig, batch: common.Batch) -> dict[str, Any]:
    """One iteration on real_A, real_B [N,3,S,S] in [-1,1]: a D update, then a G update."""
    real_A, real_B = batch
    out = _train_d(state, cfg, real_A, real_B)
    out.update(_train_g(state, cfg, real_A, real_B))
    return common.detached(out)


def _train_d(
    state: TrainState, cfg: UGATITConfig, real_A: torch.Tensor, real_B: torch.Tensor
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with state.autocast():
        with torch.no_grad():
            fake_A2B = state.local("genA2B")(real_A)[0]
            fake_B2A = state.local("genB2A")(real_B)[0]
        for domain, real, fake in (("A", real_A, fake_B2A), ("B", real_B, fake_A2B)):
            total = 0
            for scale in "GL":
                net = state.net(f"dis{scale}{domain}")
                ad_r, cam_r = _critic_terms(net, real, True)
                ad_f, cam_f = _critic_terms(net, fake, False)
                total = total + (ad_r + ad_f) + (cam_r + cam_f)
            out[f"D/loss_{domain}"] = cfg.adv_weight * total
        d_loss = out["D/loss_A"] + out["D/loss_B"]
    state.update("D", d_loss)
    return out


def _train_g(
    state: TrainState, cfg: UGATITConfig, real_A: torch.Tensor, real_B: torch.Tensor
) -> dict[str, Any]:
    A2B, B2A = state.net("genA2B"), state.net("genB2A")
    critics = [state.models[n] for n in CRITICS]
    out: dict[str, Any] = {}
    with frozen(*critics), state.autocast():
        fake_A2B, fake_A2B_cam, _ = A2B(real_A)
        fake_B2A, fake_B2A_cam, _ = B2A(real_B)
        fake_A2B2A, fake_B2A2B = B2A(fake_A2B)[0], A2B(fake_B2A)[0]
        fake_A2A, fake_A2A_cam, _ = B2A(real_A)
        fake_B2B, fake_B2B_cam, _ = A2B(real_B)
        for domain, fake, recon, ident, real, cam_src, cam_same in (
            ("A", fake_B2A, fake_A2B2A, fake_A2A, real_A, fake_B2A_cam, fake_A2A_cam),
            ("B", fake_A2B, fake_B2A2B, fake_B2B, real_B, fake_A2B_cam, fake_B2B_cam),
        ):
            adv = sum(sum(_critic_terms(state.local(f"dis{s}{domain}"), fake, True)) for s in "GL")
            out[f"G/loss_{domain}"] = (
                cfg.adv_weight * adv
                + cfg.cycle_weight * losses.l1(recon, real)
                + cfg.identity_weight * losses.l1(ident, real)
                + cfg.cam_weight * (losses.cam_bce(cam_src, True) + losses.cam_bce(cam_same, False))
            )
        g_loss = out["G/loss_A"] + out["G/loss_B"]
    state.update("G", g_loss)
    clip_rho(*(state.models[n] for n in GENERATORS))
    return out


def clip_rho(*generators: nn.Module) -> None:
    """The official RhoClipper(0, 1): every AdaILN/ILN ``rho`` clamped in place after a G update."""
    with torch.no_grad():
        for g in generators:
            for module in g.modules():
                if hasattr(module, "rho"):
                    module.rho.clamp_(0.0, 1.0)


def _heatmap(cam: torch.Tensor, size: int) -> torch.Tensor:
    """CAM heatmaps [N,1,h,w] -> jet-coloured images [N,3,S,S] in [-1,1] (the official ``cam()``)."""
    jets = [render.heatmap_image(h, size) for h in cam[:, 0].float().cpu().numpy()]
    return torch.from_numpy(np.stack(jets)).permute(0, 3, 1, 2).to(cam.device).float() / 127.5 - 1


def sample(state: TrainState, cfg: UGATITConfig, fixed: common.Batch) -> list[torch.Tensor]:
    """Columns: real, CAM heatmap, translation, cycle; rows of A (A2B) above rows of B (B2A)."""
    columns: list[list[torch.Tensor]] = [[], [], [], []]
    for x, forward, back in ((fixed[0], "genA2B", "genB2A"), (fixed[1], "genB2A", "genA2B")):
        fake, _, cam = state.models[forward](x)
        row = (x, _heatmap(cam, x.shape[-1]), fake, state.models[back](fake)[0])
        for column, image in zip(columns, row, strict=True):
            column.append(image.float())
    return [torch.cat(c) for c in columns]


def release(cfg: UGATITConfig, models: dict[str, nn.Module], provenance: dict[str, Any]) -> dict[str, Any]:
    """genA2B as the main model (direction A2B, e.g. selfie -> anime), genB2A as ``-B2A``."""
    kwargs = generator_kwargs(cfg)
    return {
        "": release_model("ugatit", cfg, models["genA2B"], kwargs, provenance, direction="A2B"),
        "B2A": release_model("ugatit", cfg, models["genB2A"], kwargs, provenance, direction="B2A"),
    }
