"""``napari-rcgan evaluate``: measure weights on held-out data with the paper's metrics.

For each setting (MRI: each R; inpainting: the centred hole) and each test item, P_max samples
are drawn once; the P-sample averages for all requested P come from the same prefix-sum stack.
Always computed (averaged over items):

- ``zero_filled_psnr``: PSNR of the zero-filled (MRI) / masked (inpainting) image;
- ``psnr[P]``, ``ssim[P]``: of the P-sample average's magnitude (data range from the reference);
- ``apsd``: average pixel-wise SD of the P_max samples (paper, Table 1);
- ``e1_over_ep_db[P]``: [E1/E_P]dB with E_P = ||x̂_(P) − x||² of the multicoil complex images,
  summed over slices (eqs. 21–22), to compare with 10·log10(2P/(P+1)) (Prop. 3.3). Each
  slice's E_P is the mean over the ⌊P_max/P⌋ disjoint groups of P of its P_max samples
  (:func:`napari_rcgan.stats.error_energy`), so E_1 averages all P_max single-sample errors;
  ``e1_over_ep_db_per_slice[P]``: the same ratio of each slice alone, in the data's order (a set
  of a few slices can hide slices that are miscalibrated in opposite directions);
- ``psnr_gain_min_db``, ``slices_below_zero_filled``: the smallest per-slice PSNR gain of the
  largest-P average over the zero-filled image, and the number of slices where it is negative;
- ``sd_error_spearman``: Spearman correlation between the pixel-wise SD and the absolute error of
  the P_max-sample average, inside the object (reference > 5 % of its maximum), mean over slices;
  ``sd_error_spearman_ceiling``: its mean value if the errors were Gaussian with exactly that SD
  map (:func:`napari_rcgan.stats.spearman_ceiling`), the yardstick for ``sd_error_spearman``.

With ``--metrics`` (see :mod:`napari_rcgan.metrics`; weights from ``features prepare``):

- ``cfid[set]``: CFID on the embeddings of one row per draw (generated, condition, truth) with
  P draws per item (MRI defaults, the paper's CFID¹²³: ``test`` P=32, ``val`` P=8,
  ``val+train`` P=1; inpainting: ``test`` P=1). MRI embeddings: the reference recipe (SENSE with
  ESPIRiT maps of the zero-filled k-space, min–max, VGG-16); faces: Inception-v3 pool3.
- ``fid``: FID between the generated and true rows of the test set with P=32.
- ``lpips[P]`` (AlexNet), ``dists[P]``: of the P-sample average against the reference (MRI
  magnitudes min–max scaled per image).
- ``time_ms[P]`` and ``time_ms_per_sample``: median wall time of drawing P samples (P=4 for
  MRI, 128 for faces, as the paper's "Time (P)"), after one warm-up run, on the chosen device.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from napari_rcgan import stats
from napari_rcgan.errors import InputFileError, ParameterError, WeightsError
from napari_rcgan.io import (
    FastMRIFile,
    atomic_output,
    check_output_path,
    is_image_candidate,
    read_image,
)
from napari_rcgan.metrics_cli import (
    CFID_P,
    DEFAULT_METRICS,
    FID_P,
    parse_cfid_sets,
    parse_metrics,
)
from napari_rcgan.physics.inpainting import center_square_hole
from napari_rcgan.sampler import PosteriorSampler
from napari_rcgan.session import fit_image

TIME_P = {"mri": 4, "inpainting": 128}
SET_FOLDERS = {"test": ("test",), "val": ("val",), "val+train": ("val", "train")}
SET_OPTIONS = {"test": "--data", "val": "--val-data", "train": "--train-data"}


@dataclass
class EvaluationOptions:
    """What to measure beyond PSNR/SSIM/APSD (the CLI's ``--metrics`` and friends)."""

    metrics: tuple[str, ...] = DEFAULT_METRICS
    combine: str = "rss"
    cfid_sets: dict[str, int] = field(default_factory=dict)
    folders: dict[str, Path] = field(default_factory=dict)
    feature_dir: str | None = None
    fid_P: int = FID_P


def data_files(folder: Path, option: str = "--data") -> list[Path]:
    """The fastMRI ``.h5`` files of ``folder`` (its top level, else recursively)."""
    if not folder.is_dir():
        raise InputFileError(f"{folder}: no such data folder ({option})")
    files = sorted(folder.glob("*.h5")) or sorted(folder.rglob("*.h5"))
    if not files:
        raise InputFileError(f"{folder}: no .h5 files to evaluate on ({option})")
    return files


def _items(task: str, folder: Path, option: str, limit: int | None) -> list:
    """MRI: ``(FastMRIFile, slice)`` pairs; inpainting: image paths (at most ``limit``)."""
    if task == "mri":
        return [(data, index) for data in map(FastMRIFile.open, data_files(folder, option))
                for index in range(data.num_slices)][:limit]
    if not folder.is_dir():
        raise InputFileError(f"{folder}: no such image folder ({option})")
    images = sorted(path for path in folder.iterdir() if is_image_candidate(path))
    if not images:
        raise InputFileError(f"{folder}: no PNG/JPEG/TIFF images to evaluate on ({option})")
    return images[:limit]


@dataclass
class _Item:
    """One test item measured for one setting: the measurement and (MRI) evaluation maps."""

    measurement: object
    maps: torch.Tensor | None = None


def _measure(sampler: PosteriorSampler, task: str, item, R: float, mask_kind: str,
             options: EvaluationOptions, need_maps: bool) -> _Item:
    if task == "inpainting":
        size = tuple(sampler.metadata.image_size)
        image = fit_image(read_image(item), size, str(item))
        return _Item(sampler.measure_inpainting(image, center_square_hole(size), source=str(item)))
    data, index = item
    measurement = sampler.measure_mri(data.read_kspace(index), R=R, mask_kind=mask_kind,
                                      source=f"{data.path} slice {index}")
    maps = None
    if need_maps or options.combine == "sense":
        from napari_rcgan.metrics import reference_sense_maps

        maps = reference_sense_maps(measurement.measured_kspace)
    if options.combine == "sense":
        measurement.coil_combine, measurement.sense_maps = "sense", maps
    return _Item(measurement, maps)


def _embeddings(task: str, item: _Item, images: torch.Tensor, options: EvaluationOptions,
                device: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One row per draw in ``images``: (generated, condition, truth) embeddings."""
    from napari_rcgan import metrics

    measurement = item.measurement
    if task == "mri":
        def embed(x):
            return metrics.mri_embeddings(x, item.maps, options.feature_dir, device)

        condition, truth = measurement.zero_filled[None], measurement.target[None]
    else:
        def embed(x):
            return metrics.inception_features(x, options.feature_dir, device)

        known = torch.from_numpy(~measurement.hole).float()
        condition, truth = (measurement.image * known)[None], measurement.image[None]
    count = len(images)
    return (embed(images), np.repeat(embed(condition), count, axis=0),
            np.repeat(embed(truth), count, axis=0))


def _perceptual_pair(task: str, estimate: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``(2, 3, H, W)`` in [0, 1]: MRI magnitudes min–max scaled per image; colour images as is."""
    from napari_rcgan.metrics import as_image_batch, min_max

    pair = np.stack([estimate, reference])
    pair = as_image_batch(pair.transpose(0, 3, 1, 2) if pair.ndim == 4 else pair)
    return (min_max(pair) if task == "mri" else pair.clamp(0, 1)).numpy()


def time_sampling(sampler: PosteriorSampler, measurement, P: int, seed: int = 0) -> float:
    """Wall time in ms of drawing ``P`` samples for ``measurement`` (the paper's "Time (P)"),
    synchronising CUDA before and after."""
    if sampler.device.type == "cuda":
        torch.cuda.synchronize(sampler.device)
    started = time.perf_counter()
    sampler.sample(measurement, P, seed=seed)
    if sampler.device.type == "cuda":
        torch.cuda.synchronize(sampler.device)
    return 1000 * (time.perf_counter() - started)


def _setting(sampler, task, items, R, counts, mask_kind, seed, options) -> dict:
    """All metrics of one setting (one R, or the inpainting hole) over the test items."""
    from napari_rcgan import metrics

    wanted = set(options.metrics)
    device = str(sampler.device)
    test_P = options.cfid_sets.get("test", 0) if "cfid" in wanted else 0
    fid_P = options.fid_P if "fid" in wanted else 0
    P_max = max(*counts, test_P, fid_P)
    psnr = {P: [] for P in counts}
    ssim = {P: [] for P in counts}
    slice_errors: list[dict[int, float]] = []  # per slice: E_P for P = 1 and each of counts
    zero_filled, apsd, spearman, ceilings, times, gains = [], [], [], [], [], []
    pairs: dict[int, list[np.ndarray]] = {P: [] for P in counts}
    rows: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for number, item in enumerate(items):
        measured = _measure(sampler, task, item, R, mask_kind, options, need_maps=bool(test_P or fid_P))
        measurement = measured.measurement
        result = sampler.sample(measurement, P_max, seed=seed)
        reference = measurement.reference
        zero_filled.append(stats.psnr(measurement.zero_filled_display, reference))
        for P in counts:
            mean = result.stack.mean(P)
            psnr[P].append(stats.psnr(mean, reference))
            ssim[P].append(stats.ssim(mean, reference))
            if wanted & {"lpips", "dists"}:
                pairs[P].append(_perceptual_pair(task, mean, reference))
        gains.append(psnr[counts[-1]][-1] - zero_filled[-1])
        target = measurement.target if task == "mri" else measurement.image
        slice_errors.append({P: float(stats.error_energy(result.images[None], target[None], P)[0])
                             for P in (1, *counts)})
        apsd.append(stats.apsd(result.stack))
        support = stats.object_support(reference)
        error = stats.absolute_error(result.stack.mean(), reference)
        sd = result.stack.std()
        spearman.append(stats.sd_error_spearman(sd, error, support))
        ceilings.append(stats.spearman_ceiling(sd[support], seed))
        if test_P or fid_P:
            rows.append(_embeddings(task, measured, result.images[: max(test_P, fid_P)], options, device))
        if "time" in wanted:
            if number == 0:
                time_sampling(sampler, measurement, TIME_P[task], seed)
            times.append(time_sampling(sampler, measurement, TIME_P[task], seed))
    errors = {P: sum(energies[P] for energies in slice_errors) for P in (1, *counts)}
    values = {
        "zero_filled_psnr": float(np.mean(zero_filled)),
        "psnr": {str(P): float(np.mean(psnr[P])) for P in counts},
        "ssim": {str(P): float(np.mean(ssim[P])) for P in counts},
        "apsd": float(np.mean(apsd)),
        "psnr_gain_min_db": float(np.min(gains)),
        "slices_below_zero_filled": int(np.sum(np.asarray(gains) < 0)),
        "e1_over_ep_db": {str(P): 10 * math.log10(errors[1] / errors[P]) for P in counts},
        "e1_over_ep_db_per_slice": {
            str(P): [10 * math.log10(energies[1] / energies[P]) for energies in slice_errors] for P in counts
        },
        "sd_error_spearman": float(np.mean(spearman)),
        "sd_error_spearman_ceiling": float(np.mean(ceilings)),
    }
    if wanted & {"lpips", "dists"}:
        for name in ("lpips", "dists"):
            if name not in wanted:
                continue
            values[name] = {}
            for P in counts:
                batch = np.stack(pairs[P])
                if name == "lpips":
                    distances = metrics.lpips(2 * batch[:, 0] - 1, 2 * batch[:, 1] - 1, "alex",
                                              options.feature_dir, device)
                else:
                    distances = metrics.dists(batch[:, 0], batch[:, 1], options.feature_dir, device)
                values[name][str(P)] = float(np.mean(distances))
    if test_P:
        stacked = [np.concatenate([row[k][:test_P] for row in rows]) for k in range(3)]
        values["cfid"] = {"test": metrics.cfid(*stacked)}
    if fid_P:
        generated = np.concatenate([row[0][:fid_P] for row in rows])
        values["fid"] = metrics.fid(generated, np.concatenate([row[2][:fid_P] for row in rows]))
    if "time" in wanted:
        median = statistics.median(times)
        values["time_ms"] = {str(TIME_P[task]): median}
        values["time_ms_per_sample"] = median / TIME_P[task]
    return values


def _set_cfid(sampler, task, name, P, R, mask_kind, seed, options, limit) -> float:
    """CFID on a validation (or validation + training) set with P draws per item."""
    from napari_rcgan import metrics

    items = []
    for part in SET_FOLDERS[name]:
        folder = options.folders.get(part)
        if folder is None:
            raise ParameterError(f"--cfid-sets {name} needs {SET_OPTIONS[part]} FOLDER")
        items += _items(task, Path(folder), SET_OPTIONS[part], limit)
    rows = []
    for item in items:
        measured = _measure(sampler, task, item, R, mask_kind, options, need_maps=True)
        result = sampler.sample(measured.measurement, P, seed=seed)
        rows.append(_embeddings(task, measured, result.images, options, str(sampler.device)))
    return metrics.cfid(*[np.concatenate([row[k] for row in rows]) for k in range(3)])


def evaluate(
    sampler: PosteriorSampler,
    folder: str | Path,
    accelerations: list[float],
    sample_counts: list[int],
    mask_kind: str = "gro",
    seed: int = 0,
    max_slices: int | None = None,
    options: EvaluationOptions | None = None,
) -> dict:
    """Metrics per R (MRI) or for the centred hole (inpainting): the CLI's JSON dictionary."""
    options = options or EvaluationOptions()
    task = sampler.metadata.task
    counts = sorted(set(sample_counts))
    if counts[0] < 1:
        raise ParameterError(f"P values must be at least 1, got {counts[0]}")
    if max_slices is not None and max_slices < 1:
        raise ParameterError(f"max-slices: must be at least 1, got {max_slices}")
    if options.combine not in ("rss", "sense"):
        raise ParameterError(f"--combine {options.combine!r}: use rss or sense")
    if "cfid" in options.metrics and not options.cfid_sets:
        options.cfid_sets = {"test": CFID_P[task]["test"]}
    items = _items(task, Path(folder), "--data", max_slices)
    settings = [f"{R:g}" for R in accelerations] if task == "mri" else ["center"]
    results: dict = {}
    for label in settings:
        R = float(label) if task == "mri" else math.nan
        values = _setting(sampler, task, items, R, counts, mask_kind, seed, options)
        if "cfid" in options.metrics:
            for name, P in options.cfid_sets.items():
                if name != "test":
                    values["cfid"][name] = _set_cfid(sampler, task, name, P, R, mask_kind, seed,
                                                     options, max_slices)
        results[label] = values
    summary = {"R" if task == "mri" else "hole": results, "slices" if task == "mri" else "images":
               len(items), "weights": sampler.name, "seed": seed, "task": task,
               "metrics": list(dict.fromkeys([*DEFAULT_METRICS, *options.metrics])),
               "device": str(sampler.device), "backend": sampler.backend.name,
               "precision": sampler.precision}
    if task == "mri":
        summary.update(mask=mask_kind, combine=options.combine)
    if "cfid" in options.metrics:
        summary["cfid_P"] = dict(options.cfid_sets)
    if "fid" in options.metrics:
        summary["fid_P"] = options.fid_P
    return summary


def _print_table(metrics: dict) -> None:
    key = "R" if "R" in metrics else "hole"
    for label, values in metrics[key].items():
        extra = "".join(f", {name.upper()}[{P}] {value:.3f}" for name in ("cfid",)
                        for P, value in values.get(name, {}).items())
        if "fid" in values:
            extra += f", FID {values['fid']:.3f}"
        if "time_ms" in values:
            (P, ms), = values["time_ms"].items()
            extra += f", time(P={P}) {ms:.1f} ms"
        print(f"{key}={label}: zero-filled PSNR {values['zero_filled_psnr']:.2f} dB, "
              f"APSD {values['apsd']:.4g}, SD-error Spearman {values['sd_error_spearman']:.3f} "
              f"(ceiling {values['sd_error_spearman_ceiling']:.3f}), "
              f"worst slice gain {values['psnr_gain_min_db']:+.2f} dB "
              f"({values['slices_below_zero_filled']} below zero filling){extra}")
        for P in values["psnr"]:
            perceptual = "".join(f"  {name.upper()} {values[name][P]:.4f}" for name in ("lpips", "dists")
                                 if name in values)
            print(f"  P={P:>3}: PSNR {values['psnr'][P]:.2f} dB  SSIM {values['ssim'][P]:.4f}  "
                  f"[E1/EP]dB {values['e1_over_ep_db'][P]:.2f} "
                  f"(ideal {stats.ideal_e1_over_ep_db(int(P)):.2f}){perceptual}")


def options_from_args(args: argparse.Namespace, task: str) -> EvaluationOptions:
    """The CLI flags as :class:`EvaluationOptions` (validated before any work)."""
    names = parse_metrics(args.metrics)
    folders = {"test": Path(args.data)}
    for part in ("val", "train"):
        if getattr(args, f"{part}_data", None):
            folders[part] = Path(getattr(args, f"{part}_data"))
    cfid_sets = parse_cfid_sets(args.cfid_sets, task) if "cfid" in names else {}
    for name in cfid_sets:
        for part in SET_FOLDERS[name]:
            if part not in folders:
                raise ParameterError(f"--cfid-sets {name} needs {SET_OPTIONS[part]} FOLDER")
    if args.fid_P < 2:
        raise ParameterError(f"--fid-P must be at least 2, got {args.fid_P}")
    return EvaluationOptions(names, args.combine, cfid_sets, folders, args.features_dir, args.fid_P)


def run_evaluate_command(args: argparse.Namespace) -> dict:
    """``napari-rcgan evaluate``: write the metrics JSON atomically and print a table."""
    out = check_output_path(args.out)
    parse_metrics(args.metrics)
    sampler = PosteriorSampler(
        args.weights, device=args.device, backend=args.backend, precision=args.precision
    )
    if args.task and sampler.metadata.task != args.task:
        raise WeightsError(f"{sampler.name}: --task {args.task} but these weights are for "
                           f"{sampler.metadata.task}")
    options = options_from_args(args, sampler.metadata.task)
    metrics = evaluate(sampler, args.data, args.R, args.P, args.mask, args.seed, args.max_slices,
                       options)
    with atomic_output(out) as temporary:
        temporary.write_text(json.dumps(metrics, indent=2))
    _print_table(metrics)
    print(f"generator ran on {metrics['backend']} {metrics['precision']}; wrote {out}")
    if args.store_in_weights:
        from napari_rcgan.weights import portable_name, update_metrics

        stored = dict(metrics, weights=portable_name(metrics["weights"]),
                      data=args.data_label or portable_name(args.data),
                      evaluated=time.strftime("%Y-%m-%d"))
        path = update_metrics(args.weights, {args.store_as: stored})
        print(f"stored the metrics in {path} as {args.store_as!r}")
    return metrics
