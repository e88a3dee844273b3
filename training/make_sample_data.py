"""Build the files in ``sample_data/`` and the held-out evaluation sets of the demo model card.

Usage::

    python -m training.make_sample_data [--out sample_data] [--heldout-anatomy DIR] [--real-mr DIR]
        [--more-subjects DIR]

``sample_data/brain_sim.h5``: four Colin27 slices from the *test* segments of
:func:`training.simulate.split_positions` (two axial, one coronal, one sagittal; T2-like), never
seen in training, simulated as raw 10-coil acquisitions (256×136 k-space: 2× readout
oversampling, a 136×136 field of view, larger than the 128×128 demo weights). ``--heldout-anatomy``
writes six slices of the ICBM152 template (never used in training; T1 and T2-like, all three
orientations; 16 coils) and ``--real-mr`` one 16-coil acquisition simulated from pydicom's
real ``MR_small.dcm`` slice, the two other model-card sets. ``--more-subjects`` writes the 11
slices of two more subjects that ship with dipy (:func:`training.simulate.slice_anatomy`; 16
coils), a further check for weights that did not train on them (``data.anatomy`` without ``dipy``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from training.simulate import (
    ORIENTATIONS,
    rss_reconstruction,
    simulate_kspace,
    slice_anatomy,
    split_positions,
    write_fastmri_file,
    write_heldout_file,
)

BRAIN_FILE = "brain_sim.h5"
HELDOUT_FILE = "file_brain_heldout_mni152.h5"
REAL_MR_FILE = "file_brain_real_mr_small.h5"
MORE_SUBJECTS_FILE = "file_brain_dipy.h5"
KSPACE_SHAPE = (256, 136)
FOV = 136
BRAIN_COILS = 10
"""More than the 8 virtual coils, so the sample is SVD-compressed like the training examples
(8 coils or fewer are used as they are, the reference convention); 10 keeps the file small."""
EVAL_COILS = 16
FACE_SIZE = 128
# (name, loader, (top, bottom, left, right)) tight face crops like the LFW training faces.
FACE_CROPS = {
    "face_astronaut.png": ("astronaut", (62, 190, 186, 314)),
    "face_grace_hopper.png": ("grace_hopper", (150, 320, 185, 355)),
}


def _public_domain_photo(name: str) -> np.ndarray:
    if name == "astronaut":
        from skimage import data

        return data.astronaut()
    import matplotlib.cbook as cbook
    import matplotlib.pyplot as plt

    with cbook.get_sample_data("grace_hopper.jpg") as handle:
        return plt.imread(handle)


def write_faces(out: Path) -> list[Path]:
    """Crop the two portraits to the face and save them as ``FACE_SIZE``² RGB PNGs."""
    written = []
    for file_name, (photo, (top, bottom, left, right)) in FACE_CROPS.items():
        crop = _public_domain_photo(photo)[top:bottom, left:right, :3]
        image = Image.fromarray(np.asarray(crop, dtype=np.uint8)).resize(
            (FACE_SIZE, FACE_SIZE), Image.Resampling.LANCZOS
        )
        image.save(out / file_name)
        written.append(out / file_name)
    return written


def _test_positions(source: str, orientation: str) -> tuple[int, int]:
    """One slice from each of the two test segments of ``orientation``."""
    positions = split_positions(source, orientation, "test")
    return positions[len(positions) // 4], positions[3 * len(positions) // 4]


def brain_slices() -> list[tuple[str, int, str]]:
    """The four held-out Colin27 slices of ``brain_sim.h5``: ``(orientation, index, contrast)``."""
    axial = _test_positions("colin27", "axial")
    return [
        ("axial", axial[0], "t2"),
        ("axial", axial[1], "t2"),
        ("coronal", _test_positions("colin27", "coronal")[0], "t2"),
        ("sagittal", _test_positions("colin27", "sagittal")[1], "t2"),
    ]


def heldout_slices() -> list[tuple[str, int, str]]:
    """Six ICBM152 slices, two per orientation (T2-like and T1)."""
    slices = []
    for orientation in ORIENTATIONS:
        first, second = _test_positions("mni152", orientation)
        slices += [(orientation, first, "t2"), (orientation, second, "t1")]
    return slices


def write_brain(out: Path) -> Path:
    """``out/brain_sim.h5``: the held-out Colin27 slices of :func:`brain_slices`."""
    return write_heldout_file(
        out / BRAIN_FILE, "colin27", brain_slices(), seed=0, coils=BRAIN_COILS,
        kspace_shape=KSPACE_SHAPE, image_size=FOV, split="test",
    )


def write_heldout_anatomy(out: Path) -> Path:
    """``out/file_brain_heldout_mni152.h5``: :func:`heldout_slices` of the ICBM152 template."""
    return write_heldout_file(
        out / HELDOUT_FILE, "mni152", heldout_slices(), seed=1, coils=EVAL_COILS,
        kspace_shape=KSPACE_SHAPE, image_size=FOV, split="held-out anatomy",
    )


def write_real_mr(out: Path) -> Path:
    """``out/file_brain_real_mr_small.h5``: k-space simulated from pydicom's real 64×64
    ``MR_small.dcm`` (magnitude scaled to [0, 1], resized to 85 % of the field of view)."""
    import pydicom
    from pydicom.data import get_testdata_file

    pixels = pydicom.dcmread(get_testdata_file("MR_small.dcm")).pixel_array.astype(np.float64)
    image = pixels / pixels.max()
    rng = np.random.default_rng(2)
    kspace = simulate_kspace(image, EVAL_COILS, KSPACE_SHAPE, FOV, rng=rng)[None]
    return write_fastmri_file(
        out / REAL_MR_FILE, kspace, rss_reconstruction(kspace, FOV), acquisition="AXT1",
        source="pydicom MR_small.dcm", contrast="real MR magnitude", patient_id="pydicom-mr-small",
        layout="raw", split="real MR",
    )


def write_more_subjects(out: Path) -> Path:
    """``out/file_brain_dipy.h5``: the 11 dipy slices of two subjects (T1-like, as prepared for
    training by :func:`training.simulate.slice_anatomy`), simulated like the other evaluation sets."""
    planes = slice_anatomy("dipy")
    kspace = np.stack([
        simulate_kspace(np.asarray(plane), EVAL_COILS, KSPACE_SHAPE, FOV,
                        rng=np.random.default_rng([2, number]))
        for number, plane in enumerate(planes)
    ])
    return write_fastmri_file(
        out / MORE_SUBJECTS_FILE, kspace, rss_reconstruction(kspace, FOV), acquisition="AXT1",
        source="dipy t1_coronal_slice.npy, S0_10slices.nii.gz", contrast="t1",
        patient_id="dipy-two-subjects", layout="raw", split="more subjects",
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("sample_data"))
    parser.add_argument("--heldout-anatomy", type=Path, default=None,
                        help="also write the ICBM152 evaluation file into this folder")
    parser.add_argument("--real-mr", type=Path, default=None,
                        help="also write the MR_small.dcm evaluation file into this folder")
    parser.add_argument("--more-subjects", type=Path, default=None,
                        help="also write the dipy evaluation file (two more subjects) into this folder")
    args = parser.parse_args(argv)
    written = []
    args.out.mkdir(parents=True, exist_ok=True)
    written += [write_brain(args.out), *write_faces(args.out)]
    for folder, writer in ((args.heldout_anatomy, write_heldout_anatomy), (args.real_mr, write_real_mr),
                           (args.more_subjects, write_more_subjects)):
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)
            written.append(writer(folder))
    for path in written:
        print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
