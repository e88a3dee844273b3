"""The shipped demo weights and sample data: they load, fit each other, and reproduce the card."""

import json

import numpy as np
import pytest
import torch

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
    assert mri.task == "mri" and mri.channels == data.num_coils == 8
    assert tuple(mri.image_size) == data.kspace_shape == (128, 128)
    assert mri.masks == ["gro"] and mri.acceleration == [2.0, 8.0]
    assert "simulated k-space from real anatomy" in json.dumps(mri.training["dataset"])
    assert mri.training["train_seconds"] > 0 and "cpu" in mri.training["hardware"]
    faces = read_metadata(bundled_weights()["faces"])
    assert faces.task == "inpainting" and faces.image_size == [32, 32] and "DEMO" in faces.notes
    assert faces.architecture == "comodgan" and faces.metrics["demo_evaluation"]["lfw_validation"]
    for path in bundled_weights().values():
        assert path.stat().st_size < 25e6


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


def test_evaluate_reproduces_the_model_card(tmp_path):
    out = tmp_path / "metrics.json"
    assert main(["evaluate", "--weights", "mri", "--data", str(sample_data_dir()), "--R", "4", "8",
                 "--P", "1", "8", "32", "--device", "cpu", "--out", str(out)]) == 0
    measured = json.loads(out.read_text())["R"]
    card = read_metadata(bundled_weights()["mri"]).metrics["evaluation"]["R"]
    for R in ("4", "8"):
        assert measured[R]["zero_filled_psnr"] == pytest.approx(card[R]["zero_filled_psnr"], abs=1e-3)
        for P in ("1", "8", "32"):
            assert measured[R]["psnr"][P] == pytest.approx(card[R]["psnr"][P], abs=0.05)
            assert measured[R]["ssim"][P] == pytest.approx(card[R]["ssim"][P], abs=2e-3)
        assert measured[R]["apsd"] == pytest.approx(card[R]["apsd"], rel=0.02)
        # The quality gate this demo meets: the P=32 average beats zero filling by ≥ 3 dB.
        assert measured[R]["psnr"]["32"] >= measured[R]["zero_filled_psnr"] + 3


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
