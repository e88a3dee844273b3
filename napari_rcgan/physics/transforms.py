"""Multicoil MRI transforms (torch, pure functions).

Shapes: ``C`` coils, ``H`` readout rows, ``W`` phase-encode columns. Complex data is
``torch.complex64``; the generator sees real channels ``[re(coil 0..C-1), im(coil 0..C-1)]``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from napari_rcgan.errors import ParameterError
from napari_rcgan.physics.fft import fft2c, ifft2c


def center_crop(data: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """Crop the centre ``shape = (h, w)`` of the last two axes: ``(..., H, W) -> (..., h, w)``.

    Raises:
        ParameterError: when the data is smaller than the crop.
    """
    height, width = data.shape[-2:]
    crop_h, crop_w = shape
    if not (0 < crop_h <= height and 0 < crop_w <= width):
        raise ParameterError(
            f"cannot crop {height}x{width} data to {crop_h}x{crop_w}: the image is smaller than "
            f"the {crop_h}x{crop_w} the weights expect"
        )
    top = (height - crop_h) // 2
    left = (width - crop_w) // 2
    return data[..., top : top + crop_h, left : left + crop_w]


def kspace_to_cropped_image(kspace: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
    """Fully sampled k-space ``(C, H, W)`` → coil images ``(C, h, w)`` cropped in the image domain.

    The crop removes the 2× readout oversampling of raw fastMRI data (768 → 384 rows) and the
    phase-encode padding (396 → 384 columns).
    """
    return center_crop(ifft2c(kspace), image_size)


FOV_MAPPINGS = ("crop", "full")
"""How an acquisition larger than the weights is mapped to their size: ``crop`` the image centre
(the paper's 384×384 path) or keep the ``full`` field of view at lower resolution."""
COIL_COMPRESSIONS = ("reference", "always")
"""When acquisitions are SVD-compressed to the weights' virtual coils: ``reference`` only when they
have more coils (the rcGAN reference: data with exactly K coils stays as measured), ``always``
also when they have exactly K (a lossless rotation into the virtual-coil basis)."""


def full_fov_side(shape: tuple[int, int]) -> int:
    """Side of the square field of view of a ``(H, W)`` acquisition: the smaller side.

    Raw fastMRI brain k-space is ``768 × 396``: the readout (rows) is 2× oversampled, so the
    centred ``396 × 396`` square of the image is the whole field of view.
    """
    return int(min(shape))


def kspace_to_full_fov_image(kspace: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
    """Fully sampled k-space ``(C, H, W)`` → the whole field of view at ``image_size = (h, w)``.

    Removes the readout oversampling (image-domain crop to the centred ``F × F`` square,
    ``F = min(H, W)``, see :func:`full_fov_side`), then keeps the central ``h × w`` block of its
    k-space: the image covers the same field of view with pixels ``F/h × F/w`` times larger. The
    result is scaled by ``sqrt(h w) / F`` so that intensities match the ``F × F`` image.

    Raises:
        ParameterError: when ``F`` is smaller than ``image_size``.
    """
    side = full_fov_side(tuple(kspace.shape[-2:]))
    height, width = image_size
    if side < max(height, width):
        raise ParameterError(
            f"cannot map a {kspace.shape[-2]}x{kspace.shape[-1]} acquisition (field of view "
            f"{side}x{side}) to {height}x{width}: it is smaller than the {height}x{width} image the "
            f"weights expect"
        )
    if tuple(kspace.shape[-2:]) != (side, side):
        kspace = fft2c(center_crop(ifft2c(kspace), (side, side)))
    block = center_crop(kspace, (height, width))
    return ifft2c(block) * (float(np.sqrt(height * width)) / side)


def map_acquisition(
    kspace: torch.Tensor, image_size: tuple[int, int], fov: str = "crop"
) -> tuple[torch.Tensor, float]:
    """Coil images ``(C, h, w)`` of the weights' size, and their pixel size in input pixels.

    ``fov="crop"``: image-domain centre crop (:func:`kspace_to_cropped_image`), scale 1.
    ``fov="full"``: :func:`kspace_to_full_fov_image`, scale ``F / h`` with ``F`` the side of
    the field of view; an output pixel ``i`` lies at ``F//2 + (i - h//2)·F/h`` on the ``F × F``
    input grid.
    """
    if fov == "crop":
        return kspace_to_cropped_image(kspace, image_size), 1.0
    if fov == "full":
        side = full_fov_side(tuple(kspace.shape[-2:]))
        return kspace_to_full_fov_image(kspace, image_size), side / image_size[0]
    raise ParameterError(f"unknown field-of-view mapping {fov!r}: expected one of {FOV_MAPPINGS}")


def coil_compress(images: torch.Tensor, virtual_coils: int) -> torch.Tensor:
    """SVD coil compression exactly as the rcGAN reference preprocessing does it.

    With ``x`` the slice as ``(H, W, C)`` and ``X = x.reshape(H·W, C)``:
    ``U, S, Vh = numpy.linalg.svd(X, full_matrices=False)`` and the virtual coils are
    ``(X @ Vh.conj().T)[:, :K]``. Using numpy's LAPACK call on the same matrix fixes the
    per-vector phase of the singular vectors, so imported reference weights see the inputs
    they were trained on.

    Args:
        images: complex coil images ``(C, H, W)``.
        virtual_coils: ``K ≤ C``.

    Returns:
        complex virtual-coil images ``(K, H, W)``, ordered by decreasing energy.
    """
    coils, height, width = images.shape
    if virtual_coils > coils:
        raise ParameterError(
            f"cannot compress {coils} coils to {virtual_coils} virtual coils: the data has fewer "
            f"coils than the weights need"
        )
    x = images.detach().cpu().permute(1, 2, 0).reshape(height * width, coils).numpy()
    _, _, vh = np.linalg.svd(x, full_matrices=False)
    virtual = (x @ vh.conj().T)[:, :virtual_coils]
    compressed = torch.from_numpy(np.ascontiguousarray(virtual.T.reshape(virtual_coils, height, width)))
    return compressed.to(images.device)


def to_virtual_coils(images: torch.Tensor, virtual_coils: int, rule: str = "reference") -> torch.Tensor:
    """Coil images ``(C, H, W)`` → the generator's ``(K, H, W)`` virtual coils by ``rule`` (one of
    :data:`COIL_COMPRESSIONS`): :func:`coil_compress` when ``C > K``, and also when ``C == K`` with
    ``always``; otherwise the coils as they are."""
    if rule not in COIL_COMPRESSIONS:
        raise ParameterError(f"unknown coil compression {rule!r}: expected one of {COIL_COMPRESSIONS}")
    coils = images.shape[0]
    if coils > virtual_coils or (coils == virtual_coils and rule == "always"):
        return coil_compress(images, virtual_coils)
    return images


def apply_kspace_mask(image: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Undersample coil images in k-space.

    Args:
        image: complex coil images ``(..., C, H, W)``.
        mask: boolean ``(H, W)``, True where k-space is measured.

    Returns:
        ``(measured_kspace, zero_filled_image)``, both complex ``(..., C, H, W)``; the zero-filled
        image is ``y = IFFT(M ⊙ FFT(x))``.
    """
    measured = fft2c(image) * mask.to(image.device)
    return measured, ifft2c(measured)


def data_consistency(
    image: torch.Tensor, measured_kspace: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Replace the k-space of ``image (..., C, H, W)`` by ``measured_kspace`` where ``mask``."""
    kspace = torch.where(mask.to(image.device), measured_kspace, fft2c(image))
    return ifft2c(kspace)


def complex_to_channels(data: torch.Tensor) -> torch.Tensor:
    """Complex ``(..., C, H, W)`` → real ``(..., 2C, H, W)`` ordered ``[re(0..C-1), im(0..C-1)]``."""
    return torch.cat([data.real, data.imag], dim=-3)


def channels_to_complex(data: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`complex_to_channels`: real ``(..., 2C, H, W)`` → complex ``(..., C, H, W)``."""
    coils = data.shape[-3] // 2
    return torch.complex(data[..., :coils, :, :].float(), data[..., coils:, :, :].float())


class Normalization(NamedTuple):
    """Per-example affine normalisation ``(x − mean) / std`` of the real channel representation."""

    mean: float
    std: float

    @classmethod
    def of(cls, channels: torch.Tensor) -> Normalization:
        """Statistics of a real tensor (the zero-filled image's channels, Section 4.2)."""
        std = float(channels.std())
        if not np.isfinite(std) or std <= 0:
            raise ParameterError("the zero-filled image is constant: nothing was measured")
        return cls(float(channels.mean()), std)

    def apply(self, channels: torch.Tensor) -> torch.Tensor:
        return (channels - self.mean) / self.std

    def invert(self, channels: torch.Tensor) -> torch.Tensor:
        return channels * self.std + self.mean


def rss(images: torch.Tensor) -> torch.Tensor:
    """Root-sum-of-squares coil combination: complex ``(..., C, H, W)`` → real ``(..., H, W)``."""
    return torch.sqrt((images.abs() ** 2).sum(dim=-3))


def sense_combine(images: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
    """SENSE coil combination ``Σ_c conj(S_c) x_c``: ``(..., C, H, W)`` with maps ``(C, H, W)``."""
    return (maps.conj().to(images.device) * images).sum(dim=-3)


def espirit_maps(
    kspace: torch.Tensor,
    calib_width: int = 24,
    threshold: float = 0.02,
    crop: float = 0.95,
    kernel_width: int = 6,
) -> torch.Tensor:
    """ESPIRiT sensitivity maps with sigpy's ``EspiritCalib``.

    Args:
        kspace: fully sampled or centre-sampled complex k-space ``(C, H, W)``.

    Returns:
        complex64 maps ``(C, H, W)``.
    """
    from sigpy.mri.app import EspiritCalib

    calibration = EspiritCalib(
        kspace.detach().cpu().numpy().astype(np.complex64),
        calib_width=calib_width,
        thresh=threshold,
        crop=crop,
        kernel_width=kernel_width,
        show_pbar=False,
    )
    return torch.from_numpy(np.asarray(calibration.run(), dtype=np.complex64))
