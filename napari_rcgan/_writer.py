"""napari writers for one posterior result (the layers of one Posterior sampler run).

* ``.h5`` / ``.hdf5``: the schema of ``napari-rcgan sample`` (datasets ``samples``, ``mean``,
  ``std``, ``zero_filled``, ``mask`` and, with a reference, ``target`` and ``error``; attributes
  ``task``, ``R``, ``P``, ``seed``, ``mask_kind``, ``weights``, ``complete``), built with the
  engine's :func:`~napari_rcgan.pipeline.result_datasets` and written atomically by
  :func:`~napari_rcgan.io.write_result_h5`.
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
from types import SimpleNamespace
from typing import Any

import numpy as np

from napari_rcgan.errors import ParameterError
from napari_rcgan.io import atomic_output, write_result_h5
from napari_rcgan.stats import SampleStack

RESULT_KINDS = ("reference", "zero_filled", "mask", "samples", "mean", "error", "std")
ARRAYS_KEY = "rcgan_arrays"
"""Samples-layer metadata key holding the run's reference / zero-filled / mask arrays, so the
result can be written from the samples layer alone."""


@dataclass
class LayerResult:
    """One run gathered from its layers: display arrays and the ``metadata["rcgan"]`` values."""

    samples: np.ndarray
    P: int
    zero_filled: np.ndarray
    mask: np.ndarray
    reference: np.ndarray | None
    info: dict[str, Any]
    scale: tuple[float, ...]
    translate: tuple[float, ...]

    @property
    def stack(self) -> SampleStack:
        stack = SampleStack(self.samples.shape[1:], capacity=self.P)
        stack.extend(self.samples[: self.P])
        return stack

    def datasets(self) -> dict[str, np.ndarray]:
        """The float32 datasets of the CLI schema (via the engine's ``result_datasets``)."""
        from napari_rcgan.pipeline import result_datasets

        measurement = SimpleNamespace(
            zero_filled_display=self.zero_filled, mask_display=self.mask, reference=self.reference
        )
        return result_datasets(SimpleNamespace(measurement=measurement, stack=self.stack))

    def attrs(self) -> dict[str, Any]:
        """The attributes of the CLI schema (``R`` NaN for inpainting)."""
        info = self.info
        R = info.get("R")
        return {
            "task": str(info.get("task", "")),
            "R": float(R) if R is not None else math.nan,
            "P": int(self.P),
            "seed": int(info.get("seed", 0)),
            "mask_kind": str(info.get("mask_kind", "hole" if info.get("task") != "mri" else "")),
            "weights": str(info.get("weights", "")),
            "complete": not bool(info.get("partial", False)),
        }


def _rcgan(attributes: dict[str, Any]) -> dict[str, Any] | None:
    metadata = attributes.get("metadata") or {}
    info = metadata.get("rcgan")
    return info if isinstance(info, dict) and info.get("kind") in RESULT_KINDS else None


def result_from_layers(layer_data: list[tuple[Any, dict[str, Any], str]]) -> LayerResult:
    """Gather one run from napari layer data ``(data, attributes, layer_type)``.

    Raises:
        ParameterError: no samples layer of a Posterior sampler run, or layers of several runs.
    """
    tagged = [(data, attrs, info) for data, attrs, _ in layer_data if (info := _rcgan(attrs))]
    samples = [item for item in tagged if item[2]["kind"] == "samples"]
    if not samples:
        raise ParameterError(
            "nothing to save: select the 'rcgan samples' layer (and the other result layers) of "
            "a Posterior sampler run"
        )
    runs = {item[2].get("run") for item in samples}
    if len(samples) > 1 or len(runs) > 1:
        raise ParameterError(
            f"the selection holds {len(samples)} sample stacks; select the layers of one run"
        )
    data, attributes, info = samples[0]
    run = info.get("run")
    by_kind = {item[2]["kind"]: item for item in tagged if item[2].get("run") == run}
    stash = (attributes.get("metadata") or {}).get(ARRAYS_KEY) or {}

    def array(kind: str) -> np.ndarray | None:
        if kind in by_kind:
            return np.asarray(by_kind[kind][0], dtype=np.float32)
        value = stash.get(kind)
        return None if value is None else np.asarray(value, dtype=np.float32)

    stack = np.asarray(data, dtype=np.float32)
    drawn = len(stack)
    P = int(by_kind["mean"][2].get("P", drawn)) if "mean" in by_kind else drawn
    if not 1 <= P <= drawn:
        raise ParameterError(f"the mean layer's P={P} does not fit the {drawn} samples drawn")
    zero_filled, mask = array("zero_filled"), array("mask")
    if zero_filled is None or mask is None:
        raise ParameterError(
            "the result needs the zero-filled and mask images: select the 'rcgan zero-filled' and "
            "'rcgan mask' layers too"
        )
    merged = {**info, **(by_kind["mean"][2] if "mean" in by_kind else {})}
    merged["partial"] = bool(info.get("partial", False))
    return LayerResult(
        samples=stack,
        P=P,
        zero_filled=zero_filled,
        mask=mask,
        reference=array("reference"),
        info=merged,
        scale=tuple(float(v) for v in attributes.get("scale", (1.0,) * stack.ndim)),
        translate=tuple(float(v) for v in attributes.get("translate", (0.0,) * stack.ndim)),
    )


def write_h5(path: str, layer_data: list[tuple[Any, dict[str, Any], str]]) -> list[str]:
    """npe2 writer: one posterior result → ``.h5`` in the ``napari-rcgan sample`` schema."""
    result = result_from_layers(layer_data)
    written = write_result_h5(path, result.datasets(), result.attrs())
    return [str(written)]


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
    row_scale, col_scale = result.scale[1:3]
    row_shift, col_shift = result.translate[1:3]
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
