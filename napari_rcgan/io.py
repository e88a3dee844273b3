"""Reading inputs (fastMRI multicoil HDF5, face images, masks) and writing results atomically."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from napari_rcgan.errors import InputFileError, ParameterError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
HDF5_SUFFIXES = (".h5", ".hdf5")


def _require_file(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.exists():
        raise InputFileError(f"{path}: no such file")
    if not path.is_file():
        raise InputFileError(f"{path}: not a regular file")
    return path


@dataclass(frozen=True)
class FastMRIFile:
    """A fastMRI multicoil HDF5 file, read lazily one slice at a time.

    Expected layout: dataset ``kspace`` ``(slices, coils, H, W)`` complex; optional
    ``reconstruction_rss`` ``(slices, h, w)``, ``ismrmrd_header`` and attributes. Both raw files
    (16–20 coils, 768×396 with readout oversampling) and compact ones (8 coils, 384×384) are
    accepted. Opening validates the layout; nothing but the header is read.
    """

    path: Path
    num_slices: int
    num_coils: int
    kspace_shape: tuple[int, int]
    has_reference: bool
    attrs: Mapping[str, Any]

    @classmethod
    def open(cls, path: str | os.PathLike) -> FastMRIFile:
        path = _require_file(path)
        if not h5py.is_hdf5(path):
            raise InputFileError(f"{path}: not an HDF5 file (expected fastMRI multicoil .h5)")
        try:
            with h5py.File(path, "r") as handle:
                if "kspace" not in handle:
                    found = ", ".join(sorted(handle.keys())) or "nothing"
                    raise InputFileError(f"{path}: no 'kspace' dataset (found {found})")
                kspace = handle["kspace"]
                if not isinstance(kspace, h5py.Dataset):
                    raise InputFileError(f"{path}: 'kspace' is a group, not a dataset")
                if kspace.dtype.kind != "c":
                    raise InputFileError(
                        f"{path}: 'kspace' must be complex, found dtype {kspace.dtype}"
                    )
                if kspace.ndim != 4:
                    raise InputFileError(
                        f"{path}: 'kspace' must have rank 4 (slices, coils, H, W), found shape "
                        f"{kspace.shape}"
                    )
                attrs = {key: _plain(value) for key, value in handle.attrs.items()}
                return cls(
                    path=path,
                    num_slices=kspace.shape[0],
                    num_coils=kspace.shape[1],
                    kspace_shape=tuple(kspace.shape[2:]),
                    has_reference="reconstruction_rss" in handle,
                    attrs=attrs,
                )
        except OSError as error:
            raise InputFileError(f"{path}: unreadable HDF5 file ({error})") from error

    def _check_slice(self, index: int) -> None:
        if not 0 <= index < self.num_slices:
            raise ParameterError(
                f"{self.path}: slice {index} out of range; the file has {self.num_slices} slices "
                f"(0..{self.num_slices - 1})"
            )

    def read_kspace(self, index: int) -> np.ndarray:
        """K-space of one slice, complex64 ``(coils, H, W)``; rejects NaN/Inf."""
        self._check_slice(index)
        with h5py.File(self.path, "r") as handle:
            kspace = np.asarray(handle["kspace"][index], dtype=np.complex64)
        if not np.all(np.isfinite(kspace)):
            raise InputFileError(f"{self.path}: slice {index} of 'kspace' contains NaN or Inf")
        return kspace

    def read_reference(self, index: int) -> np.ndarray | None:
        """``reconstruction_rss`` of one slice, float32 ``(h, w)``, or None."""
        self._check_slice(index)
        if not self.has_reference:
            return None
        with h5py.File(self.path, "r") as handle:
            return np.asarray(handle["reconstruction_rss"][index], dtype=np.float32)

    def describe(self) -> str:
        height, width = self.kspace_shape
        return (
            f"{self.path.name}: {self.num_slices} slices, {self.num_coils} coils, k-space "
            f"{height}x{width}" + (", with reconstruction_rss" if self.has_reference else "")
        )


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.generic):
        return value.item()
    return value


def is_fastmri_candidate(path: str | os.PathLike) -> bool:
    return str(path).lower().endswith(HDF5_SUFFIXES)


def is_image_candidate(path: str | os.PathLike) -> bool:
    return str(path).lower().endswith(IMAGE_SUFFIXES)


def read_image(path: str | os.PathLike) -> np.ndarray:
    """A face photo as float32 in [0, 1]: ``(H, W, 3)`` for colour, ``(H, W)`` for grey."""
    from PIL import Image, UnidentifiedImageError

    path = _require_file(path)
    try:
        with Image.open(path) as image:
            mode = "L" if image.mode in ("L", "I", "I;16", "1", "LA") else "RGB"
            array = np.asarray(image.convert(mode), dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError) as error:
        raise InputFileError(f"{path}: not a readable image ({error})") from error
    return array


def read_hole_mask(path: str | os.PathLike) -> np.ndarray:
    """A hole mask image or ``.npy``: nonzero pixels are missing; returns bool ``(H, W)``."""
    path = _require_file(path)
    if path.suffix.lower() == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except ValueError as error:
            raise InputFileError(f"{path}: not a readable .npy mask ({error})") from error
    else:
        array = read_image(path)
    if array.ndim == 3:
        array = array.max(axis=-1)
    return np.asarray(array) > 0.5 * float(np.max(array)) if np.max(array) > 0 else array > 0


def _default_file_mode() -> int:
    """``0o666`` minus the umask: the mode ``open(path, "w")`` would give (mkstemp gives 0o600)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


@contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it over ``path``, else delete it.

    Every file this project writes (results, figures, weights, datasets, checkpoints) goes through
    here, so an interrupted write never leaves a half-written file under the final name.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    temporary = Path(name)
    try:
        yield temporary
        os.chmod(temporary, _default_file_mode())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def write_result_h5(
    path: str | os.PathLike, datasets: Mapping[str, np.ndarray], attrs: Mapping[str, Any]
) -> Path:
    """Write float32 datasets and attributes to ``path`` atomically (the ``sample`` schema)."""
    path = Path(path)
    with atomic_output(path) as temporary:
        with h5py.File(temporary, "w") as handle:
            for name, array in datasets.items():
                handle.create_dataset(name, data=np.asarray(array, dtype=np.float32))
            for key, value in attrs.items():
                handle.attrs[key] = value
    return path
