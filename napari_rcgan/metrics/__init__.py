"""The paper's metrics: CFID, FID, LPIPS, DISTS and the feature extractors behind them.

- :func:`cfid`, :func:`fid` — Fréchet distances of ``(N, D)`` embeddings (float64).
- :func:`lpips` (images in [−1, 1]), :func:`dists` (images in [0, 1]) — per-image distances of
  ``(N, 3, H, W)`` batches.
- :func:`vgg16_features` (VGG-16 ``features`` → global average pool, 512-d),
  :func:`inception_features` (TF-FID Inception-v3 pool3, 2048-d) of images in [0, 1], and
  :func:`mri_embeddings` (the reference MRI recipe: SENSE with ESPIRiT maps, magnitude,
  per-image min–max, 3 channels, ImageNet normalisation, VGG-16).

The networks' weights come from the cache that ``napari-rcgan features prepare`` fills
(:mod:`napari_rcgan.metrics.feature_weights`); loaded networks are cached per process.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from napari_rcgan.errors import ParameterError
from napari_rcgan.metrics.frechet import cfid, fid
from napari_rcgan.metrics.networks import IMAGENET_MEAN, IMAGENET_STD, load_network
from napari_rcgan.physics import transforms

Folder = str | os.PathLike | None
BATCH = 8
ESPIRIT_SETTINGS = {"calib_width": 16, "crop": 0.70, "kernel_width": 6}


def as_image_batch(images, name: str = "images") -> torch.Tensor:
    """``(N, 3, H, W)``, ``(3, H, W)``, ``(N, H, W)`` or ``(H, W)`` → float32 ``(N, 3, H, W)``
    (grey images repeated to 3 channels).

    Raises:
        ParameterError: another shape, or NaN/Inf values.
    """
    tensor = images.detach() if isinstance(images, torch.Tensor) else torch.as_tensor(np.asarray(images))
    tensor = tensor.float().cpu()
    if tensor.ndim == 2:
        tensor = tensor[None]
    if tensor.ndim == 3 and tensor.shape[0] == 3 and tensor.shape[-1] != 3:
        tensor = tensor[None]
    elif tensor.ndim == 3:
        tensor = tensor[:, None]
    if tensor.ndim != 4 or tensor.shape[1] not in (1, 3):
        raise ParameterError(f"{name}: expected (N, 3, H, W) or (N, H, W) images, got "
                             f"{tuple(np.shape(images))}")
    if not torch.isfinite(tensor).all():
        raise ParameterError(f"{name}: contains NaN or Inf values")
    return tensor.expand(-1, 3, -1, -1) if tensor.shape[1] == 1 else tensor


def min_max(images: torch.Tensor) -> torch.Tensor:
    """Each image of ``(N, ...)`` scaled to [0, 1] by its own minimum and maximum (constant → 0)."""
    flat = images.reshape(len(images), -1)
    low = flat.min(dim=1).values.view(-1, *[1] * (images.ndim - 1))
    span = (flat.max(dim=1).values.view(-1, *[1] * (images.ndim - 1)) - low).clamp_min(1e-12)
    return (images - low) / span


def _run(name: str, batches, folder: Folder, device: str) -> np.ndarray:
    network = load_network(name, folder, device)
    outputs = []
    with torch.inference_mode():
        for inputs in batches:
            outputs.append(network(*[tensor.to(device) for tensor in inputs]).double().cpu())
    return torch.cat(outputs).numpy()


def _paired(x, y) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = as_image_batch(x, "first images"), as_image_batch(y, "second images")
    if x.shape != y.shape:
        raise ParameterError(f"image batches differ in shape: {tuple(x.shape)} and {tuple(y.shape)}")
    return x, y


def lpips(x, y, net: str = "alex", folder: Folder = None, device: str = "cpu") -> np.ndarray:
    """LPIPS v0.1 distances ``(N,)`` between image batches in [−1, 1] (``net``: alex | vgg)."""
    if net not in ("alex", "vgg"):
        raise ParameterError(f"LPIPS net {net!r}: use 'alex' or 'vgg'")
    x, y = _paired(x, y)
    pairs = [(x[i : i + BATCH], y[i : i + BATCH]) for i in range(0, len(x), BATCH)]
    return _run(f"lpips-{net}", pairs, folder, device)


def dists(x, y, folder: Folder = None, device: str = "cpu") -> np.ndarray:
    """DISTS distances ``(N,)`` between image batches in [0, 1]."""
    x, y = _paired(x, y)
    pairs = [(x[i : i + BATCH], y[i : i + BATCH]) for i in range(0, len(x), BATCH)]
    return _run("dists", pairs, folder, device)


def vgg16_features(images, folder: Folder = None, device: str = "cpu") -> np.ndarray:
    """``(N, 512)`` float64: ImageNet-normalised images in [0, 1] through VGG-16 ``features``
    (full size) and a global average pool (the reference's MRI (C)FID embedding)."""
    images = as_image_batch(images)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    normalised = (images - mean) / std
    network = load_network("vgg16", folder, device)
    outputs = []
    with torch.inference_mode():
        for start in range(0, len(normalised), BATCH):
            outputs.append(network.embed(normalised[start : start + BATCH].to(device)).double().cpu())
    return torch.cat(outputs).numpy()


def inception_features(images, folder: Folder = None, device: str = "cpu") -> np.ndarray:
    """``(N, 2048)`` float64 TF-FID Inception-v3 pool3 features of images in [0, 1]."""
    images = as_image_batch(images)
    return _run("inception", [(images[i : i + BATCH],) for i in range(0, len(images), BATCH)],
                folder, device)


def reference_sense_maps(zero_filled_kspace: torch.Tensor) -> torch.Tensor:
    """ESPIRiT maps ``(C, H, W)`` with the reference evaluation's settings (calib 16, crop 0.70,
    kernel 6) on the zero-filled k-space ``(C, H, W)``."""
    return transforms.espirit_maps(zero_filled_kspace, **ESPIRIT_SETTINGS)


def mri_embedding_images(coil_images: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
    """Complex coil images ``(N, C, H, W)`` (un-normalised) → ``(N, 3, H, W)`` in [0, 1]:
    SENSE combination ``Σ conj(S) x``, magnitude, per-image min–max, 3 channels."""
    if not torch.isfinite(torch.view_as_real(coil_images)).all():
        raise ParameterError("coil images for the embedding contain NaN or Inf values")
    magnitude = transforms.sense_combine(coil_images, maps).abs().float().cpu()
    return min_max(magnitude)[:, None].expand(-1, 3, -1, -1)


def mri_embeddings(coil_images: torch.Tensor, maps: torch.Tensor, folder: Folder = None,
                   device: str = "cpu") -> np.ndarray:
    """The reference MRI (C)FID embedding ``(N, 512)`` of coil images ``(N, C, H, W)``."""
    return vgg16_features(mri_embedding_images(coil_images, maps), folder, device)


__all__ = ["as_image_batch", "cfid", "dists", "fid", "inception_features", "lpips", "min_max",
           "mri_embedding_images", "mri_embeddings", "reference_sense_maps", "vgg16_features"]
