"""Toy experiment of Fig. 1 and Props. 3.1-3.2, run with the real loss functions.

The "generator" is G_θ(z) = μ + σ·z with θ = [μ, σ] and z ~ N(0, 1); the true posterior is
N(μ0, σ0²) for a single fixed y. Each training step draws a batch of independent x ~ N(μ0, σ0²)
and P_train codes per x, evaluates a regulariser from :mod:`training.losses` on the samples
(shape (batch, P_train)) and takes an Adam step on θ.

* ``"rcgan"``: L_{1,SD,P} with β_SD = β_SD^N (eq. 7, 11); converges to [μ0, σ0] (Prop. 3.1).
* ``"l2"``: L_{2,P} (eq. 14); converges to [μ0, 0], i.e. mode collapse (Prop. 3.2).

``python -m training.toy [--out FIG.png] [--steps N]`` fits both, prints a table and draws the
regularisers' landscapes over (μ, σ) like Fig. 1 (the panel (d) is L_{2,var,P}, eq. 17).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from napari_rcgan.io import atomic_output
from training.losses import (
    beta_sd_nominal,
    l2_p_loss,
    rcgan_regularizer,
    variance_reward,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

REGULARIZERS = ("rcgan", "l2")
DEFAULT_STEPS = 400
DEFAULT_BATCH = 4096


@contextmanager
def _single_thread() -> Iterator[None]:
    """Run torch on one intra-op thread: the toy tensors are small, so extra threads only add
    synchronisation overhead (and stall badly on a busy machine). Restores the setting after."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def regularizer_fn(regularizer: str, p_train: int) -> Callable[[Tensor, Tensor], Tensor]:
    """Return the regulariser ``f(samples (B, P, *E), target (B, *E)) -> scalar`` for a name.

    ``"rcgan"``: L_{1,SD,P} of eq. (7) with β_SD = β_SD^N(P) (eq. 11); ``"l2"``: L_{2,P} (eq. 14).
    """
    if regularizer == "rcgan":
        beta = beta_sd_nominal(p_train)
        return lambda samples, target: rcgan_regularizer(samples, target, beta)
    if regularizer == "l2":
        return l2_p_loss
    raise ValueError(f"regularizer must be one of {REGULARIZERS}, got {regularizer!r}")


def fit_toy(
    regularizer: str,
    p_train: int,
    mu0: float = 1.0,
    sigma0: float = 0.5,
    steps: int = DEFAULT_STEPS,
    batch: int = DEFAULT_BATCH,
    seed: int = 0,
) -> tuple[float, float]:
    """Fit θ = [μ, σ] of G(z) = μ + σz to x ~ N(μ0, σ0²) by minimising a regulariser.

    Starts from θ = [0, 2σ0 + 0.5] and runs Adam (lr 0.05, cosine-annealed to 5e-4) on fresh
    Monte-Carlo batches: ``batch`` draws of x, each with ``p_train`` codes.

    Args:
        regularizer: ``"rcgan"`` (eq. 7 with β_SD^N of eq. 11) or ``"l2"`` (eq. 14).
        p_train: codes per example P_train (>= 2 for ``"rcgan"``).
        mu0: true posterior mean.
        sigma0: true posterior SD, > 0.
        steps: number of Adam steps.
        batch: examples per step.
        seed: seed of the torch.Generator drawing x and z.

    Returns:
        The fitted ``(μ, |σ|)`` (σ and −σ give the same generator).
    """
    loss_fn = regularizer_fn(regularizer, p_train)
    if sigma0 <= 0:
        raise ValueError(f"sigma0 must be > 0, got {sigma0}")
    if steps < 1 or batch < 1:
        raise ValueError(f"steps and batch must be >= 1, got steps={steps}, batch={batch}")
    gen = torch.Generator().manual_seed(seed)
    theta = torch.tensor([0.0, 2.0 * sigma0 + 0.5], requires_grad=True)
    optimizer = torch.optim.Adam([theta], lr=0.05)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps, eta_min=5e-4)
    with _single_thread():
        for _ in range(steps):
            x = mu0 + sigma0 * torch.randn(batch, generator=gen)
            z = torch.randn(batch, p_train, generator=gen)
            samples = theta[0] + theta[1] * z
            loss = loss_fn(samples, x)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
    mu, sigma = theta.detach().tolist()
    return mu, abs(sigma)


def landscape(
    fn: Callable[[Tensor, Tensor], Tensor],
    p_train: int,
    mus: np.ndarray,
    sigmas: np.ndarray,
    mu0: float = 1.0,
    sigma0: float = 0.5,
    n_mc: int = 4096,
    seed: int = 0,
) -> np.ndarray:
    """Monte-Carlo value of a regulariser over a (μ, σ) grid, with common random numbers.

    Args:
        fn: regulariser ``f(samples (n_mc, P), target (n_mc,)) -> scalar``.
        p_train: codes per example.
        mus: grid of μ, shape (M,).
        sigmas: grid of σ, shape (S,).
        mu0: true posterior mean.
        sigma0: true posterior SD.
        n_mc: Monte-Carlo examples per grid point (the same draws at every point).
        seed: seed of the draws.

    Returns:
        Values of shape (S, M) (rows are σ, as ``plt.contour`` expects).
    """
    gen = torch.Generator().manual_seed(seed)
    x = mu0 + sigma0 * torch.randn(n_mc, generator=gen, dtype=torch.float64)
    z = torch.randn(n_mc, p_train, generator=gen, dtype=torch.float64)
    mu_grid = torch.as_tensor(mus, dtype=torch.float64)
    rows = []
    with torch.no_grad(), _single_thread():
        for sigma in sigmas:
            row = torch.func.vmap(lambda mu, s=float(sigma): fn(mu + s * z, x))(mu_grid)
            rows.append(row.numpy())
    return np.stack(rows)


def _l2_var(p_train: int) -> Callable[[Tensor, Tensor], Tensor]:
    """L_{2,var,P} = L_{2,P} − L_{var,P}/P of eq. (17)."""
    return lambda samples, target: l2_p_loss(samples, target) - variance_reward(samples) / p_train


def _save_figure_atomic(fig: Figure, out: Path) -> None:
    """Save a matplotlib figure to ``out`` through a temporary file and an atomic rename."""
    with atomic_output(out) as temporary:
        fig.savefig(temporary, dpi=120, format=out.suffix.lstrip(".") or "png")


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: fit the toy problem and draw the Fig. 1 landscapes."""
    parser = argparse.ArgumentParser(
        prog="python -m training.toy",
        description="Fit G(z) = mu + sigma*z with the rcGAN and L2,P regularisers (paper Fig. 1).",
    )
    parser.add_argument("--out", type=Path, default=Path("toy_fig1.png"), help="figure path")
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS, help="Adam steps per fit")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mu0, sigma0 = 1.0, 0.5
    runs = [("rcgan", 2), ("rcgan", 8), ("l2", 8)]
    fitted: dict[tuple[str, int], tuple[float, float]] = {}
    print(f"true posterior: mu0 = {mu0:.4f}, sigma0 = {sigma0:.4f}")
    print(f"{'regularizer':<12}{'P_train':>8}{'mu':>10}{'|sigma|':>10}")
    for name, p in runs:
        mu, sigma = fit_toy(name, p, mu0, sigma0, steps=args.steps, seed=args.seed)
        fitted[(name, p)] = (mu, sigma)
        print(f"{name:<12}{p:>8}{mu:>10.4f}{sigma:>10.4f}")

    mus = np.linspace(mu0 - 1.0, mu0 + 1.0, 41)
    sigmas = np.linspace(0.0, 2.0 * sigma0 + 0.5, 41)
    panels = [
        (
            "(a) $\\mathcal{L}_{1,SD,P}$, $\\beta_{SD}^N$, P=2",
            regularizer_fn("rcgan", 2),
            2,
            fitted[("rcgan", 2)],
        ),
        (
            "(b) $\\mathcal{L}_{1,SD,P}$, $\\beta_{SD}^N$, P=8",
            regularizer_fn("rcgan", 8),
            8,
            fitted[("rcgan", 8)],
        ),
        ("(c) $\\mathcal{L}_{2,P}$, P=8", regularizer_fn("l2", 8), 8, fitted[("l2", 8)]),
        ("(d) $\\mathcal{L}_{2,var,P}$, P=8", _l2_var(8), 8, None),
    ]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.0 * len(panels), 3.6), layout="constrained")
    for ax, (title, fn, p, point) in zip(axes, panels, strict=True):
        values = landscape(fn, p, mus, sigmas, mu0, sigma0, seed=args.seed)
        # Quadratically spaced levels put more contour lines near the minimum.
        levels = values.min() + (values.max() - values.min()) * np.linspace(0.0, 1.0, 25) ** 2
        ax.contourf(mus, sigmas, values, levels=levels, cmap="viridis")
        ax.contour(mus, sigmas, values, levels=levels, colors="k", linewidths=0.4)
        ax.plot(mu0, sigma0, marker="*", color="r", markersize=16, linestyle="", label="true")
        if point is not None:
            ax.plot(
                *point,
                marker="X",
                color="w",
                markeredgecolor="k",
                markersize=10,
                linestyle="",
                clip_on=False,
                label="fitted",
            )
        ax.set(title=title, xlabel="$\\mu$", ylabel="$\\sigma$")
        ax.legend(loc="upper right", fontsize=8)
    _save_figure_atomic(fig, args.out)
    plt.close(fig)
    print(f"figure written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
