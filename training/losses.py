"""Loss functions of rcGAN (Bendel, Ahmad & Schniter, NeurIPS 2023, Section 3) and its baselines.

Every function is pure torch and works on any device and floating dtype.

Shapes
------
``samples`` holds P generated samples per example, shape ``(B, P, *E)``; ``target`` holds the true
image of each example, shape ``(B, *E)``. ``E`` are the element dimensions (for an image
``(C, H, W)``; for a scalar toy problem ``E`` is empty). ``x̂_(P)`` is the P-sample average of
eq. (10).

Normalisation
-------------
The paper writes its regularisers as expectations of *sum* norms (eqs. 8, 9, 14, 18). Here every
norm is divided by the number of elements per example ``N = prod(E)``, i.e. it is a per-element
mean, and the batch average stands for the expectation. So ``l1_p_loss`` equals
``F.l1_loss(x̂_(P), x)`` as in the reference implementation. Because the same ``1/N`` factor is
applied to both the supervised-ℓ1 term and the SD reward, the ratio between them, and hence the
meaning of β_SD (eq. 11) and the minimiser of Prop. 3.1, are exactly the paper's. The only
exception is :func:`error_energies`, which returns the squared ℓ2 error energies of
eqs. (21)-(22) literally; only their ratio is used (eq. 23), so the normalisation cancels.

Paper equations and the reference code
--------------------------------------
Two terms have a second variant, chosen by the config keys ``train.sd_reward`` and
``train.adv_reduction``, so that the paper-reproduction configs train what the authors' code
(github.com/matt-bendel/rcGAN, ``models/lightning/rcGAN.py``) trained:

- SD reward (:func:`sd_reward`): ``"paper"`` is eq. (9). ``"reference"`` is the reference's
  ``torch.std(gens, dim=1).mean()``: the unbiased (1/(P−1)) standard deviation over the P
  samples, averaged over elements and batch. At P = 2 both are multiples of ``|x̂_1 − x̂_2|``
  (eq. 9: ``sqrt(π)/2·|x̂_1 − x̂_2|``; reference: ``|x̂_1 − x̂_2|/sqrt(2)``), so the reference reward
  is eq. (9) divided by exactly ``sqrt(π/2)`` ≈ 1.2533. The reference multiplies it by
  ``std_mult · β_SD^N`` and tunes ``std_mult``, so its β_SD means "weight of the torch.std reward".
- Batch reduction of the generator's adversarial term (:func:`generator_adversarial_loss`):
  ``"mean"`` averages the critic's scores over the batch (the expectation of eq. 4).
  ``"sum"`` is the reference's ``gen_pred_loss``: the mean score of each example's P samples,
  summed over the B examples of the (per-device) batch, i.e. B times ``"mean"``, so with the
  paper's batch of 9 the reference's effective β_adv is 9× the nominal one.

Sign conventions (eq. 4)
------------------------
``L_adv = E{D(x, y) − D(x̂, y)}``. The generator minimises ``L_adv`` (its θ-dependent part is
:func:`generator_adversarial_loss`); the critic minimises ``−L_adv``
(:func:`critic_wasserstein_loss`) plus the gradient and drift penalties.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from napari_rcgan.stats import error_energy, ideal_e1_over_ep_db

SD_REWARDS = ("paper", "reference")
"""Kinds of SD reward: eq. (9) (``paper``) or the reference code's ``torch.std`` (``reference``)."""
ADV_REDUCTIONS = ("mean", "sum")
"""Batch reductions of the generator's adversarial term: the paper's mean or the reference's sum."""
E1_ESTIMATES = ("first", "all")
"""Estimates of Ê_1 for eq. (23): the first sample's error (eq. 22) or the mean over all P_val."""
MU_SD_DEFAULT = 0.02
"""Default step μ_SD of the β_SD auto-tuning rule (eq. 23), per dB of ratio mismatch.

The reference implementation keeps ``β_SD = m · β_SD^N`` and updates the multiplier once per
epoch as ``m ← m + 0.02 · ((PSNR_1 + 2.5) − PSNR_8)``. ``PSNR_8 − PSNR_1`` is ``[E1/E8]_dB`` and
``2.5 ≈ [2·8/9]_dB``, so this is eq. (23) with μ_SD = 0.02: a 1 dB mismatch moves β_SD by 2 % of
β_SD^N per epoch, slow enough that the noisy per-epoch ratio does not make β_SD oscillate.
"""


def _validate_samples(samples: Tensor, target: Tensor | None = None, min_p: int = 2) -> int:
    """Check ``samples`` (B, P, *E) against ``target`` (B, *E) and return P."""
    if samples.ndim < 2:
        raise ValueError(
            f"samples must have shape (B, P, ...), got a {samples.ndim}-D tensor "
            f"of shape {tuple(samples.shape)}"
        )
    p = samples.shape[1]
    if p < min_p:
        raise ValueError(f"this loss needs P >= {min_p} samples per example (dim 1), got P = {p}")
    if target is not None:
        expected = (samples.shape[0], *samples.shape[2:])
        if tuple(target.shape) != expected:
            raise ValueError(
                f"target must have shape {expected} to match samples of shape "
                f"{tuple(samples.shape)}, got {tuple(target.shape)}"
            )
    return p


def beta_sd_nominal(p: int) -> float:
    """Nominal SD-reward weight β_SD^N = sqrt(2 / (π P (P+1))) of eq. (11).

    With this weight the regulariser of eq. (7) is minimised by the true posterior mean and SD
    when the posterior is independent Gaussian (Prop. 3.1).

    Args:
        p: number of samples per example P_train, at least 2.
    """
    if p < 2:
        raise ValueError(f"beta_sd_nominal needs P >= 2, got P = {p}")
    return math.sqrt(2.0 / (math.pi * p * (p + 1)))


R_BIN_EDGES = (3.0, 5.0, 7.0)
"""Default inner edges of the R bins of a mask-agnostic model's β_SD table (``train.beta_sd_bins``):
[2,3), [3,5), [5,7), [7,8] for R in [2, 8]."""


def r_bins(low: float, high: float, edges: Sequence[float] = R_BIN_EDGES) -> list[tuple[float, float]]:
    """The R bins ``[(R_min, R_max), ...]`` of a training range ``[low, high]``.

    The ``edges`` inside ``(low, high)`` split it; a fixed R (``low == high``) gives one bin.
    Bins are half-open ``[R_min, R_max)`` except the last, which is closed.
    """
    edges = [low, *(e for e in edges if low < e < high), high]
    return list(zip(edges[:-1], edges[1:], strict=True)) if high > low else [(low, high)]


def r_bin_index(R: Tensor, bins: list[tuple[float, float]]) -> Tensor:
    """Index of the bin of each acceleration in ``R`` (any shape); values outside the bins go
    to the nearest end bin."""
    inner = torch.tensor([b[0] for b in bins[1:]], dtype=R.dtype, device=R.device)
    return torch.bucketize(R, inner, right=True)


def pool_neighbouring_bins(sums: Tensor, reach: int) -> Tensor:
    """Validation sums per R bin, each bin's row joined by those of its neighbours.

    Bin ``i`` gets ``Σ_j w_j · sums[i + j]`` for ``|j| ≤ reach`` with binomial weights
    ``w_j = C(2·reach, reach + j)`` (reach 1: 1, 2, 1); near the ends of the table the missing
    neighbours are left out. Binomial, not equal, weights: with equal weights a table whose bins
    alternate high/low reads, pooled, the *opposite* of its own error (the box filter's response
    at the highest frequency is −1/3), so eq. (23) drives such a zigzag further apart instead of
    flattening it; the binomial filter's response is ``cos^(2·reach)(ω/2) ≥ 0`` at every
    frequency.

    Args:
        sums: ``(bins, k)`` per-bin sums (e.g. E_1, E_Pval and the example count).
        reach: how many neighbouring bins on each side join a bin (0: none).

    Returns:
        ``(bins, k)`` pooled sums (``sums`` itself for reach 0).
    """
    if reach == 0:
        return sums
    count = sums.shape[0]
    pooled = torch.zeros_like(sums)
    for offset in range(-reach, reach + 1):
        weight = math.comb(2 * reach, reach + offset)
        low, high = max(0, -offset), min(count, count - offset)
        pooled[low:high] += weight * sums[low + offset : high + offset]
    return pooled


def fit_beta_sd_table(
    table: Sequence[float], bins: list[tuple[float, float]], degree: int
) -> list[float]:
    """The per-R β_SD table replaced by its least-squares polynomial of ``degree`` in R.

    The polynomial is fitted to the entries at their bins' middle R, equally weighted, and read
    back there, so β_SD becomes a smooth function of R sampled at the bins: a table whose
    neighbouring bins have drifted apart (eq. 23 run per bin on few, fixed validation examples)
    is pulled onto one curve, while a table that already lies on such a curve is unchanged.
    Degree 0 gives every bin the table's mean; a degree of ``len(bins) - 1`` or more leaves the
    table as it is.

    Args:
        table: β_SD of each bin.
        bins: the ``(R_min, R_max)`` of each bin (:func:`r_bins`), as many as ``table``.
        degree: polynomial degree, 0 or more.

    Returns:
        The fitted β_SD of each bin.
    """
    if len(table) != len(bins):
        raise ValueError(f"table has {len(table)} entries for {len(bins)} R bins")
    if degree < 0:
        raise ValueError(f"degree must be 0 or more, got {degree}")
    if degree >= len(bins) - 1:
        return [float(b) for b in table]
    middles = np.array([(low + high) / 2 for low, high in bins], dtype=np.float64)
    coefficients = np.polynomial.polynomial.polyfit(middles, np.asarray(table, np.float64), degree)
    return [float(v) for v in np.polynomial.polynomial.polyval(middles, coefficients)]


def remap_beta_sd_table(
    table: Sequence[dict[str, float]], bins: list[tuple[float, float]]
) -> list[float]:
    """β_SD of each of ``bins`` from a saved table ``[{"R_min", "R_max", "beta_sd"}, ...]``.

    Each bin takes the β_SD of the saved bin holding its middle R (the nearest end bin if none
    does), so that a run resumed with other ``train.beta_sd_bins`` starts from the tuned values.
    """
    saved = [(float(e["R_min"]), float(e["R_max"])) for e in table]
    middles = torch.tensor([(low + high) / 2 for low, high in bins], dtype=torch.float64)
    return [float(table[int(i)]["beta_sd"]) for i in r_bin_index(middles, saved)]


def l1_p_loss(samples: Tensor, target: Tensor) -> Tensor:
    """P-sample supervised-ℓ1 loss L_{1,P} of eq. (8), per-element normalised.

    Args:
        samples: generated samples x̂_i, shape (B, P, *E), P >= 1.
        target: true images x, shape (B, *E).

    Returns:
        Scalar ``mean_b ||x_b − x̂_(P),b||_1 / N`` with N = prod(E).
    """
    _validate_samples(samples, target, min_p=1)
    return (target - samples.mean(dim=1)).abs().mean()


def sd_reward(samples: Tensor, kind: str = "paper") -> Tensor:
    """Standard-deviation reward L_{SD,P}, per-element normalised.

    ``kind="paper"``: eq. (9), ``sqrt(π / (2P(P−1))) · Σ_i ||x̂_i − x̂_(P)||_1``, averaged over the
    batch and divided by N = prod(E); for independent Gaussian samples of SD σ its expectation
    is σ per element.
    ``kind="reference"``: the reference code's ``torch.std(samples, dim=1).mean()``, the unbiased
    sample SD ``(Σ_i (x̂_i − x̂_(P))² / (P−1))^½`` per element, averaged over elements and batch;
    at P = 2 exactly eq. (9) / sqrt(π/2).

    Args:
        samples: generated samples x̂_i, shape (B, P, *E), P >= 2.
        kind: one of :data:`SD_REWARDS`.

    Returns:
        Scalar tensor.
    """
    p = _validate_samples(samples, min_p=2)
    if kind == "reference":
        return samples.std(dim=1, correction=1).mean()
    if kind != "paper":
        raise ValueError(f"SD reward kind must be one of {', '.join(SD_REWARDS)}, got {kind!r}")
    deviations = (samples - samples.mean(dim=1, keepdim=True)).abs().sum(dim=1)
    return math.sqrt(math.pi / (2.0 * p * (p - 1))) * deviations.mean()


def rcgan_regularizer(
    samples: Tensor, target: Tensor, beta_sd: float | Tensor, reward: str = "paper"
) -> Tensor:
    """rcGAN regulariser L_{1,SD,P} = L_{1,P} − β_SD · L_{SD,P} of eq. (7).

    See :func:`l1_p_loss` (eq. 8) and :func:`sd_reward` (eq. 9); both are per-element
    normalised, so β_SD has the paper's meaning (nominal value :func:`beta_sd_nominal`, eq. 11).

    Args:
        samples: generated samples x̂_i = G(z_i, y), shape (B, P_train, *E), P_train >= 2.
        target: true images x, shape (B, *E).
        beta_sd: SD-reward weight β_SD: one number, or a ``(B,)`` tensor with each example's
            β_SD (a mask-agnostic model's per-R table; the reward is then taken per example and
            the weighted rewards averaged over the batch).
        reward: SD reward kind, ``"paper"`` (eq. 9) or ``"reference"`` (see :func:`sd_reward`).

    Returns:
        Scalar tensor, differentiable with respect to ``samples``.
    """
    _validate_samples(samples, target, min_p=2)
    if not isinstance(beta_sd, Tensor):
        return l1_p_loss(samples, target) - beta_sd * sd_reward(samples, reward)
    per_example = torch.stack(
        [sd_reward(samples[b : b + 1], reward) for b in range(samples.shape[0])]
    )
    return l1_p_loss(samples, target) - (beta_sd.to(per_example) * per_example).mean()


def l2_p_loss(samples: Tensor, target: Tensor) -> Tensor:
    """P-sample supervised-ℓ2 loss L_{2,P} of eq. (14) (Ohayon et al.), per-element normalised.

    Minimising it alone collapses the generated covariance to zero (Prop. 3.2).

    Args:
        samples: generated samples x̂_i, shape (B, P, *E), P >= 1.
        target: true images x, shape (B, *E).

    Returns:
        Scalar ``mean_b ||x_b − x̂_(P),b||_2^2 / N``.
    """
    _validate_samples(samples, target, min_p=1)
    return (target - samples.mean(dim=1)).pow(2).mean()


def variance_reward(samples: Tensor) -> Tensor:
    """Variance reward L_{var,P} of eq. (18), per-element normalised.

    ``1/(P−1) · Σ_i ||x̂_i − x̂_(P)||_2^2`` averaged over the batch and divided by N; an unbiased
    estimate of the per-element generated variance (eq. 19). The regulariser of eq. (17) is
    ``l2_p_loss(s, x) − variance_reward(s) / P`` (Fig. 1(d)).

    Args:
        samples: generated samples x̂_i, shape (B, P, *E), P >= 2.

    Returns:
        Scalar tensor.
    """
    p = _validate_samples(samples, min_p=2)
    deviations = (samples - samples.mean(dim=1, keepdim=True)).pow(2).sum(dim=1)
    return deviations.mean() / (p - 1)


def critic_wasserstein_loss(real_scores: Tensor, fake_scores: Tensor) -> Tensor:
    """Critic's Wasserstein loss ``mean(D(x̂, y)) − mean(D(x, y))`` = −L_adv of eq. (4).

    Args:
        real_scores: critic outputs on true images, any shape with the batch first.
        fake_scores: critic outputs on generated images, any shape with the batch first.
    """
    return fake_scores.mean() - real_scores.mean()


def reduce_over_batch(per_example: Tensor, reduction: str = "mean") -> Tensor:
    """Combine one loss value per example, shape (B,), into a scalar.

    Args:
        per_example: the loss of each of the B examples of a batch.
        reduction: ``"mean"`` (the expectation, as the paper writes it) or ``"sum"`` (the
            reference code's sum over the batch: B times ``"mean"``); see :data:`ADV_REDUCTIONS`.
    """
    if reduction == "mean":
        return per_example.mean()
    if reduction == "sum":
        return per_example.sum()
    raise ValueError(f"reduction must be one of {', '.join(ADV_REDUCTIONS)}, got {reduction!r}")


def generator_adversarial_loss(fake_scores: Tensor, reduction: str = "mean") -> Tensor:
    """Generator's adversarial loss ``−D(x̂, y)``: the θ-dependent part of L_adv (eq. 4).

    Each example's scores (its P samples, patch scores, ...) are averaged, then the B example
    means are averaged (``"mean"``: ``−mean(D(x̂, y))``, the paper) or summed (``"sum"``:
    ``−Σ_b mean_i D(x̂_bi, y_b)``, the reference's ``gen_pred_loss``).

    Args:
        fake_scores: critic outputs on generated images, shape (B, ...) with the B examples first
            (e.g. (B, P, 1) for P samples per example).
        reduction: ``"mean"`` or ``"sum"`` (:data:`ADV_REDUCTIONS`).
    """
    per_example = fake_scores.reshape(fake_scores.shape[0], -1).mean(dim=1)
    return -reduce_over_batch(per_example, reduction)


def drift_penalty(real_scores: Tensor, weight: float = 0.001) -> Tensor:
    """Drift penalty ``weight · mean(D(x, y)^2)`` that keeps the critic's scores near zero.

    Args:
        real_scores: critic outputs on true images, any shape.
        weight: penalty weight (0.001 in the reference configuration).
    """
    return weight * real_scores.pow(2).mean()


def _interpolate_penalty(
    score_fn: Callable[..., Tensor],
    reals: Sequence[Tensor],
    fakes: Sequence[Tensor],
    weight: float,
    generator: torch.Generator | None,
) -> Tensor:
    """WGAN-GP penalty for a critic with one or more image inputs.

    One α ~ U[0, 1) per example interpolates every input, ``α·real + (1−α)·fake``; the
    gradient norm is taken jointly over all inputs of an example.
    """
    first = reals[0]
    batch = first.shape[0]
    alpha = torch.rand(batch, generator=generator, device=first.device, dtype=first.dtype)
    interpolates = []
    for real, fake in zip(reals, fakes, strict=True):
        a = alpha.reshape(batch, *([1] * (real.ndim - 1)))
        mixed = a * real.detach() + (1.0 - a) * fake.detach()
        interpolates.append(mixed.requires_grad_(True))
    scores = score_fn(*interpolates)
    grads = torch.autograd.grad(scores.sum(), interpolates, create_graph=True)
    flat = torch.cat([g.reshape(batch, -1) for g in grads], dim=1)
    norms = torch.linalg.vector_norm(flat, dim=1)
    return weight * (norms - 1.0).pow(2).mean()


def gradient_penalty(
    critic: Callable[[Tensor, Tensor], Tensor],
    real: Tensor,
    fake: Tensor,
    condition: Tensor,
    weight: float = 10.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """WGAN-GP gradient penalty L_gp of Section 2 (Gulrajani et al.): ``weight·E[(||∇D||−1)^2]``.

    The critic is evaluated as ``critic(x_tilde, condition)`` at ``x_tilde = α·real + (1−α)·fake``
    with one α ~ U[0, 1) per example; the gradient is with respect to ``x_tilde`` only and its
    ℓ2 norm is taken over all elements of an example. ``real`` and ``fake`` are detached (the
    penalty trains the critic only); the result is differentiable with respect to the critic's
    parameters.

    Args:
        critic: callable mapping (x, y) of shapes (B, *E) and (B, *Y) to scores with batch first
            (scores of one example are summed, so patch critics work too).
        real: true images x, shape (B, *E).
        fake: generated images x̂, shape (B, *E).
        condition: measurements y passed unchanged to the critic, shape (B, *Y).
        weight: penalty weight (10 in the reference configuration).
        generator: optional torch.Generator for α, on the same device as ``real``.

    Returns:
        Scalar tensor.
    """
    if real.shape != fake.shape:
        raise ValueError(
            f"real and fake must have the same shape, got {tuple(real.shape)} "
            f"and {tuple(fake.shape)}"
        )
    return _interpolate_penalty(
        lambda xt: critic(xt, condition), (real,), (fake,), weight, generator
    )


def adler_generator_loss(
    critic3: Callable[[Tensor, Tensor, Tensor], Tensor],
    x: Tensor,
    x1: Tensor,
    x2: Tensor,
    y: Tensor,
    reduction: str = "mean",
) -> Tensor:
    """Adler & Öktem's three-input adversarial loss L_adv^adler of eq. (5), minimised by G.

    ``mean{½·D(x, x̂1, y) + ½·D(x̂2, x, y) − D(x̂1, x̂2, y)}`` (``reduction="sum"``: summed over
    the batch instead, as :func:`generator_adversarial_loss` does for the reference code).

    Args:
        critic3: callable ``critic3(a, b, y)`` scoring the ordered image pair (a, b) given y,
            returning scores with the batch first.
        x: true images, shape (B, *E).
        x1: generated samples G(z1, y), shape (B, *E).
        x2: generated samples G(z2, y) with independent codes, shape (B, *E).
        y: measurements, shape (B, *Y).
        reduction: ``"mean"`` or ``"sum"`` over the batch (:data:`ADV_REDUCTIONS`).

    Returns:
        Scalar tensor.
    """

    def per_example(scores: Tensor) -> Tensor:
        return scores.reshape(scores.shape[0], -1).mean(dim=1)

    values = (
        0.5 * per_example(critic3(x, x1, y))
        + 0.5 * per_example(critic3(x2, x, y))
        - per_example(critic3(x1, x2, y))
    )
    return reduce_over_batch(values, reduction)


def adler_critic_loss(
    critic3: Callable[[Tensor, Tensor, Tensor], Tensor],
    x: Tensor,
    x1: Tensor,
    x2: Tensor,
    y: Tensor,
    *,
    gp_weight: float = 10.0,
    drift_weight: float = 0.001,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Critic loss for Adler & Öktem's cGAN: ``−L_adv^adler`` (eq. 5) + gradient + drift penalty.

    ``x1`` and ``x2`` are detached. The critic learns to score pairs that contain the truth,
    (x, x̂1) and (x̂2, x), above generated pairs (x̂1, x̂2).

    Gradient penalty (our choice, documented): as in the reference baseline, the joint input
    (a, b) is interpolated between the true pair (x, x̂1) and the generated pair (x̂1, x̂2), one α
    per example, and the gradient norm is taken jointly over both image inputs. The drift
    penalty applies to the scores of both true-pair orderings.

    Args:
        critic3: callable ``critic3(a, b, y)`` as in :func:`adler_generator_loss`.
        x: true images, shape (B, *E).
        x1: generated samples G(z1, y), shape (B, *E).
        x2: generated samples G(z2, y), shape (B, *E).
        y: measurements, shape (B, *Y).
        gp_weight: gradient-penalty weight.
        drift_weight: drift-penalty weight (0 disables it).
        generator: optional torch.Generator for the interpolation weights.

    Returns:
        Scalar tensor.
    """
    x1, x2 = x1.detach(), x2.detach()
    true_first = critic3(x, x1, y)
    true_second = critic3(x2, x, y)
    fake_pair = critic3(x1, x2, y)
    adversarial = fake_pair.mean() - 0.5 * true_first.mean() - 0.5 * true_second.mean()
    penalty = _interpolate_penalty(
        lambda a, b: critic3(a, b, y), (x, x1), (x1, x2), gp_weight, generator
    )
    true_scores = torch.cat([true_first.reshape(-1), true_second.reshape(-1)])
    return adversarial + penalty + drift_penalty(true_scores, drift_weight)


def adversarial_weight(epoch: int) -> float:
    """β_adv of eq. (6) for the reference MRI schedule.

    1e-2 for epochs 0-4, 1e-4 for epochs 5-22, 1e-5 afterwards (epochs counted from 0).
    """
    if epoch < 0:
        raise ValueError(f"epoch must be >= 0, got {epoch}")
    if epoch <= 4:
        return 1e-2
    if epoch <= 22:
        return 1e-4
    return 1e-5


def update_beta_sd(
    beta_sd: float,
    e1: float,
    e_pval: float,
    p_val: int = 8,
    mu_sd: float = MU_SD_DEFAULT,
    *,
    beta_sd_n: float,
) -> float:
    """One step of the β_SD auto-tuning rule, eq. (23).

    ``β_{τ+1} = β_τ − μ_SD · ([E1/E_Pval]_dB − [2·Pval/(Pval+1)]_dB) · β_SD^N`` with
    ``[r]_dB = 10·log10(r)``. True-posterior samples give E1/E_P = 2P/(P+1) (Prop. 3.3); a
    smaller ratio means too little sample variation, so β_SD grows, and a larger one makes it
    shrink. The result is not clipped.

    Args:
        beta_sd: current β_SD,τ.
        e1: validation error energy of single samples, Ê_1 (eq. 22), > 0.
        e_pval: validation error energy of the P_val-sample average, Ê_Pval (eq. 21), > 0.
        p_val: number of samples averaged in ``e_pval``, at least 2.
        mu_sd: step size μ_SD per dB (see :data:`MU_SD_DEFAULT`).
        beta_sd_n: nominal weight β_SD^N for P_train (:func:`beta_sd_nominal`).

    Returns:
        β_SD,τ+1.
    """
    if p_val < 2:
        raise ValueError(f"p_val must be >= 2, got {p_val}")
    if not (e1 > 0 and e_pval > 0):
        raise ValueError(f"e1 and e_pval must be positive, got e1={e1}, e_pval={e_pval}")
    ratio_db = 10.0 * math.log10(e1 / e_pval)
    return beta_sd - mu_sd * (ratio_db - ideal_e1_over_ep_db(p_val)) * beta_sd_n


@torch.no_grad()
def error_energies(samples: Tensor, target: Tensor, e1_estimate: str = "first") -> tuple[Tensor, Tensor]:
    """Per-example error energies behind eqs. (21) and (22).

    ``E1`` is ``||x̂_1,v − x_v||_2^2`` of the first sample (``e1_estimate="first"``, eq. 22) or
    the mean of ``||x̂_i,v − x_v||_2^2`` over all P samples (``"all"``: each sample is a draw
    of the same expectation E_1, so this estimates it with less noise); ``EP`` is
    ``||x̂_(P),v − x_v||_2^2`` of the P-sample average (:func:`napari_rcgan.stats.error_energy`).
    Squared norms are sums over the elements (not per-element means); only the ratio matters for
    eq. (23).

    Args:
        samples: generated samples, shape (V, P, *E), P >= 2.
        target: true images, shape (V, *E).
        e1_estimate: one of :data:`E1_ESTIMATES`.

    Returns:
        ``(E1, EP)``, each of shape (V,), in the dtype of ``samples``.
    """
    _validate_samples(samples, target, min_p=2)
    if e1_estimate not in E1_ESTIMATES:
        raise ValueError(f"e1_estimate must be one of {E1_ESTIMATES}, got {e1_estimate!r}")
    singles = samples[:, :1] if e1_estimate == "first" else samples
    return error_energy(singles, target, 1), error_energy(samples, target, samples.shape[1])

