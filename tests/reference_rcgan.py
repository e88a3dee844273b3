"""The reference rcGAN MRI generator, rebuilt from its published architecture description.

Written independently of ``napari_rcgan.models`` so that the checkpoint-import test compares two
implementations: ConvDownBlock / ConvUpBlock / ResidualBlock with PReLU and BatchNorm, widths
128-256-512-1024, four pooling levels, including the two pieces the reference builds but never
uses (``res_layer_1`` and the first down block's BatchNorm).
"""

import torch
from torch import nn


class ReferenceResidualBlock(nn.Module):
    def __init__(self, features):
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.Conv2d(features, features, 3, 1, 1),
            nn.BatchNorm2d(features),
            nn.PReLU(),
            nn.Conv2d(features, features, 3, 1, 1),
            nn.BatchNorm2d(features),
            nn.PReLU(),
        )
        self.conv_1x1 = nn.Conv2d(features, features, kernel_size=1)

    def forward(self, x):
        return self.conv_1x1(x) + self.conv_block(x)


class ReferenceConvDownBlock(nn.Module):
    def __init__(self, in_chans, out_chans, batch_norm=True):
        super().__init__()
        self.batch_norm = batch_norm
        self.conv_1 = nn.Conv2d(in_chans, out_chans, kernel_size=3, padding=1)
        self.res = ReferenceResidualBlock(out_chans)
        self.conv_3 = nn.Conv2d(out_chans, out_chans, kernel_size=3, padding=1, stride=2)
        self.bn = nn.BatchNorm2d(out_chans)
        self.activation = nn.PReLU()

    def forward(self, x):
        out = self.conv_1(x)
        out = self.activation(self.bn(out) if self.batch_norm else out)
        skip = self.res(out)
        return self.conv_3(skip), skip


class ReferenceConvUpBlock(nn.Module):
    def __init__(self, in_chans, out_chans):
        super().__init__()
        self.conv_1 = nn.ConvTranspose2d(in_chans // 2, in_chans // 2, 3, padding=1, stride=2)
        self.bn = nn.BatchNorm2d(in_chans // 2)
        self.activation = nn.PReLU()
        self.layers = nn.Sequential(
            nn.Conv2d(in_chans, out_chans, kernel_size=3, padding=1),
            nn.BatchNorm2d(out_chans),
            nn.PReLU(),
            ReferenceResidualBlock(out_chans),
        )

    def forward(self, x, skip):
        up = self.activation(self.bn(self.conv_1(x, output_size=skip.size())))
        return self.layers(torch.cat([skip, up], dim=1))


class ReferenceUNetModel(nn.Module):
    def __init__(self, in_chans=18, out_chans=16, chans=128, num_pool_layers=4):
        super().__init__()
        ch = chans
        self.down_sample_layers = nn.ModuleList(
            [ReferenceConvDownBlock(in_chans, ch, batch_norm=False)]
        )
        for i in range(num_pool_layers - 1):
            if i < 3:
                self.down_sample_layers += [ReferenceConvDownBlock(ch, ch * 2)]
                ch *= 2
            else:
                self.down_sample_layers += [ReferenceConvDownBlock(ch, ch)]
        self.res_layer_1 = nn.Sequential(
            nn.Conv2d(ch, ch, 3, padding=1),
            nn.BatchNorm2d(ch),
            nn.PReLU(),
            *[ReferenceResidualBlock(ch) for _ in range(5)],
        )
        self.conv = nn.Sequential(nn.Conv2d(ch, ch, 3, padding=1), nn.BatchNorm2d(ch), nn.PReLU())
        self.up_sample_layers = nn.ModuleList()
        for _ in range(num_pool_layers - 1):
            self.up_sample_layers += [ReferenceConvUpBlock(ch * 2, ch // 2)]
            ch //= 2
        self.up_sample_layers += [ReferenceConvUpBlock(ch * 2, ch)]
        self.conv2 = nn.Sequential(nn.Conv2d(ch, ch // 2, 1), nn.Conv2d(ch // 2, out_chans, 1))

    def forward(self, x):
        stack = []
        for layer in self.down_sample_layers:
            x, skip = layer(x)
            stack.append(skip)
        x = self.conv(x)
        for layer in self.up_sample_layers:
            x = layer(x, stack.pop())
        return self.conv2(x)


def randomize_batchnorm(model: nn.Module, seed: int = 0) -> None:
    """Give every BatchNorm non-trivial running statistics and affine parameters."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                size = module.num_features
                module.running_mean.copy_(0.1 * torch.randn(size, generator=generator))
                module.running_var.copy_(0.5 + torch.rand(size, generator=generator))
                module.weight.copy_(1 + 0.1 * torch.randn(size, generator=generator))
                module.bias.copy_(0.1 * torch.randn(size, generator=generator))
