"""The widget's uncertainty panel under Xvfb: self-check, intervals, PCs with the walk, ROI.

Runs the bundled demo ``mri`` weights on the bundled brain slices; the interval tests use a copy of
those weights calibrated here by :func:`napari_rcgan.calibration.calibrate` on simulated held-out
slices. Each test saves a screenshot to ``docs/uncertainty_*.png``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from napari.layers import Layer

from napari_rcgan import bundled, stats
from napari_rcgan._reader import get_reader
from napari_rcgan._widget import LAYER_NAMES, PosteriorSamplerWidget
from napari_rcgan._widget.layers import COLORBAR_KEY
from napari_rcgan._widget.uncertainty import WALK_NAME, pc_name
from napari_rcgan.calibration import calibrate
from napari_rcgan.sampler import PosteriorSampler
from napari_rcgan.weights import load_weights, save_weights
from tests import plugin_helpers as helpers
from tests.conftest import ANATOMY
from training.simulate import simulate_volume_file

DOCS = Path(__file__).resolve().parent.parent / "docs"
HALFWIDTH = "90% interval half-width"
OUTSIDE = "outside interval"


@pytest.fixture(scope="module")
def calibrated_weights(tmp_path_factory) -> str:
    """The bundled ``mri`` weights calibrated at R=4 (P=8) on 12 simulated held-out slices."""
    folder = tmp_path_factory.mktemp("calibration")
    simulate_volume_file(folder / "file_brain_AXT2_sim_cal.h5", ANATOMY, "t2",
                         slice_indices=range(50, 62), coils=12, kspace_shape=(256, 136),
                         image_size=128, seed=7, compact=True)
    weights = load_weights("mri")
    sampler = PosteriorSampler(weights, device="cpu")
    weights.metadata.conformal = calibrate(sampler, folder, [4.0], alpha=0.1, P=8,
                                           test_fraction=0.2)
    path = tmp_path_factory.mktemp("weights") / "mri_calibrated.safetensors"
    return str(save_weights(path, weights.state_dict, weights.metadata))


@pytest.fixture(scope="module")
def uncalibrated_weights(tmp_path_factory) -> str:
    """The bundled ``mri`` weights without a conformal calibration."""
    weights = load_weights("mri")
    weights.metadata.conformal = {}
    path = tmp_path_factory.mktemp("weights") / "mri_uncalibrated.safetensors"
    return str(save_weights(path, weights.state_dict, weights.metadata))


@pytest.fixture
def shown(make_napari_viewer):
    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1500, 950)
    widget = PosteriorSamplerWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Posterior sampler", area="right")
    source = open_brain(viewer)
    return viewer, widget, source


def open_brain(viewer) -> Layer:
    return open_file(viewer, bundled.brain_sample_path())


def open_file(viewer, path) -> Layer:
    path = str(path)
    layers = [Layer.create(*item) for item in get_reader(path)(path)]
    for layer in layers:
        viewer.add_layer(layer)
    return layers[0]


def screenshot(viewer, widget, name: str) -> None:
    from PIL import Image
    from qtpy.QtWidgets import QApplication

    widget.panels.setCurrentIndex(1)  # the Uncertainty tab

    for layer in viewer.layers:
        if layer.name == "mask preview":
            layer.visible = False
    for _ in range(5):
        viewer.window._qt_window.repaint()
        QApplication.processEvents()
    image = np.asarray(viewer.screenshot(canvas_only=False, flash=False))
    DOCS.mkdir(exist_ok=True)
    Image.fromarray(image).save(DOCS / name)
    assert image[..., :3].astype(float).std() > 20, "the screenshot is not blank"


def image(layer, shape) -> np.ndarray:
    """A result layer's 2-D image (MRI result layers carry a singleton slice axis)."""
    return np.asarray(layer.data).reshape(shape)


def grid(viewer):
    """The viewer's grid settings (``viewer.canvas.grid`` since napari 0.9)."""
    canvas = getattr(viewer, "canvas", None)
    return canvas.grid if canvas is not None and hasattr(canvas, "grid") else viewer.grid


def only_visible(viewer, *names: str) -> None:
    for layer in viewer.layers:
        layer.visible = layer.name in names
    viewer.reset_view()


def test_self_check_verdict_after_each_run_and_switch(shown):
    viewer, widget, _ = shown
    panel = widget.uncertainty
    assert panel.self_check_box.isChecked()  # on by default
    run = widget.run_sampling(P=16, R=4, seed=0, weights="mri", device="cpu")
    assert run is not None, widget.last_error
    attrs = run.record.extra_attrs
    assert attrs["selfcheck_verdict"] == "fits"
    text = panel.verdict_label.text()
    assert "self-check: fits" in text and f"{100 * attrs['selfcheck_error_ratio']:.0f}%" in text
    assert "The model fits this scan" in text
    only_visible(viewer, "mean (P-average)")
    screenshot(viewer, widget, "uncertainty_selfcheck.png")

    panel.self_check_box.setChecked(False)
    run = widget.run_sampling(P=4, R=4, seed=0, weights="mri", device="cpu")
    assert run is not None and "selfcheck_verdict" not in run.record.extra_attrs
    assert panel.verdict_label.text() == "self-check off"


def test_interval_layers_follow_p_and_need_calibrated_weights(shown, calibrated_weights):
    viewer, widget, _ = shown
    panel = widget.uncertainty
    run = widget.run_sampling(P=16, R=4, seed=0, weights=calibrated_weights, device="cpu")
    assert run is not None, widget.last_error
    scale = load_weights(calibrated_weights).metadata.conformal["scale"]["4"]
    halfwidth, outside = viewer.layers[HALFWIDTH], viewer.layers[OUTSIDE]
    size = run.record.stack.sample_shape
    stack = run.record.stack
    np.testing.assert_allclose(image(halfwidth, size), scale * stack.std(), rtol=1e-5)
    mean, reference = stack.mean(), run.record.reference
    region = mean > 0.05 * mean.max()
    expected = region & (np.abs(reference - mean) > scale * stack.std())
    np.testing.assert_array_equal(image(outside, size).astype(bool), expected)
    order = list(viewer.layers)
    assert order.index(halfwidth) < order.index(viewer.layers[LAYER_NAMES["mean"]]), (
        "the P-average stays on top of the interval layers")
    assert halfwidth.metadata[COLORBAR_KEY] and not halfwidth.colorbar.visible  # covered
    for layer in order[order.index(halfwidth) + 1:]:
        layer.visible = False
    assert halfwidth.colorbar.visible, "the colour bar shows once the map is on screen"
    assert "cover" in panel.interval_label.text()
    widget.explore(4)
    np.testing.assert_allclose(image(halfwidth, size), scale * stack.std(4), rtol=1e-5)
    widget.explore(16)
    only_visible(viewer, "mean (P-average)", HALFWIDTH, OUTSIDE)
    grid(viewer).enabled = True
    screenshot(viewer, widget, "uncertainty_intervals.png")


def test_weights_without_calibration_give_no_interval_layers(make_napari_viewer,
                                                             calibrated_weights,
                                                             uncalibrated_weights):
    viewer = make_napari_viewer()
    widget = PosteriorSamplerWidget(viewer)
    panel = widget.uncertainty
    open_brain(viewer)
    assert widget.run_sampling(P=4, R=4, seed=0, weights=calibrated_weights, device="cpu")
    assert HALFWIDTH in viewer.layers and OUTSIDE in viewer.layers
    run = widget.run_sampling(P=4, R=4, seed=0, weights=uncalibrated_weights, device="cpu")
    assert run is not None, widget.last_error
    assert HALFWIDTH not in viewer.layers and OUTSIDE not in viewer.layers
    assert "no conformal calibration" in panel.interval_label.toolTip()
    assert "no intervals" in panel.interval_label.text()


def test_principal_component_layers_and_walk(shown):
    viewer, widget, _ = shown
    panel = widget.uncertainty
    panel.pcs_spin.setValue(3)
    run = widget.run_sampling(P=16, R=8, seed=0, weights="mri", device="cpu")
    assert run is not None, widget.last_error
    components, variances, _ = stats.principal_components(run.record.stack.samples, 3)
    for k in range(3):
        np.testing.assert_allclose(image(viewer.layers[pc_name(k + 1)], components[k].shape),
                                   components[k], atol=1e-6)
    panel.set_walk(2, 1.5)
    expected = run.record.stack.mean() + 1.5 * np.sqrt(variances[1]) * components[1]
    np.testing.assert_allclose(image(viewer.layers[WALK_NAME], expected.shape), expected,
                               rtol=1e-5, atol=1e-6)
    panel.set_walk(2, -3.0)
    expected = run.record.stack.mean() - 3.0 * np.sqrt(variances[1]) * components[1]
    np.testing.assert_allclose(image(viewer.layers[WALK_NAME], expected.shape), expected,
                               rtol=1e-5, atol=1e-6)
    assert panel.walk_label.text() == "t = -3.0"
    panel.set_walk(1, 3.0)
    only_visible(viewer, pc_name(1), pc_name(2), WALK_NAME, "mean (P-average)")
    grid(viewer).enabled = True
    screenshot(viewer, widget, "uncertainty_pcs.png")
    grid(viewer).enabled = False


def test_roi_posterior_histogram_from_a_shapes_layer(shown):
    viewer, widget, source = shown
    run = widget.run_sampling(P=16, R=8, seed=0, weights="mri", device="cpu")
    assert run is not None, widget.last_error
    # Result pixels 50..70 x 40..60 in world coordinates (the result layers of whole-FOV weights
    # are scaled and shifted over the input).
    scale, translate = (np.asarray(v, dtype=float) for v in run.placement)
    corners = np.array([[49.5, 39.5], [70.4, 39.5], [70.4, 60.4], [49.5, 60.4]])
    shapes = viewer.add_shapes(
        [corners * scale + translate], shape_type="rectangle",
        edge_color="yellow", face_color="transparent", name="ROI",
    )
    panel = widget.uncertainty
    assert panel.roi_combo.currentText() == "ROI"
    samples = run.record.stack.samples
    mask = np.zeros(samples.shape[1:], dtype=bool)
    mask[50:71, 40:61] = True
    from napari_rcgan._widget.uncertainty import shape_masks

    np.testing.assert_array_equal(shape_masks(shapes, mask.shape, *run.placement), mask)
    np.testing.assert_allclose(panel.roi_values, samples[:, mask].mean(axis=1), rtol=1e-6)
    text = panel.roi_label.text()
    assert "90% credible interval" in text and "reference" in text
    assert len(panel.roi_axis.patches) > 0 and len(panel.roi_axis.lines) == 1
    only_visible(viewer, "mean (P-average)", "ROI")
    screenshot(viewer, widget, "uncertainty_roi.png")

    # editing the shapes updates the posterior; an ROI outside the image says so
    shapes.data = [np.array([[9.5, 9.5], [20.4, 9.5], [20.4, 20.4], [9.5, 20.4]]) * scale
                   + translate]
    np.testing.assert_allclose(panel.roi_values, samples[:, 10:21, 10:21].mean(axis=(1, 2)),
                               rtol=1e-6)
    shapes.data = [np.array([[500, 500], [520, 500], [520, 520], [500, 520]]) * scale
                   + translate]
    assert panel.roi_values is None and "cover no pixel" in panel.roi_label.text()


def test_a_face_run_says_the_self_check_is_for_mri(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    widget = PosteriorSamplerWidget(viewer)
    path = helpers.write_face(tmp_path / "face.png")
    open_file(viewer, path)
    weights = str(helpers.write_tiny_weights(tmp_path / "faces.safetensors", "inpainting"))
    run = widget.run_sampling(P=2, seed=0, weights=weights, device="cpu")
    assert run is not None, widget.last_error
    assert run.record.extra_attrs["selfcheck_verdict"] == "none"
    assert "MRI only" in widget.uncertainty.verdict_label.text()
