"""The one sampling path: input → measurement → sampler → sample stack → statistics → result.

The CLI, the napari widget and the benchmarks all sample through a :class:`Session`; none of
them re-implements a step. A session is Qt-free and caches the loaded samplers (per weights and
device) and the last few measurements, so a second run on the same input costs only the
sampling::

    session = Session()
    request = SamplingRequest(input="brain.h5", slice=3, R=4, P=16, weights="mri")
    result = session.run(request)            # a RunResult (a schema.ResultRecord)
    result.datasets(8), result.attrs(8)      # the file schema for the first 8 samples

The widget drives :meth:`Session.iter_run` from its worker thread, which yields the growing
result after each chunk, and calls :meth:`Session.finish` at the end.

Adding an option: add a field to :class:`SamplingRequest` (typed, with a default that keeps
today's behaviour) and use it where the step happens (:meth:`Session.sampler`,
:meth:`Session.measure`, :meth:`Session.iter_run`); feature options that only a feature reads go
into ``SamplingRequest.options``. Adding an output: write a producer ``f(result) -> None`` that
reads ``result.request`` / ``result.sampler`` / ``result.measurement`` and fills
``result.extras`` and ``result.extra_attrs`` (see :mod:`napari_rcgan.schema`), register it
with :func:`register_output` when its module is imported, and add the module's name to
:data:`OUTPUT_MODULES`. Producers run in :meth:`Session.finish` (off the GUI thread),
in registration order; a producer that does not apply to a request returns without adding
anything.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from napari_rcgan.errors import InputFileError, ParameterError, SamplingCancelled
from napari_rcgan.io import (
    FastMRIFile,
    is_fastmri_candidate,
    is_image_candidate,
    read_hole_mask,
    read_image,
)
from napari_rcgan.physics.inpainting import center_square_hole
from napari_rcgan.physics.masks import (
    MASK_KINDS,
    SamplingMask,
    column_mask,
    load_mask_file,
    mask_from_array,
)
from napari_rcgan.physics.transforms import full_fov_side
from napari_rcgan.sampler import (
    CancelFlag,
    InpaintingMeasurement,
    MRIMeasurement,
    PosteriorSampler,
)
from napari_rcgan.schema import ResultRecord
from napari_rcgan.stats import SampleStack
from napari_rcgan.threads import apply_intra_op_threads
from napari_rcgan.weights import WeightsMetadata

DEFAULT_WEIGHTS = {"mri": "mri", "inpainting": "faces"}
"""The bundled weights each task uses by default."""
TASKS = tuple(DEFAULT_WEIGHTS)
MEASUREMENT_CACHE_SIZE = 8

Measurement = MRIMeasurement | InpaintingMeasurement


def input_task(path: str | os.PathLike) -> str:
    """``"mri"`` for fastMRI HDF5, ``"inpainting"`` for an image file."""
    if is_fastmri_candidate(path):
        return "mri"
    if is_image_candidate(path):
        return "inpainting"
    raise InputFileError(
        f"{path}: unknown input type; expected a fastMRI .h5 file or a PNG/JPEG/TIFF image"
    )


def default_weights(task: str) -> str:
    """The bundled weights of ``task`` when installed, else ``random:<task>``."""
    from napari_rcgan.weights import bundled_weights

    name = DEFAULT_WEIGHTS[task]
    return name if name in bundled_weights() else f"random:{task}"


def fit_image(image: np.ndarray, size: tuple[int, int], source: str) -> np.ndarray:
    """Centre-crop an image ``(H, W[, C])`` in [0, 1] to a square and resize it to ``size``.

    Raises:
        ParameterError: when the image is smaller than ``size``.
    """
    from PIL import Image

    height, width = image.shape[:2]
    if height < size[0] or width < size[1]:
        raise ParameterError(
            f"{source}: image is {height}x{width}, smaller than the {size[0]}x{size[1]} the "
            f"weights expect"
        )
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = image[top : top + side, left : left + side]
    if square.shape[:2] == tuple(size):
        return square
    resized = Image.fromarray(np.uint8(np.clip(square, 0, 1) * 255)).resize(
        (size[1], size[0]), Image.Resampling.LANCZOS
    )
    return np.asarray(resized, dtype=np.float32) / 255.0


def fit_geometry(shape: tuple[int, int], size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Pixel scale and offset (input pixels) of :func:`fit_image`'s centred crop + resize."""
    side = min(shape)
    top, left = (shape[0] - side) // 2, (shape[1] - side) // 2
    factor = np.array([side / size[0], side / size[1]])
    offset = np.array([top, left]) + 0.5 * factor - 0.5
    return factor, offset


def mri_attrs(measurement: MRIMeasurement, sampler: PosteriorSampler) -> dict[str, Any]:
    """Attributes every MRI result carries: the field-of-view mapping (``fov``), the pixel size
    in input pixels that overlays the result on the input (``pixel_scale``) and, when the achieved
    R is outside the weights' trained range, ``R_warning``."""
    attrs: dict[str, Any] = {"fov": measurement.fov, "pixel_scale": float(measurement.pixel_scale)}
    warning = sampler.metadata.acceleration_warning(measurement.mask.achieved_R, sampler.name)
    if warning is not None:
        attrs["R_warning"] = warning
    return attrs


def input_pixel_scale(request: SamplingRequest, metadata: WeightsMetadata) -> float:
    """Pixel size of an MRI result in pixels of the input's field of view (1: same pixels).

    ``fov="full"`` weights map the ``F × F`` field of view (``F`` the smaller k-space side) to
    their ``image_size``: ``F / image_size``. Reads only the file's header.
    """
    if metadata.task != "mri" or metadata.fov != "full" or request.input is None:
        return 1.0
    side = full_fov_side(FastMRIFile.open(request.input).kspace_shape)
    return side / metadata.image_size[0]


def _digest(array: np.ndarray | None) -> str:
    if array is None:
        return ""
    array = np.ascontiguousarray(array)
    return hashlib.blake2b(array.tobytes(), digest_size=12).hexdigest() + str(array.shape)


@dataclass(frozen=True, eq=False)
class SamplingRequest:
    """Everything one run needs; built by the CLI from its flags, by the widget from its fields.

    Attributes:
        input: a fastMRI ``.h5`` file or an image file (the task follows from it).
        task: ``"mri"`` or ``"inpainting"``; default from ``input``.
        weights: bundled name, ``.safetensors`` path or ``random:<task>``; default: bundled.
        device: ``auto``, ``cpu``, ``cuda[:N]`` or ``mps``.
        backend, precision: what runs the generator (:mod:`napari_rcgan.backends`):
            ``auto``/``torch``/``openvino`` and ``auto``/``fp32``/``bf16``.
        P, seed, chunk_size: samples to draw, their seed, samples per forward pass.
        slice, R, mask, mask_seed, coil_combine: MRI; ``mask`` is a kind (``gro``,
            ``equispaced``, ``random``) or a mask file; ``mask_array`` a user mask (a layer).
        image, hole, hole_array: inpainting; ``image`` ``(H, W[, 3])`` in [0, 1] replaces
            reading ``input``; ``hole`` is ``center`` or a hole file, ``hole_array`` a painted
            hole of the image's shape.
        source: how messages name the input (default: the file and slice).
        options: feature options read by registered output producers.
    """

    input: str | None = None
    task: str | None = None
    weights: str | None = None
    device: str = "auto"
    backend: str = "auto"
    precision: str = "auto"
    P: int = 32
    seed: int = 0
    chunk_size: int | None = None
    slice: int = 0
    R: float = 8.0
    mask: str = "gro"
    mask_array: np.ndarray | None = None
    mask_seed: int = 0
    coil_combine: str = "rss"
    image: np.ndarray | None = None
    hole: str = "center"
    hole_array: np.ndarray | None = None
    source: str = ""
    options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def resolved_task(self) -> str:
        if self.task is not None:
            if self.task not in TASKS:
                raise ParameterError(f"task {self.task!r}: use one of {TASKS}")
            return self.task
        if self.input is None:
            raise ParameterError("no input: give a fastMRI .h5 file or an image")
        return input_task(self.input)

    @property
    def resolved_weights(self) -> str:
        return self.weights or DEFAULT_WEIGHTS[self.resolved_task]

    @property
    def label(self) -> str:
        """The input as messages name it."""
        if self.source:
            return self.source
        if self.resolved_task == "mri":
            return f"{self.input} slice {self.slice}"
        return str(self.input or "image")

    def measurement_key(self) -> tuple:
        """What the measurement depends on (the cache key)."""
        if self.resolved_task == "mri":
            return ("mri", str(self.input), self.slice, float(self.R), self.mask,
                    _digest(self.mask_array), self.mask_seed, self.coil_combine,
                    self.resolved_weights)
        image = self.image if self.image is not None else str(self.input)
        return ("inpainting", _digest(image) if isinstance(image, np.ndarray) else image,
                self.hole, _digest(self.hole_array), self.resolved_weights)


@dataclass
class RunResult(ResultRecord):
    """A run's :class:`~napari_rcgan.schema.ResultRecord` with where it came from.

    Attributes:
        request: the request; ``measurement`` its measurement; ``sampler`` the sampler used.
        timings: ``first_chunk_s`` and ``total_s`` (seconds from the start of the run), and
            ``conversion_s`` when this run converted the generator for OpenVINO (once per
            weights, input shape and precision in a process).
    """

    request: SamplingRequest | None = None
    measurement: Measurement | None = None
    sampler: PosteriorSampler | None = None
    timings: dict[str, float] = field(default_factory=dict)


OutputProducer = Callable[[RunResult], None]
_producers: dict[str, OutputProducer] = {}

OUTPUT_MODULES: tuple[str, ...] = ("napari_rcgan.uncertainty",)
"""Engine modules that register output producers when imported; :meth:`Session.finish` imports
them, so a feature's outputs are there whichever front end runs."""


def register_output(name: str, producer: OutputProducer) -> None:
    """Register ``producer`` under ``name`` (again: replace); it runs in :meth:`Session.finish`."""
    _producers[name] = producer


def registered_outputs() -> dict[str, OutputProducer]:
    return dict(_producers)


class Session:
    """Samplers, measurements and runs; safe to drive from one worker thread at a time.

    Args:
        cache_size: measurements kept (a new run on the same input only samples).
        reserved_cores: CPU cores left to a GUI thread in this process when CPU sampling sets
            torch's intra-op threads (:mod:`napari_rcgan.threads`): 1 in the napari widget.
    """

    def __init__(self, cache_size: int = MEASUREMENT_CACHE_SIZE, reserved_cores: int = 0) -> None:
        self.reserved_cores = reserved_cores
        self.samplers: dict[tuple[str, str, str, str], PosteriorSampler] = {}
        self.measurements: OrderedDict[tuple, Measurement] = OrderedDict()
        self.cache_size = cache_size
        self._lock = threading.Lock()

    def sampler(
        self, weights: str, device: str = "auto", backend: str = "auto", precision: str = "auto"
    ) -> PosteriorSampler:
        """The sampler of ``weights`` on ``device`` with ``backend``/``precision`` (loaded once)."""
        key = (str(weights), str(device), str(backend), str(precision))
        with self._lock:
            if key not in self.samplers:
                self.samplers[key] = PosteriorSampler(
                    weights, device=device, backend=backend, precision=precision
                )
            return self.samplers[key]

    @staticmethod
    def mask(request: SamplingRequest, size: tuple[int, int]) -> SamplingMask:
        """The sampling mask of an MRI request for ``size`` images (also the widget's preview)."""
        if request.mask_array is not None:
            source = request.mask if request.mask not in MASK_KINDS else "mask"
            return mask_from_array(np.asarray(request.mask_array), size, source=source)
        if request.mask not in MASK_KINDS:
            array = load_mask_file(request.mask, width=size[1])
            return mask_from_array(array, size, source=request.mask)
        return column_mask(size, request.mask, float(request.R), seed=request.mask_seed)

    def measure(self, request: SamplingRequest, sampler: PosteriorSampler) -> Measurement:
        """The measurement of ``request`` (cached per :meth:`SamplingRequest.measurement_key`)."""
        key = request.measurement_key()
        with self._lock:
            if key in self.measurements:
                self.measurements.move_to_end(key)
                return self.measurements[key]
        if request.resolved_task == "mri":
            measurement = self._measure_mri(request, sampler)
        else:
            measurement = self._measure_image(request, sampler)
        with self._lock:
            self.measurements[key] = measurement
            while len(self.measurements) > self.cache_size:
                self.measurements.popitem(last=False)
        return measurement

    def _measure_mri(self, request: SamplingRequest, sampler: PosteriorSampler) -> MRIMeasurement:
        sampler.require_task("mri", "multicoil MRI k-space")
        if request.input is None:
            raise ParameterError("no input: an MRI request needs a fastMRI .h5 file")
        data = FastMRIFile.open(request.input)
        size = tuple(sampler.metadata.image_size)
        mask = self.mask(request, size)
        user = request.mask_array is not None or request.mask not in MASK_KINDS
        return sampler.measure_mri(
            data.read_kspace(request.slice),
            mask=mask,
            R=request.R,
            mask_kind="user" if user else request.mask,
            mask_seed=request.mask_seed,
            coil_combine=request.coil_combine,
            source=request.label,
        )

    @staticmethod
    def _measure_image(
        request: SamplingRequest, sampler: PosteriorSampler
    ) -> InpaintingMeasurement:
        sampler.require_task("inpainting", "an image to inpaint")
        size = tuple(sampler.metadata.image_size)
        source = request.label
        image = request.image if request.image is not None else read_image(request.input)
        fitted = fit_image(image, size, source)
        if request.hole_array is not None:
            hole_array, hole_source = request.hole_array, f"{source} hole"
        elif request.hole == "center":
            hole_array, hole_source = None, ""
        else:
            hole_array, hole_source = read_hole_mask(request.hole), str(request.hole)
        if hole_array is None:
            hole = center_square_hole(size)
        elif np.shape(hole_array) == size:
            hole = np.asarray(hole_array) != 0
        else:
            hole = fit_image((np.asarray(hole_array) != 0).astype(np.float32), size,
                             hole_source) > 0.5
        return sampler.measure_inpainting(fitted, hole, source=source)

    def iter_run(
        self, request: SamplingRequest, cancel: CancelFlag = None
    ) -> Iterator[RunResult]:
        """Yield the run's result after each chunk (the same object, growing).

        The first item comes after the first chunk; the weights are loaded and the input is
        measured before it. Stops early, without error, when ``cancel`` is set.
        """
        started = time.perf_counter()
        task = request.resolved_task
        sampler = self.sampler(
            request.resolved_weights, request.device, request.backend, request.precision
        )
        if sampler.device.type == "cpu":
            apply_intra_op_threads(self.reserved_cores)
        measurement = self.measure(request, sampler)
        result: RunResult | None = None
        for chunk in sampler.iter_chunks(
            measurement, request.P, request.seed, chunk_size=request.chunk_size, cancel=cancel
        ):
            if result is None:
                result = self._new_result(request, task, sampler, measurement, chunk.display)
                result.timings["first_chunk_s"] = time.perf_counter() - started
                conversion = sampler.backend.pop_conversion_time()
                if conversion is not None:
                    result.timings["conversion_s"] = conversion
            result.stack.extend(chunk.display)
            result.complete = len(result.stack) == request.P
            result.timings["total_s"] = time.perf_counter() - started
            yield result

    @staticmethod
    def _new_result(request: SamplingRequest, task: str, sampler: PosteriorSampler,
                    measurement: Measurement, display: np.ndarray) -> RunResult:
        mri = isinstance(measurement, MRIMeasurement)
        result = RunResult(
            stack=SampleStack(display.shape[1:], capacity=request.P),
            zero_filled=measurement.zero_filled_display,
            mask=measurement.mask_display,
            reference=measurement.reference,
            task=task,
            R=float(measurement.mask.achieved_R) if mri else None,
            seed=int(request.seed),
            mask_kind=measurement.mask.kind if mri else "hole",
            weights=sampler.name,
            requested=int(request.P),
            slice=int(request.slice) if mri else None,
            complete=False,
            backend=sampler.backend.name,
            precision=sampler.precision,
            request=request,
            measurement=measurement,
            sampler=sampler,
        )
        if mri:
            result.extra_attrs.update(mri_attrs(measurement, sampler))
        return result

    def finish(self, result: RunResult) -> RunResult:
        """Run the registered output producers on a finished (or cancelled) run."""
        for name in OUTPUT_MODULES:
            importlib.import_module(name)
        for producer in _producers.values():
            producer(result)
        return result

    def run(self, request: SamplingRequest, cancel: CancelFlag = None) -> RunResult:
        """Draw all samples of ``request`` and return the finished result.

        Raises:
            SamplingCancelled: cancelled before the first chunk.
        """
        result = None
        for update in self.iter_run(request, cancel):
            result = update
        if result is None:
            raise SamplingCancelled("sampling was cancelled before the first samples were drawn")
        return self.finish(result)

