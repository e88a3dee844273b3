"""Loss functions of training.losses against hand-computed values (paper Section 3)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

from training.losses import (
    ADV_REDUCTIONS,
    MU_SD_DEFAULT,
    SD_REWARDS,
    adler_critic_loss,
    adler_generator_loss,
    adversarial_weight,
    beta_sd_nominal,
    critic_wasserstein_loss,
    drift_penalty,
    error_energies,
    generator_adversarial_loss,
    gradient_penalty,
    l1_p_loss,
    l2_p_loss,
    rcgan_regularizer,
    reduce_over_batch,
    sd_reward,
    update_beta_sd,
    variance_reward,
)

# Two examples, P = 2 samples each, two elements per example: samples (2, 2, 2), target (2, 2).
SAMPLES = torch.tensor([[[0.0, 2.0], [2.0, 4.0]], [[1.0, 1.0], [1.0, 1.0]]])
TARGET = torch.tensor([[1.0, 1.0], [0.0, 0.0]])
# P-averages: example 0 -> [1, 3], example 1 -> [1, 1].


def test_beta_sd_nominal_matches_eq_11() -> None:
    # P = 2: sqrt(2 / (pi * 2 * 3)) = sqrt(1 / (3 pi)).
    assert beta_sd_nominal(2) == pytest.approx(math.sqrt(1.0 / (3.0 * math.pi)))
    # P = 8: sqrt(2 / (pi * 72)) = sqrt(1 / (36 pi)) = 1 / (6 sqrt(pi)).
    assert beta_sd_nominal(8) == pytest.approx(1.0 / (6.0 * math.sqrt(math.pi)))


@pytest.mark.parametrize("p", [0, 1])
def test_beta_sd_nominal_rejects_p_below_two(p: int) -> None:
    with pytest.raises(ValueError, match="P >= 2"):
        beta_sd_nominal(p)


def test_rcgan_regularizer_scalar_example() -> None:
    # samples [[1, 3]], target [2]: average 2, so L1 = |2 - 2| = 0.
    # SD reward: sqrt(pi / (2*2*1)) * (|1 - 2| + |3 - 2|) = (sqrt(pi) / 2) * 2 = sqrt(pi).
    # With beta = beta_N(2) = sqrt(1/(3 pi)): 0 - sqrt(1/(3 pi)) * sqrt(pi) = -1/sqrt(3).
    samples = torch.tensor([[1.0, 3.0]])
    target = torch.tensor([2.0])
    assert float(l1_p_loss(samples, target)) == pytest.approx(0.0)
    assert float(sd_reward(samples)) == pytest.approx(math.sqrt(math.pi))
    value = rcgan_regularizer(samples, target, beta_sd_nominal(2))
    assert float(value) == pytest.approx(-1.0 / math.sqrt(3.0))


def test_rcgan_regularizer_per_element_normalisation() -> None:
    # L1: example 0 |[1,1] - [1,3]| = [0, 2] -> mean 1; example 1 |[0,0] - [1,1]| -> mean 1.
    #     batch mean 1.
    # SD: example 0 deviations [-1,-1] and [1,1] -> sum 4, per element 2; example 1 -> 0.
    #     batch mean 1, times sqrt(pi / 4) = sqrt(pi) / 2.
    # beta = 0.5: 1 - 0.5 * sqrt(pi) / 2 = 1 - sqrt(pi) / 4.
    assert float(l1_p_loss(SAMPLES, TARGET)) == pytest.approx(1.0)
    assert float(sd_reward(SAMPLES)) == pytest.approx(math.sqrt(math.pi) / 2.0)
    value = rcgan_regularizer(SAMPLES, TARGET, 0.5)
    assert float(value) == pytest.approx(1.0 - math.sqrt(math.pi) / 4.0)


def test_rcgan_regularizer_matches_reference_l1() -> None:
    # The L1 term is F.l1_loss of the P-average, as in the reference implementation.
    gen = torch.Generator().manual_seed(0)
    samples = torch.randn(3, 4, 2, 5, 5, generator=gen)
    target = torch.randn(3, 2, 5, 5, generator=gen)
    expected = nn.functional.l1_loss(samples.mean(dim=1), target)
    assert float(l1_p_loss(samples, target)) == pytest.approx(float(expected))


def test_rcgan_regularizer_is_differentiable() -> None:
    samples = SAMPLES.clone().requires_grad_(True)
    rcgan_regularizer(samples, TARGET, 0.3).backward()
    assert samples.grad is not None
    assert torch.isfinite(samples.grad).all()


def test_rcgan_regularizer_rejects_single_sample() -> None:
    with pytest.raises(ValueError, match="P >= 2"):
        rcgan_regularizer(torch.zeros(4, 1, 3), torch.zeros(4, 3), 0.1)


def test_rcgan_regularizer_rejects_mismatched_target() -> None:
    with pytest.raises(ValueError, match="target must have shape"):
        rcgan_regularizer(torch.zeros(4, 2, 3), torch.zeros(4, 5), 0.1)


def test_sd_reward_is_unbiased_sd_for_gaussian() -> None:
    # E{L_SD,P} = sigma for i.i.d. N(m, sigma^2) samples (the reason for the sqrt(pi/...) factor).
    gen = torch.Generator().manual_seed(1)
    samples = 3.0 + 0.7 * torch.randn(20000, 4, 8, generator=gen, dtype=torch.float64)
    assert float(sd_reward(samples)) == pytest.approx(0.7, rel=0.01)


def test_l2_p_loss_eq_14() -> None:
    # Example 0: errors [0, 2] -> squares [0, 4] -> mean 2; example 1: [1, 1] -> mean 1.
    # Batch mean 1.5.
    assert float(l2_p_loss(SAMPLES, TARGET)) == pytest.approx(1.5)


def test_variance_reward_eq_18() -> None:
    # Example 0: sum_i ||x_i - avg||^2 = 2 + 2 = 4, per element 2, / (P - 1) = 2; example 1: 0.
    # Batch mean 1.
    assert float(variance_reward(SAMPLES)) == pytest.approx(1.0)


def test_critic_and_generator_adversarial_losses() -> None:
    real = torch.tensor([1.0, 2.0, 3.0])
    fake = torch.tensor([[0.0], [1.0]])
    # mean(fake) - mean(real) = 0.5 - 2 = -1.5.
    assert float(critic_wasserstein_loss(real, fake)) == pytest.approx(-1.5)
    assert float(generator_adversarial_loss(fake)) == pytest.approx(-0.5)


def test_drift_penalty() -> None:
    # 0.001 * (1 + 4 + 9) / 3.
    scores = torch.tensor([1.0, -2.0, 3.0])
    assert float(drift_penalty(scores)) == pytest.approx(0.014 / 3.0)
    assert float(drift_penalty(scores, weight=1.0)) == pytest.approx(14.0 / 3.0)


class LinearCritic(nn.Module):
    """D(x, y) = <w, x> + sum(y): gradient w with respect to x everywhere."""

    def __init__(self, w: Tensor) -> None:
        super().__init__()
        self.w = nn.Parameter(w)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        return (x * self.w).flatten(1).sum(dim=1) + y.flatten(1).sum(dim=1)


def _real_fake() -> tuple[Tensor, Tensor, Tensor]:
    gen = torch.Generator().manual_seed(2)
    shape = (5, 1, 3, 4)
    return (
        torch.randn(shape, generator=gen),
        torch.randn(shape, generator=gen),
        torch.randn(5, 2, generator=gen),
    )


def test_gradient_penalty_zero_for_unit_gradient_critic() -> None:
    real, fake, y = _real_fake()
    w = torch.randn(1, 3, 4)
    critic = LinearCritic(w / w.norm())
    assert gradient_penalty(critic, real, fake, y).item() == pytest.approx(0.0, abs=1e-6)


def test_gradient_penalty_positive_otherwise() -> None:
    real, fake, y = _real_fake()
    w = torch.randn(1, 3, 4)
    # Gradient norm 2 everywhere: 10 * (2 - 1)^2 = 10.
    critic = LinearCritic(2.0 * w / w.norm())
    assert gradient_penalty(critic, real, fake, y).item() == pytest.approx(10.0, rel=1e-5)
    # A nonlinear critic: penalty > 0 and its gradient reaches the critic's parameters.
    quadratic = LinearCritic(w)

    def nonlinear(x: Tensor, cond: Tensor) -> Tensor:
        return quadratic(x, cond) ** 2

    penalty = gradient_penalty(nonlinear, real, fake, y, weight=1.0)
    assert penalty.item() > 0.0
    penalty.backward()
    assert quadratic.w.grad is not None and float(quadratic.w.grad.abs().sum()) > 0.0


def test_gradient_penalty_generator_is_reproducible() -> None:
    real, fake, y = _real_fake()
    critic = LinearCritic(torch.randn(1, 3, 4))

    def nonlinear(x: Tensor, cond: Tensor) -> Tensor:
        return critic(x, cond) ** 2

    first = gradient_penalty(nonlinear, real, fake, y, generator=torch.Generator().manual_seed(7))
    again = gradient_penalty(nonlinear, real, fake, y, generator=torch.Generator().manual_seed(7))
    assert first.item() == again.item()


def _pair_critic(a: Tensor, b: Tensor, y: Tensor) -> Tensor:
    """D(a, b, y) = a - 2b (+ 0*y): joint gradient (1, -2), norm sqrt(5)."""
    return (a - 2.0 * b).flatten(1).sum(dim=1) + 0.0 * y.flatten(1).sum(dim=1)


def test_adler_losses_eq_5() -> None:
    x, x1, x2, y = (torch.tensor([[v]]) for v in (1.0, 2.0, 3.0, 0.0))
    # D(x, x1) = 1 - 4 = -3; D(x2, x) = 3 - 2 = 1; D(x1, x2) = 2 - 6 = -4.
    # L_adler = 0.5 * (-3) + 0.5 * 1 - (-4) = 3.
    assert float(adler_generator_loss(_pair_critic, x, x1, x2, y)) == pytest.approx(3.0)
    bare = adler_critic_loss(_pair_critic, x, x1, x2, y, gp_weight=0.0, drift_weight=0.0)
    assert float(bare) == pytest.approx(-3.0)
    # GP: joint gradient norm sqrt(5) -> 10 * (sqrt(5) - 1)^2; drift: 0.001 * (9 + 1) / 2.
    full = adler_critic_loss(_pair_critic, x, x1, x2, y)
    expected = -3.0 + 10.0 * (math.sqrt(5.0) - 1.0) ** 2 + 0.001 * 5.0
    assert float(full) == pytest.approx(expected, rel=1e-6)


def test_adler_critic_loss_trains_critic_only() -> None:
    weights = nn.Parameter(torch.tensor([1.0, -2.0]))

    def critic3(a: Tensor, b: Tensor, y: Tensor) -> Tensor:
        return (weights[0] * a + weights[1] * b).pow(2).sum(dim=1) + y.sum(dim=1)

    x, y = torch.zeros(2, 3), torch.zeros(2, 1)
    x1 = torch.ones(2, 3, requires_grad=True)
    x2 = torch.full((2, 3), 2.0, requires_grad=True)
    adler_critic_loss(critic3, x, x1, x2, y).backward()
    assert x1.grad is None and x2.grad is None
    assert weights.grad is not None and float(weights.grad.abs().sum()) > 0.0


@pytest.mark.parametrize(
    ("epoch", "weight"), [(0, 1e-2), (4, 1e-2), (5, 1e-4), (22, 1e-4), (23, 1e-5), (100, 1e-5)]
)
def test_adversarial_weight_schedule(epoch: int, weight: float) -> None:
    assert adversarial_weight(epoch) == weight


def test_update_beta_sd_direction_and_value() -> None:
    beta_n = beta_sd_nominal(2)
    target = 16.0 / 9.0  # 2P/(P+1) for P_val = 8
    # Ratio below target: too little variation -> beta grows.
    assert update_beta_sd(beta_n, 1.5, 1.0, beta_sd_n=beta_n) > beta_n
    # Ratio above target -> beta shrinks.
    assert update_beta_sd(beta_n, 2.0, 1.0, beta_sd_n=beta_n) < beta_n
    # Ratio on target -> unchanged.
    assert update_beta_sd(beta_n, target, 1.0, beta_sd_n=beta_n) == pytest.approx(beta_n)
    # Exact eq. (23): beta - mu * (10 log10(1.5) - 10 log10(16/9)) * beta_N.
    expected = 0.3 - MU_SD_DEFAULT * 10.0 * math.log10(1.5 / target) * beta_n
    assert update_beta_sd(0.3, 3.0, 2.0, p_val=8, beta_sd_n=beta_n) == pytest.approx(expected)


def test_update_beta_sd_validates() -> None:
    with pytest.raises(ValueError, match="positive"):
        update_beta_sd(0.1, 0.0, 1.0, beta_sd_n=0.1)
    with pytest.raises(ValueError, match="p_val"):
        update_beta_sd(0.1, 1.0, 1.0, p_val=1, beta_sd_n=0.1)


def test_e1_ep_hand_computed() -> None:
    # V = 2, P = 2, scalar elements: samples [[1, 5], [0, 2]], targets [2, 0].
    # First sample: E1 = [(1-2)^2, (0-0)^2] = [1, 0]; all samples: [(1 + 9) / 2, (0 + 4) / 2] = [5, 2];
    # averages [3, 1] -> EP = [(3-2)^2, (1-0)^2] = [1, 1].
    samples, target = torch.tensor([[1.0, 5.0], [0.0, 2.0]]), torch.tensor([2.0, 0.0])
    e1, ep = error_energies(samples, target)
    assert e1.tolist() == [1.0, 0.0] and ep.tolist() == [1.0, 1.0]
    e1_all, ep_all = error_energies(samples, target, "all")
    assert e1_all.tolist() == [5.0, 2.0] and ep_all.tolist() == [1.0, 1.0]
    with pytest.raises(ValueError, match="e1_estimate.*'last'"):
        error_energies(samples, target, "last")


def _gaussian_posterior(p: int, v: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Samples ``(v, p, 16)`` and targets ``(v, 16)`` drawn from the same Gaussian posteriors."""
    gen = torch.Generator().manual_seed(seed)
    mean = torch.randn(v, 16, generator=gen, dtype=torch.float64)
    sd = 0.1 + torch.rand(v, 16, generator=gen, dtype=torch.float64)
    target = mean + sd * torch.randn(v, 16, generator=gen, dtype=torch.float64)
    samples = mean[:, None] + sd[:, None] * torch.randn(v, p, 16, generator=gen, dtype=torch.float64)
    return samples, target


@pytest.mark.parametrize("estimate", ["first", "all"])
@pytest.mark.parametrize("p", [2, 8])
def test_e1_ep_true_posterior_ratio(p: int, estimate: str) -> None:
    # Prop. 3.3: samples and target drawn from the same Gaussian posterior -> E1/EP = 2P/(P+1).
    e1, ep = error_energies(*_gaussian_posterior(p, 20000, 3), estimate)
    assert float(e1.mean() / ep.mean()) == pytest.approx(2.0 * p / (p + 1), rel=0.03)


def test_e1_from_all_samples_is_less_noisy() -> None:
    # 20 validation examples (one R bin), 40 repetitions: the spread of [E1/E8]dB across
    # repetitions is much smaller when E1 averages all 8 samples.
    def spread(estimate: str) -> float:
        ratios = []
        for seed in range(40):
            e1, ep = error_energies(*_gaussian_posterior(8, 20, seed), estimate)
            ratios.append(10 * math.log10(float(e1.mean() / ep.mean())))
        return float(torch.tensor(ratios).std())

    assert spread("all") < 0.6 * spread("first")


# --- Paper equations vs the reference code (train.sd_reward, train.adv_reduction) -------------


def test_reference_sd_reward_is_unbiased_std_by_hand() -> None:
    # Example 0: per element the samples are (0, 2) and (2, 4): unbiased SD sqrt(2) each;
    # example 1: 0. Mean over the 4 elements: sqrt(2) / 2.
    assert float(sd_reward(SAMPLES, "reference")) == pytest.approx(math.sqrt(2.0) / 2.0)
    # P = 3, one scalar example (0, 1, 5): mean 2, unbiased variance (4 + 1 + 9) / 2 = 7.
    three = torch.tensor([[0.0, 1.0, 5.0]])
    assert float(sd_reward(three, "reference")) == pytest.approx(math.sqrt(7.0))
    # eq. (9) on the same samples: sqrt(pi / 12) * (2 + 1 + 3).
    assert float(sd_reward(three, "paper")) == pytest.approx(6.0 * math.sqrt(math.pi / 12.0))


def test_reference_sd_reward_is_eq_9_over_sqrt_pi_over_2_at_p_2() -> None:
    samples = torch.randn(4, 2, 3, 5, 5, generator=torch.Generator().manual_seed(0))
    paper = float(sd_reward(samples, "paper"))
    reference = float(sd_reward(samples, "reference"))
    assert paper / reference == pytest.approx(math.sqrt(math.pi / 2.0), rel=1e-5)
    # The reference code's expression, literally.
    assert reference == pytest.approx(float(torch.std(samples, dim=1).mean()), rel=1e-6)


def test_rcgan_regularizer_with_reference_reward() -> None:
    # samples [[1, 3]], target [2]: L1 = 0; torch.std of (1, 3) = sqrt(2);
    # 0 - sqrt(1/(3 pi)) * sqrt(2) = -sqrt(2 / (3 pi)).
    samples = torch.tensor([[1.0, 3.0]])
    value = rcgan_regularizer(samples, torch.tensor([2.0]), beta_sd_nominal(2), "reference")
    assert float(value) == pytest.approx(-math.sqrt(2.0 / (3.0 * math.pi)))


def test_generator_adversarial_loss_mean_and_sum_by_hand() -> None:
    # B = 3 examples, P = 2 samples each: per-example mean scores 1.5, 4, 0.
    scores = torch.tensor([[[1.0], [2.0]], [[3.0], [5.0]], [[0.0], [0.0]]])
    assert float(generator_adversarial_loss(scores, "mean")) == pytest.approx(-5.5 / 3.0)
    assert float(generator_adversarial_loss(scores, "sum")) == pytest.approx(-5.5)
    # The reference's gen_pred_loss: torch.mean(fake_pred[0]) + ... + torch.mean(fake_pred[B-1]).
    fake_pred = scores[..., 0]
    gen_pred_loss = torch.mean(fake_pred[0])
    for k in range(fake_pred.shape[0] - 1):
        gen_pred_loss = gen_pred_loss + torch.mean(fake_pred[k + 1])
    assert float(generator_adversarial_loss(scores, "sum")) == pytest.approx(-float(gen_pred_loss))


def test_adler_generator_loss_sum_is_batch_times_mean() -> None:
    x, x1, x2, y = (torch.tensor([[v], [2 * v]]) for v in (1.0, 2.0, 3.0, 0.0))
    # Example 0 as in test_adler_losses_eq_5: 3; example 1 (all doubled, critic linear): 6.
    assert float(adler_generator_loss(_pair_critic, x, x1, x2, y)) == pytest.approx(4.5)
    assert float(adler_generator_loss(_pair_critic, x, x1, x2, y, "sum")) == pytest.approx(9.0)


def test_unknown_reward_or_reduction_is_refused() -> None:
    assert SD_REWARDS == ("paper", "reference") and ADV_REDUCTIONS == ("mean", "sum")
    with pytest.raises(ValueError, match="paper, reference"):
        sd_reward(SAMPLES, "biased")
    with pytest.raises(ValueError, match="mean, sum"):
        reduce_over_batch(torch.ones(3), "max")


def test_r_bins_of_the_mask_agnostic_range_and_fixed_r() -> None:
    from training.losses import r_bin_index, r_bins

    bins = r_bins(2.0, 8.0)
    assert bins == [(2.0, 3.0), (3.0, 5.0), (5.0, 7.0), (7.0, 8.0)]
    R = torch.tensor([2.0, 2.99, 3.0, 4.9, 5.0, 6.99, 7.0, 8.0, 9.0, 1.5])
    assert r_bin_index(R, bins).tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 3, 0]
    assert r_bins(4.0, 4.0) == [(4.0, 4.0)]
    assert r_bins(2.0, 4.0) == [(2.0, 3.0), (3.0, 4.0)]
    assert r_bins(2.0, 4.0, [2.5, 3.0, 6.0]) == [(2.0, 2.5), (2.5, 3.0), (3.0, 4.0)]


def test_pooling_adds_each_bins_neighbours_with_binomial_weights() -> None:
    from training.losses import pool_neighbouring_bins

    sums = torch.tensor([[1.0, 10.0], [2.0, 20.0], [4.0, 40.0], [8.0, 80.0]], dtype=torch.float64)
    assert pool_neighbouring_bins(sums, 0) is sums
    # reach 1: weights 1, 2, 1 (ends: the missing neighbour is left out).
    assert pool_neighbouring_bins(sums, 1)[:, 0].tolist() == [4.0, 9.0, 18.0, 20.0]
    assert pool_neighbouring_bins(sums, 1)[:, 1].tolist() == [40.0, 90.0, 180.0, 200.0]
    # reach 2: weights 1, 4, 6, 4, 1.
    assert pool_neighbouring_bins(sums, 2)[:, 0].tolist() == [
        6 + 8 + 4, 4 + 12 + 16 + 8, 1 + 8 + 24 + 32, 2 + 16 + 48]


@pytest.mark.parametrize("reach", [1, 2])
def test_pooled_beta_sd_updates_do_not_grow_a_zigzag_table(reach: int) -> None:
    """Eq. (23) per bin on pooled sums, with [E1/E8]dB rising linearly in each bin's beta_SD: a
    table that alternates around the calibrated value must not drift further apart."""
    from training.losses import pool_neighbouring_bins

    calibrated, slope, bins = 0.3, 10.0, 7  # dB of ratio per unit of beta_SD
    table = [calibrated + (0.05 if i % 2 else -0.05) for i in range(bins)]
    target_db = 10 * math.log10(16 / 9)
    for _ in range(200):
        ratio_db = [target_db + slope * (beta - calibrated) for beta in table]
        sums = torch.tensor([[10 ** (db / 10), 1.0, 1.0] for db in ratio_db], dtype=torch.float64)
        pooled = pool_neighbouring_bins(sums, reach)
        table = [update_beta_sd(beta, float(e1 / n), float(ep / n), mu_sd=0.15, beta_sd_n=0.33)
                 for beta, (e1, ep, n) in zip(table, pooled, strict=True)]
    spread = max(table) - min(table)
    assert spread <= 0.1 + 1e-9  # the box filter of the first version grew it to beyond 0.5


def test_beta_sd_table_fit_is_a_polynomial_in_r() -> None:
    from training.losses import fit_beta_sd_table, r_bins

    bins = r_bins(2.0, 8.0, [2.5, 3, 4, 5, 6, 7])
    middles = [(low + high) / 2 for low, high in bins]
    # A table already on a line stays; a jagged one goes onto the line through it.
    line = [0.1 + 0.05 * r for r in middles]
    assert fit_beta_sd_table(line, bins, 1) == pytest.approx(line)
    jagged = [-0.01, 0.12, 0.26, 0.51, 0.37, 0.13, 0.25]  # the demo run's table at 14 506 iterations
    fitted = fit_beta_sd_table(jagged, bins, 2)
    second_differences = [a - 2 * b + c for a, b, c in zip(fitted, fitted[1:], fitted[2:])]
    assert max(abs(d) for d in second_differences) < 0.1 < abs(jagged[3] - jagged[4])
    assert sum(fitted) == pytest.approx(sum(jagged))  # least squares with a constant term
    assert fit_beta_sd_table(jagged, bins, 0) == pytest.approx([sum(jagged) / 7] * 7)
    assert fit_beta_sd_table(jagged, bins, 6) == jagged  # as many coefficients as bins
    with pytest.raises(ValueError, match="3 entries for 7 R bins"):
        fit_beta_sd_table(jagged[:3], bins, 1)
    with pytest.raises(ValueError, match="0 or more"):
        fit_beta_sd_table(jagged, bins, -1)


def test_beta_sd_table_remapped_onto_other_bins() -> None:
    from training.losses import r_bins, remap_beta_sd_table

    saved = [{"R_min": low, "R_max": high, "beta_sd": beta}
             for (low, high), beta in zip(r_bins(2.0, 8.0), [0.5, 0.3, 0.4, 0.35], strict=True)]
    finer = r_bins(2.0, 8.0, [2.25, 2.5, 3, 4, 5, 6, 7])
    # Each new bin takes the value of the old bin holding its middle R.
    assert remap_beta_sd_table(saved, finer) == [0.5, 0.5, 0.5, 0.3, 0.3, 0.4, 0.4, 0.35]
    assert remap_beta_sd_table(saved, r_bins(2.0, 8.0)) == [0.5, 0.3, 0.4, 0.35]
    assert remap_beta_sd_table(saved, [(8.0, 9.0)]) == [0.35]  # past the end: nearest bin


def test_rcgan_regularizer_with_per_example_beta_sd() -> None:
    same = rcgan_regularizer(SAMPLES, TARGET, torch.tensor([0.3, 0.3]))
    assert float(same) == pytest.approx(float(rcgan_regularizer(SAMPLES, TARGET, 0.3)))
    # Example 1 has no spread, so only example 0's beta_SD counts: its SD reward is
    # sqrt(pi/4) * mean(|0-1|+|2-1|, |2-3|+|4-3|) = sqrt(pi/4) * 2, halved by the batch mean.
    weighted = rcgan_regularizer(SAMPLES, TARGET, torch.tensor([0.5, 7.0]))
    expected = float(l1_p_loss(SAMPLES, TARGET)) - 0.5 * math.sqrt(math.pi / 4) * 2 / 2
    assert float(weighted) == pytest.approx(expected)
