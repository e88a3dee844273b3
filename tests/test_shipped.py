"""The shipped demo weights and sample data: they load, fit each other, and reproduce the card."""

import json

import numpy as np
import pytest
import torch

from napari_rcgan import stats
from napari_rcgan.bundled import BRAIN_FILE, sample_data_dir
from napari_rcgan.cli import main
from napari_rcgan.io import FastMRIFile
from napari_rcgan.physics.fft import fft2c
from napari_rcgan.sampler import PosteriorSampler
from napari_rcgan.session import SamplingRequest, Session
from napari_rcgan.weights import bundled_weights, read_metadata

BRAIN = sample_data_dir() / BRAIN_FILE


def test_bundled_weights_match_their_metadata_and_the_sample_data():
    assert set(bundled_weights()) == {"mri", "faces"}
    mri = read_metadata(bundled_weights()["mri"])
    data = FastMRIFile.open(BRAIN)
    # 10 receive coils, compressed to the weights' 8 virtual coils.
    assert mri.task == "mri" and mri.channels == 8 and data.num_coils == 10
    # The sample acquisition (2x readout oversampling, 136x136 field of view) is larger than the
    # weights: they see its whole field of view at 128x128.
    assert tuple(mri.image_size) == (128, 128) and data.kspace_shape == (256, 136)
    assert mri.fov == "full" and mri.coil_compression == "always"
    assert mri.masks == ["gro"] and mri.acceleration == [2.0, 8.0]
    assert [(b["R_min"], b["R_max"]) for b in mri.beta_sd_by_R] == [
        (2, 2.5), (2.5, 3), (3, 4), (4, 5), (5, 6), (6, 7), (7, 8)]
    dataset = mri.training["dataset"]["train"]
    assert "simulated k-space from real anatomy" in json.dumps(dataset)
    assert dataset["anatomy"] == ["colin27"] and dataset["held_out_anatomy"] == ["mni152"]
    assert mri.training["train_seconds"] > 0 and "cpu" in mri.training["hardware"]
    faces = read_metadata(bundled_weights()["faces"])
    assert faces.task == "inpainting" and faces.image_size == [32, 32] and "DEMO" in faces.notes
    assert faces.architecture == "comodgan" and faces.metrics["demo_evaluation"]["lfw_validation"]
    for path in bundled_weights().values():
        assert path.stat().st_size < 25e6


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


@pytest.mark.parametrize("name", ["mri", "faces"])
def test_bundled_metadata_names_no_path_of_the_machine_that_made_it(name):
    metadata = read_metadata(bundled_weights()[name])
    blocks = [metadata.metrics, metadata.conformal, metadata.notes, metadata.training]
    local = [text for text in _strings(blocks) if text.startswith(("/", "~")) or "/work/" in text]
    assert local == []


@pytest.mark.parametrize("R", [2, 4, 8])
def test_shipped_mri_samples_are_data_consistent(R):
    sampler = PosteriorSampler("mri", device="cpu")
    measurement = Session().measure(SamplingRequest(input=str(BRAIN), slice=1, R=R), sampler)
    result = sampler.sample(measurement, P=4, seed=0)
    mask = measurement.mask_tensor
    sampled = fft2c(result.images)[..., mask]
    measured = measurement.measured_kspace[..., mask].expand_as(sampled)
    assert torch.linalg.vector_norm(sampled - measured) / torch.linalg.vector_norm(measured) < 1e-4
    assert result.stack.std().mean() > 0


def test_shipped_mri_rotates_8_coil_data_into_virtual_coils():
    """The demo weights saw compressed virtual coils in 12 of 13 training examples: an 8-coil
    acquisition left as measured gets almost nothing from them, rotated it gets what 10 coils get."""
    sampler = PosteriorSampler("mri", device="cpu")
    assert sampler.metadata.coil_compression == "always"
    kspace = FastMRIFile.open(BRAIN).read_kspace(1)[:8]  # an 8-coil acquisition
    gains = {}
    for rule in ("always", "reference"):
        sampler.metadata.coil_compression = rule
        measurement = sampler.measure_mri(kspace, R=4, mask_kind="gro", source="8 coils")
        average = sampler.sample(measurement, P=8, seed=0).stack.mean()
        zero_filled = stats.psnr(measurement.zero_filled_display, measurement.reference)
        gains[rule] = stats.psnr(average, measurement.reference) - zero_filled
    assert gains["always"] > 4.0 and gains["reference"] < 2.0, gains


def _reproduces(entry: str, folder, tmp_path) -> dict:
    """Run ``napari-rcgan evaluate`` as the model card says and compare with its entry."""
    card = read_metadata(bundled_weights()["mri"]).metrics[entry]
    out = tmp_path / f"{entry}.json"
    Rs = sorted(card["R"], key=float)
    assert main(["evaluate", "--weights", "mri", "--data", str(folder), "--R", *Rs,
                 "--P", "1", "8", "32", "--device", "cpu", "--out", str(out)]) == 0
    measured = json.loads(out.read_text())["R"]
    assert measured.keys() == card["R"].keys()
    for R, values in card["R"].items():
        got = measured[R]
        assert got["zero_filled_psnr"] == pytest.approx(values["zero_filled_psnr"], abs=1e-3)
        for P in ("1", "8", "32"):
            assert got["psnr"][P] == pytest.approx(values["psnr"][P], abs=0.05)
            assert got["ssim"][P] == pytest.approx(values["ssim"][P], abs=2e-3)
        assert got["e1_over_ep_db"]["8"] == pytest.approx(values["e1_over_ep_db"]["8"], abs=0.05)
        assert got["apsd"] == pytest.approx(values["apsd"], rel=0.02)
        assert got["sd_error_spearman"] == pytest.approx(values["sd_error_spearman"], abs=0.02)
        assert got["slices_below_zero_filled"] == values["slices_below_zero_filled"]
    return measured


def test_evaluate_reproduces_the_model_card_on_the_held_out_sample_slices(tmp_path):
    measured = _reproduces("evaluation", sample_data_dir(), tmp_path)
    assert set(measured) == {"2", "4", "6", "8"}


def test_evaluate_reproduces_the_model_card_on_the_held_out_anatomy(tmp_path):
    pytest.importorskip("nilearn")
    from training.make_sample_data import write_heldout_anatomy

    write_heldout_anatomy(tmp_path / "mni152")
    _reproduces("evaluation_heldout_anatomy", tmp_path / "mni152", tmp_path)


def test_evaluate_reproduces_the_model_card_on_a_real_mr_slice(tmp_path):
    pytest.importorskip("pydicom")
    from training.make_sample_data import write_real_mr

    write_real_mr(tmp_path / "real")
    _reproduces("evaluation_real_mr", tmp_path / "real", tmp_path)


def test_shipped_face_weights_fill_only_the_hole():
    sampler = PosteriorSampler("faces", device="cpu")
    measurement = Session().measure(
        SamplingRequest(input=str(sample_data_dir() / "face_astronaut.png")), sampler
    )
    samples = sampler.sample(measurement, P=4, seed=0).stack.samples
    hole = measurement.hole
    known = measurement.image[0].numpy()
    np.testing.assert_allclose(samples[:, ~hole], np.broadcast_to(known[~hole], samples[:, ~hole].shape),
                               atol=1e-6)
    assert np.abs(samples[0][hole] - samples[1][hole]).mean() > 0.01, "samples differ in the hole"
