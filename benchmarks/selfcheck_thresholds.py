"""Measure the self-check on in- and out-of-distribution scans (the README's threshold table).

    python benchmarks/selfcheck_thresholds.py [--weights mri] [--data sample_data/brain_sim.h5]
        [--R 4 8] [--P 8]

Cases, all simulated like the sample data (raw 10-coil 256×136 acquisitions, a 136×136 field of
view, :mod:`training.make_sample_data`):

- ``brain T2 (sample data)``: the shipped held-out slices ``--data``;
- ``random weights``: the same slices, a randomly initialised generator of the same architecture;
- ``brain T1``: the same Colin27 slices with their T1 contrast (the weights saw T2-like
  contrasts around Colin27 T1 only through domain randomisation);
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


def random_like(spec: str) -> Weights:
    """A randomly initialised generator with the architecture of ``spec`` (fixed seed)."""
    import torch

    weights = load_weights(spec)
    torch.manual_seed(0)
    state = build_generator(weights.metadata).state_dict()
    return Weights(weights.metadata, state, f"random init of {spec}")


def cases(weights: str, data: Path) -> dict[str, tuple[str | Weights, list[np.ndarray]]]:
    import tempfile

    from skimage import color
    from skimage import data as skimage_data

    from training.make_sample_data import BRAIN_COILS, FOV, KSPACE_SHAPE, brain_slices
    from training.simulate import simulate_kspace, write_heldout_file

    brain = FastMRIFile.open(data)
    t2 = [brain.read_kspace(i) for i in range(brain.num_slices)]
    with tempfile.TemporaryDirectory() as folder:
        t1_file = write_heldout_file(
            Path(folder) / "t1.h5", "colin27", [(o, i, "t1") for o, i, _ in brain_slices()],
            seed=0, coils=BRAIN_COILS, kspace_shape=KSPACE_SHAPE, image_size=FOV,
        )
        t1_data = FastMRIFile.open(t1_file)
        t1 = [t1_data.read_kspace(i) for i in range(t1_data.num_slices)]
    face = color.rgb2gray(skimage_data.astronaut())[30:230, 150:350]
    rng = np.random.default_rng(0)
    faces = [simulate_kspace(image, BRAIN_COILS, KSPACE_SHAPE, FOV, rng=rng)
             for image in (face, face.T)]
    return {
        "brain T2 (sample data)": (weights, t2),
        "random weights": (random_like(weights), t2),
        "brain T1": (weights, t1),
        "face": (weights, faces),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default="mri")
    parser.add_argument("--data", type=Path, default=SAMPLE)
    parser.add_argument("--R", type=float, nargs="+", default=[4.0, 8.0])
    parser.add_argument("--P", type=int, default=8)
    args = parser.parse_args()
    print("| case | R | verdicts | error ratio | coverage | PSNR mean(32) / zero-filled |")
    print("|---|---|---|---|---|---|")
    for name, (weights, kspaces) in cases(args.weights, args.data).items():
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
