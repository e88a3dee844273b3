"""The Posterior sampler widget under Xvfb, driven through ``run_sampling`` with tiny weights."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
from napari.layers import Layer
from napari.utils.notifications import NotificationSeverity, notification_manager

from napari_rcgan import _sample_data, bundled
from napari_rcgan._reader import get_reader
from napari_rcgan._widget import LAYER_NAMES, PREVIEW_NAME, RESULT_KINDS, PosteriorSamplerWidget
from napari_rcgan._widget.layers import COLORBAR_KEY
from napari_rcgan.io import FastMRIFile
from napari_rcgan.physics.inpainting import center_square_hole
from napari_rcgan.sampler import PosteriorSampler
from napari_rcgan.schema import layer_array
from tests import plugin_helpers as helpers

DOCS = Path(__file__).resolve().parent.parent / "docs"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("widget")
    return {
        "mri": helpers.write_phantom_fastmri(folder / "phantom.h5", slices=2),
        "face": helpers.write_face(folder / "face.png"),
        "mri_weights": str(helpers.write_tiny_weights(folder / "mri.safetensors", "mri")),
        "face_weights": str(
            helpers.write_tiny_weights(folder / "faces.safetensors", "inpainting")
        ),
    }


@pytest.fixture
def errors():
    """Error notifications dispatched during the test."""
    seen: list[str] = []

    def record(event):
        notification = event.value if hasattr(event, "value") else event
        if notification.severity >= NotificationSeverity.ERROR:
            seen.append(str(notification.message))

    notification_manager.notification_ready.connect(record)
    yield seen
    notification_manager.notification_ready.disconnect(record)


def open_file(viewer, path) -> Layer:
    """Add the layers the plugin's reader makes for ``path``; returns the first."""
    layers = [Layer.create(*item) for item in get_reader(str(path))(str(path))]
    for layer in layers:
        viewer.add_layer(layer)
    return layers[0]


def array_of(layer: Layer) -> np.ndarray:
    """A result layer's array without the slice axis MRI results carry (the schema's array)."""
    return layer_array(layer.data, layer.metadata["rcgan"])


def result_layers(viewer) -> dict[str, Layer]:
    return {
        layer.metadata["rcgan"]["kind"]: layer
        for layer in viewer.layers if "rcgan" in layer.metadata
    }


def test_mri_sampling_gives_seven_layers_with_metadata(viewer_widget, data):
    viewer, widget = viewer_widget
    source = open_file(viewer, data["mri"])
    source.scale = (1.0, 0.5, 0.5)
    source.translate = (0.0, 10.0, -4.0)
    started = time.perf_counter()
    result = widget.run_sampling(P=4, R=4, seed=5, weights=data["mri_weights"], device="cpu",
                                 slice=1)
    elapsed = time.perf_counter() - started
    assert result is not None, widget.last_error
    assert elapsed < 30
    layers = result_layers(viewer)
    assert set(layers) == set(RESULT_KINDS)
    size = (helpers.SIZE, helpers.SIZE)
    # the results sit at slice 1 on their own axes: samples (P, 1, H, W), maps (1, H, W)
    assert layers["samples"].data.shape == (4, 1, *size)
    assert tuple(layers["samples"].translate[:2]) == (0.0, 1.0)
    assert viewer.dims.axis_labels[:2] == ("sample", "slice")
    for kind in ("reference", "zero_filled", "mask", "mean", "error", "std"):
        assert layers[kind].data.shape == (1, *size), kind
        assert layers[kind].translate[0] == 1.0, kind
    for kind, layer in layers.items():
        info = layer.metadata["rcgan"]
        assert info["slice"] == 1 and info["slice_axis"] is True
        assert info["kind"] == kind and info["task"] == "mri" and info["seed"] == 5
        assert isinstance(info["P"], int) and info["P"] == 4
        assert isinstance(info["R"], float) and info["R"] == pytest.approx(result.R)
        assert info["weights"] == data["mri_weights"] and info["partial"] is False
        assert layer.name == LAYER_NAMES[kind]
        assert tuple(layer.scale[-2:]) == (0.5, 0.5)
        assert tuple(layer.translate[-2:]) == (10.0, -4.0)
    assert 3.5 <= result.R <= 4.5
    assert tuple(layers["samples"].contrast_limits) == tuple(layers["mean"].contrast_limits)
    assert layers["error"].colormap.name != layers["std"].colormap.name
    assert {layers["error"].colormap.name, layers["std"].colormap.name}.isdisjoint({"gray"})
    assert layers["std"].metadata[COLORBAR_KEY] and layers["error"].metadata[COLORBAR_KEY]
    assert not layers["mean"].metadata[COLORBAR_KEY]
    # a colour bar is drawn for the map the user sees: the P-average on top covers SD and error
    assert not any(layer.colorbar.visible for layer in layers.values())
    layers["mean"].visible = False
    assert layers["error"].colorbar.visible and not layers["std"].colorbar.visible
    layers["error"].opacity = 0.5
    assert layers["error"].colorbar.visible and layers["std"].colorbar.visible
    layers["error"].visible = False
    assert layers["std"].colorbar.visible and not layers["error"].colorbar.visible
    layers["mean"].visible, layers["error"].visible, layers["error"].opacity = True, True, 1.0
    assert not layers["std"].colorbar.visible
    assert LAYER_NAMES["std"] == "SD (uncertainty)" and LAYER_NAMES["error"] == "|mean − reference|"
    order = [layer for layer in viewer.layers if layer in layers.values()]
    assert order.index(layers["samples"]) < min(order.index(layers[k]) for k in ("mean", "std",
                                                                                 "error"))

    # the widget's samples are the engine's samples for the same seed (slice 1, same mask)
    sampler = PosteriorSampler(data["mri_weights"], device="cpu")
    kspace = FastMRIFile.open(data["mri"]).read_kspace(1)
    measurement = sampler.measure_mri(kspace, R=4, mask_kind="gro")
    expected = sampler.sample(measurement, 4, seed=5)
    np.testing.assert_allclose(array_of(layers["samples"]), expected.stack.samples, rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_allclose(array_of(layers["reference"]), measurement.reference[0]
                               if measurement.reference.ndim == 3 else measurement.reference,
                               rtol=1e-6)

    # the mask preview and the achieved R follow the fields
    assert PREVIEW_NAME in viewer.layers
    widget.R_spin.setValue(8)
    assert "8.00" in widget.achieved_label.text()
    widget.mask_combo.setCurrentText("equispaced")
    np.testing.assert_array_equal(viewer.layers[PREVIEW_NAME].data, widget.preview_mask().mask)

    # the P explorer shows the numbers and the plot
    assert "PSNR" in widget.metrics_label.text() and "SSIM" in widget.metrics_label.text()
    assert widget.psnr_axis.get_xscale() == "log"
    assert len(widget.psnr_axis.lines) >= 2


def test_backend_and_precision_fields_reach_the_layers(viewer_widget, data):
    from napari_rcgan.backends import openvino_available

    viewer, widget = viewer_widget
    open_file(viewer, data["mri"])
    backend = "openvino" if openvino_available() else "torch"
    result = widget.run_sampling(P=2, weights=data["mri_weights"], device="cpu", backend=backend,
                                 precision="fp32")
    assert result is not None, widget.last_error
    for kind, layer in result_layers(viewer).items():
        info = layer.metadata["rcgan"]
        assert (info["backend"], info["precision"]) == (backend, "fp32"), kind
    assert f"({backend} fp32" in widget.status_label.text()
    assert widget.run_sampling(P=2, backend="onnx") is None
    assert "backend 'onnx'" in widget.last_error


def test_second_run_replaces_the_result_layers(viewer_widget, data):
    viewer, widget = viewer_widget
    open_file(viewer, data["mri"])
    first = widget.run_sampling(P=2, R=4, seed=0, weights=data["mri_weights"], device="cpu")
    count = len(viewer.layers)
    second = widget.run_sampling(P=3, R=6, seed=1)
    assert first is not None and second is not None
    assert len(viewer.layers) == count
    layers = result_layers(viewer)
    assert len(layers) == 7 and array_of(layers["samples"]).shape[0] == 3
    assert all(layer.metadata["rcgan"]["run"] == second.run_id for layer in layers.values())
    # the sampler is cached per (weights, device), the measurement per (input, slice, R, mask...)
    third = widget.run_sampling(P=2, R=6, seed=9)
    assert third.measurement is second.measurement
    assert third.measurement is not first.measurement
    assert len(widget.session.samplers) == 1


def test_samples_layer_grows_and_slider_gives_prefix_sums(viewer_widget, data):
    viewer, widget = viewer_widget
    open_file(viewer, data["mri"])
    seen: list[int] = []
    widget.chunk_received.connect(seen.append)
    result = widget.run_sampling(P=6, R=4, seed=2, weights=data["mri_weights"], device="cpu",
                                 chunk_size=2)
    assert result is not None, widget.last_error
    assert seen and seen[-1] == 6 and seen == sorted(set(seen)), seen
    assert all(count % 2 == 0 for count in seen), "whole chunks only"
    layers = result_layers(viewer)
    samples = array_of(layers["samples"])
    assert widget.P_slider.maximum() == 6 and widget.P_slider.value() == 6
    for P in (1, 3, 5):
        widget.P_slider.setValue(P)
        np.testing.assert_array_equal(array_of(layers["mean"]), result.stack.mean(P))
        np.testing.assert_array_equal(array_of(layers["std"]), result.stack.std(P))
        np.testing.assert_allclose(array_of(layers["mean"]), samples[:P].mean(axis=0), rtol=1e-5,
                                   atol=1e-6)
        np.testing.assert_allclose(array_of(layers["std"]), samples[:P].std(axis=0), rtol=1e-3,
                                   atol=1e-5)
        np.testing.assert_array_equal(
            array_of(layers["error"]), np.abs(result.stack.mean(P) - array_of(layers["reference"]))
        )
        for kind in ("mean", "std", "error"):
            assert layers[kind].metadata["rcgan"]["P"] == P
        assert layers["samples"].metadata["rcgan"]["P"] == 6
        assert f"P = {P} of 6" in widget.metrics_label.text()
        marker = widget._markers[1]
        assert list(marker.get_xdata()) == [P], "the current P is marked on the plot"
        psnr, ssim = result.metric(P)
        assert f"{psnr:.2f} dB" in widget.metrics_label.text()
    assert set(result.metrics) >= {1, 2, 4, 6}, "the curve is drawn at 1, 2, 4, ..., N"


def test_cancel_leaves_a_consistent_partial_result(viewer_widget, data, qtbot, monkeypatch):
    viewer, widget = viewer_widget
    open_file(viewer, data["mri"])
    sampler = widget.session.sampler(data["mri_weights"], "cpu")
    forward = sampler._forward
    started_after_cancel: list[bool] = []

    clicked = threading.Event()

    def slow_forward(*args, **kwargs):
        """Chunks after the first wait until Cancel was pressed (no race with the GUI)."""
        started_after_cancel.append(widget._cancel.is_set())
        if len(started_after_cancel) > 1:
            clicked.wait(timeout=20)
        return forward(*args, **kwargs)

    monkeypatch.setattr(sampler, "_forward", slow_forward)
    with qtbot.waitSignal(widget.chunk_received, timeout=20000):
        assert widget.run_sampling(P=32, R=4, seed=0, weights=data["mri_weights"],
                                   device="cpu", chunk_size=2, wait=False) is None
    assert widget.is_running and widget.cancel_button.isEnabled()
    widget.cancel_button.click()
    clicked.set()
    assert widget.wait(timeout=20)
    result = widget.result
    assert result is not None and result.partial
    assert 2 <= result.drawn < 32
    assert not any(started_after_cancel), "no chunk starts after Cancel: it stops within one"
    assert result.drawn == 2 * len(started_after_cancel), "every chunk drawn is shown"
    layers = result_layers(viewer)
    assert len(layers) == 7
    assert all(layer.metadata["rcgan"]["partial"] is True for layer in layers.values())
    assert all("partial" in layer.name for layer in layers.values())
    samples = array_of(layers["samples"])
    assert samples.shape[0] == result.drawn
    np.testing.assert_allclose(array_of(layers["mean"]), samples.mean(axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(array_of(layers["std"]), samples.std(axis=0), rtol=1e-3, atol=1e-5)
    assert "cancelled" in widget.status_label.text()

    # the widget is usable afterwards; a complete run replaces the partial layers
    monkeypatch.setattr(sampler, "_forward", forward)
    again = widget.run_sampling(P=2, chunk_size=None)
    assert again is not None and not again.partial
    layers = result_layers(viewer)
    assert len(layers) == 7 and not any("partial" in layer.name for layer in layers.values())


def _assert_rejected(viewer, widget, errors, expected: str, **kwargs):
    before = [layer.name for layer in viewer.layers]
    count = len(errors)
    assert widget.run_sampling(**kwargs) is None
    assert len(errors) > count, f"no error notification for {kwargs}"
    assert expected in errors[-1], errors[-1]
    assert widget.last_error == errors[-1]
    assert [layer.name for layer in viewer.layers] == before, "no new layers"
    assert not widget.is_running and widget.sample_button.isEnabled()


def test_bad_mri_inputs_notify_and_add_no_layers(viewer_widget, data, errors):
    viewer, widget = viewer_widget
    _assert_rejected(viewer, widget, errors, "no input", P=2)
    open_file(viewer, data["mri"])
    widget.run_sampling(P=1, weights=data["mri_weights"], device="cpu", wait=False)
    widget.wait(timeout=20)
    assert len(errors) == 1, errors
    assert len(result_layers(viewer)) == 7
    for P in (0, 513, 1000):
        _assert_rejected(viewer, widget, errors, "P (number of samples)", P=P)
    _assert_rejected(viewer, widget, errors, "R (acceleration)", R=40)
    viewer.add_labels(np.ones((10, 12), dtype=np.uint8), name="bad mask")
    _assert_rejected(viewer, widget, errors, "shape", P=2, mask="bad mask")
    assert "⚠" in widget.achieved_label.text()
    _assert_rejected(viewer, widget, errors, "weights are for inpainting", P=2, mask="gro",
                     weights=data["face_weights"])
    _assert_rejected(viewer, widget, errors, "no such weights file", P=2,
                     weights=str(Path(data["mri_weights"]).with_name("missing.safetensors")))
    # still usable
    result = widget.run_sampling(P=2, weights=data["mri_weights"])
    assert result is not None and len(result_layers(viewer)) == 7


def test_user_mask_layer_of_the_right_shape_is_used(viewer_widget, data):
    viewer, widget = viewer_widget
    open_file(viewer, data["mri"])
    mask = np.zeros((helpers.SIZE, helpers.SIZE), dtype=np.uint8)
    mask[:, 24:40] = 1
    mask[:, ::8] = 1
    viewer.add_labels(mask, name="my mask")
    result = widget.run_sampling(P=2, mask="my mask", weights=data["mri_weights"], device="cpu")
    assert result is not None, widget.last_error
    assert result.mask_kind == "user"
    np.testing.assert_array_equal(array_of(result_layers(viewer)["mask"]), mask.any(0)[None].repeat(
        helpers.SIZE, 0).astype(np.float32))
    assert result.R == pytest.approx(helpers.SIZE / mask.any(0).sum())


def test_face_inpainting_with_painted_hole(viewer_widget, data, errors):
    viewer, widget = viewer_widget
    face = open_file(viewer, data["face"])
    _assert_rejected(viewer, widget, errors, "weights are for mri", P=2,
                     weights=data["mri_weights"], device="cpu")
    viewer.add_labels(np.ones((5, 5), dtype=np.uint8), name="small hole")
    _assert_rejected(viewer, widget, errors, "shape", P=2, weights=data["face_weights"],
                     hole="small hole")
    hole = np.zeros((helpers.SIZE, helpers.SIZE), dtype=np.uint8)
    hole[20:44, 16:48] = 1
    viewer.add_labels(hole, name="painted hole")
    result = widget.run_sampling(P=3, seed=4, hole="painted hole", weights=data["face_weights"])
    assert result is not None, widget.last_error
    layers = result_layers(viewer)
    assert set(layers) == set(RESULT_KINDS)
    assert array_of(layers["samples"]).shape == (3, helpers.SIZE, helpers.SIZE, 3)
    assert layers["samples"].rgb and layers["mean"].rgb and layers["reference"].rgb
    assert array_of(layers["error"]).shape == array_of(layers["std"]).shape == (helpers.SIZE, helpers.SIZE)
    np.testing.assert_array_equal(array_of(layers["mask"]), hole.astype(np.float32))
    for layer in layers.values():
        info = layer.metadata["rcgan"]
        assert info["task"] == "inpainting" and info["R"] is None and info["seed"] == 4
    outside = hole == 0
    known = np.broadcast_to(face.data[outside], array_of(layers["samples"])[:, outside].shape)
    np.testing.assert_allclose(array_of(layers["samples"])[:, outside], known, atol=1e-6)
    # centred square hole
    again = widget.run_sampling(P=2, hole="center")
    assert again is not None
    np.testing.assert_array_equal(
        array_of(result_layers(viewer)["mask"]), center_square_hole((helpers.SIZE, helpers.SIZE))
    )


def test_face_sample_uses_its_hole_layer(viewer_widget, tmp_path):
    viewer, widget = viewer_widget
    for item in _sample_data.face_sample():
        viewer.add_layer(Layer.create(*item))
    face, hole = viewer.layers[0], viewer.layers[1]
    assert widget.current_task() == "inpainting"
    assert widget.hole_combo.currentText().endswith(hole.name), "the painted hole is preselected"
    size = face.data.shape[0]
    weights = helpers.write_tiny_weights(tmp_path / "faces.safetensors", "inpainting", size=size)
    result = widget.run_sampling(P=2, weights=str(weights), device="cpu")
    assert result is not None, widget.last_error
    np.testing.assert_array_equal(array_of(result_layers(viewer)["mask"]), hole.data.astype(np.float32))


def test_screenshot_of_widget_after_sampling(make_napari_viewer, data, tmp_path):
    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1500, 950)
    widget = PosteriorSamplerWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Posterior sampler", area="right")
    source = open_file(viewer, bundled.brain_sample_path())
    result = widget.run_sampling(P=16, R=4, seed=0, weights="mri", device="cpu")
    assert result is not None, widget.last_error
    widget.P_slider.setValue(max(1, result.drawn // 2))
    widget.grid_check.setChecked(True)  # only the named result layers, camera reset
    assert not source.visible and not viewer.layers[PREVIEW_NAME].visible
    for _ in range(5):
        viewer.window._qt_window.repaint()
        from qtpy.QtWidgets import QApplication

        QApplication.processEvents()
    image = viewer.screenshot(canvas_only=False, flash=False)
    DOCS.mkdir(exist_ok=True)
    from PIL import Image

    Image.fromarray(np.asarray(image)).save(DOCS / "screenshot_widget.png")
    pixels = np.asarray(image)[..., :3].astype(float)
    assert pixels.shape[0] > 400 and pixels.shape[1] > 800
    assert pixels.std() > 20, "the screenshot is not blank"
    canvas = np.asarray(viewer.screenshot(canvas_only=True, flash=False))[..., :3].astype(float)
    assert canvas.std() > 10, "the canvas shows the result layers"


def test_full_fov_results_are_placed_over_the_whole_input():
    from types import SimpleNamespace

    from napari_rcgan._widget.layers import placement

    layer = SimpleNamespace(scale=(1.0, 0.5, 0.5), translate=(0.0, 10.0, -4.0),
                            data=np.zeros((2, 256, 256), np.float32), rgb=False)
    # Whole field of view at half resolution: result pixel i sits at input pixel 128 + (i - 64)·2.
    scale, translate = placement(layer, "mri", (128, 128), 2.0)
    assert scale == (1.0, 1.0) and translate == (10.0, -4.0)
    # Centre crop: the middle 128x128 input pixels.
    scale, translate = placement(layer, "mri", (128, 128))
    assert scale == (0.5, 0.5) and translate == (10.0 + 32.0, -4.0 + 32.0)


def test_an_adopted_figure_fills_its_canvas(qtbot):
    """A figure built off the GUI thread at an older size is stretched to the widget, so no
    part of the canvas is left unpainted."""
    from napari_rcgan._widget.plots import DPI, PlotCanvas, new_figure

    canvas = PlotCanvas((2.0, 1.0), minimum_height=60, maximum_height=400)
    qtbot.addWidget(canvas)
    canvas.resize(400, 200)
    canvas.show()
    qtbot.waitExposed(canvas)
    figure = new_figure((2.0, 1.0))
    figure.add_subplot().plot([0, 1], [1, 0])
    canvas.adopt(figure)
    width, height = figure.get_size_inches() * DPI
    assert (round(width), round(height)) == (canvas.width(), canvas.height()) == (400, 200)
