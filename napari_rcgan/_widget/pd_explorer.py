"""The perception–distortion explorer: the plane, the metric-vs-P curves and the zoom strip.

After a run, :meth:`PDExplorer.start` computes the run's
:func:`~napari_rcgan.perception.pd_curves` (PSNR, SSIM, LPIPS, DISTS of the P-average for every
P; feature networks in ``auto`` precision) in a worker thread; the GUI thread only draws them.
Three tabs join the P explorer's plot: the perception–distortion plane (distortion and
perception axes chosen by the user), the four curves, and a zoom strip of the P-average at
P ∈ {1, 2, 4, 32} over a region (paper, Appendix K): the last rectangle of the "zoom region"
Shapes layer (button) or of the selected Shapes layer, else the centre. Moving the P slider
only moves the highlight markers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.qt.threading import thread_worker
from qtpy.QtCore import QElapsedTimer, QEventLoop, Signal
from qtpy.QtWidgets import (
    QApplication,
    QComboBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from napari_rcgan import perception
from napari_rcgan._widget.plots import PlotCanvas, new_figure
from napari_rcgan.errors import ParameterError, RcganError

if TYPE_CHECKING:
    import napari

    from napari_rcgan._widget.run import SamplingRun

ZOOM_LAYER = "zoom region"
ZOOM_KEY = "rcgan_zoom"
CANVAS_HEIGHT = 230
COMPUTING = "measuring PSNR, SSIM, LPIPS and DISTS of every P-average…"


@thread_worker(start_thread=False, ignore_errors=True)
def curves_job(run: SamplingRun, device: str, zoom: ZoomRequest, plots: PlotRequest):
    """Worker: yields the laid-out zoom strip ``(run_id, figure, axes)``, then returns
    ``(run_id, PDCurves or None, message, [plane PDPlot, curves PDPlot])``; never raises.
    The figures are built here, off the GUI thread, at the canvases' sizes."""
    figure = new_figure(zoom.size_inches)
    yield run.run_id, figure, draw_zoom_strip(figure, run.stack, zoom.box, zoom.where)
    try:
        curves = perception.pd_curves(run.stack, run.reference, precision="auto", device=device)
        drawn = [
            perception.PDPlot(new_figure(plots.plane_inches), curves, "plane", plots.distortion,
                              plots.perception),
            perception.PDPlot(new_figure(plots.curves_inches), curves, "curves"),
        ]
        return run.run_id, curves, "", drawn
    except RcganError as error:
        return run.run_id, None, str(error), []


@dataclass(frozen=True)
class ZoomRequest:
    """The zoom strip a worker draws: the box (result pixels), where it came from, the size."""

    box: tuple[int, int, int, int]
    where: str
    size_inches: tuple[float, float]


@dataclass(frozen=True)
class PlotRequest:
    """The plane's axes and the canvases' sizes for the plots a worker draws."""

    distortion: str
    perception: str
    plane_inches: tuple[float, float]
    curves_inches: tuple[float, float]


def draw_zoom_strip(figure: Any, stack: Any, box: tuple[int, int, int, int],
                    where: str) -> list[tuple[int, Any]]:
    """The P-average at P ∈ {1, 2, 4, 32} over ``box`` on ``figure`` (cleared); ``[(P, axis)]``."""
    strip = perception.zoom_strip(stack, box)
    figure.clear()
    crops = [crop.mean(axis=-1) if crop.ndim == 3 else crop for _, crop in strip]
    high = float(np.percentile(np.concatenate([c.ravel() for c in crops]), 99.5)) or 1.0
    axes = []
    for index, ((P, _), crop) in enumerate(zip(strip, crops)):
        axis = figure.add_subplot(1, len(strip), index + 1)
        axis.imshow(crop, cmap="gray", vmin=0, vmax=high)
        axis.set_title(f"P={P}", fontsize=8)
        axis.set_xticks([])
        axis.set_yticks([])
        axes.append((P, axis))
    figure.suptitle(f"P-average, {where} rows {box[0]}–{box[2]}, columns {box[1]}–{box[3]}",
                    fontsize=7)
    figure.tight_layout(rect=(0, 0, 1, 0.9))
    return axes


class PDExplorer(QWidget):
    """The three perception–distortion tabs (:attr:`pages`) of the dock's P explorer."""

    curves_ready = Signal(object)
    """Emitted on the GUI thread with the run's :class:`~napari_rcgan.perception.PDCurves`."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = viewer
        self.run: SamplingRun | None = None
        self.curves: perception.PDCurves | None = None
        self.P: int | None = None
        self.plots: list[perception.PDPlot] = []
        self._worker = None
        self._shapes: set[int] = set()
        self.labels: list[QLabel] = []
        self._pages_alive = True

        self.plane_page, plane_layout = self._page()
        row = QHBoxLayout()
        self.distortion_combo = QComboBox()
        self.distortion_combo.addItems([name.upper() for name in perception.DISTORTIONS])
        self.perception_combo = QComboBox()
        self.perception_combo.addItems([name.upper() for name in perception.PERCEPTIONS])
        row.addWidget(QLabel("distortion"))
        row.addWidget(self.distortion_combo)
        row.addWidget(QLabel("perception"))
        row.addWidget(self.perception_combo)
        plane_layout.addLayout(row)
        self.plane_canvas = PlotCanvas((3.6, 1.3), 100, CANVAS_HEIGHT)
        plane_layout.addWidget(self.plane_canvas)

        self.curves_page, curves_layout = self._page()
        self.curves_canvas = PlotCanvas((3.6, 1.4), 110, CANVAS_HEIGHT)
        curves_layout.addWidget(self.curves_canvas)

        self.zoom_page, zoom_layout = self._page()
        self.zoom_canvas = PlotCanvas((3.6, 1.3), 100, CANVAS_HEIGHT)
        zoom_layout.addWidget(self.zoom_canvas)
        self.zoom_button = QPushButton("Zoom region (rectangle)")
        self.zoom_button.setToolTip("Add a Shapes layer with a rectangle you can move and resize")
        self.zoom_button.clicked.connect(self.add_zoom_layer)
        zoom_layout.addWidget(self.zoom_button)
        for layout in (plane_layout, curves_layout, zoom_layout):
            layout.addStretch(1)
        self.zoom_box: tuple[int, int, int, int] | None = None
        self._zoom_axes: list[tuple[int, Any]] = []

        self.distortion_combo.currentIndexChanged.connect(self._redraw_plane)
        self.perception_combo.currentIndexChanged.connect(self._redraw_plane)
        viewer.layers.events.inserted.connect(self._watch_shapes)
        # the pages live in the dock; when it closes, a curves worker still running must not touch them
        self.plane_page.destroyed.connect(self._on_pages_destroyed)
        self.set_message("no result yet")

    def _on_pages_destroyed(self) -> None:
        self._pages_alive = False

    def _page(self) -> tuple[QWidget, QVBoxLayout]:
        page = QWidget()
        layout = QVBoxLayout(page)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.setSpacing(2)
        label = QLabel()
        label.setWordWrap(True)
        layout.addWidget(label)
        self.labels.append(label)
        return page, layout

    @property
    def pages(self) -> list[tuple[QWidget, str]]:
        """``(page, tab title)`` for the P explorer's tabs."""
        return [(self.plane_page, "P–D plane"), (self.curves_page, "metrics vs P"),
                (self.zoom_page, "zoom")]

    def set_message(self, text: str) -> None:
        for label in self.labels:
            label.setText(text)

    @property
    def distortion(self) -> str:
        return perception.DISTORTIONS[self.distortion_combo.currentIndex()]

    @property
    def perception(self) -> str:
        return perception.PERCEPTIONS[self.perception_combo.currentIndex()]

    # computing --------------------------------------------------------------------------------

    def start(self, run: SamplingRun) -> None:
        """A run finished: draw its zoom strip and compute and draw its curves in a worker."""
        self.run, self.curves, self.P = run, None, run.drawn
        self.plots = []
        for canvas in (self.plane_canvas, self.curves_canvas):  # empty until the curves arrive
            canvas.adopt(new_figure(canvas.size_inches()))
        self.set_message(COMPUTING)
        box, where = self._zoom_region()
        self.zoom_box = box
        device = str(run.record.sampler.device) if run.record.sampler is not None else "cpu"
        worker = curves_job(
            run, "cuda" if device.startswith("cuda") else "cpu",
            ZoomRequest(box, where, self.zoom_canvas.size_inches()),
            PlotRequest(self.distortion, self.perception, self.plane_canvas.size_inches(),
                        self.curves_canvas.size_inches()),
        )
        worker.yielded.connect(self._on_zoom_drawn)
        worker.returned.connect(self._on_returned)
        worker.finished.connect(self._on_finished)
        self._worker = worker
        worker.start()

    def _current(self, run_id: int) -> bool:
        return self._pages_alive and self.run is not None and run_id == self.run.run_id

    def _on_zoom_drawn(self, value: tuple[int, Any, list[tuple[int, Any]]]) -> None:
        run_id, figure, axes = value
        if self._current(run_id):
            self.zoom_canvas.adopt(figure)
            self._zoom_axes = axes
            self._frame_zoom()

    def _on_returned(self, value: tuple[int, Any, str, list[perception.PDPlot]]) -> None:
        run_id, curves, message, plots = value
        if not self._current(run_id):
            return
        if curves is None:
            self.set_message(f"perception–distortion curves failed: {message}")
            return
        self.curves = curves
        self.set_message(self._summary(curves))
        plane, curve_plot = plots
        self.plane_canvas.adopt(plane.figure)
        self.curves_canvas.adopt(curve_plot.figure)
        self.plots = [plane, curve_plot]
        if (plane.distortion, plane.perception) != (self.distortion, self.perception):
            self._redraw_plane()  # the axes were changed while the curves were computed
        self.highlight(self.P or curves.P[-1])
        self.curves_ready.emit(curves)

    def _on_finished(self) -> None:
        self._worker = None

    def wait(self, timeout_ms: int = 120_000) -> bool:
        """Process GUI events until the curves of the current run are computed."""
        clock = QElapsedTimer()
        clock.start()
        while self._worker is not None and clock.elapsed() < timeout_ms:
            QApplication.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 50)
        return self._worker is None

    @staticmethod
    def _summary(curves: perception.PDCurves) -> str:
        if curves.has_perceptual and len(curves.P) > 1:
            text = (f"best perception P={curves.best('dists')} (DISTS), {curves.best('lpips')} "
                    f"(LPIPS); best distortion P={curves.best('psnr')} (PSNR)")
        else:
            text = ""
        return "\n".join([line for line in (text, *curves.notes) if line])

    # drawing ------------------------------------------------------------------------------------

    def _redraw_plane(self) -> None:
        if self.curves is None:
            return
        plane = perception.PDPlot(self.plane_canvas.figure, self.curves, "plane",
                                  self.distortion, self.perception)
        self.plots = [plane, *self.plots[1:]]
        self.highlight(self.P)

    def highlight(self, P: int | None) -> None:
        """Move the current-P markers (plane, curves, zoom strip frame)."""
        self.P = P
        for plot in self.plots:
            plot.highlight(P)
        for canvas in (self.plane_canvas, self.curves_canvas):
            canvas.draw_idle()
        self._frame_zoom()

    # zoom strip ---------------------------------------------------------------------------------

    def add_zoom_layer(self) -> None:
        """A Shapes layer with the default (centre) rectangle over the result, to move/resize."""
        if self.run is None or "mean" not in self.run.layers:
            raise ParameterError("no result to zoom into yet: press Sample first")
        mean = self.run.layers["mean"]
        top, left, bottom, right = perception.zoom_box(self.run.stack.sample_shape)
        corners = np.array([[top, left], [bottom, right]], dtype=float) - 0.5
        layer = self.viewer.add_shapes(
            [corners], shape_type="rectangle", name=ZOOM_LAYER, edge_color="yellow",
            face_color="transparent", edge_width=1.5 * float(np.min(mean.scale[-2:])),
            scale=mean.scale[-2:], translate=mean.translate[-2:], metadata={ZOOM_KEY: True},
        )
        layer.mode = "select"
        self.refresh_zoom()

    def _watch_shapes(self, event: Any = None) -> None:
        from napari.layers import Shapes

        layer = getattr(event, "value", None)
        if isinstance(layer, Shapes) and id(layer) not in self._shapes:
            self._shapes.add(id(layer))
            layer.events.data.connect(self.refresh_zoom)

    def region(self) -> tuple[float, float, float, float] | None:
        """The zoom rectangle in the result's pixel coordinates, or None (centre)."""
        from napari.layers import Shapes

        if self.run is None or "mean" not in self.run.layers:
            return None
        shapes = [layer for layer in self.viewer.layers if isinstance(layer, Shapes)]
        active = self.viewer.layers.selection.active
        shapes.sort(key=lambda layer: (not layer.metadata.get(ZOOM_KEY), layer is not active))
        mean = self.run.layers["mean"]
        for layer in shapes:
            rectangles = [data for data, kind in zip(layer.data, layer.shape_type)
                          if kind == "rectangle"]
            if rectangles:
                world = [layer.data_to_world(vertex) for vertex in rectangles[-1][:, -2:]]
                pixels = np.array([mean.world_to_data(point) for point in world])[:, -2:] + 0.5
                return (*pixels.min(axis=0), *pixels.max(axis=0))
        return None

    def _zoom_region(self) -> tuple[tuple[int, int, int, int], str]:
        """The zoom box of the current run (result pixels) and where it came from."""
        shape = self.run.stack.sample_shape
        try:
            box = self.region()
            return perception.zoom_box(shape, box), "region" if box is not None else "centre"
        except ParameterError as error:
            self.set_message(str(error))
            return perception.zoom_box(shape), "centre"

    def refresh_zoom(self, event: Any = None) -> None:
        """Redraw the zoom strip (the P-average at P ∈ {1, 2, 4, 32} over the region)."""
        run = self.run
        if run is None or run.stack is None:
            return
        self.zoom_box, where = self._zoom_region()
        self._zoom_axes = draw_zoom_strip(self.zoom_canvas.figure, run.stack, self.zoom_box, where)
        self._frame_zoom()

    def _frame_zoom(self) -> None:
        for P, axis in self._zoom_axes:
            current = P == self.P
            for spine in axis.spines.values():
                spine.set_edgecolor("tab:red" if current else "black")
                spine.set_linewidth(2.5 if current else 0.5)
        self.zoom_canvas.draw_idle()

