"""Importing a reference rcGAN Lightning checkpoint reproduces the reference forward pass."""

import argparse

import numpy as np
import pytest
import torch

from napari_rcgan.cli import main
from napari_rcgan.errors import WeightsError
from napari_rcgan.models.reference_import import reference_generator_weights
from napari_rcgan.weights import load_weights
from tests.reference_rcgan import ReferenceUNetModel, randomize_batchnorm


@pytest.fixture(scope="module")
def reference_checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    reference = ReferenceUNetModel(in_chans=18, out_chans=16, chans=128).eval()
    randomize_batchnorm(reference)
    state = {f"generator.{key}": value for key, value in reference.state_dict().items()}
    state["discriminator.dense.1.weight"] = torch.zeros(1, 4)
    checkpoint = {
        "state_dict": state,
        "hyper_parameters": {"args": argparse.Namespace(im_size=384, in_chans=16)},
        "beta_std": np.float64(1.37),
        "epoch": 3,
    }
    path = tmp_path_factory.mktemp("ref") / "reference.ckpt"
    torch.save(checkpoint, path)
    return path, reference


def test_convert_cli_matches_reference_forward(reference_checkpoint, tmp_path, capsys):
    path, reference = reference_checkpoint
    out = tmp_path / "imported.safetensors"
    assert main(["convert", str(path), str(out)]) == 0
    weights = load_weights(out)
    assert weights.metadata.base_width == 128 and weights.metadata.channels == 8
    assert weights.metadata.image_size == [384, 384]
    assert weights.metadata.beta_sd == pytest.approx(1.37)
    ours = weights.build_generator()
    inputs = torch.randn(2, 18, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        expected = reference(inputs)
        produced = ours(inputs)
    torch.testing.assert_close(produced, expected, atol=1e-5, rtol=1e-5)
    # Our generator has no unused layers.
    assert not any(key.startswith("res_layer_1") for key in weights.state_dict)
    assert "wrote" in capsys.readouterr().out


def test_import_rejects_non_checkpoints(tmp_path):
    not_a_checkpoint = tmp_path / "bad.ckpt"
    not_a_checkpoint.write_bytes(b"definitely not a torch file")
    with pytest.raises(WeightsError, match="bad.ckpt"):
        reference_generator_weights(not_a_checkpoint)
    torch.save({"state_dict": {"discriminator.w": torch.zeros(1)}}, tmp_path / "nogen.ckpt")
    with pytest.raises(WeightsError, match="no rcGAN MRI generator"):
        reference_generator_weights(tmp_path / "nogen.ckpt")


def test_import_refuses_pickled_code(tmp_path):
    class Payload:
        def __reduce__(self):
            return (print, ("this must never run",))

    torch.save({"state_dict": {}, "evil": Payload()}, tmp_path / "evil.ckpt")
    with pytest.raises(WeightsError, match="weights_only"):
        reference_generator_weights(tmp_path / "evil.ckpt")
