"""One run of the widget (:class:`SamplingRun`) and the worker that draws it.

The worker (:func:`sampling_job`, a napari ``thread_worker``) drives
:meth:`Session.iter_run <napari_rcgan.session.Session.iter_run>` and does all the heavy work off
the GUI thread: measurement, sampling, the statistics of each update and, at the end, the output
producers and the explorer's curve. It yields at most one :class:`Update` per ``interval``
seconds (plus the last one), so the GUI thread only assigns ready arrays to layers.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from napari.qt.threading import thread_worker

from napari_rcgan import stats
from napari_rcgan._widget.explorer import CurvePlot, curve_metrics
from napari_rcgan._widget.plots import new_figure
from napari_rcgan.errors import RcganError
from napari_rcgan.schema import SLICE_AXIS_KEY
from napari_rcgan.session import RunResult, SamplingRequest, Session

logger = logging.getLogger(__name__)

UPDATE_INTERVAL_S = 0.5
"""Shortest time between two layer updates while sampling (a few redraws per second)."""


@dataclass
class SamplingRun:
    """One run of the widget: its request, its result record, its layers and P-explorer state.

    Attributes:
        record: the engine's result (sample stack with prefix sums, inputs, schema), set when
            the first chunk arrives.
        placement: 2-D scale and translate putting the results over the input.
        slice_axis: scale and position of the input's slice axis where the results sit (MRI
            volumes), or None: the layers then have no slice axis.
        layers: the result layers by kind (``"samples"``, ``"mean"``, ...).
        spare_layers: the input's previous result layers of kinds that only arrive at the end
            of a run (intervals, PCs): hidden while this run samples, then reused in place or
            removed (``{kind: (layer, was_visible)}``).
        P: the P the explorer currently shows (mean, SD and error are of the first P samples).
        metrics: PSNR (dB) and SSIM of the P-average by P (when there is a reference).
        plot_inches: the size of the P explorer's plot, for the figure the worker builds.
        curve_plot: the PSNR/SSIM-vs-P figure, built by the worker at the end of the run.
    """

    run_id: int
    request: SamplingRequest
    input_name: str
    placement: tuple[tuple[float, float], tuple[float, float]]
    slice_axis: tuple[float, float] | None = None
    record: RunResult | None = None
    layers: dict[str, Any] = field(default_factory=dict)
    spare_layers: dict[str, tuple[Any, bool]] = field(default_factory=dict)
    finished: bool = False
    P: int = 0
    metrics: dict[int, tuple[float, float]] = field(default_factory=dict)
    plot_inches: tuple[float, float] = (3.4, 1.4)
    curve_plot: CurvePlot | None = None

    @property
    def drawn(self) -> int:
        return 0 if self.record is None else self.record.drawn

    @property
    def requested(self) -> int:
        return int(self.request.P)

    @property
    def partial(self) -> bool:
        return self.drawn < self.requested

    @property
    def stack(self) -> stats.SampleStack | None:
        return None if self.record is None else self.record.stack

    @property
    def measurement(self) -> Any:
        return None if self.record is None else self.record.measurement

    @property
    def task(self) -> str:
        return self.request.resolved_task

    @property
    def R(self) -> float | None:
        return None if self.record is None else self.record.R

    @property
    def mask_kind(self) -> str:
        return "" if self.record is None else self.record.mask_kind

    @property
    def seed(self) -> int:
        return int(self.request.seed)

    @property
    def weights(self) -> str:
        return self.request.resolved_weights if self.record is None else self.record.weights

    @property
    def reference(self) -> np.ndarray | None:
        return None if self.record is None else self.record.reference

    @property
    def rgb(self) -> bool:
        return self.record is not None and self.record.rgb

    def info(self, kind: str) -> dict[str, Any]:
        """The ``metadata["rcgan"]`` of the layer of ``kind`` (the schema's layer info)."""
        info = self.record.layer_info(kind, self.P or None, input_name=self.input_name,
                                      run=self.run_id)
        if self.slice_axis is not None:
            info[SLICE_AXIS_KEY] = True
        return info

    def metric(self, P: int) -> tuple[float, float] | None:
        """PSNR and SSIM of the first-P average against the reference (cached)."""
        if self.reference is None or self.record is None:
            return None
        if P not in self.metrics:
            mean = self.record.stack.mean(P)
            self.metrics[P] = (stats.psnr(mean, self.reference), stats.ssim(mean, self.reference))
        return self.metrics[P]


@dataclass
class Update:
    """What the GUI shows after some chunks: the sample buffer (all P rows, the first
    ``drawn`` filled; the worker fills it in place) and the statistics of the ``drawn``
    samples (``mean``, ``std`` and ``error``, computed in the worker)."""

    drawn: int
    samples: np.ndarray
    explored: dict[str, np.ndarray]
    final: bool = False


def _update(record: RunResult, final: bool = False) -> Update:
    samples = record.stack.samples if final else record.stack.buffer
    return Update(record.drawn, samples, record.explored(grey_maps=True), final)


@thread_worker(start_thread=False, ignore_errors=True)
def sampling_job(
    session: Session, run: SamplingRun, cancel: threading.Event,
    interval: float = UPDATE_INTERVAL_S,
):
    """Worker generator: yields :class:`Update` items (coalesced) and returns
    ``("done", final Update or None)`` or ``("error", message)``; never raises."""
    try:
        last = -math.inf
        for record in session.iter_run(run.request, cancel):
            if run.record is None:
                run.record = record
            now = time.perf_counter()
            if now - last >= interval and not record.complete:
                yield _update(record)
                last = time.perf_counter()
        if run.record is None:
            return ("done", None)
        session.finish(run.record)
        curve_metrics(run)
        run.curve_plot = CurvePlot(new_figure(run.plot_inches), run)
        return ("done", _update(run.record, final=True))
    except RcganError as error:
        return ("error", str(error))
    except MemoryError:
        return ("error", "out of memory: lower P or the chunk size, or use another device")
    except Exception as error:  # a bug, not bad input: keep the viewer alive, log the traceback
        logger.exception("rcGAN sampling failed")
        return ("error", f"unexpected error ({type(error).__name__}): {error}")
