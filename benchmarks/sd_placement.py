"""Where the SD map sits against the error (the README's "SD follows edges" and "> 3 SDs" numbers).

    python benchmarks/sd_placement.py --data DIR_OR_FILE [--weights mri] [--R 4 8] [--P 32]
        [--erosion 6]

For every slice of the fastMRI-layout files in ``--data`` (e.g. the model card's evaluation sets)
and each R: GRO mask, ``P`` samples (seed 0, torch fp32 on the CPU), the SD map, the absolute
error of their average. Inside the object (:func:`napari_rcgan.stats.object_support`) it prints,
as means over the slices:

- Spearman correlations: SD vs error (the model card's number), the same in the interior only
  (the object eroded by ``--erosion`` pixels), SD vs the reference's gradient magnitude (Gaussian,
  σ = 1 pixel), error vs that gradient, error vs the zero-filled image's error (residual aliasing),
  SD vs the zero-filled error; the calibrated ceiling (:func:`napari_rcgan.stats.spearman_ceiling`);
  the mean SD on the object's rim over its mean in the interior;
- pooled over the slices, the ratio |error| / SD: its median (|N(0, 1)|: 0.67) and the share of
  pixels above 2 and 3 (0.046 and 0.003 for a calibrated Gaussian posterior) with the share of
  the error energy they hold.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage
from scipy.stats import spearmanr

from napari_rcgan import stats
from napari_rcgan.errors import InputFileError
from napari_rcgan.evaluation import data_files
from napari_rcgan.io import FastMRIFile
from napari_rcgan.sampler import PosteriorSampler

CORRELATIONS = (
    "SD~error", "SD~error interior", "SD~gradient", "error~gradient", "error~zero-filled error",
    "SD~zero-filled error",
)


@dataclass(frozen=True)
class Placement:
    """SD-placement numbers of one set at one R (see the module docstring)."""

    correlations: dict[str, float]  # name -> mean Spearman over the slices
    ceiling: float  # mean calibrated ceiling of SD~error
    rim_over_interior: float  # mean SD on the rim / mean SD in the interior (mean over slices)
    median_ratio: float  # median |error| / SD, pooled
    above: dict[int, tuple[float, float]]  # k -> (share of pixels with |error| > k SD, their energy share)


def sd_placement(
    sampler: PosteriorSampler, kspaces: list[np.ndarray], R: float, P: int = 32, erosion: int = 6
) -> Placement:
    """Measure where the SD map sits against the error over ``kspaces`` (raw multicoil slices)."""
    rows, ceilings, rims, ratios, energies = [], [], [], [], []
    for index, kspace in enumerate(kspaces):
        measurement = sampler.measure_mri(kspace, R=R, mask_kind="gro", source=f"slice {index}")
        stack = sampler.sample(measurement, P, seed=0).stack
        reference, sd = measurement.reference, stack.std()
        error = stats.absolute_error(stack.mean(), reference)
        inside = stats.object_support(reference)
        interior = ndimage.binary_erosion(inside, iterations=erosion)
        gradient = ndimage.gaussian_gradient_magnitude(reference, 1.0)
        aliasing = np.abs(measurement.zero_filled_display - reference)
        pairs = [(sd, error, inside), (sd, error, interior), (sd, gradient, inside),
                 (error, gradient, inside), (error, aliasing, inside), (sd, aliasing, inside)]
        rows.append([spearmanr(a[region], b[region]).statistic for a, b, region in pairs])
        ceilings.append(stats.spearman_ceiling(sd[inside]))
        rims.append(sd[inside & ~interior].mean() / sd[interior].mean())
        ratios.append(error[inside] / np.maximum(sd[inside], 1e-8))
        energies.append(error[inside] ** 2)
    ratio, energy = np.concatenate(ratios), np.concatenate(energies)
    return Placement(
        correlations=dict(zip(CORRELATIONS, np.nanmean(rows, axis=0).tolist(), strict=True)),
        ceiling=float(np.mean(ceilings)),
        rim_over_interior=float(np.mean(rims)),
        median_ratio=float(np.median(ratio)),
        above={k: (float(np.mean(ratio > k)), float(energy[ratio > k].sum() / energy.sum())) for k in (2, 3)},
    )


def read_slices(data: Path) -> list[np.ndarray]:
    """Every slice's raw k-space of a fastMRI-layout file, or of the ``.h5`` files in a folder
    (found as ``napari-rcgan evaluate`` finds them)."""
    try:
        files = [data] if data.is_file() else data_files(data)
    except InputFileError as error:
        raise SystemExit(str(error)) from error
    slices = []
    for path in files:
        volume = FastMRIFile.open(path)
        slices += [volume.read_kspace(index) for index in range(volume.num_slices)]
    return slices


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--weights", default="mri")
    parser.add_argument("--R", type=float, nargs="+", default=[4.0, 8.0])
    parser.add_argument("--P", type=int, default=32)
    parser.add_argument("--erosion", type=int, default=6)
    args = parser.parse_args()
    sampler = PosteriorSampler(args.weights, device="cpu", backend="torch", precision="fp32")
    slices = read_slices(args.data)
    print(f"{len(slices)} slices of {args.data}, P = {args.P}, weights {args.weights}")
    print("| R | " + " | ".join(CORRELATIONS) + " | ceiling | SD rim / interior | median |error|/SD "
          "| > 2 SD (energy) | > 3 SD (energy) |")
    print("|---" * (len(CORRELATIONS) + 6) + "|")
    for R in args.R:
        result = sd_placement(sampler, slices, R, args.P, args.erosion)
        cells = [f"{R:g}", *(f"{v:.2f}" for v in result.correlations.values()), f"{result.ceiling:.2f}",
                 f"{result.rim_over_interior:.2f}", f"{result.median_ratio:.2f}",
                 *(f"{100 * share:.1f} % ({100 * energy:.0f} %)" for share, energy in result.above.values())]
        print("| " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
