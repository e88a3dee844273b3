"""Prefix-sum statistics, error maps and metrics."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.stats import spearmanr

from napari_rcgan import stats
from napari_rcgan.errors import ParameterError


@settings(max_examples=30, deadline=None)
@given(
    arrays(
        np.float32,
        st.tuples(st.integers(1, 12), st.integers(1, 5), st.integers(1, 5)),
        elements=st.floats(-100, 100, width=32),
    ),
    st.integers(1, 5),
)
def test_prefix_mean_and_sd_equal_numpy_for_every_P(samples, chunk):
    stack = stats.SampleStack(samples.shape[1:], capacity=2)
    for start in range(0, len(samples), chunk):
        stack.extend(samples[start : start + chunk])
    assert len(stack) == len(samples)
    np.testing.assert_array_equal(stack.samples, samples)
    for P in range(1, len(samples) + 1):
        first = samples[:P].astype(np.float64)
        np.testing.assert_allclose(stack.mean(P), first.mean(0), rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(stack.std(P), first.std(0), rtol=1e-3, atol=2e-3)


def test_colour_stack_and_bad_P():
    stack = stats.SampleStack((4, 4, 3))
    stack.extend(np.ones((2, 4, 4, 3)))
    assert stack.mean(2).shape == (4, 4, 3)
    with pytest.raises(ValueError, match="between 1 and the 2"):
        stack.mean(3)
    with pytest.raises(ValueError, match="does not fit"):
        stack.extend(np.ones((1, 4, 4)))


def test_psnr_ssim_apsd_and_error():
    rng = np.random.default_rng(0)
    reference = rng.random((32, 32)).astype(np.float32)
    assert stats.psnr(reference, reference) == float("inf")
    noisy = reference + 0.1
    assert stats.psnr(noisy, reference) == pytest.approx(
        10 * np.log10(reference.max() ** 2 / 0.01), rel=1e-4
    )
    assert stats.ssim(reference, reference) == pytest.approx(1.0)
    assert stats.ssim(rng.random((32, 32)), reference) < 0.3
    np.testing.assert_allclose(stats.absolute_error(noisy, reference), 0.1, rtol=1e-4)
    stack = stats.SampleStack((32, 32))
    stack.extend(np.stack([reference - 0.2, reference + 0.2]))
    assert stats.apsd(stack) == pytest.approx(0.2, rel=1e-4)


def test_error_energy_averages_disjoint_groups_by_hand():
    # One measurement, 4 complex scalar samples, target 0: |1|², |i|², |3|², |−1|² -> E1 = 3;
    # pairs (1 + i)/2, (3 − 1)/2 -> |.|² = 0.5, 1 -> E2 = 0.75; all four: (3 + i)/4 -> 10/16.
    samples = torch.tensor([[1, 1j, 3, -1]], dtype=torch.complex64)
    target = torch.zeros(1, dtype=torch.complex64)
    assert stats.error_energy(samples, target, 1).tolist() == pytest.approx([3.0])
    assert stats.error_energy(samples, target, 2).tolist() == pytest.approx([0.75])
    assert stats.error_energy(samples, target, 4).tolist() == pytest.approx([10 / 16])
    assert stats.error_energy(samples, target, 3).tolist() == pytest.approx([abs((1 + 1j + 3) / 3) ** 2])
    with pytest.raises(ParameterError, match="between 1 and the 4 samples"):
        stats.error_energy(samples, target, 5)


def test_error_energy_is_per_measurement_and_sums_over_elements():
    samples = torch.zeros(2, 2, 3, 3)
    samples[1] += 1.0  # measurement 1: every element off by one
    energies = stats.error_energy(samples, torch.zeros(2, 3, 3), 2)
    assert energies.tolist() == [0.0, 9.0]


def test_spearman_ceiling_is_what_exactly_calibrated_errors_reach():
    rng = np.random.default_rng(1)
    for spread in (0.1, 0.5, 1.5):  # log-SD spread across pixels
        sd = np.exp(spread * rng.standard_normal(4000))
        ceiling = stats.spearman_ceiling(sd, seed=0)
        errors = sd * np.abs(rng.standard_normal(sd.size))  # Gaussian errors of exactly that SD
        observed = float(spearmanr(sd, errors).statistic)
        assert observed == pytest.approx(ceiling, abs=0.05)
    # More spread in the map, higher ceiling; a flat map cannot rank errors at all.
    assert stats.spearman_ceiling(np.exp(0.1 * rng.standard_normal(4000))) < 0.15
    assert stats.spearman_ceiling(np.exp(1.5 * rng.standard_normal(4000))) > 0.7
    assert stats.spearman_ceiling(np.full(100, 0.3)) == 0.0


@pytest.mark.parametrize(("P", "ratio"), [(1, 1.0), (2, 4 / 3), (8, 16 / 9), (32, 64 / 33)])
def test_ideal_e1_over_ep_is_prop_3_3(P, ratio):
    assert stats.ideal_e1_over_ep_db(P) == pytest.approx(10 * np.log10(ratio))
    assert round(stats.ideal_e1_over_ep_db(8), 2) == 2.50


def test_sd_error_spearman_ranks_only_the_object():
    reference = np.zeros((8, 8))
    reference[2:6, 2:6] = 1.0
    support = stats.object_support(reference)
    assert support.sum() == 16 and support[2:6, 2:6].all()
    sd = np.arange(64, dtype=float).reshape(8, 8)
    error = sd.copy()
    error[support] = sd[support][::-1]  # inside the object the error ranks opposite to the SD
    assert stats.sd_error_spearman(sd, error, support) == pytest.approx(-1.0)
    # Outside the object SD and error agree, but it does not count; the whole map says otherwise.
    assert spearmanr(sd.ravel(), error.ravel()).statistic > 0.5
    with pytest.warns(RuntimeWarning, match="SD map is constant inside the object"):
        assert math.isnan(stats.sd_error_spearman(np.ones((8, 8)), error, support))  # one sample
    assert not stats.object_support(np.full((4, 4), 0.04) * [[0.0], [1], [1], [1]])[0].any()
