"""The ``napari-rcgan`` command line: ``sample``, ``info``, ``convert``, ``calibrate``,
``evaluate``, ``features``, ``demo``.

Every expected failure (bad file, bad parameter, mismatched weights) ends with a one-line
``napari-rcgan: error: ...`` message and exit status 2, never a traceback, and leaves no output.

The command handlers live here; the work is the engine's. ``sample`` turns its flags into a
:class:`~napari_rcgan.session.SamplingRequest` (:func:`request_from_args`), runs it through a
:class:`~napari_rcgan.session.Session` and writes the result with :mod:`napari_rcgan.pipeline`.
A new ``sample`` option: add the flag in :func:`_add_sample_parser` and carry it into the request
in :func:`request_from_args` (a request field, or ``options`` for a feature's output producer);
outputs the producers add are written without further changes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from napari_rcgan.errors import InputFileError, ParameterError, RcganError

if TYPE_CHECKING:
    from napari_rcgan.session import RunResult, SamplingRequest

INFO_NOTES_WIDTH = 160
DEMO_NO_GUI = 3
"""Exit status of ``python -m napari_rcgan._demo`` when napari cannot start."""


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
        help="bundled name (mri, faces), a .safetensors path, or random:mri / random:inpainting / "
        "random:comodgan (default: mri for k-space, faces for images)",
    )
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda[:N] | mps")
    _add_backend_arguments(parser)
    parser.add_argument("--chunk", type=int, default=None, help="samples per forward pass")
    parser.add_argument(
        "--coil-combine",
        choices=("rss", "sense"),
        default="rss",
        help="coil combination for the magnitude images (MRI; sense uses ESPIRiT maps)",
    )
    parser.add_argument("--out", required=True, help="output .h5 file")
    parser.add_argument("--png", default=None, help="folder for a summary figure")
    parser.add_argument(
        "--pd-figure",
        default=None,
        metavar="FIG.png",
        help="write the perception-distortion plane and the PSNR/SSIM/LPIPS/DISTS-vs-P curves of "
        "the P-average (needs a reference; without one: APSD and sharpness vs P)",
    )
    parser.add_argument(
        "--self-check",
        action="store_true",
        help="hold out measured k-space lines and check the samples against them (MRI): "
        "writes selfcheck_verdict, selfcheck_error_ratio, selfcheck_coverage",
    )
    parser.add_argument(
        "--intervals",
        action="store_true",
        help="require conformal intervals (an error if the weights carry no calibration for "
        "this R); without it they are written whenever the weights carry one",
    )
    parser.add_argument(
        "--pcs", type=int, default=0, metavar="K",
        help="write K posterior principal components (pcs, pc_variances); K <= min(P-1, 10)",
    )
    parser.add_argument(
        "--roi", default=None, metavar="Y0,X0,Y1,X1",
        help="write the mean intensity of each sample in rows Y0..Y1-1, columns X0..X1-1 "
        "(roi_values)",
    )


def _add_data_label_argument(parser: argparse.ArgumentParser) -> None:
    """``--data-label``: how the weights' metadata names the data (never a local path)."""
    parser.add_argument(
        "--data-label", default=None, metavar="TEXT",
        help="how the weights' metadata names the data, e.g. 'ICBM152 2009a, held out' (default: "
        "the folder's name; the full path of this machine is never stored)",
    )


def _add_backend_arguments(parser: argparse.ArgumentParser) -> None:
    """``--backend`` and ``--precision`` (validated by the engine, one-line errors)."""
    parser.add_argument(
        "--backend",
        default="auto",
        help="auto | torch | openvino: what runs the generator (auto: OpenVINO on the CPU when "
        "napari-rcgan[openvino] is installed, else torch)",
    )
    parser.add_argument(
        "--precision",
        default="auto",
        help="auto | fp32 | bf16 (auto: bf16 where the CPU has AMX/AVX512_BF16 or the GPU has "
        "bf16, else fp32)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="napari-rcgan",
        description="Posterior sampling with a regularized conditional GAN (rcGAN).",
    )
    subparsers = parser.add_subparsers(dest="command", required=True)
    _add_sample_parser(subparsers)

    info = subparsers.add_parser("info", help="describe a weights file or a fastMRI .h5 file")
    info.add_argument("path", help="weights (.safetensors, bundled name, random:TASK) or .h5")
    info.add_argument("--json", action="store_true", help="print the full metadata as JSON")

    convert = subparsers.add_parser(
        "convert", help="import the generator of a reference rcGAN Lightning checkpoint"
    )
    convert.add_argument("checkpoint", help="reference .ckpt (read with weights_only=True)")
    convert.add_argument("out", help="output .safetensors")
    convert.add_argument("--image-size", type=int, default=None, help="default: from checkpoint")

    calibrate = subparsers.add_parser(
        "calibrate",
        help="conformal interval scales for MRI weights (stored in their metadata)",
        description="Split-conformal calibration on held-out fully sampled data: for each R, the "
        "scale lambda so that mean +- lambda*SD covers the truth (inside the object) at rate "
        ">= 1 - alpha; the coverage is measured on a disjoint part of the data.",
    )
    calibrate.add_argument("--weights", default="mri")
    calibrate.add_argument("--data", required=True, help="folder of held-out fastMRI .h5 files")
    calibrate.add_argument("--R", type=float, nargs="+", default=[4.0, 8.0])
    calibrate.add_argument("--alpha", type=float, default=0.1, help="miscoverage (default 0.1)")
    calibrate.add_argument("--P", type=int, default=32, help="samples per slice (default 32)")
    calibrate.add_argument("--mask", default="gro")
    calibrate.add_argument("--seed", type=int, default=0)
    calibrate.add_argument("--device", default="auto")
    calibrate.add_argument(
        "--test-fraction", type=float, default=0.25,
        help="fraction of the slices kept out of calibration to measure coverage (default 0.25)",
    )
    calibrate.add_argument("--max-slices", type=int, default=None)
    calibrate.add_argument("--chunk", type=int, default=None, help="samples per forward pass")
    calibrate.add_argument("--out", required=True, help="output weights .safetensors")
    _add_data_label_argument(calibrate)

    evaluate = subparsers.add_parser("evaluate", help="measure weights on held-out data")
    evaluate.add_argument("--weights", default="mri")
    evaluate.add_argument("--data", required=True, help="folder of fastMRI .h5 files (or images)")
    evaluate.add_argument("--R", type=float, nargs="+", default=[4.0, 8.0])
    evaluate.add_argument("--P", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32])
    evaluate.add_argument("--mask", default="gro")
    evaluate.add_argument("--seed", type=int, default=0)
    evaluate.add_argument("--device", default="auto")
    _add_backend_arguments(evaluate)
    evaluate.add_argument("--max-slices", type=int, default=None)
    evaluate.add_argument("--out", required=True, help="metrics .json")
    evaluate.add_argument(
        "--store-in-weights", action="store_true",
        help="also write the metrics into the weights file's metadata (the model card)",
    )
    evaluate.add_argument(
        "--store-as", default="evaluation", metavar="NAME",
        help="key of the model card entry written by --store-in-weights (default: evaluation); "
        "other entries are kept, so several data sets can be recorded",
    )
    _add_data_label_argument(evaluate)
    from napari_rcgan.metrics_cli import add_evaluate_arguments, add_features_parser

    add_evaluate_arguments(evaluate)
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
    with one_line_warnings(parser.prog):
        try:
            _run_command(args)
        except KeyboardInterrupt:
            parser.exit(130, "napari-rcgan: interrupted\n")
        except Exception as error:
            message = boundary_message(error)
            if message is None:
                raise
            parser.exit(2, f"napari-rcgan: error: {message}\n")
    return 0


def _run_command(args: argparse.Namespace) -> None:
    if args.command == "sample":
        run_sample_command(args)
    elif args.command == "info":
        print(_info(args.path, as_json=args.json))
    elif args.command == "convert":
        _convert(args)
    elif args.command == "calibrate":
        from napari_rcgan.calibration import run_calibrate_command

        run_calibrate_command(args)
    elif args.command == "evaluate":
        from napari_rcgan.evaluation import run_evaluate_command

        run_evaluate_command(args)
    elif args.command == "features":
        from napari_rcgan.metrics.feature_weights import run_features_command

        run_features_command(args)
    elif args.command == "demo":
        run_demo_command(args)


def boundary_message(error: Exception) -> str | None:
    """The one-line ``<file or option>: <problem>`` for an error a user can act on, else None.

    The project's errors carry their message; OS errors (including h5py's and PIL's) are named
    by their file; memory and device failures by what ran out or failed. Anything else is a bug
    and keeps its traceback.
    """
    if isinstance(error, RcganError):
        text = str(error).strip()
        return text.splitlines()[0] if text else type(error).__name__
    if isinstance(error, OSError):
        from napari_rcgan.io import os_error_reason

        return f"{error.filename or 'input/output'}: {os_error_reason(error)}"
    if isinstance(error, MemoryError):
        return f"memory: not enough to finish ({error or 'MemoryError'})"
    if isinstance(error, RuntimeError) and _is_device_failure(error):
        return f"device: {str(error).strip().splitlines()[0]}"
    return None


def _is_device_failure(error: RuntimeError) -> bool:
    """CUDA/MPS failures at run time (out of memory at one sample, a lost device)."""
    text = str(error)
    return type(error).__name__ == "OutOfMemoryError" or text.startswith(("CUDA", "MPS"))


@contextmanager
def one_line_warnings(prog: str) -> Iterator[None]:
    """Inside: every warning shown is one ``PROG: warning: <first line>`` line on stderr.

    Python's default shows a warning as two lines (the source location, then the source line);
    on a command line that buries the one error line a failing run ends with.
    """

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        text = str(message).strip().splitlines()
        print(f"{prog}: warning: {text[0] if text else category.__name__}", file=sys.stderr)

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield


def request_from_args(args: argparse.Namespace) -> SamplingRequest:
    """The :class:`~napari_rcgan.session.SamplingRequest` of ``napari-rcgan sample``'s flags."""
    from napari_rcgan.session import SamplingRequest
    from napari_rcgan.uncertainty import parse_roi_box

    return SamplingRequest(
        input=str(args.input),
        weights=args.weights,
        device=args.device,
        backend=args.backend,
        precision=args.precision,
        P=args.P,
        seed=args.seed,
        chunk_size=args.chunk,
        slice=args.slice,
        R=args.R,
        mask=args.mask,
        coil_combine=args.coil_combine,
        hole=args.hole,
        options={
            "self_check": bool(args.self_check),
            "intervals": True if args.intervals else None,
            "pcs": int(args.pcs),
            "roi": parse_roi_box(args.roi) if args.roi else None,
        },
    )


def run_sample_command(args: argparse.Namespace) -> RunResult:
    """``napari-rcgan sample``: validate, sample, then write OUT.h5 and the PNGs together."""
    from napari_rcgan import uncertainty
    from napari_rcgan.io import check_output_path
    from napari_rcgan.pipeline import figure_title, render_figure, write_outputs
    from napari_rcgan.session import Session

    out = Path(args.out)
    request = request_from_args(args)
    task = request.resolved_task
    if out.suffix.lower() not in (".h5", ".hdf5"):
        raise ParameterError(f"{out}: the output must be an .h5 file")
    if args.pd_figure and Path(args.pd_figure).suffix.lower() != ".png":
        raise ParameterError(f"--pd-figure {args.pd_figure}: the figure must be a .png file")
    figure = extra = None
    if args.png:
        stem = Path(args.input).stem
        name = (f"{stem}_slice{args.slice}_R{args.R:g}_P{args.P}.png" if task == "mri"
                else f"{stem}_P{args.P}.png")
        figure = check_output_path(Path(args.png) / name)
        extra = check_output_path(Path(args.png) / name.replace(".png", "_uncertainty.png"))
    check_output_path(out)
    pd_figure = check_output_path(args.pd_figure) if args.pd_figure else None
    session = Session()
    sampler = session.sampler(
        request.resolved_weights, request.device, request.backend, request.precision
    )
    uncertainty.check_options(
        dict(request.options), sampler, session.measure(request, sampler), request.P
    )
    result = session.run(request)
    if "R_warning" in result.extra_attrs:
        print(f"napari-rcgan: warning: {result.extra_attrs['R_warning']}", file=sys.stderr)
    figures = {}
    if figure is not None:
        figures[figure] = render_figure(result, figure_title(result))
        if uncertainty.has_outputs(result):
            from napari_rcgan.uncertainty_figure import render_uncertainty_figure

            figures[extra] = render_uncertainty_figure(result)
    curves = None
    if pd_figure is not None:
        from napari_rcgan import perception

        curves = perception.pd_curves(result.stack, result.reference)
        figures[pd_figure] = perception.render_pd_figure(curves, title=figure_title(result))
    write_outputs(result, out, figures)
    if "conversion_s" in result.timings:
        print(f"converted the generator for OpenVINO ({result.precision}) in "
              f"{result.timings['conversion_s']:.1f} s (once per process and input shape)")
    print(f"wrote {out} ({result.drawn} samples, {result.timings['total_s']:.1f} s, "
          f"{result.backend} {result.precision})")
    for line in uncertainty.summary_lines(result):
        print(line)
    for path in figures:
        print(f"wrote {path}")
    if curves is not None:
        for line in perception.summary_lines(curves):
            print(line)
    return result


def has_display() -> bool:
    """Whether a GUI can open: macOS/Windows, or an X11/Wayland display on Linux."""
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def demo_weights(task: str, requested: str | None) -> str:
    """The weights the demo uses: the requested ones, the bundled ones, else random (with a note)."""
    from napari_rcgan.session import DEFAULT_WEIGHTS, default_weights

    if requested:
        return requested
    weights = default_weights(task)
    if weights != DEFAULT_WEIGHTS[task]:
        print(f"note: no bundled '{DEFAULT_WEIGHTS[task]}' weights installed; using {weights}")
    return weights


def run_headless_demo(args: argparse.Namespace) -> list[Path]:
    """Sample the bundled brain and face examples and write their figures to ``args.out``."""
    from napari_rcgan.bundled import sample_data_dir
    from napari_rcgan.io import check_output_folder
    from napari_rcgan.pipeline import figure_title, render_figure, write_outputs
    from napari_rcgan.session import SamplingRequest, Session

    folder = sample_data_dir()
    brains = sorted(folder.glob("brain*.h5"))
    faces = sorted(folder.glob("face*.png"))
    if not brains and not faces:
        raise InputFileError(f"{folder}: no sample data found (brain*.h5, face*.png)")
    out = Path(args.out)
    check_output_folder(out)
    session = Session()
    written = []
    jobs = [(path, "mri") for path in brains[:1]] + [(path, "inpainting") for path in faces[:1]]
    for path, task in jobs:
        weights = demo_weights(task, args.weights if task == "mri" else None)
        request = SamplingRequest(input=str(path), weights=weights, device=args.device, P=args.P,
                                  R=args.R)
        result = session.run(request)
        stem = f"{path.stem}_R{args.R:g}_P{args.P}" if task == "mri" else f"{path.stem}_P{args.P}"
        figure = out / f"{stem}.png"
        write_outputs(result, out / f"{stem}.h5", {figure: render_figure(result, figure_title(result))})
        print(f"wrote {figure} ({result.timings['total_s']:.1f} s)")
        written.append(figure)
    return written


def run_demo_command(args: argparse.Namespace) -> None:
    """``napari-rcgan demo``: napari with the sample and the widget, or the headless pipeline.

    The GUI runs as ``python -m napari_rcgan._demo`` in a child process, so the CLI never imports
    napari or Qt; when napari cannot start there the headless demo runs instead.
    """
    if not args.headless and has_display():
        command = [sys.executable, "-m", "napari_rcgan._demo", "--P", str(args.P), "--R",
                   str(args.R), "--device", args.device]
        if args.weights:
            command += ["--weights", args.weights]
        status = subprocess.call(command)
        if status != DEMO_NO_GUI:
            if status != 0:
                raise RcganError(f"the napari demo ended with exit status {status}")
            return
        print("running the headless demo instead")
    else:
        print("headless demo" if args.headless else "no display: running the headless demo")
    run_headless_demo(args)


def _info(spec: str, as_json: bool = False) -> str:
    """A short human summary of weights or a fastMRI file; ``as_json``: the full block."""
    from napari_rcgan import weights
    from napari_rcgan.io import FastMRIFile, is_fastmri_candidate

    if is_fastmri_candidate(spec):
        data = FastMRIFile.open(spec)
        if as_json:
            return json.dumps(
                {"path": str(data.path), "num_slices": data.num_slices,
                 "num_coils": data.num_coils, "kspace_shape": list(data.kspace_shape),
                 "has_reference": data.has_reference, "attrs": dict(data.attrs)},
                indent=2, default=str,
            )
        return data.describe()
    metadata = (
        weights.random_metadata(spec.split(":", 1)[1])
        if spec.startswith("random:")
        else weights.read_metadata(weights.resolve_path(spec))
    )
    if as_json:
        return json.dumps(json.loads(metadata.to_json()), indent=2)
    lines = [spec]
    for line in metadata.describe().splitlines():
        if line.startswith("notes: "):
            line = textwrap.shorten(line, width=INFO_NOTES_WIDTH, placeholder=" …")
        lines.append(f"  {line}")
    lines += [f"  {line}" for line in _card_summary(metadata.metrics)]
    entries = sorted(key for key, value in (metadata.metrics or {}).items()
                     if key.startswith("evaluation") and isinstance(value, dict))
    named = f" (model card entries {', '.join(entries)})" if len(entries) > 1 else ""
    lines.append(f"full metadata{named}: napari-rcgan info {spec} --json")
    return "\n".join(lines)


def _card_summary(metrics: dict) -> list[str]:
    """One line per R of the stored ``evaluation``: PSNR of zero filling, P=1 and the largest P,
    and [E1/E8]dB (or the largest P's) against its ideal value for a calibrated posterior."""
    from napari_rcgan.stats import ideal_e1_over_ep_db

    evaluation = (metrics or {}).get("evaluation") or {}
    lines = []
    for R, values in sorted((evaluation.get("R") or {}).items(), key=lambda item: float(item[0])):
        psnr = values.get("psnr") or {}
        if not psnr:
            continue
        largest = max(psnr, key=int)
        text = f"measured at R={R}: PSNR {psnr.get('1', float('nan')):.2f} dB (P=1), "
        text += f"{psnr[largest]:.2f} dB (P={largest})"
        if "zero_filled_psnr" in values:
            text += f", zero-filled {values['zero_filled_psnr']:.2f} dB"
        ratios = {int(P): value for P, value in (values.get("e1_over_ep_db") or {}).items() if int(P) > 1}
        if ratios:
            P = 8 if 8 in ratios else max(ratios)
            text += f", [E1/E{P}]dB {ratios[P]:.2f} (ideal {ideal_e1_over_ep_db(P):.2f})"
        lines.append(text)
    return lines


def _convert(args: argparse.Namespace) -> None:
    from napari_rcgan.io import check_output_path
    from napari_rcgan.models.reference_import import reference_generator_weights
    from napari_rcgan.weights import save_weights

    out = Path(args.out)
    if out.suffix != ".safetensors":
        raise ParameterError(f"{out}: the output must end in .safetensors")
    check_output_path(out)
    imported = reference_generator_weights(args.checkpoint, args.image_size)
    save_weights(out, imported.state_dict, imported.metadata)
    print(f"wrote {out}\n{imported.metadata.describe()}")


if __name__ == "__main__":
    sys.exit(main())
