"""Sampler throughput: PosteriorSampler vs the reference way of sampling, same network, same run.

The reference way (github.com/matt-bendel/rcGAN) runs one generator forward per sample in fp32
with no batching. ``PosteriorSampler`` batches the code vectors, and on CUDA uses bf16 autocast
and channels-last. Both include data consistency and the RSS coil combination.

Usage::

    python benchmarks/sampler_throughput.py [--device cpu|cuda] [--widths 32 128] [--P 32]
        [--size 384] [--coils 8] [--repeats 3]

Prints one line per (device, width) with the median times and the measured speed-up ratio.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from napari_rcgan.physics.masks import column_mask
from napari_rcgan.sampler import PosteriorSampler, code_vector, resolve_device
from napari_rcgan.weights import NOISE_CHANNELS, Weights, WeightsMetadata, build_generator


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reference_way(sampler: PosteriorSampler, measurement, P: int, seed: int) -> torch.Tensor:
    """One fp32 forward per sample, as the reference implementation samples."""
    network_input = measurement.network_input()
    height, width = network_input.shape[-2:]
    generator = sampler.generator.to(memory_format=torch.contiguous_format)
    magnitudes = []
    with torch.inference_mode():
        for index in range(P):
            code = code_vector(seed, index, (NOISE_CHANNELS, height, width))
            batch = torch.cat([network_input, code])[None].to(sampler.device)
            images = measurement.finish(generator(batch))
            magnitudes.append(measurement.display(images))
    return magnitudes


def time_call(function, device: torch.device, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        function()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def benchmark(device_name: str, width: int, P: int, size: int, coils: int, repeats: int) -> str:
    device = resolve_device(device_name)
    metadata = WeightsMetadata(
        task="mri", image_size=[size, size], channels=coils, base_width=width
    )
    torch.manual_seed(0)
    weights = Weights(metadata, build_generator(metadata).state_dict(), f"random width {width}")
    generator = torch.Generator().manual_seed(1)
    kspace = torch.complex(
        torch.randn(coils, size, size, generator=generator),
        torch.randn(coils, size, size, generator=generator),
    )
    ours = PosteriorSampler(weights, device=device_name)
    measurement = ours.measure_mri(kspace, mask=column_mask((size, size), "gro", 8.0))
    ours.sample(measurement, min(P, 2))  # warm-up (cuDNN autotuning, allocator)
    batched = time_call(lambda: ours.sample(measurement, P), device, repeats)
    reference = PosteriorSampler(weights, device=device_name)
    reference_way(reference, measurement, 1, 0)
    one_by_one = time_call(lambda: reference_way(reference, measurement, P, 0), device, repeats)
    name = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"cpu x{torch.get_num_threads()}"
    )
    return (
        f"{name:>24s}  width {width:4d}  P={P}  {size}x{size}x{coils}: reference way "
        f"{one_by_one * 1e3:9.1f} ms, PosteriorSampler {batched * 1e3:9.1f} ms, "
        f"speed-up x{one_by_one / batched:.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--widths", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--P", type=int, default=32)
    parser.add_argument("--size", type=int, default=384)
    parser.add_argument("--coils", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    for width in args.widths:
        print(
            benchmark(args.device, width, args.P, args.size, args.coils, args.repeats), flush=True
        )


if __name__ == "__main__":
    main()
