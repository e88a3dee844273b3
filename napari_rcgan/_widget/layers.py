"""Publishing a run as napari layers, the grid view, and the mask preview over the input.

:class:`LayerPublisher` puts a run's arrays into layers: it creates them at the first update
(reusing the input's previous result layers in place where they fit), then only assigns new
data, so an update costs the GUI thread a texture upload, not a layer. Layer names, kinds and
``metadata["rcgan"]`` come from :mod:`napari_rcgan.schema`; extra outputs of a run
(``record.extras`` with a ``title``) are published the same way, with a colour bar when asked.

Geometry: results are placed over the input (scale and translate). For an MRI volume the
results sit at their slice: each layer gets a singleton slice axis at the sampled slice, and the
sample stack's own axis comes before it, so the input's slice slider never scrolls through
samples and a result is only drawn on the slice it belongs to.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from napari.layers import Image

from napari_rcgan.schema import ARRAYS_KEY, LAYER_NAMES
from napari_rcgan.session import fit_geometry

if TYPE_CHECKING:
    import napari

    from napari_rcgan._widget.run import SamplingRun, Update
    from napari_rcgan.physics.masks import SamplingMask

PREVIEW_NAME = "mask preview"
PREVIEW_KEY = "rcgan_preview"
LAYER_ORDER = ("mask", "zero_filled", "reference", "samples", "std", "error", "mean")
"""Bottom → top: the P-average on top, then the error and the SD, then the sample stack."""
HIDDEN_KINDS = ("mask", "zero_filled", "reference")
"""Created hidden (the user's own inputs, under the results): fewer layers to draw per update."""
COLOUR_MAPS = {"error": "magma", "std": "viridis"}
"""The maps whose values matter: a colour map and napari's colour bar overlay."""
COLORBAR_KEY = "rcgan_colorbar"
"""``layer.metadata`` flag of a layer whose values need a colour bar (drawn while on screen)."""
SD_NEEDS_TWO = "SD: needs P ≥ 2"
GRID_TOGGLED_KEY = "rcgan_grid_toggled"
OPAQUE_BLENDINGS = ("opaque", "translucent", "translucent_no_depth")


def is_ours(layer: Any) -> bool:
    """A result or preview layer of this plugin (never an input, mask or hole)."""
    metadata = getattr(layer, "metadata", {}) or {}
    return "rcgan" in metadata or bool(metadata.get(PREVIEW_KEY, False))


def placement(
    layer: Image, task: str, size: tuple[int, int], pixel_scale: float = 1.0
) -> tuple[tuple, tuple]:
    """2-D scale and translate putting a ``size`` result over the input layer.

    MRI: result pixel ``i`` lies at input pixel ``shape//2 + (i - size//2)·pixel_scale`` (the
    centred-FFT convention of a centre crop, ``pixel_scale`` 1, and of the whole-field-of-view
    mapping, ``pixel_scale`` = FOV side / ``size``).
    """
    in_scale = np.asarray(layer.scale[-2:], dtype=float)
    in_translate = np.asarray(layer.translate[-2:], dtype=float)
    shape = layer.data.shape[-3:-1] if layer.rgb else layer.data.shape[-2:]
    if task == "mri":
        factor = np.full(2, float(pixel_scale))
        offset = np.asarray(shape) // 2 - (np.asarray(size) // 2) * factor
    else:
        factor, offset = fit_geometry(tuple(shape), size)
    scale = in_scale * factor
    translate = in_translate + in_scale * offset
    return tuple(float(v) for v in scale), tuple(float(v) for v in translate)


def slice_axis(layer: Image, task: str, index: int) -> tuple[float, float] | None:
    """Scale and world position of slice ``index`` of an MRI volume layer (None: no volume)."""
    if task != "mri" or layer.ndim < 3:
        return None
    scale, translate = float(layer.scale[-3]), float(layer.translate[-3])
    return scale, translate + scale * index


def layer_name(run: SamplingRun, kind: str) -> str:
    """What the layer shows: the schema's name, the P ≥ 2 note for SD at P = 1, partial runs."""
    extra = run.record.extras.get(kind) if run.record is not None else None
    name = extra.title if extra is not None and extra.title else LAYER_NAMES.get(kind, kind)
    if kind == "std" and run.P == 1:
        name = SD_NEEDS_TWO
    if run.finished and run.partial:
        name += " (partial)"
    return name


def _same(current: Any, value: Any) -> bool:
    """Whether a layer attribute already has ``value`` (arrays, tuples, colormaps by name)."""
    if isinstance(value, str):
        return getattr(current, "name", current) == value
    try:
        return bool(np.array_equal(np.asarray(current, dtype=float), np.asarray(value, dtype=float)))
    except (TypeError, ValueError):
        return False


def _opaque(layer: Any) -> bool:
    """Whether an image layer hides what lies under it (opaque or translucent at full opacity)."""
    return (isinstance(layer, Image) and float(layer.opacity) >= 1.0
            and str(getattr(layer.blending, "value", layer.blending)) in OPAQUE_BLENDINGS)


def _high(data: np.ndarray, percentile: float) -> float:
    return float(np.percentile(data, percentile)) or 1.0


class LayerPublisher:
    """Creates, updates and removes the result layers of runs in ``viewer``."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        self.viewer = viewer

    # geometry -------------------------------------------------------------------------------

    @staticmethod
    def _lift(run: SamplingRun, data: np.ndarray, stacked: bool) -> np.ndarray:
        """Add the singleton slice axis (MRI volumes) before the image axes."""
        if run.slice_axis is None:
            return data
        return data[:, None] if stacked else data[None]

    @staticmethod
    def _geometry(run: SamplingRun, stacked: bool) -> dict[str, tuple]:
        scale, translate = run.placement
        if run.slice_axis is not None:
            scale, translate = (run.slice_axis[0], *scale), (run.slice_axis[1], *translate)
        if stacked:
            scale, translate = (1.0, *scale), (0.0, *translate)
        return {"scale": scale, "translate": translate}

    # result layers --------------------------------------------------------------------------

    def result_layers_of(self, input_name: str) -> dict[str, Image]:
        found = {}
        for layer in self.viewer.layers:
            info = (layer.metadata or {}).get("rcgan")
            if isinstance(info, dict) and info.get("input") == input_name:
                found[info.get("kind")] = layer
        return found

    def create(self, run: SamplingRun, update: Update) -> None:
        """Show ``run``'s layers (first update), reusing the input's previous result layers in
        place where they fit (napari pays a garbage collection per removed layer)."""
        record = run.record
        previous = self.result_layers_of(run.input_name)
        images: dict[str, np.ndarray] = {
            "zero_filled": record.zero_filled,
            "mask": record.mask,
            "samples": update.samples,
            **update.explored,
        }
        if record.reference is not None:
            images["reference"] = record.reference
        if record.rgb:
            limits = (0.0, 1.0)
        else:
            basis = record.reference if record.reference is not None else update.explored["mean"]
            limits = (0.0, _high(basis, 99.9))
        stash = {"zero_filled": record.zero_filled, "mask": record.mask,
                 "reference": record.reference}
        for kind in LAYER_ORDER:
            if kind not in images:
                continue
            stacked = kind == "samples"
            data = self._lift(run, images[kind], stacked)
            colour = record.rgb and kind not in ("error", "std", "mask")
            kwargs: dict[str, Any] = self._geometry(run, stacked)
            if kind in COLOUR_MAPS:
                kwargs.update(colormap=COLOUR_MAPS[kind], contrast_limits=(0.0, _high(data, 99.5)))
            elif kind == "mask":
                kwargs.update(colormap="gray", contrast_limits=(0.0, 1.0))
            else:
                kwargs["contrast_limits"] = limits
                if not colour:
                    kwargs["colormap"] = "gray"
            metadata = {"rcgan": run.info(kind)}
            if stacked:
                metadata[ARRAYS_KEY] = stash
            previous_layer = previous.pop(kind, None)
            # the final update redraws the statistics and the stack: now only what is on screen
            redraw = kind in HIDDEN_KINDS
            layer = self._place(previous_layer, data, layer_name(run, kind), colour, metadata,
                                kwargs, redraw)
            layer.metadata[COLORBAR_KEY] = kind in COLOUR_MAPS
            if kind in HIDDEN_KINDS and layer is not previous_layer:
                layer.visible = False
            run.layers[kind] = layer
        for kind, layer in previous.items():
            if layer not in self.viewer.layers:
                continue
            if kind in LAYER_ORDER:  # a kind this run does not have (no reference)
                self.viewer.layers.remove(layer)
            else:  # outputs of the run's end: removing and re-adding would stall the GUI
                run.spare_layers[kind] = (layer, bool(layer.visible))
                layer.visible = False
        for layer in self._on_screen(run):
            layer.refresh()
        self._label_axes(run)
        self.sync_colorbars()

    def adopt_spare(self, run: SamplingRun, kind: str) -> Image | None:
        """The input's previous ``kind`` layer for ``run`` to update in place (visible again
        if it was), or None."""
        layer, was_visible = run.spare_layers.pop(kind, (None, False))
        if layer is None or layer not in self.viewer.layers:
            return None
        layer.visible = was_visible
        run.layers[kind] = layer
        return layer

    def drop_spares(self, run: SamplingRun) -> None:
        """Remove the previous run's layers that ``run`` did not reuse."""
        for layer, _ in run.spare_layers.values():
            if layer in self.viewer.layers:
                self.viewer.layers.remove(layer)
        run.spare_layers.clear()

    def _place(self, layer: Image | None, data: np.ndarray, name: str, colour: bool,
               metadata: dict, kwargs: dict, redraw: bool = True) -> Image:
        """``layer`` updated in place to show ``data`` (redrawn if ``redraw`` and visible), or
        a new layer when there is none or it cannot hold ``data``."""
        if layer is not None and layer.rgb == colour and layer.data.ndim == data.ndim:
            self._assign(layer, data, redraw and bool(layer.visible))
            for key, value in kwargs.items():  # each change costs napari events: only changes
                if not _same(getattr(layer, key), value):
                    setattr(layer, key, value)
            layer.metadata = metadata
            layer.name = name
            return layer
        if layer is not None and layer in self.viewer.layers:
            self.viewer.layers.remove(layer)
        return self.viewer.add_image(data, name=name, rgb=colour, metadata=metadata, **kwargs)

    def _label_axes(self, run: SamplingRun) -> None:
        """Name the viewer's sample and slice axes when they are still unnamed."""
        dims = self.viewer.dims
        if run.slice_axis is None or dims.ndim != 4:
            return
        if all(label.lstrip("-").isdigit() for label in dims.axis_labels):
            dims.axis_labels = ("sample", "slice", "y", "x")

    def update(self, run: SamplingRun, update: Update, shown: int) -> None:
        """Show an update in the existing layers.

        While sampling only what is on screen is redrawn (the top visible result layer, or
        every visible one in grid view); the other arrays are written in place and drawn at
        the final update, which also replaces the sample buffer by the drawn samples and names
        the layers. The sample buffer is the samples layer's data already (filled in place by
        the worker): it is redrawn when the sample on screen is new. ``shown``: samples drawn at
        the last update."""
        on_screen = None if update.final else self._on_screen(run)
        layer = run.layers.get("samples")
        if layer is not None and layer in self.viewer.layers:
            if update.final or layer.data.shape[0] != update.samples.shape[0]:
                layer.data = self._lift(run, update.samples, True)
            elif layer in on_screen and shown <= self._sample_on_screen(layer) < update.drawn:
                layer.refresh()
        self.show_explored(run, update.explored, describe=update.final, only=on_screen)

    def _on_screen(self, run: SamplingRun) -> set[Image]:
        """The run's layers the user sees: the visible ones in grid view, else the top visible
        result layer (it covers the others)."""
        layers = [layer for layer in self.viewer.layers
                  if layer in run.layers.values() and layer.visible]
        if self._grid().enabled:
            return set(layers)
        return set(layers[-1:])

    def _grid(self) -> Any:
        canvas = getattr(self.viewer, "canvas", None)  # napari ≥ 0.9: viewer.canvas.grid
        return canvas.grid if canvas is not None and hasattr(canvas, "grid") else self.viewer.grid

    @staticmethod
    def _assign(layer: Image, data: np.ndarray, redraw: bool = True) -> None:
        """New values for a layer: written into its array (and redrawn) when the shape fits
        (napari's ``data`` setter recomputes the whole viewer's dimensions: ~10× slower)."""
        current = layer.data
        if (isinstance(current, np.ndarray) and current.shape == data.shape
                and current.dtype == data.dtype and current.flags.writeable):
            np.copyto(current, data)
            if redraw:
                layer.refresh()
        else:
            layer.data = data

    def _sample_on_screen(self, layer: Image) -> int:
        try:
            return int(round(float(layer.world_to_data(self.viewer.dims.point)[0])))
        except (IndexError, ValueError, TypeError):
            return 0

    def show_explored(self, run: SamplingRun, arrays: dict[str, np.ndarray],
                      describe: bool = True, only: set[Image] | None = None) -> None:
        """New mean / SD / error (and P-dependent extras) data for the explorer's P; with
        ``describe`` also their metadata and names (not while streaming: fewer events). Layers
        not in ``only`` (when given) get their new values without a redraw."""
        for kind, data in arrays.items():
            layer = run.layers.get(kind)
            if layer is not None and layer in self.viewer.layers:
                self._assign(layer, self._lift(run, data, False),
                             redraw=only is None or layer in only)
                if describe:
                    layer.metadata["rcgan"] = run.info(kind)
                    layer.name = layer_name(run, kind)

    def publish_extras(self, run: SamplingRun) -> None:
        """Layers for the outputs features added to the run (``record.extras`` with a title)."""
        for name, output in run.record.extras.items():
            data = output.value(run.P)
            if not output.title or data is None:
                continue
            stacked = data.ndim == 3 and data.shape[-1] != 3
            kwargs: dict[str, Any] = self._geometry(run, stacked)
            kwargs["colormap"] = output.colormap
            previous = run.layers.get(name) or self.adopt_spare(run, name)
            layer = self._place(previous, self._lift(run, np.asarray(data), stacked),
                                layer_name(run, name), False, {"rcgan": run.info(name)}, kwargs)
            layer.metadata[COLORBAR_KEY] = output.colorbar
            if layer is not previous:
                self._below_the_statistics(run, layer)
            run.layers[name] = layer
        self.sync_colorbars()

    def _below_the_statistics(self, run: SamplingRun, layer: Image) -> None:
        """Move a new extra layer right above the sample stack: the P-average stays on top."""
        layers, samples = self.viewer.layers, run.layers.get("samples")
        if samples in layers:
            layers.move(layers.index(layer), layers.index(samples) + 1)

    # colour bars ----------------------------------------------------------------------------

    def watch_colorbars(self) -> None:
        """Keep :meth:`sync_colorbars` true as layers are added, moved, hidden or shown."""
        events = self.viewer.layers.events
        for event in (events.inserted, events.removed, events.moved, events.reordered):
            event.connect(self.sync_colorbars)
        events.inserted.connect(self._watch_layer)
        for layer in self.viewer.layers:
            self._watch_layer(layer)

    def _watch_layer(self, event_or_layer: Any) -> None:
        layer = getattr(event_or_layer, "value", event_or_layer)
        for name in ("visible", "opacity", "blending"):
            emitter = getattr(layer.events, name, None)
            if emitter is not None:
                emitter.connect(self.sync_colorbars)

    def sync_colorbars(self, event: Any = None) -> None:
        """Colour bars only where they describe what the user sees: on the result layers that
        want one (``COLORBAR_KEY``) and are visible and not covered by an opaque image above
        them (every visible one in grid view). A bar of a covered map would label colours that
        are not on screen, and each bar costs a software-rendered canvas ~13 ms per draw."""
        grid = bool(self._grid().enabled)
        covered = False
        for layer in reversed(list(self.viewer.layers)):
            shown = bool(layer.visible) and (grid or not covered)
            if layer.metadata.get(COLORBAR_KEY) and layer.colorbar.visible != shown:
                layer.colorbar.visible = shown
            covered = covered or (shown and _opaque(layer))

    def refresh(self, run: SamplingRun) -> None:
        """Names and metadata after a run finished (partial runs say so)."""
        for kind, layer in run.layers.items():
            layer.metadata["rcgan"] = run.info(kind)
            layer.name = layer_name(run, kind)

    def fit_contrast(self, run: SamplingRun) -> None:
        """Error/SD contrast from the full average, so the maps visibly change with P."""
        for kind in COLOUR_MAPS:
            if kind in run.layers:
                run.layers[kind].contrast_limits = (0.0, _high(run.layers[kind].data, 99.5))

    def discard(self, run: SamplingRun | None) -> None:
        if run is None:
            return
        self.drop_spares(run)
        for layer in run.layers.values():
            if layer in self.viewer.layers:
                self.viewer.layers.remove(layer)
        run.layers.clear()

    # grid view ------------------------------------------------------------------------------

    def grid(self, enabled: bool, run: SamplingRun | None) -> None:
        """Side by side: only ``run``'s result layers (all of them), each named; the camera
        reset. Off: the visibility each layer had before comes back."""
        grid = self._grid()
        shown = set(run.layers.values()) if run is not None else set()
        for layer in self.viewer.layers:
            if enabled and shown and (layer in shown) != layer.visible:
                layer.metadata[GRID_TOGGLED_KEY] = True
                layer.visible = layer in shown
            elif not enabled and layer.metadata.pop(GRID_TOGGLED_KEY, False):
                layer.visible = not layer.visible
            if layer in shown:
                layer.name_overlay.visible = enabled
        grid.enabled = bool(enabled)
        self.sync_colorbars()
        self.viewer.reset_view()

    # mask preview ---------------------------------------------------------------------------

    def preview(self, mask: SamplingMask, over: Image, create: bool) -> None:
        """Show ``mask`` over the input ``over`` (created only when ``create``)."""
        scale, translate = placement(over, "mri", mask.mask.shape)
        data = mask.mask.astype(np.float32)
        layers = self.viewer.layers
        layer = layers[PREVIEW_NAME] if PREVIEW_NAME in layers else None
        if layer is None:
            if not create:
                return
            self.viewer.add_image(
                data, name=PREVIEW_NAME, colormap="cyan", blending="additive", opacity=0.35,
                contrast_limits=(0, 1), scale=scale, translate=translate,
                metadata={PREVIEW_KEY: True},
            )
        else:
            layer.data = data
            layer.scale, layer.translate = scale, translate
