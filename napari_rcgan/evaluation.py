"""``napari-rcgan evaluate``: measure MRI weights on held-out fastMRI-layout files.

For each R and each slice, P_max = max(P) samples are drawn once; the P-sample averages for all
requested P come from the same prefix-sum stack. Metrics (averaged over slices):

- ``zero_filled_psnr``: PSNR of the zero-filled magnitude image;
- ``psnr[P]``, ``ssim[P]``: of the P-sample average's magnitude (data range from the reference);
- ``apsd``: average pixel-wise SD of the P_max samples (paper, Table 1);
- ``e1_over_ep_db[P]``: [E1/E_P]dB with E_P = ||x̂_(P) − x||² of the multicoil complex images,
  summed over slices (eqs. 21–22), to compare with 10·log10(2P/(P+1)) (Prop. 3.3);
- ``sd_error_spearman``: Spearman correlation between the pixel-wise SD and the absolute error of
  the P_max-sample average, inside the object (reference > 5 % of its maximum), mean over slices.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

from napari_rcgan import stats
from napari_rcgan.errors import InputFileError, ParameterError, WeightsError
from napari_rcgan.io import FastMRIFile, atomic_output
from napari_rcgan.sampler import PosteriorSampler

SUPPORT_FRACTION = 0.05


def data_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise InputFileError(f"{folder}: no such data folder")
    files = sorted(folder.glob("*.h5")) or sorted(folder.rglob("*.h5"))
    if not files:
        raise InputFileError(f"{folder}: no .h5 files to evaluate on")
    return files


def evaluate(
    sampler: PosteriorSampler,
    folder: str | Path,
    accelerations: list[float],
    sample_counts: list[int],
    mask_kind: str = "gro",
    seed: int = 0,
    max_slices: int | None = None,
) -> dict:
    """Metrics per R (see the module docstring), as the JSON-ready dictionary of the CLI."""
    if sampler.metadata.task != "mri":
        raise WeightsError(
            f"{sampler.name}: evaluate measures MRI weights; these are for {sampler.metadata.task}"
        )
    counts = sorted(set(sample_counts))
    if counts[0] < 1:
        raise ParameterError(f"P values must be at least 1, got {counts[0]}")
    if max_slices is not None and max_slices < 1:
        raise ParameterError(f"max-slices: must be at least 1, got {max_slices}")
    P_max = max(counts)
    slices = [(data, index) for data in map(FastMRIFile.open, data_files(Path(folder)))
              for index in range(data.num_slices)][:max_slices]
    results: dict = {}
    for R in accelerations:
        psnr = {P: [] for P in counts}
        ssim = {P: [] for P in counts}
        errors = {P: 0.0 for P in [1, *counts]}
        zero_filled, apsd, spearman = [], [], []
        for data, index in slices:
            measurement = sampler.measure_mri(
                data.read_kspace(index), R=R, mask_kind=mask_kind, source=f"{data.path} slice {index}"
            )
            result = sampler.sample(measurement, P_max, seed=seed)
            reference = measurement.reference
            zero_filled.append(stats.psnr(measurement.zero_filled_display, reference))
            for P in counts:
                mean = result.stack.mean(P)
                psnr[P].append(stats.psnr(mean, reference))
                ssim[P].append(stats.ssim(mean, reference))
            cumulative = torch.cumsum(result.images, dim=0)
            for P in errors:
                average = cumulative[P - 1] / P
                errors[P] += float((average - measurement.target).abs().pow(2).sum())
            apsd.append(stats.apsd(result.stack))
            support = reference > SUPPORT_FRACTION * reference.max()
            error = stats.absolute_error(result.stack.mean(), reference)
            spearman.append(float(spearmanr(result.stack.std()[support], error[support]).statistic))
        results[f"{R:g}"] = {
            "zero_filled_psnr": float(np.mean(zero_filled)),
            "psnr": {str(P): float(np.mean(psnr[P])) for P in counts},
            "ssim": {str(P): float(np.mean(ssim[P])) for P in counts},
            "apsd": float(np.mean(apsd)),
            "e1_over_ep_db": {str(P): 10 * math.log10(errors[1] / errors[P]) for P in counts},
            "sd_error_spearman": float(np.mean(spearman)),
        }
    return {"R": results, "slices": len(slices), "weights": sampler.name, "seed": seed,
            "mask": mask_kind}


def run_evaluate_command(args: argparse.Namespace) -> dict:
    """``napari-rcgan evaluate``: write the metrics JSON atomically and print a table."""
    out = Path(args.out)
    sampler = PosteriorSampler(args.weights, device=args.device)
    metrics = evaluate(sampler, args.data, args.R, args.P, args.mask, args.seed, args.max_slices)
    with atomic_output(out) as temporary:
        temporary.write_text(json.dumps(metrics, indent=2))
    for R, values in metrics["R"].items():
        print(f"R={R}: zero-filled PSNR {values['zero_filled_psnr']:.2f} dB, APSD {values['apsd']:.4g}, "
              f"SD-error Spearman {values['sd_error_spearman']:.3f}")
        for P in values["psnr"]:
            print(f"  P={P:>3}: PSNR {values['psnr'][P]:.2f} dB  SSIM {values['ssim'][P]:.4f}  "
                  f"[E1/EP]dB {values['e1_over_ep_db'][P]:.2f} "
                  f"(ideal {10 * math.log10(2 * int(P) / (int(P) + 1)):.2f})")
    print(f"wrote {out}")
    if args.store_in_weights:
        from napari_rcgan.weights import update_metrics

        stored = dict(metrics, data=str(args.data), evaluated=time.strftime("%Y-%m-%d"))
        print(f"stored the metrics in {update_metrics(args.weights, {'evaluation': stored})}")
    return metrics
