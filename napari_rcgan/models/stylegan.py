"""StyleGAN2 building blocks (Karras et al., "Analyzing and improving the image quality of
StyleGAN", CVPR 2020), written for this project from the paper and its public description.

* Equalised learning rate: weights are stored ~N(0, 1/lr_mul²) and scaled at run time by
  ``lr_mul / sqrt(fan_in)``; biases are scaled by ``lr_mul``.
* Activations: leaky ReLU (slope 0.2) times √2, which keeps unit second moments.
* Resampling with the [1, 3, 3, 1] low-pass filter: upsampling = zero insertion + filter (gain 4);
  a strided convolution is preceded by the filter.
* Modulated convolution: the weight is scaled per input channel by a style ``s`` (an affine
  function of the style vector, bias initialised to 1), then demodulated per output channel by
  ``1/sqrt(Σ w² + 1e-8)``. Computed as StyleGAN2's non-fused form, which is the same operation:
  scale the input channels by ``s``, convolve with the shared weight, scale the output channels
  by the demodulation factors (faster on CPUs than a per-example grouped convolution).
* Noise injection: one channel of N(0, 1) noise per pixel times a learned scalar (initially 0).
* Minibatch standard deviation: the SD over groups of examples, averaged over channels and
  pixels, appended as an extra feature map (critic only).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

RESAMPLE_TAPS = (1.0, 3.0, 3.0, 1.0)
ACTIVATION_GAIN = math.sqrt(2.0)


def lrelu(x: Tensor) -> Tensor:
    """Leaky ReLU (slope 0.2) scaled by √2; any shape."""
    return F.leaky_relu(x, 0.2) * ACTIVATION_GAIN


def fir_kernel(taps: tuple[float, ...] = RESAMPLE_TAPS) -> Tensor:
    """Separable 2-D low-pass kernel ``(k, k)``, normalised to sum 1."""
    kernel = torch.tensor(taps, dtype=torch.float32)
    kernel = torch.outer(kernel, kernel)
    return kernel / kernel.sum()


def fir_filter(x: Tensor, kernel: Tensor, pad: tuple[int, int]) -> Tensor:
    """Depthwise filtering of ``(B, C, H, W)`` with ``kernel`` ``(k, k)`` after zero padding
    ``pad = (before, after)`` on both spatial axes: ``(B, C, H + before + after − k + 1, ...)``."""
    channels = x.shape[1]
    weight = kernel.flip(0, 1).to(x)[None, None].expand(channels, 1, -1, -1)
    return F.conv2d(F.pad(x, (pad[0], pad[1], pad[0], pad[1])), weight, groups=channels)


def upsample2x(x: Tensor, kernel: Tensor) -> Tensor:
    """Zero insertion and low-pass filtering (gain 4): ``(B, C, H, W) -> (B, C, 2H, 2W)``.

    Computed as a depthwise transposed convolution (stride 2), which is the same operation.
    """
    channels, taps = x.shape[1], kernel.shape[0]
    weight = (kernel * 4).to(x)[None, None].expand(channels, 1, -1, -1)
    return F.conv_transpose2d(x, weight, stride=2, padding=(taps - 1) // 2, groups=channels)


class EqualLinear(nn.Module):
    """Dense layer with equalised learning rate: ``(B, in) -> (B, out)``.

    Args:
        bias_init: initial bias (1 for style affines, so styles start at 1).
        lr_mul: learning-rate multiplier (0.01 in the mapping network).
        activation: apply :func:`lrelu` after the bias.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias_init: float = 0.0,
        lr_mul: float = 1.0,
        activation: bool = False,
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_features,), bias_init / lr_mul))
        self.weight_gain = lr_mul / math.sqrt(in_features)
        self.lr_mul = lr_mul
        self.activation = activation

    def forward(self, x: Tensor) -> Tensor:
        out = F.linear(x, self.weight * self.weight_gain, self.bias * self.lr_mul)
        return lrelu(out) if self.activation else out


class EqualConv2d(nn.Module):
    """Convolution with equalised learning rate, 'same' padding, optional bias, activation and
    2× downsampling (low-pass filter, then stride 2): ``(B, in, H, W) -> (B, out, H', W')`` with
    ``H' = H`` or ``H/2``."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        bias: bool = True,
        activation: bool = True,
        down: bool = False,
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size**2)
        self.activation = activation
        self.down = down
        self.register_buffer("resample_kernel", fir_kernel(), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        weight = self.weight * self.weight_gain
        if self.down:
            extra = self.resample_kernel.shape[0] - 2 + self.weight.shape[-1] - 1
            x = fir_filter(x, self.resample_kernel, ((extra + 1) // 2, extra // 2))
            x = F.conv2d(x, weight, self.bias, stride=2)
        else:
            x = F.conv2d(x, weight, self.bias, padding=self.weight.shape[-1] // 2)
        return lrelu(x) if self.activation else x


class ModulatedConv2d(nn.Module):
    """StyleGAN2 modulated convolution (no bias): ``x (B, in, H, W)``, ``style (B, style_dim)``
    ``-> (B, out, H', W')``, ``H' = 2H`` when ``up`` (upsampling before the convolution).

    ``s = A(style)`` (:class:`EqualLinear`, bias 1) scales the input channels of the weight;
    with ``demodulate`` each output channel's weight is rescaled to unit norm.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        style_dim: int,
        demodulate: bool = True,
        up: bool = False,
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size**2)
        self.affine = EqualLinear(style_dim, in_channels, bias_init=1.0)
        self.demodulate = demodulate
        self.up = up
        self.register_buffer("resample_kernel", fir_kernel(), persistent=False)

    def forward(self, x: Tensor, style: Tensor) -> Tensor:
        scales = self.affine(style)  # (B, in)
        weight = self.weight * self.weight_gain
        if self.up:
            x = upsample2x(x, self.resample_kernel)
        out = F.conv2d(x * scales[:, :, None, None].to(x.dtype), weight.to(x.dtype),
                       padding=weight.shape[-1] // 2)
        if self.demodulate:
            # Σ_{in,k} (w·s)² per (example, output channel), without forming per-example weights.
            energy = scales.square() @ weight.square().sum(dim=(2, 3)).t()  # (B, out)
            out = out * torch.rsqrt(energy + 1e-8)[:, :, None, None].to(out.dtype)
        return out


class NoiseInjection(nn.Module):
    """``x + strength · noise`` with ``noise (B, 1, H, W)`` and a learned scalar (initially 0)."""

    def __init__(self) -> None:
        super().__init__()
        self.strength = nn.Parameter(torch.zeros(()))

    def forward(self, x: Tensor, noise: Tensor) -> Tensor:
        return x + self.strength * noise.to(x.dtype)


class StyledLayer(nn.Module):
    """Modulated 3×3 convolution, noise injection, bias, activation:
    ``x (B, in, H, W)``, ``style (B, style_dim)``, ``noise (B, 1, H', W')`` → ``(B, out, H', W')``."""

    def __init__(self, in_channels: int, out_channels: int, style_dim: int, up: bool = False):
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, out_channels, 3, style_dim, up=up)
        self.noise = NoiseInjection()
        self.bias = nn.Parameter(torch.zeros(out_channels))

    def forward(self, x: Tensor, style: Tensor, noise: Tensor) -> Tensor:
        x = self.noise(self.conv(x, style), noise)
        return lrelu(x + self.bias[None, :, None, None].to(x.dtype))


class ToImage(nn.Module):
    """Modulated 1×1 convolution without demodulation plus a bias (StyleGAN2's ``ToRGB``):
    ``(B, in, H, W) -> (B, channels, H, W)``."""

    def __init__(self, in_channels: int, channels: int, style_dim: int) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, channels, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor, style: Tensor) -> Tensor:
        return self.conv(x, style) + self.bias[None, :, None, None].to(x.dtype)


class MappingNetwork(nn.Module):
    """``z (B, latent_dim) -> w (B, latent_dim)``: normalise z to unit second moment, then
    ``num_layers`` dense layers with leaky ReLU and learning-rate multiplier 0.01."""

    def __init__(self, latent_dim: int, num_layers: int = 8, lr_mul: float = 0.01) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            *(
                EqualLinear(latent_dim, latent_dim, lr_mul=lr_mul, activation=True)
                for _ in range(num_layers)
            )
        )

    def forward(self, z: Tensor) -> Tensor:
        z = z * torch.rsqrt(z.square().mean(dim=1, keepdim=True) + 1e-8)
        return self.layers(z)


def minibatch_stddev(x: Tensor, group_size: int = 4, num_features: int = 1) -> Tensor:
    """Append the minibatch standard deviation: ``(B, C, H, W) -> (B, C + num_features, H, W)``.

    Examples are split into groups of ``G`` = the largest divisor of B not above
    ``group_size``; within a group the SD of each feature is averaged over its channel group
    and all pixels, and the result is broadcast to every member of the group.
    """
    batch, channels, height, width = x.shape
    group = max(g for g in range(1, min(group_size, batch) + 1) if batch % g == 0)
    y = x.float().reshape(group, -1, num_features, channels // num_features, height, width)
    y = (y - y.mean(dim=0)).square().mean(dim=0)
    y = (y + 1e-8).sqrt().mean(dim=(2, 3, 4))  # (B/G, num_features)
    y = y.reshape(-1, num_features, 1, 1).repeat(group, 1, height, width).to(x.dtype)
    return torch.cat([x, y], dim=1)
