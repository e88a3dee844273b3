"""Slots that may fire while the viewer is closing.

napari keeps emitting layer and dims events while the window tears down; a slot that touches a Qt
widget already deleted then raises ``RuntimeError`` ("wrapped C/C++ object ... has been
deleted"). :func:`ignore_when_closing` makes such a slot do nothing in that case.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

Slot = TypeVar("Slot", bound=Callable[..., None])


def ignore_when_closing(slot: Slot) -> Slot:
    """``slot``, returning quietly when its Qt side is gone (``RuntimeError``)."""

    @functools.wraps(slot)
    def guarded(*args: Any, **kwargs: Any) -> None:
        try:
            slot(*args, **kwargs)
        except RuntimeError:  # the Qt side is gone (viewer closing)
            return

    return guarded  # type: ignore[return-value]
