"""PosteriorSampler: data consistency, seeds, chunking, cancel, out-of-memory, bad input."""

import threading

import numpy as np
import pytest
import torch

from napari_rcgan.backends import TorchBackend
from napari_rcgan.errors import MaskError, ParameterError, SamplingCancelled, WeightsError
from napari_rcgan.io import FastMRIFile
from napari_rcgan.physics.fft import fft2c
from napari_rcgan.physics.inpainting import center_square_hole
from napari_rcgan.physics.masks import column_mask, mask_from_array
from napari_rcgan.sampler import PosteriorSampler, code_vector, resolve_device


@pytest.fixture(scope="module")
def mri_sampler(mri_weights_64):
    return PosteriorSampler(mri_weights_64, device="cpu")


@pytest.fixture(scope="module")
def kspace_64(small_fastmri_file):
    return FastMRIFile.open(small_fastmri_file).read_kspace(0)


@pytest.mark.parametrize("kind", ["gro", "equispaced", "random"])
def test_every_sample_is_consistent_with_the_measured_kspace(mri_sampler, kspace_64, kind):
    measurement = mri_sampler.measure_mri(kspace_64, R=4, mask_kind=kind)
    result = mri_sampler.sample(measurement, P=3, seed=0)
    assert result.images.shape == (3, 8, 64, 64) and result.images.dtype == torch.complex64
    assert result.stack.samples.shape == (3, 64, 64)
    mask = torch.from_numpy(measurement.mask.mask)
    sampled = fft2c(result.images)[..., mask]
    measured = measurement.measured_kspace[..., mask].expand_as(sampled)
    relative = torch.linalg.vector_norm(sampled - measured) / torch.linalg.vector_norm(measured)
    assert relative < 1e-4
    unsampled = fft2c(result.images)[..., ~mask]
    assert torch.linalg.vector_norm(unsampled) > 0, "the generator fills the missing lines"


def test_samples_do_not_depend_on_chunk_size_or_P(mri_sampler, kspace_64):
    measurement = mri_sampler.measure_mri(kspace_64, R=4)
    whole = mri_sampler.sample(measurement, P=5, seed=7, chunk_size=5).images
    for chunk in (1, 2, 3):
        torch.testing.assert_close(
            mri_sampler.sample(measurement, P=5, seed=7, chunk_size=chunk).images,
            whole,
            atol=1e-4,
            rtol=1e-4,
        )
    torch.testing.assert_close(
        mri_sampler.sample(measurement, P=2, seed=7).images, whole[:2], atol=1e-4, rtol=1e-4
    )
    other_seed = mri_sampler.sample(measurement, P=2, seed=8).images
    assert not torch.allclose(other_seed, whole[:2])
    assert not torch.allclose(whole[0], whole[1]), "different code vectors give different samples"


def test_code_vectors_depend_only_on_seed_and_index():
    torch.testing.assert_close(code_vector(3, 5, (2, 4, 4)), code_vector(3, 5, (2, 4, 4)))
    assert not torch.equal(code_vector(3, 5, (2, 4, 4)), code_vector(3, 6, (2, 4, 4)))
    assert not torch.equal(code_vector(3, 5, (2, 4, 4)), code_vector(4, 5, (2, 4, 4)))


def test_progress_chunks_and_statistics(mri_sampler, kspace_64):
    measurement = mri_sampler.measure_mri(kspace_64, R=8)
    progress, starts = [], []
    result = mri_sampler.sample(
        measurement,
        P=5,
        chunk_size=2,
        progress=lambda d, t: progress.append((d, t)),
        on_chunk=lambda chunk: starts.append(chunk.start),
    )
    assert progress == [(2, 5), (4, 5), (5, 5)] and starts == [0, 2, 4]
    magnitudes = result.stack.samples.astype(np.float64)
    np.testing.assert_allclose(result.stack.mean(5), magnitudes.mean(0), rtol=1e-5, atol=1e-6)
    assert result.complete and result.P == 5
    assert measurement.reference.shape == (64, 64)
    assert measurement.mask.achieved_R == pytest.approx(8, rel=0.05)


def test_cancel_after_first_chunk_returns_a_consistent_partial_stack(mri_sampler, kspace_64):
    measurement = mri_sampler.measure_mri(kspace_64, R=4)
    cancel = threading.Event()
    result = mri_sampler.sample(
        measurement, P=6, chunk_size=2, on_chunk=lambda _: cancel.set(), cancel=cancel
    )
    assert not result.complete and result.P == 2
    np.testing.assert_allclose(result.stack.mean(), result.stack.samples.mean(0), rtol=1e-5)
    with pytest.raises(SamplingCancelled):
        mri_sampler.sample(measurement, P=6, cancel=lambda: True)


class OutOfMemoryAbove(torch.nn.Module):
    """Wraps a generator and fails like CUDA does when a batch is larger than ``limit``."""

    def __init__(self, generator, limit):
        super().__init__()
        self.generator, self.limit, self.batches = generator, limit, []

    def code_shape(self, height, width):
        return self.generator.code_shape(height, width)

    def sample(self, condition, code):
        self.batches.append(len(condition))
        if len(condition) > self.limit:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")
        return self.generator.sample(condition, code)


def test_out_of_memory_halves_the_chunk_and_continues(mri_weights_64, kspace_64):
    sampler = PosteriorSampler(mri_weights_64, device="cpu", backend="torch", precision="fp32")
    measurement = sampler.measure_mri(kspace_64, R=4)
    expected = sampler.sample(measurement, P=4, seed=1, chunk_size=4).images
    wrapper = OutOfMemoryAbove(sampler.generator, limit=1)
    sampler.backend = TorchBackend(wrapper, sampler.device, "fp32")
    result = sampler.sample(measurement, P=4, seed=1, chunk_size=4)
    assert wrapper.batches[:3] == [4, 2, 1] and result.P == 4
    torch.testing.assert_close(result.images, expected, atol=1e-4, rtol=1e-4)


def test_sense_combination_uses_espirit_maps(mri_sampler, kspace_64):
    measurement = mri_sampler.measure_mri(kspace_64, R=4, coil_combine="sense")
    assert measurement.sense_maps.shape == (8, 64, 64)
    reference = measurement.reference
    rss = mri_sampler.measure_mri(kspace_64, R=4).reference
    inside = rss > 0.3 * rss.max()
    assert np.median(reference[inside] / rss[inside]) == pytest.approx(1.0, abs=0.1)
    again = mri_sampler.measure_mri(kspace_64, R=4, coil_combine="sense")
    assert again.sense_maps is measurement.sense_maps, "maps are cached per slice"


def test_raw_layout_is_cropped_and_coil_compressed(mri_weights_384, raw_fastmri_file):
    data = FastMRIFile.open(raw_fastmri_file)
    assert (data.num_coils, data.kspace_shape) == (16, (768, 396))
    sampler = PosteriorSampler(mri_weights_384, device="cpu")
    measurement = sampler.measure_mri(data.read_kspace(1), R=8)
    assert measurement.target.shape == (8, 384, 384)
    reference = data.read_reference(1)
    ours = measurement.reference
    # 8 virtual coils keep nearly all of the 16-coil RSS image.
    assert np.linalg.norm(ours) / np.linalg.norm(reference) > 0.99


def test_inpainting_keeps_known_pixels_and_varies_in_the_hole(face_weights_64):
    sampler = PosteriorSampler(face_weights_64, device="cpu")
    rng = np.random.default_rng(0)
    image = rng.random((64, 64, 3)).astype(np.float32)
    hole = center_square_hole((64, 64))
    result = sampler.sample(sampler.measure_inpainting(image, hole), P=3)
    samples = result.stack.samples
    assert samples.shape == (3, 64, 64, 3)
    np.testing.assert_allclose(
        samples[:, ~hole], np.broadcast_to(image[~hole], samples[:, ~hole].shape)
    )
    assert np.abs(samples[0][hole] - samples[1][hole]).mean() > 1e-4


def test_bad_mri_inputs(mri_sampler, kspace_64, face_weights_64):
    with pytest.raises(WeightsError, match="has 4 coils but the weights .* need at least 8"):
        mri_sampler.measure_mri(kspace_64[:4], R=4)
    with pytest.raises(ParameterError, match="smaller than the 64x64"):
        mri_sampler.measure_mri(kspace_64[:, :32, :32], R=4)
    corrupted = kspace_64.copy()
    corrupted[0, 3, 3] = np.nan
    with pytest.raises(ParameterError, match="NaN or Inf"):
        mri_sampler.measure_mri(corrupted, R=4)
    for bad_R in (0.5, 1000):
        with pytest.raises(ParameterError, match="R"):
            mri_sampler.measure_mri(kspace_64, R=bad_R)
    with pytest.raises(MaskError, match="samples no k-space line"):
        mri_sampler.measure_mri(kspace_64, mask=mask_from_array(np.zeros(64), (64, 64)))
    with pytest.raises(MaskError, match="does not fit"):
        mri_sampler.measure_mri(kspace_64, mask=column_mask((32, 32), "gro", 4))
    measurement = mri_sampler.measure_mri(kspace_64, R=4)
    for bad_P in (0, 513, 2.5):
        with pytest.raises(ParameterError, match="1..512"):
            mri_sampler.sample(measurement, P=bad_P)
    with pytest.raises(WeightsError, match="weights are for inpainting"):
        PosteriorSampler(face_weights_64, device="cpu").measure_mri(kspace_64, R=4)
    with pytest.raises(WeightsError, match="weights are for mri"):
        mri_sampler.measure_inpainting(np.zeros((64, 64, 3)), center_square_hole((64, 64)))


def test_device_resolution():
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")
    assert resolve_device("cpu").type == "cpu"
    with pytest.raises(ParameterError):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ParameterError, match="CUDA is not available"):
            resolve_device("cuda")


def test_full_fov_weights_see_the_whole_acquisition_and_report_its_scale(tmp_path):
    from napari_rcgan.weights import WeightsMetadata, build_generator, save_weights

    metadata = WeightsMetadata(
        task="mri", image_size=[32, 32], channels=8, base_width=4, num_pool_layers=2,
        masks=["gro"], acceleration=[2.0, 8.0], fov="full",
    )
    torch.manual_seed(0)
    path = save_weights(tmp_path / "full.safetensors", build_generator(metadata).state_dict(), metadata)
    sampler = PosteriorSampler(path, device="cpu")
    rng = np.random.default_rng(0)
    image = np.zeros((10, 80, 40), dtype=np.complex64)  # 2x readout oversampling: FOV 40x40
    image[:, 22:58, 2:38] = rng.standard_normal((10, 36, 36))
    measurement = sampler.measure_mri(fft2c(torch.from_numpy(image)), R=4, source="full.h5")
    assert measurement.fov == "full" and measurement.pixel_scale == pytest.approx(40 / 32)
    reference = measurement.reference
    assert reference.shape == (32, 32)
    # The object spans almost the whole FOV: the edge columns of the 32x32 image hold it too.
    assert reference[:, 1].mean() > 0.3 * reference.mean()
    assert tuple(sampler.sample(measurement, P=2, seed=0).images.shape[-2:]) == (32, 32)
    with pytest.raises(ParameterError, match=r"full\.h5: k-space 60x30 is smaller than the 32x32"):
        sampler.measure_mri(np.zeros((10, 60, 30), np.complex64), R=4, source="full.h5")


def test_input_pixel_scale_of_full_fov_weights(small_fastmri_file):
    from napari_rcgan.session import SamplingRequest, input_pixel_scale
    from napari_rcgan.weights import WeightsMetadata

    request = SamplingRequest(input=str(small_fastmri_file), R=4)
    full = WeightsMetadata(task="mri", image_size=[64, 64], channels=8, fov="full")
    assert input_pixel_scale(request, full) == pytest.approx(72 / 64)  # 128x72 k-space: FOV 72
    crop = WeightsMetadata(task="mri", image_size=[64, 64], channels=8)
    assert input_pixel_scale(request, crop) == 1.0
