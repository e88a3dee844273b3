"""Matplotlib canvases of the dock that cost the GUI thread only what is on screen.

A :class:`PlotCanvas` draws only while it is visible: a plot updated on a hidden tab is drawn
when the tab is shown (rendering a figure with Agg takes the GUI thread ~50 ms, and a run ends
by updating every panel). A figure can be built and laid out in a worker thread
(:func:`new_figure`, sized for the canvas by :meth:`PlotCanvas.size_inches`) and then shown
with :meth:`PlotCanvas.adopt`, so ``tight_layout`` runs off the GUI thread.
"""

from __future__ import annotations

from typing import Any

from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure

DPI = 90


def new_figure(size_inches: tuple[float, float]) -> Figure:
    """A figure for a :class:`PlotCanvas` (any thread; no Qt)."""
    return Figure(figsize=size_inches, dpi=DPI)


class PlotCanvas(FigureCanvasQTAgg):
    """A Qt matplotlib canvas that draws only when visible (see the module docstring)."""

    def __init__(self, size_inches: tuple[float, float], minimum_height: int,
                 maximum_height: int) -> None:
        super().__init__(new_figure(size_inches))
        self.setMinimumHeight(minimum_height)
        self.setMaximumHeight(maximum_height)
        self.stale = False

    def draw_idle(self, *args: Any, **kwargs: Any) -> None:
        if self.isVisible():
            super().draw_idle(*args, **kwargs)
        else:
            self.stale = True

    def showEvent(self, event: Any) -> None:  # noqa: N802 (Qt API)
        super().showEvent(event)
        if self.stale:
            self.stale = False
            super().draw_idle()

    def size_inches(self) -> tuple[float, float]:
        """The size of the figure now on the canvas (for :func:`new_figure`; matplotlib keeps
        it equal to the widget's size since the canvas was last shown)."""
        width, height = self.figure.get_size_inches()
        return float(width), float(height)

    def adopt(self, figure: Figure) -> None:
        """Show ``figure`` (built by :func:`new_figure`, possibly in a worker) on this canvas."""
        figure.set_canvas(self)
        self.figure = figure
        figure._set_dpi(DPI * self.device_pixel_ratio, forward=False)
        if self.width() > 0 and self.height() > 0:
            # Sized when its job started, the figure may be smaller than the widget now (the dock
            # was resized, or the canvas not yet laid out): fill it as matplotlib's resizeEvent
            # would, else the uncovered part of the widget is never painted.
            figure.set_size_inches(self.width() / DPI, self.height() / DPI, forward=False)
        self.draw_idle()
