"""``napari-rcgan calibrate``: split-conformal interval scales for MRI weights.

The slices of the calibration folder are split at random (``--seed``) into a calibration part and a
disjoint test part (``--test-fraction``). For each R, P samples are drawn per slice; the
calibration part gives ``λ_R`` (:func:`napari_rcgan.uncertainty.conformal_scale`) and the test part
measures the coverage of ``mean ± λ_R·SD`` inside the object. Both go into the weights' metadata::

    "conformal": {"alpha": α, "P": P, "scale": {"<R>": λ_R}, "coverage": {"<R>": measured},
                  "images": {"calibration": n, "test": m}, "data": NAME, "mask": kind, "seed": s}

The guarantee holds for scans exchangeable with the calibration slices (same kind of data,
same mask kind, R and P): calibrate on held-out data that looks like what the weights will see.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

from napari_rcgan.errors import ParameterError, WeightsError
from napari_rcgan.evaluation import data_files
from napari_rcgan.io import FastMRIFile
from napari_rcgan.sampler import PosteriorSampler
from napari_rcgan.uncertainty import (
    conformal_scale,
    conformal_scores,
    interval_coverage,
    interval_region,
    min_calibration_images,
)
from napari_rcgan.weights import load_weights, portable_name, save_weights


def split_slices(count: int, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded random split of ``count`` slice indices into (calibration, test), disjoint.

    The test part has ``round(test_fraction · count)`` slices (at least 1 when the fraction is
    positive).
    """
    if not 0 <= test_fraction < 1:
        raise ParameterError(f"--test-fraction must be in [0, 1), got {test_fraction}")
    order = np.random.default_rng(seed).permutation(count)
    tests = max(1, round(test_fraction * count)) if test_fraction > 0 else 0
    return np.sort(order[tests:]), np.sort(order[:tests])


def calibrate(
    sampler: PosteriorSampler,
    folder: str | Path,
    accelerations: list[float],
    alpha: float = 0.1,
    P: int = 32,
    mask_kind: str = "gro",
    seed: int = 0,
    test_fraction: float = 0.25,
    max_slices: int | None = None,
    chunk_size: int | None = None,
) -> dict[str, Any]:
    """The ``conformal`` metadata block for ``sampler``'s weights (module docstring).

    Raises:
        ParameterError: too few calibration slices for ``alpha`` (the message names the minimum).
        WeightsError: weights for another task.
        InputFileError: no data.
    """
    if sampler.metadata.task != "mri":
        raise WeightsError(
            f"{sampler.name}: calibrate handles MRI weights; these are for {sampler.metadata.task}"
        )
    if not 0 < alpha < 1:
        raise ParameterError(f"--alpha must be in (0, 1), got {alpha}")
    slices = [
        (data, index)
        for data in map(FastMRIFile.open, data_files(Path(folder)))
        for index in range(data.num_slices)
    ][:max_slices]
    calibration, test = split_slices(len(slices), test_fraction, seed)
    needed = min_calibration_images(alpha)
    if len(calibration) < needed:
        raise ParameterError(
            f"{folder}: {len(calibration)} calibration slices (of {len(slices)}, "
            f"--test-fraction {test_fraction:g}) are too few for --alpha {alpha:g}: at least "
            f"{needed} are needed"
        )
    calibration_set = set(calibration.tolist())
    scales: dict[str, float] = {}
    coverage: dict[str, float] = {}
    for R in accelerations:
        scores, parts = [], []
        for position, (data, index) in enumerate(slices):
            measurement = sampler.measure_mri(
                data.read_kspace(index), R=R, mask_kind=mask_kind,
                source=f"{data.path} slice {index}",
            )
            stack = sampler.sample(measurement, P, seed=seed, chunk_size=chunk_size).stack
            mean, sd = stack.mean(), stack.std()
            parts.append((measurement.reference, mean, sd, interval_region(mean)))
            if position in calibration_set:
                scores.append(conformal_scores(*parts[-1]))
        scale = conformal_scale(scores, alpha)
        scales[f"{R:g}"] = scale
        if len(test):
            coverage[f"{R:g}"] = float(
                np.mean([
                    interval_coverage(truth, mean, sd, scale, region)
                    for truth, mean, sd, region in (parts[i] for i in test)
                ])
            )
    return {
        "alpha": float(alpha),
        "P": int(P),
        "scale": scales,
        "coverage": coverage,
        "images": {"calibration": int(len(calibration)), "test": int(len(test))},
        "mask": mask_kind,
        "seed": int(seed),
    }


def run_calibrate_command(args: argparse.Namespace) -> dict[str, Any]:
    """``napari-rcgan calibrate``: calibrate, print the table, write the weights to ``--out``."""
    out = Path(args.out)
    if out.suffix != ".safetensors":
        raise ParameterError(f"{out}: the output must end in .safetensors")
    weights = load_weights(args.weights)
    if weights.source.startswith("random:"):
        raise WeightsError(f"{args.weights}: random weights cannot be calibrated; use a file")
    sampler = PosteriorSampler(weights, device=args.device)
    conformal = calibrate(
        sampler, args.data, args.R, args.alpha, args.P, args.mask, args.seed,
        args.test_fraction, args.max_slices, args.chunk,
    )
    conformal.update(data=args.data_label or portable_name(args.data),
                     calibrated=time.strftime("%Y-%m-%d"))
    for R, scale in conformal["scale"].items():
        measured = conformal["coverage"].get(R)
        text = f", coverage on the test part {measured:.3f}" if measured is not None else ""
        print(f"R={R}: lambda {scale:.3f}{text} (target {1 - args.alpha:.3f})")
    weights.metadata.conformal = conformal
    save_weights(out, weights.state_dict, weights.metadata)
    print(f"wrote {out}")
    return conformal
