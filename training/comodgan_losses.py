"""Losses of the CoModGAN baseline (Zhao et al., ICLR 2021; StyleGAN2 training).

* critic: the logistic loss ``softplus(D(x̂, y)) + softplus(−D(x, y))`` plus the R1 penalty
  ``γ/2·||∇ₓD(x, y)||²`` on real images (γ = 10), applied lazily every N batches with weight N;
* generator: the non-saturating logistic loss ``softplus(−D(x̂, y))``.

CoModGAN's official code uses no generator regulariser; the PyTorch port the rcGAN paper used for
its CoModGAN baseline adds StyleGAN2's path-length penalty (weight 2 every 4 batches), available
here as :func:`path_length_penalty` (``train.pl_weight``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

Critic = Callable[[Tensor, Tensor], Tensor]


def logistic_critic_loss(real_scores: Tensor, fake_scores: Tensor) -> Tensor:
    """``mean softplus(D(x̂)) + mean softplus(−D(x))``: scores ``(B, 1)`` → scalar."""
    return F.softplus(fake_scores).mean() + F.softplus(-real_scores).mean()


def nonsaturating_generator_loss(fake_scores: Tensor) -> Tensor:
    """``mean softplus(−D(x̂))``: scores ``(B, 1)`` → scalar."""
    return F.softplus(-fake_scores).mean()


def r1_penalty(critic: Critic, real: Tensor, condition: Tensor, gamma: float = 10.0) -> Tensor:
    """``γ/2 · E||∇ₓ D(x, y)||²`` at the real images ``x (B, C, H, W)`` (scalar, differentiable
    with respect to the critic's parameters)."""
    real = real.detach().requires_grad_(True)
    scores = critic(real, condition)
    (gradient,) = torch.autograd.grad(scores.sum(), real, create_graph=True)
    return gamma / 2 * gradient.float().square().flatten(1).sum(1).mean()


def path_length_penalty(
    images: Tensor, w: Tensor, mean_length: Tensor, decay: float = 0.01
) -> tuple[Tensor, Tensor]:
    """StyleGAN2 path-length penalty of ``images = G(w)`` ``(B, C, H, W)``, ``w (B, D)``.

    ``L_w = ||∂(G(w)·y)/∂w||₂`` with ``y ~ N(0, I/(H·W))``; the penalty is
    ``mean (L_w − a)²`` with ``a`` the running mean of ``L_w`` (updated with ``decay``).

    Returns: the penalty (scalar, differentiable in the generator's parameters) and the new
    running mean (detached).
    """
    noise = torch.randn_like(images) / (images.shape[-2] * images.shape[-1]) ** 0.5
    (gradient,) = torch.autograd.grad((images * noise).sum(), w, create_graph=True)
    lengths = gradient.float().square().sum(dim=1).sqrt()
    mean = mean_length + decay * (lengths.mean().detach() - mean_length)
    return (lengths - mean).square().mean(), mean.detach()


def lazy_adam_settings(
    lr: float, betas: tuple[float, float], interval: int
) -> tuple[float, tuple[float, float]]:
    """Adam settings that compensate a regulariser applied every ``interval`` batches:
    ``lr·c`` and ``betas**c`` with ``c = interval / (interval + 1)`` (StyleGAN2)."""
    ratio = interval / (interval + 1)
    return lr * ratio, (betas[0] ** ratio, betas[1] ** ratio)
