"""Held-out calibration slices for ``napari-rcgan calibrate`` (conformal intervals).

Usage::

    python -m training.calibration_data --out DIR [--seed 3] [--contrast t2]

writes ``DIR/file_brain_calibration_colin27.h5``: every Colin27 slice of the *val* and *test*
segments of :func:`training.simulate.split_positions` (all three orientations; never seen in
training) except the four ``sample_data/brain_sim.h5`` slices, simulated exactly like the sample
data (raw 10-coil 256×136 acquisitions, a 136×136 field of view), with their own coil and noise
draws (``--seed``). Calibration data must be exchangeable with the scans the intervals are used on;
these are, for the bundled sample data.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from training.make_sample_data import BRAIN_COILS, FOV, KSPACE_SHAPE, brain_slices
from training.simulate import ORIENTATIONS, split_positions, write_heldout_file

CALIBRATION_FILE = "file_brain_calibration_colin27.h5"


def calibration_slices(contrast: str = "t2") -> list[tuple[str, int, str]]:
    """``(orientation, index, contrast)`` of every held-out Colin27 slice but the sample ones."""
    shipped = {(orientation, index) for orientation, index, _ in brain_slices()}
    return [
        (orientation, index, contrast)
        for orientation in ORIENTATIONS
        for split in ("val", "test")
        for index in split_positions("colin27", orientation, split)
        if (orientation, index) not in shipped
    ]


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--seed", type=int, default=3, help="seed of the coil and noise draws")
    parser.add_argument("--contrast", choices=("t1", "t2"), default="t2")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    slices = calibration_slices(args.contrast)
    path = write_heldout_file(
        args.out / CALIBRATION_FILE, "colin27", slices, seed=args.seed, coils=BRAIN_COILS,
        kspace_shape=KSPACE_SHAPE, image_size=FOV, split="calibration (val + test)",
    )
    print(f"wrote {path} ({len(slices)} slices)")
    return path


if __name__ == "__main__":
    main()
