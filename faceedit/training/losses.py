"""The loss terms of the four recipes as plain functions of tensors (no state, no config).

Reductions follow each official code: StarGAN and the STGAN port sum the attribute BCE over attributes
and average over the batch; AttGAN-PyTorch and U-GAT-IT average over every element.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F


def wgan_d_loss(d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
    """Critic loss −E[D(x)] + E[D(G(z))] (any shape of critic outputs)."""
    return d_fake.float().mean() - d_real.float().mean()


def wgan_g_loss(d_fake: torch.Tensor) -> torch.Tensor:
    """Generator loss −E[D(G(z))]."""
    return -d_fake.float().mean()


def gradient_penalty(
    critic: Callable[[torch.Tensor], torch.Tensor],
    x_real: torch.Tensor,
    x_fake: torch.Tensor,
    scaler: torch.amp.GradScaler | None = None,
) -> torch.Tensor:
    """WGAN-GP: E[(‖∇D(x̂)‖₂ − 1)²], x̂ = α·x_real + (1 − α)·x_fake, α ~ U(0, 1) per sample.

    Images [N,3,H,W]; ``critic`` maps them to adversarial logits. The graph is kept (create_graph) so the
    penalty trains D. With an fp16 GradScaler the inner backward is scaled too (so small gradients
    survive half precision) and the gradient is unscaled in float32 before its norm.
    """
    alpha = torch.rand(x_real.size(0), 1, 1, 1, device=x_real.device)
    x_hat = (alpha * x_real.detach() + (1 - alpha) * x_fake.detach()).requires_grad_(True)
    out = critic(x_hat).float()
    scale = scaler.get_scale() if scaler is not None and scaler.is_enabled() else 1.0
    # The scale enters as the incoming gradient in float32, so the half-precision forward values never
    # overflow; an overflow in the backward gives inf, and the GradScaler then skips the step.
    (grad,) = torch.autograd.grad(out, x_hat, torch.full_like(out, scale), create_graph=True)
    grad = grad.float() / scale
    return ((grad.flatten(1).norm(2, dim=1) - 1.0) ** 2).mean()


def attribute_bce_sum(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """BCE-with-logits summed over attributes, averaged over the batch ([N,A] each; StarGAN, STGAN port)."""
    return F.binary_cross_entropy_with_logits(logits.float(), target.float(), reduction="sum") / logits.size(
        0
    )


def attribute_bce_mean(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """BCE-with-logits averaged over every entry ([N,A] each; AttGAN-PyTorch)."""
    return F.binary_cross_entropy_with_logits(logits.float(), target.float())


def l1(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference (reconstruction, cycle and identity terms)."""
    return (x.float() - y.float()).abs().mean()


def lsgan(logits: torch.Tensor, real: bool) -> torch.Tensor:
    """Least-squares GAN term: mean (D(x) − 1)² for ``real`` targets, mean D(x)² otherwise."""
    target = torch.ones_like(logits) if real else torch.zeros_like(logits)
    return F.mse_loss(logits.float(), target.float())


def cam_bce(logits: torch.Tensor, source: bool) -> torch.Tensor:
    """U-GAT-IT's generator CAM term: BCE pushing the CAM logits [N,2] to 1 for the source domain."""
    target = torch.ones_like(logits) if source else torch.zeros_like(logits)
    return F.binary_cross_entropy_with_logits(logits.float(), target.float())
