"""The "Posterior sampler" dock widget: rcGAN posterior samples as napari layers, and a P explorer.

The widget takes an input layer (a fastMRI acquisition opened by this plugin's reader, or an image
layer for inpainting), draws P posterior samples with
:class:`~napari_rcgan.sampler.PosteriorSampler` in a ``thread_worker`` (the samples layer grows
as chunks arrive) and shows seven result layers: reference, zero-filled, mask, samples, P-average,
|average − reference| and the SD map. A slider re-averages the first P samples from prefix sums,
and a small plot shows PSNR and SSIM against P.

Scripting::

    widget = PosteriorSamplerWidget(viewer)
    result = widget.run_sampling(P=8, R=4, seed=0, weights="random:mri", wait=True)
    result.stack.mean(4), result.layers["std"].data

``run_sampling`` returns a :class:`SamplingRun` (or None when the run failed: the engine's message
is then shown as a napari notification and kept in ``widget.last_error``).
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import math
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.layers import Image, Labels
from napari.qt.threading import thread_worker
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import QEventLoop, Qt, QTimer, Signal
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QSlider,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from napari_rcgan import stats
from napari_rcgan.errors import MaskError, ParameterError, RcganError

if TYPE_CHECKING:
    import napari

logger = logging.getLogger(__name__)

P_RANGE = (1, 128)
R_RANGE = (2.0, 16.0)
SEED_MAX = 2**31 - 1
RESULT_KINDS = ("reference", "zero_filled", "mask", "samples", "mean", "error", "std")
LAYER_NAMES = {
    "reference": "rcgan reference",
    "zero_filled": "rcgan zero-filled",
    "mask": "rcgan mask",
    "samples": "rcgan samples",
    "mean": "rcgan mean",
    "error": "rcgan error",
    "std": "rcgan std",
}
# bottom → top: the samples end up on top, the P-average right below them
LAYER_ORDER = ("mask", "zero_filled", "reference", "std", "error", "mean", "samples")
PREVIEW_NAME = "rcgan mask preview"
DEFAULT_WEIGHTS = "default"
CENTRE_HOLE = "centred square"
LAYER_PREFIX = "layer: "
MEASUREMENT_CACHE_SIZE = 8
_run_ids = itertools.count(1)


@dataclass
class SamplingRun:
    """One run of the widget: its measurement, sample stack, layers and P-explorer state.

    Attributes:
        stack: the samples drawn so far, with prefix sums (``stack.mean(P)``, ``stack.std(P)``).
        layers: the result layers by kind (``"samples"``, ``"mean"``, ...).
        partial: True when the run was cancelled before all ``requested`` samples were drawn.
        P: the P the explorer currently shows (mean, SD and error are of the first P samples).
        metrics: PSNR (dB) and SSIM of the P-average by P (when there is a reference).
    """

    run_id: int
    task: str
    input_name: str
    measurement: Any
    requested: int
    seed: int
    weights: str
    R: float | None
    mask_kind: str
    reference: np.ndarray | None
    placement: tuple[tuple[float, float], tuple[float, float]]
    stack: stats.SampleStack | None = None
    layers: dict[str, Image] = field(default_factory=dict)
    partial: bool = False
    finished: bool = False
    P: int = 0
    metrics: dict[int, tuple[float, float]] = field(default_factory=dict)

    @property
    def drawn(self) -> int:
        return 0 if self.stack is None else len(self.stack)

    @property
    def rgb(self) -> bool:
        return self.stack is not None and len(self.stack.sample_shape) == 3

    def info(self, kind: str) -> dict[str, Any]:
        """The ``metadata["rcgan"]`` of the layer of ``kind``."""
        explored = kind in ("mean", "error", "std")
        return {
            "kind": kind,
            "P": int(self.P if explored else self.drawn),
            "R": None if self.R is None else float(self.R),
            "seed": int(self.seed),
            "weights": self.weights,
            "task": self.task,
            "mask_kind": self.mask_kind,
            "partial": bool(self.partial),
            "samples_drawn": int(self.drawn),
            "requested": int(self.requested),
            "input": self.input_name,
            "run": self.run_id,
        }

    def metric(self, P: int) -> tuple[float, float] | None:
        """PSNR and SSIM of the first-P average against the reference (cached)."""
        if self.reference is None or self.stack is None:
            return None
        if P not in self.metrics:
            mean = self.stack.mean(P)
            self.metrics[P] = (stats.psnr(mean, self.reference), stats.ssim(mean, self.reference))
        return self.metrics[P]


@dataclass(frozen=True)
class _RunSpec:
    """Everything the worker needs, gathered on the main thread."""

    task: str
    weights: str
    device: str
    P: int
    seed: int
    chunk_size: int | None
    source: str
    cache_key: tuple
    # MRI
    path: str | None = None
    slice: int = 0
    R: float = 4.0
    mask_kind: str = "gro"
    mask_array: np.ndarray | None = None
    mask_source: str = ""
    coil_combine: str = "rss"
    # inpainting
    image: np.ndarray | None = None
    hole: np.ndarray | None = None
    hole_source: str = ""


def _digest(array: np.ndarray | None) -> str:
    if array is None:
        return ""
    array = np.ascontiguousarray(array)
    return hashlib.blake2b(array.tobytes(), digest_size=12).hexdigest() + str(array.shape)


def _image_to_unit(data: np.ndarray, source: str) -> np.ndarray:
    """An image layer's data as float32 in [0, 1], ``(H, W)`` or ``(H, W, 3)``."""
    array = np.asarray(data)
    if array.ndim == 3 and array.shape[-1] == 4:
        array = array[..., :3]
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[-1] == 3)):
        raise ParameterError(
            f"{source}: expected a 2-D grey or RGB image to inpaint, found shape {array.shape}"
        )
    if array.dtype.kind in "ui":
        scale = float(np.iinfo(array.dtype).max) if array.dtype != np.uint8 else 255.0
        return array.astype(np.float32) / scale
    array = array.astype(np.float32)
    if not np.all(np.isfinite(array)):
        raise ParameterError(f"{source}: the image contains NaN or Inf")
    high = float(array.max(initial=0.0))
    if high > 1.0:
        array = array / (255.0 if high <= 255.0 else high)
    return np.clip(array, 0.0, 1.0)


def _wrappable(text: str) -> str:
    """Allow Qt to wrap long paths: a zero-width space after each path separator."""
    return text.replace("/", "/\u200b")


def _fit_ylim(axis: Any, values: list[float], min_span: float) -> None:
    """Y limits around ``values`` spanning at least ``min_span``, without an offset label."""
    finite = [v for v in values if math.isfinite(v)]
    if finite:
        low, high = min(finite), max(finite)
        half = max(high - low, min_span) * 0.6
        centre = (low + high) / 2
        axis.set_ylim(centre - half, centre + half)
    axis.ticklabel_format(axis="y", style="plain", useOffset=False)


def _fit_geometry(shape: tuple[int, int], size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Pixel scale and offset of ``fit_image``'s centred square crop + resize (input pixels)."""
    side = min(shape)
    top, left = (shape[0] - side) // 2, (shape[1] - side) // 2
    factor = np.array([side / size[0], side / size[1]])
    offset = np.array([top, left]) + 0.5 * factor - 0.5
    return factor, offset


class PosteriorSamplerWidget(QWidget):
    """Dock widget drawing rcGAN posterior samples for the selected input layer."""

    run_finished = Signal(object)
    """Emitted when a run ends, with the :class:`SamplingRun` (or None when nothing came out)."""
    chunk_received = Signal(int)
    """Emitted with the number of samples drawn so far each time a chunk has been shown."""

    def __init__(self, napari_viewer: napari.viewer.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self.result: SamplingRun | None = None
        self.last_error: str | None = None
        self.chunk_size: int | None = None
        self.mask_seed = 0
        self._samplers: dict[tuple[str, str], Any] = {}
        self._measurements: OrderedDict[tuple, Any] = OrderedDict()
        self._metadata: dict[str, Any] = {}
        self._worker = None
        self._cancel = threading.Event()
        self._run: SamplingRun | None = None
        self._outcome: tuple[str, Any] | None = None
        self._refreshing = False
        self._input_seen: Image | None = None
        self._create_preview = True
        self._plotted: tuple[int, int] | None = None
        self._markers: tuple | None = None
        self._pending: tuple[_RunSpec, Image] | None = None
        self._build()
        self._connect_viewer()
        self._refresh_layer_choices()

    # ------------------------------------------------------------------------------------------
    # construction

    def _build(self) -> None:
        from napari_rcgan.sampler import COIL_COMBINES, available_devices
        from napari_rcgan.weights import bundled_weights, read_metadata

        layout = QVBoxLayout(self)
        form = QFormLayout()
        layout.addLayout(form)

        self.input_combo = QComboBox()
        self.input_combo.setToolTip("fastMRI acquisition (opened with napari-rcgan) or an image")
        form.addRow("input", self.input_combo)
        self.input_info = QLabel("")
        self.input_info.setWordWrap(True)
        form.addRow(self.input_info)

        self.slice_spin = QSpinBox()
        self.slice_spin.setRange(0, 0)
        form.addRow("slice", self.slice_spin)

        self.R_spin = QDoubleSpinBox()
        self.R_spin.setRange(*R_RANGE)
        self.R_spin.setSingleStep(0.5)
        self.R_spin.setDecimals(2)
        self.R_spin.setValue(4.0)
        form.addRow("acceleration R", self.R_spin)

        self.mask_combo = QComboBox()
        self.mask_combo.setToolTip(
            "GRO (golden-ratio offset; note US patent 11,294,009), equispaced or random "
            "phase-encode lines with a fully sampled centre, or a Labels/Image layer"
        )
        form.addRow("mask", self.mask_combo)
        self.achieved_label = QLabel("")
        form.addRow("achieved R", self.achieved_label)

        self.hole_combo = QComboBox()
        form.addRow("hole", self.hole_combo)

        self.P_spin = QSpinBox()
        self.P_spin.setRange(*P_RANGE)
        self.P_spin.setValue(8)
        form.addRow("samples P", self.P_spin)

        self.seed_spin = QSpinBox()
        self.seed_spin.setRange(0, SEED_MAX)
        form.addRow("seed", self.seed_spin)

        self.device_combo = QComboBox()
        self.device_combo.addItems(available_devices())
        form.addRow("device", self.device_combo)

        weights_row = QHBoxLayout()
        self.weights_combo = QComboBox()
        self.weights_combo.addItem(DEFAULT_WEIGHTS)
        for name, path in bundled_weights().items():  # listed with their metadata (tooltips)
            self.weights_combo.addItem(name)
            try:
                description = read_metadata(path).describe()
            except RcganError as error:
                description = str(error)
            self.weights_combo.setItemData(
                self.weights_combo.count() - 1, description, Qt.ItemDataRole.ToolTipRole
            )
        self.weights_combo.addItems(["random:mri", "random:inpainting"])
        weights_row.addWidget(self.weights_combo, 1)
        self.browse_button = QPushButton("File…")
        self.browse_button.setToolTip("choose a .safetensors weights file")
        weights_row.addWidget(self.browse_button)
        form.addRow("weights", weights_row)
        self.weights_info = QLabel("")
        self.weights_info.setWordWrap(True)
        form.addRow(self.weights_info)

        self.combine_combo = QComboBox()
        self.combine_combo.addItems(list(COIL_COMBINES))
        form.addRow("coil combine", self.combine_combo)

        buttons = QHBoxLayout()
        self.sample_button = QPushButton("Sample")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        buttons.addWidget(self.sample_button)
        buttons.addWidget(self.cancel_button)
        layout.addLayout(buttons)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        layout.addWidget(self.progress)
        self.status_label = QLabel("")
        self.status_label.setWordWrap(True)
        layout.addWidget(self.status_label)
        self.grid_check = QCheckBox("show result layers side by side (grid)")
        layout.addWidget(self.grid_check)

        for combo in (self.input_combo, self.mask_combo, self.hole_combo, self.weights_combo,
                      self.device_combo, self.combine_combo):
            combo.setSizeAdjustPolicy(
                QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
            )
            combo.setMinimumContentsLength(12)

        explorer = QGroupBox("P explorer")
        explorer_layout = QVBoxLayout(explorer)
        slider_row = QHBoxLayout()
        self.P_slider = QSlider(Qt.Orientation.Horizontal)
        self.P_slider.setRange(1, 1)
        self.P_slider.setEnabled(False)
        self.P_value_label = QLabel("P = –")
        slider_row.addWidget(self.P_slider, 1)
        slider_row.addWidget(self.P_value_label)
        explorer_layout.addLayout(slider_row)
        self.metrics_label = QLabel("no result yet")
        self.metrics_label.setWordWrap(True)
        explorer_layout.addWidget(self.metrics_label)
        self._build_plot(explorer_layout)
        layout.addWidget(explorer)
        layout.addStretch(1)
        # long paths in messages must not widen the dock: let the labels wrap anywhere needed
        for label in (self.input_info, self.weights_info, self.achieved_label, self.status_label,
                      self.metrics_label):
            label.setWordWrap(True)
            label.setMinimumWidth(120)
            label.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Minimum)

        self.input_combo.currentIndexChanged.connect(self._on_input_changed)
        self.R_spin.valueChanged.connect(self._update_mask_preview)
        self.mask_combo.currentIndexChanged.connect(self._update_mask_preview)
        self.weights_combo.currentIndexChanged.connect(self._on_weights_changed)
        self.browse_button.clicked.connect(self._browse_weights)
        self.sample_button.clicked.connect(self._on_sample_clicked)
        self.cancel_button.clicked.connect(self.cancel)
        self.P_slider.valueChanged.connect(self._on_slider)
        self.grid_check.toggled.connect(self._on_grid_toggled)

    def _build_plot(self, layout: QVBoxLayout) -> None:
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        self.figure = Figure(figsize=(3.4, 2.3), dpi=90)
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(190)
        self.psnr_axis = self.figure.add_subplot(111)
        self.ssim_axis = self.psnr_axis.twinx()
        self._draw_plot()
        layout.addWidget(self.canvas)

    def _connect_viewer(self) -> None:
        events = self.viewer.layers.events
        events.inserted.connect(self._on_layers_changed)
        events.removed.connect(self._on_layers_changed)

    # ------------------------------------------------------------------------------------------
    # layer choices

    @staticmethod
    def _is_ours(layer: Any) -> bool:
        metadata = getattr(layer, "metadata", {}) or {}
        return "rcgan" in metadata or metadata.get("rcgan_preview", False)

    def _input_candidates(self) -> list[Image]:
        return [
            layer
            for layer in self.viewer.layers
            if isinstance(layer, Image) and not self._is_ours(layer)
        ]

    def _on_layers_changed(self, event: Any = None) -> None:
        # a removal (the user deleting layers, the viewer closing) must never re-create the
        # preview layer: only field changes and newly inserted inputs do
        if event is not None and self._is_ours(getattr(event, "value", None)):
            return  # our result / preview layers are never inputs, masks or holes
        removal = getattr(event, "type", "") == "removed"
        self._create_preview = not removal
        try:
            self._refresh_layer_choices()
            if not removal and isinstance(getattr(event, "value", None), Labels):
                self._maybe_pick_hole(event.value)
        except RuntimeError:  # the Qt side is gone (viewer closing)
            pass
        finally:
            self._create_preview = True

    def _maybe_pick_hole(self, labels: Labels) -> None:
        """A Labels layer of the input image's shape, added while the hole is the centred
        square, is most likely the hole the user is about to paint: select it."""
        layer = self.input_layer()
        if layer is None or self._task_of(layer) == "mri":
            return
        shape = layer.data.shape[:2] if layer.rgb else layer.data.shape[-2:]
        if self.hole_combo.currentText() == CENTRE_HOLE and labels.data.shape == tuple(shape):
            self.hole_combo.setCurrentText(LAYER_PREFIX + labels.name)

    def _refresh_layer_choices(self) -> None:
        self._refreshing = True
        try:
            current = self.input_combo.currentText()
            names = [layer.name for layer in self._input_candidates()]
            self.input_combo.clear()
            self.input_combo.addItems(names)
            if current in names:
                self.input_combo.setCurrentText(current)
            elif names:
                mri = [n for n in names if self._task_of(self.viewer.layers[n]) == "mri"]
                self.input_combo.setCurrentText(mri[-1] if mri else names[-1])

            input_name = self.input_combo.currentText()
            others = [
                layer.name
                for layer in self.viewer.layers
                if isinstance(layer, (Labels, Image))
                and not self._is_ours(layer)
                and layer.name != input_name
            ]
            labels = [
                layer.name
                for layer in self.viewer.layers
                if isinstance(layer, Labels) and not self._is_ours(layer)
            ]
            self._reset_combo(
                self.mask_combo, ["gro", "equispaced", "random"], [LAYER_PREFIX + n for n in others]
            )
            self._reset_combo(self.hole_combo, [CENTRE_HOLE], [LAYER_PREFIX + n for n in labels])
        finally:
            self._refreshing = False
        self._on_input_changed()

    @staticmethod
    def _reset_combo(combo: QComboBox, fixed: list[str], layers: list[str]) -> None:
        current = combo.currentText()
        combo.blockSignals(True)
        combo.clear()
        combo.addItems(fixed + layers)
        if current in fixed + layers:
            combo.setCurrentText(current)
        elif layers and combo.count() > len(fixed) and fixed == [CENTRE_HOLE]:
            combo.setCurrentText(layers[-1])  # a freshly added hole layer is the likely choice
        combo.blockSignals(False)

    def input_layer(self) -> Image | None:
        name = self.input_combo.currentText()
        if not name or name not in self.viewer.layers:
            return None
        layer = self.viewer.layers[name]
        return layer if isinstance(layer, Image) else None

    @staticmethod
    def _task_of(layer: Any) -> str:
        source = (getattr(layer, "metadata", {}) or {}).get("rcgan_source") or {}
        return "mri" if source.get("kind") == "fastmri" else "inpainting"

    def _on_input_changed(self, *_: Any) -> None:
        if self._refreshing:
            return
        layer = self.input_layer()
        mri = layer is not None and self._task_of(layer) == "mri"
        for widget in (self.slice_spin, self.R_spin, self.mask_combo, self.combine_combo):
            widget.setEnabled(mri)
        self.hole_combo.setEnabled(layer is not None and not mri)
        if layer is None:
            self.input_info.setText("open a fastMRI .h5 file or an image")
        elif mri:
            source = layer.metadata["rcgan_source"]
            slices = int(source.get("num_slices", 1))
            if layer is not self._input_seen:  # a new input: start at the slice on screen
                self.slice_spin.setRange(0, max(0, slices - 1))
                self.slice_spin.setValue(self._current_slice(layer, slices))
            self.input_info.setText(_wrappable(source.get("description", source.get("path", ""))))
        else:
            shape = layer.data.shape
            self.input_info.setText(
                f"image {shape[0]}x{shape[1]}" + (" RGB" if layer.rgb else "") + " (inpainting)"
            )
        self._input_seen = layer
        self._on_weights_changed()

    def _current_slice(self, layer: Image, slices: int) -> int:
        try:
            position = layer.world_to_data(self.viewer.dims.point)
            return int(np.clip(round(float(position[0])), 0, slices - 1))
        except (IndexError, ValueError, TypeError):
            return slices // 2

    # ------------------------------------------------------------------------------------------
    # weights and mask preview

    def current_task(self) -> str | None:
        layer = self.input_layer()
        return None if layer is None else self._task_of(layer)

    def resolved_weights(self) -> str:
        """The weights spec a run would use (``default`` → bundled or ``random:<task>``)."""
        from napari_rcgan.weights import bundled_weights

        spec = self.weights_combo.currentText()
        if spec != DEFAULT_WEIGHTS:
            return spec
        task = self.current_task() or "mri"
        bundled = {"mri": "mri", "inpainting": "faces"}[task]
        return bundled if bundled in bundled_weights() else f"random:{task}"

    def _weights_metadata(self, spec: str):
        from napari_rcgan.weights import random_metadata, read_metadata, resolve_path

        if spec not in self._metadata:
            if spec.startswith("random:"):
                self._metadata[spec] = random_metadata(spec.split(":", 1)[1])
            else:
                self._metadata[spec] = read_metadata(resolve_path(spec))
        return self._metadata[spec]

    def _on_weights_changed(self, *_: Any) -> None:
        spec = self.resolved_weights()
        try:
            metadata = self._weights_metadata(spec)
        except RcganError as error:
            self.weights_info.setText(_wrappable(f"⚠ {error}"))
        else:
            shown = spec if spec.startswith("random:") or "/" not in spec else Path(spec).name
            summary = "; ".join(metadata.describe().splitlines())
            self.weights_info.setText(_wrappable(f"{shown}: {summary}"))
        self.weights_info.setToolTip(spec)
        self._update_mask_preview()

    def _browse_weights(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "rcGAN weights", "", "safetensors weights (*.safetensors)"
        )
        if path:
            self.select_weights(path)

    def select_weights(self, spec: str | Path) -> None:
        spec = str(spec)
        if self.weights_combo.findText(spec) < 0:
            self.weights_combo.addItem(spec)
        self.weights_combo.setCurrentText(spec)

    def _mask_choice(self) -> tuple[str, Any]:
        """``("kind", name)`` for a built-in mask or ``("layer", layer)``."""
        text = self.mask_combo.currentText() or "gro"
        if text.startswith(LAYER_PREFIX):
            name = text[len(LAYER_PREFIX) :]
            if name not in self.viewer.layers:
                raise MaskError(f"mask layer '{name}' no longer exists")
            return "layer", self.viewer.layers[name]
        return "kind", text

    def preview_mask(self):
        """The sampling mask the current fields describe (weights' image size)."""
        from napari_rcgan.physics.masks import column_mask, mask_from_array

        size = tuple(self._weights_metadata(self.resolved_weights()).image_size)
        kind, value = self._mask_choice()
        if kind == "layer":
            return mask_from_array(np.asarray(value.data), size, source=f"layer '{value.name}'")
        return column_mask(size, value, float(self.R_spin.value()), seed=self.mask_seed)

    def _update_mask_preview(self, *_: Any) -> None:
        layer = self.input_layer()
        if self._refreshing or layer is None or self._task_of(layer) != "mri":
            self.achieved_label.setText("–")
            return
        try:
            mask = self.preview_mask()
        except RcganError as error:
            self.achieved_label.setText(_wrappable(f"⚠ {error}"))
            return
        lines = mask.lines.size
        self.achieved_label.setText(
            f"{mask.achieved_R:.2f} ({lines} of {mask.mask.shape[1]} lines, {mask.kind})"
        )
        scale, translate = self._placement(layer, "mri", mask.mask.shape)
        data = mask.mask.astype(np.float32)
        preview = self.viewer.layers[PREVIEW_NAME] if PREVIEW_NAME in self.viewer.layers else None
        if preview is None:
            if not self._create_preview:
                return
            self.viewer.add_image(
                data,
                name=PREVIEW_NAME,
                colormap="cyan",
                blending="additive",
                opacity=0.35,
                contrast_limits=(0, 1),
                scale=scale,
                translate=translate,
                metadata={"rcgan_preview": True},
            )
        else:
            preview.data = data
            preview.scale, preview.translate = scale, translate

    # ------------------------------------------------------------------------------------------
    # geometry

    def _placement(self, layer: Image, task: str, size: tuple[int, int]) -> tuple[tuple, tuple]:
        """2-D scale and translate putting a ``size`` result over the input layer."""
        in_scale = np.asarray(layer.scale[-2:], dtype=float)
        in_translate = np.asarray(layer.translate[-2:], dtype=float)
        shape = layer.data.shape[-3:-1] if layer.rgb else layer.data.shape[-2:]
        if task == "mri":
            factor = np.ones(2)
            offset = (np.asarray(shape, dtype=float) - np.asarray(size, dtype=float)) / 2
        else:
            factor, offset = _fit_geometry(tuple(shape), size)
        scale = in_scale * factor
        translate = in_translate + in_scale * offset
        return tuple(float(v) for v in scale), tuple(float(v) for v in translate)

    # ------------------------------------------------------------------------------------------
    # running

    @property
    def is_running(self) -> bool:
        return self._worker is not None

    def _set_fields(self, fields: dict[str, Any]) -> None:
        """Apply ``run_sampling`` keyword fields; raises RcganError for impossible values."""
        if "input" in fields:
            value = fields.pop("input")
            name = value.name if hasattr(value, "name") else str(value)
            if self.input_combo.findText(name) < 0:
                raise ParameterError(f"input {name!r}: no such image layer in the viewer")
            self.input_combo.setCurrentText(name)
        if "weights" in fields:
            self.select_weights(fields.pop("weights"))
        if "device" in fields:
            device = str(fields.pop("device"))
            if self.device_combo.findText(device) < 0:
                raise ParameterError(
                    f"device {device!r} is not available here; choose one of "
                    f"{[self.device_combo.itemText(i) for i in range(self.device_combo.count())]}"
                )
            self.device_combo.setCurrentText(device)
        if "mask" in fields:
            value = fields.pop("mask")
            text = (LAYER_PREFIX + value.name) if hasattr(value, "name") else str(value)
            if (
                self.mask_combo.findText(text) < 0
                and self.mask_combo.findText(LAYER_PREFIX + text) >= 0
            ):
                text = LAYER_PREFIX + text
            if self.mask_combo.findText(text) < 0:
                raise MaskError(f"mask {value!r}: expected gro, equispaced, random or a layer name")
            self.mask_combo.setCurrentText(text)
        if "hole" in fields:
            value = fields.pop("hole")
            if value is None or str(value).lower() in ("center", "centre", CENTRE_HOLE):
                text = CENTRE_HOLE
            else:
                text = LAYER_PREFIX + (value.name if hasattr(value, "name") else str(value))
            if self.hole_combo.findText(text) < 0:
                raise MaskError(f"hole {value!r}: expected 'center' or the name of a Labels layer")
            self.hole_combo.setCurrentText(text)
        if "coil_combine" in fields:
            value = str(fields.pop("coil_combine"))
            if self.combine_combo.findText(value) < 0:
                raise ParameterError(f"coil combine {value!r}: use rss or sense")
            self.combine_combo.setCurrentText(value)
        if "slice" in fields:
            value = int(fields.pop("slice"))
            if not self.slice_spin.minimum() <= value <= self.slice_spin.maximum():
                raise ParameterError(
                    f"slice {value} out of range 0..{self.slice_spin.maximum()} for this input"
                )
            self.slice_spin.setValue(value)
        if "chunk_size" in fields:
            chunk = fields.pop("chunk_size")
            self.chunk_size = None if chunk is None else int(chunk)
        if fields:
            raise ParameterError(f"unknown field(s) {sorted(fields)} for run_sampling")

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
        or a layer), ``hole`` (``center`` or a Labels layer), ``device``, ``weights`` (bundled
        name, ``random:<task>`` or a path), ``coil_combine``, ``chunk_size``.

        Returns:
            the :class:`SamplingRun` (when ``wait``; possibly partial if cancelled), or None when
            the run failed (the message went to a notification and ``last_error``) or
            ``wait`` is False.
        """
        if self.is_running:
            self._fail("sampling is already running; cancel it or wait for it to finish")
            return None
        try:
            if P is not None:
                if isinstance(P, bool) or int(P) != P or not P_RANGE[0] <= int(P) <= P_RANGE[1]:
                    raise ParameterError(
                        f"P (number of samples) must be an integer in {P_RANGE[0]}..{P_RANGE[1]}, "
                        f"got {P}"
                    )
                self.P_spin.setValue(int(P))
            if R is not None:
                if not (math.isfinite(float(R)) and R_RANGE[0] <= float(R) <= R_RANGE[1]):
                    raise ParameterError(
                        f"R (acceleration) must be in {R_RANGE[0]:g}..{R_RANGE[1]:g}, got {R}"
                    )
                self.R_spin.setValue(float(R))
            if seed is not None:
                if int(seed) != seed or not 0 <= int(seed) <= SEED_MAX:
                    raise ParameterError(f"seed must be an integer in 0..{SEED_MAX}, got {seed}")
                self.seed_spin.setValue(int(seed))
            self._set_fields(dict(fields))
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

    def _on_sample_clicked(self) -> None:
        self.start()

    def _fail(self, message: str) -> None:
        self.last_error = message
        self.status_label.setText(_wrappable(f"⚠ {message}"))
        show_error(message)

    def _spec(self) -> tuple[_RunSpec, Image]:
        """Collect the fields into a run spec (main thread); raises RcganError."""
        layer = self.input_layer()
        if layer is None:
            raise ParameterError(
                "no input: open a fastMRI .h5 file or a face image (File > Open, or "
                "File > Open Sample > napari-rcgan) and choose it as the input"
            )
        task = self._task_of(layer)
        weights = self.resolved_weights()
        P = int(self.P_spin.value())
        if not P_RANGE[0] <= P <= P_RANGE[1]:
            raise ParameterError(f"P must be in {P_RANGE[0]}..{P_RANGE[1]}, got {P}")
        seed = int(self.seed_spin.value())
        device = self.device_combo.currentText()
        common = {
            "weights": weights,
            "device": device,
            "P": P,
            "seed": seed,
            "chunk_size": self.chunk_size,
        }
        if task == "mri":
            source = layer.metadata["rcgan_source"]
            path = str(source["path"])
            index = int(self.slice_spin.value())
            kind, value = self._mask_choice()
            mask_array = np.asarray(value.data) if kind == "layer" else None
            mask_kind = "user" if kind == "layer" else value
            mask_source = f"layer '{value.name}'" if kind == "layer" else ""
            R = float(self.R_spin.value())
            combine = self.combine_combo.currentText()
            key = (
                "mri",
                path,
                index,
                R,
                mask_kind,
                _digest(mask_array),
                self.mask_seed,
                combine,
                weights,
            )
            spec = _RunSpec(
                task=task,
                source=f"{path} slice {index}",
                cache_key=key,
                path=path,
                slice=index,
                R=R,
                mask_kind=mask_kind,
                mask_array=mask_array,
                mask_source=mask_source,
                coil_combine=combine,
                **common,
            )
        else:
            image = _image_to_unit(layer.data, f"layer '{layer.name}'")
            hole_text = self.hole_combo.currentText()
            hole, hole_source = None, "centred square"
            if hole_text.startswith(LAYER_PREFIX):
                name = hole_text[len(LAYER_PREFIX) :]
                if name not in self.viewer.layers:
                    raise MaskError(f"hole layer '{name}' no longer exists")
                hole = np.asarray(self.viewer.layers[name].data)
                hole_source = f"layer '{name}'"
                if hole.shape != image.shape[:2]:
                    raise MaskError(
                        f"{hole_source}: expected a hole of the input image's shape "
                        f"{image.shape[:2]}, found shape {hole.shape}"
                    )
            key = ("inpainting", layer.name, _digest(image), _digest(hole), weights)
            spec = _RunSpec(
                task=task,
                source=f"layer '{layer.name}'",
                cache_key=key,
                image=image,
                hole=hole,
                hole_source=hole_source,
                **common,
            )
        return spec, layer

    def start(self) -> bool:
        """Validate the fields and start the worker; False (with a notification) if impossible."""
        if self.is_running:
            self._fail("sampling is already running; cancel it or wait for it to finish")
            return False
        self.last_error = None
        self._outcome = None
        try:
            spec, layer = self._spec()
        except (RcganError, ValueError) as error:
            self._fail(str(error))
            return False
        self._cancel = threading.Event()
        self._pending = (spec, layer)
        self._run = None
        worker = _sampling_job(self, spec, self._cancel)
        worker.yielded.connect(self._on_yielded)
        worker.returned.connect(self._on_returned)
        worker.errored.connect(self._on_errored)
        worker.finished.connect(self._on_finished)
        self._worker = worker
        self.sample_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.progress.setRange(0, spec.P)
        self.progress.setValue(0)
        self.status_label.setText(f"loading weights {spec.weights} and measuring…")
        worker.start()
        return True

    # worker side (runs in the worker thread) -------------------------------------------------

    def _sampler(self, weights: str, device: str):
        from napari_rcgan.sampler import PosteriorSampler

        key = (weights, device)
        if key not in self._samplers:
            self._samplers[key] = PosteriorSampler(weights, device=device)
        return self._samplers[key]

    def _measurement(self, sampler: Any, spec: _RunSpec):
        if spec.cache_key in self._measurements:
            self._measurements.move_to_end(spec.cache_key)
            return self._measurements[spec.cache_key]
        if spec.task == "mri":
            measurement = self._measure_mri(sampler, spec)
        else:
            measurement = self._measure_image(sampler, spec)
        self._measurements[spec.cache_key] = measurement
        while len(self._measurements) > MEASUREMENT_CACHE_SIZE:
            self._measurements.popitem(last=False)
        return measurement

    @staticmethod
    def _measure_mri(sampler: Any, spec: _RunSpec):
        from napari_rcgan.io import FastMRIFile
        from napari_rcgan.physics.masks import mask_from_array

        data = FastMRIFile.open(spec.path)
        sampler.require_task("mri", "multicoil MRI k-space")
        size = tuple(sampler.metadata.image_size)
        mask = None
        if spec.mask_array is not None:
            mask = mask_from_array(spec.mask_array, size, source=spec.mask_source)
        kspace = data.read_kspace(spec.slice)
        return sampler.measure_mri(
            kspace,
            mask=mask,
            R=spec.R,
            mask_kind=spec.mask_kind if mask is None else "user",
            mask_seed=0,
            coil_combine=spec.coil_combine,
            source=spec.source,
        )

    @staticmethod
    def _measure_image(sampler: Any, spec: _RunSpec):
        from napari_rcgan.physics.inpainting import center_square_hole
        from napari_rcgan.pipeline import fit_image

        sampler.require_task("inpainting", "an image to inpaint")
        size = tuple(sampler.metadata.image_size)
        image = fit_image(spec.image, size, spec.source)
        if spec.hole is None:
            hole = center_square_hole(size)
        else:
            hole = fit_image((spec.hole != 0).astype(np.float32), size, spec.hole_source) > 0.5
        return sampler.measure_inpainting(image, hole, source=spec.source)

    # main-thread side ---------------------------------------------------------------------------

    def _on_yielded(self, item: tuple[str, Any]) -> None:
        kind, payload = item
        if kind == "measured":
            measurement, weights_name, metadata = payload
            self._run = self._new_run(measurement, weights_name, metadata)
            self.status_label.setText("sampling…")
        elif kind == "chunk" and self._run is not None:
            self._add_chunk(self._run, payload)

    def _new_run(self, measurement: Any, weights_name: str, metadata: Any) -> SamplingRun:
        spec, layer = self._pending
        mri = spec.task == "mri"
        size = tuple(metadata.image_size)
        return SamplingRun(
            run_id=next(_run_ids),
            task=spec.task,
            input_name=layer.name,
            measurement=measurement,
            requested=spec.P,
            seed=spec.seed,
            weights=weights_name,
            R=float(measurement.mask.achieved_R) if mri else None,
            mask_kind=measurement.mask.kind if mri else "hole",
            reference=measurement.reference,
            placement=self._placement(layer, spec.task, size),
        )

    def _add_chunk(self, run: SamplingRun, display: np.ndarray) -> None:
        if run.stack is None:
            run.stack = stats.SampleStack(display.shape[1:], capacity=run.requested)
            run.stack.extend(display)
            run.P = run.drawn
            self._create_layers(run)
        else:
            run.stack.extend(display)
            run.P = run.drawn
            run.layers["samples"].data = run.stack.samples
            self._show_P(run, run.P, update_plot=False)
        self.progress.setValue(run.drawn)
        self.status_label.setText(f"{run.drawn} of {run.requested} samples")
        self.chunk_received.emit(run.drawn)

    def _explored(self, run: SamplingRun, P: int) -> dict[str, np.ndarray]:
        mean, std = run.stack.mean(P), run.stack.std(P)
        arrays = {"mean": mean, "std": std.mean(axis=-1) if run.rgb else std}
        if run.reference is not None:
            error = stats.absolute_error(mean, run.reference)
            arrays["error"] = error.mean(axis=-1) if run.rgb else error
        return arrays

    def _create_layers(self, run: SamplingRun) -> None:
        """Show this run's layers (first chunk arrived), reusing the input's previous result
        layers in place where they fit (napari pays a garbage collection per removed layer)."""
        previous = self._result_layers_of(run.input_name)
        measurement = run.measurement
        scale, translate = run.placement
        rgb = run.rgb
        explored = self._explored(run, run.P)
        images: dict[str, np.ndarray] = {
            "zero_filled": measurement.zero_filled_display,
            "mask": measurement.mask_display,
            "samples": run.stack.samples,
            **explored,
        }
        if run.reference is not None:
            images["reference"] = run.reference
        if rgb:
            limits = (0.0, 1.0)
        else:
            basis = run.reference if run.reference is not None else explored["mean"]
            limits = (0.0, float(np.percentile(basis, 99.9)) or 1.0)
        stash = {
            "zero_filled": images["zero_filled"],
            "mask": images["mask"],
            "reference": run.reference,
        }
        for kind in LAYER_ORDER:
            if kind not in images:
                continue
            data = images[kind]
            stacked = kind == "samples"
            colour = rgb and kind not in ("error", "std", "mask")
            kwargs: dict[str, Any] = {
                "scale": (1.0, *scale) if stacked else scale,
                "translate": (0.0, *translate) if stacked else translate,
            }
            if kind in ("error", "std"):
                high = float(np.percentile(data, 99.5)) or 1.0
                kwargs.update(
                    colormap="magma" if kind == "error" else "viridis", contrast_limits=(0.0, high)
                )
            elif kind == "mask":
                kwargs.update(colormap="gray", contrast_limits=(0.0, 1.0))
            else:
                kwargs["contrast_limits"] = limits
                if not colour:
                    kwargs["colormap"] = "gray"
            metadata = {"rcgan": run.info(kind)}
            if kind == "samples":
                metadata["rcgan_arrays"] = stash
            layer = previous.pop(kind, None)
            if layer is not None and layer.rgb == colour and layer.data.ndim == data.ndim:
                layer.data = data
                for key, value in kwargs.items():
                    setattr(layer, key, value)
                layer.metadata = metadata
                layer.name = LAYER_NAMES[kind]
            else:
                if layer is not None:
                    self.viewer.layers.remove(layer)
                layer = self.viewer.add_image(
                    data, name=LAYER_NAMES[kind], rgb=colour, metadata=metadata, **kwargs
                )
            run.layers[kind] = layer
        for layer in previous.values():  # kinds this run does not have (no reference)
            self.viewer.layers.remove(layer)

    def _result_layers_of(self, input_name: str) -> dict[str, Image]:
        found = {}
        for layer in self.viewer.layers:
            info = (layer.metadata or {}).get("rcgan")
            if isinstance(info, dict) and info.get("input") == input_name:
                found[info.get("kind")] = layer
        return found

    def _discard_run_layers(self, run: SamplingRun | None) -> None:
        if run is None:
            return
        for layer in run.layers.values():
            if layer in self.viewer.layers:
                self.viewer.layers.remove(layer)
        run.layers.clear()

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
            if outcome[0] == "error":
                self._discard_run_layers(run)
                self._fail(outcome[1])
                self.run_finished.emit(None)
                return
            if run is None or run.drawn == 0:
                self._outcome = ("cancelled", None)
                self.status_label.setText("cancelled before the first samples: nothing shown")
                show_info("rcGAN sampling cancelled before the first samples were drawn")
                self.run_finished.emit(None)
                return
            self._finish_run(run)
            self.run_finished.emit(run)
        finally:
            self._run = None

    def _finish_run(self, run: SamplingRun) -> None:
        run.partial = run.drawn < run.requested
        run.finished = True
        self.result = run
        if run.partial:
            for kind, layer in run.layers.items():
                layer.name = f"{LAYER_NAMES[kind]} (partial)"
        for kind, layer in run.layers.items():
            layer.metadata["rcgan"] = run.info(kind)
        self._show_P(run, run.drawn, update_plot=False)
        # error/SD contrast from the full average, so the maps visibly change with P
        for kind in ("error", "std"):
            if kind in run.layers:
                run.layers[kind].contrast_limits = (
                    0.0,
                    float(np.percentile(run.layers[kind].data, 99.5)) or 1.0,
                )
        self.P_slider.blockSignals(True)
        self.P_slider.setRange(1, run.drawn)
        self.P_slider.setValue(run.drawn)
        self.P_slider.setEnabled(run.drawn > 1)
        self.P_slider.blockSignals(False)
        self._show_P(run, run.drawn)
        self.progress.setValue(run.drawn)
        if run.partial:
            text = (
                f"cancelled after {run.drawn} of {run.requested} samples: the layers hold "
                f"this partial result"
            )
            show_warning(f"rcGAN sampling {text}")
        else:
            text = f"{run.drawn} samples drawn with {Path(run.weights).name}"
        self.status_label.setText(text)

    # ------------------------------------------------------------------------------------------
    # P explorer

    def explore(self, P: int) -> None:
        """Show the average, SD and error of the first P samples (what the slider does)."""
        if self.result is None or self.result.stack is None:
            raise ParameterError("no result to explore yet: press Sample first")
        if not 1 <= P <= self.result.drawn:
            raise ParameterError(f"P must be in 1..{self.result.drawn}, got {P}")
        self.P_slider.blockSignals(True)
        self.P_slider.setValue(int(P))
        self.P_slider.blockSignals(False)
        self._show_P(self.result, int(P))

    def _on_slider(self, value: int) -> None:
        if self.result is not None and self.result.stack is not None:
            self._show_P(self.result, int(value))

    def _show_P(self, run: SamplingRun, P: int, update_plot: bool = True) -> None:
        run.P = P
        arrays = self._explored(run, P)
        for kind, data in arrays.items():
            layer = run.layers.get(kind)
            if layer is not None and layer in self.viewer.layers:
                layer.data = data
                layer.metadata["rcgan"] = run.info(kind)
        if not update_plot:
            return
        self.P_value_label.setText(f"P = {P}")
        metric = run.metric(P)
        partial = " (partial)" if run.partial else ""
        if metric is None:
            self.metrics_label.setText(f"P = {P} of {run.drawn}{partial}: no reference, no PSNR")
        else:
            self.metrics_label.setText(
                f"P = {P} of {run.drawn}{partial}: PSNR {metric[0]:.2f} dB, SSIM {metric[1]:.4f}"
            )
        self._draw_plot(run, P)

    def curve_points(self, run: SamplingRun) -> list[int]:
        """P values of the PSNR/SSIM curve: powers of two up to N, and N."""
        points = [2**k for k in range(int(math.log2(run.drawn)) + 1)]
        return sorted(set(points + [run.drawn]))

    def _draw_plot(self, run: SamplingRun | None = None, P: int | None = None) -> None:
        """Draw the PSNR/SSIM-vs-P curve of ``run`` with P marked; moving P only moves the
        markers (the curve is drawn once per run)."""
        has_curve = run is not None and run.reference is not None and run.stack is not None
        if has_curve and P is not None and self._plotted == (run.run_id, run.drawn):
            self._mark_P(run, P)
            self.canvas.draw_idle()
            return
        left, right = self.psnr_axis, self.ssim_axis
        left.clear()
        right.clear()
        self._markers = None
        left.set_xlabel("P (samples averaged)", fontsize=8)
        left.set_ylabel("PSNR (dB)", fontsize=8, color="tab:blue")
        right.set_ylabel("SSIM", fontsize=8, color="tab:orange")
        right.yaxis.set_label_position("right")  # clear() moves a twin axis' label to the left
        right.yaxis.tick_right()
        for axis in (left, right):
            axis.tick_params(labelsize=7)
        left.set_xscale("log", base=2)
        if has_curve:
            points = self.curve_points(run)
            values = [run.metric(p) for p in points]
            psnrs, ssims = [v[0] for v in values], [v[1] for v in values]
            left.plot(points, psnrs, "o-", color="tab:blue", ms=3, lw=1.2)
            right.plot(points, ssims, "s--", color="tab:orange", ms=3, lw=1.2)
            _fit_ylim(left, psnrs, 0.5)
            _fit_ylim(right, ssims, 0.02)
            left.set_xlim(0.8, max(points) * 1.25)
            left.set_xticks(points)
            left.set_xticklabels([str(p) for p in points])
            self._plotted = (run.run_id, run.drawn)
            if P is not None:
                self._mark_P(run, P)
        else:
            self._plotted = None
            left.set_title("PSNR / SSIM of the P-average", fontsize=8)
            left.set_xlim(0.8, 40)
        self.figure.tight_layout()
        self.canvas.draw_idle()

    def _mark_P(self, run: SamplingRun, P: int) -> None:
        psnr, ssim = run.metric(P)
        if self._markers is None:
            line = self.psnr_axis.axvline(P, color="0.4", lw=0.8, ls=":")
            (left,) = self.psnr_axis.plot([P], [psnr], "o", color="tab:red", ms=6, zorder=5)
            (right,) = self.ssim_axis.plot([P], [ssim], "s", color="tab:red", ms=6, zorder=5)
            self._markers = (line, left, right)
        line, left, right = self._markers
        line.set_xdata([P, P])
        left.set_data([P], [psnr])
        right.set_data([P], [ssim])
        self.psnr_axis.set_title(f"P={P}: {psnr:.2f} dB, SSIM {ssim:.3f}", fontsize=8)

    # ------------------------------------------------------------------------------------------

    def _on_grid_toggled(self, checked: bool) -> None:
        canvas = getattr(self.viewer, "canvas", None)  # napari ≥ 0.9: viewer.canvas.grid
        grid = canvas.grid if canvas is not None and hasattr(canvas, "grid") else self.viewer.grid
        grid.enabled = bool(checked)

    def closeEvent(self, event: Any) -> None:  # noqa: N802 (Qt API)
        self.cancel()
        super().closeEvent(event)


@thread_worker(start_thread=False, ignore_errors=True)
def _sampling_job(widget: PosteriorSamplerWidget, spec: _RunSpec, cancel: threading.Event):
    """Worker generator: yields ``("measured", ...)`` then ``("chunk", display)`` items and returns
    ``("done", None)`` or ``("error", message)``; never raises."""
    try:
        sampler = widget._sampler(spec.weights, spec.device)
        measurement = widget._measurement(sampler, spec)
        yield ("measured", (measurement, sampler.name, sampler.metadata))
        for chunk in sampler.iter_chunks(
            measurement, spec.P, spec.seed, chunk_size=spec.chunk_size, cancel=cancel
        ):
            yield ("chunk", chunk.display)
    except RcganError as error:
        return ("error", str(error))
    except MemoryError:
        return ("error", "out of memory: lower P or the chunk size, or use another device")
    except Exception as error:  # a bug, not bad input: keep the viewer alive, log the traceback
        logger.exception("rcGAN sampling failed")
        return ("error", f"unexpected error ({type(error).__name__}): {error}")
    return ("done", None)
