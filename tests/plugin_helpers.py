"""Small inputs and tiny weights for the napari plugin tests (fast on 2 CPU cores).

* :func:`write_phantom_fastmri`: a fastMRI-layout multicoil file (``kspace`` ``(S, C, H, W)``
  complex64, ``reconstruction_rss``, ``ismrmrd_header``) made from an analytic Shepp–Logan
  phantom times sigpy birdcage coil maps.
* :func:`write_face`: a small RGB photo (the astronaut portrait of scikit-image) as PNG.
* :func:`write_tiny_weights`: a randomly initialised, tiny generator for ``mri`` or ``inpainting``
  at 64×64, saved in the real weights format.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from napari_rcgan.physics.fft import fft2c, ifft2c
from napari_rcgan.physics.transforms import rss
from napari_rcgan.weights import WeightsMetadata, build_generator, save_weights

SIZE = 64
COILS = 8
MANIFEST = Path(__file__).resolve().parent.parent / "napari_rcgan" / "napari.yaml"


@pytest.fixture
def napari_rcgan_plugin():
    """npe2's plugin manager with napari-rcgan registered (from the entry point when the package
    is installed, else straight from the manifest file). Request it before ``make_napari_viewer``."""
    from npe2 import PluginManager, PluginManifest

    manager = PluginManager.instance()
    manager.discover()
    if "napari-rcgan" not in manager:
        manager.register(PluginManifest.from_file(MANIFEST))
    return manager


def tiny_metadata(task: str, size: int = SIZE) -> WeightsMetadata:
    """Metadata of the tiny test generators (64×64; 8 coils for MRI, RGB for inpainting)."""
    if task == "mri":
        return WeightsMetadata(
            task="mri", image_size=[size, size], channels=COILS, base_width=4,
            num_pool_layers=2, masks=["gro"], acceleration=[2, 8], notes="tiny test weights",
        )
    return WeightsMetadata(
        task="inpainting", image_size=[size, size], channels=3, base_width=4,
        num_pool_layers=2, notes="tiny test weights",
    )


def write_tiny_weights(path: str | Path, task: str, seed: int = 0, size: int = SIZE) -> Path:
    """Save a randomly initialised tiny generator for ``task`` to ``path`` (.safetensors)."""
    metadata = tiny_metadata(task, size)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        generator = build_generator(metadata)
    return save_weights(path, generator.state_dict(), metadata)


def phantom(size: int = SIZE, scale: float = 1.0) -> np.ndarray:
    """Shepp–Logan phantom resized to ``size``², shrunk by ``scale`` about the centre."""
    from skimage.data import shepp_logan_phantom
    from skimage.transform import resize

    image = resize(shepp_logan_phantom(), (size, size), anti_aliasing=True)
    if scale != 1.0:
        inner = resize(image, (round(size * scale),) * 2, anti_aliasing=True)
        image = np.zeros((size, size))
        offset = (size - inner.shape[0]) // 2
        image[offset : offset + inner.shape[0], offset : offset + inner.shape[1]] = inner
    return image.astype(np.float32)


def write_phantom_fastmri(
    path: str | Path,
    slices: int = 2,
    coils: int = COILS,
    size: int = SIZE,
    with_reference: bool = True,
    seed: int = 0,
) -> Path:
    """Write a small fastMRI-layout multicoil file of ``slices`` phantom slices."""
    import sigpy.mri

    rng = np.random.default_rng(seed)
    maps = sigpy.mri.birdcage_maps((coils, size, size)).astype(np.complex64)
    yy, xx = np.mgrid[-1:1:size * 1j, -1:1:size * 1j]
    kspace = []
    for index in range(slices):
        image = phantom(size, scale=1.0 - 0.08 * index)
        phase = np.exp(1j * (0.6 * xx + 0.3 * yy + 0.2 * index))
        coil_images = torch.from_numpy((maps * image * phase).astype(np.complex64))
        k = fft2c(coil_images).numpy()
        noise = 0.002 * (rng.standard_normal(k.shape) + 1j * rng.standard_normal(k.shape))
        kspace.append((k + noise).astype(np.complex64))
    kspace = np.stack(kspace)
    path = Path(path)
    with h5py.File(path, "w") as handle:
        handle.create_dataset("kspace", data=kspace)
        if with_reference:
            reference = rss(ifft2c(torch.from_numpy(kspace))).numpy().astype(np.float32)
            handle.create_dataset("reconstruction_rss", data=reference)
            handle.attrs["max"] = float(reference.max())
        handle.create_dataset(
            "ismrmrd_header", data="<ismrmrdHeader/>", dtype=h5py.string_dtype()
        )
        handle.attrs["acquisition"] = "AXT2"
        handle.attrs["provenance"] = "analytic phantom (plugin tests)"
    return path


def write_face(path: str | Path, size: int = SIZE) -> Path:
    """Save the scikit-image astronaut portrait (face region), resized to ``size``², as PNG."""
    from PIL import Image
    from skimage.data import astronaut

    face = astronaut()[0:256, 110:366]
    Image.fromarray(face).resize((size, size), Image.Resampling.LANCZOS).save(path)
    return Path(path)


def write_broken_files(folder: str | Path) -> dict[str, Path]:
    """Claimed-but-broken inputs: a non-HDF5 ``.h5``, an HDF5 file without ``kspace``, a corrupt
    PNG."""
    folder = Path(folder)
    corrupt = folder / "corrupt.h5"
    corrupt.write_bytes(b"this is not an HDF5 file at all" * 10)
    no_kspace = folder / "no_kspace.h5"
    with h5py.File(no_kspace, "w") as handle:
        handle.create_dataset("image", data=np.zeros((2, 8, 8), np.float32))
    bad_png = folder / "bad.png"
    bad_png.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)
    return {"corrupt": corrupt, "no_kspace": no_kspace, "bad_png": bad_png}


def dock_sampler_widget(viewer):
    """A :class:`PosteriorSamplerWidget` docked in ``viewer`` as napari's menu would dock it."""
    from napari_rcgan._widget import PosteriorSamplerWidget

    widget = PosteriorSamplerWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Posterior sampler")
    return widget
