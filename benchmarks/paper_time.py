"""The paper's "Time (P)": wall time of drawing P posterior samples for one measurement.

P = 4 for MRI (Tables 1–2) and P = 128 for faces (Table 4), as the paper reports it; the median
of ``--repeats`` runs after one warm-up run, on the chosen device, for the bundled sample brain
slice (GRO R=4) and the first sample face (centred hole). ``napari-rcgan evaluate --metrics time``
measures the same quantity over a test folder (``time_ms``, ``time_ms_per_sample``).

Usage::

    python benchmarks/paper_time.py [--device cpu|cuda] [--mri-weights mri] [--face-weights faces]
        [--repeats 5] [--P-mri 4] [--P-faces 128]
"""

from __future__ import annotations

import argparse
import statistics

import torch

from napari_rcgan.bundled import brain_sample_path, face_sample_path
from napari_rcgan.evaluation import TIME_P, time_sampling
from napari_rcgan.io import FastMRIFile, read_image
from napari_rcgan.physics.inpainting import center_square_hole
from napari_rcgan.sampler import PosteriorSampler
from napari_rcgan.session import fit_image


def measurement_for(sampler: PosteriorSampler):
    """The sample brain slice 0 at R=4 (GRO) or the first sample face with the centred hole."""
    if sampler.metadata.task == "mri":
        return sampler.measure_mri(FastMRIFile.open(brain_sample_path()).read_kspace(0), R=4.0)
    size = tuple(sampler.metadata.image_size)
    image = fit_image(read_image(face_sample_path()), size, str(face_sample_path()))
    return sampler.measure_inpainting(image, center_square_hole(size))


def paper_time(weights: str, device: str, P: int, repeats: int) -> str:
    sampler = PosteriorSampler(weights, device=device)
    measurement = measurement_for(sampler)
    time_sampling(sampler, measurement, P)  # warm-up
    median = statistics.median(time_sampling(sampler, measurement, P) for _ in range(repeats))
    name = (torch.cuda.get_device_name(sampler.device) if sampler.device.type == "cuda"
            else f"cpu x{torch.get_num_threads()} threads")
    size = "x".join(map(str, sampler.metadata.image_size))
    return (f"{weights:>12s} ({sampler.metadata.task}, {size}) on {name}: Time (P={P}) "
            f"{median:8.1f} ms ({median / P:.1f} ms per sample, median of {repeats})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--mri-weights", default="mri")
    parser.add_argument("--face-weights", default="faces")
    parser.add_argument("--P-mri", type=int, default=TIME_P["mri"])
    parser.add_argument("--P-faces", type=int, default=TIME_P["inpainting"])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(paper_time(args.mri_weights, args.device, args.P_mri, args.repeats), flush=True)
    print(paper_time(args.face_weights, args.device, args.P_faces, args.repeats), flush=True)


if __name__ == "__main__":
    main()
