"""Cost of the perception–distortion curves: PSNR, SSIM, LPIPS and DISTS of the P-average for
every P of a run (what the P explorer computes in its worker after a run).

Usage::

    python benchmarks/pd_metrics.py [--P 32] [--R 4] [--threads 2] [--repeats 2]

Samples the bundled brain slice with the bundled ``mri`` weights (128×128), then times
:func:`napari_rcgan.perception.pd_curves` for P = 1…P with the feature networks in fp32 and in
bf16 (the explorer's ``auto`` on CPUs with AMX / AVX512-BF16), networks loaded beforehand.
Prints wall-clock and process CPU time (the CPU time divided by the threads is what the wall
time would be on otherwise idle cores) and the largest bf16−fp32 difference.
"""

from __future__ import annotations

import argparse
import copy
import time

import numpy as np
import torch

from napari_rcgan import perception
from napari_rcgan.bundled import brain_sample_path
from napari_rcgan.session import SamplingRequest, Session


def timed_curves(stack, reference, precision: str, repeats: int) -> tuple[float, float, object]:
    """Best wall and CPU seconds of ``repeats`` ``pd_curves`` runs, each on a fresh copy of the
    stack (so nothing comes from the per-run cache)."""
    perception.pd_curves(copy.deepcopy(stack), reference, [1, 2], precision=precision)
    walls, cpus = [], []
    for _ in range(repeats):
        fresh = copy.deepcopy(stack)
        wall, cpu = time.perf_counter(), time.process_time()
        curves = perception.pd_curves(fresh, reference, precision=precision)
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return min(walls), min(cpus), curves


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--P", type=int, default=32)
    parser.add_argument("--R", type=float, default=4.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    request = SamplingRequest(input=str(brain_sample_path()), R=args.R, P=args.P, weights="mri",
                              device="cpu")
    result = Session().run(request)
    shape = "×".join(map(str, result.stack.sample_shape))
    print(f"{args.P} samples of {shape}, {args.threads} torch threads")
    measured = {}
    for precision in ("fp32", "bf16"):
        wall, cpu, curves = timed_curves(result.stack, result.reference, precision, args.repeats)
        measured[precision] = curves
        print(f"  {precision}: P=1..{args.P} PSNR/SSIM/LPIPS/DISTS in {wall:.2f} s wall, "
              f"{cpu:.2f} s CPU ({cpu / args.threads:.2f} s per thread)")
    for name in ("lpips", "dists"):
        difference = np.abs(measured["bf16"].values(name) - measured["fp32"].values(name)).max()
        print(f"  max |bf16 − fp32| {name.upper()}: {difference:.2e}")


if __name__ == "__main__":
    main()
