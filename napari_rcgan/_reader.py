"""napari readers: fastMRI multicoil ``.h5`` (reference image; k-space left on disk), face images.

``get_reader(path)`` claims an existing ``.h5``/``.hdf5`` file with a ``kspace`` dataset and an
existing image file whose header PIL recognises, and returns None for anything else (missing
paths, folders, other HDF5 files, non-images). A claimed file that turns out to be broken (bad
``kspace`` layout, empty or oversized datasets, corrupt chunks, truncated or oversized images)
makes the reader function raise only the engine's errors
(:class:`~napari_rcgan.errors.InputFileError` and its kin), whose message names the file, what was
expected and what was found.

The fastMRI layer is the reference image: ``reconstruction_rss`` when the file has it, else the
root-sum-of-squares of the inverse FFT of each slice's k-space. It is a lazy ``(slices, H, W)``
dask stack, one slice read when napari shows it, and carries
``metadata["rcgan_source"] = {"path", "kind": "fastmri", "num_slices", "num_coils", ...}`` so the
Posterior sampler widget reads the k-space of one slice through :class:`FastMRIFile` later.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from napari_rcgan.io import (
    HDF5_SUFFIXES,
    FastMRIFile,
    looks_like_fastmri,
    looks_like_image,
    read_image,
)

READER_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
"""Images the face reader claims (TIFF is left to napari's own reader: usually not a photo)."""

LayerData = tuple[Any, dict[str, Any], str]


def get_reader(path: str | os.PathLike | list) -> Callable[[Any], list[LayerData]] | None:
    """npe2 reader hook: a reader function for fastMRI ``.h5`` or a face image, else None."""
    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    text = str(path).lower()
    if text.endswith(HDF5_SUFFIXES):
        return read_fastmri if looks_like_fastmri(path) else None
    if text.endswith(READER_IMAGE_SUFFIXES):
        return read_face_image if looks_like_image(path) else None
    return None


def get_fastmri_reader(path: str | os.PathLike | list) -> Callable | None:
    """Reader hook restricted to fastMRI ``.h5``/``.hdf5``."""
    reader = get_reader(path)
    return reader if reader is read_fastmri else None


def get_image_reader(path: str | os.PathLike | list) -> Callable | None:
    """Reader hook restricted to face images (PNG, JPEG, BMP)."""
    reader = get_reader(path)
    return reader if reader is read_face_image else None


def _single(path: str | os.PathLike | list) -> Path:
    if isinstance(path, list):
        path = path[0]
    return Path(path)


def _reference_crop(shape: tuple[int, int]) -> tuple[int, int]:
    """Shape of the reference computed from k-space: the centred square of the smaller side
    (removes the 2× readout oversampling of raw fastMRI brain data, 768×396 → 396×396)."""
    side = min(shape)
    return side, side


def reference_slice(data: FastMRIFile, index: int) -> np.ndarray:
    """Reference image of one slice: ``reconstruction_rss`` or the RSS of ``ifft2c(kspace)``."""
    reference = data.read_reference(index)
    if reference is not None:
        return reference
    import torch

    from napari_rcgan.physics.transforms import kspace_to_cropped_image, rss

    kspace = torch.from_numpy(data.read_kspace(index))
    images = kspace_to_cropped_image(kspace, _reference_crop(data.kspace_shape))
    return rss(images).numpy().astype(np.float32)


def _reference_shape(data: FastMRIFile) -> tuple[int, int]:
    return data.reference_shape or _reference_crop(data.kspace_shape)


def lazy_reference_stack(data: FastMRIFile):
    """The reference images ``(slices, H, W)`` as a dask array: one slice is read at a time."""
    import dask
    import dask.array as da

    shape = _reference_shape(data)
    slices = [
        da.from_delayed(dask.delayed(reference_slice)(data, index), shape=shape, dtype=np.float32)
        for index in range(data.num_slices)
    ]
    return da.stack(slices)


def _contrast_high(declared: Any, image: np.ndarray) -> float:
    """Upper contrast limit: the file's ``max`` attribute when it is a positive number, else the
    99.8th percentile of the finite pixels of ``image``, else 1."""
    finite = image[np.isfinite(image)]
    for value in (declared, np.percentile(finite, 99.8) if finite.size else None):
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        if np.isfinite(number) and number > 0:
            return number
    return 1.0


def read_fastmri(path: str | os.PathLike | list) -> list[LayerData]:
    """Open a fastMRI multicoil file as its (lazy) reference image stack.

    Raises:
        InputFileError: the file is not HDF5, has no complex rank-4 ``kspace``, empty or oversized
            datasets, or unreadable data.
    """
    data = FastMRIFile.open(_single(path))
    stack = lazy_reference_stack(data)
    first = reference_slice(data, data.num_slices // 2)
    high = _contrast_high(data.attrs.get("max"), first)
    source = {
        "path": str(data.path.resolve()),
        "kind": "fastmri",
        "num_slices": int(data.num_slices),
        "num_coils": int(data.num_coils),
        "kspace_shape": [int(v) for v in data.kspace_shape],
        "has_reference": bool(data.has_reference),
        "description": data.describe(),
    }
    provenance = data.attrs.get("provenance")
    if provenance:
        source["provenance"] = str(provenance)
    kwargs = {
        "name": data.path.stem,
        "metadata": {"rcgan_source": source},
        "colormap": "gray",
        "contrast_limits": (0.0, high),
    }
    return [(stack, kwargs, "image")]


def read_face_image(path: str | os.PathLike | list) -> list[LayerData]:
    """Open a face photo as an RGB (or grey) image layer with values in [0, 1].

    Raises:
        InputFileError: the file is not a readable image.
    """
    path = _single(path)
    image = read_image(path)
    kwargs = {
        "name": path.stem,
        "rgb": image.ndim == 3,
        "contrast_limits": (0.0, 1.0),
        "metadata": {"rcgan_source": {"path": str(path.resolve()), "kind": "image"}},
    }
    if image.ndim == 2:
        kwargs["colormap"] = "gray"
    return [(image, kwargs, "image")]
