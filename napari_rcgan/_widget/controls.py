"""The widget's fields: input, slice, R, mask, hole, P, seed, device, backend, precision,
weights; and the request.

:class:`Controls` knows the viewer's layers (to offer inputs, mask and hole layers) and turns
its fields into a :class:`~napari_rcgan.session.SamplingRequest` (:meth:`Controls.request`).
Adding an option: add the field in :meth:`Controls._build`, accept it in
:meth:`Controls.set_fields` (for ``run_sampling(...)``) and carry it into the request.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.layers import Image, Labels
from qtpy.QtCore import QSize, Qt, Signal
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QSpinBox,
    QStyle,
    QStyleOptionProgressBar,
    QStylePainter,
    QVBoxLayout,
    QWidget,
)

from napari_rcgan._widget.layers import is_ours
from napari_rcgan.errors import MaskError, ParameterError, RcganError
from napari_rcgan.sampler import MAX_SAMPLES
from napari_rcgan.session import SamplingRequest, default_weights

if TYPE_CHECKING:
    import napari

    from napari_rcgan.physics.masks import SamplingMask

P_RANGE = (1, MAX_SAMPLES)
R_RANGE = (2.0, 16.0)
SEED_MAX = 2**31 - 1
DEFAULT_WEIGHTS = "default"
CENTRE_HOLE = "centred square"
LAYER_PREFIX = "layer: "
MASK_KINDS = ["gro", "equispaced", "random"]


def image_to_unit(data: np.ndarray, source: str) -> np.ndarray:
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


def wrappable(text: str) -> str:
    """Allow Qt to wrap long paths: a zero-width space after each path separator."""
    return text.replace("/", "/\u200b")


def task_of(layer: Any) -> str:
    """``"mri"`` for a fastMRI layer of this plugin's reader, else ``"inpainting"``."""
    source = (getattr(layer, "metadata", {}) or {}).get("rcgan_source") or {}
    return "mri" if source.get("kind") == "fastmri" else "inpainting"


def image_working_size(layer: Image, metadata: Any) -> str:
    """What happens to an image before sampling: its size and colour, and the weights'."""
    shape = layer.data.shape[:2] if layer.rgb else layer.data.shape[-2:]
    colour = "RGB" if layer.rgb else "grey"
    text = f"image {shape[0]}x{shape[1]} {colour} (inpainting)"
    if metadata is None or metadata.task != "inpainting":
        return text
    size = tuple(metadata.image_size)
    working = "RGB" if metadata.channels == 3 else "grey"
    if tuple(shape) == size and working == colour:
        return text + ": sampled at its own resolution"
    side = min(shape)
    crop = "" if shape[0] == shape[1] else f"centre {side}x{side} crop, "
    return (
        f"{text} → sampled as a {crop}{size[0]}x{size[1]} {working} image (the weights' working "
        f"size); the results are placed back over the input"
    )


class SampleProgress(QWidget):
    """A progress bar (``setRange``/``setValue``/``setFormat`` with ``%v``, ``%m``, ``%p``) that
    repaints at the next event-loop pass. ``QProgressBar.setValue`` repaints synchronously, and
    in napari's window (an OpenGL canvas) each synchronous repaint composes the whole window
    once more: ~0.1 s of GUI time per update under software rendering."""

    def __init__(self) -> None:
        super().__init__()
        self._minimum, self._maximum, self._value = 0, 1, 0
        self._format = "%p%"
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)

    def setRange(self, minimum: int, maximum: int) -> None:  # noqa: N802 (Qt API)
        self._minimum, self._maximum = int(minimum), max(int(minimum), int(maximum))
        self.update()

    def setValue(self, value: int) -> None:  # noqa: N802
        self._value = min(max(int(value), self._minimum), self._maximum)
        self.update()

    def setFormat(self, text: str) -> None:  # noqa: N802
        self._format = text
        self.update()

    def value(self) -> int:
        return self._value

    def maximum(self) -> int:
        return self._maximum

    def minimum(self) -> int:
        return self._minimum

    def text(self) -> str:
        span = self._maximum - self._minimum
        percent = 100 if span == 0 else round(100 * (self._value - self._minimum) / span)
        return (self._format.replace("%v", str(self._value)).replace("%m", str(self._maximum))
                .replace("%p", str(percent)))

    def _option(self) -> QStyleOptionProgressBar:
        option = QStyleOptionProgressBar()
        option.initFrom(self)
        option.minimum, option.maximum, option.progress = self._minimum, self._maximum, self._value
        option.text, option.textVisible = self.text(), True
        option.textAlignment = Qt.AlignmentFlag.AlignCenter
        option.state |= QStyle.StateFlag.State_Horizontal
        return option

    def sizeHint(self) -> QSize:  # noqa: N802
        return QSize(100, self.fontMetrics().height() + 8)

    def paintEvent(self, event: Any) -> None:  # noqa: N802
        painter = QStylePainter(self)
        painter.drawControl(QStyle.ControlElement.CE_ProgressBar, self._option())


class Controls(QWidget):
    """The form, the Sample / Cancel buttons, progress and status."""

    fields_changed = Signal()
    """Input, weights, R or mask changed: the mask preview and the texts follow."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = viewer
        self.chunk_size: int | None = None
        self.mask_seed = 0
        self._metadata: dict[str, Any] = {}
        self._refreshing = False
        self._input_seen: Image | None = None
        self._followed: int | None = None
        self._build()

    def _build(self) -> None:
        from napari_rcgan.backends import BACKENDS, PRECISIONS
        from napari_rcgan.sampler import COIL_COMBINES, available_devices
        from napari_rcgan.weights import RANDOM_NAMES, bundled_weights, read_metadata

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        form = QFormLayout()
        layout.addLayout(form)

        self.input_combo = QComboBox()
        self.input_combo.setToolTip("fastMRI acquisition (opened with napari-rcgan) or an image")
        form.addRow("input", self.input_combo)
        self.input_info = QLabel("")
        form.addRow(self.input_info)

        self.slice_spin = QSpinBox()
        self.slice_spin.setRange(0, 0)
        self.slice_spin.setToolTip("follows the viewer's slice slider; can be set by hand")
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

        engine_row = QHBoxLayout()
        self.backend_combo = QComboBox()
        self.backend_combo.addItems(list(BACKENDS))
        self.backend_combo.setToolTip(
            "what runs the generator: auto = OpenVINO on the CPU when napari-rcgan[openvino] is "
            "installed (the first run converts the network, a few seconds), else torch"
        )
        self.precision_combo = QComboBox()
        self.precision_combo.addItems(list(PRECISIONS))
        self.precision_combo.setToolTip(
            "auto = bf16 where the CPU has AMX/AVX512_BF16 (or the GPU has bf16), else fp32"
        )
        engine_row.addWidget(self.backend_combo, 1)
        engine_row.addWidget(self.precision_combo, 1)
        form.addRow("backend", engine_row)

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
        self.weights_combo.addItems([f"random:{name}" for name in RANDOM_NAMES])
        weights_row.addWidget(self.weights_combo, 1)
        self.browse_button = QPushButton("File…")
        self.browse_button.setToolTip("choose a .safetensors weights file")
        weights_row.addWidget(self.browse_button)
        form.addRow("weights", weights_row)
        self.weights_info = QLabel("")
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
        self.progress = SampleProgress()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        layout.addWidget(self.progress)
        self.status_label = QLabel("")
        layout.addWidget(self.status_label)
        self.grid_check = QCheckBox("result layers side by side (grid)")
        layout.addWidget(self.grid_check)

        for combo in (self.input_combo, self.mask_combo, self.hole_combo, self.weights_combo,
                      self.device_combo, self.combine_combo, self.backend_combo,
                      self.precision_combo):
            combo.setSizeAdjustPolicy(
                QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
            )
            combo.setMinimumContentsLength(12)
        # long paths in messages must not widen the dock: let the labels wrap anywhere needed
        for label in (self.input_info, self.weights_info, self.achieved_label, self.status_label):
            label.setWordWrap(True)
            label.setMinimumWidth(120)
            label.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Minimum)

        self.input_combo.currentIndexChanged.connect(self._on_input_changed)
        self.R_spin.valueChanged.connect(self.fields_changed.emit)
        self.mask_combo.currentIndexChanged.connect(self.fields_changed.emit)
        self.weights_combo.currentIndexChanged.connect(self._on_weights_changed)
        self.browse_button.clicked.connect(self._browse_weights)

    # layer choices ----------------------------------------------------------------------------

    def input_candidates(self) -> list[Image]:
        return [layer for layer in self.viewer.layers
                if isinstance(layer, Image) and not is_ours(layer)]

    def refresh_layer_choices(self) -> None:
        self._refreshing = True
        try:
            current = self.input_combo.currentText()
            names = [layer.name for layer in self.input_candidates()]
            self.input_combo.clear()
            self.input_combo.addItems(names)
            if current in names:
                self.input_combo.setCurrentText(current)
            elif names:
                mri = [n for n in names if task_of(self.viewer.layers[n]) == "mri"]
                self.input_combo.setCurrentText(mri[-1] if mri else names[-1])

            input_name = self.input_combo.currentText()
            others = [
                layer.name
                for layer in self.viewer.layers
                if isinstance(layer, (Labels, Image))
                and not is_ours(layer)
                and layer.name != input_name
            ]
            labels = [layer.name for layer in self.viewer.layers
                      if isinstance(layer, Labels) and not is_ours(layer)]
            self._reset_combo(self.mask_combo, MASK_KINDS, [LAYER_PREFIX + n for n in others])
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

    def maybe_pick_hole(self, labels: Labels) -> None:
        """A Labels layer of the input image's shape, added while the hole is the centred
        square, is most likely the hole the user is about to paint: select it."""
        layer = self.input_layer()
        if layer is None or task_of(layer) == "mri":
            return
        shape = layer.data.shape[:2] if layer.rgb else layer.data.shape[-2:]
        if self.hole_combo.currentText() == CENTRE_HOLE and labels.data.shape == tuple(shape):
            self.hole_combo.setCurrentText(LAYER_PREFIX + labels.name)

    def input_layer(self) -> Image | None:
        name = self.input_combo.currentText()
        if not name or name not in self.viewer.layers:
            return None
        layer = self.viewer.layers[name]
        return layer if isinstance(layer, Image) else None

    def current_task(self) -> str | None:
        layer = self.input_layer()
        return None if layer is None else task_of(layer)

    def _on_input_changed(self, *_: Any) -> None:
        if self._refreshing:
            return
        layer = self.input_layer()
        mri = layer is not None and task_of(layer) == "mri"
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
                self.follow_slice(layer, force=True)
            self.input_info.setText(wrappable(source.get("description", source.get("path", ""))))
        self._input_seen = layer
        self._on_weights_changed()

    def follow_slice(self, layer: Image | None = None, force: bool = False) -> None:
        """Set the slice box to the slice of the MRI input that the viewer shows, when that
        slice changed since the last time (so a slice set by hand stays until the slider
        moves), or always with ``force``."""
        layer = layer or self.input_layer()
        if layer is None or task_of(layer) != "mri" or layer.data.ndim < 3:
            return
        slices = int(layer.metadata["rcgan_source"].get("num_slices", 1))
        try:
            position = layer.world_to_data(self.viewer.dims.point)
            index = int(np.clip(round(float(position[-3])), 0, slices - 1))
        except (IndexError, ValueError, TypeError):
            index = slices // 2
        if force or index != self._followed:
            self._followed = index
            self.slice_spin.setValue(index)

    # weights ----------------------------------------------------------------------------------

    def resolved_weights(self) -> str:
        """The weights spec a run would use (``default`` → bundled or ``random:<task>``)."""
        spec = self.weights_combo.currentText()
        if spec != DEFAULT_WEIGHTS:
            return spec
        return default_weights(self.current_task() or "mri")

    def weights_metadata(self, spec: str):
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
            metadata = self.weights_metadata(spec)
        except RcganError as error:
            self.weights_info.setText(wrappable(f"⚠ {error}"))
            self.weights_info.setToolTip(spec)
            metadata = None
        else:
            shown = spec if spec.startswith("random:") or "/" not in spec else Path(spec).name
            size = "x".join(str(v) for v in metadata.image_size)
            self.weights_info.setText(
                wrappable(f"{shown}: {metadata.task}, {size}, {metadata.channels} channels "
                          f"(details: hover)")
            )
            self.weights_info.setToolTip(f"{spec}\n{metadata.describe()}")
        layer = self.input_layer()
        if layer is not None and task_of(layer) == "inpainting":
            self.input_info.setText(image_working_size(layer, metadata))
        self.fields_changed.emit()

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

    # mask -------------------------------------------------------------------------------------

    def mask_choice(self) -> tuple[str, Any]:
        """``("kind", name)`` for a built-in mask or ``("layer", layer)``."""
        text = self.mask_combo.currentText() or "gro"
        if text.startswith(LAYER_PREFIX):
            name = text[len(LAYER_PREFIX) :]
            if name not in self.viewer.layers:
                raise MaskError(f"mask layer '{name}' no longer exists")
            return "layer", self.viewer.layers[name]
        return "kind", text

    def mask_request(self) -> SamplingRequest:
        """The mask part of the request (what the preview and the run share)."""
        kind, value = self.mask_choice()
        if kind == "layer":
            return SamplingRequest(task="mri", mask=f"layer '{value.name}'",
                                   mask_array=np.asarray(value.data), mask_seed=self.mask_seed)
        return SamplingRequest(task="mri", mask=value, R=float(self.R_spin.value()),
                               mask_seed=self.mask_seed)

    def preview_mask(self) -> SamplingMask:
        """The sampling mask the current fields describe (weights' image size)."""
        from napari_rcgan.session import Session

        size = tuple(self.weights_metadata(self.resolved_weights()).image_size)
        return Session.mask(self.mask_request(), size)

    # the request ------------------------------------------------------------------------------

    def request(self) -> tuple[SamplingRequest, Image]:
        """The fields as a sampling request (GUI thread); raises RcganError."""
        layer = self.input_layer()
        if layer is None:
            raise ParameterError(
                "no input: open a fastMRI .h5 file or a face image (File > Open, or "
                "File > Open Sample > napari-rcgan) and choose it as the input"
            )
        task = task_of(layer)
        P = int(self.P_spin.value())
        if not P_RANGE[0] <= P <= P_RANGE[1]:
            raise ParameterError(f"P must be in {P_RANGE[0]}..{P_RANGE[1]}, got {P}")
        common = {
            "task": task,
            "weights": self.resolved_weights(),
            "device": self.device_combo.currentText(),
            "backend": self.backend_combo.currentText(),
            "precision": self.precision_combo.currentText(),
            "P": P,
            "seed": int(self.seed_spin.value()),
            "chunk_size": self.chunk_size,
        }
        if task == "mri":
            path = str(layer.metadata["rcgan_source"]["path"])
            index = int(self.slice_spin.value())
            mask = self.mask_request()
            request = SamplingRequest(
                input=path, slice=index, R=float(self.R_spin.value()), mask=mask.mask,
                mask_array=mask.mask_array, mask_seed=mask.mask_seed,
                coil_combine=self.combine_combo.currentText(),
                source=f"{path} slice {index}", **common,
            )
        else:
            image = image_to_unit(layer.data, f"layer '{layer.name}'")
            hole_text = self.hole_combo.currentText()
            hole = None
            if hole_text.startswith(LAYER_PREFIX):
                name = hole_text[len(LAYER_PREFIX) :]
                if name not in self.viewer.layers:
                    raise MaskError(f"hole layer '{name}' no longer exists")
                hole = np.asarray(self.viewer.layers[name].data)
                if hole.shape != image.shape[:2]:
                    raise MaskError(
                        f"layer '{name}': expected a hole of the input image's shape "
                        f"{image.shape[:2]}, found shape {hole.shape}"
                    )
            request = SamplingRequest(image=image, hole_array=hole,
                                      source=f"layer '{layer.name}'", **common)
        return request, layer

    def set_fields(self, P: int | None, R: float | None, seed: int | None,
                   fields: dict[str, Any]) -> None:
        """Apply ``run_sampling`` keyword fields; raises RcganError for impossible values."""
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
        for name, combo in (("backend", self.backend_combo), ("precision", self.precision_combo)):
            if name in fields:
                value = str(fields.pop(name))
                choices = [combo.itemText(i) for i in range(combo.count())]
                if value not in choices:
                    raise ParameterError(f"{name} {value!r}: use one of {', '.join(choices)}")
                combo.setCurrentText(value)
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
