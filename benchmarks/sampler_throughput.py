"""Sampler throughput: PosteriorSampler vs the reference way of sampling, same network, same run.

The reference way (github.com/matt-bendel/rcGAN) runs one eager fp32 generator forward per sample
with no batching. ``PosteriorSampler`` runs the generator through a backend
(:mod:`napari_rcgan.backends`). Every timing includes data consistency and the RSS coil combine.

On the CPU every available backend × precision (torch fp32, torch bf16, OpenVINO fp32, OpenVINO
bf16; bf16 only where the CPU has it natively, OpenVINO only with the extra installed) is timed in
the same run, as a ratio to the reference way, with its agreement with eager fp32
(max |y − y_eager| / max |y_eager| of the generator output). On CUDA the sampler's default
(batched, bf16 autocast, channels-last) is compared with the reference way.

Usage::

    python benchmarks/sampler_throughput.py [--device cpu|cuda] [--models demo 32 128] [--P 8]
        [--size 384] [--coils 8] [--repeats 3] [--threads N] [--clock wall|process]

``demo`` is the bundled ``mri`` weights (128×128); a number is a random generator of that base
width at ``--size``. Prints the conditions, then a Markdown table (CPU) or one line per model.
On a machine shared with other jobs, ``--clock process`` times the CPU seconds this process used
(all its threads) instead of the wall clock, which other jobs inflate.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch

from napari_rcgan.backends import cpu_has_bf16, openvino_available
from napari_rcgan.physics.masks import column_mask
from napari_rcgan.sampler import PosteriorSampler, code_vector, resolve_device
from napari_rcgan.weights import NOISE_CHANNELS, Weights, WeightsMetadata, build_generator, load_weights


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reference_way(sampler: PosteriorSampler, measurement, P: int, seed: int) -> list:
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


CLOCKS = {"wall": time.perf_counter, "process": time.process_time}


def time_call(function, device: torch.device, repeats: int, clock=time.perf_counter) -> float:
    """Median seconds of ``function()`` on the chosen clock (wall, or CPU time of the process)."""
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = clock()
        function()
        synchronize(device)
        times.append(clock() - start)
    return statistics.median(times)


def model_weights(model: str, size: int, coils: int) -> Weights:
    """The bundled demo weights, or a random generator of base width ``int(model)``."""
    if model == "demo":
        return load_weights("mri")
    metadata = WeightsMetadata(
        task="mri", image_size=[size, size], channels=coils, base_width=int(model)
    )
    torch.manual_seed(0)
    return Weights(metadata, build_generator(metadata).state_dict(), f"random width {model}")


def model_measurement(sampler: PosteriorSampler):
    metadata = sampler.metadata
    size = tuple(metadata.image_size)
    generator = torch.Generator().manual_seed(1)
    shape = (metadata.channels, *size)
    kspace = torch.complex(
        torch.randn(shape, generator=generator), torch.randn(shape, generator=generator)
    )
    return sampler.measure_mri(kspace, mask=column_mask(size, "gro", 8.0))


def describe(weights: Weights) -> str:
    metadata = weights.metadata
    height, width = metadata.image_size
    name = "demo mri" if weights.source == "mri" else f"width {metadata.base_width}"
    return f"{name} {height}x{width}x{metadata.channels}"


def cpu_configurations() -> list[tuple[str, str]]:
    """Every (backend, precision) this machine can run."""
    precisions = ["fp32", "bf16"] if cpu_has_bf16() else ["fp32"]
    backends = ["torch", "openvino"] if openvino_available() else ["torch"]
    return [(backend, precision) for backend in backends for precision in precisions]


def network_inputs(sampler: PosteriorSampler) -> tuple[torch.Tensor, torch.Tensor]:
    """One random generator input: condition ``(1, C, H, W)`` and code ``(1, *code_shape)``."""
    height, width = sampler.metadata.image_size
    code_shape = sampler.generator.code_shape(height, width)
    channels = sampler.generator.in_channels - code_shape[0]
    random = torch.Generator().manual_seed(2)
    condition = torch.randn((1, channels, height, width), generator=random)
    return condition, torch.randn((1, *code_shape), generator=random)


def agreement(sampler: PosteriorSampler, reference: torch.nn.Module) -> float:
    """max |y − y_eager| / max |y_eager| of the generator output for one random input."""
    inputs = network_inputs(sampler)
    with torch.inference_mode():
        expected = reference.sample(*inputs)
    return float((sampler.backend(*inputs) - expected).abs().max() / expected.abs().max())


def forward_seconds(run, inputs: tuple[torch.Tensor, ...], repeats: int, clock) -> float:
    """Median seconds of one generator forward pass alone (no code vectors, no finishing)."""
    with torch.inference_mode():
        run(*inputs)
        return time_call(lambda: run(*inputs), torch.device("cpu"), max(repeats, 5), clock)


def cpu_row(
    model: str, P: int, size: int, coils: int, repeats: int, clock
) -> tuple[str, list[str]]:
    """A Markdown table row: reference ms/sample, then per backend the ratio per sample (ms per
    sample; ratio of the generator forward alone; agreement error)."""
    weights = model_weights(model, size, coils)
    reference = PosteriorSampler(weights, device="cpu", backend="torch", precision="fp32")
    measurement = model_measurement(reference)
    reference_way(reference, measurement, 1, 0)
    baseline = time_call(
        lambda: reference_way(reference, measurement, P, 0), reference.device, repeats, clock
    )
    eager = weights.build_generator()
    inputs = network_inputs(reference)
    eager_forward = forward_seconds(eager.sample, inputs, repeats, clock)
    cells = [f"{baseline / P * 1e3:.1f} ms (forward {eager_forward * 1e3:.1f} ms)"]
    notes = []
    for backend, precision in cpu_configurations():
        sampler = PosteriorSampler(weights, device="cpu", backend=backend, precision=precision)
        warm_up = sampler.sample(measurement, 2, chunk_size=1)  # converts (OpenVINO)
        if "conversion_s" in warm_up.timings:
            notes.append(f"{backend} {precision} conversion {warm_up.timings['conversion_s']:.1f} s")
        seconds = time_call(
            lambda s=sampler: s.sample(measurement, P), sampler.device, repeats, clock
        )
        error = agreement(sampler, eager)
        forward = eager_forward / forward_seconds(sampler.backend, inputs, repeats, clock)
        cells.append(
            f"**×{baseline / seconds:.2f}** ({seconds / P * 1e3:.1f} ms; forward ×{forward:.2f}; "
            f"err {error:.1e})"
        )
    return f"| {describe(weights)} | " + " | ".join(cells) + " |", notes


def cuda_line(model: str, P: int, size: int, coils: int, repeats: int, device_name: str) -> str:
    weights = model_weights(model, size, coils)
    device = resolve_device(device_name)
    ours = PosteriorSampler(weights, device=device_name)
    measurement = model_measurement(ours)
    ours.sample(measurement, min(P, 2))  # warm-up (cuDNN autotuning, allocator)
    batched = time_call(lambda: ours.sample(measurement, P), device, repeats)
    reference = PosteriorSampler(weights, device=device_name, backend="torch", precision="fp32")
    reference_way(reference, measurement, 1, 0)
    one_by_one = time_call(lambda: reference_way(reference, measurement, P, 0), device, repeats)
    return (
        f"{torch.cuda.get_device_name(device):>24s}  {describe(weights)}  P={P}: reference way "
        f"{one_by_one * 1e3:9.1f} ms, PosteriorSampler ({ours.backend.name} {ours.precision}) "
        f"{batched * 1e3:9.1f} ms, speed-up x{one_by_one / batched:.2f}"
    )


def conditions() -> str:
    """CPU model, threads, load, native bf16, OpenVINO version: what the numbers depend on."""
    model = platform.processor() or platform.machine()
    if os.path.isfile("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as handle:
            names = [line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")]
        model = names[0] if names else model
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    openvino = "not installed"
    if openvino_available():
        import openvino as ov

        openvino = ov.__version__.split("-")[0]
    return (
        f"{model}, {os.cpu_count()} logical CPUs, torch {torch.__version__} with "
        f"{torch.get_num_threads()} thread(s), load average {load}, native bf16: "
        f"{'yes' if cpu_has_bf16() else 'no'}, OpenVINO {openvino}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--models", nargs="+", default=["demo", "32", "128"])
    parser.add_argument("--P", type=int, default=8)
    parser.add_argument("--size", type=int, default=384)
    parser.add_argument("--coils", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch and OpenVINO threads")
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    if device.type != "cpu":
        for model in args.models:
            print(cuda_line(model, args.P, args.size, args.coils, args.repeats, args.device), flush=True)
        return
    print(f"conditions: {conditions()}; P={args.P}, median of {args.repeats}, {args.clock} clock",
          flush=True)
    names = [f"{backend} {precision}" for backend, precision in cpu_configurations()]
    print("| model | reference way (eager fp32, per sample) | " + " | ".join(names) + " |")
    print("|---" * (len(names) + 2) + "|", flush=True)
    notes = []
    for model in args.models:
        row, model_notes = cpu_row(
            model, args.P, args.size, args.coils, args.repeats, CLOCKS[args.clock]
        )
        print(row, flush=True)
        notes += model_notes
    print("ratio = reference way time / backend time for the same P samples, data consistency "
          "and coil combination included (higher is faster); forward = the same ratio for one "
          "generator forward pass alone; err = max|y - y_eager| / max|y_eager| of the generator "
          "output. " + "; ".join(notes))


if __name__ == "__main__":
    main()
