"""Uncertainty a reader can use: a self-check without ground truth and conformal intervals.

**Self-check** (:func:`self_check`). A random subset of the *measured* phase-encode lines outside
the fully sampled centre is held out; P samples are drawn from the remaining lines; their k-space on
the held-out lines is compared with what was measured there. Two numbers come out:

- ``error_ratio``: ``‖mean_P(FFT x̂ᵢ) − y‖² / ‖0 − y‖²`` on the held-out lines, the normalised error
  of the P-average over that of zero filling (which predicts 0 on every unmeasured line, so its
  normalised error is 1). Below 1 the samples know something about the missing k-space of *this*
  scan; at or above 1 they do no better than leaving it empty.
- ``coverage``: the fraction of held-out k-space values (every coil, row and held-out column) that
  lie within the samples' spread: with ``c`` the centroid of the P sample values and the measured
  one, the measured value is covered when it is not farther from ``c`` than every sample. If the
  samples were draws from the true posterior, the measured value would be exchangeable with them
  and the expected coverage would be exactly ``P / (P + 1)`` (0.889 for P = 8), whatever the
  distribution: lower means over-confident samples, higher means too much spread.

The verdict thresholds (:data:`FIT_RATIO`, :data:`OOD_RATIO`, :data:`MIN_FIT_COVERAGE`) come from
the measurements in the README ("Reading the uncertainty").

**Conformal intervals** (:func:`conformal_scale`). For calibration images ``i = 1..n`` with truth
``x``, P-average ``m`` and pixel-wise SD ``s``, the per-pixel scores are ``|x − m| / s`` inside the
foreground region (:func:`interval_region`). The scale ``λ`` is the smallest value for which the
mean over images of the fraction of their region's pixels with score ≤ λ reaches
``(n + 1)(1 − α) / n``: split-conformal risk control (Angelopoulos et al., "Conformal risk
control", 2022; as used for image-to-image regression by Angelopoulos et al. 2022) with the
per-image miscoverage fraction as the loss. For a new image exchangeable with the calibration
images, the expected fraction of its region's pixels outside ``m ± λ·s`` is at most α. With one
pixel per image this is the usual ``⌈(n + 1)(1 − α)⌉ / n`` split-conformal quantile. At least
``⌈1/α − 1⌉`` images are needed (:func:`min_calibration_images`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from napari_rcgan.errors import ParameterError, SamplingCancelled, WeightsError
from napari_rcgan.physics import transforms
from napari_rcgan.physics.fft import fft2c, ifft2c
from napari_rcgan.physics.masks import SamplingMask, mask_from_array
from napari_rcgan.sampler import CancelFlag, MRIMeasurement, PosteriorSampler

VERDICTS = ("fits", "uncertain", "out_of_distribution")
MIN_OUTSIDE_LINES = 4
"""Fewest measured lines outside the fully sampled centre for which a self-check is made."""
FIT_RATIO = 0.8
"""``error_ratio`` at or below which (with enough coverage) the model "fits" the scan."""
OOD_RATIO = 0.95
"""``error_ratio`` at or above which the scan is "out_of_distribution" for the model."""
MIN_FIT_COVERAGE = 0.3
"""Fewest held-out values inside the samples' spread for a "fits" verdict."""
FOREGROUND_FRACTION = 0.05
"""Interval region: pixels whose P-average exceeds this fraction of its maximum."""


@dataclass(frozen=True)
class SelfCheckResult:
    """What :func:`self_check` found.

    Attributes:
        verdict: ``"fits"``, ``"uncertain"``, ``"out_of_distribution"``, or None when the
            acquisition has too few lines outside the centre to hold some out.
        error_ratio: normalised error of the P-average on the held-out lines over that of zero
            filling (NaN without a verdict).
        coverage: fraction of held-out k-space values within the samples' spread (NaN without).
        ideal_coverage: ``P / (P + 1)``, the coverage of perfectly calibrated samples.
        error_average: ``‖mean − y‖² / ‖y‖²`` on the held-out lines, all splits together.
        error_zero_filled: the same for zero filling (1 by construction).
        outside_lines: measured lines outside the fully sampled centre.
        held_out_lines: lines held out in each split.
        splits, P: how many hold-out draws, and samples per draw.
        message: one plain-language sentence for the reader.
    """

    verdict: str | None
    error_ratio: float
    coverage: float
    ideal_coverage: float
    error_average: float
    error_zero_filled: float
    outside_lines: int
    held_out_lines: int
    splits: int
    P: int
    message: str

    def attrs(self) -> dict[str, Any]:
        """The ``selfcheck_*`` attributes of the ``sample`` output file."""
        return {
            "selfcheck_verdict": self.verdict or "none",
            "selfcheck_error_ratio": float(self.error_ratio),
            "selfcheck_coverage": float(self.coverage),
            "selfcheck_message": self.message,
        }


def center_block(lines: np.ndarray, width: int) -> np.ndarray:
    """The contiguous run of sampled columns around the k-space centre ``width // 2``.

    Args:
        lines: sorted sampled column indices ``(L,)``.
        width: number of phase-encode columns W.

    Returns:
        int64 indices of the run (empty when the centre column is not sampled).
    """
    sampled = np.zeros(width, dtype=bool)
    sampled[lines] = True
    centre = width // 2
    if not sampled[centre]:
        return np.empty(0, dtype=np.int64)
    low, high = centre, centre
    while low > 0 and sampled[low - 1]:
        low -= 1
    while high < width - 1 and sampled[high + 1]:
        high += 1
    return np.arange(low, high + 1, dtype=np.int64)


def outside_lines(mask: SamplingMask) -> np.ndarray:
    """Sampled columns outside the fully sampled centre block, int64 ``(M,)``."""
    width = mask.mask.shape[-1]
    return np.setdiff1d(mask.lines, center_block(mask.lines, width))


def holdout_lines(
    mask: SamplingMask, fraction: float, splits: int, seed: int
) -> list[np.ndarray]:
    """For each split, ``max(1, round(fraction · M))`` of the M outside lines, drawn at random.

    Split ``j`` draws from ``numpy.random.default_rng([seed, j])`` without replacement.
    """
    outside = outside_lines(mask)
    count = max(1, round(fraction * outside.size))
    return [
        np.sort(np.random.default_rng([seed, split]).choice(outside, size=count, replace=False))
        for split in range(splits)
    ]


def holdout_measurement(measurement: MRIMeasurement, held: np.ndarray) -> MRIMeasurement:
    """The measurement with the columns ``held`` removed (no reference), renormalised.

    Args:
        measurement: an MRI measurement.
        held: int column indices ``(k,)`` among the measured ones.
    """
    mask = measurement.mask
    columns = mask.mask.any(axis=0)
    columns[held] = False
    reduced = mask_from_array(columns, mask.mask.shape, source="self-check mask")
    kspace = measurement.measured_kspace * torch.from_numpy(reduced.mask)
    normalization = transforms.Normalization.of(transforms.complex_to_channels(ifft2c(kspace)))
    return MRIMeasurement(
        target=None,
        measured_kspace=kspace,
        mask=reduced,
        normalization=normalization,
        coil_combine=measurement.coil_combine,
        sense_maps=measurement.sense_maps,
    )


def spread_coverage(sample_values: torch.Tensor, measured: torch.Tensor) -> torch.Tensor:
    """Whether each measured value lies within the samples' spread (see the module docstring).

    Args:
        sample_values: complex ``(P, ...)`` values of the P samples.
        measured: complex ``(...)`` measured values.

    Returns:
        bool ``(...)``: True where ``|y − c| ≤ max_i |ŝᵢ − c|``, ``c`` the centroid of the
        samples and ``y``.
    """
    count = sample_values.shape[0]
    centroid = (sample_values.sum(dim=0) + measured) / (count + 1)
    farthest = (sample_values - centroid).abs().amax(dim=0)
    return (measured - centroid).abs() <= farthest


def no_verdict(message: str, P: int = 8, outside_count: int = 0) -> SelfCheckResult:
    """A :class:`SelfCheckResult` without a verdict (NaN numbers) that says why."""
    return SelfCheckResult(
        verdict=None,
        error_ratio=math.nan,
        coverage=math.nan,
        ideal_coverage=P / (P + 1),
        error_average=math.nan,
        error_zero_filled=math.nan,
        outside_lines=outside_count,
        held_out_lines=0,
        splits=0,
        P=int(P),
        message=message,
    )


def verdict_for(error_ratio: float, coverage: float) -> str:
    """``"out_of_distribution"`` at ratio ≥ :data:`OOD_RATIO`; ``"fits"`` at ratio ≤
    :data:`FIT_RATIO` with coverage ≥ :data:`MIN_FIT_COVERAGE`; else ``"uncertain"``."""
    if not error_ratio < OOD_RATIO:
        return "out_of_distribution"
    if error_ratio <= FIT_RATIO and coverage >= MIN_FIT_COVERAGE:
        return "fits"
    return "uncertain"


def _sentence(verdict: str, ratio: float, coverage: float, ideal: float) -> str:
    numbers = (
        f"on measured k-space lines held out of this scan, the samples' average has "
        f"{100 * ratio:.0f}% of the error of zero filling, and {100 * coverage:.0f}% of the "
        f"held-out values lie within the samples' spread (ideal {100 * ideal:.0f}%)"
    )
    if verdict == "fits":
        return f"The model fits this scan: {numbers}."
    if verdict == "uncertain":
        return (
            f"Uncertain fit: {numbers}; read the samples and the SD map with caution."
        )
    return (
        f"This scan looks out of the model's training distribution: {numbers}; do not trust "
        f"the samples or the SD map."
    )


def self_check(
    sampler: PosteriorSampler,
    measurement: MRIMeasurement,
    P: int = 8,
    holdout_fraction: float = 0.15,
    splits: int = 3,
    seed: int = 0,
    cancel: CancelFlag = None,
) -> SelfCheckResult:
    """Check, without ground truth, whether the model fits this acquisition.

    For each of ``splits`` draws, ``max(1, round(holdout_fraction · M))`` of the M measured
    lines outside the fully sampled centre are held out, P samples (code-vector seed
    ``seed + split``) are drawn from the rest, and their k-space on the held-out lines is compared
    with the measurement (module docstring). Costs ``splits · P`` generator passes.

    Args:
        sampler: the sampler whose weights are checked.
        measurement: an MRI measurement (its reference, if any, is not used).
        P: samples per split, at least 2.
        holdout_fraction: fraction of the outside lines held out, in (0, 0.5].
        splits: number of random hold-out draws, at least 1.
        seed: seeds the line choice and the code vectors.
        cancel: stops between chunks, as in :meth:`PosteriorSampler.sample`.

    Returns:
        the result; ``verdict`` is None (and the message says why) when the acquisition has
        fewer than :data:`MIN_OUTSIDE_LINES` measured lines outside the centre.

    Raises:
        ParameterError: a non-MRI measurement or an out-of-range parameter.
        SamplingCancelled: when cancelled.
    """
    if not isinstance(measurement, MRIMeasurement):
        raise ParameterError(
            "the self-check holds out measured k-space lines: it needs an MRI measurement, got "
            f"{getattr(measurement, 'task', type(measurement).__name__)}"
        )
    if not isinstance(P, (int, np.integer)) or P < 2:
        raise ParameterError(f"self-check P must be an integer of at least 2, got {P}")
    if not 0 < holdout_fraction <= 0.5:
        raise ParameterError(f"holdout_fraction must be in (0, 0.5], got {holdout_fraction}")
    if not isinstance(splits, (int, np.integer)) or splits < 1:
        raise ParameterError(f"splits must be an integer of at least 1, got {splits}")
    ideal = P / (P + 1)
    outside = outside_lines(measurement.mask)
    if outside.size < MIN_OUTSIDE_LINES:
        return no_verdict(
            f"No self-check: the acquisition has {outside.size} measured lines outside the "
            f"fully sampled centre, and at least {MIN_OUTSIDE_LINES} are needed to hold some out.",
            P,
            outside_count=int(outside.size),
        )
    error = signal = 0.0
    covered = total = 0
    held_sets = holdout_lines(measurement.mask, holdout_fraction, splits, seed)
    for split, held in enumerate(held_sets):
        reduced = holdout_measurement(measurement, held)
        result = sampler.sample(reduced, P, seed=seed + split, cancel=cancel)
        if not result.complete:
            raise SamplingCancelled("the self-check was cancelled")
        predicted = fft2c(result.images)[..., held]
        measured = measurement.measured_kspace[..., held]
        error += float((predicted.mean(dim=0) - measured).abs().pow(2).sum())
        signal += float(measured.abs().pow(2).sum())
        inside = spread_coverage(predicted, measured)
        covered += int(inside.sum())
        total += inside.numel()
    error_average = error / signal
    error_zero_filled = 1.0  # zero filling predicts 0 on every unmeasured line
    ratio = error_average / error_zero_filled
    coverage = covered / total
    verdict = verdict_for(ratio, coverage)
    return SelfCheckResult(
        verdict=verdict,
        error_ratio=ratio,
        coverage=coverage,
        ideal_coverage=ideal,
        error_average=error_average,
        error_zero_filled=error_zero_filled,
        outside_lines=int(outside.size),
        held_out_lines=int(held_sets[0].size),
        splits=int(splits),
        P=int(P),
        message=_sentence(verdict, ratio, coverage, ideal),
    )


# --------------------------------------------------------------------------------------------
# Conformal intervals


def interval_region(mean: np.ndarray) -> np.ndarray:
    """The pixels the intervals speak for: the P-average above :data:`FOREGROUND_FRACTION` of
    its maximum (the object, found without a reference). bool, the shape of ``mean``."""
    mean = np.asarray(mean)
    return mean > FOREGROUND_FRACTION * float(mean.max())


def conformal_scores(
    truth: np.ndarray, mean: np.ndarray, sd: np.ndarray, region: np.ndarray
) -> np.ndarray:
    """Per-pixel scores ``|truth − mean| / sd`` inside ``region``, float64 ``(N,)``.

    A pixel with zero SD scores 0 when the mean equals the truth there, else infinity.
    """
    error = np.abs(np.asarray(truth, np.float64) - mean)[region]
    spread = np.asarray(sd, np.float64)[region]
    scores = np.full(error.shape, np.inf)
    np.divide(error, spread, out=scores, where=spread > 0)
    scores[(spread <= 0) & (error == 0)] = 0.0
    return scores


def min_calibration_images(alpha: float) -> int:
    """Fewest calibration images for level ``α``: ``⌈1/α − 1⌉`` (else ``(n + 1)(1 − α) > n``)."""
    return max(1, math.ceil(1 / alpha - 1 - 1e-9))


def _check_alpha(alpha: float) -> None:
    if not (isinstance(alpha, (int, float)) and 0 < alpha < 1):
        raise ParameterError(f"alpha must be in (0, 1), got {alpha}")


def conformal_scale(scores: Sequence[np.ndarray], alpha: float) -> float:
    """The split-conformal scale ``λ`` of the module docstring.

    Args:
        scores: one array of per-pixel scores per calibration image (:func:`conformal_scores`).
        alpha: allowed expected fraction of pixels outside the interval, in (0, 1).

    Returns:
        the smallest ``λ`` with ``mean_i(fraction of image i's scores ≤ λ) ≥ (n + 1)(1 − α) / n``.

    Raises:
        ParameterError: fewer than :func:`min_calibration_images` images, an image with no
            scores, or an infinite ``λ`` (zero SD where the mean is wrong).
    """
    _check_alpha(alpha)
    n = len(scores)
    needed = min_calibration_images(alpha)
    if n < needed:
        raise ParameterError(
            f"{n} calibration images are too few for alpha={alpha:g}: at least {needed} are "
            f"needed (n >= 1/alpha - 1)"
        )
    if any(len(image) == 0 for image in scores):
        raise ParameterError("a calibration image has no pixel in its interval region")
    values = np.concatenate([np.asarray(image, np.float64) for image in scores])
    weights = np.concatenate([np.full(len(image), 1.0 / (n * len(image))) for image in scores])
    order = np.argsort(values, kind="stable")
    cumulative = np.cumsum(weights[order])
    target = (n + 1) * (1 - alpha) / n
    index = min(int(np.searchsorted(cumulative, target - 1e-12)), len(values) - 1)
    scale = float(values[order][index])
    if not math.isfinite(scale):
        raise ParameterError(
            "the conformal scale is infinite: the samples have zero SD where their average is "
            "wrong; use more samples (P) or other weights"
        )
    return scale


def interval_coverage(
    truth: np.ndarray, mean: np.ndarray, sd: np.ndarray, scale: float, region: np.ndarray
) -> float:
    """Fraction of ``region``'s pixels with ``|truth − mean| ≤ scale · sd``."""
    return float(np.mean(conformal_scores(truth, mean, sd, region) <= scale))


def interval_scale(conformal: dict[str, Any], R: float, source: str) -> float:
    """The calibrated ``λ`` for acceleration ``R`` from a weights' ``conformal`` metadata.

    Raises:
        WeightsError: the weights carry no calibration, or none for this R.
    """
    if not conformal or not conformal.get("scale"):
        raise WeightsError(
            f"{source}: these weights carry no conformal calibration, so no intervals can be "
            f"given; calibrate them with `napari-rcgan calibrate --weights {source} --data DIR "
            f"--out W2.safetensors`"
        )
    for key, value in conformal["scale"].items():
        if math.isclose(float(key), float(R), rel_tol=0, abs_tol=1e-6):
            return float(value)
    calibrated = ", ".join(sorted(conformal["scale"], key=float))
    raise WeightsError(
        f"{source}: conformal intervals are calibrated for R = {calibrated} only, not R={R:g}; "
        f"choose one of these R or calibrate the weights at R={R:g}"
    )


def interval_maps(
    mean: np.ndarray, sd: np.ndarray, scale: float, reference: np.ndarray | None = None
) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """The interval layers/datasets and, with a reference, the measured coverage.

    Returns:
        ``({"interval_halfwidth": λ·sd[, "outside_interval": 0/1 float32]}, {["coverage"]})``;
        ``outside_interval`` marks the region's pixels where the reference is outside
        ``mean ± λ·sd``; ``coverage`` is the fraction of the region inside.
    """
    halfwidth = (scale * np.asarray(sd, np.float32)).astype(np.float32)
    maps = {"interval_halfwidth": halfwidth}
    attrs: dict[str, float] = {}
    if reference is not None:
        region = interval_region(mean)
        outside = region & (np.abs(np.asarray(reference, np.float32) - mean) > halfwidth)
        maps["outside_interval"] = outside.astype(np.float32)
        attrs["coverage"] = 1.0 - float(outside.sum()) / max(1, int(region.sum()))
    return maps, attrs


# --------------------------------------------------------------------------------------------
# What a sampling run adds (a session output producer: the CLI and the widget alike)
#
# ``SamplingRequest.options`` keys read here:
#   "self_check": bool — run :func:`self_check` after sampling (MRI);
#   "intervals": None (when the weights carry a calibration for the run's R), True (required:
#       an error before sampling otherwise) or False (never);
#   "pcs": int — number of posterior principal components;
#   "roi": (Y0, X0, Y1, X1) — rectangle whose posterior mean intensity is reported.


def parse_roi_box(text: str) -> tuple[int, int, int, int]:
    """``"Y0,X0,Y1,X1"`` → four ints (``--roi``)."""
    parts = [part.strip() for part in str(text).split(",")]
    try:
        values = tuple(int(part) for part in parts)
    except ValueError:
        values = ()
    if len(values) != 4:
        raise ParameterError(f"--roi {text!r}: expected four integers Y0,X0,Y1,X1")
    return values  # type: ignore[return-value]


def interval_scale_for(
    sampler: PosteriorSampler, measurement: Any, required: bool | None
) -> tuple[float | None, str | None]:
    """The conformal ``λ`` for this measurement, or ``(None, why not)``.

    Raises:
        WeightsError: ``required`` is True and the weights carry no calibration for this
            task and R.
    """
    if required is False:
        return None, None
    try:
        if not isinstance(measurement, MRIMeasurement):
            raise WeightsError(
                f"{sampler.name}: conformal intervals are calibrated for MRI only, not for "
                f"{measurement.task}"
            )
        return (
            interval_scale(sampler.metadata.conformal, measurement.mask.requested_R, sampler.name),
            None,
        )
    except WeightsError as error:
        if required:
            raise
        return None, str(error)


def check_options(
    options: dict[str, Any], sampler: PosteriorSampler, measurement: Any, P: int
) -> None:
    """Check a request's uncertainty options before any sample is drawn.

    Raises:
        ParameterError: ``pcs`` outside ``1..min(P − 1, 10)``, or an ROI that is empty or
            leaves the image.
        WeightsError: intervals required but not calibrated for this R.
    """
    from napari_rcgan.stats import MAX_COMPONENTS, roi_box_mask

    pcs = int(options.get("pcs") or 0)
    limit = min(P - 1, MAX_COMPONENTS)
    if pcs and not 1 <= pcs <= limit:
        raise ParameterError(
            f"--pcs {pcs}: at most min(P - 1, {MAX_COMPONENTS}) = {limit} principal "
            f"components for P={P} samples"
        )
    if options.get("roi") is not None:
        roi_box_mask(options["roi"], tuple(measurement.mask_display.shape))
    interval_scale_for(sampler, measurement, options.get("intervals"))


def _interval_outputs(result: Any, scale: float) -> None:
    from napari_rcgan.schema import Output

    conformal = result.sampler.metadata.conformal
    level = 100 * (1 - float(conformal["alpha"]))
    reference = result.reference

    def halfwidth(P: int) -> np.ndarray:
        return interval_maps(result.stack.mean(P), result.stack.std(P), scale)[0][
            "interval_halfwidth"
        ]

    result.extras["interval_halfwidth"] = Output(
        data=halfwidth(result.drawn), title=f"{level:g}% interval half-width",
        colormap="viridis", colorbar=True, at_P=halfwidth,
    )
    result.extra_attrs.update(
        interval_alpha=float(conformal["alpha"]), interval_scale=float(scale),
        interval_P=int(conformal["P"]),
    )
    if reference is None:
        return

    def outside(P: int) -> np.ndarray:
        return interval_maps(result.stack.mean(P), result.stack.std(P), scale, reference)[0][
            "outside_interval"
        ]

    maps, attrs = interval_maps(result.stack.mean(), result.stack.std(), scale, reference)
    result.extras["outside_interval"] = Output(
        data=maps["outside_interval"], title="outside interval", colormap="red", at_P=outside,
    )
    result.extra_attrs["coverage"] = attrs["coverage"]


def produce_outputs(result: Any) -> None:
    """Session output producer: intervals, principal components, ROI values, self-check.

    Reads ``result.request.options`` (see above); fills ``result.extras`` (datasets
    ``interval_halfwidth``, ``outside_interval``, ``pcs``, ``pc_variances``, ``pc_explained``,
    ``roi_values``) and ``result.extra_attrs`` (``coverage``, ``interval_*``, ``roi*``,
    ``selfcheck_*``).
    """
    from napari_rcgan import stats
    from napari_rcgan.schema import Output

    request = getattr(result, "request", None)
    if request is None or result.sampler is None or result.drawn == 0:
        return
    options = dict(request.options)
    scale, note = interval_scale_for(result.sampler, result.measurement, options.get("intervals"))
    if scale is not None:
        _interval_outputs(result, scale)
    elif note:
        result.extra_attrs["interval_note"] = note
    pcs = min(int(options.get("pcs") or 0), result.drawn - 1)
    if pcs >= 1:
        components, variances, explained = stats.principal_components(result.stack.samples, pcs)
        result.extras["pcs"] = Output(data=components)
        result.extras["pc_variances"] = Output(data=variances)
        result.extras["pc_explained"] = Output(data=explained)
    if options.get("roi") is not None:
        box = tuple(int(v) for v in options["roi"])
        mask = stats.roi_box_mask(box, tuple(result.mask.shape))
        values = stats.roi_values(result.stack.samples, mask)
        result.extras["roi_values"] = Output(data=values)
        result.extra_attrs["roi"] = np.asarray(box, dtype=np.int64)
        result.extra_attrs["roi_credible_interval"] = np.asarray(stats.credible_interval(values))
        if result.reference is not None:
            result.extra_attrs["roi_reference"] = float(np.mean(result.reference[mask]))
    if options.get("self_check"):
        if not isinstance(result.measurement, MRIMeasurement):
            check = no_verdict("No self-check: it holds out measured k-space lines, so it "
                               "applies to MRI only.")
        elif not result.complete:
            check = no_verdict("No self-check: the run was cancelled.")
        else:
            check = self_check(result.sampler, result.measurement, seed=result.seed)
        result.extra_attrs.update(check.attrs())


def summary_lines(result: Any) -> list[str]:
    """What ``napari-rcgan sample`` prints about the uncertainty outputs of ``result``."""
    attrs = result.extra_attrs
    lines = []
    if "selfcheck_verdict" in attrs:
        verdict = attrs["selfcheck_verdict"]
        lines.append(f"self-check: {'no verdict' if verdict == 'none' else verdict}. "
                     f"{attrs['selfcheck_message']}")
    if "interval_scale" in attrs:
        text = (f"conformal {100 * (1 - attrs['interval_alpha']):g}% intervals: half-width = "
                f"{attrs['interval_scale']:.3f} x SD")
        if "coverage" in attrs:
            text += f"; they cover {100 * attrs['coverage']:.1f}% of the reference in the object"
        lines.append(text)
    if "interval_note" in attrs:
        lines.append(f"note: no intervals: {attrs['interval_note']}")
    if "roi_credible_interval" in attrs:
        low, high = attrs["roi_credible_interval"]
        lines.append(f"ROI mean intensity: 90% credible interval [{low:.4g}, {high:.4g}]")
    return lines


def _register() -> None:
    from napari_rcgan.session import register_output

    register_output("uncertainty", produce_outputs)


_register()


def has_outputs(result: Any) -> bool:
    """Whether ``result`` holds any output of :func:`produce_outputs` (for the figure)."""
    names = ("interval_halfwidth", "pcs", "roi_values")
    return any(name in result.extras for name in names) or "selfcheck_verdict" in (
        result.extra_attrs
    )
