"""Networks: the rcGAN generator (a residual UNet) and its critic; the CoModGAN generator and
critic of the paper's face experiment."""

from napari_rcgan.models.comodgan import CoModCritic, CoModGenerator
from napari_rcgan.models.critic import Critic
from napari_rcgan.models.unet import ResidualUNet

__all__ = ["CoModCritic", "CoModGenerator", "Critic", "ResidualUNet"]
