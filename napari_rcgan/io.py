"""Reading inputs (fastMRI multicoil HDF5, face images, masks) and writing results atomically."""

from __future__ import annotations

import os
import re
import tempfile
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np

from napari_rcgan.errors import InputFileError, OutputFileError, ParameterError

if TYPE_CHECKING:
    import PIL.Image

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
HDF5_SUFFIXES = (".h5", ".hdf5")
MAX_SLICE_BYTES = 2**30
"""Largest slice (one ``kspace[i]`` as complex64, or one reference image) read into memory."""


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
    accepted. Opening validates the layout, and that one slice fits in
    :data:`MAX_SLICE_BYTES`; nothing but the header is read. Every read error is raised as
    :class:`InputFileError` naming the file.
    """

    path: Path
    num_slices: int
    num_coils: int
    kspace_shape: tuple[int, int]
    has_reference: bool
    attrs: Mapping[str, Any]
    reference_shape: tuple[int, int] | None = None

    @classmethod
    def open(cls, path: str | os.PathLike) -> FastMRIFile:
        path = _require_file(path)
        try:
            if not h5py.is_hdf5(path):
                raise InputFileError(f"{path}: not an HDF5 file (expected fastMRI multicoil .h5)")
            with h5py.File(path, "r") as handle:
                kspace = _kspace_dataset(handle, path)
                reference = _reference_dataset(handle, path, kspace.shape[0])
                attrs = {key: _plain(value) for key, value in handle.attrs.items()}
                return cls(
                    path=path,
                    num_slices=kspace.shape[0],
                    num_coils=kspace.shape[1],
                    kspace_shape=tuple(kspace.shape[2:]),
                    has_reference=reference is not None,
                    attrs=attrs,
                    reference_shape=None if reference is None else tuple(reference.shape[1:]),
                )
        except OSError as error:
            raise InputFileError(f"{path}: unreadable HDF5 file ({os_error_reason(error)})") from error

    def _check_slice(self, index: int) -> None:
        if not 0 <= index < self.num_slices:
            raise ParameterError(
                f"{self.path}: slice {index} out of range; the file has {self.num_slices} slices "
                f"(0..{self.num_slices - 1})"
            )

    def read_kspace(self, index: int) -> np.ndarray:
        """K-space of one slice, complex64 ``(coils, H, W)``; rejects NaN/Inf."""
        kspace = self._read("kspace", index, np.complex64)
        if not np.all(np.isfinite(kspace)):
            raise InputFileError(f"{self.path}: slice {index} of 'kspace' contains NaN or Inf")
        return kspace

    def read_reference(self, index: int) -> np.ndarray | None:
        """``reconstruction_rss`` of one slice, float32 ``(h, w)``, or None."""
        if not self.has_reference:
            self._check_slice(index)
            return None
        return self._read("reconstruction_rss", index, np.float32)

    def _read(self, name: str, index: int, dtype: type) -> np.ndarray:
        """Slice ``index`` of dataset ``name`` (only that slice is read), as ``dtype``."""
        self._check_slice(index)
        try:
            with h5py.File(self.path, "r") as handle:
                return np.asarray(handle[name][index], dtype=dtype)
        except (OSError, KeyError) as error:
            reason = os_error_reason(error) if isinstance(error, OSError) else "dataset missing"
            raise InputFileError(
                f"{self.path}: cannot read slice {index} of '{name}' ({reason})"
            ) from error

    def describe(self) -> str:
        height, width = self.kspace_shape
        return (
            f"{self.path.name}: {self.num_slices} slices, {self.num_coils} coils, k-space "
            f"{height}x{width}" + (", with reconstruction_rss" if self.has_reference else "")
        )


def _slice_bytes(dataset: h5py.Dataset, itemsize: int) -> int:
    """Bytes one slice ``dataset[i]`` takes once read as items of ``itemsize`` bytes."""
    return int(np.prod(dataset.shape[1:], dtype=np.float64)) * max(itemsize, dataset.dtype.itemsize)


def _check_declared(dataset: h5py.Dataset, path: Path, name: str, itemsize: int) -> None:
    """Reject an empty dataset, or one whose single slice is larger than :data:`MAX_SLICE_BYTES`."""
    if 0 in dataset.shape:
        raise InputFileError(f"{path}: '{name}' is empty (shape {dataset.shape})")
    size = _slice_bytes(dataset, itemsize)
    if size > MAX_SLICE_BYTES:
        raise InputFileError(
            f"{path}: one slice of '{name}' declares shape {dataset.shape[1:]} "
            f"({size / 2**30:.1f} GiB), more than the {MAX_SLICE_BYTES / 2**30:g} GiB "
            "napari-rcgan reads per slice"
        )


def _kspace_dataset(handle: h5py.File, path: Path) -> h5py.Dataset:
    """The validated ``kspace`` dataset: complex, rank 4, non-empty, slices of bounded size."""
    if "kspace" not in handle:
        found = ", ".join(sorted(handle.keys())) or "nothing"
        raise InputFileError(f"{path}: no 'kspace' dataset (found {found})")
    kspace = handle["kspace"]
    if not isinstance(kspace, h5py.Dataset):
        raise InputFileError(f"{path}: 'kspace' is a group, not a dataset")
    if kspace.dtype.kind != "c":
        raise InputFileError(f"{path}: 'kspace' must be complex, found dtype {kspace.dtype}")
    if kspace.ndim != 4:
        raise InputFileError(
            f"{path}: 'kspace' must have rank 4 (slices, coils, H, W), found shape {kspace.shape}"
        )
    _check_declared(kspace, path, "kspace", np.dtype(np.complex64).itemsize)
    return kspace


def _reference_dataset(handle: h5py.File, path: Path, num_slices: int) -> h5py.Dataset | None:
    """The validated ``reconstruction_rss`` (real, ``(slices, h, w)``), or None when absent."""
    if "reconstruction_rss" not in handle:
        return None
    reference = handle["reconstruction_rss"]
    if (
        not isinstance(reference, h5py.Dataset)
        or reference.dtype.kind not in "fiu"
        or reference.ndim != 3
        or reference.shape[0] != num_slices
    ):
        found = (
            f"shape {reference.shape}, dtype {reference.dtype}"
            if isinstance(reference, h5py.Dataset)
            else "a group"
        )
        raise InputFileError(
            f"{path}: 'reconstruction_rss' must be real (slices, H, W) with {num_slices} slices "
            f"like 'kspace', found {found}"
        )
    _check_declared(reference, path, "reconstruction_rss", np.dtype(np.float32).itemsize)
    return reference


def os_error_reason(error: Exception) -> str:
    """A short reason for an OS or HDF5 error: ``No space left on device``, ``Is a directory``.

    h5py raises ``OSError`` (or, when closing a file fails, ``RuntimeError``) with the C
    library's errno inside its message; PIL and the standard library set ``errno``. Without
    either, the first line of the message.
    """
    code = getattr(error, "errno", None)
    if code is None:
        match = re.search(r"errno = (\d+)", str(error))
        code = int(match.group(1)) if match else None
    if code:
        return os.strerror(code)
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


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


def looks_like_fastmri(path: str | os.PathLike) -> bool:
    """Cheap sniff: an existing HDF5 file with a ``kspace`` dataset (its layout is not checked)."""
    try:
        path = Path(path)
        if not path.is_file() or not h5py.is_hdf5(path):
            return False
        with h5py.File(path, "r") as handle:
            return isinstance(handle.get("kspace"), h5py.Dataset)
    except (OSError, ValueError):
        return False


def looks_like_image(path: str | os.PathLike) -> bool:
    """Cheap sniff: an existing file whose header PIL recognises (pixels are not decoded).

    A header declaring too many pixels counts as an image, so reading it names the problem.
    """
    from PIL import Image

    path = Path(path)
    if not path.is_file():
        return False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path):
                return True
    except Image.DecompressionBombError:
        return True
    except Exception:  # Pillow raises many types on files it cannot identify
        return False


def read_image(path: str | os.PathLike) -> np.ndarray:
    """A face photo as float32 in [0, 1]: ``(H, W, 3)`` for colour, ``(H, W)`` for grey.

    8-bit images are divided by 255; 16-bit and 32-bit ones by the range of their values (see
    :func:`image_array`). An image declaring more than PIL's ``Image.MAX_IMAGE_PIXELS`` pixels is
    refused before it is decoded.

    Raises:
        InputFileError: missing, not an image, truncated or corrupt, or too many pixels.
    """
    from PIL import Image

    path = _require_file(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                return image_array(image)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise InputFileError(
            f"{path}: the image declares more than {Image.MAX_IMAGE_PIXELS} pixels "
            "(a possible decompression bomb); not read"
        ) from error
    except Exception as error:  # Pillow's decoders raise OSError, SyntaxError, ValueError, ...
        raise InputFileError(f"{path}: not a readable image ({error})") from error


HIGH_DEPTH_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")
"""PIL modes of 16-bit and 32-bit single-channel images (PNG/TIFF grey with more than 8 bits)."""


def image_array(image: PIL.Image.Image) -> np.ndarray:
    """Pixels of a PIL image as float32 in [0, 1]: ``(H, W)`` grey or ``(H, W, 3)`` colour.

    8-bit images are divided by 255. High-bit-depth grey images are scaled by their real range:
    16-bit data by 65535; 32-bit integer or float data by 65535 when its values lie in
    0..65535 (16-bit PNGs open as 32-bit ``I``), by 1 when they lie in [0, 1], else min–max.
    """
    if image.mode not in HIGH_DEPTH_MODES:
        mode = "L" if image.mode in ("L", "1", "LA") else "RGB"
        return np.asarray(image.convert(mode), dtype=np.float32) / 255.0
    values = np.asarray(image, dtype=np.float64)
    if not np.all(np.isfinite(values)):
        raise ValueError("the image holds NaN or Inf values")
    low, high = float(values.min()), float(values.max())
    if image.mode == "F" and 0 <= low and high <= 1:
        return values.astype(np.float32)
    if 0 <= low and high <= 65535:
        return (values / 65535).astype(np.float32)
    return ((values - low) / ((high - low) or 1.0)).astype(np.float32)


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


def check_output_path(path: str | os.PathLike) -> Path:
    """Refuse an output path that can never be a file: a folder, or below a regular file.

    Raises:
        OutputFileError: naming ``path`` and the reason.
    """
    path = Path(path)
    if path.is_dir():
        raise OutputFileError(f"{path}: is a folder; give a file name")
    blocker = _file_in_the_way(path.parent)
    if blocker is not None:
        raise OutputFileError(f"{path}: {blocker} is a file, not a folder")
    return path


def check_output_folder(folder: str | os.PathLike) -> Path:
    """Refuse an output folder that is, or lies below, a regular file.

    Raises:
        OutputFileError: naming ``folder`` and the reason.
    """
    folder = Path(folder)
    blocker = _file_in_the_way(folder)
    if blocker == folder:
        raise OutputFileError(f"{folder}: is a file, not a folder")
    if blocker is not None:
        raise OutputFileError(f"{folder}: {blocker} is a file, not a folder")
    return folder


def _file_in_the_way(folder: Path) -> Path | None:
    """The nearest existing one of ``folder`` and its parents, when it is not a folder."""
    existing = next((path for path in (folder, *folder.parents) if path.exists()), None)
    return existing if existing is not None and not existing.is_dir() else None


@contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it over ``path``, else delete it.

    Every file this project writes (results, figures, weights, datasets, checkpoints) goes through
    here (or :func:`atomic_outputs`), so an interrupted write never leaves a half-written file
    under the final name and a failed one leaves an existing file untouched.

    Raises:
        OutputFileError: the file cannot be written (the OS error's reason, naming ``path``).
    """
    with atomic_outputs([path]) as (temporary,):
        yield temporary


@contextmanager
def atomic_outputs(paths: Sequence[str | os.PathLike]) -> Iterator[list[Path]]:
    """Like :func:`atomic_output` for several files committed together: all of them or none.

    Every path is checked and given its temporary before the caller writes anything; after the
    caller's block the temporaries are renamed over their paths, and if one rename fails the
    earlier ones are undone (the files they replaced are restored).

    Raises:
        OutputFileError: naming the path that cannot be written and the OS error's reason.
    """
    paths = [check_output_path(path) for path in paths]
    temporaries: list[Path] = []
    try:
        for path in paths:
            temporaries.append(_temporary_beside(path))
        yield list(temporaries)
        _commit(paths, temporaries)
    except (OSError, RuntimeError) as error:
        if not isinstance(error, OSError) and not _is_write_failure(error):
            raise
        raise OutputFileError(
            f"{_failed_path(error, paths, temporaries)}: cannot be written ({os_error_reason(error)})"
        ) from error
    finally:
        for temporary in temporaries:
            temporary.unlink(missing_ok=True)


def _is_write_failure(error: RuntimeError) -> bool:
    """h5py (closing a file) and torch.save report failed writes as ``RuntimeError``."""
    text = str(error)
    return "errno =" in text or "write failed" in text or "failed writing" in text


STALE_PATTERN = ".*.tmp"
"""Names of the temporaries of :func:`atomic_outputs` (``.NAME.RANDOM.tmp``)."""


def _temporary_beside(path: Path, suffix: str = ".tmp") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(handle)
    return Path(name)


def _commit(paths: list[Path], temporaries: list[Path]) -> None:
    """Rename each temporary over its path; on a failure restore what the earlier renames replaced."""
    backups = [_backup(path) for path in paths]
    done: list[int] = []
    try:
        for index, (path, temporary) in enumerate(zip(paths, temporaries)):
            os.chmod(temporary, _default_file_mode())
            os.replace(temporary, path)
            done.append(index)
    except OSError:
        for index in reversed(done):
            if backups[index] is None:
                paths[index].unlink(missing_ok=True)
            else:
                os.replace(backups[index], paths[index])
        raise
    finally:
        for backup in backups:
            if backup is not None:
                backup.unlink(missing_ok=True)


def _backup(path: Path) -> Path | None:
    """A hard link to an existing file at ``path`` (restores it if a commit fails), else None
    (no file, or a file system without hard links)."""
    if not path.is_file():
        return None
    backup = _temporary_beside(path, suffix=".bak.tmp")
    backup.unlink()
    try:
        os.link(path, backup)
    except OSError:
        return None
    return backup


def _failed_path(error: Exception, paths: list[Path], temporaries: list[Path]) -> Path:
    """The output an OS error is about: the one whose temporary could not be made, the one the
    error names, else the first."""
    if len(temporaries) < len(paths):
        return paths[len(temporaries)]
    names = {str(getattr(error, "filename", None)), str(getattr(error, "filename2", None))}
    for path, temporary in zip(paths, temporaries):
        if str(temporary) in names or str(path) in names or str(temporary) in str(error):
            return path
    return paths[0]


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporaries an interrupted :func:`atomic_outputs` left in ``folder``.

    Only for a folder no other process is writing to (e.g. a training run being resumed).
    """
    stale = sorted(Path(folder).glob(STALE_PATTERN))
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def write_result_h5(
    path: str | os.PathLike, datasets: Mapping[str, np.ndarray], attrs: Mapping[str, Any]
) -> Path:
    """Write float32 datasets and attributes to ``path`` atomically (the ``sample`` schema)."""
    path = Path(path)
    with atomic_output(path) as temporary:
        fill_result_h5(temporary, datasets, attrs)
    return path


def fill_result_h5(
    target: str | os.PathLike, datasets: Mapping[str, np.ndarray], attrs: Mapping[str, Any]
) -> None:
    """Write the result schema into ``target`` (a temporary of :func:`atomic_outputs`)."""
    with h5py.File(target, "w") as handle:
        for name, array in datasets.items():
            handle.create_dataset(name, data=np.asarray(array, dtype=np.float32))
        for key, value in attrs.items():
            handle.attrs[key] = value
