"""The headless pipeline behind ``napari-rcgan sample`` and ``demo``: input → samples → files."""

from __future__ import annotations

import argparse
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from napari_rcgan import stats
from napari_rcgan.errors import InputFileError, ParameterError
from napari_rcgan.io import (
    FastMRIFile,
    atomic_output,
    is_fastmri_candidate,
    is_image_candidate,
    read_hole_mask,
    read_image,
    write_result_h5,
)
from napari_rcgan.physics.inpainting import center_square_hole
from napari_rcgan.physics.masks import MASK_KINDS, load_mask_file, mask_from_array
from napari_rcgan.sampler import (
    InpaintingMeasurement,
    MRIMeasurement,
    PosteriorSampler,
    PosteriorSamples,
)

DEFAULT_WEIGHTS = {"mri": "mri", "inpainting": "faces"}


def input_task(path: str | os.PathLike) -> str:
    """``"mri"`` for fastMRI HDF5, ``"inpainting"`` for an image file."""
    if is_fastmri_candidate(path):
        return "mri"
    if is_image_candidate(path):
        return "inpainting"
    raise InputFileError(
        f"{path}: unknown input type; expected a fastMRI .h5 file or a PNG/JPEG/TIFF image"
    )


def fit_image(image: np.ndarray, size: tuple[int, int], source: str) -> np.ndarray:
    """Centre-crop an image ``(H, W[, C])`` to a square and resize it to ``size``.

    Raises:
        ParameterError: when the image is smaller than ``size``.
    """
    from PIL import Image

    height, width = image.shape[:2]
    if height < size[0] or width < size[1]:
        raise ParameterError(
            f"{source}: image is {height}x{width}, smaller than the {size[0]}x{size[1]} the "
            f"weights expect"
        )
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = image[top : top + side, left : left + side]
    if square.shape[:2] == tuple(size):
        return square
    resized = Image.fromarray(np.uint8(np.clip(square, 0, 1) * 255)).resize(
        (size[1], size[0]), Image.Resampling.LANCZOS
    )
    return np.asarray(resized, dtype=np.float32) / 255.0


@dataclass
class MeasurementSpec:
    """How to turn an input file into a measurement (the CLI's flags)."""

    slice: int = 0
    R: float = 8.0
    mask: str = "gro"
    hole: str = "center"
    coil_combine: str = "rss"
    mask_seed: int = 0


def measure_file(
    sampler: PosteriorSampler, path: str | os.PathLike, spec: MeasurementSpec
) -> MRIMeasurement | InpaintingMeasurement:
    """Read ``path`` (one slice of a fastMRI file, or an image) and build its measurement."""
    if input_task(path) == "mri":
        data = FastMRIFile.open(path)
        kspace = data.read_kspace(spec.slice)
        mask = None
        if spec.mask not in MASK_KINDS:
            size = tuple(sampler.metadata.image_size)
            array = load_mask_file(spec.mask, width=size[1])
            mask = mask_from_array(array, size, source=spec.mask)
        return sampler.measure_mri(
            kspace,
            mask=mask,
            R=spec.R,
            mask_kind=spec.mask if mask is None else "user",
            mask_seed=spec.mask_seed,
            coil_combine=spec.coil_combine,
            source=f"{data.path} slice {spec.slice}",
        )
    sampler.require_task("inpainting", "an image to inpaint")
    size = tuple(sampler.metadata.image_size)
    image = fit_image(read_image(path), size, str(path))
    hole = center_square_hole(size) if spec.hole == "center" else read_hole_mask(spec.hole)
    return sampler.measure_inpainting(image, hole, source=str(path))


def result_datasets(result: PosteriorSamples) -> dict[str, np.ndarray]:
    """The float32 datasets of the output schema."""
    measurement = result.measurement
    datasets = {
        "samples": result.stack.samples,
        "mean": result.stack.mean(),
        "std": result.stack.std(),
        "zero_filled": measurement.zero_filled_display,
        "mask": measurement.mask_display,
    }
    reference = measurement.reference
    if reference is not None:
        datasets["target"] = reference
        datasets["error"] = stats.absolute_error(datasets["mean"], reference)
    return datasets


def result_attrs(result: PosteriorSamples) -> dict[str, object]:
    """The attributes of the output schema (``R`` is NaN for inpainting)."""
    measurement = result.measurement
    is_mri = isinstance(measurement, MRIMeasurement)
    return {
        "task": measurement.task,
        "R": float(measurement.mask.achieved_R) if is_mri else math.nan,
        "P": int(result.P),
        "seed": int(result.seed),
        "mask_kind": measurement.mask.kind if is_mri else "hole",
        "weights": result.weights,
        "complete": bool(result.complete),
    }


def write_figure(result: PosteriorSamples, path: str | os.PathLike, title: str = "") -> Path:
    """One PNG: reference, zero-filled, two samples, mean, error, SD (atomically written)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    datasets = result_datasets(result)
    samples = datasets["samples"]
    panels = [("reference", datasets.get("target")), ("zero-filled", datasets["zero_filled"])]
    panels += [(f"sample {i + 1}", samples[i]) for i in range(min(2, len(samples)))]
    panels += [
        (f"mean (P={result.P})", datasets["mean"]),
        ("|mean − reference|", datasets.get("error")),
    ]
    panels += [("pixel-wise SD", datasets["std"])]
    panels = [(name, image) for name, image in panels if image is not None]
    scale = float(np.percentile(datasets["mean"], 99.5)) or 1.0
    figure, axes = plt.subplots(1, len(panels), figsize=(2.6 * len(panels), 3.0))
    for axis, (name, image) in zip(axes, panels):
        colour = image.ndim == 3
        if name.startswith("|"):
            shown = axis.imshow(image.mean(-1) if colour else image, cmap="magma")
        elif name == "pixel-wise SD":
            shown = axis.imshow(image.mean(-1) if colour else image, cmap="viridis")
        else:
            shown = axis.imshow(
                np.clip(image, 0, 1) if colour else image,
                cmap="gray",
                vmin=0,
                vmax=None if colour else scale,
            )
        if name.startswith("|") or name == "pixel-wise SD":
            figure.colorbar(shown, ax=axis, fraction=0.046, pad=0.02)
        axis.set_title(name, fontsize=9)
        axis.axis("off")
    if title:
        figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    path = Path(path)
    with atomic_output(path) as temporary:
        figure.savefig(temporary, dpi=110, format="png")
    plt.close(figure)
    return path


def run_sample_command(args: argparse.Namespace) -> PosteriorSamples:
    """``napari-rcgan sample``: validate, sample, then write OUT.h5 (and the PNG)."""
    task = input_task(args.input)
    out = Path(args.out)
    if out.suffix.lower() not in (".h5", ".hdf5"):
        raise ParameterError(f"{out}: the output must be an .h5 file")
    sampler = PosteriorSampler(args.weights or DEFAULT_WEIGHTS[task], device=args.device)
    spec = MeasurementSpec(args.slice, args.R, args.mask, args.hole, args.coil_combine)
    measurement = measure_file(sampler, args.input, spec)
    result = sampler.sample(measurement, args.P, seed=args.seed, chunk_size=args.chunk)
    write_result_h5(out, result_datasets(result), result_attrs(result))
    print(f"wrote {out} ({result.P} samples, {result.timings['total_s']:.1f} s)")
    if args.png:
        stem = Path(args.input).stem
        name = (
            f"{stem}_slice{args.slice}_R{args.R:g}_P{args.P}.png"
            if task == "mri"
            else (f"{stem}_P{args.P}.png")
        )
        figure = write_figure(result, Path(args.png) / name, title=_figure_title(result))
        print(f"wrote {figure}")
    return result


def _figure_title(result: PosteriorSamples) -> str:
    measurement = result.measurement
    reference = measurement.reference
    text = f"weights {Path(result.weights).name}, P={result.P}, seed {result.seed}"
    if isinstance(measurement, MRIMeasurement):
        text += f", {measurement.mask.kind} mask R={measurement.mask.achieved_R:.2f}"
    if reference is not None:
        mean = result.stack.mean()
        text += (
            f" — PSNR {stats.psnr(mean, reference):.2f} dB, SSIM {stats.ssim(mean, reference):.3f}"
        )
    return text


def has_display() -> bool:
    """Whether a GUI can open: macOS/Windows, or an X11/Wayland display on Linux."""
    import sys

    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def demo_weights(task: str, requested: str | None) -> str:
    """The weights the demo uses: the requested ones, the bundled ones, else random (with a note)."""
    from napari_rcgan.weights import bundled_weights

    if requested:
        return requested
    if DEFAULT_WEIGHTS[task] in bundled_weights():
        return DEFAULT_WEIGHTS[task]
    print(f"note: no bundled '{DEFAULT_WEIGHTS[task]}' weights installed; using random:{task}")
    return f"random:{task}"


def run_headless_demo(args: argparse.Namespace) -> list[Path]:
    """Sample the bundled brain and face examples and write their figures to ``args.out``."""
    from napari_rcgan._sample_data import sample_data_dir

    folder = sample_data_dir()
    brains = sorted(folder.glob("brain*.h5"))
    faces = sorted(folder.glob("face*.png"))
    if not brains and not faces:
        raise InputFileError(f"{folder}: no sample data found (brain*.h5, face*.png)")
    out = Path(args.out)
    written = []
    jobs = [(path, "mri") for path in brains[:1]] + [(path, "inpainting") for path in faces[:1]]
    for path, task in jobs:
        sampler = PosteriorSampler(
            demo_weights(task, args.weights if task == "mri" else None), device=args.device
        )
        spec = MeasurementSpec(slice=0, R=args.R)
        result = sampler.sample(measure_file(sampler, path, spec), args.P)
        suffix = f"_R{args.R:g}" if task == "mri" else ""
        write_result_h5(
            out / f"{path.stem}{suffix}_P{args.P}.h5", result_datasets(result), result_attrs(result)
        )
        figure = write_figure(
            result, out / f"{path.stem}{suffix}_P{args.P}.png", title=_figure_title(result)
        )
        print(f"wrote {figure} ({result.timings['total_s']:.1f} s)")
        written.append(figure)
    return written


def run_demo_command(args: argparse.Namespace) -> None:
    """``napari-rcgan demo``: napari with the sample and the widget, or the headless pipeline."""
    if not args.headless and has_display():
        try:
            from napari_rcgan._demo import launch_demo
        except ImportError as error:
            print(f"napari cannot start here ({error}); running the headless demo instead")
        else:
            launch_demo(weights=args.weights, P=args.P, R=args.R, device=args.device)
            return
    else:
        print("headless demo" if args.headless else "no display: running the headless demo")
    run_headless_demo(args)
