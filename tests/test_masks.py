"""Phase-encode sampling masks: the reference GRO mask, achieved R, centre block, errors."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from napari_rcgan.errors import MaskError, ParameterError
from napari_rcgan.physics.masks import (
    MASK_KINDS,
    SamplingMask,
    column_mask,
    equispaced_lines,
    gro_lines,
    load_mask_file,
    mask_from_array,
    random_lines,
)

# The rcGAN reference mask (utils/mri/get_mask.py: ``m[:, a] = True``), 0-based column indices.
REFERENCE_R8_N384 = np.array(
    [1, 23, 42, 60, 77, 92, 105, 117, 128, 138, 147, 155, 162, 169, 176, 182]
    + list(range(184, 201))
    + [204, 210, 217, 224, 231, 239, 248, 258, 269, 281, 294, 309, 326, 344, 363]
)
# The paper's R=4 mask, written out independently of napari_rcgan.physics.masks (design.md).
REFERENCE_R4_N384 = np.array(
    [0, 10, 19, 28, 37, 46, 54, 61, 69, 76, 83, 89, 95, 101, 107, 112, 118, 122, 127, 132, 136]
    + [140, 144, 148, 151, 155, 158, 161, 164, 167, 170, 173]
    + list(range(176, 209))
    + [211, 214, 217, 220, 223, 226, 229, 233, 236, 240, 244, 248, 252, 257, 262, 266, 272, 277]
    + [283, 289, 295, 301, 308, 315, 323, 330, 338, 347, 356, 365, 374]
)

SIZES = (32, 64, 100, 257, 320, 384, 396)
ACCELERATIONS = (2, 3, 4, 6, 8, 12, 16)
GRID = [(n, R) for n in SIZES for R in ACCELERATIONS if n / R >= 4]
TOO_FEW = [(n, R) for n in SIZES for R in ACCELERATIONS if n / R < 4]


def lines_of(kind: str, n: int, R: float, seed: int = 0) -> np.ndarray:
    if kind == "gro":
        return gro_lines(n, R)
    if kind == "equispaced":
        return equispaced_lines(n, R)
    return random_lines(n, R, seed=seed)


def test_gro_reproduces_reference_mask():
    lines = gro_lines(384, 8)
    assert lines.dtype == np.int64
    np.testing.assert_array_equal(lines, REFERENCE_R8_N384)
    assert column_mask((384, 384), "gro", 8).achieved_R == 8.0


def test_gro_r4_n384_is_the_papers_reference_mask():
    assert REFERENCE_R4_N384.size == 96
    lines = gro_lines(384, 4)
    assert lines.dtype == np.int64
    np.testing.assert_array_equal(lines, REFERENCE_R4_N384)
    mask = column_mask((384, 384), "gro", 4)
    assert mask.achieved_R == 4.0
    np.testing.assert_array_equal(np.nonzero(mask.mask[0])[0], REFERENCE_R4_N384)
    lines[0] = 5  # the table inside the module is not handed out to be modified
    np.testing.assert_array_equal(gro_lines(384, 4), REFERENCE_R4_N384)


@pytest.mark.parametrize("kind", MASK_KINDS)
@pytest.mark.parametrize(("n", "R"), GRID)
def test_achieved_R_close_to_request(kind, n, R):
    lines = lines_of(kind, n, R)
    assert lines.size == int(np.floor(n / R + 0.5))
    # Within 5 %, unless no whole number of lines gets that close (n / R = 5.33 for 32/6, 64/12).
    best = min(abs(n / k - R) / R for k in (int(np.floor(n / R)), int(np.ceil(n / R))))
    assert abs(n / lines.size - R) / R <= max(0.05, best) + 1e-12


@pytest.mark.parametrize("kind", MASK_KINDS)
@pytest.mark.parametrize(("n", "R"), GRID)
def test_lines_sorted_unique_in_range_with_full_centre(kind, n, R):
    lines = lines_of(kind, n, R)
    assert np.all(np.diff(lines) > 0)
    assert 0 <= lines[0] and lines[-1] < n
    h = int(np.floor(0.16 * n / R + 0.5))
    assert set(range(n // 2 - h, n // 2 + h + 1)) <= set(lines.tolist())


@pytest.mark.parametrize("kind", MASK_KINDS)
@pytest.mark.parametrize(("n", "R"), TOO_FEW + [(384, 0.5), (384, float("nan")), (384, 97)])
def test_out_of_range_R_raises(kind, n, R):
    with pytest.raises(ParameterError, match="R="):
        lines_of(kind, n, R)


def test_gro_too_small_n_raises():
    with pytest.raises(ParameterError, match="n=16"):
        gro_lines(16, 2)


@pytest.mark.parametrize("kind", MASK_KINDS)
def test_R_one_samples_every_line(kind):
    np.testing.assert_array_equal(lines_of(kind, 64, 1), np.arange(64))


@pytest.mark.parametrize(("n", "R"), [(256, 4), (384, 8), (396, 12)])
def test_gro_denser_near_centre(n, R):
    lines = gro_lines(n, R)
    near = np.sum(np.abs(lines - n // 2) < n / 8)
    far = np.sum(np.abs(lines - n // 2) >= 3 * n / 8)
    assert near > 3 * far


@settings(max_examples=40, deadline=None)
@given(
    kind=st.sampled_from(MASK_KINDS),
    n=st.integers(32, 512),
    R=st.floats(1, 16, allow_nan=False),
)
def test_any_size_and_R_gives_exact_line_count(kind, n, R):
    assume(R <= n / 4)
    lines = lines_of(kind, n, R, seed=n)
    assert lines.size == int(np.floor(n / R + 0.5))
    assert np.all(np.diff(lines) > 0) and 0 <= lines[0] and lines[-1] < n
    assert n // 2 in lines


def test_random_reproducible_by_seed_and_different_across_seeds():
    np.testing.assert_array_equal(random_lines(320, 4, seed=7), random_lines(320, 4, seed=7))
    assert not np.array_equal(random_lines(320, 4, seed=7), random_lines(320, 4, seed=8))


def test_center_fraction_sets_block_and_is_checked():
    lines = equispaced_lines(320, 4, center_fraction=0.2)
    assert set(range(160 - 32, 160 + 33)) <= set(lines.tolist())
    with pytest.raises(ParameterError, match="center_fraction"):
        random_lines(320, 4, center_fraction=0.5)
    with pytest.raises(ParameterError, match="center_fraction"):
        equispaced_lines(320, 4, center_fraction=-0.1)


@pytest.mark.parametrize("kind", MASK_KINDS)
def test_column_mask_shape_dtype_and_lines(kind):
    sm = column_mask((200, 320), kind, 4, seed=3)
    assert isinstance(sm, SamplingMask)
    assert sm.mask.shape == (200, 320) and sm.mask.dtype == bool
    assert sm.kind == kind and sm.requested_R == 4.0
    np.testing.assert_array_equal(np.flatnonzero(sm.mask[0]), sm.lines)
    assert np.all(sm.mask == sm.mask[0])
    assert sm.achieved_R == 320 / sm.lines.size


def test_column_mask_unknown_kind_lists_valid_kinds():
    with pytest.raises(MaskError, match="gro, equispaced, random"):
        column_mask((64, 64), "poisson", 4)


def test_mask_from_array_2d_1d_and_bool():
    shape = (8, 40)
    columns = np.zeros(40, dtype=int)
    columns[[3, 20, 21]] = 1
    from_1d = mask_from_array(columns, shape, source="cols.npy")
    from_2d = mask_from_array(np.tile(columns, (8, 1)).astype(bool), shape)
    stroke = np.zeros(shape, dtype=np.uint8)
    stroke[2, [3, 20, 21]] = 5  # a painted Labels stroke selects whole columns
    from_stroke = mask_from_array(stroke, shape)
    for sm in (from_1d, from_2d, from_stroke):
        np.testing.assert_array_equal(sm.lines, [3, 20, 21])
        assert sm.mask.shape == shape and sm.mask[:, 20].all() and not sm.mask[:, 4].any()
        assert sm.kind == "user" and sm.requested_R == sm.achieved_R == 40 / 3


def test_mask_from_array_errors():
    with pytest.raises(MaskError, match="samples no k-space line"):
        mask_from_array(np.zeros((8, 40)), (8, 40), source="layer 'mask'")
    with pytest.raises(MaskError, match=r"mask\.npy.*\(8, 40\).*found shape \(8, 39\)"):
        mask_from_array(np.ones((8, 39)), (8, 40), source="mask.npy")
    with pytest.raises(MaskError, match="NaN"):
        mask_from_array(np.full(40, np.nan), (8, 40))
    with pytest.raises(MaskError, match="dtype"):
        mask_from_array(np.array(["a"] * 40), (8, 40))


def test_load_mask_file_formats(tmp_path):
    mask = np.zeros((8, 40), dtype=bool)
    mask[:, [1, 20]] = True
    np.save(tmp_path / "m.npy", mask)
    np.savez(tmp_path / "m.npz", first=mask, second=~mask)
    with h5py.File(tmp_path / "m.h5", "w") as f:
        f["mask"] = mask
    (tmp_path / "row.txt").write_text(" ".join(str(int(v)) for v in mask[0]) + "\n")
    (tmp_path / "idx.txt").write_text("1\n20\n")
    for name in ("m.npy", "m.npz", "m.h5", "row.txt"):
        sm = mask_from_array(load_mask_file(tmp_path / name), (8, 40), source=name)
        np.testing.assert_array_equal(sm.lines, [1, 20])
    row = load_mask_file(str(tmp_path / "idx.txt"), width=40)
    np.testing.assert_array_equal(np.flatnonzero(row), [1, 20])


def test_load_mask_file_errors(tmp_path):
    with pytest.raises(MaskError, match="missing.npy.*not found"):
        load_mask_file(tmp_path / "missing.npy")
    (tmp_path / "bad.npy").write_bytes(b"not a numpy file")
    with pytest.raises(MaskError, match="bad.npy.*cannot read"):
        load_mask_file(tmp_path / "bad.npy")
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["kspace"] = np.zeros(3)
    with pytest.raises(MaskError, match=r"other.h5.*'mask'.*\['kspace'\]"):
        load_mask_file(tmp_path / "other.h5")
    (tmp_path / "m.png").write_bytes(b"")
    with pytest.raises(MaskError, match="m.png.*unsupported"):
        load_mask_file(tmp_path / "m.png")
    (tmp_path / "idx.txt").write_text("3 70")
    with pytest.raises(MaskError, match="width"):
        load_mask_file(tmp_path / "idx.txt")
    with pytest.raises(MaskError, match=r"\[0, 40\).*70"):
        load_mask_file(tmp_path / "idx.txt", width=40)
    (tmp_path / "empty.txt").write_text("\n")
    with pytest.raises(MaskError, match="empty"):
        load_mask_file(tmp_path / "empty.txt")
