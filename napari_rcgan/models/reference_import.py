"""Import the generator of a reference rcGAN Lightning checkpoint (github.com/matt-bendel/rcGAN).

The reference training script (``train.py`` + ``models/lightning/rcGAN.py``, PyTorch Lightning)
writes a checkpoint holding, besides the ``generator.*`` / ``discriminator.*`` tensors of its
``state_dict``, the Lightning loop, callback and optimizer state (plain containers and tensors),
``hyper_parameters = {"args": types.SimpleNamespace(...), "exp_name": str, "num_gpus": int}``
(its YAML config turned into a namespace), ``beta_std`` (its SD-reward multiplier ``std_mult``, a
numpy scalar once it has been tuned) and ``is_valid``.

The checkpoint is read with ``torch.load(..., weights_only=True)`` and an explicit allow-list
(:data:`SAFE_GLOBALS`: the two namespace classes, numpy dtypes and the numpy scalar constructor
under its numpy 1.x and 2.x names): nothing else can be unpickled, so no code in the file runs.
"""

from __future__ import annotations

import argparse
import os
import re
import types
from pathlib import Path
from typing import Any

import numpy as np
import torch

from napari_rcgan.errors import ParameterError, WeightsError
from napari_rcgan.weights import (
    MAX_IMAGE_SIDE,
    NOISE_CHANNELS,
    Weights,
    WeightsMetadata,
    min_image_size,
)

GENERATOR_PREFIX = "generator."
# Layers the reference builds but never calls in forward().
UNUSED_REFERENCE_KEYS = re.compile(r"^(res_layer_1\.|down_sample_layers\.0\.bn\.)")
_NUMPY_SCALAR = np._core.multiarray.scalar if hasattr(np, "_core") else np.core.multiarray.scalar
# numpy >= 1.25 gives every dtype its own class (numpy.dtypes.Float32DType, ...): unpickling a
# dtype builds one of these, so each must be allowed.
_NUMPY_DTYPE_CLASSES = sorted({type(np.dtype(code)) for code in "?bhilqBHILQefdgFDG"}, key=str)
_UNSUPPORTED_GLOBAL = re.compile(r"Unsupported global: GLOBAL (\S+)")
SAFE_GLOBALS = [
    types.SimpleNamespace,
    argparse.Namespace,
    np.dtype,
    *_NUMPY_DTYPE_CLASSES,
    _NUMPY_SCALAR,
    # Checkpoints written with numpy 1.x name the scalar constructor numpy.core.multiarray.scalar.
    (_NUMPY_SCALAR, "numpy.core.multiarray.scalar"),
]


def _load_checkpoint(path: Path) -> dict:
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as error:
        raise WeightsError(f"{path}: no such checkpoint file") from error
    except Exception as error:  # torch raises UnpicklingError, RuntimeError, EOFError, ...
        refused = _UNSUPPORTED_GLOBAL.search(str(error))
        if refused:
            raise WeightsError(
                f"{path}: refused to load with weights_only=True: it holds {refused.group(1)}, "
                "which is not on the allow-list of reference rcGAN checkpoints (tensors, plain "
                "containers, SimpleNamespace/Namespace, numpy scalars); nothing in it was run"
            ) from error
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
        raise WeightsError(
            f"{path}: not a loadable reference checkpoint with weights_only=True ({first_line})"
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
    args = _reference_args(checkpoint)
    smallest = min_image_size(levels)
    if image_size is not None and not (
        isinstance(image_size, int) and smallest <= image_size <= MAX_IMAGE_SIDE
    ):
        raise ParameterError(
            f"image-size: must be an integer from {smallest} (the smallest image a generator "
            f"with {levels} levels takes) to {MAX_IMAGE_SIDE}, got {image_size}"
        )
    size = args.get("im_size", 384) if image_size is None else image_size
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise WeightsError(
            f"{path}: saved hyper-parameter im_size is {size!r}, expected a positive integer; "
            "pass --image-size N"
        )
    p_train = args.get("num_z_train", 2)
    training: dict[str, Any] = {
        "imported_from": path.name,
        "source": "reference rcGAN checkpoint (github.com/matt-bendel/rcGAN)",
        # The reference's SD-reward weight is std_mult * sqrt(2 / (pi P (P+1))) on its torch.std
        # reward (train.sd_reward: reference), with its critic term summed over the batch.
        "std_mult": _optional_float(checkpoint.get("beta_std")),
        "sd_reward": "reference",
        "adv_reduction": "sum",
        "p_train": p_train if isinstance(p_train, int) else None,
        "epoch": _optional_int(checkpoint.get("epoch")),
        "global_step": _optional_int(checkpoint.get("global_step")),
        "reference_args": args,
    }
    if "is_valid" in checkpoint:
        training["within_psnr_gain_tol"] = bool(checkpoint["is_valid"])
    acceleration = [float(args["R"])] * 2 if isinstance(args.get("R"), (int, float)) else []
    metadata = WeightsMetadata(
        task="mri",
        image_size=[size, size],
        channels=out_channels // 2,
        base_width=first.shape[0],
        num_pool_layers=levels,
        masks=["gro"],
        acceleration=acceleration,
        training=training,
    )
    metadata.validate(str(path))
    weights = Weights(metadata, state, str(path))
    weights.build_generator()
    return weights


def _reference_args(checkpoint: dict) -> dict[str, Any]:
    """The reference's saved config (``hyper_parameters["args"]``: a ``SimpleNamespace``, an
    ``argparse.Namespace`` or a dict) as a dict of its JSON-safe scalar values."""
    hyper_parameters = checkpoint.get("hyper_parameters") or {}
    args = hyper_parameters.get("args") if isinstance(hyper_parameters, dict) else None
    values = vars(args) if isinstance(args, (types.SimpleNamespace, argparse.Namespace)) else args
    if not isinstance(values, dict):
        return {}
    return {
        str(key): value.item() if isinstance(value, np.generic) else value
        for key, value in values.items()
        if isinstance(value, (str, int, float, bool, np.generic)) or value is None
    }


def _optional_int(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, np.integer)) else None


def _optional_float(value: Any) -> float | None:
    """A number saved as a Python/numpy scalar or a one-element tensor, else None."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return float(value)
    return float(value) if isinstance(value, (int, float, np.number)) else None
