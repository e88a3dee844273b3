"""The CoModGAN generator and critic (Zhao et al., "Large scale image completion via co-modulated
generative adversarial networks", ICLR 2021), written for this project from the paper and the
public description of its official code; the paper's face experiment (Bendel et al. 2023,
Section 4.3) trains them with the rcGAN regulariser.

Generator (``images (B, C, R, R)`` with a hole → completed images):

* encoder of ``[mask − ½, image · mask]`` (mask = 1 on known pixels): a 1×1 ``from-image``
  convolution, then per resolution R … 8 a 3×3 convolution (its output is the skip feature of
  that resolution) and a strided 3×3 convolution; at 4×4 a 3×3 convolution (the 4×4 skip feature)
  and a dense layer to the global code ``e`` (``2·width(4×4)`` values, dropout 0.5 in training);
* mapping network ``z → w`` (8 dense layers);
* co-modulation: every modulated convolution gets the style vector ``A([w; e])``, an affine map of
  the concatenated mapped code and global code;
* decoder: dense layer ``e → 4×4`` features plus the 4×4 skip, then per resolution an upsampling
  modulated convolution, the encoder's skip feature added, a modulated convolution; noise
  injection after each modulated convolution; image outputs summed across resolutions
  (StyleGAN2 ``skip`` architecture);
* the known pixels are pasted back: ``out · (1 − mask) + image · mask``.

Widths follow StyleGAN2: ``width(stage) = clip(channel_base / 2**stage, 1, channel_max)`` where
the features at resolution ``2**r`` use stage ``r − 1`` (16384 and 512 in the paper).

The code of one sample is one flat standard-normal vector: ``latent_dim`` values of ``z``
followed by the per-pixel noise of every noise input (the StyleGAN noise maps), so a posterior
sample is fully determined by its code.

Critic: the StyleGAN2 residual discriminator on ``[mask − ½, image]`` with the optional minibatch
standard-deviation layer (on in CoModGAN, off in the paper's rcGAN).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from napari_rcgan.models.stylegan import (
    EqualConv2d,
    EqualLinear,
    MappingNetwork,
    StyledLayer,
    ToImage,
    fir_kernel,
    minibatch_stddev,
    upsample2x,
)

MIN_RESOLUTION = 32
MAX_RESOLUTION = 1024


def check_resolution(resolution: int) -> int:
    """``log2(resolution)``; raises ValueError unless it is a power of two in 32..1024."""
    log2 = int(round(math.log2(resolution))) if resolution > 0 else 0
    if 2**log2 != resolution or not MIN_RESOLUTION <= resolution <= MAX_RESOLUTION:
        raise ValueError(
            f"the CoModGAN/StyleGAN blocks need a square image whose side is a power of two "
            f"from {MIN_RESOLUTION} to {MAX_RESOLUTION}, got {resolution}"
        )
    return log2


def stage_width(stage: int, channel_base: int, channel_max: int) -> int:
    """StyleGAN2 feature-map count of ``stage`` (features at resolution ``2**(stage+1)``)."""
    return int(min(max(channel_base // 2**stage, 1), channel_max))


class EncoderBlock(nn.Module):
    """3×3 conv (the skip feature) then a strided 3×3 conv:
    ``(B, c_in, H, W) -> ((B, c_out, H/2, W/2), skip (B, c_in, H, W))``."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = EqualConv2d(in_channels, in_channels, 3)
        self.down = EqualConv2d(in_channels, out_channels, 3, down=True)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        skip = self.conv(x)
        return self.down(skip), skip


class DecoderBlock(nn.Module):
    """Upsampling styled conv, + encoder skip, styled conv, image output:
    ``x (B, c_in, H, W) -> (B, c_out, 2H, 2W)`` and the image ``(B, C, 2H, 2W)``."""

    def __init__(self, in_channels: int, out_channels: int, channels: int, style_dim: int):
        super().__init__()
        self.conv_up = StyledLayer(in_channels, out_channels, style_dim, up=True)
        self.conv = StyledLayer(out_channels, out_channels, style_dim)
        self.to_image = ToImage(out_channels, channels, style_dim)

    def forward(
        self, x: Tensor, skip: Tensor, style: Tensor, noises: tuple[Tensor, Tensor]
    ) -> tuple[Tensor, Tensor]:
        x = self.conv_up(x, style, noises[0]) + skip
        x = self.conv(x, style, noises[1])
        return x, self.to_image(x, style)


class CoModGenerator(nn.Module):
    """Co-modulated generator (see the module docstring).

    Args:
        channels: image channels (3 colour, 1 grey).
        resolution: image side, a power of two in 32..1024 (256 in the paper's faces).
        latent_dim: size of ``z`` and ``w`` (512).
        mapping_layers: dense layers of the mapping network (8).
        channel_base, channel_max: width rule (16384 and 512 in CoModGAN).
        dropout: dropout rate on the global code during training (0.5).

    Call: ``sample(condition, code)`` with ``condition (B, C + 1, R, R)`` =
    ``[image · (1 − hole) in [−1, 1], hole]`` (the project's inpainting input) and
    ``code (B, code_size)`` → ``(B, C, R, R)`` in the image range, known pixels pasted back.
    """

    def __init__(
        self,
        channels: int = 3,
        resolution: int = 256,
        latent_dim: int = 512,
        mapping_layers: int = 8,
        channel_base: int = 16384,
        channel_max: int = 512,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        log2 = check_resolution(resolution)
        self.channels = channels
        self.resolution = resolution
        self.latent_dim = latent_dim

        def width(stage: int) -> int:
            return stage_width(stage, channel_base, channel_max)

        self.from_image = EqualConv2d(channels + 1, width(log2 - 1), 1)
        self.encoder = nn.ModuleList(
            EncoderBlock(width(res - 1), width(res - 2)) for res in range(log2, 2, -1)
        )
        self.encoder_conv = EqualConv2d(width(1), width(1), 3)
        global_dim = 2 * width(1)
        self.encoder_dense = EqualLinear(width(1) * 16, global_dim, activation=True)
        self.dropout = nn.Dropout(dropout)

        self.mapping = MappingNetwork(latent_dim, mapping_layers)
        style_dim = latent_dim + global_dim
        self.decoder_dense = EqualLinear(global_dim, width(1) * 16, activation=True)
        self.decoder_conv = StyledLayer(width(1), width(1), style_dim)
        self.decoder_to_image = ToImage(width(1), channels, style_dim)
        self.decoder = nn.ModuleList(
            DecoderBlock(width(res - 2), width(res - 1), channels, style_dim)
            for res in range(3, log2 + 1)
        )
        self.register_buffer("resample_kernel", fir_kernel(), persistent=False)
        sides = [4] + [2**res for res in range(3, log2 + 1) for _ in range(2)]
        self.noise_sides = tuple(sides)

    @property
    def code_size(self) -> int:
        """Entries of one sample's code: ``z`` then every noise map, flattened."""
        return self.latent_dim + sum(side * side for side in self.noise_sides)

    def code_shape(self, height: int, width: int) -> tuple[int, ...]:
        """Shape of one sample's code (the image size is fixed by the network)."""
        return (self.code_size,)

    def split_code(self, code: Tensor) -> tuple[Tensor, list[Tensor]]:
        """``(B, code_size)`` → ``z (B, latent_dim)`` and noise maps ``(B, 1, s, s)``."""
        if code.ndim != 2 or code.shape[1] != self.code_size:
            raise ValueError(
                f"CoModGAN code must have shape (B, {self.code_size}), got {tuple(code.shape)}"
            )
        sizes = [self.latent_dim] + [side * side for side in self.noise_sides]
        parts = torch.split(code, sizes, dim=1)
        noises = [
            part.reshape(-1, 1, side, side) for part, side in zip(parts[1:], self.noise_sides)
        ]
        return parts[0], noises

    def encode(self, y: Tensor) -> tuple[Tensor, list[Tensor]]:
        """``[mask − ½, image · mask]`` → global code ``(B, 2·width(1))`` and skip features,
        finest first (the last one is the 4×4 feature)."""
        x = self.from_image(y)
        skips = []
        for block in self.encoder:
            x, skip = block(x)
            skips.append(skip)
        x = self.encoder_conv(x)
        skips.append(x)
        return self.dropout(self.encoder_dense(x.flatten(1))), skips

    def style(self, w: Tensor, global_code: Tensor) -> Tensor:
        """Co-modulation input: ``[w; e]`` ``(B, latent_dim + 2·width(1))``; each layer's affine
        map turns it into that layer's styles."""
        return torch.cat([w, global_code], dim=1)

    def forward(self, condition: Tensor, code: Tensor) -> Tensor:
        z, noises = self.split_code(code.to(condition.dtype))
        return self.synthesize(condition, self.mapping(z), noises)

    def synthesize(self, condition: Tensor, w: Tensor, noises: list[Tensor]) -> Tensor:
        """Completed images from the mapped code ``w (B, latent_dim)`` and the noise maps (the
        generator after its mapping network; the path-length penalty differentiates it in w)."""
        images = condition[:, : self.channels]
        known = 1 - condition[:, self.channels :]
        global_code, skips = self.encode(torch.cat([known - 0.5, images * known], dim=1))
        style = self.style(w, global_code)

        x = self.decoder_dense(global_code).reshape(skips[-1].shape) + skips[-1]
        x = self.decoder_conv(x, style, noises[0])
        output = self.decoder_to_image(x, style)
        for index, block in enumerate(self.decoder):
            skip = skips[-2 - index]
            x, image = block(x, skip, style, (noises[1 + 2 * index], noises[2 + 2 * index]))
            output = upsample2x(output, self.resample_kernel) + image
        return output * (1 - known) + images * known

    def sample(self, condition: Tensor, code: Tensor) -> Tensor:
        """Generator output for ``condition`` and ``code`` (same as calling the module)."""
        return self(condition, code)


class CriticBlock(nn.Module):
    """Residual block: two 3×3 convs (the second strided) plus a 1×1 strided shortcut, summed
    and scaled by 1/√2: ``(B, c_in, H, W) -> (B, c_out, H/2, W/2)``."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = EqualConv2d(in_channels, in_channels, 3)
        self.down = EqualConv2d(in_channels, out_channels, 3, down=True)
        self.shortcut = EqualConv2d(in_channels, out_channels, 1, bias=False, activation=False, down=True)

    def forward(self, x: Tensor) -> Tensor:
        return (self.down(self.conv(x)) + self.shortcut(x)) / math.sqrt(2)


class CoModCritic(nn.Module):
    """StyleGAN2 residual critic of CoModGAN, conditioned on the hole.

    Args:
        channels: image channels.
        resolution: image side (power of two, 32..1024).
        channel_base, channel_max: width rule (as the generator).
        minibatch_sd: minibatch standard-deviation layer (group 4, 1 feature) before the last
            convolution; on in CoModGAN, off in the paper's rcGAN.

    Call: ``critic(images, condition)`` with ``images (B, C, R, R)`` and the generator's
    ``condition (B, C + 1, R, R)`` (its last channel is the hole) → scores ``(B, 1)``.
    """

    def __init__(
        self,
        channels: int = 3,
        resolution: int = 256,
        channel_base: int = 16384,
        channel_max: int = 512,
        minibatch_sd: bool = False,
    ) -> None:
        super().__init__()
        log2 = check_resolution(resolution)
        self.channels = channels

        def width(stage: int) -> int:
            return stage_width(stage, channel_base, channel_max)

        self.from_image = EqualConv2d(channels + 1, width(log2 - 1), 1)
        self.blocks = nn.Sequential(
            *(CriticBlock(width(res - 1), width(res - 2)) for res in range(log2, 2, -1))
        )
        self.minibatch_sd = minibatch_sd
        self.conv = EqualConv2d(width(1) + int(minibatch_sd), width(1), 3)
        self.dense = EqualLinear(width(1) * 16, width(0), activation=True)
        self.output = EqualLinear(width(0), 1)

    def forward(self, images: Tensor, condition: Tensor) -> Tensor:
        known = 1 - condition[:, -1:]
        x = self.blocks(self.from_image(torch.cat([known - 0.5, images], dim=1)))
        if self.minibatch_sd:
            x = minibatch_stddev(x)
        x = self.conv(x)
        return self.output(self.dense(x.flatten(1)))
