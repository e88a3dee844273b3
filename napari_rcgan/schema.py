"""The result schema: what one posterior sampling run is, as datasets, attributes and layers.

One place defines it, and every front end uses it: ``napari-rcgan sample`` writes
:meth:`ResultRecord.datasets` and :meth:`ResultRecord.attrs` to ``OUT.h5``; the napari widget
publishes one layer per dataset with ``metadata["rcgan"]`` = :meth:`ResultRecord.layer_info`;
the napari writer rebuilds a :class:`ResultRecord` from those layers and writes the same file.

Datasets (float32): ``samples`` ``(P, H, W[, 3])``, ``mean``, ``std``, ``zero_filled``, ``mask``
and, with a reference, ``target`` and ``error`` ``= |mean − target|``. Attributes: ``task``,
``R`` (NaN for inpainting), ``P``, ``seed``, ``mask_kind``, ``weights``, ``complete``,
``backend`` and ``precision`` (what ran the generator: ``torch``/``openvino``, ``fp32``/``bf16``)
and, for MRI, ``slice``. ``mean``, ``std`` and ``error`` are of the first ``P`` samples: the P the file or
the P explorer shows.

Adding an output (a feature such as a self-check, intervals or principal components): put an
:class:`Output` into ``record.extras[name]`` (``data`` becomes the dataset ``name``; ``title``
makes the widget show it as a layer, with a colour bar when ``colorbar``; ``at_P`` recomputes it
when the P explorer moves) and scalars into ``record.extra_attrs``. Nothing else changes: the CLI,
the widget and the writer publish extras generically. :func:`napari_rcgan.session.register_output`
is the hook that computes them after each run.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from napari_rcgan import stats

RESULT_KINDS = ("reference", "zero_filled", "mask", "samples", "mean", "error", "std")
"""The kinds of the core result layers (``metadata["rcgan"]["kind"]``)."""

EXPLORED_KINDS = ("mean", "error", "std")
"""Kinds that are statistics of the first P samples: they follow the P explorer."""

LAYER_NAMES = {
    "reference": "reference",
    "zero_filled": "zero-filled",
    "mask": "sampling mask",
    "samples": "posterior samples",
    "mean": "mean (P-average)",
    "error": "|mean − reference|",
    "std": "SD (uncertainty)",
}
"""The layer names the widget gives each kind: they say what the layer shows."""

DATASET_OF_KIND = {"reference": "target"}
"""Dataset names that differ from the layer kind (the reference is ``target`` in the file)."""

SLICE_AXIS_KEY = "slice_axis"
"""``metadata["rcgan"]`` key: True when the layer's data has a singleton slice axis just before
the image axes (the widget places MRI results at their slice of the input volume, so the
samples get their own axis and the input's slice slider does not scroll through them)."""

ARRAYS_KEY = "rcgan_arrays"
"""Samples-layer metadata key holding the run's reference / zero-filled / mask arrays, so the
result can be written from the samples layer alone."""


@dataclass
class Output:
    """One extra output of a run (beyond the core datasets).

    Attributes:
        data: the array written as a dataset (float32 in the file); None for none.
        title: layer name in the widget; empty for no layer.
        colormap: napari colormap of the layer.
        colorbar: show napari's colour bar overlay on the layer (values that matter).
        at_P: recomputes ``data`` for the first P samples (the P explorer); None if fixed.
    """

    data: np.ndarray | None = None
    title: str = ""
    colormap: str = "gray"
    colorbar: bool = False
    at_P: Callable[[int], np.ndarray] | None = None

    def value(self, P: int | None) -> np.ndarray | None:
        """The data for the first ``P`` samples (or the stored data)."""
        if self.at_P is not None and P is not None:
            return self.at_P(P)
        return self.data


@dataclass
class ResultRecord:
    """One run as the schema sees it: the sample stack, the inputs and what describes them.

    Attributes:
        stack: the drawn samples with prefix sums (``stack.mean(P)``, ``stack.std(P)``).
        zero_filled, mask: display images of the measurement ``(H, W[, 3])`` / ``(H, W)``.
        reference: the fully sampled (or original) image, or None.
        task: ``"mri"`` or ``"inpainting"``; ``R`` the achieved acceleration (None: inpainting).
        slice: the MRI slice index (None: inpainting).
        requested: the P asked for; ``complete`` False when cancelled early.
        backend, precision: what ran the generator (``torch``/``openvino``, ``fp32``/``bf16``).
        extras / extra_attrs: outputs added by features (see the module docstring).
    """

    stack: stats.SampleStack
    zero_filled: np.ndarray
    mask: np.ndarray
    reference: np.ndarray | None
    task: str
    R: float | None
    seed: int
    mask_kind: str
    weights: str
    requested: int
    slice: int | None = None
    complete: bool = True
    backend: str = "torch"
    precision: str = "fp32"
    extras: dict[str, Output] = field(default_factory=dict)
    extra_attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def drawn(self) -> int:
        return len(self.stack)

    @property
    def rgb(self) -> bool:
        return len(self.stack.sample_shape) == 3

    def _P(self, P: int | None) -> int:
        return self.drawn if P is None else int(P)

    def explored(self, P: int | None = None, grey_maps: bool = False) -> dict[str, np.ndarray]:
        """``mean``, ``std`` and (with a reference) ``error`` of the first P samples.

        With ``grey_maps`` the colour SD and error maps are averaged over the channels (the
        widget shows them with a colour map and a colour bar).
        """
        P = self._P(P)
        mean = self.stack.mean(P)
        arrays = {"mean": mean, "std": self.stack.std(P)}
        if self.reference is not None:
            arrays["error"] = stats.absolute_error(mean, self.reference)
        if grey_maps and self.rgb:
            for kind in ("std", "error"):
                if kind in arrays:
                    arrays[kind] = arrays[kind].mean(axis=-1)
        return arrays

    def datasets(self, P: int | None = None) -> dict[str, np.ndarray]:
        """The float32 datasets of the file schema for the first P samples (default: all)."""
        P = self._P(P)
        explored = self.explored(P)
        datasets = {
            "samples": self.stack.samples[:P],
            "mean": explored["mean"],
            "std": explored["std"],
            "zero_filled": self.zero_filled,
            "mask": self.mask,
        }
        if self.reference is not None:
            datasets["target"] = self.reference
            datasets["error"] = explored["error"]
        for name, output in self.extras.items():
            value = output.value(P)
            if value is not None:
                datasets[name] = value
        return datasets

    def attrs(self, P: int | None = None) -> dict[str, Any]:
        """The attributes of the file schema (``R`` is NaN for inpainting)."""
        attrs: dict[str, Any] = {
            "task": self.task,
            "R": math.nan if self.R is None else float(self.R),
            "P": self._P(P),
            "seed": int(self.seed),
            "mask_kind": self.mask_kind,
            "weights": str(self.weights),
            "complete": bool(self.complete),
            "backend": self.backend,
            "precision": self.precision,
        }
        if self.slice is not None:
            attrs["slice"] = int(self.slice)
        attrs.update(self.extra_attrs)
        return attrs

    def layer_info(self, kind: str, P: int | None = None, *, input_name: str = "",
                   run: int = 0) -> dict[str, Any]:
        """``metadata["rcgan"]`` of the layer of ``kind``; ``P`` is the explorer's P."""
        explored = kind in EXPLORED_KINDS or (
            kind in self.extras and self.extras[kind].at_P is not None
        )
        info = {
            "kind": kind,
            "P": self._P(P) if explored else self.drawn,
            "R": None if self.R is None else float(self.R),
            "seed": int(self.seed),
            "weights": str(self.weights),
            "task": self.task,
            "mask_kind": self.mask_kind,
            "slice": None if self.slice is None else int(self.slice),
            "partial": not self.complete,
            "backend": self.backend,
            "precision": self.precision,
            "samples_drawn": self.drawn,
            "requested": int(self.requested),
            "input": input_name,
            "run": int(run),
        }
        if kind == "samples" and self.extra_attrs:
            info["attrs"] = {key: _plain(value) for key, value in self.extra_attrs.items()}
        return info


def record_from_info(
    samples: np.ndarray,
    P: int,
    zero_filled: np.ndarray,
    mask: np.ndarray,
    reference: np.ndarray | None,
    info: dict[str, Any],
    extras: dict[str, np.ndarray] | None = None,
) -> ResultRecord:
    """A :class:`ResultRecord` of the first ``P`` of ``samples`` from layer ``metadata["rcgan"]``."""
    stack = stats.SampleStack(samples.shape[1:], capacity=P)
    stack.extend(samples[:P])
    R = info.get("R")
    task = str(info.get("task", ""))
    slice_index = info.get("slice")
    return ResultRecord(
        stack=stack,
        zero_filled=zero_filled,
        mask=mask,
        reference=reference,
        task=task,
        R=None if R is None else float(R),
        seed=int(info.get("seed", 0)),
        mask_kind=str(info.get("mask_kind", "hole" if task != "mri" else "")),
        weights=str(info.get("weights", "")),
        requested=int(info.get("requested", P)),
        slice=None if slice_index is None else int(slice_index),
        complete=not bool(info.get("partial", False)),
        backend=str(info.get("backend", "torch")),
        precision=str(info.get("precision", "fp32")),
        extras={name: Output(data=value) for name, value in (extras or {}).items()},
        extra_attrs=dict(info.get("attrs") or {}),
    )


def layer_array(data: Any, info: dict[str, Any]) -> np.ndarray:
    """A result layer's data as the schema's float32 array (the slice axis removed)."""
    array = np.asarray(data, dtype=np.float32)
    if info.get(SLICE_AXIS_KEY) and array.ndim >= 3 and array.shape[-3] == 1:
        array = array[..., 0, :, :]
    return array


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return value
