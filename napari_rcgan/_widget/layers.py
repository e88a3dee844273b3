"""Publishing a run as napari layers, and the mask preview over the input.

:class:`LayerPublisher` puts a run's arrays into layers: it creates them at the first update
(reusing the input's previous result layers in place where they fit), then only assigns new
data, so an update costs the GUI thread a texture upload, not a layer. Layer names, kinds and
``metadata["rcgan"]`` come from :mod:`napari_rcgan.schema`; extra outputs of a run
(``record.extras`` with a ``title``) are published the same way, with a colour bar when asked.
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
COLOUR_MAPS = {"error": "magma", "std": "viridis"}


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


def _high(data: np.ndarray, percentile: float) -> float:
    return float(np.percentile(data, percentile)) or 1.0


class LayerPublisher:
    """Creates, updates and removes the result layers of runs in ``viewer``."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        self.viewer = viewer

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
        scale, translate = run.placement
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
            data = images[kind]
            stacked = kind == "samples"
            colour = record.rgb and kind not in ("error", "std", "mask")
            kwargs: dict[str, Any] = {
                "scale": (1.0, *scale) if stacked else scale,
                "translate": (0.0, *translate) if stacked else translate,
            }
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
            run.layers[kind] = self._place(previous.pop(kind, None), data, LAYER_NAMES[kind],
                                           colour, metadata, kwargs)
        for layer in previous.values():  # kinds this run does not have (no reference)
            if layer in self.viewer.layers:
                self.viewer.layers.remove(layer)

    def _place(self, layer: Image | None, data: np.ndarray, name: str, colour: bool,
               metadata: dict, kwargs: dict) -> Image:
        if layer is not None and layer.rgb == colour and layer.data.ndim == data.ndim:
            layer.data = data
            for key, value in kwargs.items():
                setattr(layer, key, value)
            layer.metadata = metadata
            layer.name = name
            return layer
        if layer is not None and layer in self.viewer.layers:
            self.viewer.layers.remove(layer)
        return self.viewer.add_image(data, name=name, rgb=colour, metadata=metadata, **kwargs)

    def update(self, run: SamplingRun, update: Update) -> None:
        """Assign an update's arrays to the existing layers (in place, no new layers)."""
        layers = run.layers
        if "samples" in layers:
            layers["samples"].data = update.samples
        self.show_explored(run, update.explored)

    def show_explored(self, run: SamplingRun, arrays: dict[str, np.ndarray]) -> None:
        """New mean / SD / error (and P-dependent extras) data for the explorer's P."""
        for kind, data in arrays.items():
            layer = run.layers.get(kind)
            if layer is not None and layer in self.viewer.layers:
                layer.data = data
                layer.metadata["rcgan"] = run.info(kind)

    def publish_extras(self, run: SamplingRun) -> None:
        """Layers for the outputs features added to the run (``record.extras`` with a title)."""
        scale, translate = run.placement
        for name, output in run.record.extras.items():
            data = output.value(run.P)
            if not output.title or data is None:
                continue
            kwargs: dict[str, Any] = {"scale": scale, "translate": translate,
                                      "colormap": output.colormap}
            if data.ndim == 3 and not (data.shape[-1] == 3):
                kwargs["scale"], kwargs["translate"] = (1.0, *scale), (0.0, *translate)
            metadata = {"rcgan": run.info(name)}
            layer = self._place(run.layers.get(name), np.asarray(data), output.title, False,
                                metadata, kwargs)
            if output.colorbar:
                layer.colorbar.visible = True
            run.layers[name] = layer

    def mark_partial(self, run: SamplingRun) -> None:
        for kind, layer in run.layers.items():
            base = LAYER_NAMES.get(kind) or layer.name
            layer.name = f"{base} (partial)"

    def refresh_metadata(self, run: SamplingRun) -> None:
        for kind, layer in run.layers.items():
            layer.metadata["rcgan"] = run.info(kind)

    def fit_contrast(self, run: SamplingRun) -> None:
        """Error/SD contrast from the full average, so the maps visibly change with P."""
        for kind in COLOUR_MAPS:
            if kind in run.layers:
                run.layers[kind].contrast_limits = (0.0, _high(run.layers[kind].data, 99.5))

    def discard(self, run: SamplingRun | None) -> None:
        if run is None:
            return
        for layer in run.layers.values():
            if layer in self.viewer.layers:
                self.viewer.layers.remove(layer)
        run.layers.clear()

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
