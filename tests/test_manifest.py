"""The npe2 manifest: valid with imports, the contributions the hub shows, the dock widget."""

from __future__ import annotations

import importlib.metadata
import shutil
import subprocess
import warnings

import pytest
from npe2 import PluginManifest

from napari_rcgan._widget import PosteriorSamplerWidget
from tests import plugin_helpers as helpers
from tests.plugin_helpers import MANIFEST, napari_rcgan_plugin  # noqa: F401 (fixture)


@pytest.fixture(scope="module")
def manifest() -> PluginManifest:
    return PluginManifest.from_file(MANIFEST)


def test_manifest_is_valid_with_imports(manifest):
    assert manifest.name == "napari-rcgan"
    manifest.validate_imports()  # raises if a python_name does not resolve


def test_manifest_contributions(manifest):
    contributions = manifest.contributions
    patterns = {p for reader in contributions.readers for p in reader.filename_patterns}
    assert {"*.h5", "*.hdf5", "*.png", "*.jpg"} <= patterns
    extensions = {e for writer in contributions.writers for e in writer.filename_extensions}
    assert {".h5", ".nii.gz"} <= extensions
    assert all(writer.layer_types == ["image+"] for writer in contributions.writers)
    samples = {sample.key: sample.display_name for sample in contributions.sample_data}
    assert samples == {
        "brain": "Brain slices (simulated k-space from real anatomy)",
        "face": "Face with centred hole",
    }
    assert [widget.display_name for widget in contributions.widgets] == ["Posterior sampler"]


def test_entry_point_and_cli_validation():
    distribution = importlib.metadata.distribution("napari-rcgan")
    entry_points = [ep for ep in distribution.entry_points if ep.group == "napari.manifest"]
    assert [ep.value for ep in entry_points] == ["napari_rcgan:napari.yaml"]
    npe2 = shutil.which("npe2")
    assert npe2 is not None, "npe2 is a dev dependency"
    done = subprocess.run([npe2, "validate", "--imports", "napari-rcgan"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "valid" in done.stdout


def test_widget_docked_by_napari_samples_through_the_viewer_proxy(
    napari_rcgan_plugin, make_napari_viewer, tmp_path  # noqa: F811
):
    """napari hands plugin widgets a public-only viewer proxy: the widget must work with it."""
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget("napari-rcgan", "Posterior sampler")
    assert isinstance(widget, PosteriorSamplerWidget)
    path = helpers.write_phantom_fastmri(tmp_path / "phantom.h5", slices=1)
    weights = helpers.write_tiny_weights(tmp_path / "mri.safetensors", "mri")
    [layer] = viewer.open(str(path), plugin="napari-rcgan")
    assert widget.input_layer() is not None and widget.input_layer().name == layer.name
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)  # private access through the proxy
        result = widget.run_sampling(P=2, R=4, weights=str(weights), device="cpu")
        assert result is not None, widget.last_error
        widget.explore(1)
    kinds = {lay.metadata["rcgan"]["kind"] for lay in viewer.layers if "rcgan" in lay.metadata}
    assert len(kinds) == 7


def test_demo_opens_brain_sample_with_widget(napari_rcgan_plugin, make_napari_viewer):  # noqa: F811
    from napari_rcgan._demo import launch_demo

    viewer = make_napari_viewer()
    viewer, widget = launch_demo(viewer=viewer, run=False, P=4, R=6, device="cpu")
    assert widget.input_layer() is not None
    assert widget.input_layer().metadata["rcgan_source"]["kind"] == "fastmri"
    assert widget.P_spin.value() == 4 and widget.R_spin.value() == 6
    assert widget.wait(timeout=120), "the demo's first sampling run finishes"
    assert widget.last_error is None
    results = [lay for lay in viewer.layers if "rcgan" in lay.metadata]
    kinds = {lay.metadata["rcgan"]["kind"] for lay in results}
    assert kinds >= {"reference", "zero_filled", "mask", "samples", "mean", "error", "std"}, kinds
    # the bundled mri weights carry conformal scales, so the demo also shows the interval layers
    assert kinds - {"reference", "zero_filled", "mask", "samples", "mean", "error", "std"} <= {
        "interval_halfwidth", "outside_interval"}, kinds
    samples = next(lay for lay in results if lay.metadata["rcgan"]["kind"] == "samples")
    assert samples.data.shape[0] == 4 and samples.metadata["rcgan"]["weights"] == "mri"
