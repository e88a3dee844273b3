"""Measure the self-check on in- and out-of-distribution scans (the README's threshold table).

    python benchmarks/selfcheck_thresholds.py [--weights mri] [--R 4 8] [--P 8]

Cases, all 128x128 with 8 virtual coils, k-space simulated like the demo weights' training data
(12 birdcage coils, 256x136 raw k-space, compact layout) unless stated:

- ``brain T2 (sample data)``: the shipped held-out slices ``sample_data/brain_sim.h5``;
- ``random weights``: the same slices, a randomly initialised generator of the same architecture;
- ``brain T1``: Colin27 with its T1 contrast (the weights saw T2-like contrast only), same slices;
- ``face``: a grey face photo (scikit-image's astronaut) turned into multicoil k-space.

For each case and R it prints the self-check numbers and, since the truth is known here, the PSNR
of the 32-sample average and of zero filling.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from napari_rcgan import stats
from napari_rcgan.io import FastMRIFile
from napari_rcgan.sampler import PosteriorSampler
from napari_rcgan.uncertainty import self_check
from napari_rcgan.weights import Weights, build_generator, load_weights

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data" / "brain_sim.h5"
SLICES = (86, 88, 90, 92)


def random_like(spec: str) -> Weights:
    """A randomly initialised generator with the architecture of ``spec`` (fixed seed)."""
    import torch

    weights = load_weights(spec)
    torch.manual_seed(0)
    state = build_generator(weights.metadata).state_dict()
    return Weights(weights.metadata, state, f"random init of {spec}")


def simulated(image_slices: list[np.ndarray], seed: int = 0) -> list[np.ndarray]:
    """Compact 8-coil 128x128 k-space of real 2-D images, as the demo training data was made."""
    from training.simulate import _compact, birdcage_coil_maps, noise_mixing_matrix, simulate_kspace

    rng = np.random.default_rng(seed)
    maps = birdcage_coil_maps(12, (256, 136), 128, rng)
    mixing = noise_mixing_matrix(12, rng)
    return [
        _compact(
            simulate_kspace(image, 12, (256, 136), 128, rng=rng, coil_maps=maps,
                            noise_mixing=mixing),
            128,
        )
        for image in image_slices
    ]


def cases(weights: str) -> dict[str, tuple[str | Weights, list[np.ndarray]]]:
    from skimage import color, data

    from training.simulate import axial_slices, load_anatomy

    brain = FastMRIFile.open(SAMPLE)
    t2 = [brain.read_kspace(i) for i in range(brain.num_slices)]
    t1 = simulated(list(axial_slices(load_anatomy("colin27", "t1"), SLICES)))
    face = color.rgb2gray(data.astronaut())[30:230, 150:350]
    return {
        "brain T2 (sample data)": (weights, t2),
        "random weights": (random_like(weights), t2),
        "brain T1": (weights, t1),
        "face": (weights, simulated([face, face.T])),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default="mri")
    parser.add_argument("--R", type=float, nargs="+", default=[4.0, 8.0])
    parser.add_argument("--P", type=int, default=8)
    args = parser.parse_args()
    print("| case | R | verdicts | error ratio | coverage | PSNR mean(32) / zero-filled |")
    print("|---|---|---|---|---|---|")
    for name, (weights, kspaces) in cases(args.weights).items():
        sampler = PosteriorSampler(weights, device="cpu")
        for R in args.R:
            ratios, coverages, verdicts, gains = [], [], [], []
            for index, kspace in enumerate(kspaces):
                measurement = sampler.measure_mri(kspace, R=R, source=f"{name} {index}")
                check = self_check(sampler, measurement, P=args.P)
                result = sampler.sample(measurement, 32)
                reference = measurement.reference
                ratios.append(check.error_ratio)
                coverages.append(check.coverage)
                verdicts.append(check.verdict)
                gains.append((stats.psnr(result.stack.mean(), reference),
                              stats.psnr(measurement.zero_filled_display, reference)))
            psnr, zero = np.mean(gains, axis=0)
            print(f"| {name} | {R:g} | {', '.join(verdicts)} | "
                  f"{min(ratios):.2f}–{max(ratios):.2f} | {min(coverages):.2f}–{max(coverages):.2f} "
                  f"| {psnr:.1f} / {zero:.1f} dB |", flush=True)


if __name__ == "__main__":
    main()
