"""The rcGAN generator: a UNet with residual blocks (Bendel et al. 2023, Appendix I).

The layer names follow the reference implementation so that its checkpoints map one-to-one onto
this module (see :mod:`napari_rcgan.models.reference_import`); the reference's unused layers (a
residual stack never called in ``forward`` and a BatchNorm in the first down block that its
``batch_norm=False`` branch skips) are not built here.
"""

from __future__ import annotations

import torch
from torch import nn


class ResidualBlock(nn.Module):
    """Two 3×3 conv–BN–PReLU layers plus a 1×1 convolution shortcut; keeps shape ``(B, C, H, W)``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.Conv2d(channels, channels, kernel_size=3, padding=1),
            nn.BatchNorm2d(channels),
            nn.PReLU(),
            nn.Conv2d(channels, channels, kernel_size=3, padding=1),
            nn.BatchNorm2d(channels),
            nn.PReLU(),
        )
        self.conv_1x1 = nn.Conv2d(channels, channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_1x1(x) + self.conv_block(x)


class ConvDownBlock(nn.Module):
    """Conv (+BN) + PReLU, a residual block (the skip output), then a stride-2 conv.

    ``(B, in, H, W) -> ((B, out, ⌈H/2⌉, ⌈W/2⌉), skip (B, out, H, W))``.
    """

    def __init__(self, in_channels: int, out_channels: int, batch_norm: bool = True) -> None:
        super().__init__()
        self.conv_1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)
        self.bn = nn.BatchNorm2d(out_channels) if batch_norm else nn.Identity()
        self.activation = nn.PReLU()
        self.res = ResidualBlock(out_channels)
        self.conv_3 = nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1, stride=2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        skip = self.res(self.activation(self.bn(self.conv_1(x))))
        return self.conv_3(skip), skip


class ConvUpBlock(nn.Module):
    """Transposed-conv upsampling to the skip's size, concatenation, conv–BN–PReLU, residual block.

    ``in_channels`` counts the concatenated tensor: the input has ``in_channels // 2`` channels.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        half = in_channels // 2
        self.conv_1 = nn.ConvTranspose2d(half, half, kernel_size=3, padding=1, stride=2)
        self.bn = nn.BatchNorm2d(half)
        self.activation = nn.PReLU()
        self.layers = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1),
            nn.BatchNorm2d(out_channels),
            nn.PReLU(),
            ResidualBlock(out_channels),
        )

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        upsampled = self.activation(self.bn(self.conv_1(x, output_size=skip.shape[-2:])))
        return self.layers(torch.cat([skip, upsampled], dim=1))


class ResidualUNet(nn.Module):
    """UNet with residual blocks: the rcGAN generator for MRI and (in this project) inpainting.

    Widths double at each of the first three pooling levels and then stay constant, as in the
    reference (128-256-512-1024 for ``base_width=128`` and 4 levels).

    Args:
        in_channels: measurement channels plus code-vector channels (18 for 8-coil MRI).
        out_channels: output channels (16 for 8-coil MRI: real parts, then imaginary parts).
        base_width: channels of the first level; 128 in the paper.
        num_pool_layers: number of down/up-sampling levels; 4 in the paper.
        code_channels: trailing input channels that hold the code vector (2 in the paper).
        input_skip: add the first ``out_channels`` input channels (the measurement) to the
            output, so the network learns a correction of the zero-filled image. Not in the paper
            (False reproduces the reference network); it speeds up short trainings.

    Shapes: ``(B, in_channels, H, W) -> (B, out_channels, H, W)``, any H, W.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        base_width: int = 128,
        num_pool_layers: int = 4,
        input_skip: bool = False,
        code_channels: int = 2,
    ) -> None:
        super().__init__()
        if num_pool_layers < 1 or base_width < 2:
            raise ValueError(
                f"ResidualUNet needs num_pool_layers >= 1 and base_width >= 2, "
                f"got {num_pool_layers} and {base_width}"
            )
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.input_skip = input_skip
        self.code_channels = code_channels
        width = base_width
        self.down_sample_layers = nn.ModuleList(
            [ConvDownBlock(in_channels, width, batch_norm=False)]
        )
        for level in range(num_pool_layers - 1):
            next_width = width * 2 if level < 3 else width
            self.down_sample_layers.append(ConvDownBlock(width, next_width))
            width = next_width
        self.conv = nn.Sequential(
            nn.Conv2d(width, width, kernel_size=3, padding=1), nn.BatchNorm2d(width), nn.PReLU()
        )
        self.up_sample_layers = nn.ModuleList()
        for _ in range(num_pool_layers - 1):
            self.up_sample_layers.append(ConvUpBlock(width * 2, width // 2))
            width //= 2
        self.up_sample_layers.append(ConvUpBlock(width * 2, width))
        self.conv2 = nn.Sequential(
            nn.Conv2d(width, width // 2, kernel_size=1),
            nn.Conv2d(width // 2, out_channels, kernel_size=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        measurement = x[:, : self.out_channels]
        skips = []
        for layer in self.down_sample_layers:
            x, skip = layer(x)
            skips.append(skip)
        x = self.conv(x)
        for layer in self.up_sample_layers:
            x = layer(x, skips.pop())
        output = self.conv2(x)
        return output + measurement if self.input_skip else output

    def load_narrower(self, narrow: ResidualUNet) -> None:
        """Take over a narrower UNet of the same depth and channels so that this one computes the
        same function (function-preserving widening; unlike Net2WiderNet, which duplicates units,
        the extra channels are new and start unread).

        Every convolution, BatchNorm and PReLU of ``narrow`` is copied into the first channels of
        its counterpart here (the concatenated inputs of the up blocks channel by channel: skip
        first, upsampled second). The extra channels keep their fresh initialisation, but every
        weight that reads an extra channel starts at zero, so the extra channels change nothing
        until training makes them useful.

        Raises:
            ValueError: ``narrow`` has another depth, other input/output channels or is wider.
        """
        if not isinstance(narrow, ResidualUNet) or (
            (narrow.in_channels, narrow.out_channels, narrow.input_skip, narrow.code_channels,
             len(narrow.down_sample_layers))
            != (self.in_channels, self.out_channels, self.input_skip, self.code_channels,
                len(self.down_sample_layers))
        ):
            raise ValueError("load_narrower needs a ResidualUNet of the same depth, channels and input skip")
        wide_modules = dict(self.named_modules())
        concatenated_inputs = {id(block.layers[0]) for block in narrow.up_sample_layers}
        with torch.no_grad():
            for name, small in narrow.named_modules():
                big = wide_modules[name]
                if isinstance(small, nn.BatchNorm2d | nn.PReLU):
                    targets = big.state_dict()  # views of big's tensors: writing them writes big
                    for key, value in small.state_dict().items():
                        target = targets[key]
                        if value.ndim == 0:
                            target.copy_(value)
                        else:
                            target[: value.shape[0]] = value
                elif isinstance(small, nn.Conv2d | nn.ConvTranspose2d):
                    if any(a > b for a, b in zip(small.weight.shape, big.weight.shape, strict=True)):
                        raise ValueError(f"load_narrower: {name} of the other UNet is wider than this one's")
                    _embed_convolution(small, big, concatenated=id(small) in concatenated_inputs)

    def code_shape(self, height: int, width: int) -> tuple[int, ...]:
        """Shape of one sample's code: ``code_channels`` standard-normal images ``(c, H, W)``."""
        return (self.code_channels, height, width)

    def sample(self, condition: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        """Output for ``condition (B, in − c, H, W)`` and ``code (B, c, H, W)``."""
        return self(torch.cat([condition, code.to(condition.dtype)], dim=1))


def _embed_convolution(small: nn.Conv2d | nn.ConvTranspose2d, big: nn.Conv2d | nn.ConvTranspose2d,
                       concatenated: bool) -> None:
    """Copy ``small`` into the first channels of ``big``; ``big``'s weights reading any other input
    channel become zero. ``concatenated``: the input is two equal halves (skip, upsampled), each
    mapped onto the start of its half."""
    transposed = isinstance(small, nn.ConvTranspose2d)
    small_weight = small.weight.transpose(0, 1) if transposed else small.weight  # (out, in, k, k)
    big_weight = big.weight.transpose(0, 1) if transposed else big.weight
    small_in, big_in = small_weight.shape[1], big_weight.shape[1]
    inputs = torch.arange(small_in)
    if concatenated:
        inputs = torch.cat([inputs[: small_in // 2], big_in // 2 + inputs[: small_in // 2]])
    outputs = torch.arange(small_weight.shape[0])
    reads_new_channels = torch.ones(big_in, dtype=torch.bool)
    reads_new_channels[inputs] = False
    big_weight[:, reads_new_channels] = 0
    big_weight[outputs[:, None], inputs[None, :]] = small_weight
    if small.bias is not None:
        big.bias[outputs] = small.bias

