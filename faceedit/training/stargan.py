"""StarGAN training as yunjey/stargan's ``Solver.train`` (CelebA or RaFD) and ``Solver.train_multi``
(CelebA + RaFD): a WGAN-GP critic with a domain classifier updated every step, G every ``n_critic``-th
step on the same batch, targets = permuted labels. With both datasets each step trains on a CelebA
batch then a RaFD batch, labels ``[CelebA, RaFD, mask]``, each classified by its own logits.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from faceedit import expressions
from faceedit.models import stargan
from faceedit.training import common, losses
from faceedit.training.checkpoint import TrainState, frozen
from faceedit.training.config import StarGANConfig

COMPILABLE = ("G",)  # D's gradient penalty needs a double backward, which torch.compile cannot do


def n_expressions(cfg: StarGANConfig) -> int:
    """c2_dim: RaFD's 8 expressions, or 0 for a CelebA-only model."""
    return 0 if cfg.dataset == "celeba" else len(expressions.RAFD_EXPRESSIONS)


def generator_kwargs(cfg: StarGANConfig) -> dict[str, int]:
    return {
        "conv_dim": cfg.g_conv_dim,
        "c_dim": len(cfg.attrs),
        "repeat_num": cfg.g_repeat_num,
        "c2_dim": n_expressions(cfg),
    }


def discriminator_kwargs(cfg: StarGANConfig) -> dict[str, int]:
    return {
        "image_size": cfg.image_size,
        "conv_dim": cfg.d_conv_dim,
        "c_dim": len(cfg.attrs),
        "repeat_num": cfg.d_repeat_num,
        "c2_dim": n_expressions(cfg),
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
    return common.adam_pair(cfg, models, lr_factor(cfg, total_steps))


def _generator_labels(cfg: StarGANConfig, part: str, label: torch.Tensor) -> torch.Tensor:
    """A batch's labels as G takes them: CelebA 0/1 [N,A] or RaFD indices [N] -> [N, label channels]."""
    n, n_attrs, n_expr = label.size(0), len(cfg.attrs), n_expressions(cfg)
    # RaFD: solver.label2onehot; CelebA: the 0/1 attribute labels as they are.
    c = F.one_hot(label.long(), n_expr).to(torch.float32) if part == "rafd" else label.float()
    if cfg.dataset != "both":
        return c
    zeros = label.new_zeros((n, n_expr if part == "celeba" else n_attrs), dtype=torch.float32)
    mask = F.one_hot(label.new_full((n,), int(part == "rafd"), dtype=torch.long), 2).to(torch.float32)
    return torch.cat([c, zeros, mask] if part == "celeba" else [zeros, c, mask], dim=1)


def _classification_loss(
    cfg: StarGANConfig, part: str, logits: torch.Tensor, label: torch.Tensor
) -> torch.Tensor:
    """solver.classification_loss on the part's own logits: BCE summed / N (CelebA), cross-entropy (RaFD)."""
    n_attrs = len(cfg.attrs)
    if part == "rafd":
        return F.cross_entropy(logits[:, n_attrs:].float(), label.long())
    return losses.attribute_bce_sum(logits[:, :n_attrs], label)


def _parts(cfg: StarGANConfig, batch: Any) -> list[tuple[str, common.Batch]]:
    if cfg.dataset == "both":
        return [("celeba", batch[0]), ("rafd", batch[1])]  # train_multi: CelebA first, then RaFD
    return [(cfg.dataset, batch)]


def train_step(state: TrainState, cfg: StarGANConfig, batch: Any) -> dict[str, Any]:
    """One iteration. celeba: (x_real [N,3,S,S] in [-1,1], label_org [N,A] 0/1); rafd: (x_real, index [N]);
    both: (celeba batch, rafd batch), losses then named ``D/celeba/...`` and ``D/rafd/...``."""
    out: dict[str, Any] = {}
    for part, (x_real, label) in _parts(cfg, batch):
        for key, value in _part_step(state, cfg, part, x_real, label).items():
            out[key.replace("/", f"/{part}/", 1) if cfg.dataset == "both" else key] = value
    return out


def _part_step(
    state: TrainState, cfg: StarGANConfig, part: str, x_real: torch.Tensor, label_org: torch.Tensor
) -> dict[str, Any]:
    """D on one dataset's batch, then G every n_critic-th step (the body of train()/train_multi())."""
    label_trg = common.permuted(label_org)
    c_org, c_trg = _generator_labels(cfg, part, label_org), _generator_labels(cfg, part, label_trg)
    out: dict[str, Any] = {}
    with state.autocast():
        d_real, d_cls, d_fake, gp = common.critic_pass(state, x_real, c_trg)
        out["D/loss_real"], out["D/loss_fake"] = -d_real.float().mean(), d_fake.float().mean()
        out["D/loss_cls"], out["D/loss_gp"] = _classification_loss(cfg, part, d_cls, label_org), gp
        d_loss = (
            out["D/loss_real"] + out["D/loss_fake"] + cfg.lambda_cls * out["D/loss_cls"] + cfg.lambda_gp * gp
        )
    state.update("D", d_loss)
    if (state.step + 1) % cfg.n_critic == 0:
        with frozen(state.models["D"]), state.autocast():
            x_fake = state.net("G")(x_real, c_trg)
            g_fake, g_cls = state.local("D")(x_fake)
            x_reconst = state.net("G")(x_fake, c_org)
            out["G/loss_fake"] = losses.wgan_g_loss(g_fake)
            out["G/loss_rec"] = losses.l1(x_real, x_reconst)
            out["G/loss_cls"] = _classification_loss(cfg, part, g_cls, label_trg)
            g_loss = (
                out["G/loss_fake"] + cfg.lambda_rec * out["G/loss_rec"] + cfg.lambda_cls * out["G/loss_cls"]
            )
        state.update("G", g_loss)
    return common.detached(out)


def sample(state: TrainState, cfg: StarGANConfig, fixed: common.Batch) -> list[torch.Tensor]:
    """Columns: the input, then one per attribute (create_labels) and one per expression (test_multi)."""
    x, labels = fixed
    c_org = labels.cpu().numpy() if cfg.dataset != "rafd" else labels.new_zeros((len(x), 0)).cpu().numpy()
    config = {
        "arch": "stargan",
        "generator_kwargs": generator_kwargs(cfg),
        "attributes": list(cfg.attrs),
        "conditioning": conditioning(cfg),
    }
    return common.columns(state.models["G"], x, expressions.official_targets(config, c_org))


def conditioning(cfg: StarGANConfig) -> dict[str, Any]:
    """config.json's conditioning block (with the dataset and expression names unless CelebA-only)."""
    return expressions.conditioning_block(cfg.dataset)


def release(cfg: StarGANConfig, models: dict[str, nn.Module], provenance: dict[str, Any]) -> dict[str, Any]:
    model = common.release_pair("stargan", cfg, models, provenance, generator_kwargs, discriminator_kwargs)
    model.config["conditioning"] = conditioning(cfg)  # release_model writes the CelebA-only block
    return {"": model}
