"""STGAN training as bluestyle97/STGAN-pytorch's agent: G gets the target − source difference with random
magnitudes, a WGAN-GP critic with an attribute head every step, G every ``n_critic``-th step, StepLR.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from faceedit.models import stgan
from faceedit.training import common, losses
from faceedit.training.checkpoint import TrainState, frozen
from faceedit.training.config import STGANConfig

COMPILABLE = ("G",)  # D's gradient penalty needs a double backward, which torch.compile cannot do


def generator_kwargs(cfg: STGANConfig) -> dict[str, Any]:
    """Generator arguments (the port's names) from the yaml's ``g_*`` and STU settings."""
    c = cfg
    return {
        "attr_dim": len(c.attrs), "conv_dim": c.g_conv_dim, "n_layers": c.g_layers,
        "shortcut_layers": c.shortcut_layers, "stu_kernel_size": c.stu_kernel_size, "use_stu": c.use_stu,
        "one_more_conv": c.one_more_conv,
    }  # fmt: skip


def discriminator_kwargs(cfg: STGANConfig) -> dict[str, Any]:
    """Discriminator arguments from the yaml's ``d_*`` settings."""
    c = cfg
    return {
        "image_size": c.image_size, "attr_dim": len(c.attrs), "conv_dim": c.d_conv_dim, "fc_dim": c.d_fc_dim,
        "n_layers": c.d_layers,
    }  # fmt: skip


def build(cfg: STGANConfig) -> dict[str, nn.Module]:
    return {
        "G": stgan.Generator(**generator_kwargs(cfg)),
        "D": stgan.Discriminator(**discriminator_kwargs(cfg)),
    }


def lr_factor(cfg: STGANConfig) -> Callable[[int], float]:
    """StepLR(step_size=lr_decay_step, gamma=lr_decay_gamma), stepped every iteration."""
    return lambda t: cfg.lr_decay_gamma ** (t // cfg.lr_decay_step)


def make_optimizers(
    cfg: STGANConfig, models: dict[str, nn.Module], total_steps: int, steps_per_epoch: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    return common.adam_pair(cfg, models, lr_factor(cfg))


def train_step(state: TrainState, cfg: STGANConfig, batch: common.Batch) -> dict[str, Any]:
    """One iteration: x_real [N,3,S,S] in [-1,1], c_org [N,A] in {0,1}; targets = permuted labels."""
    x_real, c_org = batch
    c_trg = common.permuted(c_org)
    attr_diff = c_trg - c_org
    attr_diff = attr_diff * torch.rand_like(attr_diff) * (2 * cfg.thres_int)
    out: dict[str, Any] = {}
    with state.autocast():
        d_real, d_cls, d_fake, gp = common.critic_pass(state, x_real, attr_diff)
        out["D/loss_adv"] = losses.wgan_d_loss(d_real, d_fake) + cfg.lambda_gp * gp
        out["D/loss_gp"], out["D/loss_cls"] = gp, losses.attribute_bce_sum(d_cls, c_org)
        d_loss = out["D/loss_adv"] + cfg.lambda_cls_d * out["D/loss_cls"]
    state.update("D", d_loss)
    if (state.step + 1) % cfg.n_critic == 0:
        with frozen(state.models["D"]), state.autocast():
            x_fake = state.net("G")(x_real, attr_diff)
            g_fake, g_cls = state.local("D")(x_fake)
            x_reconst = state.net("G")(x_real, torch.zeros_like(attr_diff))
            out["G/loss_adv"] = losses.wgan_g_loss(g_fake)
            out["G/loss_cls"] = losses.attribute_bce_sum(g_cls, c_trg)
            out["G/loss_rec"] = losses.l1(x_real, x_reconst)
            g_loss = (
                out["G/loss_adv"] + cfg.lambda_rec * out["G/loss_rec"] + cfg.lambda_cls_g * out["G/loss_cls"]
            )
        state.update("G", g_loss)
    return common.detached(out)


def sample(state: TrainState, cfg: STGANConfig, fixed: common.Batch) -> list[torch.Tensor]:
    """Columns as the port's training samples: the input, then each create_labels difference x thres_int."""
    return common.grid_samples(state, cfg, fixed, intensity=cfg.thres_int, reconstruction=False)


def release(cfg: STGANConfig, models: dict[str, nn.Module], provenance: dict[str, Any]) -> dict[str, Any]:
    model = common.release_pair("stgan", cfg, models, provenance, generator_kwargs, discriminator_kwargs)
    return {"": model}
