"""FFT, crop, coil compression, normalisation, coil combination, data consistency."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from napari_rcgan.errors import ParameterError
from napari_rcgan.physics import transforms
from napari_rcgan.physics.fft import fft2c, ifft2c


def random_complex(*shape: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.complex(
        torch.randn(shape, generator=generator), torch.randn(shape, generator=generator)
    )


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 3), st.integers(2, 33), st.integers(2, 33), st.integers(0, 1000))
def test_fft_round_trip_and_orthonormality(coils, height, width, seed):
    image = random_complex(coils, height, width, seed=seed)
    kspace = fft2c(image)
    torch.testing.assert_close(ifft2c(kspace), image, atol=1e-5, rtol=1e-5)
    # Parseval: the orthonormal transform keeps the energy.
    assert torch.allclose(kspace.abs().pow(2).sum(), image.abs().pow(2).sum(), rtol=1e-4)


def test_fft_puts_dc_in_the_centre():
    image = torch.ones(1, 6, 8, dtype=torch.complex64)
    kspace = fft2c(image)
    assert kspace.abs().argmax().item() == 3 * 8 + 4
    assert kspace.abs()[0, 3, 4] == pytest.approx(np.sqrt(48), rel=1e-5)


def test_center_crop_takes_the_middle_and_rejects_small_images():
    data = torch.arange(6 * 8).reshape(6, 8)
    cropped = transforms.center_crop(data, (2, 4))
    assert cropped.tolist() == [[18, 19, 20, 21], [26, 27, 28, 29]]
    with pytest.raises(ParameterError, match="smaller than"):
        transforms.center_crop(data, (8, 8))


def simulated_coil_images(coils: int = 16, size: int = 64) -> torch.Tensor:
    """A smooth object seen through smooth, overlapping coil sensitivities (sigpy birdcage)."""
    import sigpy.mri

    maps = sigpy.mri.birdcage_maps((coils, size, size)).astype(np.complex64)
    y, x = np.mgrid[-1 : 1 : size * 1j, -1 : 1 : size * 1j]
    phantom = ((x / 0.7) ** 2 + (y / 0.85) ** 2 < 1).astype(np.float32) * (1 + 0.5 * x)
    return torch.from_numpy(maps * phantom).to(torch.complex64)


def test_coil_compression_keeps_99_percent_of_the_energy_of_16_coil_data():
    images = simulated_coil_images(16)
    noise = 0.01 * random_complex(*images.shape) * images.abs().mean()
    compressed = transforms.coil_compress(images + noise, 8)
    assert compressed.shape == (8, 64, 64)
    kept = compressed.abs().pow(2).sum() / (images + noise).abs().pow(2).sum()
    assert kept >= 0.99


def reference_preprocessing(
    kspace: np.ndarray, size: int, virtual_coils: int, lines: np.ndarray
) -> np.ndarray:
    """The reference preprocessing re-implemented in numpy from design.md's description.

    Centred orthonormal IFFT, image-domain centre crop, ``X`` = the ``(H, W, C)`` slice reshaped
    to ``(H·W, C)``, ``U, S, Vh = svd(X)``, virtual coils ``(X @ Vh^H)[:, :K]``, column mask in
    k-space, zero-filled channels ``[re, im]`` normalised by their own mean and std.
    """

    def ifft(k):
        return np.fft.fftshift(
            np.fft.ifft2(np.fft.ifftshift(k, axes=(-2, -1)), norm="ortho"), axes=(-2, -1)
        )

    def fft(x):
        return np.fft.fftshift(
            np.fft.fft2(np.fft.ifftshift(x, axes=(-2, -1)), norm="ortho"), axes=(-2, -1)
        )

    image = ifft(kspace)
    top, left = (image.shape[1] - size) // 2, (image.shape[2] - size) // 2
    x = np.moveaxis(image[:, top : top + size, left : left + size], 0, -1)  # (H, W, C)
    matrix = x.reshape(size * size, x.shape[-1])
    _, _, vh = np.linalg.svd(matrix, full_matrices=False)
    virtual = (matrix @ vh.conj().T)[:, :virtual_coils].reshape(size, size, virtual_coils)
    mask = np.zeros((size, size), dtype=bool)
    mask[:, lines] = True
    zero_filled = ifft(fft(np.moveaxis(virtual, -1, 0)) * mask)
    channels = np.concatenate([zero_filled.real, zero_filled.imag])
    return (channels - channels.mean()) / channels.std()


def test_preprocessing_gives_the_reference_network_input_for_a_raw_16_coil_slice():
    from napari_rcgan.physics.masks import column_mask
    from napari_rcgan.sampler import preprocess_mri

    images = simulated_coil_images(16).numpy()
    padded = np.zeros((16, 128, 72), dtype=np.complex64)  # 2x readout oversampling, wider PE
    padded[:, 32:96, 4:68] = images
    rng = np.random.default_rng(3)
    noise = rng.standard_normal(padded.shape) + 1j * rng.standard_normal(padded.shape)
    kspace = fft2c(torch.from_numpy(padded)).numpy() + 0.01 * noise.astype(np.complex64)
    mask = column_mask((64, 64), "gro", 4)
    ours = preprocess_mri(kspace.astype(np.complex64), (64, 64), 8, mask).network_input().numpy()
    reference = reference_preprocessing(kspace.astype(np.complex64), 64, 8, mask.lines)
    assert ours.shape == reference.shape == (16, 64, 64)
    assert np.abs(ours - reference).max() <= 1e-4 * np.abs(reference).max()


def test_virtual_coils_of_data_with_exactly_the_weights_coils():
    images = simulated_coil_images(8)
    # The reference keeps 8-coil data as measured; "always" rotates it into SVD virtual coils:
    # a unitary change of basis (same root-sum-of-squares image), ordered by decreasing energy.
    assert transforms.to_virtual_coils(images, 8) is images
    rotated = transforms.to_virtual_coils(images, 8, "always")
    torch.testing.assert_close(rotated, transforms.coil_compress(images, 8))
    assert not torch.allclose(rotated, images)
    rss = images.abs().pow(2).sum(0).sqrt()
    rotated_rss = rotated.abs().pow(2).sum(0).sqrt()
    torch.testing.assert_close(rotated_rss, rss, rtol=1e-4, atol=1e-4 * float(rss.max()))
    energy = rotated.abs().pow(2).sum((1, 2))
    assert bool((energy[:-1] >= energy[1:]).all())
    # More coils than the weights' are compressed under both rules.
    more = simulated_coil_images(12)
    for rule in ("reference", "always"):
        assert transforms.to_virtual_coils(more, 8, rule).shape == (8, 64, 64)
    with pytest.raises(ParameterError, match="unknown coil compression 'sometimes'"):
        transforms.to_virtual_coils(images, 8, "sometimes")


def test_coil_compression_refuses_more_virtual_coils_than_coils():
    with pytest.raises(ParameterError, match="fewer coils"):
        transforms.coil_compress(random_complex(4, 8, 8), 8)


def test_channels_round_trip_and_ordering():
    data = random_complex(3, 5, 4)
    channels = transforms.complex_to_channels(data)
    assert channels.shape == (6, 5, 4)
    torch.testing.assert_close(channels[:3], data.real)
    torch.testing.assert_close(channels[3:], data.imag)
    torch.testing.assert_close(transforms.channels_to_complex(channels), data)


def test_normalization_inverts_and_rejects_constant_images():
    channels = 3 + 2 * torch.randn(4, 10, 10)
    norm = transforms.Normalization.of(channels)
    normalized = norm.apply(channels)
    assert abs(float(normalized.mean())) < 1e-5
    assert float(normalized.std()) == pytest.approx(1.0, rel=1e-5)
    torch.testing.assert_close(norm.invert(normalized), channels)
    with pytest.raises(ParameterError, match="constant"):
        transforms.Normalization.of(torch.zeros(2, 4, 4))


def test_data_consistency_keeps_measured_lines_and_the_generator_elsewhere():
    truth = random_complex(2, 16, 16, seed=1)
    guess = random_complex(2, 16, 16, seed=2)
    mask = torch.zeros(16, 16, dtype=torch.bool)
    mask[:, ::4] = True
    measured, zero_filled = transforms.apply_kspace_mask(truth, mask)
    assert torch.allclose(
        fft2c(zero_filled)[..., ~mask], torch.zeros(1, dtype=torch.complex64), atol=1e-6
    )
    consistent = fft2c(transforms.data_consistency(guess, measured, mask))
    torch.testing.assert_close(consistent[..., mask], fft2c(truth)[..., mask], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(
        consistent[..., ~mask], fft2c(guess)[..., ~mask], atol=1e-5, rtol=1e-5
    )


def test_rss_and_sense_combine():
    images = simulated_coil_images(8, 32)
    rss = transforms.rss(images)
    expected = np.sqrt((np.abs(images.numpy()) ** 2).sum(0))
    np.testing.assert_allclose(rss.numpy(), expected, rtol=1e-5)
    # With unit-norm maps, SENSE combination of S·x recovers |x| exactly.
    maps = images / rss.clamp_min(1e-12)
    obj = torch.rand(32, 32)
    combined = transforms.sense_combine(maps * obj, maps).abs()
    support = rss > 1e-6
    torch.testing.assert_close(combined[support], obj[support], atol=1e-5, rtol=1e-4)


def test_espirit_maps_recover_birdcage_sensitivities_up_to_phase():
    images = simulated_coil_images(8, 48)
    maps = transforms.espirit_maps(fft2c(images), calib_width=16)
    assert maps.shape == (8, 48, 48) and maps.dtype == torch.complex64
    combined = transforms.sense_combine(images, maps).abs()
    reference = transforms.rss(images)
    inside = reference > 0.2 * reference.max()
    ratio = combined[inside] / reference[inside]
    assert float(ratio.mean()) == pytest.approx(1.0, abs=0.05)


def _edge_object(height: int, width: int) -> torch.Tensor:
    """A 4-coil object on a (height, width) grid with bright squares near the left/right edges of
    the central width x width field of view (rows beyond it are readout oversampling)."""
    image = torch.zeros(4, height, width, dtype=torch.complex64)
    top = (height - width) // 2
    image[:, top + width // 2 - 4 : top + width // 2 + 4, 1:9] = 1.0
    image[:, top + width // 2 - 4 : top + width // 2 + 4, width - 9 : width - 1] = 2.0
    image[:, top + 8 : top + width - 8, width // 2 - 4 : width // 2 + 4] = 0.5
    return image


def test_full_fov_keeps_the_whole_field_of_view_at_lower_resolution():
    oversampled = _edge_object(128, 64)  # 2x readout oversampling: the FOV is 64x64
    kspace = fft2c(oversampled)
    full, scale = transforms.map_acquisition(kspace, (32, 32), "full")
    crop, crop_scale = transforms.map_acquisition(kspace, (32, 32), "crop")
    assert full.shape == crop.shape == (4, 32, 32)
    assert scale == 2.0 and crop_scale == 1.0
    # Both edge squares (at the FOV's left and right borders) are in the full-FOV image ...
    profile = full[0].abs()[16]
    assert float(profile[:5].max()) > 0.5 and float(profile[-5:].max()) > 1.0
    # ... but not in the centre crop.
    assert float(crop[0].abs()[16, :3].max()) < 0.2
    # It is the central k-space block of the FOV square, with intensities kept.
    square = transforms.center_crop(oversampled, (64, 64))
    block = transforms.center_crop(fft2c(square), (32, 32))
    torch.testing.assert_close(full, ifft2c(block) * 0.5, atol=1e-5, rtol=1e-4)
    assert float(full.abs().max()) == pytest.approx(2.0, rel=0.25)


def test_full_fov_rejects_an_acquisition_smaller_than_the_weights():
    with pytest.raises(ParameterError, match=r"24x20 acquisition .* smaller than the 32x32"):
        transforms.map_acquisition(random_complex(2, 24, 20), (32, 32), "full")
    with pytest.raises(ParameterError, match="field-of-view mapping 'middle'"):
        transforms.map_acquisition(random_complex(2, 64, 64), (32, 32), "middle")
