"""Prefix-sum statistics, error maps and metrics."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from napari_rcgan import stats


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
