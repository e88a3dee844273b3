"""napari sample data: simulated brain k-space (fastMRI layout) and a face with the centred hole.

The files and where they are installed: :mod:`napari_rcgan.bundled`.
"""

from __future__ import annotations

from napari_rcgan.bundled import brain_sample_path, face_sample_path


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
