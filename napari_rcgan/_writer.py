"""napari writers for one posterior result (the layers of one Posterior sampler run).

* ``.h5`` / ``.hdf5``: the schema of ``napari-rcgan sample`` (datasets ``samples``, ``mean``,
  ``std``, ``zero_filled``, ``mask`` and, with a reference, ``target`` and ``error``; attributes
  ``task``, ``R``, ``P``, ``seed``, ``mask_kind``, ``weights``, ``complete``), rebuilt from the
  layers as a :class:`~napari_rcgan.schema.ResultRecord` (the schema the CLI writes) and written
  atomically by :func:`~napari_rcgan.pipeline.write_result`.
* ``.nii.gz`` / ``.nii``: the sample stack as a NIfTI-1 volume ``(H, W, P)`` (``(H, W, P, 3)`` for
  colour), voxel sizes from the layer scale, a header description and the attributes as a JSON
  comment extension; written atomically.

The result is what the widget shows: when the P explorer is at P (the ``P`` in the mean layer's
``metadata["rcgan"]``), the first P samples are written with their mean, SD and error, which is
exactly what ``napari-rcgan sample --P P`` with the same seed writes.
"""

from __future__ import annotations

import gzip
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from napari_rcgan.errors import ParameterError
from napari_rcgan.io import atomic_output
from napari_rcgan.pipeline import write_result
from napari_rcgan.schema import (
    ARRAYS_KEY,
    LAYER_NAMES,
    RESULT_KINDS,
    ResultRecord,
    layer_array,
    record_from_info,
)


@dataclass
class LayerResult:
    """One run gathered from its layers: the schema record and the samples layer's placement."""

    record: ResultRecord
    scale: tuple[float, ...]
    translate: tuple[float, ...]

    @property
    def samples(self) -> np.ndarray:
        return self.record.stack.samples

    @property
    def P(self) -> int:
        return self.record.drawn

    def datasets(self) -> dict[str, np.ndarray]:
        """The float32 datasets of the file schema."""
        return self.record.datasets()

    def attrs(self) -> dict[str, Any]:
        """The attributes of the file schema (``R`` NaN for inpainting)."""
        return self.record.attrs()


def _rcgan(attributes: dict[str, Any]) -> dict[str, Any] | None:
    metadata = attributes.get("metadata") or {}
    info = metadata.get("rcgan")
    return info if isinstance(info, dict) and isinstance(info.get("kind"), str) else None


def result_from_layers(layer_data: list[tuple[Any, dict[str, Any], str]]) -> LayerResult:
    """Gather one run from napari layer data ``(data, attributes, layer_type)``.

    Layers of the run whose kind is not a core kind (outputs that features add) are written as
    datasets of that name.

    Raises:
        ParameterError: no samples layer of a Posterior sampler run, or layers of several runs.
    """
    tagged = [(data, attrs, info) for data, attrs, _ in layer_data if (info := _rcgan(attrs))]
    samples = [item for item in tagged if item[2]["kind"] == "samples"]
    if not samples:
        raise ParameterError(
            f"nothing to save: select the '{LAYER_NAMES['samples']}' layer (and the other result "
            f"layers) of a Posterior sampler run"
        )
    runs = {item[2].get("run") for item in samples}
    if len(samples) > 1 or len(runs) > 1:
        raise ParameterError(
            f"the selection holds {len(samples)} sample stacks; select the layers of one run"
        )
    try:
        return _gather(samples[0], tagged)
    except ParameterError:
        raise
    except (TypeError, ValueError) as error:
        raise ParameterError(
            f"the '{LAYER_NAMES['samples']}' layer and its run's layers do not hold a readable "
            f"Posterior sampler result ({error})"
        ) from error


def _gather(samples: tuple, tagged: list[tuple]) -> LayerResult:
    """The run of the samples layer ``samples`` among the ``tagged`` layers."""
    data, attributes, info = samples
    run = info.get("run")
    by_kind = {item[2]["kind"]: item for item in tagged if item[2].get("run") == run}
    stash = (attributes.get("metadata") or {}).get(ARRAYS_KEY) or {}

    def array(kind: str) -> np.ndarray | None:
        if kind in by_kind:
            return layer_array(by_kind[kind][0], by_kind[kind][2])
        value = stash.get(kind)
        return None if value is None else np.asarray(value, dtype=np.float32)

    stack = layer_array(data, info)
    if stack.ndim not in (3, 4) or 0 in stack.shape:
        raise ParameterError(
            f"the '{LAYER_NAMES['samples']}' layer must be (P, H, W) or (P, H, W, 3), found "
            f"shape {stack.shape}"
        )
    drawn = len(stack)
    P = int(by_kind["mean"][2].get("P", drawn)) if "mean" in by_kind else drawn
    if not 1 <= P <= drawn:
        raise ParameterError(f"the mean layer's P={P} does not fit the {drawn} samples drawn")
    zero_filled, mask = array("zero_filled"), array("mask")
    if zero_filled is None or mask is None:
        raise ParameterError(
            f"the result needs the zero-filled and mask images: select the "
            f"'{LAYER_NAMES['zero_filled']}' and '{LAYER_NAMES['mask']}' layers too"
        )
    merged = {**info, **(by_kind["mean"][2] if "mean" in by_kind else {})}
    merged["partial"] = bool(info.get("partial", False))
    merged["attrs"] = info.get("attrs") or {}
    extras = {
        kind: layer_array(item[0], item[2])
        for kind, item in by_kind.items()
        if kind not in RESULT_KINDS
    }
    record = record_from_info(stack, P, zero_filled, mask, array("reference"), merged, extras)
    scale = tuple(float(v) for v in attributes.get("scale", (1.0,) * stack.ndim))
    translate = tuple(float(v) for v in attributes.get("translate", (0.0,) * stack.ndim))
    if len(scale) < 3 or len(translate) < 3:
        raise ParameterError(
            f"the '{LAYER_NAMES['samples']}' layer's scale {scale} and translate {translate} "
            "need (sample, row, column) values"
        )
    return LayerResult(record=record, scale=scale, translate=translate)


def write_h5(path: str, layer_data: list[tuple[Any, dict[str, Any], str]]) -> list[str]:
    """npe2 writer: one posterior result → ``.h5`` in the ``napari-rcgan sample`` schema."""
    result = result_from_layers(layer_data)
    return [str(write_result(result.record, path))]


def nifti_description(attrs: dict[str, Any]) -> str:
    """At most 80 characters for the NIfTI ``descrip`` field."""
    R = attrs["R"]
    text = f"rcGAN samples {attrs['task']}"
    if isinstance(R, float) and not math.isnan(R):
        text += f" R={R:.2f} {attrs['mask_kind']}"
    text += f" P={attrs['P']} seed={attrs['seed']}"
    if not attrs["complete"]:
        text += " partial"
    weights = Path(attrs["weights"]).name
    return (text + f" w={weights}")[:79]


def write_nifti(path: str, layer_data: list[tuple[Any, dict[str, Any], str]]) -> list[str]:
    """npe2 writer: the sample stack → NIfTI-1 volume ``(H, W, P[, 3])`` (``.nii.gz``/``.nii``)."""
    import nibabel as nib

    result = result_from_layers(layer_data)
    samples = result.samples[: result.P]
    volume = np.moveaxis(samples, 0, 2)  # (H, W, P) or (H, W, P, 3)
    row_scale, col_scale = result.scale[-2:]
    row_shift, col_shift = result.translate[-2:]
    affine = np.diag([row_scale, col_scale, 1.0, 1.0])
    affine[:2, 3] = [row_shift, col_shift]
    image = nib.Nifti1Image(np.ascontiguousarray(volume, dtype=np.float32), affine)
    attrs = result.attrs()
    header = image.header
    header["descrip"] = nifti_description(attrs).encode("ascii", "replace")
    header.set_xyzt_units("mm")
    payload = json.dumps(
        {
            "rcgan": {k: _jsonable(v) for k, v in attrs.items()},
            "axes": ["row", "column", "sample"] + (["channel"] if volume.ndim == 4 else []),
        }
    )
    header.extensions.append(nib.nifti1.Nifti1Extension("comment", payload.encode()))
    blob = image.to_bytes()
    path = Path(path)
    if path.name.lower().endswith(".gz"):
        blob = gzip.compress(blob, compresslevel=6)
    with atomic_output(path) as temporary:
        temporary.write_bytes(blob)
    return [str(path)]


def read_nifti_attrs(path: str | os.PathLike) -> dict[str, Any]:
    """The ``rcgan`` attributes stored in a NIfTI written by :func:`write_nifti`."""
    import nibabel as nib

    image = nib.load(str(path))
    for extension in image.header.extensions:
        content = extension.get_content()
        try:
            payload = json.loads(bytes(content).decode())
        except (ValueError, TypeError):
            continue
        if isinstance(payload, dict) and "rcgan" in payload:
            return payload["rcgan"]
    return {}


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, np.generic):
        return value.item()
    return value
