"""Simulated k-space from real anatomy, written in the fastMRI multicoil brain layout.

Real brain anatomy (Colin27 from the Debian package ``mricron-data``, or the ICBM152 2009a
template bundled with nilearn) is sliced axially, resampled to fill most of the field of view,
multiplied by a smooth background phase and by birdcage coil sensitivities
(:func:`sigpy.mri.birdcage_maps`), Fourier transformed with 2× readout oversampling, and
corrupted by coil-correlated complex Gaussian noise. The result is stored like a raw fastMRI brain
file (``kspace`` ``(slices, coils, 768, 396)`` complex64, ``reconstruction_rss``
``(slices, 384, 384)`` float32, ``ismrmrd_header``, attributes) or, with ``compact``, like the
preprocessed data of the paper (Section 4.2: 384×384, 8 SVD virtual coils). Every file is labelled
"simulated k-space from real anatomy".

Domain-randomised training examples (:func:`randomized_kspace`) take a random contrast either
from the T1 intensity (:func:`random_contrast`) or from Colin27's CSF / grey / white-matter
fractions (:func:`tissue_fractions`, :func:`tissue_contrast`).

Both anatomies are put on one 1-mm MNI-space grid (the Colin27 grid, 181×217×181, RAS), so an
axial index means the same height in the brain whatever the source; the train/val/test split of
:func:`main` is made by slabs of such indices, with gaps between splits.

Command line::

    python -m training.simulate --out DIR [--source colin27|mni152|both] [--contrast t1|t2]
        [--coils 16] [--slices-per-volume 8] [--volumes-per-split train=6,val=1,test=1]
        [--augment-copies 2] [--seed 0] [--compact] [--image-size 384]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import h5py
import nibabel as nib
import numpy as np
import sigpy.mri
import torch
from scipy import ndimage

from napari_rcgan.errors import ParameterError
from napari_rcgan.io import atomic_output
from napari_rcgan.physics.fft import fft2c
from napari_rcgan.physics.transforms import coil_compress, kspace_to_cropped_image, rss

COLIN27_PATH = Path("/usr/share/mricron/templates/ch2.nii.gz")
"""Colin27 T1 (181×217×181, 1 mm) as installed by the Debian package ``mricron-data``."""
COLIN27_BRAIN_PATH = Path("/usr/share/mricron/templates/ch2bet.nii.gz")
"""Colin27's brain extraction (same grid and package as :data:`COLIN27_PATH`)."""

PROVENANCE = "simulated k-space from real anatomy"
ISMRMRD_NAMESPACE = "http://www.ismrm.org/ISMRMRD"
SOURCES = ("colin27", "mni152")
CONTRASTS = ("t1", "t2")
MIN_COILS = 8
SIMULATED_COILS = (MIN_COILS, 20)
"""Inclusive range of the receive-array sizes drawn by the randomised and evaluation-like
simulations (:func:`random_coil_maps`, :func:`evaluation_like_kspace`)."""
COMPACT_COILS = 8
DEFAULT_NOISE_LEVEL = 0.005
"""Per-coil noise standard deviation, as a fraction of the largest image magnitude."""

GRID_SHAPE = (181, 217, 181)
"""Common 1-mm RAS grid of every anatomy (the Colin27 grid in MNI space), (X, Y, Z) voxels."""
GRID_AFFINE = np.array(
    [[1.0, 0.0, 0.0, -90.0], [0.0, 1.0, 0.0, -125.0], [0.0, 0.0, 1.0, -71.0], [0.0, 0.0, 0.0, 1.0]]
)
BRAIN_SLICES = (38, 129)
"""Inclusive axial index range on :data:`GRID_SHAPE` (z = −33 … +58 mm) where the MNI152 brain
mask covers at least half of its largest axial cross-section: the "central part of the brain"."""

_FOV_FILL = 0.85  # fraction of the reconstructed field of view spanned by the anatomy's extent
_CROP_MARGIN = 4  # voxels kept around the in-plane bounding box of the anatomy
_COIL_GRID = 160  # points per side of the grid on which birdcage maps are evaluated
_COIL_GRID_EXTENT = 1.5  # half-width of that grid, in units of half the reconstructed FOV


# --------------------------------------------------------------------------------------------
# Anatomy


def load_anatomy(source: str = "colin27", contrast: str = "t1") -> np.ndarray:
    """Load a real brain volume on the common 1-mm grid.

    Args:
        source: ``"colin27"`` (Debian ``mricron-data``, whole head with skull and scalp) or
            ``"mni152"`` (ICBM152 2009a bundled with nilearn, skull-stripped brain).
        contrast: ``"t1"`` (the template as is) or ``"t2"`` (T2-like, CSF > GM > WM: for
            mni152 built from its grey/white-matter maps plus CSF = brain mask − GM − WM; for
            colin27 the T1 intensities inverted inside the head).

    Returns:
        float32 ``(X, Y, Z) = (181, 217, 181)`` volume in RAS orientation, 1-mm voxels (see
        :data:`GRID_AFFINE`), scaled to ``[0, 1]``, exactly 0 outside the head/brain.

    Raises:
        FileNotFoundError: the Colin27 file is not installed.
        ParameterError: unknown source or contrast.
    """
    if source not in SOURCES:
        raise ParameterError(f"unknown anatomy source {source!r}: expected one of {SOURCES}")
    if contrast not in CONTRASTS:
        raise ParameterError(f"unknown contrast {contrast!r}: expected one of {CONTRASTS}")
    return cached_anatomy(source, contrast).copy()


@functools.lru_cache(maxsize=4)
def cached_anatomy(source: str, contrast: str) -> np.ndarray:
    """:func:`load_anatomy`'s volume, loaded once and shared read-only (no copy)."""
    volume = _load_colin27(contrast) if source == "colin27" else _load_mni152(contrast)
    volume.setflags(write=False)
    return volume


def _load_colin27(contrast: str) -> np.ndarray:
    if not COLIN27_PATH.is_file():
        raise FileNotFoundError(
            f"Colin27 template not found at {COLIN27_PATH}: install it with "
            "`apt-get install mricron-data`, or use source='mni152'"
        )
    t1 = _normalise(_on_common_grid(nib.load(COLIN27_PATH)))
    head = _soft_edge(_head_mask(t1))
    return _normalise(head * (t1 if contrast == "t1" else 1.0 - t1))


def _load_mni152(contrast: str) -> np.ndarray:
    from nilearn import datasets  # optional dependency (train extra); bundled files only

    template = datasets.load_mni152_template(resolution=1)
    if contrast == "t1":
        return _normalise(_on_common_grid(template))
    grey = np.asarray(datasets.load_mni152_gm_template(resolution=1).dataobj, dtype=np.float32)
    white = np.asarray(datasets.load_mni152_wm_template(resolution=1).dataobj, dtype=np.float32)
    brain = np.asarray(datasets.load_mni152_brain_mask(resolution=1).dataobj) > 0
    grey, white = np.clip(grey, 0.0, 1.0), np.clip(white, 0.0, 1.0)
    csf = np.where(brain, np.clip(1.0 - grey - white, 0.0, 1.0), 0.0)
    t2 = 1.0 * csf + 0.6 * grey + 0.35 * white
    return _normalise(_on_common_grid(nib.Nifti1Image(t2.astype(np.float32), template.affine)))


def _on_common_grid(image: nib.Nifti1Image) -> np.ndarray:
    """Resample a NIfTI image to :data:`GRID_SHAPE` / :data:`GRID_AFFINE` (zero outside).

    Same-orientation 1-mm grids that differ by whole voxels (the bundled templates) are cut out
    exactly; anything else is interpolated linearly.
    """
    data = np.asarray(image.dataobj, dtype=np.float32)
    voxel_map = np.linalg.inv(image.affine) @ GRID_AFFINE  # common-grid voxel → source voxel
    offsets = np.round(voxel_map[:3, 3]).astype(int)
    if np.allclose(voxel_map[:3, :3], np.eye(3)) and np.allclose(voxel_map[:3, 3], offsets):
        out = np.zeros(GRID_SHAPE, dtype=np.float32)
        src = tuple(
            slice(max(o, 0), min(o + n, s))
            for o, n, s in zip(offsets, GRID_SHAPE, data.shape, strict=True)
        )
        dst = tuple(slice(s.start - o, s.stop - o) for s, o in zip(src, offsets, strict=True))
        out[dst] = data[src]
        return out
    return ndimage.affine_transform(
        data, voxel_map[:3, :3], offset=voxel_map[:3, 3], output_shape=GRID_SHAPE, order=1
    ).astype(np.float32)


def _normalise(volume: np.ndarray) -> np.ndarray:
    """Scale to ``[0, 1]`` by the 99.9th percentile of the non-zero voxels (clipped above)."""
    top = float(np.percentile(volume[volume > 0], 99.9))
    return np.clip(volume / top, 0.0, 1.0).astype(np.float32)


def _head_mask(t1: np.ndarray, threshold: float = 0.1) -> np.ndarray:
    """Boolean head mask of a ``[0, 1]`` T1 volume: largest component, holes filled per slice."""
    mask = _largest_component(t1 > threshold)
    for z in range(mask.shape[2]):
        mask[:, :, z] = ndimage.binary_fill_holes(mask[:, :, z])
    return mask


def _soft_edge(mask: np.ndarray) -> np.ndarray:
    """A boolean mask as float32 with its edge softened by a Gaussian of 1 voxel (or pixel)."""
    return ndimage.gaussian_filter(mask.astype(np.float32), 1.0)


def _largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest connected component of a boolean map (any dimension)."""
    labels, _ = ndimage.label(mask)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0  # background
    return labels == int(np.argmax(sizes))


SLICE_SOURCES = ("dipy",)
"""Training-only real anatomy that ships as single 2-D slices, not volumes (so it has no
validation or test positions): ``dipy``, the T1 coronal slice and the ten axial b0
(T2-weighted EPI) slices in the wheel of the BSD-licensed package ``dipy`` (two subjects)."""

_SLICE_MARGIN = 0.08  # fraction of the anatomy's extent kept around it when a slice is cut out


@functools.lru_cache(maxsize=2)
def slice_anatomy(source: str) -> tuple[np.ndarray, ...]:
    """The 2-D slices of a :data:`SLICE_SOURCES` source, like :func:`anatomy_slice` output.

    Each slice is cut to its anatomy plus a margin, scaled to ``[0, 1]`` (99.9th percentile)
    and given a T1-like contrast (a T2-weighted slice is inverted inside its object), so that
    :func:`random_contrast` makes T1-, T2- and PD-like images of it as of a Colin27 slice.

    Returns:
        read-only float32 ``(rows, cols)`` slices, 0 beyond the anatomy's soft edge (a
        Gaussian of 1 pixel, like Colin27's head).

    Raises:
        ParameterError: unknown source.
        FileNotFoundError: the package holding the slices is not installed.
    """
    if source not in SLICE_SOURCES:
        raise ParameterError(f"unknown slice anatomy {source!r}: expected one of {SLICE_SOURCES}")
    try:
        from dipy.data import get_fnames  # train extra; the files ship in the wheel
    except ImportError as error:
        raise FileNotFoundError(
            "the dipy slices ship in the package dipy, which is not installed: "
            "pip install 'napari-rcgan[train]'"
        ) from error
    t1 = np.load(get_fnames(name="t1_coronal_slice"))
    b0 = np.asarray(nib.load(get_fnames(name="S0_10")).dataobj, dtype=np.float32)[..., 0]
    planes = [_t1_like(t1, inverted=False)]
    planes += [_t1_like(np.rot90(b0[:, :, z]), inverted=True) for z in range(b0.shape[2])]
    for plane in planes:
        plane.setflags(write=False)
    return tuple(planes)


def _t1_like(plane: np.ndarray, inverted: bool) -> np.ndarray:
    """A 2-D slice cut to its object (Li threshold, largest component, holes filled) plus a
    margin, in ``[0, 1]``; ``inverted`` turns a T2-like object (CSF bright) T1-like (CSF dark,
    not 0)."""
    from skimage.filters import threshold_li  # train extra

    plane = _normalise(np.asarray(plane, dtype=np.float32))
    mask = ndimage.binary_fill_holes(_largest_component(plane > threshold_li(plane)))
    soft = _soft_edge(mask)
    values = 1.0 - 0.9 * plane if inverted else plane
    rows, cols = np.nonzero(mask)
    margin = int(round(_SLICE_MARGIN * max(np.ptp(rows), np.ptp(cols))))
    box = (
        slice(max(rows.min() - margin, 0), rows.max() + margin + 1),
        slice(max(cols.min() - margin, 0), cols.max() + margin + 1),
    )
    return np.ascontiguousarray(soft[box] * values[box], dtype=np.float32)


def axial_slices(volume: np.ndarray, indices: Sequence[int]) -> np.ndarray:
    """Axial slices of a RAS ``(X, Y, Z)`` volume, displayed radiologically with the nose up.

    Row 0 is the most anterior row and column 0 the patient's right. All slices are cropped to
    the same in-plane bounding box (plus a small margin) of the non-zero voxels of the whole
    volume, so the pixel size and position stay consistent along the volume.

    Args:
        volume: ``(X, Y, Z)`` array, RAS orientation (as returned by :func:`load_anatomy`).
        indices: axial indices ``k`` into the last axis.

    Returns:
        float32 ``(S, H, W)`` with ``H`` along anterior→posterior and ``W`` right→left.

    Raises:
        ParameterError: not a 3-D volume, empty volume, or an index out of range.
    """
    if volume.ndim != 3:
        raise ParameterError(f"expected a 3-D (X, Y, Z) volume, got shape {volume.shape}")
    bad = [k for k in indices if not 0 <= k < volume.shape[2]]
    if bad or len(indices) == 0:
        raise ParameterError(
            f"axial slice indices must be a non-empty list in [0, {volume.shape[2]}), got {bad}"
        )
    footprint = np.abs(volume).max(axis=2) > 0
    if not footprint.any():
        raise ParameterError("the volume is empty (all zeros): no anatomy to slice")
    xs, ys = np.nonzero(footprint)
    x0, x1 = max(xs.min() - _CROP_MARGIN, 0), min(xs.max() + 1 + _CROP_MARGIN, volume.shape[0])
    y0, y1 = max(ys.min() - _CROP_MARGIN, 0), min(ys.max() + 1 + _CROP_MARGIN, volume.shape[1])
    crop = volume[x0:x1, y0:y1, :]
    slices = [crop[:, :, k].T[::-1, ::-1] for k in indices]
    return np.ascontiguousarray(np.stack(slices), dtype=np.float32)


def augment(
    image: np.ndarray,
    rng: np.random.Generator,
    *,
    max_rotation_deg: float = 10.0,
    elastic_amplitude: float = 3.0,
    elastic_smoothness: float = 12.0,
    gamma_range: tuple[float, float] = (0.7, 1.4),
) -> np.ndarray:
    """Random anatomy augmentation of one slice: rotation, elastic warp, intensity gamma.

    Args:
        image: ``(H, W)`` slice with values in ``[0, 1]``.
        rng: source of randomness (the result is a function of its state).
        max_rotation_deg: rotation angle drawn uniformly in ``±max_rotation_deg`` degrees.
        elastic_amplitude: largest displacement of the elastic warp, pixels.
        elastic_smoothness: Gaussian smoothing (σ, pixels) of the random displacement field.
        gamma_range: the intensity remap is ``image ** γ`` with ``log γ`` uniform in this range.

    Returns:
        float32 ``(H, W)`` in ``[0, 1]``, zero where the warp samples outside the input.
    """
    if image.ndim != 2:
        raise ParameterError(f"augment expects one (H, W) slice, got shape {image.shape}")
    height, width = image.shape
    angle = np.deg2rad(rng.uniform(-max_rotation_deg, max_rotation_deg))
    displacement = []
    for _ in range(2):
        field = ndimage.gaussian_filter(rng.standard_normal((height, width)), elastic_smoothness)
        displacement.append(field * (elastic_amplitude / max(np.abs(field).max(), 1e-12)))
    rows, cols = np.meshgrid(
        np.arange(height) - (height - 1) / 2, np.arange(width) - (width - 1) / 2, indexing="ij"
    )
    cos, sin = np.cos(angle), np.sin(angle)
    coords = np.stack(
        [
            cos * rows - sin * cols + (height - 1) / 2 + displacement[0],
            sin * rows + cos * cols + (width - 1) / 2 + displacement[1],
        ]
    )
    warped = ndimage.map_coordinates(image.astype(np.float64), coords, order=3, cval=0.0)
    gamma = np.exp(rng.uniform(np.log(gamma_range[0]), np.log(gamma_range[1])))
    return (np.clip(warped, 0.0, 1.0) ** gamma).astype(np.float32)


_augment_slice = augment  # alias for simulate_volume_file, whose `augment` flag shadows the name


# --------------------------------------------------------------------------------------------
# Acquisition physics


def simulate_kspace(
    image: np.ndarray,
    coils: int = 16,
    kspace_shape: tuple[int, int] = (768, 396),
    image_size: int = 384,
    noise_level: float = DEFAULT_NOISE_LEVEL,
    *,
    rng: np.random.Generator,
    coil_maps: np.ndarray | None = None,
    noise_mixing: np.ndarray | None = None,
) -> np.ndarray:
    """Fully sampled multicoil k-space of one real-valued slice.

    The slice is resampled (isotropically) so that its larger side spans 85 % of an
    ``image_size × image_size`` field of view and embedded in the centre of a ``kspace_shape``
    image grid: rows are the readout (2× oversampled for 768 rows and ``image_size`` 384, so the
    object lies in the central ``image_size`` rows), columns the phase encodes (≥ ``image_size``).
    It is multiplied by a smooth random background phase and by birdcage coil maps, transformed
    with :func:`napari_rcgan.physics.fft.fft2c`, and complex Gaussian noise with covariance
    ``σ² A Aᴴ`` across coils is added (``σ = noise_level · max|image|``, ``A`` a random mixing
    matrix close to the identity with ``trace(A Aᴴ) = coils``).

    Args:
        image: real ``(h, w)`` slice, e.g. from :func:`axial_slices`.
        coils: number of receive coils, at least :data:`MIN_COILS`.
        kspace_shape: ``(H, W)`` k-space matrix (readout, phase encode), both ≥ ``image_size``.
        image_size: side of the reconstructed (cropped) field of view, pixels.
        noise_level: per-coil noise standard deviation relative to the peak image magnitude.
        rng: source of randomness; the same state gives the same k-space.
        coil_maps: complex ``(coils, H, W)`` sensitivities to use instead of drawing new ones
            (e.g. shared by the slices of one volume); see :func:`birdcage_coil_maps`.
        noise_mixing: complex ``(coils, coils)`` noise mixing matrix ``A`` to use instead of a
            new one; see :func:`noise_mixing_matrix`.

    Returns:
        complex64 ``(coils, H, W)`` k-space, DC at ``(H // 2, W // 2)``.

    Raises:
        ParameterError: fewer than :data:`MIN_COILS` coils, a grid smaller than the field of
            view, a non-2-D or non-finite image, or maps/mixing of the wrong shape.
    """
    height, width = _check_geometry(coils, kspace_shape, image_size)
    if image.ndim != 2 or not np.all(np.isfinite(image)):
        raise ParameterError(f"expected a finite 2-D (h, w) slice, got shape {image.shape}")
    if coil_maps is None:
        coil_maps = birdcage_coil_maps(coils, kspace_shape, image_size, rng)
    if noise_mixing is None:
        noise_mixing = noise_mixing_matrix(coils, rng)
    if coil_maps.shape != (coils, height, width) or noise_mixing.shape != (coils, coils):
        raise ParameterError(
            f"coil maps {coil_maps.shape} / noise mixing {noise_mixing.shape} do not match "
            f"{coils} coils on a {height}x{width} grid"
        )

    scale = _fov_scale(image.shape, image_size)
    resized = np.clip(ndimage.zoom(image.astype(np.float64), scale, order=3), 0.0, None)
    obj = np.zeros((height, width), dtype=np.complex64)
    top, left = (height - resized.shape[0]) // 2, (width - resized.shape[1]) // 2
    obj[top : top + resized.shape[0], left : left + resized.shape[1]] = resized
    obj *= np.exp(1j * _smooth_phase((height, width), image_size, rng)).astype(np.complex64)

    kspace = fft2c(torch.from_numpy(coil_maps.astype(np.complex64, copy=False) * obj)).numpy()
    white = np.empty((coils, height * width), dtype=np.complex64)
    rng.standard_normal(out=white.view(np.float32), dtype=np.float32)  # re, im ~ N(0, 1)
    sigma = noise_level * float(np.abs(obj).max())
    white *= np.float32(sigma / np.sqrt(2))
    kspace += (noise_mixing.astype(np.complex64, copy=False) @ white).reshape(coils, height, width)
    return kspace


def _check_geometry(coils: int, kspace_shape: tuple[int, int], image_size: int) -> tuple[int, int]:
    """Validate the acquisition geometry; return ``kspace_shape`` as ints."""
    if coils < MIN_COILS:
        raise ParameterError(
            f"coils must be at least {MIN_COILS} (the compact layout keeps {COMPACT_COILS} "
            f"virtual coils), got {coils}"
        )
    height, width = (int(n) for n in kspace_shape)
    if image_size < 16 or height < image_size or width < image_size:
        raise ParameterError(
            f"k-space shape {height}x{width} must be at least image_size x image_size "
            f"({image_size}x{image_size}, image_size >= 16)"
        )
    return height, width


def _fov_scale(shape: tuple[int, ...], image_size: int) -> float:
    """Zoom factor that makes the larger side of an ``(h, w)`` slice span 85 % of the FOV."""
    return round(_FOV_FILL * image_size) / max(shape)


def _smooth_phase(shape: tuple[int, int], image_size: int, rng: np.random.Generator) -> np.ndarray:
    """Random quadratic background phase (radians) on an ``(H, W)`` grid.

    Coordinates are in units of half the reconstructed FOV; the constant term is uniform in
    ``[−π, π)``, the linear and quadratic coefficients are N(0, 0.5²) radians.
    """
    rows, cols = _grid_coordinates(shape, image_size)
    constant = rng.uniform(-np.pi, np.pi)
    c = rng.normal(0.0, 0.5, size=5)
    return (
        constant + c[0] * rows + c[1] * cols + c[2] * rows**2 + c[3] * rows * cols + c[4] * cols**2
    )


def _grid_coordinates(shape: tuple[int, int], image_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel centres of an ``(H, W)`` grid in units of half the FOV, 0 at ``(H // 2, W // 2)``."""
    half = image_size / 2
    rows = (np.arange(shape[0]) - shape[0] // 2) / half
    cols = (np.arange(shape[1]) - shape[1] // 2) / half
    return rows[:, None], cols[None, :]


def birdcage_coil_maps(
    coils: int, kspace_shape: tuple[int, int], image_size: int, rng: np.random.Generator
) -> np.ndarray:
    """Birdcage coil sensitivities with a random radius, rotation and placement.

    :func:`sigpy.mri.birdcage_maps` is evaluated on a square grid covering ±1.5 half-FOVs, with
    the coil ring radius drawn uniformly in 1.15–1.45 half-FOVs (just outside the anatomy, which
    spans at most 0.85), then rotated by a uniform random angle, shifted by N(0, 0.05²)
    half-FOVs and interpolated onto the image grid (nearest edge value beyond the grid, where the
    object is zero). The maps are normalised to unit root-sum-of-squares.

    Returns:
        complex64 ``(coils, H, W)`` for ``(H, W) = kspace_shape``.
    """
    height, width = _check_geometry(coils, kspace_shape, image_size)
    radius = rng.uniform(1.15, 1.45)
    angle = rng.uniform(0.0, 2.0 * np.pi)
    shift = rng.normal(0.0, 0.05, size=2)
    base = sigpy.mri.birdcage_maps(
        (coils, _COIL_GRID, _COIL_GRID), r=radius / _COIL_GRID_EXTENT, dtype=np.complex64
    )
    rows, cols = _grid_coordinates((height, width), image_size)
    rows, cols = np.broadcast_arrays(rows - shift[0], cols - shift[1])
    cos, sin = np.cos(angle), np.sin(angle)
    # Position of every image pixel in the rotated coil frame, as grid_sample's (x, y) ∈ [-1, 1]
    # (x indexes the birdcage grid's columns, y its rows; sigpy's grid spans [-1, 1) · extent).
    index_per_unit = (_COIL_GRID / 2) / _COIL_GRID_EXTENT
    row_index = (cos * rows + sin * cols) * index_per_unit + _COIL_GRID / 2
    col_index = (-sin * rows + cos * cols) * index_per_unit + _COIL_GRID / 2
    grid = np.stack([col_index, row_index], axis=-1) * (2 / (_COIL_GRID - 1)) - 1
    planes = torch.from_numpy(np.concatenate([base.real, base.imag]))[None]
    sampled = torch.nn.functional.grid_sample(
        planes,
        torch.from_numpy(grid.astype(np.float32))[None],
        mode="bilinear",
        padding_mode="border",
        align_corners=True,
    )[0].numpy()
    maps = (sampled[:coils] + 1j * sampled[coils:]).astype(np.complex64)
    return maps / np.sqrt((np.abs(maps) ** 2).sum(axis=0, keepdims=True))


def noise_mixing_matrix(coils: int, rng: np.random.Generator, spread: float = 0.15) -> np.ndarray:
    """Random complex noise mixing matrix ``A = I + spread·G/√coils`` (``G`` standard complex
    normal), scaled so that ``trace(A Aᴴ) = coils``; the noise covariance is ``σ² A Aᴴ``.

    Returns:
        complex64 ``(coils, coils)``.
    """
    mix = rng.standard_normal((2, coils, coils))
    matrix = np.eye(coils) + spread * (mix[0] + 1j * mix[1]) / np.sqrt(2 * coils)
    matrix *= np.sqrt(coils / np.real(np.trace(matrix @ matrix.conj().T)))
    return matrix.astype(np.complex64)


def rss_reconstruction(kspace: np.ndarray, image_size: int = 384) -> np.ndarray:
    """fastMRI ``reconstruction_rss``: RSS of the centre ``image_size²`` crop of ``ifft2c(kspace)``.

    Args:
        kspace: complex ``(S, C, H, W)``.

    Returns:
        float32 ``(S, image_size, image_size)``.
    """
    images = kspace_to_cropped_image(torch.from_numpy(kspace), (image_size, image_size))
    return rss(images).numpy().astype(np.float32)


def _compact(kspace: np.ndarray, image_size: int) -> np.ndarray:
    """Raw ``(C, H, W)`` k-space → compact ``(8, image_size, image_size)``: image-domain crop,
    SVD coil compression to :data:`COMPACT_COILS` virtual coils, back to k-space (complex64)."""
    images = kspace_to_cropped_image(torch.from_numpy(kspace), (image_size, image_size))
    return fft2c(coil_compress(images, COMPACT_COILS)).numpy().astype(np.complex64)


# --------------------------------------------------------------------------------------------
# Domain-randomised examples (generated on the fly)

ORIENTATIONS = ("axial", "coronal", "sagittal")
SPLIT_SEGMENTS = 10
"""Each orientation's usable slice range is cut into this many equal segments; see
:func:`split_positions`."""
_SPLIT_OF_SEGMENT = {3: "test", 5: "val", 7: "test"}  # the others train
_SPLIT_GAP = 3  # slices dropped at the edges of non-training segments
_COIL_MAP_GRID = 48  # coil maps are computed on this grid and interpolated (they are smooth)
_MIN_AREA = 0.3  # a usable slice has at least this fraction of the largest cross-section


def anatomy_slice(volume: np.ndarray, orientation: str, index: int) -> np.ndarray:
    """One 2-D slice of a RAS ``(X, Y, Z)`` volume, superior / anterior at the top.

    Returns:
        float32 ``(rows, cols)``: axial ``(Y, X)``, coronal ``(Z, X)``, sagittal ``(Z, Y)``.
    """
    if orientation == "axial":
        plane = volume[:, :, index].T[::-1, ::-1]
    elif orientation == "coronal":
        plane = volume[:, index, :].T[::-1, ::-1]
    elif orientation == "sagittal":
        plane = volume[index, :, :].T[::-1, :]
    else:
        raise ParameterError(f"unknown orientation {orientation!r}: expected one of {ORIENTATIONS}")
    return np.ascontiguousarray(plane, dtype=np.float32)


@functools.lru_cache(maxsize=8)
def split_positions(source: str, orientation: str, split: str) -> tuple[int, ...]:
    """Slice indices of ``orientation`` that belong to ``split`` (``train``, ``val``, ``test``).

    The usable range (slices whose anatomy covers at least 30 % of the largest cross-section)
    is cut into :data:`SPLIT_SEGMENTS` equal segments; segments 3 and 7 are ``test``, 5 is
    ``val``, the others ``train``, and 3 slices at each edge of a ``val``/``test`` segment are
    dropped, so no held-out slice is adjacent to a training slice of the same orientation.
    """
    volume = cached_anatomy(source, "t1")
    axis = {"axial": 2, "coronal": 1, "sagittal": 0}[orientation]
    area = (volume > 0.05).sum(axis=tuple(a for a in range(3) if a != axis))
    usable = np.nonzero(area >= _MIN_AREA * area.max())[0]
    low, high = int(usable.min()), int(usable.max()) + 1
    edges = np.linspace(low, high, SPLIT_SEGMENTS + 1).round().astype(int)
    positions: list[int] = []
    for segment in range(SPLIT_SEGMENTS):
        label = _SPLIT_OF_SEGMENT.get(segment, "train")
        if label != split:
            continue
        start, stop = int(edges[segment]), int(edges[segment + 1])
        if label != "train":
            start, stop = start + _SPLIT_GAP, stop - _SPLIT_GAP
        positions += range(start, stop)
    return tuple(positions)


CONTRAST_SETS = ("randomised", "realistic")
"""Contrasts of domain-randomised examples: ``randomised`` (T1-, T2-, PD-like and arbitrary) or
``realistic`` (T1-, T2- and PD-like only)."""


def random_contrast(t1: np.ndarray, rng: np.random.Generator, contrasts: str = "randomised") -> np.ndarray:
    """A random tissue contrast of a ``[0, 1]`` T1 slice (0 stays 0).

    A random piecewise-linear intensity map over 6 knots: T1-like (increasing), T2-like
    (decreasing: CSF bright, white matter dark), PD-like (flat, compressed) or, unless
    ``contrasts`` is ``realistic``, arbitrary (random knot values); then a random gamma in
    ``[0.6, 1.6]``.
    """
    if contrasts not in CONTRAST_SETS:
        raise ParameterError(f"unknown contrast set {contrasts!r}: expected one of {CONTRAST_SETS}")
    knots = np.linspace(0.0, 1.0, 6)
    kind = rng.integers(3 if contrasts == "realistic" else 4)
    if kind == 0:
        values = knots + rng.normal(0.0, 0.05, 6)
    elif kind == 1:
        values = 1.0 - knots + rng.normal(0.0, 0.08, 6)
    elif kind == 2:
        values = 0.55 + 0.35 * knots + rng.normal(0.0, 0.05, 6)
    else:
        values = rng.uniform(0.05, 1.0, 6)
    values = np.clip(values, 0.05, 1.0)
    mapped = np.interp(t1, knots, values)
    gamma = np.exp(rng.uniform(np.log(0.6), np.log(1.6)))
    return (np.where(t1 > 0, mapped, 0.0) ** gamma).astype(np.float32)


TISSUES = ("csf", "grey", "white")
TISSUE_SOURCES = ("colin27",)
"""Volume sources with tissue fractions (:func:`tissue_fractions`): those with a brain extraction."""


@functools.lru_cache(maxsize=1)
def tissue_fractions(source: str) -> np.ndarray:
    """Partial-volume fractions of :data:`TISSUES` in the ``t1`` volume of :func:`load_anatomy`.

    Inside the brain (Colin27's brain extraction, its edge softened like the head's), each
    voxel's T1 intensity is split linearly between the two nearest of the three tissues' mean
    intensities (a fuzzy partial-volume model; the means are those of a three-class Otsu split
    of the brain's voxels: CSF 0.24, grey 0.39, white 0.51 of the scaled T1). Below the CSF mean
    and above the white-matter mean the split is extrapolated linearly (one fraction above 1,
    its neighbour negative), so that a contrast made from the fractions keeps the texture
    within each tissue instead of flattening it.

    Returns:
        read-only float32 ``(3, X, Y, Z)``; the fractions sum to the soft brain mask (1 inside
        the brain, 0 outside it, scalp and skull included).

    Raises:
        ParameterError: a source without a brain extraction.
        FileNotFoundError: the brain extraction is not installed.
    """
    from skimage.filters import threshold_multiotsu  # train extra

    if source not in TISSUE_SOURCES:
        raise ParameterError(
            f"no tissue fractions for anatomy {source!r}: only {', '.join(TISSUE_SOURCES)} "
            "has a brain extraction"
        )
    if not COLIN27_BRAIN_PATH.is_file():
        raise FileNotFoundError(
            f"Colin27 brain extraction not found at {COLIN27_BRAIN_PATH}: install it with "
            "`apt-get install mricron-data`"
        )
    t1 = cached_anatomy(source, "t1")
    brain = _on_common_grid(nib.load(COLIN27_BRAIN_PATH)) > 0
    values = t1[brain]
    low, high = threshold_multiotsu(values, classes=3)
    csf, grey, white = (
        float(values[values < low].mean()),
        float(values[(values >= low) & (values < high)].mean()),
        float(values[values >= high].mean()),
    )
    lower = t1 < grey
    to_grey = np.where(lower, (t1 - csf) / (grey - csf), (white - t1) / (white - grey))
    fractions = np.stack([
        np.where(lower, 1.0 - to_grey, 0.0),
        to_grey,
        np.where(lower, 0.0, 1.0 - to_grey),
    ])
    fractions = (fractions * _soft_edge(brain)).astype(np.float32, copy=False)
    fractions.setflags(write=False)
    return fractions


def tissue_contrast(
    t1: np.ndarray, fractions: np.ndarray, rng: np.random.Generator, contrasts: str = "randomised"
) -> np.ndarray:
    """A random contrast of a ``[0, 1]`` T1 slice built from its tissue fractions (0 stays 0).

    Brain: ``Σ_k fractions[k] · value[k]`` with the intensities of CSF, grey and white matter
    drawn for a T1-like (white > grey > CSF), T2-like (CSF > grey > white), PD-like (all bright,
    grey above white), FLAIR-like (CSF dark, grey > white) or, unless ``contrasts`` is
    ``realistic``, arbitrary contrast. Outside the brain (scalp, fat, bone, muscle, meninges):
    the T1 intensity times a random factor in ``[0.1, 1]``, so that fat stays bright and bone
    dark as on most sequences, and a low factor looks like fat suppression; the brain and the
    rest of the head no longer share one intensity map as in :func:`random_contrast`. Then a
    random gamma in ``[0.6, 1.6]``.

    Args:
        t1: ``(rows, cols)`` slice of the ``t1`` volume.
        fractions: ``(3, rows, cols)`` the same slice of :func:`tissue_fractions`.
    """
    if contrasts not in CONTRAST_SETS:
        raise ParameterError(f"unknown contrast set {contrasts!r}: expected one of {CONTRAST_SETS}")
    if fractions.shape != (len(TISSUES), *t1.shape):
        raise ParameterError(
            f"tissue fractions of shape {fractions.shape} do not match a slice of shape {t1.shape}"
        )
    kind = rng.integers(4 if contrasts == "realistic" else 5)
    if kind == 0:  # T1
        grey = rng.uniform(0.35, 0.6)
        values = (rng.uniform(0.05, 0.3), grey, grey + rng.uniform(0.1, 0.35))
    elif kind == 1:  # T2
        grey = rng.uniform(0.35, 0.6)
        values = (rng.uniform(0.7, 1.0), grey, grey - rng.uniform(0.05, 0.25))
    elif kind == 2:  # PD
        grey = rng.uniform(0.7, 0.95)
        values = (rng.uniform(0.55, 0.9), grey, grey - rng.uniform(0.05, 0.2))
    elif kind == 3:  # FLAIR
        grey = rng.uniform(0.5, 0.8)
        values = (rng.uniform(0.02, 0.15), grey, grey - rng.uniform(0.1, 0.3))
    else:
        values = tuple(rng.uniform(0.05, 1.0, 3))
    brain = np.tensordot(np.asarray(values, dtype=np.float32), fractions, axes=1)
    rest = t1 * (1.0 - fractions.sum(axis=0)) * rng.uniform(0.1, 1.0)
    gamma = np.exp(rng.uniform(np.log(0.6), np.log(1.6)))
    return (np.clip(brain + rest, 0.0, None) ** gamma).astype(np.float32)


def _smooth_field(shape: tuple[int, int], rng: np.random.Generator, coarse: int) -> np.ndarray:
    """Random smooth field in about ``[-1, 1]``: a ``coarse × coarse`` normal grid, upsampled
    bicubically to ``shape``."""
    grid = torch.from_numpy(rng.standard_normal((1, 1, coarse, coarse)).astype(np.float32))
    field = torch.nn.functional.interpolate(grid, size=shape, mode="bicubic", align_corners=True)
    field = field[0, 0].numpy()
    return field / max(float(np.abs(field).max()), 1e-12)


def place_randomly(
    image: np.ndarray, side: int, rng: np.random.Generator, *, fill: tuple[float, float] = (0.6, 0.92)
) -> np.ndarray:
    """Put a slice in a ``side × side`` field of view with a random pose and a small warp.

    The slice's larger side spans ``fill`` (uniform) of the field of view; it is rotated by
    ±20° (and, with probability 1/4, a further multiple of 90°), flipped with probability 1/2
    along each axis, shifted by up to 5 % of the field of view and warped by a smooth
    displacement field of up to 2 % of the field of view. Linear interpolation, 0 outside.

    Returns:
        float32 ``(side, side)``.
    """
    scale = max(image.shape) / (rng.uniform(*fill) * side)  # source pixels per output pixel
    angle = np.deg2rad(rng.uniform(-20.0, 20.0))
    if rng.random() < 0.25:
        angle += np.pi / 2 * rng.integers(1, 4)
    flips = np.where(rng.random(2) < 0.5, -1.0, 1.0)
    shift = rng.uniform(-0.05, 0.05, 2) * side
    centre = (side - 1) / 2
    rows, cols = np.meshgrid(np.arange(side) - centre, np.arange(side) - centre, indexing="ij")
    warp = 0.02 * side * rng.uniform(0.0, 1.0)
    rows = rows - shift[0] + warp * _smooth_field((side, side), rng, 5)
    cols = cols - shift[1] + warp * _smooth_field((side, side), rng, 5)
    cos, sin = np.cos(angle), np.sin(angle)
    src_rows = flips[0] * scale * (cos * rows - sin * cols) + (image.shape[0] - 1) / 2
    src_cols = flips[1] * scale * (sin * rows + cos * cols) + (image.shape[1] - 1) / 2
    placed = ndimage.map_coordinates(image, [src_rows, src_cols], order=1, cval=0.0)
    return np.clip(placed, 0.0, None).astype(np.float32)


def draw_coil_count(rng: np.random.Generator, coils: tuple[int, int] = SIMULATED_COILS) -> int:
    """A receive-array size drawn uniformly from the inclusive range ``coils``."""
    return int(rng.integers(coils[0], coils[1] + 1))


def random_coil_maps(
    side: int, rng: np.random.Generator, coils: tuple[int, int] = SIMULATED_COILS
) -> np.ndarray:
    """Sensitivities of a random receive array on a ``side × side`` field of view.

    ``N`` coils (uniform in ``coils``) sit around the centre at angles evenly spread over a
    random arc (full circle with probability 1/2, else 180–300°) with jitter, at a distance of
    0.8–1.3 half-fields of view, each with a random size ``a`` (0.25–0.7 half-FOVs): magnitude
    ``1 / (1 + d²/a²)``, phase a random constant plus a random linear ramp along the direction
    to the coil. Normalised to a root-sum-of-squares maximum of 1.

    Returns:
        complex64 ``(N, side, side)``.
    """
    count = draw_coil_count(rng, coils)
    arc = 2 * np.pi if rng.random() < 0.5 else np.deg2rad(rng.uniform(180.0, 300.0))
    start = rng.uniform(0.0, 2 * np.pi)
    angles = start + arc * (np.arange(count) + 0.5) / count + rng.normal(0.0, 0.1, count)
    radius = rng.uniform(0.8, 1.3, count)[:, None, None]
    size = rng.uniform(0.25, 0.7, count)[:, None, None]
    ramp = rng.normal(0.0, 1.0, count)[:, None, None]
    offset = rng.uniform(-np.pi, np.pi, count)[:, None, None]
    axis = (np.arange(_COIL_MAP_GRID) - _COIL_MAP_GRID // 2) / (_COIL_MAP_GRID / 2)
    rows, cols = axis[None, :, None], axis[None, None, :]
    sin, cos = np.sin(angles)[:, None, None], np.cos(angles)[:, None, None]
    d2 = (rows - radius * sin) ** 2 + (cols - radius * cos) ** 2
    coarse = np.exp(1j * (offset + ramp * (rows * sin + cols * cos))) / (1.0 + d2 / size**2)
    planes = torch.from_numpy(np.concatenate([coarse.real, coarse.imag]).astype(np.float32))
    fine = torch.nn.functional.interpolate(
        planes[None], size=(side, side), mode="bilinear", align_corners=False
    )[0].numpy()
    maps = (fine[:count] + 1j * fine[count:]).astype(np.complex64)
    return maps / np.sqrt((np.abs(maps) ** 2).sum(axis=0)).max()


BLUR_SIGMA_RANGE = (0.5, 3.0)
"""Range of the Gaussian blur of :func:`randomized_kspace`, in pixels of the acquisition grid."""


def randomized_kspace(
    t1_slice: np.ndarray,
    side: int,
    rng: np.random.Generator,
    *,
    noise_range: tuple[float, float] = (0.001, 0.02),
    contrasts: str = "randomised",
    blur_probability: float = 0.0,
    tissues: np.ndarray | None = None,
) -> np.ndarray:
    """Fully sampled multicoil k-space ``(N, side, side)`` of one domain-randomised slice.

    Random contrast (:func:`random_contrast` from ``contrasts``, or :func:`tissue_contrast` when
    the slice's ``(3, rows, cols)`` tissue fractions ``tissues`` are given), pose and warp
    (:func:`place_randomly`), bias field ``exp(b·f)`` (``b`` up to 0.4, ``f`` smooth), smooth
    background phase, a random coil array (:func:`random_coil_maps`, 8–20 coils) and
    coil-correlated complex noise of standard deviation log-uniform in ``noise_range`` times the
    largest coil-image magnitude. With probability ``blur_probability`` the placed slice is first
    blurred (Gaussian, σ log-uniform in :data:`BLUR_SIGMA_RANGE` pixels of ``side``): anatomy of
    lower native resolution, like an upsampled or thick-slice scan. With 0 no random number is
    drawn for it.
    """
    if tissues is None:
        contrasted = random_contrast(t1_slice, rng, contrasts)
    else:
        contrasted = tissue_contrast(t1_slice, tissues, rng, contrasts)
    image = place_randomly(contrasted, side, rng)
    if blur_probability > 0 and rng.random() < blur_probability:
        sigma = np.exp(rng.uniform(*np.log(BLUR_SIGMA_RANGE)))
        image = ndimage.gaussian_filter(image, sigma).astype(np.float32)
    image *= np.exp(rng.uniform(0.0, 0.4) * _smooth_field((side, side), rng, 4)).astype(np.float32)
    obj = image * np.exp(1j * _smooth_phase((side, side), side, rng)).astype(np.complex64)
    maps = random_coil_maps(side, rng)
    coil_images = maps * obj
    coils = maps.shape[0]
    kspace = fft2c(torch.from_numpy(coil_images.astype(np.complex64))).numpy()
    white = np.empty((coils, side * side), dtype=np.complex64)
    rng.standard_normal(out=white.view(np.float32), dtype=np.float32)
    level = np.exp(rng.uniform(np.log(noise_range[0]), np.log(noise_range[1])))
    white *= np.float32(level * float(np.abs(coil_images).max()) / np.sqrt(2))
    kspace += (noise_mixing_matrix(coils, rng) @ white).reshape(coils, side, side)
    return kspace


def heldout_kspace(
    source: str,
    contrast: str,
    orientation: str,
    index: int,
    rng: np.random.Generator,
    *,
    coils: int = 8,
    kspace_shape: tuple[int, int] = (256, 136),
    image_size: int = 136,
    noise_level: float = DEFAULT_NOISE_LEVEL,
) -> np.ndarray:
    """Fixed-contrast k-space ``(coils, H, W)`` of one slice, for evaluation and sample data.

    The slice of :func:`load_anatomy` (``t1`` or ``t2``) in ``orientation`` is placed upright
    with its larger side spanning 85 % of the ``image_size`` field of view, with a smooth phase,
    birdcage coils and coil-correlated noise (:func:`simulate_kspace`); ``kspace_shape`` rows
    beyond ``image_size`` are readout oversampling.
    """
    plane = anatomy_slice(cached_anatomy(source, contrast), orientation, index)
    return simulate_kspace(plane, coils, kspace_shape, image_size, noise_level, rng=rng)


VALIDATION_SIMULATIONS = ("randomised", "evaluation")
"""How the validation examples of a simulated training run are made: ``randomised`` like the
training examples (:func:`randomized_kspace`), or ``evaluation`` like the evaluation and sample
files (:func:`evaluation_like_kspace`)."""


def evaluation_like_kspace(
    source: str, orientation: str, index: int, image_size: int, rng: np.random.Generator
) -> np.ndarray:
    """Raw k-space of one slice simulated like the evaluation and sample files, for weights of
    ``image_size``.

    :func:`heldout_kspace` with a T1 or T2 template contrast (even odds), 8–20 birdcage coils
    (uniform) and, for ``F = image_size + image_size // 16``, an ``F × F`` field of view on a
    ``(2·image_size, F)`` matrix: 2× readout oversampling and a few more phase encodes than the
    weights keep, like ``training.make_sample_data``'s files (``(256, 136)`` for 128).

    Returns:
        complex64 ``(coils, 2·image_size, F)``.
    """
    contrast = CONTRASTS[int(rng.integers(len(CONTRASTS)))]
    coils = draw_coil_count(rng)
    fov = image_size + image_size // 16
    return heldout_kspace(
        source, contrast, orientation, index, rng,
        coils=coils, kspace_shape=(2 * image_size, fov), image_size=fov,
    )


def write_heldout_file(
    path: str | os.PathLike[str],
    source: str,
    slices: Sequence[tuple[str, int, str]],
    seed: int = 0,
    *,
    coils: int = 8,
    kspace_shape: tuple[int, int] = (256, 136),
    image_size: int = 136,
    **extra_attrs: Any,
) -> Path:
    """Write slices ``(orientation, index, contrast)`` of ``source`` as one fastMRI file.

    Slice ``k`` is simulated by :func:`heldout_kspace` with ``default_rng([seed, k])``; the
    ``reconstruction_rss`` is the RSS of the centred ``image_size²`` image.
    """
    kspace = np.stack([
        heldout_kspace(
            source, contrast, orientation, index, np.random.default_rng([seed, number]),
            coils=coils, kspace_shape=kspace_shape, image_size=image_size,
        )
        for number, (orientation, index, contrast) in enumerate(slices)
    ])
    contrasts = sorted({contrast for _, _, contrast in slices})
    return write_fastmri_file(
        path, kspace, rss_reconstruction(kspace, image_size),
        acquisition=_acquisition(contrasts[-1]), source=source, contrast="/".join(contrasts),
        patient_id=f"heldout-{source}-{seed}",
        orientations=",".join(o for o, _, _ in slices),
        slice_indices=np.asarray([i for _, i, _ in slices], dtype=np.int64),
        contrasts=",".join(c for _, _, c in slices),
        seed=int(seed), layout="raw", **extra_attrs,
    )


# --------------------------------------------------------------------------------------------
# Files


def _ismrmrd_header(
    encoded_shape: tuple[int, int],
    recon_shape: tuple[int, int],
    coils: int,
    fov_mm: float,
    slice_thickness_mm: float,
    protocol: str,
) -> str:
    """Small ISMRMRD XML header (readout = x = rows, phase encode = y = columns)."""
    ET.register_namespace("", ISMRMRD_NAMESPACE)

    def sub(parent: ET.Element, tag: str, text: object | None = None) -> ET.Element:
        element = ET.SubElement(parent, f"{{{ISMRMRD_NAMESPACE}}}{tag}")
        if text is not None:
            element.text = str(text)
        return element

    def space(parent: ET.Element, tag: str, shape: tuple[int, int]) -> None:
        node = sub(parent, tag)
        matrix = sub(node, "matrixSize")
        for axis, size in zip("xyz", (*shape, 1), strict=True):
            sub(matrix, axis, size)
        fov = sub(node, "fieldOfView_mm")
        pixel_mm = fov_mm / recon_shape[0]
        for axis, size in zip(
            "xyz", (shape[0] * pixel_mm, shape[1] * pixel_mm, slice_thickness_mm), strict=True
        ):
            sub(fov, axis, f"{size:.4f}")

    root = ET.Element(f"{{{ISMRMRD_NAMESPACE}}}ismrmrdHeader")
    measurement = sub(root, "measurementInformation")
    sub(measurement, "patientPosition", "HFS")
    sub(measurement, "protocolName", f"{protocol} ({PROVENANCE})")
    sub(sub(root, "acquisitionSystemInformation"), "receiverChannels", coils)
    sub(sub(root, "experimentalConditions"), "H1resonanceFrequency_Hz", 127_740_000)
    encoding = sub(root, "encoding")
    space(encoding, "encodedSpace", encoded_shape)
    space(encoding, "reconSpace", recon_shape)
    limits = sub(encoding, "encodingLimits")
    for tag, size in (("kspace_encoding_step_1", encoded_shape[1]), ("kspace_encoding_step_2", 1)):
        node = sub(limits, tag)
        sub(node, "minimum", 0)
        sub(node, "maximum", size - 1)
        sub(node, "center", size // 2)
    sub(encoding, "trajectory", "cartesian")
    return ET.tostring(root, encoding="unicode", xml_declaration=True)


def write_fastmri_file(
    path: str | os.PathLike[str],
    kspace: np.ndarray,
    reconstruction_rss: np.ndarray,
    acquisition: str = "AXT2",
    *,
    source: str,
    contrast: str,
    patient_id: str,
    fov_mm: float = 220.0,
    slice_thickness_mm: float = 1.0,
    **extra_attrs: Any,
) -> Path:
    """Write one volume in the fastMRI multicoil layout, atomically.

    Datasets: ``kspace`` complex64 ``(S, C, H, W)``; ``reconstruction_rss`` float32
    ``(S, h, w)``; ``ismrmrd_header`` (ISMRMRD XML string; encodedSpace ``H × W``, reconSpace
    ``h × w``, cartesian). Attributes: ``acquisition``, ``max`` and ``norm`` (max and L2 norm of
    ``reconstruction_rss``), ``patient_id``, ``provenance`` = "simulated k-space from real anatomy
    (<source>, <contrast>)", plus ``extra_attrs`` (str, numbers, bools or lists of numbers).

    Args:
        path: destination ``.h5``; written to a temporary file in the same folder, then renamed.
        kspace: complex ``(S, C, H, W)`` fully sampled k-space.
        reconstruction_rss: ``(S, h, w)`` RSS reference, ``h ≤ H``, ``w ≤ W``.
        acquisition: fastMRI acquisition label (``AXT2``, ``AXT1``, ...).
        source, contrast: where the anatomy came from, for the provenance label.
        patient_id: identifier stored in the ``patient_id`` attribute.
        fov_mm: side of the reconstructed field of view ``h``, millimetres.
        slice_thickness_mm: slice thickness, millimetres.

    Returns:
        the written path.

    Raises:
        ParameterError: shapes or dtypes that do not form a fastMRI volume.
    """
    if kspace.ndim != 4 or not np.iscomplexobj(kspace):
        raise ParameterError(
            f"kspace must be complex (slices, coils, H, W), got {kspace.dtype} {kspace.shape}"
        )
    slices, coils, height, width = kspace.shape
    if (
        reconstruction_rss.ndim != 3
        or reconstruction_rss.shape[0] != slices
        or reconstruction_rss.shape[1] > height
        or reconstruction_rss.shape[2] > width
    ):
        raise ParameterError(
            f"reconstruction_rss must be ({slices}, h<={height}, w<={width}) to match kspace "
            f"{kspace.shape}, got {reconstruction_rss.shape}"
        )
    recon_shape = (int(reconstruction_rss.shape[1]), int(reconstruction_rss.shape[2]))
    header = _ismrmrd_header(
        (height, width), recon_shape, coils, fov_mm, slice_thickness_mm, acquisition
    )
    target = Path(path)
    with atomic_output(target) as tmp, h5py.File(tmp, "w") as handle:
        handle.create_dataset("kspace", data=kspace.astype(np.complex64, copy=False))
        handle.create_dataset(
            "reconstruction_rss", data=reconstruction_rss.astype(np.float32, copy=False)
        )
        handle.create_dataset("ismrmrd_header", data=header, dtype=h5py.string_dtype())
        handle.attrs["acquisition"] = acquisition
        handle.attrs["max"] = float(reconstruction_rss.max())
        handle.attrs["norm"] = float(np.linalg.norm(reconstruction_rss.astype(np.float64)))
        handle.attrs["patient_id"] = patient_id
        handle.attrs["provenance"] = f"{PROVENANCE} ({source}, {contrast})"
        for key, value in extra_attrs.items():
            handle.attrs[key] = value
    return target


def simulate_volume_file(
    path: str | os.PathLike[str],
    source: str = "colin27",
    contrast: str = "t2",
    slice_indices: Sequence[int] | None = None,
    coils: int = 16,
    kspace_shape: tuple[int, int] = (768, 396),
    image_size: int = 384,
    seed: int | Sequence[int] = 0,
    augment: bool = False,
    compact: bool = False,
    *,
    noise_level: float = DEFAULT_NOISE_LEVEL,
) -> Path:
    """Simulate one volume (a slab of axial slices) and write it as a fastMRI file.

    All slices of the volume share one coil array and one noise covariance; each slice gets its
    own background phase, noise and (with ``augment``) augmentation.

    Args:
        path: destination ``.h5``.
        source, contrast: see :func:`load_anatomy`.
        slice_indices: axial indices on the common grid; default the two central slices of
            :data:`BRAIN_SLICES`.
        coils, kspace_shape, image_size, noise_level: see :func:`simulate_kspace`.
        seed: integer or sequence of integers seeding :func:`numpy.random.default_rng`; the file
            content is a function of the arguments alone.
        augment: apply :func:`augment` to every slice before the acquisition.
        compact: write the compact layout (``image_size²`` k-space, :data:`COMPACT_COILS` SVD
            virtual coils) instead of the raw one (``kspace_shape``, ``coils``).

    Returns:
        the written path. ``reconstruction_rss`` is always the RSS of the centre
        ``image_size²`` crop of ``ifft2c`` of the stored k-space.
    """
    height, width = _check_geometry(coils, kspace_shape, image_size)
    if slice_indices is None:
        middle = (BRAIN_SLICES[0] + BRAIN_SLICES[1]) // 2
        slice_indices = [middle, middle + 1]
    indices = [int(k) for k in slice_indices]
    volume = load_anatomy(source, contrast)
    slices = axial_slices(volume, indices)
    rng = np.random.default_rng(seed)
    maps = birdcage_coil_maps(coils, (height, width), image_size, rng)
    mixing = noise_mixing_matrix(coils, rng)
    kspace = []
    for image in slices:
        anatomy = _augment_slice(image, rng) if augment else image
        raw = simulate_kspace(
            anatomy,
            coils,
            (height, width),
            image_size,
            noise_level,
            rng=rng,
            coil_maps=maps,
            noise_mixing=mixing,
        )
        kspace.append(_compact(raw, image_size) if compact else raw)
    stacked = np.stack(kspace)
    fov_mm = image_size / _fov_scale(slices.shape[1:], image_size)  # 1-mm anatomy voxels
    seeds = [int(s) for s in np.atleast_1d(seed)]
    return write_fastmri_file(
        path,
        stacked,
        rss_reconstruction(stacked, image_size),
        acquisition=_acquisition(contrast),
        source=source,
        contrast=contrast,
        patient_id=f"sim-{source}-{contrast}-" + "-".join(map(str, seeds)),
        fov_mm=fov_mm,
        layout="compact" if compact else "raw",
        slice_indices=np.asarray(indices, dtype=np.int64),
        seed=np.asarray(seeds, dtype=np.int64),
        augmented=bool(augment),
        noise_level=float(noise_level),
        simulated_coils=coils,
    )


def _acquisition(contrast: str) -> str:
    return "AXT2" if contrast == "t2" else "AXT1"


# --------------------------------------------------------------------------------------------
# Data set


SPLITS = ("train", "val", "test")


def _plan_slabs(
    counts: dict[str, int], slices_per_volume: int, gap: int
) -> list[tuple[str, list[int]]]:
    """Lay out contiguous slabs of axial indices inside :data:`BRAIN_SLICES`.

    Splits are interleaved along the head (each split's slabs evenly spread over the ordering),
    and ``gap`` unused slices separate neighbouring slabs of different splits, so no slice of one
    split is adjacent to a slice of another.

    Returns:
        ``(split, indices)`` per slab, in increasing slice order.

    Raises:
        ParameterError: the slabs and gaps do not fit in the central part of the brain.
    """
    ranked = sorted(
        ((i + 0.5) / counts[split], order, split)
        for order, split in enumerate(SPLITS)
        for i in range(counts[split])
    )
    labels = [split for _, _, split in ranked]
    changes = sum(a != b for a, b in zip(labels, labels[1:], strict=False))
    needed = len(labels) * slices_per_volume + changes * gap
    available = BRAIN_SLICES[1] - BRAIN_SLICES[0] + 1
    if needed > available:
        raise ParameterError(
            f"{len(labels)} volumes of {slices_per_volume} slices plus {changes} gaps of {gap} "
            f"need {needed} axial slices, but the central brain has {available} "
            f"(indices {BRAIN_SLICES[0]}-{BRAIN_SLICES[1]}): use fewer or thinner volumes"
        )
    z = BRAIN_SLICES[0] + (available - needed) // 2
    plan: list[tuple[str, list[int]]] = []
    for position, label in enumerate(labels):
        if position and label != labels[position - 1]:
            z += gap
        plan.append((label, list(range(z, z + slices_per_volume))))
        z += slices_per_volume
    return plan


def _split_counts(text: str) -> dict[str, int]:
    """Parse ``train=6,val=1,test=1`` (missing splits get 0 volumes)."""
    counts = dict.fromkeys(SPLITS, 0)
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, value = item.partition("=")
        if name not in counts or not value.isdigit():
            raise argparse.ArgumentTypeError(
                f"expected split=count pairs such as train=6,val=1,test=1, got {item!r}"
            )
        counts[name] = int(value)
    if counts["train"] < 1:
        raise argparse.ArgumentTypeError("at least one training volume is needed (train=N, N>=1)")
    return counts


def _shape(text: str) -> tuple[int, int]:
    """Parse ``768x396``."""
    rows, sep, cols = text.lower().partition("x")
    if not (sep and rows.isdigit() and cols.isdigit()):
        raise argparse.ArgumentTypeError(f"expected a shape such as 768x396, got {text!r}")
    return int(rows), int(cols)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training.simulate",
        description=(
            f"Write a train/val/test set of fastMRI-layout brain files with {PROVENANCE}. "
            "Slabs of contiguous axial slices from the central brain become volumes; splits are "
            "disjoint by slice with gaps between them; only training slabs get augmented copies."
        ),
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--source", choices=(*SOURCES, "both"), default="colin27")
    parser.add_argument("--contrast", choices=CONTRASTS, default="t2")
    parser.add_argument("--coils", type=int, default=16, help=f"receive coils (>= {MIN_COILS})")
    parser.add_argument("--slices-per-volume", type=int, default=8)
    parser.add_argument(
        "--volumes-per-split",
        type=_split_counts,
        default=_split_counts("train=6,val=1,test=1"),
        help="slabs per split, e.g. train=6,val=1,test=1 (default)",
    )
    parser.add_argument(
        "--augment-copies",
        type=int,
        default=2,
        help="augmented copies (own seeds) of each training slab, besides the original",
    )
    parser.add_argument("--gap", type=int, default=3, help="slices left out between splits")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--compact",
        action="store_true",
        help=f"write image_size² k-space with {COMPACT_COILS} virtual coils instead of raw data",
    )
    parser.add_argument("--image-size", type=int, default=384)
    parser.add_argument("--kspace-shape", type=_shape, default=(768, 396), help="e.g. 768x396")
    parser.add_argument("--noise-level", type=float, default=DEFAULT_NOISE_LEVEL)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Command-line entry point; writes ``DIR/{train,val,test}/*.h5`` and ``DIR/dataset.json``.

    Files are named ``file_brain_<AXT2|AXT1>_sim_<split>_<k>.h5``. Slice ``k`` of the common
    grid is the same height in the brain for both sources, so ``--source both`` keeps the split
    disjoint across sources too. Everything is a function of the arguments (``--seed``): file
    ``(source s, slab j, copy c)`` is seeded with ``[seed, s, j, c]``.
    """
    parser = _parser()
    args = parser.parse_args(argv)
    if args.slices_per_volume < 1 or args.gap < 0 or args.augment_copies < 0:
        parser.error("--slices-per-volume must be >= 1, --gap and --augment-copies >= 0")
    sources = list(SOURCES) if args.source == "both" else [args.source]
    acquisition = _acquisition(args.contrast)
    try:
        _check_geometry(args.coils, args.kspace_shape, args.image_size)
        plan = _plan_slabs(args.volumes_per_split, args.slices_per_volume, args.gap)
        for source in sources:
            load_anatomy(source, args.contrast)
    except (ParameterError, FileNotFoundError) as error:
        parser.error(str(error))

    splits: dict[str, dict[str, Any]] = {
        split: {"slice_indices": [], "files": []} for split in SPLITS
    }
    for source_index, source in enumerate(sources):
        for slab_index, (split, indices) in enumerate(plan):
            copies = 1 + args.augment_copies if split == "train" else 1
            for copy in range(copies):
                number = len(splits[split]["files"])
                relative = Path(split) / f"file_brain_{acquisition}_sim_{split}_{number}.h5"
                seed = [args.seed, source_index, slab_index, copy]
                simulate_volume_file(
                    args.out / relative,
                    source,
                    args.contrast,
                    indices,
                    args.coils,
                    args.kspace_shape,
                    args.image_size,
                    seed,
                    augment=copy > 0,
                    compact=args.compact,
                    noise_level=args.noise_level,
                )
                splits[split]["files"].append(
                    {
                        "file": relative.as_posix(),
                        "source": source,
                        "slice_indices": indices,
                        "augmented": copy > 0,
                        "seed": seed,
                    }
                )
                print(f"wrote {args.out / relative} ({len(indices)} slices)", flush=True)
            splits[split]["slice_indices"] = sorted({*splits[split]["slice_indices"], *indices})

    stored_shape = (args.image_size,) * 2 if args.compact else args.kspace_shape
    description = {
        "provenance": [f"{PROVENANCE} ({source}, {args.contrast})" for source in sources],
        "sources": sources,
        "contrast": args.contrast,
        "acquisition": acquisition,
        "layout": "compact" if args.compact else "raw",
        "coils": COMPACT_COILS if args.compact else args.coils,
        "simulated_coils": args.coils,
        "kspace_shape": list(stored_shape),
        "simulated_kspace_shape": list(args.kspace_shape),
        "image_size": args.image_size,
        "noise_level": args.noise_level,
        "seed": args.seed,
        "slices_per_volume": args.slices_per_volume,
        "gap_slices": args.gap,
        "augment_copies": args.augment_copies,
        "grid": {"shape": list(GRID_SHAPE), "affine_ras_mm": GRID_AFFINE.tolist()},
        "brain_slices": list(BRAIN_SLICES),
        "splits": splits,
    }
    target = args.out / "dataset.json"
    with atomic_output(target) as tmp:
        tmp.write_text(json.dumps(description, indent=2) + "\n")
    print(f"wrote {target}", flush=True)


if __name__ == "__main__":
    main()
