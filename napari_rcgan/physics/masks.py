"""Cartesian phase-encode sampling masks: GRO, equispaced, random and user-supplied.

A mask samples whole phase-encode columns: for an image of shape ``(H, W)`` the sampled lines are
column indices in ``[0, W)`` and k-space is centred (fastMRI convention, DC at column ``W // 2``).

GRO (golden-ratio offset) is the pattern of Joshi et al. 2022, arXiv:2206.03630, used by the
reference rcGAN MRI model. Its authors' README mentions US patent 11,294,009 on GRO; the
equispaced and random masks are offered as patent-free alternatives.

Every mask kind samples exactly ``round(n / R)`` lines, including a contiguous fully sampled centre
block ``n // 2 - h ... n // 2 + h`` with ``h = round(center_fraction * n / 2)``; the default
``center_fraction`` is ``0.32 / R`` (fastMRI's 0.08 at R = 4 and 0.04 at R = 8).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from napari_rcgan.errors import MaskError, ParameterError

MASK_KINDS = ("gro", "equispaced", "random")
MASK_FILE_SUFFIXES = (".npy", ".npz", ".h5", ".txt")

MIN_LINES = 4
GRO_MIN_LINES = 32
GRO_ALPHA = 3
# The reference MATLAB code starts its grid at 1/2 + 1e-10; the offset decides rounding ties.
GRO_GRID_EPS = 1e-10
_R4_N384_GAPS = (
    "0 10 19 28 37 46 54 61 69 76 83 89 95 101 107 112 118 122 127 132 136 140 144 148 151 155 "
    "158 161 164 167 170 173 {} 211 214 217 220 223 226 229 233 236 240 244 248 252 257 262 266 "
    "272 277 283 289 295 301 308 315 323 330 338 347 356 365 374"
)
REFERENCE_GRO_TABLES: dict[tuple[int, float], np.ndarray] = {
    (384, 4.0): np.array(
        _R4_N384_GAPS.format(" ".join(map(str, range(176, 209)))).split(), dtype=np.int64
    ),
}
"""Reference masks the recipe of :func:`gro_lines` does not reproduce: the R=4, N=384 mask of
the paper's R=4 results (96 columns, centre 176-208 inclusive)."""


@dataclass(frozen=True, eq=False)
class SamplingMask:
    """A Cartesian sampling mask of whole phase-encode columns.

    Attributes:
        mask: bool ``(H, W)``, True on the sampled columns.
        kind: ``"gro"``, ``"equispaced"``, ``"random"`` or ``"user"``.
        requested_R: the acceleration asked for (the achieved one for a user mask).
        lines: int64 ``(L,)``, sorted indices of the sampled columns.
    """

    mask: np.ndarray
    kind: str
    requested_R: float
    lines: np.ndarray

    @property
    def achieved_R(self) -> float:
        """``W / L``: the number of columns over the number of sampled columns."""
        return self.mask.shape[-1] / self.lines.size


def _round_half_away(x: np.ndarray) -> np.ndarray:
    """Round half away from zero (MATLAB's ``round``), as int64."""
    return (np.sign(x) * np.floor(np.abs(x) + 0.5)).astype(np.int64)


def _num_lines(n: int, R: float) -> int:
    """Number of lines to sample, ``round(n / R)`` (halves up), after checking ``1 <= R <= n/4``."""
    if not (math.isfinite(R) and 1 <= R <= n / MIN_LINES):
        raise ParameterError(
            f"R={R} is out of range: expected 1 <= R <= {n / MIN_LINES:g} for {n} phase-encode "
            f"lines (at least {MIN_LINES} sampled lines)"
        )
    return math.floor(n / R + 0.5)


def _center_block(n: int, R: float, center_fraction: float | None) -> np.ndarray:
    """Indices ``n//2 - h ... n//2 + h`` of the fully sampled centre, ``h = round(cf * n / 2)``.

    Returns:
        int64 ``(2h + 1,)``.
    """
    cf = 0.32 / R if center_fraction is None else center_fraction
    if not (math.isfinite(cf) and 0 <= cf <= 1):
        raise ParameterError(f"center_fraction={center_fraction} is out of range: expected 0 to 1")
    h = min(math.floor(cf * n / 2 + 0.5), (n - 1) // 2)
    return np.arange(n // 2 - h, n // 2 + h + 1, dtype=np.int64)


def _with_center(n: int, R: float, center_fraction: float | None) -> tuple[int, np.ndarray]:
    """Total number of lines and the centre block, checking that the block fits in the total."""
    total = _num_lines(n, R)
    block = _center_block(n, R, center_fraction)
    if block.size > total:
        raise ParameterError(
            f"center_fraction={center_fraction} gives a centre block of {block.size} lines, more "
            f"than the {total} lines of R={R}: expected a smaller center_fraction"
        )
    return total, block


def _gro_positions(n: int, m: int) -> np.ndarray:
    """The ``m`` GRO lines of one frame on an ``n``-line grid (may hold duplicates).

    Returns:
        int64 ``(m,)`` in ``[0, n)``.
    """
    s = max(1.0, 0.9 * (n / m) ** (1 / 3))
    ns = math.ceil(n / s)
    k = (n / 2 - ns / 2) / (ns / 2) ** GRO_ALPHA
    v = 0.5 + GRO_GRID_EPS + np.arange(m) * ns / m
    c = ns / 2 + 0.5
    warped = v - k * np.sign(c - v) * np.abs(c - v) ** GRO_ALPHA + (n - ns) / 2 + (n + 1) % 2 / 2
    return np.mod(_round_half_away(warped), n)


def gro_lines(n: int, R: float) -> np.ndarray:
    """Phase-encode lines of a single-frame GRO pattern with a fully sampled centre.

    Algorithm (Joshi et al. 2022; reference MATLAB ``gro_fun.m``, frame 1):

    1. ``L = round(n / R)`` lines in all; centre block ``n//2 - h ... n//2 + h`` with
       ``h = round(0.16 * n / R)`` (fastMRI's centre fraction ``0.32 / R``).
    2. For ``m`` GRO lines: ``s = max(1, 0.9 (n/m)^(1/3))``, ``Ns = ceil(n / s)``; uniform grid
       ``v_i = 1/2 + 1e-10 + (i + j gamma) Ns/m`` (mod ``Ns``), ``i < m``, where ``j gamma``
       with ``gamma = 1/phi`` is the golden-ratio offset of frame ``j`` of a dynamic series; a
       single 2-D slice is frame ``j = 0``, so the offset is zero.
    3. Warp towards the centre, ``v <- v - k sign(c - v) |c - v|^3`` with ``c = Ns/2 + 1/2`` and
       ``k = (n/2 - Ns/2) / (Ns/2)^3``; shift by ``(n - Ns)/2`` (``+ 1/2`` for even ``n``); round
       half away from zero; wrap index ``n`` to ``0``. As in the rcGAN reference code, these
       numbers (1-based in MATLAB) are used directly as 0-based column indices.
    4. ``m`` starts at ``L - (2h + 1)`` and grows until the GRO lines joined with the centre
       block number at least ``L``; a surplus line (at most one in practice) is removed, taking
       the non-centre line closest to ``n // 2`` first, so exactly ``L`` lines remain.

    For ``n = 384, R = 8`` this gives ``m = 34`` and exactly the reference rcGAN mask
    ``1 23 42 ... 182 184-200 204 ... 344 363``. For ``n = 384, R = 4`` the recipe does not give
    the reference mask of the paper's R=4 results, so that mask is returned from
    :data:`REFERENCE_GRO_TABLES` (96 columns, ``0 10 19 ... 173 176-208 211 ... 374``).

    Args:
        n: number of phase-encode lines (image width W), at least 32.
        R: acceleration, ``1 <= R <= n / 4``.

    Returns:
        int64 ``(L,)``: sorted unique column indices in ``[0, n)``.
    """
    if n < GRO_MIN_LINES:
        raise ParameterError(
            f"n={n} phase-encode lines is out of range for a GRO mask: "
            f"expected n >= {GRO_MIN_LINES}"
        )
    table = REFERENCE_GRO_TABLES.get((n, float(R)))
    if table is not None:
        return table.copy()
    total, block = _with_center(n, R, None)
    m = max(1, total - block.size)
    lines = np.union1d(_gro_positions(n, m), block)
    while lines.size < total:
        m += 1
        lines = np.union1d(_gro_positions(n, m), block)
    return _drop_nearest_center(lines, block, lines.size - total, n)


def _drop_nearest_center(lines: np.ndarray, block: np.ndarray, count: int, n: int) -> np.ndarray:
    """Remove ``count`` lines outside ``block``, those closest to ``n // 2`` first (lower first)."""
    outside = np.setdiff1d(lines, block)
    order = np.lexsort((outside, np.abs(outside - n // 2)))
    return np.setdiff1d(lines, outside[order[:count]])


def equispaced_lines(n: int, R: float, center_fraction: float | None = None) -> np.ndarray:
    """Equispaced phase-encode lines plus a fully sampled centre (fastMRI style).

    The ``M = L - (2h + 1)`` lines outside the centre block are spread evenly over the ``K``
    columns outside the block: the ``i``-th takes outside column ``floor((2i + 1) K / (2M))``,
    the middle of the ``i``-th of ``M`` equal bins.

    Args:
        n: number of phase-encode lines (image width W).
        R: acceleration, ``1 <= R <= n / 4``; ``L = round(n / R)`` lines in all.
        center_fraction: fraction of ``n`` in the centre block; default ``0.32 / R``.

    Returns:
        int64 ``(L,)``: sorted unique column indices in ``[0, n)``.
    """
    total, block = _with_center(n, R, center_fraction)
    outside = np.setdiff1d(np.arange(n), block)
    count = total - block.size
    picks = (2 * np.arange(count) + 1) * outside.size // (2 * count)
    return np.union1d(block, outside[picks])


def random_lines(
    n: int, R: float, seed: int = 0, center_fraction: float | None = None
) -> np.ndarray:
    """Uniformly random phase-encode lines plus a fully sampled centre (fastMRI style).

    The ``L - (2h + 1)`` lines outside the centre block are drawn without replacement from the
    columns outside the block with ``np.random.default_rng(seed)``.

    Args:
        n: number of phase-encode lines (image width W).
        R: acceleration, ``1 <= R <= n / 4``; ``L = round(n / R)`` lines in all.
        seed: seed of the generator; the same seed gives the same lines.
        center_fraction: fraction of ``n`` in the centre block; default ``0.32 / R``.

    Returns:
        int64 ``(L,)``: sorted unique column indices in ``[0, n)``.
    """
    total, block = _with_center(n, R, center_fraction)
    outside = np.setdiff1d(np.arange(n), block)
    picks = np.random.default_rng(seed).choice(outside, size=total - block.size, replace=False)
    return np.union1d(block, picks)


def _from_lines(shape: tuple[int, int], lines: np.ndarray, kind: str, R: float) -> SamplingMask:
    """Wrap column indices into a :class:`SamplingMask` of ``shape`` ``(H, W)``."""
    mask = np.zeros(shape, dtype=bool)
    mask[:, lines] = True
    return SamplingMask(mask=mask, kind=kind, requested_R=float(R), lines=lines.astype(np.int64))


def column_mask(shape: tuple[int, int], kind: str, R: float, seed: int = 0) -> SamplingMask:
    """Build the ``(H, W)`` column mask of one of :data:`MASK_KINDS` on the W phase-encode lines.

    Args:
        shape: ``(H, W)`` of the k-space slice.
        kind: ``"gro"``, ``"equispaced"`` or ``"random"``.
        R: acceleration, ``1 <= R <= W / 4``.
        seed: seed of the ``"random"`` kind (ignored by the others).

    Returns:
        the mask, bool ``(H, W)`` with whole columns sampled.
    """
    width = shape[1]
    if kind == "gro":
        lines = gro_lines(width, R)
    elif kind == "equispaced":
        lines = equispaced_lines(width, R)
    elif kind == "random":
        lines = random_lines(width, R, seed=seed)
    else:
        raise MaskError(f"unknown mask kind {kind!r}: expected one of {', '.join(MASK_KINDS)}")
    return _from_lines(shape, lines, kind, R)


def mask_from_array(array, shape: tuple[int, int], source: str = "array") -> SamplingMask:
    """Turn a user mask (file contents or a napari Labels layer) into a column mask.

    Nonzero entries are sampled. A 2-D ``(H, W)`` array samples every column holding at least
    one nonzero pixel (a painted stroke across a column selects it); a 1-D array of length W
    gives one value per column.

    Args:
        array: bool or numeric, ``(H, W)`` or ``(W,)``.
        shape: ``(H, W)`` of the k-space slice.
        source: what the array came from (a file name, a layer name), for messages.

    Returns:
        the mask with ``kind="user"`` and ``requested_R`` equal to the achieved R.
    """
    values = np.asarray(array)
    if values.dtype.kind not in "biuf":
        raise MaskError(f"{source}: expected a boolean or numeric mask, found dtype {values.dtype}")
    if values.dtype.kind == "f" and not np.all(np.isfinite(values)):
        raise MaskError(f"{source}: expected finite mask values, found NaN or infinity")
    if values.shape not in (tuple(shape), (shape[1],)):
        raise MaskError(
            f"{source}: expected a mask of shape {tuple(shape)} or ({shape[1]},), "
            f"found shape {values.shape}"
        )
    sampled = values != 0
    columns = sampled.any(axis=0) if sampled.ndim == 2 else sampled
    lines = np.flatnonzero(columns)
    if lines.size == 0:
        raise MaskError(f"{source}: the mask samples no k-space line")
    return _from_lines(shape, lines, "user", shape[1] / lines.size)


def _load_txt(path: Path, width: int | None) -> np.ndarray:
    """Read one list of 0/1 values, or of column indices turned into a length-``width`` 0/1 row."""
    values = np.array(path.read_text().split(), dtype=float)
    if values.size == 0:
        raise MaskError(f"{path}: expected whitespace-separated integers, found an empty file")
    if not np.all(values == np.round(values)):
        raise MaskError(f"{path}: expected whitespace-separated integers, found fractions")
    values = values.astype(np.int64)
    if np.all((values == 0) | (values == 1)):
        return values
    if width is None:
        raise MaskError(f"{path}: holds column indices; the image width is needed to use them")
    if values.min() < 0 or values.max() >= width:
        raise MaskError(
            f"{path}: expected column indices in [0, {width}), "
            f"found values from {values.min()} to {values.max()}"
        )
    row = np.zeros(width, dtype=np.int64)
    row[values] = 1
    return row


def _load(path: Path, width: int | None) -> np.ndarray:
    """Read the mask array of ``path`` according to its suffix."""
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return np.load(path, allow_pickle=False)
    if suffix == ".npz":
        with np.load(path, allow_pickle=False) as archive:
            if not archive.files:
                raise MaskError(f"{path}: expected at least one array, found an empty archive")
            return archive[archive.files[0]]
    if suffix == ".h5":
        import h5py

        with h5py.File(path, "r") as f:
            if "mask" not in f:
                raise MaskError(f"{path}: expected a dataset 'mask', found {sorted(f.keys())}")
            return f["mask"][()]
    return _load_txt(path, width)


def load_mask_file(path, width: int | None = None) -> np.ndarray:
    """Read a user mask file, to be passed to :func:`mask_from_array`.

    Supported: ``.npy``; ``.npz`` (its first array); ``.h5`` (dataset ``mask``); ``.txt`` (one
    whitespace-separated list: a 0/1 value per column, or, when any value exceeds 1, column
    indices, which need ``width``).

    Args:
        path: the mask file.
        width: image width W, used to turn a ``.txt`` list of column indices into a 0/1 row.

    Returns:
        the array as stored, ``(H, W)`` or ``(W,)`` for a valid mask.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in MASK_FILE_SUFFIXES:
        raise MaskError(
            f"{path}: unsupported mask file type {suffix or '(none)'!r}: "
            f"expected one of {', '.join(MASK_FILE_SUFFIXES)}"
        )
    if not path.is_file():
        raise MaskError(f"{path}: mask file not found")
    try:
        return _load(path, width)
    except MaskError:
        raise
    except (OSError, ValueError, KeyError, EOFError) as exc:
        raise MaskError(f"{path}: cannot read the mask file ({exc})") from exc
