"""Centred orthonormal 2-D FFTs on the last two axes (fastMRI convention)."""

from __future__ import annotations

import torch


def fft2c(image: torch.Tensor) -> torch.Tensor:
    """Centred orthonormal FFT: ``fftshift(fft2(ifftshift(image), norm="ortho"))``.

    Args:
        image: complex tensor ``(..., H, W)`` in the image domain.

    Returns:
        complex tensor ``(..., H, W)`` in k-space, DC at index ``(H // 2, W // 2)``.
    """
    dims = (-2, -1)
    shifted = torch.fft.ifftshift(image, dim=dims)
    return torch.fft.fftshift(torch.fft.fft2(shifted, dim=dims, norm="ortho"), dim=dims)


def ifft2c(kspace: torch.Tensor) -> torch.Tensor:
    """Centred orthonormal inverse FFT, the exact inverse of :func:`fft2c`.

    Args:
        kspace: complex tensor ``(..., H, W)``, DC at index ``(H // 2, W // 2)``.

    Returns:
        complex tensor ``(..., H, W)`` in the image domain.
    """
    dims = (-2, -1)
    shifted = torch.fft.ifftshift(kspace, dim=dims)
    return torch.fft.fftshift(torch.fft.ifft2(shifted, dim=dims, norm="ortho"), dim=dims)
