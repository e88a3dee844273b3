"""PosteriorSampler: weights → generator → P posterior samples with data consistency.

Typical use::

    sampler = PosteriorSampler("mri", device="auto")
    measurement = sampler.measure_mri(kspace, R=8, mask_kind="gro")
    result = sampler.sample(measurement, P=32, seed=0)
    result.stack.mean(8), result.stack.std(8)

The code of sample ``i`` (the UNet's noise channels, or CoModGAN's ``z`` and noise maps) is drawn
from a generator seeded by ``(seed, i)`` on the CPU, so a sample does not depend on the chunk
size, the device or which other samples are drawn.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch

from napari_rcgan.backends import make_backend, weights_fingerprint
from napari_rcgan.errors import (
    MaskError,
    NumericalError,
    ParameterError,
    RcganError,
    SamplingCancelled,
    WeightsError,
)
from napari_rcgan.physics import transforms
from napari_rcgan.physics.fft import fft2c, ifft2c
from napari_rcgan.physics.inpainting import validate_hole
from napari_rcgan.physics.masks import SamplingMask, column_mask
from napari_rcgan.stats import SampleStack
from napari_rcgan.weights import Weights, load_weights

MAX_SAMPLES = 512
COIL_COMBINES = ("rss", "sense")

CancelFlag = Callable[[], bool] | threading.Event | None
ProgressCallback = Callable[[int, int], None] | None


DEVICE_TYPES = ("cpu", "cuda", "mps")
MAX_SEED = 2**63
KSPACE_PEAK_RANGE = (1e-15, 1e15)
"""Peak k-space magnitudes the float32 pipeline represents: squares (RSS, variances) of the images
of a peak outside this range overflow to Inf or underflow to zero."""


def resolve_device(device: str = "auto") -> torch.device:
    """``"auto"`` picks CUDA, then MPS, then CPU; an explicit name must be available.

    Raises:
        ParameterError: not a CPU/CUDA/MPS device name, or that device is not present.
    """
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as error:
        resolved = None
        cause: BaseException | None = error
    else:
        cause = None
    if resolved is None or resolved.type not in DEVICE_TYPES:
        raise ParameterError(
            f"device {device!r}: unsupported; use auto, cpu, cuda, cuda:N or mps"
        ) from cause
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ParameterError(f"device {device!r}: requested but CUDA is not available")
    if resolved.type == "cuda" and (resolved.index or 0) >= torch.cuda.device_count():
        raise ParameterError(
            f"device {device!r}: no such CUDA device; {torch.cuda.device_count()} present"
        )
    if resolved.type == "mps" and not torch.backends.mps.is_available():
        raise ParameterError(f"device {device!r}: requested but MPS is not available")
    return resolved


def check_seed(seed: int) -> int:
    """A seed must be an integer in ``[0, 2**63)`` (it is stored as an int64 attribute)."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < MAX_SEED:
        raise ParameterError(f"seed: must be an integer from 0 to 2**63 - 1, got {seed!r}")
    return int(seed)


def check_chunk(chunk: int) -> int:
    """A chunk (samples per forward pass) must be an integer of at least 1."""
    if isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer)) or chunk < 1:
        raise ParameterError(f"chunk: must be an integer of at least 1, got {chunk!r}")
    return int(chunk)


def available_devices() -> list[str]:
    """Device names the widget offers: ``auto``, ``cpu`` and each CUDA device / MPS present."""
    devices = ["auto", "cpu"]
    devices += [f"cuda:{index}" for index in range(torch.cuda.device_count())]
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        devices.append("mps")
    return devices


def code_vector(seed: int, index: int, shape: tuple[int, ...]) -> torch.Tensor:
    """The code vector ``z`` of sample ``index`` for run ``seed``: standard normal, float32, CPU."""
    state = np.random.SeedSequence([seed, index]).generate_state(2, dtype=np.uint32)
    generator = torch.Generator().manual_seed(int(state[0]) << 31 ^ int(state[1]))
    return torch.randn(shape, generator=generator)


class Measurement(Protocol):
    """What the sampler needs from a task: network input, finishing, and display images."""

    task: str

    def network_input(self) -> torch.Tensor: ...

    def finish(self, output: torch.Tensor) -> torch.Tensor: ...

    def display(self, images: torch.Tensor) -> np.ndarray: ...


@dataclass
class MRIMeasurement:
    """An undersampled multicoil acquisition, ready for the generator.

    Attributes:
        target: fully sampled virtual-coil images ``(K, S, S)`` complex64, or None.
        measured_kspace: ``M ⊙ FFT(x)``, ``(K, S, S)`` complex64.
        mask: the sampling mask (columns of the ``(S, S)`` k-space).
        normalization: mean/std of the zero-filled image's real channels.
        coil_combine: ``"rss"`` or ``"sense"``; ``sense_maps`` ``(K, S, S)`` when SENSE.
        source: file and slice, for messages.
        fov: how the acquisition was mapped to ``S × S`` (``"crop"`` or ``"full"``).
        pixel_scale: size of a pixel in pixels of the acquisition's ``F × F`` field of view
            (1 for ``crop``; ``F / S`` for ``full``: the scale that overlays results on the input).
    """

    target: torch.Tensor | None
    measured_kspace: torch.Tensor
    mask: SamplingMask
    normalization: transforms.Normalization
    coil_combine: str = "rss"
    sense_maps: torch.Tensor | None = None
    task: str = "mri"
    source: str = "k-space"
    fov: str = "crop"
    pixel_scale: float = 1.0

    @property
    def mask_tensor(self) -> torch.Tensor:
        return torch.from_numpy(self.mask.mask)

    @property
    def zero_filled(self) -> torch.Tensor:
        """``IFFT(M ⊙ FFT(x))``, ``(K, S, S)`` complex64."""
        return ifft2c(self.measured_kspace)

    def network_input(self) -> torch.Tensor:
        """Normalised zero-filled channels ``(2K, S, S)``."""
        return self.normalization.apply(transforms.complex_to_channels(self.zero_filled))

    def finish(self, output: torch.Tensor) -> torch.Tensor:
        """Generator output ``(n, 2K, S, S)`` → data-consistent coil images ``(n, K, S, S)``."""
        images = transforms.channels_to_complex(self.normalization.invert(output.float()))
        kspace = self.measured_kspace.to(images.device)
        return transforms.data_consistency(images, kspace, self.mask_tensor)

    def display(self, images: torch.Tensor) -> np.ndarray:
        """Coil-combined magnitude ``(n, S, S)`` float32 of coil images ``(..., K, S, S)``."""
        if self.coil_combine == "sense":
            combined = transforms.sense_combine(images, self.sense_maps).abs()
        else:
            combined = transforms.rss(images)
        return combined.float().cpu().numpy()

    @property
    def reference(self) -> np.ndarray | None:
        return None if self.target is None else self.display(self.target)

    @property
    def zero_filled_display(self) -> np.ndarray:
        return self.display(self.zero_filled)

    @property
    def mask_display(self) -> np.ndarray:
        return self.mask.mask.astype(np.float32)


@dataclass
class InpaintingMeasurement:
    """An image with a hole. ``image`` ``(C, H, W)`` in [0, 1]; ``hole`` bool ``(H, W)``;
    ``source`` names the image in messages."""

    image: torch.Tensor
    hole: np.ndarray
    has_reference: bool = True
    task: str = "inpainting"
    source: str = "image"

    def network_input(self) -> torch.Tensor:
        """``[(2·image − 1)·(1 − hole), hole]``: ``(C + 1, H, W)``, the hole zeroed."""
        known = torch.from_numpy(~self.hole).float()
        return torch.cat([(2 * self.image - 1) * known, 1 - known[None]], dim=0)

    def finish(self, output: torch.Tensor) -> torch.Tensor:
        """Output ``(n, C, H, W)`` in [−1, 1] → images in [0, 1], the known pixels restored."""
        generated = ((output.float() + 1) / 2).clamp(0, 1)
        hole = torch.from_numpy(self.hole).to(generated.device)
        return torch.where(hole, generated, self.image.to(generated.device))

    def display(self, images: torch.Tensor) -> np.ndarray:
        """``(..., C, H, W)`` → ``(..., H, W, C)`` (colour) or ``(..., H, W)`` (grey), float32."""
        array = images.float().cpu().numpy()
        return array[..., 0, :, :] if array.shape[-3] == 1 else np.moveaxis(array, -3, -1)

    @property
    def reference(self) -> np.ndarray | None:
        return self.display(self.image) if self.has_reference else None

    @property
    def zero_filled_display(self) -> np.ndarray:
        known = torch.from_numpy(~self.hole).float()
        return self.display(self.image * known)

    @property
    def mask_display(self) -> np.ndarray:
        return self.hole.astype(np.float32)


@dataclass
class SampleChunk:
    """Samples ``start .. start + n − 1``: ``images`` (coil images or colour images, CPU) and
    ``display`` (what is shown: ``(n, H, W)`` or ``(n, H, W, 3)``)."""

    start: int
    images: torch.Tensor
    display: np.ndarray


@dataclass
class PosteriorSamples:
    """The result of :meth:`PosteriorSampler.sample`.

    ``complete`` is False when the run was cancelled after some chunks; ``stack`` then holds the
    samples drawn so far, with consistent mean and SD.
    """

    measurement: MRIMeasurement | InpaintingMeasurement
    stack: SampleStack
    images: torch.Tensor
    seed: int
    requested: int
    weights: str
    complete: bool = True
    timings: dict[str, float] = field(default_factory=dict)
    backend: str = "torch"
    precision: str = "fp32"

    @property
    def P(self) -> int:
        return len(self.stack)


def _is_cancelled(cancel: CancelFlag) -> bool:
    if cancel is None:
        return False
    if isinstance(cancel, threading.Event):
        return cancel.is_set()
    return bool(cancel())


def _is_out_of_memory(error: BaseException) -> bool:
    return isinstance(error, torch.cuda.OutOfMemoryError) or "out of memory" in str(error).lower()


def preprocess_mri(
    kspace: np.ndarray | torch.Tensor,
    image_size: tuple[int, int],
    coils: int,
    mask: SamplingMask,
    source: str = "k-space",
    fov: str = "crop",
    coil_compression: str = "reference",
) -> MRIMeasurement:
    """One fully sampled slice → an undersampled, normalised measurement (paper, Section 4.2).

    Mapping to ``image_size`` (:func:`napari_rcgan.physics.transforms.map_acquisition`):
    ``fov="crop"`` crops the image centre (the paper; removes readout oversampling), ``"full"``
    keeps the whole field of view at lower resolution (central k-space block) → SVD compression to
    ``coils`` virtual coils (when there are more, or also when there are exactly ``coils`` with
    ``coil_compression="always"``: :func:`~napari_rcgan.physics.transforms.to_virtual_coils`) →
    ``y = IFFT(M ⊙ FFT(x))`` → normalisation by the zero-filled channels' mean/std. Training
    (``training.datasets``) and inference share it.

    Args:
        kspace: complex ``(C, H, W)`` with ``C ≥ coils`` and ``H, W ≥ image_size``.
        mask: column mask of shape ``image_size``.
        source: file and slice, for messages.

    Raises:
        ParameterError: wrong rank, non-finite values, too few coils or too small k-space.
        MaskError: a mask of another shape.
    """
    kspace = torch.as_tensor(np.asarray(kspace)).to(torch.complex64)
    if kspace.ndim != 3:
        raise ParameterError(f"{source}: k-space must be (coils, H, W), got {tuple(kspace.shape)}")
    if not torch.isfinite(torch.view_as_real(kspace)).all():
        raise ParameterError(f"{source}: k-space contains NaN or Inf")
    _check_dynamic_range(kspace, source)
    if kspace.shape[0] < coils:
        raise ParameterError(f"{source}: has {kspace.shape[0]} coils, at least {coils} are needed")
    size = tuple(image_size)
    if mask.mask.shape != size:
        raise MaskError(f"{source}: mask of shape {mask.mask.shape} does not fit the {size} image")
    try:
        images, pixel_scale = transforms.map_acquisition(kspace, size, fov)
    except ParameterError as error:
        raise ParameterError(f"{source}: {error}") from error
    target = transforms.to_virtual_coils(images, coils, coil_compression)
    measured, zero_filled = transforms.apply_kspace_mask(target, torch.from_numpy(mask.mask))
    try:
        normalization = transforms.Normalization.of(transforms.complex_to_channels(zero_filled))
    except ParameterError as error:
        raise ParameterError(f"{source}: {error}") from error
    return MRIMeasurement(
        target, measured, mask, normalization, source=source, fov=fov, pixel_scale=pixel_scale
    )


def _check_dynamic_range(kspace: torch.Tensor, source: str) -> None:
    """All-zero k-space, or a peak outside :data:`KSPACE_PEAK_RANGE`, is an error naming ``source``.

    Raises:
        ParameterError: nothing was measured.
        NumericalError: float32 processing would overflow to Inf or underflow to zero.
    """
    peak = float(torch.view_as_real(kspace).abs().max()) if kspace.numel() else 0.0
    if peak == 0:
        raise ParameterError(f"{source}: k-space is all zero: nothing was measured")
    low, high = KSPACE_PEAK_RANGE
    if not low <= peak <= high:
        raise NumericalError(
            f"{source}: k-space peaks at {peak:.3g}, outside the {low:g} to {high:g} float32 "
            "processing represents without overflow or underflow; rescale the data"
        )


class PosteriorSampler:
    """Draws posterior samples with an rcGAN generator.

    Args:
        weights: a :class:`Weights`, a path, a bundled name (``mri``, ``faces``) or
            ``random:mri`` / ``random:inpainting`` / ``random:comodgan``.
        device: ``"auto"`` (CUDA, then MPS, then CPU) or a torch device name.
        backend: ``"auto"`` (OpenVINO on the CPU when installed, else torch), ``"torch"`` or
            ``"openvino"``; see :mod:`napari_rcgan.backends`.
        precision: ``"auto"`` (bf16 where the hardware has it natively, else fp32), ``"fp32"``
            or ``"bf16"``.
    """

    def __init__(
        self,
        weights: str | os.PathLike | Weights = "mri",
        device: str = "auto",
        backend: str = "auto",
        precision: str = "auto",
    ) -> None:
        self.weights = weights if isinstance(weights, Weights) else load_weights(weights)
        self.metadata = self.weights.metadata
        self.device = resolve_device(device)
        self.generator = self.weights.build_generator().to(self.device)
        self.backend = make_backend(
            self.generator, self.device, backend, precision, fingerprint=self._fingerprint
        )
        self._sense_cache: dict[tuple, torch.Tensor] = {}

    def _fingerprint(self) -> str:
        """The OpenVINO cache key of these weights: their architecture and tensors."""
        meta = self.metadata
        architecture = (
            meta.task, meta.architecture, meta.image_size, meta.channels, meta.base_width,
            meta.num_pool_layers, meta.input_skip, meta.latent_dim, meta.mapping_layers,
            meta.channel_base, meta.channel_max,
        )
        return f"{architecture}:{weights_fingerprint(self.generator)}"

    @property
    def precision(self) -> str:
        """``"fp32"`` or ``"bf16"``: the precision the generator runs in."""
        return self.backend.precision

    @property
    def name(self) -> str:
        return self.weights.source

    def require_task(self, task: str, what: str) -> None:
        if self.metadata.task != task:
            raise WeightsError(
                f"{self.name}: weights are for {self.metadata.task}, but the input is {what}; "
                f"choose {task} weights"
            )

    def measure_mri(
        self,
        kspace: np.ndarray | torch.Tensor,
        mask: SamplingMask | None = None,
        R: float = 4.0,
        mask_kind: str = "gro",
        mask_seed: int = 0,
        coil_combine: str = "rss",
        source: str = "k-space",
    ) -> MRIMeasurement:
        """Preprocess one fully sampled slice (Section 4.2) and undersample it.

        Args:
            kspace: complex ``(C, H, W)`` k-space of one slice (raw or compact layout).
            mask: a ready mask of shape ``image_size``; else one of ``mask_kind`` at ``R``.
            source: name used in error messages (file and slice).
        """
        self.require_task("mri", "multicoil MRI k-space")
        coils = self.metadata.channels
        size = tuple(self.metadata.image_size)
        shape = np.shape(kspace)
        if len(shape) == 3 and shape[0] < coils:
            raise WeightsError(
                f"{source}: has {shape[0]} coils but the weights {self.name} need at least {coils}"
            )
        if len(shape) == 3 and (shape[1] < size[0] or shape[2] < size[1]):
            raise ParameterError(
                f"{source}: k-space {shape[1]}x{shape[2]} is smaller than the {size[0]}x{size[1]} "
                f"image the weights {self.name} expect"
            )
        if coil_combine not in COIL_COMBINES:
            raise ParameterError(f"coil combine {coil_combine!r}: use one of {COIL_COMBINES}")
        if mask is None:
            mask = column_mask(size, mask_kind, R, seed=mask_seed)
        measurement = preprocess_mri(
            kspace, size, coils, mask, source, self.metadata.fov, self.metadata.coil_compression
        )
        measurement.coil_combine = coil_combine
        if coil_combine == "sense":
            # As in the paper's evaluation, ESPIRiT runs on the fully sampled k-space.
            target = measurement.target
            key = (source, float(target.abs().sum()))
            if key not in self._sense_cache:
                self._sense_cache[key] = transforms.espirit_maps(
                    fft2c(target), calib_width=min(24, min(size) // 2)
                )
            measurement.sense_maps = self._sense_cache[key]
        return measurement

    def measure_inpainting(
        self, image: np.ndarray, hole: np.ndarray, has_reference: bool = True, source: str = "image"
    ) -> InpaintingMeasurement:
        """An image ``(H, W)`` or ``(H, W, C)`` in [0, 1] with a bool ``hole`` ``(H, W)``."""
        self.require_task("inpainting", "an image to inpaint")
        array = np.asarray(image, dtype=np.float32)
        if array.ndim == 2:
            array = array[..., None]
        if array.ndim != 3:
            raise ParameterError(
                f"{source}: expected an (H, W) or (H, W, C) image, got {array.shape}"
            )
        if not np.all(np.isfinite(array)):
            raise ParameterError(f"{source}: the image contains NaN or Inf")
        channels = self.metadata.channels
        if array.shape[-1] != channels:
            array = _match_channels(array, channels)
        size = tuple(self.metadata.image_size)
        if array.shape[:2] != size:
            raise ParameterError(
                f"{source}: image is {array.shape[0]}x{array.shape[1]} but the weights "
                f"{self.name} expect {size[0]}x{size[1]}; resize or crop it first"
            )
        hole = validate_hole(hole, size, source=f"{source} hole")
        tensor = torch.from_numpy(np.ascontiguousarray(np.moveaxis(array, -1, 0)))
        return InpaintingMeasurement(tensor, hole, has_reference, source=source)

    def _default_chunk(self, P: int) -> int:
        """Batches help GPUs and CoModGAN's many small layers (CPU, demo faces, P=32: 1.4-1.9 s
        batched vs 4.7 s one by one); on a CPU one UNet sample per forward pass is fastest
        (measured)."""
        if self.device.type == "cuda" or self.metadata.architecture == "comodgan":
            return min(P, 32)
        return 1

    def _forward(
        self, network_input: torch.Tensor, seed: int, start: int, count: int
    ) -> torch.Tensor:
        shape = self.generator.code_shape(*network_input.shape[-2:])
        codes = torch.stack([code_vector(seed, start + i, shape) for i in range(count)])
        return self.backend(network_input.expand(count, -1, -1, -1), codes)

    def _check_finite(
        self,
        images: torch.Tensor,
        display: np.ndarray,
        measurement: MRIMeasurement | InpaintingMeasurement,
        start: int,
        count: int,
    ) -> None:
        """NaN or Inf in the samples is an error naming the input and the weights, never a result."""
        values = torch.view_as_real(images) if images.is_complex() else images
        if bool(torch.isfinite(values).all()) and np.all(np.isfinite(display)):
            return
        raise NumericalError(
            f"{measurement.source}: samples {start}..{start + count - 1} hold NaN or Inf: the "
            f"weights {self.name} or the input are outside what float32 computation represents"
        )

    def iter_chunks(
        self,
        measurement: MRIMeasurement | InpaintingMeasurement,
        P: int,
        seed: int = 0,
        chunk_size: int | None = None,
        cancel: CancelFlag = None,
    ) -> Iterator[SampleChunk]:
        """Yield the P samples chunk by chunk; on CUDA out-of-memory the chunk is halved.

        Stops early (without error) when ``cancel`` is set; check the number of samples received.
        """
        _check_count(P)
        check_seed(seed)
        chunk = self._default_chunk(P) if chunk_size is None else check_chunk(chunk_size)
        network_input = measurement.network_input()
        start = 0
        while start < P:
            if _is_cancelled(cancel):
                return
            count = min(chunk, P - start)
            try:
                output = self._forward(network_input, seed, start, count)
            except RuntimeError as error:
                if not _is_out_of_memory(error) or count == 1:
                    raise
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
                chunk = max(1, count // 2)
                continue
            with torch.inference_mode():
                images = measurement.finish(output)
            display = measurement.display(images)
            self._check_finite(images, display, measurement, start, count)
            yield SampleChunk(start, images.cpu(), display)
            start += count

    def sample(
        self,
        measurement: MRIMeasurement | InpaintingMeasurement,
        P: int,
        seed: int = 0,
        chunk_size: int | None = None,
        progress: ProgressCallback = None,
        cancel: CancelFlag = None,
        on_chunk: Callable[[SampleChunk], None] | None = None,
    ) -> PosteriorSamples:
        """Draw P samples; returns them with their prefix-sum statistics.

        Raises:
            SamplingCancelled: when cancelled before the first chunk finished.
        """
        import time

        started = time.perf_counter()
        stack: SampleStack | None = None
        images: list[torch.Tensor] = []
        first = None
        for chunk in self.iter_chunks(measurement, P, seed, chunk_size, cancel):
            if stack is None:
                stack = SampleStack(chunk.display.shape[1:], capacity=P)
                first = time.perf_counter() - started
            stack.extend(chunk.display)
            images.append(chunk.images)
            if on_chunk is not None:
                on_chunk(chunk)
            if progress is not None:
                progress(len(stack), P)
        if stack is None:
            raise SamplingCancelled("sampling was cancelled before the first samples were drawn")
        timings = {"first_chunk_s": first, "total_s": time.perf_counter() - started}
        conversion = self.backend.pop_conversion_time()
        if conversion is not None:
            timings["conversion_s"] = conversion
        return PosteriorSamples(
            measurement=measurement,
            stack=stack,
            images=torch.cat(images),
            seed=seed,
            requested=P,
            weights=self.name,
            complete=len(stack) == P,
            timings=timings,
            backend=self.backend.name,
            precision=self.precision,
        )


def _match_channels(image: np.ndarray, channels: int) -> np.ndarray:
    """Grey ↔ colour conversion of an ``(H, W, C)`` image: luminance mean or channel repetition."""
    if channels == 1:
        return image.mean(axis=-1, keepdims=True)
    if image.shape[-1] == 1:
        return np.repeat(image, channels, axis=-1)
    return image[..., :channels]


def _check_count(P: int) -> None:
    if not isinstance(P, (int, np.integer)) or not 1 <= P <= MAX_SAMPLES:
        raise ParameterError(
            f"P (number of samples) must be an integer in 1..{MAX_SAMPLES}, got {P}"
        )


__all__ = [
    "InpaintingMeasurement",
    "MRIMeasurement",
    "PosteriorSampler",
    "PosteriorSamples",
    "RcganError",
    "SampleChunk",
    "available_devices",
    "check_chunk",
    "check_seed",
    "code_vector",
    "resolve_device",
]
