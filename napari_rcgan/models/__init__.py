"""Networks: the rcGAN generator (a residual UNet) and its critic."""

from napari_rcgan.models.critic import Critic
from napari_rcgan.models.unet import ResidualUNet

__all__ = ["Critic", "ResidualUNet"]
