"""StarGAN training as yunjey/stargan's ``Solver.train`` (CelebA): a WGAN-GP critic with a domain
classifier updated every step, G every ``n_critic``-th step on the same batch, targets = permuted labels.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from faceedit import attributes
from faceedit.models import stargan
from faceedit.training import losses
from faceedit.training.checkpoint import TrainState, frozen, release_model
from faceedit.training.config import StarGANConfig

COMPILABLE = ("G",)  # D's gradient penalty needs a double backward, which torch.compile cannot do


def generator_kwargs(cfg: StarGANConfig) -> dict[str, int]:
    return {"conv_dim": cfg.g_conv_dim, "c_dim": len(cfg.attrs), "repeat_num": cfg.g_repeat_num}


def discriminator_kwargs(cfg: StarGANConfig) -> dict[str, int]:
    return {
        "image_size": cfg.image_size,
        "conv_dim": cfg.d_conv_dim,
        "c_dim": len(cfg.attrs),
        "repeat_num": cfg.d_repeat_num,
    }


def build(cfg: StarGANConfig) -> dict[str, nn.Module]:
    return {
        "G": stargan.Generator(**generator_kwargs(cfg)),
        "D": stargan.Discriminator(**discriminator_kwargs(cfg)),
    }


def lr_factor(cfg: StarGANConfig, total_steps: int) -> Callable[[int], float]:
    """The official decay: after iteration ``k`` (k > total − lr_decay_iters, k a multiple of
    lr_update_step) lr drops by lr0 / lr_decay_iters. Returns the factor of iteration ``t`` (0-based)."""
    start, every = max(total_steps - cfg.lr_decay_iters, 0), cfg.lr_update_step

    def factor(t: int) -> float:
        return 1.0 - max(0, t // every - start // every) / cfg.lr_decay_iters

    return factor


def make_optimizers(
    cfg: StarGANConfig, models: dict[str, nn.Module], total_steps: int, steps_per_epoch: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    betas = (cfg.beta1, cfg.beta2)
    opts = {
        "G": torch.optim.Adam(models["G"].parameters(), cfg.lr_g, betas),
        "D": torch.optim.Adam(models["D"].parameters(), cfg.lr_d, betas),
    }
    factor = lr_factor(cfg, total_steps)
    return opts, {k: torch.optim.lr_scheduler.LambdaLR(o, factor) for k, o in opts.items()}


def train_step(
    state: TrainState, cfg: StarGANConfig, batch: tuple[torch.Tensor, torch.Tensor]
) -> dict[str, Any]:
    """One iteration: x_real [N,3,S,S] in [-1,1], label_org [N,A] in {0,1}."""
    x_real, label_org = batch
    label_trg = label_org[torch.randperm(label_org.size(0)).to(label_org.device)]
    out: dict[str, Any] = {}
    with state.autocast():
        with torch.no_grad():
            x_fake = state.local("G")(x_real, label_trg)
        d_real, d_cls = state.net("D")(x_real)
        d_fake, _ = state.net("D")(x_fake)
        critic = lambda x: state.net("D")(x)[0]  # noqa: E731
        gp = losses.gradient_penalty(critic, x_real, x_fake, state.scalers["D"])
        out["D/loss_real"], out["D/loss_fake"] = -d_real.float().mean(), d_fake.float().mean()
        out["D/loss_cls"], out["D/loss_gp"] = losses.attribute_bce_sum(d_cls, label_org), gp
        d_loss = (
            out["D/loss_real"] + out["D/loss_fake"] + cfg.lambda_cls * out["D/loss_cls"] + cfg.lambda_gp * gp
        )
    state.update("D", d_loss)
    if (state.step + 1) % cfg.n_critic == 0:
        with frozen(state.models["D"]), state.autocast():
            x_fake = state.net("G")(x_real, label_trg)
            g_fake, g_cls = state.local("D")(x_fake)
            x_reconst = state.net("G")(x_fake, label_org)
            out["G/loss_fake"] = losses.wgan_g_loss(g_fake)
            out["G/loss_rec"] = losses.l1(x_real, x_reconst)
            out["G/loss_cls"] = losses.attribute_bce_sum(g_cls, label_trg)
            g_loss = (
                out["G/loss_fake"] + cfg.lambda_rec * out["G/loss_rec"] + cfg.lambda_cls * out["G/loss_cls"]
            )
        state.update("G", g_loss)
    return {k: v.detach() for k, v in out.items()}


def sample(
    state: TrainState, cfg: StarGANConfig, fixed: tuple[torch.Tensor, torch.Tensor]
) -> list[torch.Tensor]:
    """Columns: the input, then one per attribute with the official create_labels targets."""
    x, labels = fixed
    _, conds = attributes.grid(conditioning(cfg), cfg.attrs, labels.cpu().numpy(), reconstruction=False)
    G = state.models["G"]
    return [x] + [G(x, torch.from_numpy(c).to(x.device)) for c in conds]


def conditioning(cfg: StarGANConfig) -> dict[str, Any]:
    return attributes.default_conditioning("stargan", "port")


def release(cfg: StarGANConfig, models: dict[str, nn.Module], provenance: dict[str, Any]) -> dict[str, Any]:
    model = release_model(
        "stargan", cfg, models["G"], generator_kwargs(cfg), provenance, models["D"], discriminator_kwargs(cfg)
    )
    return {"": model}
