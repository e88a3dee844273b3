"""Exceptions raised at the boundaries of the engine.

Every message names the offending file or parameter, what was expected and what was found, so the
CLI can print it as one line and the napari widget can show it as a notification.
"""

from __future__ import annotations


class RcganError(Exception):
    """Base class of every error the engine raises on purpose."""


class InputFileError(RcganError):
    """An input file is missing, unreadable, or does not hold what was expected."""


class OutputFileError(RcganError):
    """An output cannot be written: a folder in its place, a read-only or full disk, ..."""


class NumericalError(RcganError):
    """Values outside what float32 computation can represent: NaN/Inf outputs, overflow, underflow."""


class MaskError(RcganError):
    """A sampling mask or inpainting hole is empty, of the wrong shape, or otherwise unusable."""


class ParameterError(RcganError, ValueError):
    """A numeric parameter (R, P, slice, chunk, seed, ...) is out of range."""


class WeightsError(RcganError):
    """A weights file is missing, corrupted, or does not fit the input it is asked to process."""


class SamplingCancelled(RcganError):
    """Sampling was cancelled by the caller before all P samples were drawn."""


class BackendWarning(UserWarning):
    """A backend could not be used as asked and sampling carried on with another one."""
