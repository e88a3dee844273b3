"""The sample files that ship with the package: simulated brain k-space and face photos.

They ship inside the wheel as ``napari_rcgan/sample_data`` (hatch force-include of the
repository's top-level ``sample_data/``); an editable install reads the repository folder.
"""

from __future__ import annotations

from pathlib import Path

from napari_rcgan.errors import InputFileError

BRAIN_FILE = "brain_sim.h5"
FACE_PATTERN = "face_*.png"


def sample_data_dir() -> Path:
    """The folder holding the sample files (installed package first, then the repository)."""
    packaged = Path(__file__).parent / "sample_data"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "sample_data"


def brain_sample_path() -> Path:
    path = sample_data_dir() / BRAIN_FILE
    if not path.is_file():
        raise InputFileError(
            f"{path}: sample file missing; reinstall napari-rcgan (the wheel ships sample_data/)"
        )
    return path


def face_sample_path() -> Path:
    faces = sorted(sample_data_dir().glob(FACE_PATTERN))
    if not faces:
        raise InputFileError(
            f"{sample_data_dir()}: no {FACE_PATTERN} sample face found; reinstall napari-rcgan"
        )
    return faces[0]
