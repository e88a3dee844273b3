"""Inference backends: run the generator forward with torch or OpenVINO, in fp32 or bf16.

The sampler hands a backend the condition ``(n, C, H, W)`` and the code vectors ``(n, *code)``
(float32, CPU) and gets back ``generator.sample(condition, code)``, float32 on the sampler's
device. Nothing else of the sampler depends on the backend.

- ``torch``: eager PyTorch, channels-last on CPU and CUDA; bf16 through autocast.
- ``openvino``: the generator converted by ``openvino.convert_model`` and compiled for the CPU
  with an explicit ``INFERENCE_PRECISION_HINT`` (OpenVINO silently runs bf16 on CPUs with AMX
  unless told ``f32``). Converted models are cached per (weights, input shape, precision) for the
  process; the conversion runs on the first forward pass, i.e. in whatever thread samples.
- ``auto``: OpenVINO when the optional extra is installed and the device is the CPU, else torch.

Precision ``auto`` is bf16 where the hardware has it natively (a CPU reporting AMX or
AVX512_BF16; a CUDA GPU with bf16), fp32 elsewhere. Asking for bf16 on a CPU without it is an
error rather than a silently slow emulation.

The environment variables ``NAPARI_RCGAN_BACKEND`` and ``NAPARI_RCGAN_PRECISION`` replace
``auto`` everywhere (API, CLI, widget) when set, e.g. ``NAPARI_RCGAN_BACKEND=torch``; an explicit
choice still wins.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
import warnings
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Protocol

import torch
from torch import nn

from napari_rcgan.errors import BackendWarning, ParameterError, RcganError

BACKENDS = ("auto", "torch", "openvino")
PRECISIONS = ("auto", "fp32", "bf16")
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")
OPENVINO_INSTALL = "pip install 'napari-rcgan[openvino]'"
CPUINFO = Path("/proc/cpuinfo")
DEFAULT_ENV = {"backend": "NAPARI_RCGAN_BACKEND", "precision": "NAPARI_RCGAN_PRECISION"}


class Backend(Protocol):
    """Runs ``generator.sample(condition, code)`` and returns the output as float32."""

    name: str
    precision: str

    def __call__(self, condition: torch.Tensor, code: torch.Tensor) -> torch.Tensor: ...

    def pop_conversion_time(self) -> float | None: ...


def cpu_flags(cpuinfo: str) -> set[str]:
    """The feature flags of the first processor in a ``/proc/cpuinfo`` text (x86 ``flags``)."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return set(value.split())
    return set()


@lru_cache(maxsize=1)
def cpu_has_bf16() -> bool:
    """Whether the CPU computes bf16 natively (AMX or AVX512_BF16).

    Reads ``/proc/cpuinfo`` on Linux; elsewhere asks torch's CPU feature probe.
    """
    if CPUINFO.is_file():
        return bool(cpu_flags(CPUINFO.read_text()) & set(BF16_CPU_FLAGS))
    probes = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(bool(getattr(torch.cpu, probe, lambda: False)()) for probe in probes)


def openvino_available() -> bool:
    """Whether the optional ``openvino`` package imports (a broken install counts as absent)."""
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


def failure_reason(error: BaseException) -> str:
    """One line saying why a conversion failed, e.g. ``No conversion rule found for ...``."""
    lines = [line.strip(" -") for line in str(error).splitlines() if line.strip(" -")]
    preferred = [line for line in lines if line.startswith("No conversion rule found")]
    informative = [line for line in lines if not line.startswith("Check '")]
    reason = (preferred or informative or [""])[0]
    return f"{type(error).__name__}: {reason}"[:300]


def _requested(kind: str, value: str) -> tuple[str, str]:
    """``(value, name)``: ``auto`` replaced by the environment default, and what to call it."""
    variable = DEFAULT_ENV[kind]
    if value == "auto" and os.environ.get(variable, "auto").strip().lower() not in ("", "auto"):
        return os.environ[variable].strip().lower(), f"{kind} (from {variable})"
    return value, kind


def resolve_backend(backend: str, device: torch.device) -> str:
    """``"torch"`` or ``"openvino"`` for the requested backend on ``device``.

    Raises:
        ParameterError: an unknown name, OpenVINO on a non-CPU device, or OpenVINO requested
            without the optional extra installed.
    """
    backend, name = _requested("backend", backend)
    if backend not in BACKENDS:
        raise ParameterError(f"{name} {backend!r}: use one of {', '.join(BACKENDS)}")
    if backend == "auto":
        return "openvino" if device.type == "cpu" and openvino_available() else "torch"
    if backend == "openvino":
        if device.type != "cpu":
            raise ParameterError(
                f"{name} openvino runs on the CPU, but the device is {device}; use --device cpu"
            )
        if not openvino_available():
            raise ParameterError(
                f"{name} openvino: OpenVINO is not installed; install it with {OPENVINO_INSTALL}"
            )
    return backend


def resolve_precision(precision: str, device: torch.device) -> str:
    """``"fp32"`` or ``"bf16"`` for the requested precision on ``device``.

    Raises:
        ParameterError: an unknown name, or bf16 on hardware without native bf16.
    """
    precision, name = _requested("precision", precision)
    if precision not in PRECISIONS:
        raise ParameterError(f"{name} {precision!r}: use one of {', '.join(PRECISIONS)}")
    if device.type == "cpu":
        native = cpu_has_bf16()
        what = "this CPU has no native bf16 (it reports neither AMX nor AVX512_BF16)"
    elif device.type == "cuda":
        native = torch.cuda.is_bf16_supported()
        what = f"the GPU {torch.cuda.get_device_name(device)} has no bf16"
    else:
        native = False
        what = f"bf16 is offered on CPU and CUDA devices, not on {device.type}"
    if precision == "auto":
        return "bf16" if native else "fp32"
    if precision == "bf16" and not native:
        raise ParameterError(f"{name} bf16: {what}; use --precision fp32 (or auto)")
    return precision


def weights_fingerprint(module: nn.Module) -> str:
    """A digest of the module's parameters and buffers (names, shapes, values): the cache key."""
    digest = hashlib.blake2b(digest_size=16)
    for name, tensor in module.state_dict().items():
        values = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}{tuple(tensor.shape)}{values.dtype}".encode())
        digest.update(values.view(torch.uint8).numpy().tobytes() if values.numel() else b"")
    return digest.hexdigest()


class TorchBackend:
    """Eager PyTorch: channels-last on CPU/CUDA, bf16 autocast when ``precision == "bf16"``.

    ``module`` is a generator (``sample(condition, code)``); it is made channels-last in place.
    """

    name = "torch"

    def __init__(self, module: nn.Module, device: torch.device, precision: str) -> None:
        self.device = device
        self.precision = precision
        self.channels_last = device.type in ("cuda", "cpu")
        self.module = module.to(memory_format=torch.channels_last) if self.channels_last else module

    def _on_device(self, tensor: torch.Tensor) -> torch.Tensor:
        tensor = tensor.to(self.device)
        if self.channels_last and tensor.ndim == 4:
            tensor = tensor.contiguous(memory_format=torch.channels_last)
        return tensor

    def __call__(self, condition: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        condition, code = self._on_device(condition), self._on_device(code)
        with torch.inference_mode():
            if self.precision == "bf16":
                with torch.autocast(self.device.type, dtype=torch.bfloat16):
                    return self.module.sample(condition, code).float()
            return self.module.sample(condition, code)

    def pop_conversion_time(self) -> float | None:
        return None


class _Sample(nn.Module):
    """``generator.sample(condition, code)`` as a module's forward (what OpenVINO converts)."""

    def __init__(self, generator: nn.Module) -> None:
        super().__init__()
        self.generator = generator

    def forward(self, condition: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        return self.generator.sample(condition, code)


class _OpenVINOCache:
    """Process-wide cache: converted models per (weights, input shapes without the batch),
    compiled ones per precision. The batch axis is dynamic, so every chunk size of a run (and
    of later runs) uses one conversion: converting runs Python for seconds and holds the GIL."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.converted: dict[tuple, object] = {}
        self.compiled: dict[tuple, object] = {}
        self.failures: dict[tuple, str] = {}
        self.core = None

    def get(self, module: nn.Module, fingerprint: str, shapes: tuple[tuple[int, ...], ...],
            precision: str):
        """The compiled model of ``module.sample`` for inputs of ``shapes`` (condition, code):
        ``(compiled model, seconds spent converting or None when cached)``; raises on failure."""
        import openvino

        item_shapes = tuple(shape[1:] for shape in shapes)
        key = (fingerprint, item_shapes, precision)
        with self.lock:
            if key in self.compiled:
                return self.compiled[key], None
            if key in self.failures:
                raise RcganError(self.failures[key])
            started = time.perf_counter()
            try:
                if self.core is None:
                    self.core = openvino.Core()
                model = self.converted.get((fingerprint, item_shapes))
                if model is None:
                    with torch.no_grad(), warnings.catch_warnings():
                        # Tracing warns about shape checks; shapes are fixed per converted model.
                        warnings.simplefilter("ignore")
                        model = openvino.convert_model(
                            _Sample(module),
                            example_input=tuple(torch.zeros(shape) for shape in shapes),
                            input=[openvino.PartialShape([-1, *shape]) for shape in item_shapes],
                        )
                    self.converted[(fingerprint, item_shapes)] = model
                config = {
                    "INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32",
                    "PERFORMANCE_HINT": "LATENCY",
                    "INFERENCE_NUM_THREADS": torch.get_num_threads(),
                }
                compiled = self.core.compile_model(model, "CPU", config)
            except Exception as error:  # any conversion failure: the caller falls back to torch
                self.failures[key] = failure_reason(error)
                raise RcganError(self.failures[key]) from error
            self.compiled[key] = compiled
            return compiled, time.perf_counter() - started


_CACHE = _OpenVINOCache()


class OpenVINOBackend:
    """The generator converted to OpenVINO and compiled for the CPU (fp32 or bf16).

    On a conversion failure it warns once (:class:`BackendWarning`, naming the reason) and runs
    the torch backend from then on; ``name`` then reads ``"torch"``.
    """

    def __init__(
        self, module: nn.Module, precision: str, fingerprint: str | Callable[[], str] | None = None
    ) -> None:
        self.module = module
        self.precision = precision
        self._fingerprint = fingerprint
        self._requests: dict[tuple[tuple[int, ...], ...], object] = {}
        self._conversion_s: float | None = None
        self.fallback: TorchBackend | None = None
        self.failure: str | None = None

    @property
    def name(self) -> str:
        return "torch" if self.fallback is not None else "openvino"

    @property
    def fingerprint(self) -> str:
        if callable(self._fingerprint) or self._fingerprint is None:
            source = self._fingerprint
            self._fingerprint = source() if callable(source) else weights_fingerprint(self.module)
        return self._fingerprint

    def compiled_model(self, shapes: tuple[tuple[int, ...], ...]):
        """The compiled model for inputs of ``shapes`` (condition, code), converting on first use;
        raises on failure."""
        compiled, seconds = _CACHE.get(self.module, self.fingerprint, shapes, self.precision)
        if seconds is not None:
            self._conversion_s = (self._conversion_s or 0.0) + seconds
        return compiled

    def __call__(self, condition: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        if self.fallback is None:
            shapes = (tuple(condition.shape), tuple(code.shape))
            item_shapes = tuple(shape[1:] for shape in shapes)
            try:
                request = self._requests.get(item_shapes)
                if request is None:
                    request = self.compiled_model(shapes).create_infer_request()
                    self._requests[item_shapes] = request
            except RcganError as error:
                self.failure = str(error)
                self.fallback = TorchBackend(self.module, torch.device("cpu"), self.precision)
                warnings.warn(
                    f"OpenVINO conversion failed ({self.failure}); sampling with torch instead",
                    BackendWarning,
                    stacklevel=2,
                )
            else:
                inputs = [tensor.float().contiguous().cpu().numpy() for tensor in (condition, code)]
                request.infer(dict(enumerate(inputs)))
                return torch.from_numpy(request.get_output_tensor(0).data.copy())
        return self.fallback(condition, code)

    def pop_conversion_time(self) -> float | None:
        """Seconds spent converting since the last call (None when everything came cached)."""
        seconds, self._conversion_s = self._conversion_s, None
        return seconds


def make_backend(
    module: nn.Module,
    device: torch.device,
    backend: str = "auto",
    precision: str = "auto",
    fingerprint: str | Callable[[], str] | None = None,
) -> TorchBackend | OpenVINOBackend:
    """The backend that runs ``module`` (an eval-mode generator on ``device``).

    Args:
        backend: ``auto``, ``torch`` or ``openvino`` (see :func:`resolve_backend`).
        precision: ``auto``, ``fp32`` or ``bf16`` (see :func:`resolve_precision`).
        fingerprint: the weights' cache key, or a function computing it on first use; default:
            a digest of the module's tensors.
    """
    name = resolve_backend(backend, device)
    resolved = resolve_precision(precision, device)
    if name == "openvino":
        return OpenVINOBackend(module, resolved, fingerprint)
    return TorchBackend(module, device, resolved)
