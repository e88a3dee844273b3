"""Posterior statistics: prefix-sum sample stacks, error maps, PSNR/SSIM, APSD, error energies.

All images are real magnitude arrays ``(H, W)`` (or ``(H, W, 3)`` for colour), except in
:func:`error_energy`, which takes the network's (complex, multicoil) sample tensors.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch
from scipy.stats import spearmanr
from skimage.metrics import structural_similarity

from napari_rcgan.errors import ParameterError


class SampleStack:
    """Posterior samples with prefix sums, so that mean and SD of the first P cost O(HW).

    ``sums[k]`` and ``squares[k]`` hold the sum of the first ``k`` samples and of their squares
    (float64, so the variance ``E[x²] − E[x]²`` keeps ~10 significant digits).
    """

    def __init__(self, sample_shape: tuple[int, ...], capacity: int = 8) -> None:
        self.sample_shape = tuple(sample_shape)
        self._samples = np.zeros((capacity, *self.sample_shape), dtype=np.float32)
        self._sums = np.zeros((capacity + 1, *self.sample_shape), dtype=np.float64)
        self._squares = np.zeros_like(self._sums)
        self.count = 0

    def __len__(self) -> int:
        return self.count

    @property
    def samples(self) -> np.ndarray:
        """The stored samples ``(N, *sample_shape)`` (a view)."""
        return self._samples[: self.count]

    @property
    def buffer(self) -> np.ndarray:
        """All ``capacity`` rows, filled in place as samples arrive (rows ≥ count are zero);
        a viewer can show it once and refresh instead of receiving a new array per chunk."""
        return self._samples

    def extend(self, samples: np.ndarray) -> None:
        """Append a chunk ``(n, *sample_shape)``."""
        samples = np.asarray(samples, dtype=np.float32)
        if samples.shape[1:] != self.sample_shape:
            raise ValueError(f"chunk of shape {samples.shape[1:]} does not fit {self.sample_shape}")
        needed = self.count + len(samples)
        if needed > len(self._samples):
            self._grow(max(needed, 2 * len(self._samples)))
        chunk = samples.astype(np.float64)
        start = self.count
        self._samples[start:needed] = samples
        self._sums[start + 1 : needed + 1] = self._sums[start] + np.cumsum(chunk, axis=0)
        self._squares[start + 1 : needed + 1] = self._squares[start] + np.cumsum(chunk**2, axis=0)
        self.count = needed

    def _grow(self, capacity: int) -> None:
        grown = np.zeros((capacity, *self.sample_shape), dtype=np.float32)
        grown[: self.count] = self.samples
        self._samples = grown
        for name in ("_sums", "_squares"):
            old = getattr(self, name)
            new = np.zeros((capacity + 1, *self.sample_shape), dtype=np.float64)
            new[: self.count + 1] = old[: self.count + 1]
            setattr(self, name, new)

    def _check(self, P: int) -> None:
        if not 1 <= P <= self.count:
            raise ValueError(f"P must be between 1 and the {self.count} samples drawn, got {P}")

    def mean(self, P: int | None = None) -> np.ndarray:
        """P-sample average ``x̂_(P)`` of the first P samples (default: all)."""
        P = self.count if P is None else P
        self._check(P)
        return (self._sums[P] / P).astype(np.float32)

    def std(self, P: int | None = None) -> np.ndarray:
        """Pixel-wise SD ``(1/P Σ (x̂_i − x̂_(P))²)^½`` of the first P samples (paper, Fig. 4)."""
        P = self.count if P is None else P
        self._check(P)
        mean = self._sums[P] / P
        variance = np.maximum(self._squares[P] / P - mean**2, 0.0)
        return np.sqrt(variance).astype(np.float32)


def absolute_error(estimate: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Pixel-wise ``|estimate − reference|``."""
    return np.abs(np.asarray(estimate, np.float32) - np.asarray(reference, np.float32))


def data_range(reference: np.ndarray) -> float:
    """Data range for PSNR/SSIM taken from the reference (its maximum, fastMRI convention)."""
    value = float(np.max(reference))
    return value if value > 0 else 1.0


def psnr(estimate: np.ndarray, reference: np.ndarray) -> float:
    """PSNR in dB with the reference's data range."""
    mse = float(np.mean((np.asarray(estimate, np.float64) - reference) ** 2))
    if mse == 0:
        return float("inf")
    return 10 * np.log10(data_range(reference) ** 2 / mse)


def ssim(estimate: np.ndarray, reference: np.ndarray) -> float:
    """SSIM (scikit-image, 7×7 window) with the reference's data range; colour over the last axis."""
    reference = np.asarray(reference, np.float64)
    channel_axis = -1 if reference.ndim == 3 else None
    return float(
        structural_similarity(
            reference,
            np.asarray(estimate, np.float64),
            data_range=data_range(reference),
            channel_axis=channel_axis,
        )
    )


def apsd(stack: SampleStack, P: int | None = None) -> float:
    """Average pixel-wise SD ``(1/(NP) Σ_i ||x̂_(P) − x̂_i||²)^½`` (paper, Table 1)."""
    return float(np.sqrt(np.mean(stack.std(P).astype(np.float64) ** 2)))


def ideal_e1_over_ep_db(P: int) -> float:
    """``[E1/E_P]dB`` of samples from the true posterior: ``10·log10(2P/(P+1))`` (Prop. 3.3),
    e.g. 2.50 dB for P = 8."""
    return 10.0 * math.log10(2.0 * P / (P + 1))


def error_energy(samples: torch.Tensor, target: torch.Tensor, P: int) -> torch.Tensor:
    """Estimate of ``E_P = E{||x̂_(P) − x||²₂ | y}`` (eq. 20) for each of B measurements.

    The mean, over the ``⌊S/P⌋`` disjoint groups of ``P`` consecutive samples, of the squared
    ℓ2 norm (sum over the elements) of the group's average minus the target. Every group is a
    draw of the same expectation, so using all of them lowers the noise of a single group: with
    ``S = P`` this is the term of eq. (21); with ``P = 1`` it averages eq. (22)'s single-sample
    error over all ``S`` samples.

    Args:
        samples: ``(B, S, *E)`` samples (real or complex), ``S ≥ P``.
        target: ``(B, *E)`` true images.
        P: samples per average, at least 1.

    Returns:
        ``(B,)`` real tensor in the samples' precision.
    """
    count, draws = samples.shape[0], samples.shape[1]
    if not 1 <= P <= draws:
        raise ParameterError(f"P must be between 1 and the {draws} samples, got {P}")
    groups = draws // P
    averages = samples[:, : groups * P].reshape(count, groups, P, *samples.shape[2:]).mean(dim=2)
    return (averages - target[:, None]).abs().pow(2).reshape(count, groups, -1).sum(dim=2).mean(dim=1)


SUPPORT_FRACTION = 0.05


def object_support(reference: np.ndarray) -> np.ndarray:
    """Bool map of the object: pixels brighter than ``SUPPORT_FRACTION`` (5 %) of the
    reference's maximum. SD–error statistics are taken there, so that the empty background
    (error and SD both near zero) does not inflate them."""
    reference = np.asarray(reference)
    return reference > SUPPORT_FRACTION * reference.max()


def sd_error_spearman(sd: np.ndarray, error: np.ndarray, support: np.ndarray) -> float:
    """Spearman correlation of the pixel-wise SD with the absolute error inside ``support``.

    Args:
        sd, error: same-shape maps, e.g. ``(H, W)``: the SD of the samples and
            ``|x̂_(P) − x|`` of their average.
        support: bool map of the same shape (:func:`object_support`).

    Returns NaN, with a :class:`RuntimeWarning`, where either map is constant over the support
    (e.g. the SD of a single sample): there is no ranking to compare.
    """
    sd, error = np.asarray(sd)[support], np.asarray(error)[support]
    if sd.size < 2 or np.ptp(sd) == 0 or np.ptp(error) == 0:
        what = "SD" if sd.size < 2 or np.ptp(sd) == 0 else "error"
        warnings.warn(f"the {what} map is constant inside the object (one sample, or a generator that "
                      "ignores its noise?): Spearman(SD, |error|) is undefined (NaN)",
                      RuntimeWarning, stacklevel=2)
        return math.nan
    return float(spearmanr(sd, error).statistic)


def spearman_ceiling(sd: np.ndarray, seed: int = 0, draws: int = 20) -> float:
    """The SD–error Spearman correlation an SD map of this shape would reach if it were right.

    If each pixel's error were Gaussian with exactly the predicted SD, ``|error| = SD·|n|`` with
    ``n ~ N(0, 1)`` per pixel, and the rank correlation between SD and ``|error|`` would still be
    well below 1: it is limited by how much the SD varies across the pixels compared with the
    spread of ``|n|``. Returns the mean Spearman correlation of ``sd`` with ``sd·|n|`` over
    ``draws`` draws of ``n`` (seeded), 0 for a constant map. An observed correlation is to be
    read against this value, not against 1.

    Args:
        sd: pixel-wise SDs (any shape; e.g. those inside the object).
    """
    values = np.asarray(sd, np.float64).ravel()
    if values.size < 2 or np.ptp(values) == 0:
        return 0.0
    rng = np.random.default_rng(seed)
    return float(np.mean([spearmanr(values, values * np.abs(rng.standard_normal(values.size))).statistic
                          for _ in range(draws)]))


MAX_COMPONENTS = 10


def principal_components(
    samples: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The first k principal components of a posterior sample stack (cf. pcaGAN).

    From the SVD ``U S Vᵀ`` of the centred stack ``X − mean`` flattened to ``(P, N)``: the
    components are the rows of ``Vᵀ`` (unit norm), the variances ``S² / (P − 1)`` (as
    ``numpy.cov``), the explained fractions ``S² / Σ S²``. Each component's sign makes its
    largest-magnitude entry positive.

    Args:
        samples: ``(P, H, W)`` (or ``(P, H, W, C)``) stack, P ≥ 2.
        k: number of components, ``1 ≤ k ≤ min(P − 1, 10)``.

    Returns:
        ``(components (k, H, W[, C]) float32, variances (k,) float64, explained (k,) float64)``.

    Raises:
        ParameterError: k out of range.
    """
    samples = np.asarray(samples)
    count = samples.shape[0]
    limit = min(count - 1, MAX_COMPONENTS)
    if not isinstance(k, (int, np.integer)) or not 1 <= k <= limit:
        raise ParameterError(
            f"number of principal components must be an integer in 1..{limit} "
            f"(min(P - 1, {MAX_COMPONENTS}) for P={count} samples), got {k}"
        )
    flat = samples.reshape(count, -1).astype(np.float64)
    centred = flat - flat.mean(axis=0)
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    components = vt[:k]
    peaks = np.argmax(np.abs(components), axis=1)
    components = components * np.sign(components[np.arange(k), peaks])[:, None]
    energy = singular**2
    total = float(energy.sum())
    explained = energy[:k] / total if total > 0 else np.zeros(k)
    return (
        components.reshape(k, *samples.shape[1:]).astype(np.float32),
        energy[:k] / (count - 1),
        explained,
    )


def roi_values(samples: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mean intensity of each sample inside a region: the ROI posterior, float64 ``(P,)``.

    Args:
        samples: ``(P, H, W)`` (or ``(P, H, W, C)``: the mean is over pixels and channels).
        mask: bool ``(H, W)``, True inside the region.

    Raises:
        ParameterError: a mask of another shape, or an empty one.
    """
    samples = np.asarray(samples)
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != samples.shape[1:3]:
        raise ParameterError(
            f"ROI mask of shape {mask.shape} does not fit samples of {samples.shape[1:3]}"
        )
    if not mask.any():
        raise ParameterError("the ROI contains no pixel of the image")
    values = samples[:, mask].astype(np.float64)
    return values.reshape(len(samples), -1).mean(axis=1)


def roi_box_mask(box: tuple[int, int, int, int], shape: tuple[int, int]) -> np.ndarray:
    """A rectangle ``(Y0, X0, Y1, X1)`` (rows Y0..Y1−1, columns X0..X1−1) as a bool mask.

    Raises:
        ParameterError: an empty rectangle or one that leaves the ``(H, W)`` image.
    """
    y0, x0, y1, x1 = (int(v) for v in box)
    height, width = shape
    if not (0 <= y0 < y1 <= height and 0 <= x0 < x1 <= width):
        raise ParameterError(
            f"ROI {y0},{x0},{y1},{x1} (Y0,X0,Y1,X1) must be a non-empty rectangle inside the "
            f"{height}x{width} image: 0 <= Y0 < Y1 <= {height} and 0 <= X0 < X1 <= {width}"
        )
    mask = np.zeros(shape, dtype=bool)
    mask[y0:y1, x0:x1] = True
    return mask


def credible_interval(values: np.ndarray, level: float = 0.9) -> tuple[float, float]:
    """Equal-tailed credible interval of ``values`` (the ``(1 ± level)/2`` quantiles)."""
    low, high = np.quantile(np.asarray(values, np.float64), [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)
