"""Export the generator of a training checkpoint as plugin weights.

Usage::

    python -m training.export CKPT OUT.safetensors [--notes TEXT]

Writes the generator tensors (the weight average when the run kept one,
``train.generator_ema_half_life``; no critic, no optimizer state) and a
:class:`napari_rcgan.weights.WeightsMetadata` block with the full config, the β_SD at the end of
training and its per-epoch history, the dataset description and the latest validation metrics,
so that ``PosteriorSampler(OUT)`` and ``napari-rcgan info OUT`` can use and describe it. The
checkpoint is read with ``torch.load(weights_only=True)``: no code in it runs.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from napari_rcgan.errors import RcganError, WeightsError
from napari_rcgan.weights import Weights, portable_name, save_weights
from training.config import ConfigError, config_from_dict
from training.module import AVERAGED_GENERATOR_PREFIX, GENERATOR_PREFIX, weights_metadata


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """A training checkpoint, loaded with ``weights_only=True``."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: no such checkpoint file")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # UnpicklingError, RuntimeError, EOFError, ...
        raise WeightsError(f"{path}: not a loadable training checkpoint ({error})") from error
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise WeightsError(f"{path}: no 'state_dict'; not a training.train checkpoint")
    if "config" not in checkpoint.get("hyper_parameters", {}):
        raise WeightsError(f"{path}: no training config in the checkpoint; was it written by "
                           "python -m training.train?")
    return checkpoint


def _portable_config(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` with the absolute data folders reduced to their names (weights are shared)."""
    data = dict(values["data"])
    for key in ("root", "train", "val"):
        if data.get(key) and Path(os.path.expanduser(data[key])).is_absolute():
            data[key] = portable_name(data[key])
    return {**values, "data": data}


def export_checkpoint(
    checkpoint_path: str | os.PathLike, out: str | os.PathLike, notes: str | None = None
) -> Path:
    """Write the weights of ``checkpoint_path`` to ``out`` (atomically); returns ``out``."""
    checkpoint_path = Path(checkpoint_path)
    checkpoint = load_checkpoint(checkpoint_path)
    try:
        config = config_from_dict(checkpoint["hyper_parameters"]["config"], str(checkpoint_path))
    except ConfigError as error:
        raise WeightsError(f"{checkpoint_path}: its config is not valid ({error})") from error
    averaged = any(key.startswith(AVERAGED_GENERATOR_PREFIX) for key in checkpoint["state_dict"])
    prefix = AVERAGED_GENERATOR_PREFIX if averaged else GENERATOR_PREFIX
    state = {
        key[len(prefix):]: value
        for key, value in checkpoint["state_dict"].items()
        if key.startswith(prefix)
    }
    if not state:
        raise WeightsError(f"{checkpoint_path}: no generator tensors in the checkpoint")
    rcgan = checkpoint.get("rcgan", {})
    dataset = rcgan.get("dataset") or checkpoint["hyper_parameters"].get("dataset", {})
    iteration = int(rcgan.get("iteration", checkpoint.get("global_step", 0)
                                // config.steps_per_iteration))
    epoch = int(checkpoint.get("epoch", rcgan.get("epoch", 0)))
    metrics = {k: v for k, v in rcgan.get("val_metrics", {}).items()
               if isinstance(v, (int, float, str))}
    if metrics:
        metrics["measured_on"] = "validation set during training (normalised channels / RSS)"
    provenance = (dataset.get("train", {}) or {}).get("provenance", [])
    if notes is None:
        notes = (
            f"{config.method} trained for {iteration} iterations (last epoch {epoch}) "
            f"on {', '.join(provenance) or dataset.get('train', {}).get('kind', 'unknown data')}"
        )
    training = {
        "method": config.method,
        "config": _portable_config(config.to_dict()),
        "beta_sd_nominal": rcgan.get("beta_sd_nominal"),
        "beta_sd_history": rcgan.get("beta_sd_history", []),
        "dataset": dataset,
        "iterations": iteration,
        "epoch": epoch,
        "global_step": int(checkpoint.get("global_step", 0)),
        "checkpoint": checkpoint_path.name,
        "generator": f"weight average, half-life {config.train.generator_ema_half_life} iterations"
        if averaged else "trained weights",
        "exported": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "hardware": rcgan.get("hardware", "not recorded"),
        "train_seconds": rcgan.get("train_seconds"),
        "torch": torch.__version__,
    }
    beta = rcgan.get("beta_sd")
    metadata = weights_metadata(
        config, beta_sd=None if beta is None else float(beta),
        beta_sd_by_R=list(rcgan.get("beta_sd_by_R", [])), training=training,
        metrics=metrics, notes=notes,
    )
    Weights(metadata, state, str(checkpoint_path)).build_generator()  # strict key/shape check
    return save_weights(out, state, metadata)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.export",
        description="Export the generator of a training checkpoint as napari-rcgan weights.",
    )
    parser.add_argument("checkpoint", type=Path, help="training checkpoint (e.g. RUN/last.ckpt)")
    parser.add_argument("out", type=Path, help="output .safetensors")
    parser.add_argument("--notes", default=None, help="free text stored in the metadata")
    args = parser.parse_args(argv)
    if args.out.suffix != ".safetensors":
        parser.error(f"{args.out}: the output must end in .safetensors")
    try:
        path = export_checkpoint(args.checkpoint, args.out, args.notes)
    except RcganError as error:
        print(f"training.export: error: {error}", file=sys.stderr)
        return 2
    from napari_rcgan.weights import read_metadata

    print(f"wrote {path}\n{read_metadata(path).describe()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
