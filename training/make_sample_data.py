"""Build the files in ``sample_data/``: held-out simulated brain slices and two public-domain faces.

Usage::

    python -m training.make_sample_data --simulated DATASET_DIR [--out sample_data]

``DATASET_DIR`` is a compact dataset written by ``python -m training.simulate --compact``; the brain
slices are taken from its *test* split, so no shipped slice was seen in training.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import h5py
import numpy as np
from PIL import Image

from training.simulate import write_fastmri_file

BRAIN_FILE = "brain_sim.h5"
BRAIN_SLICES = (1, 3, 5, 7)
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


def write_brain(simulated: Path, out: Path) -> Path:
    """Copy a few slices of the first test volume into ``out/brain_sim.h5``."""
    description = json.loads((simulated / "dataset.json").read_text())
    test_files = sorted((simulated / "test").glob("*.h5"))
    if not test_files:
        raise FileNotFoundError(f"{simulated}/test: no .h5 files; run python -m training.simulate first")
    source_file = test_files[0]
    with h5py.File(source_file, "r") as handle:
        kspace = handle["kspace"][list(BRAIN_SLICES)]
        reference = handle["reconstruction_rss"][list(BRAIN_SLICES)]
        attrs = dict(handle.attrs)
    provenance = str(attrs["provenance"])
    source, contrast = provenance[provenance.index("(") + 1 : -1].split(", ")
    slice_indices = [int(attrs["slice_indices"][i]) for i in BRAIN_SLICES]
    return write_fastmri_file(
        out / BRAIN_FILE, kspace, reference, str(attrs["acquisition"]),
        source=source, contrast=contrast, patient_id="sample-colin27-test",
        layout="compact", slice_indices=slice_indices, split="test",
        dataset_seed=int(description["seed"]),
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--simulated", required=True, type=Path, help="compact simulated dataset")
    parser.add_argument("--out", type=Path, default=Path("sample_data"))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for path in [write_brain(args.simulated, args.out), *write_faces(args.out)]:
        print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
