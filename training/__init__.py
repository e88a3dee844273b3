"""Training code for rcGAN (losses, toy experiment, training loops); imports napari_rcgan."""
