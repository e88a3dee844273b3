"""Latency of the shipped demo weights on this machine, and the P explorer's re-averaging cost.

Usage::

    python benchmarks/demo_latency.py [--weights mri] [--device cpu] [--P 32] [--repeats 3]
        [--load N] [--threads T]

``--load N`` runs N busy processes (pure Python loops) during the measurement, as other work on a
shared machine would; ``--threads T`` forces torch's intra-op threads (default: the rule of
:mod:`napari_rcgan.threads`, with no GUI reserve as in the CLI).

Prints, for the bundled brain sample: the time from pressing *Sample* (measurement included) to
the first chunk of samples, the time for all P samples, and the time to re-average mean and SD of
64 samples of 384×384 for a new P from the prefix sums (the P slider), against numpy's direct
mean/std of the same stack.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from napari_rcgan.bundled import BRAIN_FILE, sample_data_dir
from napari_rcgan.sampler import PosteriorSampler
from napari_rcgan.session import SamplingRequest, Session
from napari_rcgan.stats import SampleStack
from napari_rcgan.threads import available_cores, intra_op_threads


def _busy(stop) -> None:
    while not stop.is_set():
        sum(range(10_000))


def start_load(count: int):
    """``count`` busy processes; returns the event that stops them and the processes."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    stop = context.Event()
    workers = [context.Process(target=_busy, args=(stop,), daemon=True) for _ in range(count)]
    for worker in workers:
        worker.start()
    return stop, workers


def sampling_latency(weights: str, device: str, P: int, R: float) -> tuple[float, float]:
    sampler = PosteriorSampler(weights, device=device)
    started = time.perf_counter()
    request = SamplingRequest(input=str(sample_data_dir() / BRAIN_FILE), R=R)
    measurement = Session().measure(request, sampler)
    first = None
    for _ in sampler.iter_chunks(measurement, P):
        if first is None:
            first = time.perf_counter() - started
    return first, time.perf_counter() - started


def reaverage_cost(count: int = 64, size: int = 384, repeats: int = 20) -> tuple[float, float]:
    rng = np.random.default_rng(0)
    samples = rng.random((count, size, size), dtype=np.float32)
    stack = SampleStack((size, size), capacity=count)
    stack.extend(samples)
    prefix, direct = [], []
    for repeat in range(repeats):
        P = 1 + repeat % count
        start = time.perf_counter()
        stack.mean(P), stack.std(P)
        prefix.append(time.perf_counter() - start)
        start = time.perf_counter()
        samples[:P].mean(0), samples[:P].std(0)
        direct.append(time.perf_counter() - start)
    return statistics.median(prefix), statistics.median(direct)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default="mri")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--P", type=int, default=32)
    parser.add_argument("--R", type=float, default=4.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--load", type=int, default=0, help="busy processes running alongside")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    args = parser.parse_args()
    stop, workers = start_load(args.load)
    try:
        threads = (args.threads if args.threads else intra_op_threads(0))
        torch.set_num_threads(threads)
        runs = [sampling_latency(args.weights, args.device, args.P, args.R)
                for _ in range(args.repeats)]
    finally:
        stop.set()
        for worker in workers:
            worker.join()
    first = statistics.median(run[0] for run in runs)
    total = statistics.median(run[1] for run in runs)
    print(f"weights {args.weights} on {args.device}, {threads} torch thread(s), load {args.load} "
          f"busy process(es), {available_cores()} cores: first samples after {first:.2f} s, "
          f"P={args.P} after {total:.2f} s (median of {args.repeats})")
    prefix, direct = reaverage_cost()
    print(f"re-average mean+SD of 64 samples 384x384 for a new P: prefix sums {prefix * 1e3:.1f} ms, "
          f"numpy from the stack {direct * 1e3:.1f} ms (x{direct / prefix:.1f})")


if __name__ == "__main__":
    main()
