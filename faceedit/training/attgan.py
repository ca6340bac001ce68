"""AttGAN training as elvisyjlin/AttGAN-PyTorch's train.py (wgan mode): of every n_d + 1 steps, n_d train
D and one trains G, each on its own batch; labels fed as ±thres_int; lr divided by 10 every 100 epochs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from faceedit.models import attgan
from faceedit.training import common, losses
from faceedit.training.checkpoint import TrainState, frozen
from faceedit.training.config import AttGANConfig

COMPILABLE = ("G",)  # D's gradient penalty needs a double backward, which torch.compile cannot do


def generator_kwargs(cfg: AttGANConfig) -> dict[str, Any]:
    """Generator arguments (the port's names) from train.py's flags."""
    c = cfg
    return {
        "enc_dim": c.enc_dim, "enc_layers": c.enc_layers, "dec_dim": c.dec_dim, "dec_layers": c.dec_layers,
        "enc_norm_fn": c.enc_norm, "enc_acti_fn": c.enc_acti, "n_attrs": len(c.attrs),
        "dec_norm_fn": c.dec_norm, "dec_acti_fn": c.dec_acti, "img_size": c.image_size,
        "shortcut_layers": c.shortcut_layers, "inject_layers": c.inject_layers,
    }  # fmt: skip


def discriminator_kwargs(cfg: AttGANConfig) -> dict[str, Any]:
    """Discriminators arguments from the ``dis_*`` flags: conv trunk, then the fully connected heads."""
    c = cfg
    return {
        "dim": c.dis_dim, "norm_fn": c.dis_norm, "acti_fn": c.dis_acti, "n_layers": c.dis_layers,
        "fc_dim": c.dis_fc_dim, "fc_norm_fn": c.dis_fc_norm, "fc_acti_fn": c.dis_fc_acti,
        "img_size": c.image_size, "n_attrs": len(c.attrs),
    }  # fmt: skip


def build(cfg: AttGANConfig) -> dict[str, nn.Module]:
    return {
        "G": attgan.Generator(**generator_kwargs(cfg)),
        "D": attgan.Discriminators(**discriminator_kwargs(cfg)),
    }


def lr_factor(cfg: AttGANConfig, steps_per_epoch: int) -> Callable[[int], float]:
    """``lr = lr_base / 10 ** (epoch // lr_decay_epochs)`` as a factor of iteration ``t`` (0-based)."""
    return lambda t: 0.1 ** ((t // steps_per_epoch) // cfg.lr_decay_epochs)


def make_optimizers(
    cfg: AttGANConfig, models: dict[str, nn.Module], total_steps: int, steps_per_epoch: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    return common.adam_pair(cfg, models, lr_factor(cfg, steps_per_epoch))


def scaled_targets(cfg: AttGANConfig, att_b: torch.Tensor) -> torch.Tensor:
    """0/1 targets [N,A] -> G's input: ±thres_int, optionally with random magnitudes (b_distribution)."""
    signed = att_b * 2 - 1
    if cfg.b_distribution == "uniform":
        return signed * torch.rand_like(att_b) * (2 * cfg.thres_int)
    if cfg.b_distribution == "truncated_normal":
        return signed * (torch.fmod(torch.randn_like(att_b), 2) + 2) / 4.0 * (2 * cfg.thres_int)
    return signed * cfg.thres_int


def train_step(state: TrainState, cfg: AttGANConfig, batch: common.Batch) -> dict[str, Any]:
    """One iteration on img_a [N,3,S,S] in [-1,1] with labels att_a [N,A] in {0,1}: a D or a G update."""
    img_a, att_a = batch
    att_b = common.permuted(att_a)
    att_a_, att_b_ = (att_a * 2 - 1) * cfg.thres_int, scaled_targets(cfg, att_b)
    if (state.step + 1) % (cfg.n_d + 1) != 0:
        return _train_d(state, cfg, img_a, att_a, att_b_)
    return _train_g(state, cfg, img_a, att_a_, att_b, att_b_)


def _train_d(
    state: TrainState, cfg: AttGANConfig, img_a: torch.Tensor, att_a: torch.Tensor, att_b_: torch.Tensor
) -> dict[str, Any]:
    with state.autocast():
        d_real, dc_real, d_fake, gp = common.critic_pass(state, img_a, att_b_)
        out = {
            "D/df_loss": losses.wgan_d_loss(d_real, d_fake),
            "D/df_gp": gp,
            "D/dc_loss": losses.attribute_bce_mean(dc_real, att_a),
        }
        d_loss = out["D/df_loss"] + cfg.lambda_gp * out["D/df_gp"] + cfg.lambda_cls_d * out["D/dc_loss"]
    state.update("D", d_loss)
    return common.detached(out)


def _train_g(
    state: TrainState,
    cfg: AttGANConfig,
    img_a: torch.Tensor,
    att_a_: torch.Tensor,
    att_b: torch.Tensor,
    att_b_: torch.Tensor,
) -> dict[str, Any]:
    G, D = state.net("G"), state.local("D")
    with frozen(state.models["D"]), state.autocast():
        zs_a = G(img_a, mode="enc")
        img_fake = G(zs_a, att_b_, mode="dec")
        img_recon = G(zs_a, att_a_, mode="dec")
        d_fake, dc_fake = D(img_fake)
        out = {
            "G/gf_loss": losses.wgan_g_loss(d_fake),
            "G/gc_loss": losses.attribute_bce_mean(dc_fake, att_b),
            "G/gr_loss": losses.l1(img_recon, img_a),
        }
        g_loss = out["G/gf_loss"] + cfg.lambda_cls_g * out["G/gc_loss"] + cfg.lambda_rec * out["G/gr_loss"]
    state.update("G", g_loss)
    return common.detached(out)


def sample(state: TrainState, cfg: AttGANConfig, fixed: common.Batch) -> list[torch.Tensor]:
    """Columns as train.py's samples: the input, the reconstruction, one toggle per attribute (test_int 1)."""
    return common.grid_samples(state, cfg, fixed, reconstruction=True)


def release(cfg: AttGANConfig, models: dict[str, nn.Module], provenance: dict[str, Any]) -> dict[str, Any]:
    model = common.release_pair("attgan", cfg, models, provenance, generator_kwargs, discriminator_kwargs)
    return {"": model}
