"""Inpainting holes: the centred square of the rcGAN paper and user-painted holes.

A hole is a bool ``(H, W)`` array, True on the missing pixels.
"""

from __future__ import annotations

import numpy as np

from napari_rcgan.errors import MaskError, ParameterError


def center_square_hole(shape: tuple[int, int], hole_size: int | None = None) -> np.ndarray:
    """The centred square hole (128 x 128 in a 256 x 256 image by default).

    Args:
        shape: ``(H, W)`` of the image.
        hole_size: side of the square, ``1 <= hole_size < min(H, W)``; default ``H // 2``.

    Returns:
        bool ``(H, W)``, True on rows ``(H - s) // 2 ... + s`` and columns
        ``(W - s) // 2 ... + s`` for side ``s``.
    """
    height, width = shape
    side = height // 2 if hole_size is None else hole_size
    if not 1 <= side < min(height, width):
        raise ParameterError(
            f"hole_size={side} is out of range for a {height}x{width} image: "
            f"expected 1 <= hole_size < {min(height, width)}"
        )
    top, left = (height - side) // 2, (width - side) // 2
    hole = np.zeros(shape, dtype=bool)
    hole[top : top + side, left : left + side] = True
    return hole


def validate_hole(hole, shape: tuple[int, int], source: str = "hole") -> np.ndarray:
    """Check a user hole (a file or a painted napari Labels layer) and make it boolean.

    Args:
        hole: bool or numeric ``(H, W)``; nonzero marks a missing pixel.
        shape: ``(H, W)`` of the image.
        source: what the hole came from (a file name, a layer name), for messages.

    Returns:
        bool ``(H, W)``, True on the missing pixels.
    """
    values = np.asarray(hole)
    if values.dtype.kind not in "biuf":
        raise MaskError(f"{source}: expected a boolean or numeric hole, found dtype {values.dtype}")
    if values.dtype.kind == "f" and not np.all(np.isfinite(values)):
        raise MaskError(f"{source}: expected finite hole values, found NaN or infinity")
    if values.shape != tuple(shape):
        raise MaskError(
            f"{source}: expected a hole of shape {tuple(shape)}, found shape {values.shape}"
        )
    missing = values != 0
    if not missing.any():
        raise MaskError(f"{source}: the hole has no missing pixel")
    if missing.all():
        raise MaskError(
            f"{source}: the hole covers the whole image, leaving no pixel to condition on"
        )
    return missing
