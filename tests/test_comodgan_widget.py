"""CoModGAN weights in the napari widget: the smoke config trains, resumes, exports and samples."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from napari.layers import Layer

from napari_rcgan._reader import get_reader
from napari_rcgan.physics.inpainting import center_square_hole
from napari_rcgan.weights import read_metadata
from tests import plugin_helpers as helpers
from training.datasets import write_demo_faces
from training.export import export_checkpoint
from training.train import run

CONFIGS = Path(__file__).resolve().parents[1] / "training" / "configs"


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, Path]:
    """The CoModGAN smoke config trained 1 + 1 iterations (with a resume) and exported."""
    folder = tmp_path_factory.mktemp("comod-widget")
    values = yaml.safe_load((CONFIGS / "smoke-faces-comodgan.yaml").read_text())
    values["data"]["root"] = str(write_demo_faces(folder / "faces"))
    config = folder / "smoke.yaml"
    config.write_text(yaml.safe_dump(values))
    out = folder / "run"
    for steps, extra in (("1", []), ("2", ["--resume"])):
        trainer = run(["--config", str(config), "--out", str(out), "--no-progress-bar",
                       "--max-steps", steps, *extra])
    assert trainer.lightning_module.iteration == 2
    return {
        "weights": export_checkpoint(out / "last.ckpt", folder / "comod.safetensors"),
        "face": helpers.write_face(folder / "face.png", size=64),
    }


def test_widget_samples_with_trained_comodgan_weights(make_napari_viewer, trained):
    viewer = make_napari_viewer()
    widget = helpers.dock_sampler_widget(viewer)
    path = str(trained["face"])
    for item in get_reader(path)(path):
        viewer.add_layer(Layer.create(*item))
    weights = str(trained["weights"])
    assert read_metadata(weights).architecture == "comodgan"
    result = widget.run_sampling(P=3, seed=2, hole="center", weights=weights, device="cpu")
    assert result is not None, widget.last_error
    assert "CoModGAN" in widget.controls.weights_info.toolTip()
    layers = {layer.metadata["rcgan"]["kind"]: layer
              for layer in viewer.layers if "rcgan" in layer.metadata}
    samples = layers["samples"].data
    assert samples.shape == (3, 32, 32, 3) and layers["samples"].rgb
    hole = center_square_hole((32, 32))
    np.testing.assert_array_equal(layers["mask"].data, hole.astype(np.float32))
    known = layers["reference"].data[~hole]
    np.testing.assert_allclose(samples[:, ~hole], np.broadcast_to(known, samples[:, ~hole].shape),
                               atol=1e-6)
    assert np.abs(samples[0][hole] - samples[1][hole]).mean() > 0, "samples differ in the hole"
    assert layers["std"].data[hole].mean() > 0 and layers["std"].data[~hole].max() == 0
