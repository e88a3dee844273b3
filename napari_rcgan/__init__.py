"""napari-rcgan: posterior sampling with a regularized conditional GAN, as a napari plugin."""

__version__ = "0.1.0"
