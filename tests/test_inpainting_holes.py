"""Inpainting holes: the centred square and validation of user holes."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from napari_rcgan.errors import MaskError, ParameterError
from napari_rcgan.physics.inpainting import center_square_hole, validate_hole


def test_default_hole_is_centred_128_square_in_256_image():
    hole = center_square_hole((256, 256))
    assert hole.shape == (256, 256) and hole.dtype == bool
    assert hole.sum() == 128 * 128
    assert hole[64:192, 64:192].all()
    assert not hole[63, :].any() and not hole[192, :].any()
    assert not hole[:, 63].any() and not hole[:, 192].any()


@settings(max_examples=30, deadline=None)
@given(height=st.integers(2, 80), width=st.integers(2, 80), data=st.data())
def test_square_hole_is_a_centred_square(height, width, data):
    side = data.draw(st.integers(1, min(height, width) - 1))
    hole = center_square_hole((height, width), side)
    rows, cols = np.flatnonzero(hole.any(axis=1)), np.flatnonzero(hole.any(axis=0))
    assert hole.sum() == side * side and rows.size == cols.size == side
    assert abs(rows[0] - (height - rows[-1] - 1)) <= 1
    assert abs(cols[0] - (width - cols[-1] - 1)) <= 1


@pytest.mark.parametrize("side", [0, -3, 64, 100])
def test_square_hole_size_out_of_range(side):
    with pytest.raises(ParameterError, match=f"hole_size={side}"):
        center_square_hole((64, 80), side)


def test_validate_hole_converts_to_bool():
    painted = np.zeros((32, 32), dtype=np.int32)
    painted[4:9, 10:20] = 2
    hole = validate_hole(painted, (32, 32), source="Labels 'hole'")
    assert hole.dtype == bool and hole.sum() == 50 and hole[4, 10]


def test_validate_hole_errors():
    with pytest.raises(MaskError, match="Labels 'hole'.*no missing pixel"):
        validate_hole(np.zeros((32, 32)), (32, 32), source="Labels 'hole'")
    with pytest.raises(MaskError, match="whole image"):
        validate_hole(np.ones((32, 32), dtype=bool), (32, 32))
    with pytest.raises(MaskError, match=r"hole.png.*\(32, 32\).*found shape \(32, 31\)"):
        validate_hole(np.ones((32, 31)), (32, 32), source="hole.png")
    with pytest.raises(MaskError, match="NaN"):
        validate_hole(np.full((32, 32), np.nan), (32, 32))
    with pytest.raises(MaskError, match="dtype"):
        validate_hole(np.full((32, 32), "x"), (32, 32))
