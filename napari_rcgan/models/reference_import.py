"""Import the generator of a reference rcGAN Lightning checkpoint (github.com/matt-bendel/rcGAN).

The checkpoint is read with ``torch.load(..., weights_only=True)``: only tensors and a short
allow-list of plain containers (``argparse.Namespace`` for the saved hyper-parameters, numpy
scalars for ``beta_std``) are accepted, so no code in the file can run.
"""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path

import numpy as np
import torch

from napari_rcgan.errors import WeightsError
from napari_rcgan.weights import NOISE_CHANNELS, Weights, WeightsMetadata

GENERATOR_PREFIX = "generator."
# Layers the reference builds but never calls in forward().
UNUSED_REFERENCE_KEYS = re.compile(r"^(res_layer_1\.|down_sample_layers\.0\.bn\.)")
_NUMPY_SCALAR = np._core.multiarray.scalar if hasattr(np, "_core") else np.core.multiarray.scalar
# Checkpoints written with numpy 1.x name the scalar constructor numpy.core.multiarray.scalar.
SAFE_GLOBALS = [
    argparse.Namespace,
    np.dtype,
    type(np.dtype("float64")),
    _NUMPY_SCALAR,
    (_NUMPY_SCALAR, "numpy.core.multiarray.scalar"),
]


def _load_checkpoint(path: Path) -> dict:
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as error:
        raise WeightsError(f"{path}: no such checkpoint file") from error
    except Exception as error:  # torch raises UnpicklingError, RuntimeError, EOFError, ...
        raise WeightsError(
            f"{path}: not a loadable reference checkpoint with weights_only=True ({error})"
        ) from error
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise WeightsError(
            f"{path}: no 'state_dict' in the checkpoint; is it a Lightning checkpoint?"
        )
    return checkpoint


def reference_generator_weights(path: str | os.PathLike, image_size: int | None = None) -> Weights:
    """Read the generator of a reference checkpoint into our format.

    Args:
        path: the reference ``.ckpt``.
        image_size: square image size; default: ``im_size`` from the saved hyper-parameters, else 384.
    """
    path = Path(path)
    checkpoint = _load_checkpoint(path)
    state = {
        key[len(GENERATOR_PREFIX) :]: value
        for key, value in checkpoint["state_dict"].items()
        if key.startswith(GENERATOR_PREFIX)
    }
    state = {key: value for key, value in state.items() if not UNUSED_REFERENCE_KEYS.match(key)}
    if "down_sample_layers.0.conv_1.weight" not in state or "conv2.1.weight" not in state:
        raise WeightsError(f"{path}: the checkpoint holds no rcGAN MRI generator")
    first = state["down_sample_layers.0.conv_1.weight"]
    levels = len({key.split(".")[1] for key in state if key.startswith("down_sample_layers.")})
    in_channels = first.shape[1]
    out_channels = state["conv2.1.weight"].shape[0]
    if in_channels != out_channels + NOISE_CHANNELS or out_channels % 2:
        raise WeightsError(
            f"{path}: generator has {in_channels} input and {out_channels} output channels; "
            f"expected 2C+{NOISE_CHANNELS} and 2C for C coils"
        )
    args = checkpoint.get("hyper_parameters", {}).get("args")
    size = image_size or int(getattr(args, "im_size", 384))
    beta = checkpoint.get("beta_std")
    metadata = WeightsMetadata(
        task="mri",
        image_size=[size, size],
        channels=out_channels // 2,
        base_width=first.shape[0],
        num_pool_layers=levels,
        masks=["gro"],
        beta_sd=None if beta is None else float(beta),
        training={"imported_from": path.name, "source": "reference rcGAN checkpoint"},
    )
    weights = Weights(metadata, state, str(path))
    weights.build_generator()
    return weights
