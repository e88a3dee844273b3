"""The "Uncertainty" panel: self-check verdict, intervals, posterior PCs and ROI posteriors.

The numbers come from the engine (:mod:`napari_rcgan.uncertainty`, run by the session's output
producer in the worker thread); the panel only reads them from the finished run and shows them:

- the self-check verdict, its numbers and a plain-language sentence (on by default);
- conformal intervals: the producer's "90% interval half-width" and "outside interval" layers
  are published by the widget like every titled extra; the panel says why there are none;
- "PC k" layers and a walk ``mean + t·√variance_k·component_k``, ``t ∈ [−3, 3]``, in a layer
  that follows the slider (O(HW) per move);
- the posterior of a region's mean intensity over the P samples, from a Shapes layer (rectangles,
  polygons, ellipses), with the reference value and a 90 % credible interval; it follows edits
  of the shapes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from napari.layers import Shapes
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QSlider,
    QSpinBox,
    QVBoxLayout,
)

from napari_rcgan import stats
from napari_rcgan._widget.layers import LayerPublisher
from napari_rcgan._widget.teardown import ignore_when_closing
from napari_rcgan.errors import ParameterError
from napari_rcgan.uncertainty import FIT_RATIO, MIN_FIT_COVERAGE, OOD_RATIO

if TYPE_CHECKING:
    import napari

    from napari_rcgan._widget.run import SamplingRun

WALK_LIMIT = 3.0
"""The walk's t runs over [−3, 3] in steps of 0.1 (slider value = 10·t)."""
WALK_NAME = "PC walk"
CREDIBLE_LEVEL = 0.9
VERDICT_COLOURS = {"fits": "#2e9d44", "uncertain": "#d08a00", "out_of_distribution": "#d03030"}
NO_SHAPES = "(add a Shapes layer)"


def pc_name(k: int) -> str:
    """Layer name of the k-th (1-based) principal component."""
    return f"PC {k}"


def shape_masks(layer: Shapes, shape: tuple[int, int], scale: tuple, translate: tuple) -> np.ndarray:
    """The union of a Shapes layer's shapes as a bool mask on a result grid.

    Vertices go from the Shapes layer's data coordinates to world coordinates and then to the
    pixels of a result layer placed with ``scale`` / ``translate``; ellipses (given by napari as
    their bounding box) become 64-gons.
    """
    from skimage.draw import polygon2mask

    mask = np.zeros(shape, dtype=bool)
    layer_scale = np.asarray(layer.scale[-2:], dtype=float)
    layer_translate = np.asarray(layer.translate[-2:], dtype=float)
    for vertices, kind in zip(layer.data, layer.shape_type):
        points = np.asarray(vertices, dtype=float)[:, -2:] * layer_scale + layer_translate
        points = (points - np.asarray(translate, float)) / np.asarray(scale, float)
        if kind == "ellipse":
            centre = points.mean(axis=0)
            radii = (points.max(axis=0) - points.min(axis=0)) / 2
            angles = np.linspace(0, 2 * np.pi, 64, endpoint=False)
            points = centre + radii * np.stack([np.sin(angles), np.cos(angles)], axis=1)
        if kind in ("line", "path") or len(points) < 3:
            continue
        mask |= polygon2mask(shape, points)
    return mask


class UncertaintyPanel(QGroupBox):
    """Options (into the request) and the uncertainty read-outs of the last run."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__("Uncertainty")
        self.viewer = viewer
        self.publisher = LayerPublisher(viewer)
        self.run: SamplingRun | None = None
        self.roi_values: np.ndarray | None = None
        self._pcs: tuple[np.ndarray, np.ndarray] | None = None
        self._watched: Shapes | None = None
        layout = QVBoxLayout(self)
        form = QFormLayout()
        row = QHBoxLayout()
        self.self_check_box = QCheckBox("self-check")
        self.self_check_box.setChecked(True)
        self.self_check_box.setToolTip(
            "after each MRI run, hold out measured k-space lines and check the samples on them"
        )
        self.intervals_box = QCheckBox("90% intervals")
        self.intervals_box.setChecked(True)
        self.intervals_box.setToolTip("conformal intervals, when the weights carry a calibration")
        self.pcs_spin = QSpinBox()
        self.pcs_spin.setRange(0, stats.MAX_COMPONENTS)
        self.pcs_spin.setSpecialValueText("off")
        self.pcs_spin.setMinimumWidth(70)
        self.pcs_spin.setToolTip("posterior principal components to compute (0: none)")
        row.addWidget(self.self_check_box)
        row.addWidget(self.intervals_box)
        row.addWidget(QLabel("PCs"))
        row.addWidget(self.pcs_spin)
        layout.addLayout(row)
        self.verdict_label = QLabel("no run yet")
        self.verdict_label.setWordWrap(True)
        self.verdict_label.setTextFormat(Qt.TextFormat.RichText)
        layout.addWidget(self.verdict_label)
        self.interval_label = QLabel("")
        self.interval_label.setWordWrap(True)
        layout.addWidget(self.interval_label)

        walk = QHBoxLayout()
        self.pc_spin = QSpinBox()
        self.pc_spin.setPrefix("walk PC ")
        self.pc_spin.setRange(1, 1)
        self.walk_slider = QSlider(Qt.Orientation.Horizontal)
        self.walk_slider.setRange(-int(WALK_LIMIT * 10), int(WALK_LIMIT * 10))
        self.walk_label = QLabel("t = 0.0")
        walk.addWidget(self.pc_spin)
        walk.addWidget(self.walk_slider, 1)
        walk.addWidget(self.walk_label)
        layout.addLayout(walk)
        self._enable_walk(False)

        self.roi_combo = QComboBox()
        self.roi_combo.setToolTip("a Shapes layer: the posterior of the mean intensity inside "
                                  "its rectangles, polygons and ellipses")
        form.addRow("ROI posterior", self.roi_combo)
        layout.addLayout(form)
        self.roi_label = QLabel("")
        self.roi_label.setWordWrap(True)
        layout.addWidget(self.roi_label)
        self._build_plot(layout)
        self._show_plot(False)

        self.walk_slider.valueChanged.connect(self._on_walk)
        self.pc_spin.valueChanged.connect(self._on_walk)
        self.roi_combo.currentIndexChanged.connect(self._on_roi_layer)
        events = viewer.layers.events
        events.inserted.connect(self.refresh_shapes)
        events.removed.connect(self.refresh_shapes)
        self.refresh_shapes()

    def _build_plot(self, layout: QVBoxLayout) -> None:
        from napari_rcgan._widget.plots import PlotCanvas

        self.canvas = PlotCanvas((3.4, 1.5), 110, 140)
        self.figure = self.canvas.figure
        self.roi_axis = self.figure.add_subplot(111)
        self.roi_axis.tick_params(labelsize=7)
        self.figure.subplots_adjust(left=0.12, right=0.97, bottom=0.22, top=0.95)
        layout.addWidget(self.canvas)

    def _show_plot(self, visible: bool) -> None:
        self.canvas.setVisible(visible)
        self.roi_label.setVisible(bool(self.roi_label.text()))
        if visible:
            self.canvas.draw_idle()

    # the request ------------------------------------------------------------------------------

    def options(self) -> dict[str, Any]:
        """The ``SamplingRequest.options`` of the panel's switches."""
        return {
            "self_check": self.self_check_box.isChecked(),
            "intervals": None if self.intervals_box.isChecked() else False,
            "pcs": int(self.pcs_spin.value()),
        }

    # after a run ------------------------------------------------------------------------------

    def show_run(self, run: SamplingRun) -> None:
        """Show the verdict, interval note, PC layers, walk and ROI posterior of ``run``."""
        self.run = run
        attrs = run.record.extra_attrs
        self._show_verdict(attrs)
        if "interval_scale" in attrs:
            text = (f"intervals: half-width = {attrs['interval_scale']:.2f} × SD "
                    f"(calibrated at P={attrs['interval_P']})")
            if "coverage" in attrs:
                text += f"; they cover {100 * attrs['coverage']:.1f}% of the reference"
            self.interval_label.setText(text)
            self.interval_label.setToolTip("")
        elif self.intervals_box.isChecked() and "interval_note" in attrs:
            note = attrs["interval_note"]
            why = ("the weights carry no conformal calibration" if "no conformal" in note
                   else "not calibrated for this task or R")
            self.interval_label.setText(f"no intervals: {why} (hover for more)")
            self.interval_label.setToolTip(note)
        else:
            self.interval_label.setText("")
            self.interval_label.setToolTip("")
        self._show_pcs(run)
        self.update_roi()

    def _show_verdict(self, attrs: dict[str, Any]) -> None:
        verdict = attrs.get("selfcheck_verdict")
        if verdict is None:
            self.verdict_label.setText("self-check off" if not self.self_check_box.isChecked()
                                       else "")
            return
        message = attrs.get("selfcheck_message", "")
        if verdict == "none":
            self.verdict_label.setText(message)
            return
        colour = VERDICT_COLOURS.get(verdict, "#000000")
        self.verdict_label.setText(
            f"<b style='color:{colour}'>self-check: {verdict.replace('_', ' ')}.</b> {message}"
        )
        self.verdict_label.setToolTip(
            f"error ratio {attrs['selfcheck_error_ratio']:.3f} (fits at <= {FIT_RATIO}, out of "
            f"distribution at >= {OOD_RATIO}); coverage {attrs['selfcheck_coverage']:.3f} "
            f"(fits needs >= {MIN_FIT_COVERAGE})"
        )

    def _show_pcs(self, run: SamplingRun) -> None:
        extras = run.record.extras
        if "pcs" not in extras:
            self._pcs = None
            self._enable_walk(False)
            return
        components = extras["pcs"].data
        variances = extras["pc_variances"].data
        self._pcs = (components, variances)
        explained = extras["pc_explained"].data
        for k in range(len(components)):
            self._put_layer(f"pc_{k + 1}", pc_name(k + 1), components[k], colormap="PiYG",
                            symmetric=True, title_note=f"{100 * explained[k]:.0f}% of variance")
        self.pc_spin.setRange(1, len(components))
        self._enable_walk(True)
        self.walk_slider.setValue(0)
        self._on_walk()

    def _enable_walk(self, enabled: bool) -> None:
        for control in (self.pc_spin, self.walk_slider):
            control.setEnabled(enabled)

    def _put_layer(self, kind: str, name: str, data: np.ndarray, colormap: str = "gray",
                   symmetric: bool = False, title_note: str = "",
                   limits: tuple[float, float] | None = None) -> Any:
        run = self.run
        geometry = self.publisher._geometry(run, False)
        data = self.publisher._lift(run, data, False)
        if symmetric:
            high = float(np.abs(data).max()) or 1.0
            limits = (-high, high)
        metadata = {"rcgan": run.info(kind)}
        if title_note:
            metadata["rcgan"]["note"] = title_note
        layer = run.layers.get(kind) or self.publisher.adopt_spare(run, kind)
        if layer is not None and layer in self.viewer.layers:
            layer.data = data
            layer.metadata = metadata
        else:
            layer = self.viewer.add_image(data, name=name, colormap=colormap, metadata=metadata,
                                          **geometry)
            run.layers[kind] = layer
        if limits is not None:
            layer.contrast_limits = limits
        return layer

    def walk_image(self, k: int, t: float) -> np.ndarray:
        """``mean + t·√variance_k·component_k`` of the last run (k 1-based)."""
        if self._pcs is None or self.run is None:
            raise ParameterError("no principal components: set PCs > 0 and press Sample")
        components, variances = self._pcs
        mean = self.run.record.stack.mean()
        return (mean + t * np.sqrt(variances[k - 1]) * components[k - 1]).astype(np.float32)

    def set_walk(self, k: int, t: float) -> None:
        """Move the walk control to PC ``k`` and ``t`` (what the user does)."""
        self.pc_spin.setValue(int(k))
        self.walk_slider.setValue(int(round(t * 10)))

    def _on_walk(self, *_: Any) -> None:
        t = self.walk_slider.value() / 10
        self.walk_label.setText(f"t = {t:+.1f}")
        if self._pcs is None or self.run is None:
            return
        k = self.pc_spin.value()
        mean_layer = self.run.layers.get("mean")
        limits = tuple(mean_layer.contrast_limits) if mean_layer is not None else None
        self._put_layer("pc_walk", WALK_NAME, self.walk_image(k, t), limits=limits)

    # ROI posterior ----------------------------------------------------------------------------

    @ignore_when_closing
    def refresh_shapes(self, *_: Any) -> None:
        """Offer the viewer's Shapes layers as ROI layers (keeping the current choice)."""
        current = self.roi_combo.currentText()
        names = [layer.name for layer in self.viewer.layers if isinstance(layer, Shapes)]
        self.roi_combo.blockSignals(True)
        self.roi_combo.clear()
        self.roi_combo.addItems(names or [NO_SHAPES])
        if current in names:
            self.roi_combo.setCurrentText(current)
        self.roi_combo.blockSignals(False)
        self._on_roi_layer()

    def roi_layer(self) -> Shapes | None:
        name = self.roi_combo.currentText()
        if name in self.viewer.layers and isinstance(self.viewer.layers[name], Shapes):
            return self.viewer.layers[name]
        return None

    def _on_roi_layer(self, *_: Any) -> None:
        layer = self.roi_layer()
        if self._watched is not None and self._watched is not layer:
            self._watched.events.data.disconnect(self.update_roi)
            self._watched = None
        if layer is not None and self._watched is None:
            layer.events.data.connect(self.update_roi)
            self._watched = layer
        self.update_roi()

    @ignore_when_closing
    def update_roi(self, *_: Any) -> None:
        """Recompute and draw the ROI posterior (the chosen Shapes layer over the last run)."""
        self.roi_values = None
        self.roi_axis.clear()
        layer = self.roi_layer()
        if self.run is None or self.run.record is None or layer is None or not len(layer.data):
            self.roi_label.setText("" if layer is None else
                                   "draw a rectangle or polygon in the Shapes layer")
            self._show_plot(False)
            return
        record = self.run.record
        mask = shape_masks(layer, tuple(record.mask.shape), *self.run.placement)
        if not mask.any():
            self.roi_label.setText(f"the shapes of '{layer.name}' cover no pixel of the result")
            self._show_plot(False)
            return
        self._show_plot(True)
        values = stats.roi_values(record.stack.samples, mask)
        self.roi_values = values
        low, high = stats.credible_interval(values, CREDIBLE_LEVEL)
        axis = self.roi_axis
        axis.hist(values, bins=max(5, min(30, len(values) // 2)), color="tab:blue", alpha=0.8)
        axis.axvspan(low, high, color="tab:blue", alpha=0.15)
        text = (f"ROI ({int(mask.sum())} px) mean over {len(values)} samples: "
                f"{CREDIBLE_LEVEL:.0%} credible interval [{low:.3g}, {high:.3g}]")
        if record.reference is not None:
            reference = float(np.mean(np.asarray(record.reference)[mask]))
            axis.axvline(reference, color="tab:red")
            text += f"; reference {reference:.3g} (red)"
        axis.tick_params(labelsize=7)
        self.roi_label.setText(text)
        self._show_plot(True)
