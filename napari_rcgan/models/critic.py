"""The rcGAN critic (WGAN discriminator) of the reference MRI configuration."""

from __future__ import annotations

import torch
from torch import nn


class DownBlock(nn.Module):
    """2×2 average pooling, 3×3 conv, instance norm, LeakyReLU(0.2).

    ``(B, in, H, W) -> (B, out, H/2, W/2)``.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.downsample = nn.Sequential(
            nn.AvgPool2d(kernel_size=2, stride=2),
            nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1),
            nn.InstanceNorm2d(out_channels),
            nn.LeakyReLU(negative_slope=0.2),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.downsample(x)


class Critic(nn.Module):
    """Convolutional critic ``D(x, y)``: image and condition are concatenated along channels.

    Args:
        in_channels: channels of ``x`` and ``y`` together (``2·2C`` for C-coil MRI; ``3·2C`` for
            the three-input critic of Adler & Öktem, called with two images).
        image_size: ``(H, W)`` of the inputs; both must be divisible by ``2**num_down``.
        base_width: channels of the first layer (32 in the reference).
        num_down: number of pooling blocks (6 in the reference: 384 → 6).

    Shapes: ``x (B, Cx, H, W)``, ``y (B, Cy, H, W)`` → scores ``(B, 1)``.
    """

    def __init__(
        self,
        in_channels: int,
        image_size: tuple[int, int],
        base_width: int = 32,
        num_down: int = 6,
        max_width: int = 512,
    ) -> None:
        super().__init__()
        height, width = image_size
        if height % 2**num_down or width % 2**num_down:
            raise ValueError(
                f"Critic input {height}x{width} must be divisible by 2**num_down = {2**num_down}"
            )
        self.initial_layers = nn.Sequential(
            nn.Conv2d(in_channels, base_width, kernel_size=3, padding=1), nn.LeakyReLU()
        )
        widths = [base_width]
        for _ in range(num_down):
            widths.append(min(widths[-1] * 2, max_width))
        self.encoder_layers = nn.ModuleList(
            DownBlock(w_in, w_out) for w_in, w_out in zip(widths[:-1], widths[1:])
        )
        final_pixels = (height // 2**num_down) * (width // 2**num_down)
        self.dense = nn.Sequential(nn.Flatten(), nn.Linear(widths[-1] * final_pixels, 1))

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        x = self.initial_layers(torch.cat(inputs, dim=1))
        for layer in self.encoder_layers:
            x = layer(x)
        return self.dense(x)
