"""The ``napari-rcgan`` command line: ``sample``, ``info``, ``convert``, ``evaluate``, ``features``,
``demo``.

Every expected failure (bad file, bad parameter, mismatched weights) ends with a one-line
``napari-rcgan: error: ...`` message and exit status 2, never a traceback, and leaves no output.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from napari_rcgan.errors import ParameterError, RcganError


def _add_sample_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "sample",
        help="draw P posterior samples for a fastMRI .h5 slice or a face image",
        description="Draw P posterior samples and write them, their average, SD, error and the "
        "inputs to OUT.h5 (and optionally a PNG figure).",
    )
    parser.add_argument("input", help="fastMRI multicoil .h5 file, or a face image (PNG/JPEG)")
    parser.add_argument("--slice", type=int, default=0, help="slice index (MRI; default 0)")
    parser.add_argument("--R", type=float, default=8.0, help="acceleration (MRI; default 8)")
    parser.add_argument(
        "--mask",
        default="gro",
        help="gro | equispaced | random | a mask file (.npy/.npz/.h5/.txt) (MRI; default gro)",
    )
    parser.add_argument(
        "--hole", default="center", help="center | a hole-mask file (images; default center)"
    )
    parser.add_argument("--P", type=int, default=32, help="number of posterior samples (1-512)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the code vectors")
    parser.add_argument(
        "--weights",
        default=None,
        help="bundled name (mri, faces), a .safetensors path, or random:mri / random:inpainting "
        "(default: mri for k-space, faces for images)",
    )
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda[:N] | mps")
    parser.add_argument("--chunk", type=int, default=None, help="samples per forward pass")
    parser.add_argument(
        "--coil-combine",
        choices=("rss", "sense"),
        default="rss",
        help="coil combination for the magnitude images (MRI; sense uses ESPIRiT maps)",
    )
    parser.add_argument("--out", required=True, help="output .h5 file")
    parser.add_argument("--png", default=None, help="folder for a summary figure")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="napari-rcgan",
        description="Posterior sampling with a regularized conditional GAN (rcGAN).",
    )
    subparsers = parser.add_subparsers(dest="command", required=True)
    _add_sample_parser(subparsers)

    info = subparsers.add_parser("info", help="describe a weights file or a fastMRI .h5 file")
    info.add_argument("path", help="weights (.safetensors, bundled name, random:TASK) or .h5")

    convert = subparsers.add_parser(
        "convert", help="import the generator of a reference rcGAN Lightning checkpoint"
    )
    convert.add_argument("checkpoint", help="reference .ckpt (read with weights_only=True)")
    convert.add_argument("out", help="output .safetensors")
    convert.add_argument("--image-size", type=int, default=None, help="default: from checkpoint")

    evaluate = subparsers.add_parser("evaluate", help="measure weights on held-out data")
    evaluate.add_argument("--weights", default="mri")
    evaluate.add_argument("--data", required=True, help="folder of fastMRI .h5 files")
    evaluate.add_argument("--R", type=float, nargs="+", default=[4.0, 8.0])
    evaluate.add_argument("--P", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32])
    evaluate.add_argument("--mask", default="gro")
    evaluate.add_argument("--seed", type=int, default=0)
    evaluate.add_argument("--device", default="auto")
    evaluate.add_argument("--max-slices", type=int, default=None)
    evaluate.add_argument("--out", required=True, help="metrics .json")
    evaluate.add_argument(
        "--store-in-weights", action="store_true",
        help="also write the metrics into the weights file's metadata (the model card)",
    )

    from napari_rcgan.metrics.feature_weights import add_features_parser

    add_features_parser(subparsers)

    demo = subparsers.add_parser(
        "demo", help="open napari with the sample data and the widget (headless: write figures)"
    )
    demo.add_argument("--headless", action="store_true", help="never open a window")
    demo.add_argument("--out", default="rcgan-demo", help="figure folder for the headless run")
    demo.add_argument("--weights", default=None)
    demo.add_argument("--P", type=int, default=32)
    demo.add_argument("--R", type=float, default=4.0)
    demo.add_argument("--device", default="auto")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "sample":
            from napari_rcgan.pipeline import run_sample_command

            run_sample_command(args)
        elif args.command == "info":
            print(_info(args.path))
        elif args.command == "convert":
            _convert(args)
        elif args.command == "evaluate":
            from napari_rcgan.evaluation import run_evaluate_command

            run_evaluate_command(args)
        elif args.command == "features":
            from napari_rcgan.metrics.feature_weights import run_features_command

            run_features_command(args)
        elif args.command == "demo":
            from napari_rcgan.pipeline import run_demo_command

            run_demo_command(args)
    except RcganError as error:
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        parser.exit(2, f"napari-rcgan: error: {message}\n")
    except KeyboardInterrupt:
        parser.exit(130, "napari-rcgan: interrupted\n")
    return 0


def _info(spec: str) -> str:
    from napari_rcgan import weights
    from napari_rcgan.io import FastMRIFile, is_fastmri_candidate

    if is_fastmri_candidate(spec):
        return FastMRIFile.open(spec).describe()
    loaded_metadata = (
        weights.random_metadata(spec.split(":", 1)[1])
        if spec.startswith("random:")
        else weights.read_metadata(weights.resolve_path(spec))
    )
    return f"{spec}\n{loaded_metadata.describe()}\nmetadata: {loaded_metadata.to_json()}"


def _convert(args: argparse.Namespace) -> None:
    from napari_rcgan.models.reference_import import reference_generator_weights
    from napari_rcgan.weights import save_weights

    out = Path(args.out)
    if out.suffix != ".safetensors":
        raise ParameterError(f"{out}: the output must end in .safetensors")
    imported = reference_generator_weights(args.checkpoint, args.image_size)
    save_weights(out, imported.state_dict, imported.metadata)
    print(f"wrote {out}\n{imported.metadata.describe()}")


if __name__ == "__main__":
    sys.exit(main())
