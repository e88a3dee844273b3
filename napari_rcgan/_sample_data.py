"""napari sample data: simulated brain k-space (fastMRI layout) and a face with the centred hole.

The files ship inside the wheel as ``napari_rcgan/sample_data`` (hatch force-include of the
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


def brain_sample() -> list[tuple]:
    """Brain slices (simulated k-space from real anatomy): the reference stack of the sample file,
    with its k-space reachable by the Posterior sampler widget."""
    from napari_rcgan._reader import read_fastmri

    return read_fastmri(brain_sample_path())


def face_sample() -> list[tuple]:
    """A face photo plus a ``hole`` Labels layer holding the centred square (paintable)."""
    from napari_rcgan._reader import read_face_image
    from napari_rcgan.physics.inpainting import center_square_hole

    layers = read_face_image(face_sample_path())
    image, kwargs, _ = layers[0]
    hole = center_square_hole(image.shape[:2]).astype("uint8")
    hole_kwargs = {"name": f"{kwargs['name']} hole", "opacity": 0.5}
    return [*layers, (hole, hole_kwargs, "labels")]
