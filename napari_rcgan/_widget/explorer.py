"""The P explorer: a slider over P, the numbers of the P-average, and a metric-vs-P plot.

The curve's numbers and its figure are made off the GUI thread (:func:`curve_metrics` and
:class:`CurvePlot`, built by the worker at the end of a run); the GUI shows the figure. Moving the
slider re-averages from the prefix sums (O(HW)) and moves the marker; a metric for a P not on the
curve is computed once and cached in the run.

Adding a metric (e.g. LPIPS/DISTS): compute it in :func:`curve_metrics` (worker thread) into
``SamplingRun.metrics[P]`` and draw it in :class:`CurvePlot`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from qtpy.QtCore import Qt, Signal
from qtpy.QtWidgets import QGroupBox, QHBoxLayout, QLabel, QSlider, QTabWidget, QVBoxLayout

from napari_rcgan._widget.plots import PlotCanvas, new_figure

if TYPE_CHECKING:
    from napari_rcgan._widget.run import SamplingRun


def curve_points(drawn: int) -> list[int]:
    """P values of the PSNR/SSIM curve: powers of two up to ``drawn``, and ``drawn``."""
    points = [2**k for k in range(int(math.log2(drawn)) + 1)]
    return sorted(set(points + [drawn]))


def curve_metrics(run: SamplingRun) -> None:
    """Fill ``run.metrics`` for the curve points (no-op without a reference); any thread."""
    if run.record.reference is None:
        return
    for P in curve_points(run.drawn):
        run.metric(P)


def _fit_ylim(axis: Any, values: list[float], min_span: float) -> None:
    """Y limits around ``values`` spanning at least ``min_span``, without an offset label."""
    finite = [v for v in values if math.isfinite(v)]
    if finite:
        low, high = min(finite), max(finite)
        half = max(high - low, min_span) * 0.6
        centre = (low + high) / 2
        axis.set_ylim(centre - half, centre + half)
    axis.ticklabel_format(axis="y", style="plain", useOffset=False)


class CurvePlot:
    """The PSNR/SSIM-vs-P curve of a run on a matplotlib figure (any thread; no Qt), with
    markers at the current P (:meth:`mark`). ``run`` None or without a reference: empty axes."""

    def __init__(self, figure: Any, run: SamplingRun | None = None) -> None:
        self.figure = figure
        self.psnr_axis = left = figure.add_subplot(111)
        self.ssim_axis = right = left.twinx()
        # fixed margins: tight_layout costs tens of ms
        figure.subplots_adjust(left=0.2, right=0.8, bottom=0.2, top=0.86)
        self.markers: tuple | None = None
        self.key = (run.run_id, run.drawn) if run is not None else None
        self.has_curve = False
        left.set_xlabel("P (samples averaged)", fontsize=8)
        left.set_ylabel("PSNR (dB)", fontsize=8, color="tab:blue")
        right.set_ylabel("SSIM", fontsize=8, color="tab:orange")
        for axis in (left, right):
            axis.tick_params(labelsize=7)
        left.set_xscale("log", base=2)
        left.minorticks_off()
        if run is None or run.record is None or run.record.reference is None:
            left.set_title("PSNR / SSIM of the P-average", fontsize=8)
            left.set_xlim(0.8, 40)
            left.set_xticks([1, 2, 4, 8, 16, 32], ["1", "2", "4", "8", "16", "32"])
            return
        self.has_curve = True
        points = curve_points(run.drawn)
        values = [run.metric(p) for p in points]
        psnrs, ssims = [v[0] for v in values], [v[1] for v in values]
        left.plot(points, psnrs, "o-", color="tab:blue", ms=3, lw=1.2)
        right.plot(points, ssims, "s--", color="tab:orange", ms=3, lw=1.2)
        _fit_ylim(left, psnrs, 0.5)
        _fit_ylim(right, ssims, 0.02)
        left.set_xlim(0.8, max(points) * 1.25)
        left.set_xticks(points, [str(p) for p in points])

    def mark(self, run: SamplingRun, P: int) -> None:
        """Markers and title at ``P`` (a run with a reference)."""
        psnr, ssim = run.metric(P)
        if self.markers is None:
            line = self.psnr_axis.axvline(P, color="0.4", lw=0.8, ls=":")
            (left,) = self.psnr_axis.plot([P], [psnr], "o", color="tab:red", ms=6, zorder=5)
            (right,) = self.ssim_axis.plot([P], [ssim], "s", color="tab:red", ms=6, zorder=5)
            self.markers = (line, left, right)
        line, left, right = self.markers
        line.set_xdata([P, P])
        left.set_data([P], [psnr])
        right.set_data([P], [ssim])
        self.psnr_axis.set_title(f"P={P}: {psnr:.2f} dB, SSIM {ssim:.3f}", fontsize=8)


class Explorer(QGroupBox):
    """Slider, numbers and PSNR/SSIM-vs-P plot of the current run."""

    P_changed = Signal(int)
    """The user moved the slider to a new P."""

    def __init__(self) -> None:
        super().__init__("P explorer")
        layout = QVBoxLayout(self)
        row = QHBoxLayout()
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(1, 1)
        self.slider.setEnabled(False)
        self.value_label = QLabel("P = –")
        row.addWidget(self.slider, 1)
        row.addWidget(self.value_label)
        layout.addLayout(row)
        self.metrics_label = QLabel("no result yet")
        self.metrics_label.setWordWrap(True)
        layout.addWidget(self.metrics_label)
        self._build_plot(layout)
        self.slider.valueChanged.connect(self.P_changed.emit)

    def _build_plot(self, layout: QVBoxLayout) -> None:
        self.canvas = PlotCanvas((3.4, 1.4), 110, 200)
        self.plot = CurvePlot(self.canvas.figure)
        self.tabs = QTabWidget()
        self.tabs.addTab(self.canvas, "PSNR/SSIM")
        layout.addWidget(self.tabs)

    @property
    def psnr_axis(self) -> Any:
        return self.plot.psnr_axis

    @property
    def ssim_axis(self) -> Any:
        return self.plot.ssim_axis

    @property
    def markers(self) -> tuple | None:
        return self.plot.markers

    def plot_inches(self) -> tuple[float, float]:
        """The size a worker builds the run's :class:`CurvePlot` at."""
        return self.canvas.size_inches()

    def reset(self, run: SamplingRun) -> None:
        """A run finished: the slider spans its samples and sits at P = all."""
        self.slider.blockSignals(True)
        self.slider.setRange(1, run.drawn)
        self.slider.setValue(run.drawn)
        self.slider.setEnabled(run.drawn > 1)
        self.slider.blockSignals(False)

    def set_P(self, P: int) -> None:
        self.slider.blockSignals(True)
        self.slider.setValue(int(P))
        self.slider.blockSignals(False)

    def show_P(self, run: SamplingRun, P: int) -> None:
        """The numbers and the plot of the first-P average."""
        self.value_label.setText(f"P = {P}")
        metric = run.metric(P)
        partial = " (partial)" if run.partial else ""
        if metric is None:
            text = f"P = {P} of {run.drawn}{partial}: no reference, no PSNR"
        else:
            text = f"P = {P} of {run.drawn}{partial}: PSNR {metric[0]:.2f} dB, SSIM {metric[1]:.4f}"
        if P == 1:
            text += " — the SD needs P ≥ 2 samples (with one it is zero everywhere)"
        self.metrics_label.setText(text)
        self.draw(run, P)

    def draw(self, run: SamplingRun | None = None, P: int | None = None) -> None:
        """Show the PSNR/SSIM-vs-P curve of ``run`` with P marked: the figure the worker built
        (``run.curve_plot``), else one built here; moving P only moves the markers."""
        if run is not None and run.curve_plot is not None:
            if run.curve_plot is not self.plot:
                self.plot = run.curve_plot
                self.canvas.adopt(self.plot.figure)
        elif self.plot.key != ((run.run_id, run.drawn) if run is not None else None):
            self.plot = CurvePlot(new_figure(self.canvas.size_inches()), run)
            self.canvas.adopt(self.plot.figure)
        if self.plot.has_curve and P is not None:
            self.plot.mark(run, P)
        self.canvas.draw_idle()
