"""The perception–distortion explorer in the dock widget (under Xvfb): its numbers for a run,
the highlight following the P slider, the zoom strip, and the no-reference, no-feature-weights
and P = 1 paths; a screenshot for the docs."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from napari.layers import Layer

from napari_rcgan import bundled, perception, stats
from napari_rcgan._reader import get_reader
from napari_rcgan._widget import PREVIEW_NAME, PosteriorSamplerWidget
from napari_rcgan._widget.pd_explorer import ZOOM_LAYER
from napari_rcgan.metrics import feature_weights
from tests import plugin_helpers as helpers

DOCS = Path(__file__).resolve().parent.parent / "docs"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pd")
    return {
        "mri": helpers.write_phantom_fastmri(folder / "phantom.h5", slices=1),
        "mri_weights": str(helpers.write_tiny_weights(folder / "mri.safetensors", "mri")),
    }


def open_file(viewer, path) -> Layer:
    layers = [Layer.create(*item) for item in get_reader(str(path))(str(path))]
    for layer in layers:
        viewer.add_layer(layer)
    return layers[0]


@pytest.fixture
def viewer_widget(viewer_widget, data):
    viewer, widget = viewer_widget
    open_file(viewer, data["mri"])
    return viewer, widget


def test_explorer_metrics_are_the_runs_per_P_curves(viewer_widget, data, feature_dir):
    viewer, widget = viewer_widget
    run = widget.run_sampling(P=5, R=4, seed=1, weights=data["mri_weights"], device="cpu")
    assert run is not None, widget.last_error
    numbers = widget.explorer_metrics()
    assert sorted(numbers) == [1, 2, 3, 4, 5]
    expected = perception.pd_curves(run.stack, run.reference, folder=feature_dir, precision="fp32")
    for P, row in numbers.items():
        assert set(row) == {"psnr", "ssim", "lpips", "dists"}
        mean = run.stack.mean(P)
        assert row["psnr"] == pytest.approx(stats.psnr(mean, run.reference), rel=1e-9)
        assert row["ssim"] == pytest.approx(stats.ssim(mean, run.reference), rel=1e-9)
        assert row["lpips"] == pytest.approx(expected.at(P)["lpips"], abs=2e-3)
        assert row["dists"] == pytest.approx(expected.at(P)["dists"], abs=3e-3)
    explorer = widget.pd_explorer
    curves = explorer.curves
    best = f"best perception P={curves.best('dists')} (DISTS)"
    assert best in explorer.labels[0].text()
    plane = explorer.plane_canvas.figure.axes[0]
    assert plane.get_xlabel() == "distortion: PSNR (dB)"
    assert plane.get_ylabel() == "perception: DISTS"
    # the slider moves the highlight on the plane and on the curves
    widget.P_slider.setValue(3)
    plane_marker = explorer.plots[0]._markers[0][1]
    assert plane_marker.get_data() == ([curves.psnr[2]], [curves.dists[2]])
    for _, marker, name in explorer.plots[1]._markers:
        assert marker.get_data() == ([3], [curves.values(name)[2]])
    # the user's axes
    explorer.distortion_combo.setCurrentIndex(perception.DISTORTIONS.index("mse"))
    explorer.perception_combo.setCurrentIndex(perception.PERCEPTIONS.index("lpips"))
    plane = explorer.plane_canvas.figure.axes[0]
    assert (plane.get_xlabel(), plane.get_ylabel()) == ("distortion: MSE", "perception: LPIPS (AlexNet)")
    assert explorer.plots[0]._markers[0][1].get_data() == ([curves.mse[2]], [curves.lpips[2]])


def test_zoom_strip_follows_the_rectangle(viewer_widget, data):
    viewer, widget = viewer_widget
    run = widget.run_sampling(P=4, R=4, seed=0, weights=data["mri_weights"], device="cpu")
    assert run is not None, widget.last_error
    explorer = widget.pd_explorer
    explorer.wait()
    assert explorer.zoom_box == perception.zoom_box(run.stack.sample_shape)
    assert [P for P, _ in explorer._zoom_axes] == [1, 2, 4]
    explorer.add_zoom_layer()
    shapes = viewer.layers[ZOOM_LAYER]
    assert explorer.zoom_box == perception.zoom_box(run.stack.sample_shape)
    mean = run.layers["mean"]
    corners = np.array([[10, 20], [30, 50]], dtype=float)
    world = [mean.data_to_world(point) for point in corners - 0.5]
    shapes.data = [np.array([shapes.world_to_data(point) for point in world])]
    assert explorer.zoom_box == (10, 20, 30, 50)
    axis = dict(explorer._zoom_axes)[2]
    np.testing.assert_allclose(axis.images[0].get_array(), run.stack.mean(2)[10:30, 20:50])
    widget.P_slider.setValue(2)
    assert axis.spines["left"].get_edgecolor()[:3] == pytest.approx((0.839, 0.153, 0.157), abs=1e-2)


def test_without_feature_weights_psnr_ssim_remain_with_the_hint(viewer_widget, data, tmp_path,
                                                                 monkeypatch):
    monkeypatch.setenv(feature_weights.ENV_VAR, str(tmp_path / "empty"))
    viewer, widget = viewer_widget
    run = widget.run_sampling(P=3, R=4, seed=2, weights=data["mri_weights"], device="cpu")
    assert run is not None, widget.last_error
    numbers = widget.explorer_metrics()
    assert numbers[3]["lpips"] is None and numbers[3]["dists"] is None
    assert numbers[3]["psnr"] == pytest.approx(stats.psnr(run.stack.mean(3), run.reference))
    assert "napari-rcgan features prepare" in widget.pd_explorer.labels[0].text()
    assert len(widget.pd_explorer.curves_canvas.figure.axes) == 2  # PSNR and SSIM curves


def test_one_sample_is_one_point_with_the_message(viewer_widget, data, feature_dir):
    viewer, widget = viewer_widget
    run = widget.run_sampling(P=1, R=4, seed=0, weights=data["mri_weights"], device="cpu")
    assert run is not None, widget.last_error
    numbers = widget.explorer_metrics()
    assert list(numbers) == [1] and numbers[1]["dists"] is not None
    assert perception.SINGLE_P_NOTE in widget.pd_explorer.labels[0].text()


def test_without_reference_the_explorer_shows_apsd_and_sharpness(viewer_widget, data):
    viewer, widget = viewer_widget
    run = widget.run_sampling(P=4, R=4, seed=3, weights=data["mri_weights"], device="cpu")
    assert run is not None, widget.last_error
    widget.pd_explorer.wait()
    scan = dataclasses.replace(run, record=dataclasses.replace(run.record, reference=None))
    widget.pd_explorer.start(scan)
    assert widget.pd_explorer.wait()
    curves = widget.pd_explorer.curves
    assert not curves.has_reference and curves.P == (1, 2, 3, 4)
    assert perception.NO_REFERENCE_NOTE in widget.pd_explorer.labels[0].text()
    titles = [axis.get_title() for axis in widget.pd_explorer.plane_canvas.figure.axes]
    assert titles == ["APSD", "sharpness (mean |∇x|)"]


def test_screenshot_of_the_pd_explorer(make_napari_viewer, feature_dir):
    from PIL import Image
    from qtpy.QtWidgets import QApplication

    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1500, 950)
    widget = PosteriorSamplerWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Posterior sampler", area="right")
    source = open_file(viewer, bundled.brain_sample_path())
    run = widget.run_sampling(P=32, R=4, seed=0, weights="mri", device="cpu")
    assert run is not None, widget.last_error
    assert len(widget.explorer_metrics()) == 32
    widget.P_slider.setValue(4)
    widget.pd_explorer.add_zoom_layer()
    source.visible = False
    viewer.layers[PREVIEW_NAME].visible = False
    viewer.reset_view()
    widget.explorer.tabs.setCurrentWidget(widget.pd_explorer.plane_page)
    images = []
    for page in (widget.pd_explorer.plane_page, widget.pd_explorer.zoom_page):
        widget.explorer.tabs.setCurrentWidget(page)
        for _ in range(5):
            viewer.window._qt_window.repaint()
            QApplication.processEvents()
        images.append(np.asarray(viewer.screenshot(canvas_only=False, flash=False))[..., :3])
    DOCS.mkdir(exist_ok=True)
    Image.fromarray(images[0]).save(DOCS / "screenshot_pd_explorer.png")
    Image.fromarray(images[1]).save(DOCS / "screenshot_pd_zoom.png")
    assert images[0].shape[0] > 400 and images[0].std() > 20
    assert np.abs(images[0].astype(float) - images[1]).mean() > 1, "the tabs differ"
