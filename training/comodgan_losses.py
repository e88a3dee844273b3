"""Losses of the CoModGAN baseline (Zhao et al., ICLR 2021; StyleGAN2 training).

* critic: the logistic loss ``softplus(D(x̂, y)) + softplus(−D(x, y))`` plus the R1 penalty
  ``γ/2·||∇ₓD(x, y)||²`` on real images (γ = 10), applied lazily every N batches with weight N;
* generator: the non-saturating logistic loss ``softplus(−D(x̂, y))``.

CoModGAN's official code uses no generator regulariser (no path-length penalty) for these losses.
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


def lazy_adam_settings(
    lr: float, betas: tuple[float, float], interval: int
) -> tuple[float, tuple[float, float]]:
    """Adam settings that compensate a regulariser applied every ``interval`` batches:
    ``lr·c`` and ``betas**c`` with ``c = interval / (interval + 1)`` (StyleGAN2)."""
    ratio = interval / (interval + 1)
    return lr * ratio, (betas[0] ** ratio, betas[1] ** ratio)
