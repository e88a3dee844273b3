"""The widget as a viewer tool (under Xvfb, real sampling): a GUI that keeps ticking while it
samples, the slice on screen, readable layers, and runs that stop cleanly when their input or
the viewer goes away."""

from __future__ import annotations

import threading
import time

import h5py
import numpy as np
import pytest
from napari.layers import Layer
from qtpy.QtCore import QTimer

from napari_rcgan import session as session_module
from napari_rcgan._reader import get_reader
from napari_rcgan._widget import LAYER_NAMES, PREVIEW_NAME
from napari_rcgan._widget.controls import SampleProgress
from napari_rcgan._widget.layers import COLORBAR_KEY, SD_NEEDS_TWO
from napari_rcgan._writer import write_h5
from napari_rcgan.bundled import brain_sample_path
from napari_rcgan.schema import Output
from tests import plugin_helpers as helpers

MAX_DOCK_HEIGHT = 800


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("viewer")
    return {
        "mri": helpers.write_phantom_fastmri(folder / "phantom.h5", slices=3),
        "face": helpers.write_face(folder / "face.png", size=96),
        "mri_weights": str(helpers.write_tiny_weights(folder / "mri.safetensors", "mri")),
        "face_weights": str(
            helpers.write_tiny_weights(folder / "faces.safetensors", "inpainting")
        ),
    }


def open_file(viewer, path) -> Layer:
    layers = [Layer.create(*item) for item in get_reader(str(path))(str(path))]
    for layer in layers:
        viewer.add_layer(layer)
    return layers[0]


def result_layers(viewer) -> dict[str, Layer]:
    return {layer.metadata["rcgan"]["kind"]: layer
            for layer in viewer.layers if "rcgan" in layer.metadata}


def start_gated_run(widget, data, monkeypatch, qtbot, P: int):
    """Start a P-sample run of the tiny MRI weights (one sample per chunk) whose forward passes
    after the first wait for ``release`` (no race with the GUI); returns once the first chunk is
    shown: (release event, list of forward calls)."""
    sampler = widget.session.sampler(data["mri_weights"], "cpu")
    forward = sampler._forward
    release = threading.Event()
    calls: list[int] = []

    def gated(*args, **kwargs):
        calls.append(1)
        if len(calls) > 1:
            release.wait(timeout=30)
        return forward(*args, **kwargs)

    monkeypatch.setattr(sampler, "_forward", gated)
    with qtbot.waitSignal(widget.chunk_received, timeout=30000):
        widget.run_sampling(P=P, R=4, weights=data["mri_weights"], device="cpu", chunk_size=1,
                            wait=False)
    return release, calls


def test_gui_keeps_ticking_while_sampling_P32_with_the_demo_weights(viewer_widget, qtbot):
    """Responsiveness budget: a 20 ms timer fires ≥ 80% of its expected ticks during P=32."""
    viewer, widget = viewer_widget
    open_file(viewer, brain_sample_path())
    widget.run_sampling(P=2, R=4, weights="mri", device="cpu")  # load weights, warm up
    ticks: list[float] = []
    timer = QTimer()
    timer.setInterval(20)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    timer.start()
    started = time.perf_counter()
    result = widget.run_sampling(P=32, seed=1)
    elapsed = time.perf_counter() - started
    timer.stop()
    assert result is not None and result.drawn == 32, widget.last_error
    assert widget.progress.text() == "32 of 32 samples"
    expected = elapsed / 0.020
    gaps = np.diff([started, *ticks])
    print(f"\ntick ratio {len(ticks) / expected:.2f} over {elapsed:.2f} s, "
          f"longest stall {gaps.max() * 1e3:.0f} ms")
    assert len(ticks) >= 0.8 * expected, (len(ticks), expected, gaps.max())


def test_slice_follows_the_viewer_and_can_be_set_by_hand(viewer_widget, data):
    viewer, widget = viewer_widget
    source = open_file(viewer, data["mri"])
    axis = viewer.dims.ndim - 3
    viewer.dims.set_current_step(axis, 2)
    assert widget.slice_spin.value() == 2, "the slice box follows the slider"
    widget.slice_spin.setValue(0)  # by hand
    result = widget.run_sampling(P=2, R=4, weights=data["mri_weights"], device="cpu")
    assert result is not None, widget.last_error
    layers = result_layers(viewer)
    assert all(layer.metadata["rcgan"]["slice"] == 0 for layer in layers.values())
    assert layers["samples"].translate[1] == 0.0 and layers["mean"].translate[0] == 0.0
    # the samples got their own axis: the input's slice slider is another one
    assert viewer.dims.ndim == 4 and source.ndim == 3
    viewer.dims.set_current_step(1, 1)
    assert widget.slice_spin.value() == 1
    viewer.dims.set_current_step(0, 1)  # scrolling samples leaves the slice alone
    assert widget.slice_spin.value() == 1
    again = widget.run_sampling(P=2)
    assert again is not None and again.record.slice == 1
    assert result_layers(viewer)["samples"].translate[1] == 1.0


def test_sd_at_P1_says_it_needs_two_samples(viewer_widget, data):
    viewer, widget = viewer_widget
    open_file(viewer, data["mri"])
    result = widget.run_sampling(P=3, R=4, weights=data["mri_weights"], device="cpu")
    assert result is not None, widget.last_error
    widget.explore(1)
    std = result_layers(viewer)["std"]
    assert std.name == SD_NEEDS_TWO and "needs P ≥ 2" in widget.metrics_label.text()
    widget.explore(2)
    assert std.name == LAYER_NAMES["std"] and "needs" not in widget.metrics_label.text()
    single = widget.run_sampling(P=1)
    assert single is not None and result_layers(viewer)["std"].name == SD_NEEDS_TWO


def test_grid_shows_only_the_named_result_layers_and_comes_back(viewer_widget, data):
    viewer, widget = viewer_widget
    source = open_file(viewer, data["mri"])
    result = widget.run_sampling(P=2, R=4, weights=data["mri_weights"], device="cpu")
    assert result is not None, widget.last_error
    preview = viewer.layers[PREVIEW_NAME]
    widget.grid_check.setChecked(True)
    assert viewer.canvas.grid.enabled
    assert not source.visible and not preview.visible
    for layer in result.layers.values():
        assert layer.visible and layer.name_overlay.visible
    widget.grid_check.setChecked(False)
    assert not viewer.canvas.grid.enabled and source.visible and preview.visible
    assert not result.layers["reference"].visible, "hidden by default, hidden again"
    assert not any(layer.name_overlay.visible for layer in result.layers.values())


def test_dock_fits_a_laptop_screen(viewer_widget, data):
    viewer, widget = viewer_widget
    open_file(viewer, data["mri"])
    assert widget.run_sampling(P=2, R=4, weights=data["mri_weights"], device="cpu") is not None
    assert widget.sizeHint().height() <= MAX_DOCK_HEIGHT, widget.sizeHint()
    assert widget.minimumSizeHint().height() <= MAX_DOCK_HEIGHT
    assert "image size" in widget.weights_info.toolTip(), "the weights' details are a tooltip"


def test_a_small_face_model_states_its_working_size(viewer_widget, data):
    viewer, widget = viewer_widget
    face = open_file(viewer, data["face"])
    widget.select_weights(data["face_weights"])
    text = widget.input_info.text()
    assert "96x96 RGB" in text and "64x64 RGB" in text and "working size" in text, text
    result = widget.run_sampling(P=2, device="cpu")
    assert result is not None, widget.last_error
    samples = result_layers(viewer)["samples"]
    # placed back over the input: 64 pixels span the 96 of the input
    assert samples.scale[-1] == pytest.approx(96 / 64)
    assert samples.extent.world[1][-1] == pytest.approx(face.extent.world[1][-1], abs=1.0)


def test_second_sample_press_is_refused_with_a_message(viewer_widget, data, monkeypatch, qtbot):
    viewer, widget = viewer_widget
    open_file(viewer, data["mri"])
    release, _ = start_gated_run(widget, data, monkeypatch, qtbot, P=4)
    assert not widget.sample_button.isEnabled()
    assert widget.start() is False
    assert "already running" in widget.last_error
    release.set()
    assert widget.wait(timeout=30) and widget.result.drawn == 4


def test_removing_the_input_while_sampling_stops_cleanly(viewer_widget, data, monkeypatch,
                                                         qtbot):
    viewer, widget = viewer_widget
    source = open_file(viewer, data["mri"])
    release, calls = start_gated_run(widget, data, monkeypatch, qtbot, P=16)
    viewer.layers.remove(source)
    release.set()
    assert widget.wait(timeout=30)
    assert len(calls) <= 3, "stopped within one chunk"
    assert not result_layers(viewer), "no half-built result is left"
    assert "removed" in widget.status_label.text()
    assert widget.sample_button.isEnabled() and not widget.is_running


def test_closing_the_viewer_while_sampling_stops_cleanly(make_napari_viewer, data, monkeypatch,
                                                         qtbot):
    viewer = make_napari_viewer()
    widget = helpers.dock_sampler_widget(viewer)
    open_file(viewer, data["mri"])
    release, calls = start_gated_run(widget, data, monkeypatch, qtbot, P=16)
    worker = widget._worker
    cancel = widget._cancel
    viewer.close()
    release.set()
    qtbot.waitUntil(lambda: not worker.is_running, timeout=30000)
    assert cancel.is_set() and len(calls) <= 3, "stopped within one chunk"


def test_feature_outputs_are_published_as_layers_and_written(viewer_widget, data, monkeypatch,
                                                             tmp_path):
    def spread(result):
        result.extras["spread"] = Output(
            data=result.stack.std(), title="spread (test)", colormap="magma", colorbar=True,
            at_P=lambda P: result.stack.std(P) * 2,
        )
        result.extra_attrs["spread_max"] = float(result.stack.std().max())

    monkeypatch.setitem(session_module._producers, "spread", spread)
    viewer, widget = viewer_widget
    open_file(viewer, data["mri"])
    result = widget.run_sampling(P=3, R=4, weights=data["mri_weights"], device="cpu")
    assert result is not None, widget.last_error
    layer = result_layers(viewer)["spread"]
    assert layer.name == "spread (test)" and layer.metadata[COLORBAR_KEY]
    assert list(viewer.layers).index(layer) == list(viewer.layers).index(
        result_layers(viewer)["samples"]) + 1, "extras sit under the statistics"
    widget.explore(2)
    np.testing.assert_allclose(layer.data[0], result.stack.std(2) * 2, rtol=1e-6)
    out = tmp_path / "run.h5"
    selected = [(lay.data, {"metadata": lay.metadata, "scale": tuple(lay.scale),
                            "translate": tuple(lay.translate)}, "image")
                for lay in result.layers.values()]
    write_h5(str(out), selected)
    with h5py.File(out, "r") as handle:
        np.testing.assert_allclose(handle["spread"][()], result.stack.std(2) * 2, rtol=1e-6)
        assert handle.attrs["spread_max"] == pytest.approx(float(result.stack.std().max()))
        assert handle.attrs["slice"] == result.record.slice
        assert handle["samples"].shape == (2, helpers.SIZE, helpers.SIZE)


def test_progress_bar_formats_and_clamps(qtbot):
    """The dock's progress bar repaints asynchronously; its text and range work like Qt's."""
    progress = SampleProgress()
    qtbot.addWidget(progress)
    progress.setRange(0, 8)
    progress.setFormat("%v of %m samples (%p%)")
    progress.setValue(2)
    assert progress.text() == "2 of 8 samples (25%)"
    progress.setValue(99)
    assert progress.value() == progress.maximum() == 8 and progress.text().startswith("8 of 8")
    progress.setValue(-3)
    assert progress.value() == progress.minimum() == 0
