"""The "Posterior sampler" dock widget: the fields, the run, the layers and the P explorer.

:class:`PosteriorSamplerWidget` composes :class:`~napari_rcgan._widget.controls.Controls`
(fields → request), :func:`~napari_rcgan._widget.run.sampling_job` (worker),
:class:`~napari_rcgan._widget.layers.LayerPublisher` (layers, mask preview) and
:class:`~napari_rcgan._widget.explorer.Explorer` (P slider and plot). The sampling itself is the
engine's :class:`~napari_rcgan.session.Session`, shared by all runs of the widget (samplers and
measurements are cached there).
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from napari.layers import Labels
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import QEventLoop, QTimer, Signal
from qtpy.QtWidgets import QScrollArea, QTabWidget, QVBoxLayout, QWidget

from napari_rcgan._widget.controls import Controls, task_of, wrappable
from napari_rcgan._widget.explorer import Explorer, curve_points
from napari_rcgan._widget.layers import LayerPublisher, is_ours, placement, slice_axis
from napari_rcgan._widget.pd_explorer import PDExplorer
from napari_rcgan._widget.run import SamplingRun, Update, sampling_job
from napari_rcgan._widget.teardown import ignore_when_closing
from napari_rcgan._widget.uncertainty import UncertaintyPanel
from napari_rcgan.errors import ParameterError, RcganError
from napari_rcgan.session import Session, input_pixel_scale

if TYPE_CHECKING:
    import napari

_run_ids = itertools.count(1)
GUI_RESERVED_CORES = 1
"""CPU cores left to the GUI thread when the worker chooses torch's intra-op threads."""


class _Lifetime:
    """What must outlive the widget's C++ object: the cancel flag of the running run."""

    def __init__(self) -> None:
        self.cancel = threading.Event()

    def close(self, *_: Any) -> None:
        self.cancel.set()


class PosteriorSamplerWidget(QWidget):
    """Dock widget drawing rcGAN posterior samples for the selected input layer."""

    run_finished = Signal(object)
    """Emitted when a run ends, with the :class:`SamplingRun` (or None when nothing came out)."""
    chunk_received = Signal(int)
    """Emitted with the number of samples drawn so far each time the layers were updated."""

    def __init__(self, napari_viewer: napari.viewer.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self.session = Session(reserved_cores=GUI_RESERVED_CORES)
        self.result: SamplingRun | None = None
        self.last_error: str | None = None
        self._worker = None
        self._lifetime = _Lifetime()
        self._run: SamplingRun | None = None
        self._outcome: tuple[str, Any] | None = None
        self._create_preview = True
        self._input_removed = False

        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        self.controls = Controls(napari_viewer)
        self.explorer = Explorer()
        self.pd_explorer = PDExplorer(napari_viewer)
        for page, title in self.pd_explorer.pages:
            self.explorer.tabs.addTab(page, title)
        self.layers = LayerPublisher(napari_viewer)
        self.layers.watch_colorbars()
        layout.addWidget(self.controls)
        self.uncertainty = UncertaintyPanel(napari_viewer)
        # the two result panels share one tabbed area so the dock fits a laptop screen (<= 800 px)
        self.panels = QTabWidget()
        self.panels.addTab(self.explorer, "P explorer")
        uncertainty_page = QScrollArea()
        uncertainty_page.setWidgetResizable(True)
        uncertainty_page.setWidget(self.uncertainty)
        self.panels.addTab(uncertainty_page, "Uncertainty")
        self.panels.setMinimumHeight(240)
        layout.addWidget(self.panels)
        layout.addStretch(1)
        self._alias_fields()

        self.controls.fields_changed.connect(self._update_mask_preview)
        self.controls.sample_button.clicked.connect(self.start)
        self.controls.cancel_button.clicked.connect(self.cancel)
        self.controls.grid_check.toggled.connect(self._on_grid_toggled)
        self.explorer.P_changed.connect(self._on_slider)
        events = self.viewer.layers.events
        events.inserted.connect(self._on_layers_changed)
        events.removed.connect(self._on_layers_changed)
        self.viewer.dims.events.current_step.connect(self._on_dims_changed)
        # closing the viewer deletes the widget: the running run stops within one chunk
        self.destroyed.connect(self._lifetime.close)
        self.controls.refresh_layer_choices()

    @property
    def _cancel(self) -> threading.Event:
        return self._lifetime.cancel

    def _alias_fields(self) -> None:
        """The fields scripts and tests use, as attributes of the widget."""
        controls, explorer = self.controls, self.explorer
        for name in ("input_combo", "input_info", "slice_spin", "R_spin", "mask_combo",
                     "achieved_label", "hole_combo", "P_spin", "seed_spin", "device_combo",
                     "backend_combo", "precision_combo", "weights_combo", "weights_info",
                     "combine_combo", "sample_button", "cancel_button", "progress",
                     "status_label", "grid_check"):
            setattr(self, name, getattr(controls, name))
        self.P_slider = explorer.slider
        self.metrics_label = explorer.metrics_label

    # delegation to the controls -------------------------------------------------------------

    def input_layer(self):
        return self.controls.input_layer()

    def current_task(self) -> str | None:
        return self.controls.current_task()

    def resolved_weights(self) -> str:
        return self.controls.resolved_weights()

    def select_weights(self, spec: str | Path) -> None:
        self.controls.select_weights(spec)

    def preview_mask(self):
        return self.controls.preview_mask()

    @property
    def _markers(self) -> tuple | None:
        return self.explorer.markers

    @property
    def psnr_axis(self) -> Any:
        """The P explorer's PSNR axis (matplotlib)."""
        return self.explorer.psnr_axis

    @property
    def ssim_axis(self) -> Any:
        return self.explorer.ssim_axis

    def curve_points(self, run: SamplingRun) -> list[int]:
        return curve_points(run.drawn)

    # viewer events ----------------------------------------------------------------------------

    def _on_layers_changed(self, event: Any = None) -> None:
        # a removal (the user deleting layers, the viewer closing) must never re-create the
        # preview layer: only field changes and newly inserted inputs do
        if event is not None and is_ours(getattr(event, "value", None)):
            return  # our result / preview layers are never inputs, masks or holes
        removal = getattr(event, "type", "") == "removed"
        run = self._run
        if removal and run is not None and getattr(event.value, "name", None) == run.input_name:
            self._input_removed = True
            self.cancel()
        self._create_preview = not removal
        try:
            self._refresh_choices(event, removal)
        finally:
            self._create_preview = True

    @ignore_when_closing
    def _refresh_choices(self, event: Any, removal: bool) -> None:
        self.controls.refresh_layer_choices()
        if not removal and isinstance(getattr(event, "value", None), Labels):
            self.controls.maybe_pick_hole(event.value)

    @ignore_when_closing
    def _on_dims_changed(self, event: Any = None) -> None:
        """The slice box follows the viewer's slice slider (and can still be set by hand)."""
        self.controls.follow_slice()

    def _update_mask_preview(self) -> None:
        layer = self.controls.input_layer()
        if self.controls._refreshing or layer is None or task_of(layer) != "mri":
            self.achieved_label.setText("–")
            return
        try:
            mask = self.controls.preview_mask()
        except RcganError as error:
            self.achieved_label.setText(wrappable(f"⚠ {error}"))
            return
        self.achieved_label.setText(
            f"{mask.achieved_R:.2f} ({mask.lines.size} of {mask.mask.shape[1]} lines, "
            f"{mask.kind})"
        )
        self.layers.preview(mask, layer, self._create_preview)

    def _on_grid_toggled(self, checked: bool) -> None:
        self.layers.grid(bool(checked), self.result)

    # running ----------------------------------------------------------------------------------

    @property
    def is_running(self) -> bool:
        return self._worker is not None

    def run_sampling(
        self,
        P: int | None = None,
        R: float | None = None,
        seed: int | None = None,
        wait: bool = True,
        timeout: float | None = None,
        **fields: Any,
    ) -> SamplingRun | None:
        """Set the fields, press Sample and (with ``wait``) return when the layers are in place.

        Fields: ``input`` (layer or name), ``slice``, ``mask`` (``gro``/``equispaced``/``random``
        or a layer), ``hole`` (``center`` or a Labels layer), ``device``, ``backend``
        (``auto``/``torch``/``openvino``), ``precision`` (``auto``/``fp32``/``bf16``), ``weights``
        (bundled name, ``random:<task>`` or a path), ``coil_combine``, ``chunk_size``.

        Returns:
            the :class:`SamplingRun` (when ``wait``; possibly partial if cancelled), or None when
            the run failed (the message went to a notification and ``last_error``) or
            ``wait`` is False.
        """
        if self.is_running:
            self._fail("sampling is already running; cancel it or wait for it to finish")
            return None
        try:
            self.controls.set_fields(P, R, seed, dict(fields))
        except (RcganError, ValueError, TypeError) as error:
            self._fail(str(error))
            return None
        if not self.start():
            return None
        if not wait:
            return None
        self.wait(timeout)
        return self.result if self._outcome and self._outcome[0] == "done" else None

    def wait(self, timeout: float | None = None) -> bool:
        """Process Qt events until the running sampling finished; True if it did."""
        if self._worker is None:
            return True
        loop = QEventLoop()
        self.run_finished.connect(loop.quit)
        if timeout is not None:
            QTimer.singleShot(int(timeout * 1000), loop.quit)
        try:
            if self._worker is not None:
                loop.exec()
        finally:
            self.run_finished.disconnect(loop.quit)
        return self._worker is None

    def cancel(self) -> None:
        """Stop the running sampling after the current chunk (the result is labelled partial)."""
        if self._worker is not None:
            self._cancel.set()
            self.status_label.setText("cancelling after the current chunk…")

    def _fail(self, message: str) -> None:
        self.last_error = message
        self.status_label.setText(wrappable(f"⚠ {message}"))
        show_error(message)

    def start(self) -> bool:
        """Validate the fields and start the worker; False (with a notification) if impossible."""
        if self.is_running:
            self._fail("sampling is already running; cancel it or wait for it to finish")
            return False
        self.last_error = None
        self._outcome = None
        try:
            request, layer = self.controls.request()
            request = replace(request, options={**request.options, **self.uncertainty.options()})
            metadata = self.controls.weights_metadata(request.resolved_weights)
            size = tuple(metadata.image_size)
            pixel_scale = input_pixel_scale(request, metadata)
        except (RcganError, ValueError) as error:
            self._fail(str(error))
            return False
        task = request.resolved_task
        run = SamplingRun(
            run_id=next(_run_ids), request=request, input_name=layer.name,
            placement=placement(layer, task, size, pixel_scale),
            slice_axis=slice_axis(layer, task, request.slice),
            plot_inches=self.explorer.plot_inches(),
        )
        self._lifetime.cancel = threading.Event()
        self._input_removed = False
        self._run = run
        worker = sampling_job(self.session, run, self._cancel)
        worker.yielded.connect(self._on_yielded)
        worker.returned.connect(self._on_returned)
        worker.errored.connect(self._on_errored)
        worker.finished.connect(self._on_finished)
        self._worker = worker
        self.sample_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.progress.setRange(0, request.P)
        self.progress.setValue(0)
        self.progress.setFormat("%v of %m samples")
        self.status_label.setText(f"loading weights {request.resolved_weights} and measuring…")
        worker.start()
        return True

    def _show(self, run: SamplingRun, update: Update) -> None:
        """Put an update on screen: new layers at the first one, new data afterwards."""
        shown, run.P = run.P, update.drawn
        if not run.layers:
            self.layers.create(run, update)
        else:
            self.layers.update(run, update, shown)
        self.progress.setValue(update.drawn)  # its text says "n of P samples"; no relayout
        self.chunk_received.emit(update.drawn)

    def _on_yielded(self, update: Update) -> None:
        if self._run is not None:
            self._show(self._run, update)

    def _on_returned(self, value: tuple[str, Any]) -> None:
        self._outcome = value

    def _on_errored(self, error: BaseException) -> None:
        self._outcome = ("error", f"unexpected error ({type(error).__name__}): {error}")

    def _on_finished(self) -> None:
        outcome = self._outcome or ("error", "sampling stopped without a result")
        run = self._run
        self._worker = None
        self.sample_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        try:
            if self._input_removed:
                self.layers.discard(run)
                self._outcome = ("cancelled", None)
                self.status_label.setText("the input layer was removed: sampling stopped")
                show_info("rcGAN sampling stopped: its input layer was removed")
                self.run_finished.emit(None)
                return
            if outcome[0] == "error":
                self.layers.discard(run)
                self._fail(outcome[1])
                self.run_finished.emit(None)
                return
            final = outcome[1]
            if run is None or final is None:
                self._outcome = ("cancelled", None)
                self.status_label.setText("cancelled before the first samples: nothing shown")
                show_info("rcGAN sampling cancelled before the first samples were drawn")
                self.run_finished.emit(None)
                return
            self._show(run, final)
            self._finish_run(run)
            self.run_finished.emit(run)
        finally:
            self._run = None

    def _finish_run(self, run: SamplingRun) -> None:
        run.finished = True
        self.result = run
        self.layers.publish_extras(run)
        self.layers.refresh(run)
        self.layers.fit_contrast(run)
        self.explorer.reset(run)
        self.explorer.show_P(run, run.drawn)
        self.uncertainty.show_run(run)
        self.layers.drop_spares(run)
        self.pd_explorer.start(run)
        self.progress.setValue(run.drawn)
        if run.partial:
            text = (
                f"cancelled after {run.drawn} of {run.requested} samples: the layers hold "
                f"this partial result"
            )
            show_warning(f"rcGAN sampling {text}")
        else:
            text = f"{run.drawn} samples drawn with {Path(run.weights).name}"
        record = run.record
        text += f" ({record.backend} {record.precision}"
        if "conversion_s" in record.timings:
            text += f"; converted for OpenVINO in {record.timings['conversion_s']:.1f} s, once"
        text += ")"
        warning = run.record.extra_attrs.get("R_warning") if run.record is not None else None
        if warning:
            show_warning(f"rcGAN: {warning}")
            text = wrappable(f"{text}\n⚠ {warning}")
        self.status_label.setText(text)

    # P explorer -------------------------------------------------------------------------------

    def explore(self, P: int) -> None:
        """Show the average, SD and error of the first P samples (what the slider does)."""
        if self.result is None or self.result.record is None:
            raise ParameterError("no result to explore yet: press Sample first")
        if not 1 <= P <= self.result.drawn:
            raise ParameterError(f"P must be in 1..{self.result.drawn}, got {P}")
        self.explorer.set_P(int(P))
        self._show_P(self.result, int(P))

    def _on_slider(self, value: int) -> None:
        if self.result is not None and self.result.record is not None:
            self._show_P(self.result, int(value))

    def _show_P(self, run: SamplingRun, P: int) -> None:
        run.P = P
        arrays = run.record.explored(P, grey_maps=True)
        for name, output in run.record.extras.items():
            if output.at_P is not None:
                arrays[name] = output.at_P(P)
        self.layers.show_explored(run, arrays)
        self.explorer.show_P(run, P)
        self.pd_explorer.highlight(P)

    def explorer_metrics(self, timeout_s: float = 120.0) -> dict[int, dict[str, float | None]]:
        """``{P: {"psnr", "ssim", "lpips", "dists"}}`` of the current run's P-averages (the
        perception–distortion explorer's numbers; None where not measurable: no reference, or
        no feature networks). Waits for the explorer's worker when it is still measuring."""
        if self.result is None or self.result.record is None:
            raise ParameterError("no result to measure yet: press Sample first")
        if not self.pd_explorer.wait(int(timeout_s * 1000)):
            raise ParameterError(f"the perception–distortion curves took over {timeout_s:g} s")
        curves = self.pd_explorer.curves
        if curves is None:
            raise ParameterError(self.pd_explorer.labels[0].text())
        return curves.as_dict()

    def closeEvent(self, event: Any) -> None:  # noqa: N802 (Qt API)
        self.cancel()
        super().closeEvent(event)
