"""Training data: fastMRI multicoil brain volumes and face-image folders.

MRI (:class:`FastMRIDataset`): a folder of fastMRI multicoil ``.h5`` files (raw 768×396 files or
compact ones, e.g. from ``python -m training.simulate``). Volumes are selected as in the paper
(Section 4.2; every criterion configurable): ``acquisition`` attribute ``AXT2``, at least 8 coils,
k-space width at least 384, the first 8 slices of each volume. Each slice is preprocessed exactly
as :meth:`napari_rcgan.sampler.PosteriorSampler.measure_mri` does at inference (see
:func:`preprocess_mri`): image-domain crop, SVD compression to 8 virtual coils, undersampling with
a column mask (fixed GRO at one R, or kind and R drawn per example), normalisation by the mean/std
of the zero-filled channels (applied to the target too).

Inpainting (:class:`FaceFolderDataset`): every image in a folder (CelebA-HQ / FFHQ style, nested
folders allowed), centre-cropped to a square and resized to the configured resolution, with the
centred square hole or random rectangular holes; the network input is built by
:class:`napari_rcgan.sampler.InpaintingMeasurement`, as in the plugin.

Every problem with the data (missing or empty folder, unreadable file, file without ``kspace``,
no volume passing the selection) raises :class:`DatasetError` (an
:class:`napari_rcgan.errors.InputFileError`) naming the folder or file.

``python -m training.datasets faces-demo --out DIR`` writes a tiny face folder (the 100 real
25×25 LFW faces bundled with scikit-image) for the smoke configuration.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from napari_rcgan.errors import InputFileError, MaskError, ParameterError, RcganError
from napari_rcgan.io import HDF5_SUFFIXES, IMAGE_SUFFIXES, FastMRIFile
from napari_rcgan.physics import transforms
from napari_rcgan.physics.inpainting import center_square_hole
from napari_rcgan.physics.masks import SamplingMask, column_mask
from napari_rcgan.sampler import InpaintingMeasurement, MRIMeasurement
from napari_rcgan.sampler import preprocess_mri as sampler_preprocess_mri
from napari_rcgan.weights import portable_name


class DatasetError(InputFileError):
    """A data folder or file cannot be used for training; the message names it."""


# ------------------------------------------------------------------------------------------
# MRI


def example_rng(train: bool, seed: int, index: int) -> np.random.Generator:
    """Randomness of one example: fresh each time in training (seeded through torch, so
    Lightning's worker seeding applies), fixed by ``(seed, index)`` for validation."""
    if train:
        return np.random.default_rng(int(torch.randint(0, 2**62, ())))
    return np.random.default_rng([seed, index])


def preprocess_mri(
    kspace: torch.Tensor | np.ndarray,
    image_size: tuple[int, int],
    coils: int,
    mask: SamplingMask,
    source: str = "k-space",
    fov: str = "crop",
    coil_compression: str = "reference",
) -> MRIMeasurement:
    """:func:`napari_rcgan.sampler.preprocess_mri`, its errors raised as :class:`DatasetError`."""
    try:
        return sampler_preprocess_mri(kspace, image_size, coils, mask, source, fov, coil_compression)
    except (ParameterError, MaskError) as error:
        raise DatasetError(str(error)) from error


def mri_example(measurement: MRIMeasurement) -> dict[str, torch.Tensor]:
    """The tensors the training module needs from one measurement.

    Returns:
        ``input`` ``(2K, S, S)`` normalised zero-filled channels (generator input without noise,
        critic condition); ``target`` ``(2K, S, S)`` normalised fully sampled channels;
        ``kspace`` ``(K, S, S)`` complex64 measured k-space ``M ⊙ FFT(x)``; ``mask`` bool
        ``(S, S)``; ``mean``/``std`` the normalisation (float32 scalars); ``R`` achieved R.
    """
    normalization = measurement.normalization
    target = normalization.apply(transforms.complex_to_channels(measurement.target))
    return {
        "input": measurement.network_input().float().contiguous(),
        "target": target.float().contiguous(),
        "kspace": measurement.measured_kspace.to(torch.complex64).contiguous(),
        "mask": measurement.mask_tensor.clone(),
        "mean": torch.tensor(normalization.mean, dtype=torch.float32),
        "std": torch.tensor(normalization.std, dtype=torch.float32),
        "R": torch.tensor(measurement.mask.achieved_R, dtype=torch.float32),
    }


@functools.lru_cache(maxsize=64)
def _deterministic_mask(shape: tuple[int, int], kind: str, R: float) -> SamplingMask:
    return column_mask(shape, kind, R)


def draw_mask(
    rng: np.random.Generator, shape: tuple[int, int], kinds: Sequence[str], R: float, fixed: bool
) -> SamplingMask:
    """A mask of a kind drawn from ``kinds`` at ``R`` (cached when ``fixed`` and not random)."""
    kind = kinds[int(rng.integers(len(kinds)))]
    if kind == "random":
        return column_mask(shape, kind, R, seed=int(rng.integers(2**31)))
    if fixed:
        return _deterministic_mask(shape, kind, R)
    return column_mask(shape, kind, R)


def _require_folder(folder: str | os.PathLike, what: str) -> Path:
    folder = Path(folder)
    if not folder.exists():
        raise DatasetError(f"{folder}: {what} folder does not exist")
    if not folder.is_dir():
        raise DatasetError(f"{folder}: {what} path is not a folder")
    return folder


def select_volumes(
    folder: str | os.PathLike,
    image_size: int = 384,
    coils: int = 8,
    acquisitions: Sequence[str] = ("AXT2",),
    min_coils: int = 8,
    min_width: int = 384,
) -> tuple[list[FastMRIFile], list[tuple[Path, str]]]:
    """The fastMRI volumes of ``folder`` that pass the selection, and why the others do not.

    Returns:
        ``(selected, skipped)``: opened files sorted by name; ``(path, reason)`` pairs.

    Raises:
        DatasetError: missing or empty folder, or no volume passing the selection (the message
            lists why files were skipped).
        InputFileError: a file is not HDF5, has no ``kspace`` or a malformed one (named).
    """
    folder = _require_folder(folder, "fastMRI data")
    paths = sorted(
        p for p in folder.iterdir()
        if p.suffix.lower() in HDF5_SUFFIXES and p.is_file() and not p.name.startswith(".")
    )
    if not paths:
        raise DatasetError(f"{folder}: no .h5 files (expected fastMRI multicoil volumes)")
    wanted = {a.upper() for a in acquisitions}
    need_coils = max(min_coils, coils)
    selected: list[FastMRIFile] = []
    skipped: list[tuple[Path, str]] = []
    for path in paths:
        volume = FastMRIFile.open(path)
        height, width = volume.kspace_shape
        acquisition = str(volume.attrs.get("acquisition", ""))
        if wanted and acquisition.upper() not in wanted:
            found = acquisition or "no 'acquisition' attribute"
            skipped.append((path, f"acquisition {found}, not {'/'.join(sorted(wanted))}"))
        elif volume.num_coils < need_coils:
            skipped.append((path, f"{volume.num_coils} coils, fewer than {need_coils}"))
        elif width < min_width:
            skipped.append((path, f"k-space width {width} < {min_width}"))
        elif height < image_size or width < image_size:
            skipped.append(
                (path, f"k-space {height}x{width} smaller than the {image_size}² crop")
            )
        elif volume.num_slices < 1:
            skipped.append((path, "no slices"))
        else:
            selected.append(volume)
    if not selected:
        reasons = "; ".join(f"{p.name}: {r}" for p, r in skipped[:5])
        more = f" (and {len(skipped) - 5} more)" if len(skipped) > 5 else ""
        raise DatasetError(
            f"{folder}: none of the {len(paths)} .h5 files passes the selection "
            f"({reasons}{more})"
        )
    return selected, skipped


class FastMRIDataset(Dataset):
    """Slices of fastMRI multicoil volumes, preprocessed like the plugin's sampler.

    Args:
        folder: folder of ``.h5`` files.
        image_size: side of the square crop.
        coils: virtual coils.
        mask_kinds: mask kinds; one is drawn per example.
        r_range: ``(R_min, R_max)``; R is drawn uniformly per example (fixed when equal).
        acquisitions, min_coils, min_width: the volume selection (:func:`select_volumes`).
        slices_per_volume: the first N slices of each volume (None: all).
        train: draw masks at random (torch's RNG, seeded per worker by Lightning); otherwise
            every example ``i`` always gets the same mask (from ``seed`` and ``i``).
        seed: seed of the fixed per-example masks.
        fov, coil_compression: as :func:`napari_rcgan.sampler.preprocess_mri`.
    """

    def __init__(
        self,
        folder: str | os.PathLike,
        image_size: int = 384,
        coils: int = 8,
        mask_kinds: Sequence[str] = ("gro",),
        r_range: tuple[float, float] = (4.0, 4.0),
        acquisitions: Sequence[str] = ("AXT2",),
        min_coils: int = 8,
        min_width: int = 384,
        slices_per_volume: int | None = 8,
        train: bool = True,
        seed: int = 0,
        fov: str = "crop",
        coil_compression: str = "reference",
    ) -> None:
        self.folder = Path(folder)
        self.fov = fov
        self.coil_compression = coil_compression
        self.image_size = (int(image_size), int(image_size))
        self.coils = int(coils)
        self.mask_kinds = tuple(mask_kinds)
        self.r_range = (float(r_range[0]), float(r_range[1]))
        self.train = train
        self.seed = int(seed)
        self.volumes, self.skipped = select_volumes(
            folder, image_size, coils, acquisitions, min_coils, min_width
        )
        self.entries: list[tuple[int, int]] = []
        for number, volume in enumerate(self.volumes):
            count = volume.num_slices
            if slices_per_volume is not None:
                count = min(count, slices_per_volume)
            self.entries += [(number, index) for index in range(count)]
        # Fail now, not in a worker, if the masks cannot be built at this size.
        for kind in self.mask_kinds:
            for R in self.r_range:
                try:
                    column_mask(self.image_size, kind, R)
                except RcganError as error:
                    raise DatasetError(f"{self.folder}: mask {kind} at R={R}: {error}") from error

    @classmethod
    def from_config(cls, config, split: str) -> FastMRIDataset:
        data = config.data
        return cls(
            data.folder(split),
            image_size=data.image_size,
            coils=data.coils,
            mask_kinds=data.mask.kinds,
            r_range=data.mask.r_range,
            acquisitions=data.acquisitions,
            min_coils=data.min_coils,
            min_width=data.min_width,
            slices_per_volume=data.slices_per_volume,
            train=split == "train",
            seed=config.seed,
            fov=data.fov,
            coil_compression=data.coil_compression,
        )

    def __len__(self) -> int:
        return len(self.entries)

    def mask_for(self, index: int) -> SamplingMask:
        """The mask of example ``index`` (random when training, fixed otherwise)."""
        rng = example_rng(self.train, self.seed, index)
        low, high = self.r_range
        R = low if low == high else float(rng.uniform(low, high))
        return draw_mask(rng, self.image_size, self.mask_kinds, R, fixed=low == high)

    def source(self, index: int) -> str:
        number, slice_index = self.entries[index]
        return f"{self.volumes[number].path} slice {slice_index}"

    def measurement(self, index: int) -> MRIMeasurement:
        number, slice_index = self.entries[index]
        kspace = self.volumes[number].read_kspace(slice_index)
        return preprocess_mri(
            kspace, self.image_size, self.coils, self.mask_for(index), self.source(index), self.fov,
            self.coil_compression,
        )

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return mri_example(self.measurement(index))

    def describe(self) -> dict[str, Any]:
        """Plain-value summary (stored in checkpoints and exported weights; no local paths)."""
        provenance = sorted({str(v.attrs["provenance"]) for v in self.volumes if "provenance" in v.attrs})
        description: dict[str, Any] = {
            "kind": "fastmri-multicoil",
            "folder": portable_name(self.folder),
            "volumes": len(self.volumes),
            "slices": len(self.entries),
            "skipped_volumes": len(self.skipped),
            "acquisitions": dict(Counter(str(v.attrs.get("acquisition", "?")) for v in self.volumes)),
            "coils": sorted({v.num_coils for v in self.volumes}),
            "kspace_shapes": sorted({"x".join(map(str, v.kspace_shape)) for v in self.volumes}),
            "image_size": list(self.image_size),
            "virtual_coils": self.coils,
            "masks": list(self.mask_kinds),
            "R": list(self.r_range),
            "fov": self.fov,
            "coil_compression": self.coil_compression,
            "provenance": provenance or ["fastMRI (or other) multicoil k-space"],
        }
        manifest = self.folder.parent / "dataset.json"
        if manifest.is_file():
            try:
                info = json.loads(manifest.read_text())
                description["dataset_json"] = {
                    key: info[key] for key in ("provenance", "sources", "contrast", "layout", "seed")
                    if key in info
                }
            except (OSError, ValueError):
                pass
        return description


class RandomizedBrainDataset(Dataset):
    """Domain-randomised multicoil examples simulated on the fly from real anatomy.

    Example ``i``: an anatomy source from ``anatomy`` (uniformly, or by ``anatomy_weights``), an
    orientation and a slice position of ``split`` (:func:`training.simulate.split_positions`) or,
    for a source of single slices (:data:`training.simulate.SLICE_SOURCES`, training only), one
    of its slices; then a random contrast, pose, warp, bias
    field, phase, coil array (8–20 coils) and noise (:func:`training.simulate.randomized_kspace`)
    on an ``acquisition_size²`` field of view, mapped to ``image_size`` by ``fov`` and
    preprocessed exactly like the plugin's input (:func:`preprocess_mri`). Training examples
    draw R uniformly from ``r_range``; validation examples are stratified over ``r_bins``
    (example ``i`` in bin ``i mod len(r_bins)``) so that every bin of a per-R β_SD table gets
    its share.

    Validation examples are simulated once and kept in memory (about 3 MB each at 128×128 with
    8 coils): they are fixed, and simulating them again every epoch cost as much as a quarter of
    the demo run's wall time on a CPU.

    Args:
        anatomy: sources among :data:`training.simulate.SOURCES` (volumes, split into train /
            val / test positions) and :data:`training.simulate.SLICE_SOURCES` (slices, used
            for training only); at least one volume.
        anatomy_weights: the probability of each source (normalised); None: uniform over the
            sources used by ``split``.
        length: examples per epoch (training) or in the set (validation).
        train: fresh randomness every time; otherwise example ``i`` is fixed by ``(seed, i)``
            (and cached).
        fov, coil_compression: as :func:`napari_rcgan.sampler.preprocess_mri`.
        contrasts: ``randomised`` or ``realistic`` (:func:`training.simulate.random_contrast`).
        blur_probability: fraction of examples with blurred anatomy
            (:func:`training.simulate.randomized_kspace`).
        simulation: validation examples only: ``randomised`` (like training) or ``evaluation``
            (like the evaluation and sample files, :func:`training.simulate.evaluation_like_kspace`;
            ``contrasts`` and ``blur_probability`` do not apply).
        evaluation_like_fraction: training examples only: the fraction simulated like the
            evaluation files instead of randomised.
        tissue_contrast_fraction: the fraction of randomised examples of a source with tissue
            fractions (:data:`training.simulate.TISSUE_SOURCES`) whose contrast is built from
            them (:func:`training.simulate.tissue_contrast`).
    """

    def __init__(
        self,
        anatomy: Sequence[str] = ("colin27",),
        split: str = "train",
        image_size: int = 128,
        acquisition_size: int = 256,
        coils: int = 8,
        mask_kinds: Sequence[str] = ("gro",),
        r_range: tuple[float, float] = (2.0, 8.0),
        length: int = 1000,
        fov: str = "full",
        coil_compression: str = "reference",
        train: bool = True,
        seed: int = 0,
        r_bins: Sequence[tuple[float, float]] | None = None,
        contrasts: str = "randomised",
        blur_probability: float = 0.0,
        simulation: str = "randomised",
        evaluation_like_fraction: float = 0.0,
        anatomy_weights: Sequence[float] | None = None,
        tissue_contrast_fraction: float = 0.0,
    ) -> None:
        from training import simulate

        if simulation not in simulate.VALIDATION_SIMULATIONS:
            raise DatasetError(
                f"unknown validation simulation {simulation!r}: expected one of "
                f"{', '.join(simulate.VALIDATION_SIMULATIONS)}"
            )

        self.anatomy = tuple(anatomy)
        self.split = split
        self.image_size = (int(image_size), int(image_size))
        self.acquisition_size = int(acquisition_size)
        self.coils = int(coils)
        self.mask_kinds = tuple(mask_kinds)
        self.r_range = (float(r_range[0]), float(r_range[1]))
        self.r_bins = list(r_bins) if r_bins else [self.r_range]
        self.length = int(length)
        self.fov = fov
        self.coil_compression = coil_compression
        self.contrasts = contrasts
        self.blur_probability = float(blur_probability)
        if not 0.0 <= evaluation_like_fraction <= 1.0:
            raise DatasetError(
                f"evaluation_like_fraction must be between 0 and 1, got {evaluation_like_fraction}"
            )
        if not 0.0 <= tissue_contrast_fraction <= 1.0:
            raise DatasetError(
                f"tissue_contrast_fraction must be between 0 and 1, got {tissue_contrast_fraction}"
            )
        if tissue_contrast_fraction > 0 and not set(self.anatomy) & set(simulate.TISSUE_SOURCES):
            raise DatasetError(
                f"tissue contrasts need a source with tissue fractions "
                f"({', '.join(simulate.TISSUE_SOURCES)}) among {list(self.anatomy)}"
            )
        self.tissue_contrast_fraction = float(tissue_contrast_fraction)
        self.simulation = "randomised" if train else simulation
        self.evaluation_like_fraction = float(evaluation_like_fraction) if train else 0.0
        self.train = train
        self.seed = int(seed)
        self._fixed_examples: dict[int, dict[str, torch.Tensor]] = {}
        unknown = [s for s in self.anatomy if s not in simulate.SOURCES + simulate.SLICE_SOURCES]
        if unknown or not set(self.anatomy) & set(simulate.SOURCES):
            raise DatasetError(
                f"simulated anatomy {list(self.anatomy)}: expected at least one volume among "
                f"{simulate.SOURCES}, and slice sources among {simulate.SLICE_SOURCES}"
            )
        if anatomy_weights is not None and (
            len(anatomy_weights) != len(self.anatomy) or min(anatomy_weights) <= 0
        ):
            raise DatasetError(
                f"anatomy_weights {list(anatomy_weights)} must give a positive weight to each "
                f"of the {len(self.anatomy)} sources {list(self.anatomy)}"
            )
        try:
            self.positions = {
                (source, orientation): simulate.split_positions(source, orientation, split)
                for source in self.anatomy
                if source in simulate.SOURCES
                for orientation in simulate.ORIENTATIONS
            }
            self.slices = {
                source: simulate.slice_anatomy(source)
                for source in self.anatomy
                if source in simulate.SLICE_SOURCES and split == "train"
            }
        except (FileNotFoundError, ParameterError) as error:
            raise DatasetError(f"simulated anatomy {', '.join(self.anatomy)}: {error}") from error
        # Slice sources have no validation or test positions.
        used = [i for i, s in enumerate(self.anatomy) if s in simulate.SOURCES or s in self.slices]
        self.sources = tuple(self.anatomy[i] for i in used)
        weights = None if anatomy_weights is None else np.array([anatomy_weights[i] for i in used])
        # Uniform weights draw like no weights, so that the random stream (and the fixed
        # validation examples) do not depend on how a uniform choice was written.
        self.source_probabilities = (
            None if weights is None or np.all(weights == weights[0]) else weights / weights.sum()
        )

    @classmethod
    def from_config(cls, config, split: str) -> RandomizedBrainDataset:
        from training.losses import r_bins

        data = config.data
        train = split == "train"
        return cls(
            anatomy=data.anatomy,
            split=split,
            image_size=data.image_size,
            acquisition_size=data.acquisition_size,
            coils=data.coils,
            mask_kinds=data.mask.kinds,
            r_range=data.mask.r_range,
            length=data.examples_per_epoch if train else (data.val_examples or 32),
            fov=data.fov,
            coil_compression=data.coil_compression,
            train=train,
            seed=config.seed,
            r_bins=r_bins(*data.mask.r_range, config.train.beta_sd_bins),
            contrasts="randomised" if train else data.val_contrasts,
            blur_probability=data.blur_probability,
            simulation=data.val_simulation,
            evaluation_like_fraction=data.evaluation_like_fraction,
            anatomy_weights=data.anatomy_weights,
            tissue_contrast_fraction=data.tissue_contrast_fraction,
        )

    def __len__(self) -> int:
        return self.length

    def measurement(self, index: int) -> MRIMeasurement:
        from training import simulate

        rng = example_rng(self.train, self.seed, index)
        if self.train:
            R = float(rng.uniform(*self.r_range))
        else:
            low, high = self.r_bins[index % len(self.r_bins)]
            R = float(rng.uniform(low, high))
        mask = draw_mask(rng, self.image_size, self.mask_kinds, R, fixed=not self.train)
        if self.source_probabilities is None:
            source = self.sources[int(rng.integers(len(self.sources)))]
        else:
            source = self.sources[int(rng.choice(len(self.sources), p=self.source_probabilities))]
        tissues = None
        if source in self.slices:
            position = int(rng.integers(len(self.slices[source])))
            orientation, simulation = "as acquired", "randomised"
            plane = self.slices[source][position]
        else:
            orientation = simulate.ORIENTATIONS[int(rng.integers(len(simulate.ORIENTATIONS)))]
            positions = self.positions[(source, orientation)]
            position = positions[int(rng.integers(len(positions)))]
            simulation = self.simulation
            # Drawn only when mixing, so that purely randomised runs keep their random stream.
            if self.evaluation_like_fraction > 0 and rng.random() < self.evaluation_like_fraction:
                simulation = "evaluation"
            if simulation != "evaluation":
                volume = simulate.cached_anatomy(source, "t1")  # read-only, shared: no copy
                plane = simulate.anatomy_slice(volume, orientation, position)
                # Drawn only when asked for, like the mixing above.
                if (
                    self.tissue_contrast_fraction > 0
                    and source in simulate.TISSUE_SOURCES
                    and rng.random() < self.tissue_contrast_fraction
                ):
                    tissues = np.stack([
                        simulate.anatomy_slice(fraction, orientation, position)
                        for fraction in simulate.tissue_fractions(source)
                    ])
        if simulation == "evaluation":
            kspace = simulate.evaluation_like_kspace(source, orientation, position, self.image_size[0], rng)
        else:
            kspace = simulate.randomized_kspace(
                plane, self.acquisition_size, rng,
                contrasts=self.contrasts, blur_probability=self.blur_probability, tissues=tissues,
            )
        name = f"simulated {source} {orientation} slice {position} ({self.split} example {index})"
        return preprocess_mri(
            kspace, self.image_size, self.coils, mask, name, self.fov, self.coil_compression
        )

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if self.train:
            return mri_example(self.measurement(index))
        if index not in self._fixed_examples:
            self._fixed_examples[index] = mri_example(self.measurement(index))
        return self._fixed_examples[index]

    def describe(self) -> dict[str, Any]:
        from training import simulate

        return {
            "kind": "simulated-on-the-fly",
            "provenance": [f"{simulate.PROVENANCE} ({source}, domain-randomised)" for source in self.anatomy],
            "anatomy": list(self.anatomy),
            "anatomy_weights": (
                None if self.source_probabilities is None else self.source_probabilities.tolist()
            ),
            "held_out_anatomy": [s for s in simulate.SOURCES if s not in self.anatomy],
            "split": self.split,
            "orientations": list(simulate.ORIENTATIONS),
            "slice_positions": sum(len(p) for p in self.positions.values())
            + sum(len(planes) for planes in self.slices.values()),
            "examples": self.length,
            "acquisition_size": [self.acquisition_size] * 2,
            "image_size": list(self.image_size),
            "virtual_coils": self.coils,
            "simulated_coils": list(simulate.SIMULATED_COILS),
            "masks": list(self.mask_kinds),
            "R": list(self.r_range),
            "fov": self.fov,
            "coil_compression": self.coil_compression,
            "simulation": self.simulation,
            "evaluation_like_fraction": self.evaluation_like_fraction,
            "tissue_contrast_fraction": self.tissue_contrast_fraction,
            "randomisation": (
                "random piecewise-linear contrasts ("
                + ("T1/T2/PD-like" if self.contrasts == "realistic" else "T1/T2/PD-like and arbitrary")
                + ") with gamma, "
                "pose (rotation ±20°, 90° turns, flips, shifts), smooth warps, bias fields, "
                "smooth phase, 8-20 coils of random position and size, correlated noise "
                "0.1-2 % of the peak"
                + (f", {self.blur_probability:.0%} of the slices blurred" if self.blur_probability else "")
                + (
                    f", {self.tissue_contrast_fraction:.0%} of the "
                    f"{'/'.join(s for s in self.anatomy if s in simulate.TISSUE_SOURCES)} contrasts "
                    "built from CSF/grey/white-matter fractions (T1/T2/PD/FLAIR-like"
                    + ("" if self.contrasts == "realistic" else " and arbitrary")
                    + ") with the rest of the head T1-like"
                    if self.tissue_contrast_fraction else ""
                )
            ),
        }


# ------------------------------------------------------------------------------------------
# Faces


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files under ``folder`` (recursively), sorted; raises when there are none."""
    folder = _require_folder(folder, "image")
    files = sorted(
        p for p in folder.rglob("*")
        if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )
    if not files:
        raise DatasetError(
            f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)}) found, recursively"
        )
    return files


def load_face(path: Path, image_size: int, channels: int = 3) -> np.ndarray:
    """An image as float32 ``(H, W, C)`` in [0, 1]: centre-cropped to a square, resized."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image = image.convert("RGB" if channels == 3 else "L")
            width, height = image.size
            side = min(width, height)
            left, top = (width - side) // 2, (height - side) // 2
            image = image.crop((left, top, left + side, top + side))
            if side != image_size:
                image = image.resize((image_size, image_size), Image.Resampling.BICUBIC)
            array = np.asarray(image, dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise DatasetError(f"{path}: not a readable image ({error})") from error
    return array[..., None] if array.ndim == 2 else array


def random_holes(
    shape: tuple[int, int], max_size: int, rng: np.random.Generator, count: int | None = None
) -> np.ndarray:
    """1–3 random rectangles with sides in ``[max_size // 4, max_size]`` (bool ``(H, W)``)."""
    height, width = shape
    hole = np.zeros(shape, dtype=bool)
    count = int(rng.integers(1, 4)) if count is None else count
    low = max(1, max_size // 4)
    for _ in range(count):
        h = int(rng.integers(low, max_size + 1))
        w = int(rng.integers(low, max_size + 1))
        top = int(rng.integers(0, height - h + 1))
        left = int(rng.integers(0, width - w + 1))
        hole[top : top + h, left : left + w] = True
    return hole


class FaceFolderDataset(Dataset):
    """Face images with a hole, for the inpainting generator.

    Args:
        files: image paths (see :func:`list_images`).
        image_size: side of the square the images are resized to.
        channels: 3 (colour) or 1 (grey).
        hole: ``"center"`` (centred square of side ``hole_size``) or ``"random"`` rectangles.
        flip: random horizontal flips (training only).
        train: random holes/flips from torch's RNG; otherwise fixed per example.
        seed: seed of the fixed per-example holes.
    """

    def __init__(
        self,
        files: Sequence[Path],
        image_size: int = 256,
        channels: int = 3,
        hole: str = "center",
        hole_size: int = 128,
        flip: bool = False,
        train: bool = True,
        seed: int = 0,
        folder: str | os.PathLike | None = None,
    ) -> None:
        if not files:
            raise DatasetError(f"{folder or 'face dataset'}: no images")
        if hole not in ("center", "random"):
            raise ParameterError(f"hole must be 'center' or 'random', got {hole!r}")
        self.files = list(files)
        self.image_size = int(image_size)
        self.channels = int(channels)
        self.hole = hole
        self.hole_size = int(hole_size)
        self.flip = flip
        self.train = train
        self.seed = int(seed)
        self.folder = Path(folder) if folder is not None else Path(os.path.commonpath(self.files))
        self._center = center_square_hole((self.image_size,) * 2, self.hole_size)

    def __len__(self) -> int:
        return len(self.files)

    def hole_for(self, index: int) -> np.ndarray:
        if self.hole == "center":
            return self._center
        return random_holes((self.image_size,) * 2, self.hole_size, example_rng(self.train, self.seed, index))

    def measurement(self, index: int) -> InpaintingMeasurement:
        image = load_face(self.files[index], self.image_size, self.channels)
        if self.train and self.flip and bool(torch.rand(()) < 0.5):
            image = image[:, ::-1]
        tensor = torch.from_numpy(np.ascontiguousarray(np.moveaxis(image, -1, 0)))
        return InpaintingMeasurement(tensor, self.hole_for(index))

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        measurement = self.measurement(index)
        return {
            "input": measurement.network_input().float(),
            "target": (2 * measurement.image - 1).float(),
            "hole": torch.from_numpy(np.array(measurement.hole, dtype=bool)),
            "image": measurement.image.float(),
        }

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "image-folder",
            "folder": portable_name(self.folder),
            "images": len(self.files),
            "image_size": [self.image_size, self.image_size],
            "channels": self.channels,
            "hole": self.hole,
            "hole_size": self.hole_size,
        }


def face_datasets(config) -> tuple[FaceFolderDataset, FaceFolderDataset]:
    """Training and validation face datasets of a config (``data.val`` or a held-out part)."""
    data = config.data
    train_folder = data.folder("train")
    files = list_images(train_folder)
    if data.val is not None:
        val_files = list_images(data.folder("val"))
        val_folder = data.folder("val")
    else:
        if len(files) < 2:
            raise DatasetError(f"{train_folder}: need at least 2 images to hold out a validation set")
        order = np.random.default_rng(config.seed).permutation(len(files))
        count = min(len(files) - 1, max(1, round(data.val_fraction * len(files))))
        held = set(order[:count].tolist())
        val_files = [f for i, f in enumerate(files) if i in held]
        files = [f for i, f in enumerate(files) if i not in held]
        val_folder = train_folder
    common = dict(
        image_size=data.image_size, channels=data.channels, hole=data.hole,
        hole_size=data.hole_size, seed=config.seed,
    )
    train = FaceFolderDataset(files, flip=data.flip, train=True, folder=train_folder, **common)
    val = FaceFolderDataset(val_files, flip=False, train=False, folder=val_folder, **common)
    return train, val


# ------------------------------------------------------------------------------------------
# Both


def build_datasets(config) -> tuple[Dataset, Dataset]:
    """``(train, val)`` datasets of a config; validation limited to ``data.val_examples``."""
    if config.task == "mri" and config.data.kind == "simulated":
        return (
            RandomizedBrainDataset.from_config(config, "train"),
            RandomizedBrainDataset.from_config(config, "val"),
        )
    if config.task == "mri":
        if config.data.val is None:
            raise DatasetError(f"{config.source}: data.val must name a validation folder for MRI")
        train = FastMRIDataset.from_config(config, "train")
        val = FastMRIDataset.from_config(config, "val")
    else:
        train, val = face_datasets(config)
    return train, val


def _limit(dataset: Dataset, count: int | None) -> Dataset:
    if count is None or count >= len(dataset):
        return dataset
    return Subset(dataset, range(count))


try:  # Lightning is a training dependency; keep the datasets importable without it.
    import lightning as L

    _DataModuleBase = L.LightningDataModule
except ImportError:  # pragma: no cover
    _DataModuleBase = object


class RcGANDataModule(_DataModuleBase):
    """Lightning data module of a config: scans the folders once (:meth:`setup`)."""

    def __init__(self, config) -> None:
        super().__init__()
        self.config = config
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is None:
            self.train_set, self.val_set = build_datasets(self.config)

    def _loader(self, dataset: Dataset, shuffle: bool) -> DataLoader:
        data = self.config.data
        batch = self.config.train.batch_size
        return DataLoader(
            dataset,
            batch_size=batch,
            shuffle=shuffle,
            drop_last=shuffle and len(dataset) >= batch,
            num_workers=data.num_workers,
            persistent_workers=data.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
        )

    def train_dataloader(self) -> DataLoader:
        self.setup()
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        self.setup()
        return self._loader(_limit(self.val_set, self.config.data.val_examples), shuffle=False)

    def describe(self) -> dict[str, Any]:
        self.setup()
        val = self.val_set.describe()
        if self.config.data.val_examples is not None:
            val["used_examples"] = min(len(self.val_set), self.config.data.val_examples)
        return {"train": self.train_set.describe(), "val": val}


# ------------------------------------------------------------------------------------------
# Command line


def write_demo_faces(out: str | os.PathLike, val_count: int = 10) -> Path:
    """Write the 100 real LFW faces of ``skimage.data.lfw_subset()`` as PNGs.

    ``OUT/train`` gets the first ``100 - val_count``, ``OUT/val`` the rest. 25×25 grey faces:
    enough to exercise the pipeline, not to train a useful model.
    """
    from PIL import Image
    from skimage.data import lfw_subset

    out = Path(out)
    faces = lfw_subset()[:100]  # the first 100 images of the subset are faces
    for number, face in enumerate(faces):
        split = "train" if number < len(faces) - val_count else "val"
        folder = out / split
        folder.mkdir(parents=True, exist_ok=True)
        pixels = np.clip(np.round(face * 255), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"lfw_{number:03d}.png")
    (out / "README.txt").write_text(
        "100 real 25x25 grey faces from skimage.data.lfw_subset() (Labeled Faces in the Wild); "
        "demo/smoke data only.\n"
    )
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.datasets")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("faces-demo", help="write a tiny face folder (LFW subset)")
    demo.add_argument("--out", required=True, type=Path)
    demo.add_argument("--val", type=int, default=10, help="validation images (default 10)")
    args = parser.parse_args(argv)
    if args.command == "faces-demo":
        path = write_demo_faces(args.out, args.val)
        print(f"wrote {path}/train and {path}/val")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
