"""Generator weights: ``.safetensors`` tensors plus a JSON metadata block (never pickle).

The metadata lives under the key ``"rcgan"`` of the safetensors header and describes the task,
the architecture, the data the weights fit and how they were trained and measured. Weights are
named by a path, by a bundled name (``mri``, ``faces``: files in ``napari_rcgan/weights/``) or by
``random:mri`` / ``random:inpainting`` / ``random:comodgan`` (a randomly initialised network, for
trying the pipeline before trained weights exist).

Two generator architectures exist (metadata key ``"architecture"``): ``"unet"``, the residual UNet
of the paper's MRI experiments (the default of files written before the key existed), and
``"comodgan"``, the co-modulated generator of the paper's face experiment (inpainting only).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from napari_rcgan.errors import WeightsError
from napari_rcgan.models import CoModGenerator, ResidualUNet
from napari_rcgan.models.comodgan import MAX_RESOLUTION, MIN_RESOLUTION
from napari_rcgan.physics.transforms import COIL_COMPRESSIONS, FOV_MAPPINGS

FORMAT_VERSION = 1
METADATA_KEY = "rcgan"
TASKS = ("mri", "inpainting")
BUNDLED_DIR = Path(__file__).parent / "weights"
NOISE_CHANNELS = 2
ARCHITECTURES = ("unet", "comodgan")
RANDOM_NAMES = ("mri", "inpainting", "comodgan")
Generator = ResidualUNet | CoModGenerator


MAX_IMAGE_SIDE = 16384
MAX_CHANNELS = 256
MAX_BASE_WIDTH = 4096
MAX_POOL_LAYERS = 8


def min_image_size(num_pool_layers: int) -> int:
    """Smallest image side a generator with ``num_pool_layers`` levels takes: every level halves."""
    return 2**num_pool_layers


def _integer(low: int, high: int) -> Callable[[Any], bool]:
    return lambda value: (
        isinstance(value, int) and not isinstance(value, bool) and low <= value <= high
    )


def _one_of(choices: tuple[str, ...]) -> tuple[str, Callable[[Any], bool]]:
    """Schema entry for a value among ``choices``, e.g. ``('"crop" or "full"', check)``."""
    return " or ".join(f'"{choice}"' for choice in choices), lambda value: value in choices


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _conformal_block(value: Any) -> bool:
    """The ``conformal`` metadata: ``{}`` or alpha, P and a non-negative scale per R."""
    if not isinstance(value, dict):
        return False
    if not value:
        return True
    scale = value.get("scale")
    return (
        _number(value.get("alpha")) and 0 < value["alpha"] < 1
        and _integer(1, 1 << 20)(value.get("P"))
        and isinstance(scale, dict)
        and all(_number(v) and v >= 0 for v in scale.values())
        and isinstance(value.get("coverage", {}), dict)
    )


METADATA_SCHEMA: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "task": (f"one of {TASKS}", lambda value: isinstance(value, str) and value in TASKS),
    "image_size": (
        f"[H, W], two integers from 1 to {MAX_IMAGE_SIDE}",
        lambda value: isinstance(value, list)
        and len(value) == 2
        and all(map(_integer(1, MAX_IMAGE_SIDE), value)),
    ),
    "channels": (f"an integer from 1 to {MAX_CHANNELS}", _integer(1, MAX_CHANNELS)),
    "base_width": (f"an integer from 2 to {MAX_BASE_WIDTH}", _integer(2, MAX_BASE_WIDTH)),
    "num_pool_layers": (f"an integer from 1 to {MAX_POOL_LAYERS}", _integer(1, MAX_POOL_LAYERS)),
    "input_skip": ("true or false", lambda value: isinstance(value, bool)),
    "architecture": (
        f"one of {ARCHITECTURES}", lambda value: isinstance(value, str) and value in ARCHITECTURES
    ),
    "latent_dim": (f"an integer from 1 to {MAX_BASE_WIDTH}", _integer(1, MAX_BASE_WIDTH)),
    "mapping_layers": ("an integer from 1 to 16", _integer(1, 16)),
    "channel_base": ("an integer from 1 to 65536", _integer(1, 65536)),
    "channel_max": (f"an integer from 1 to {MAX_BASE_WIDTH}", _integer(1, MAX_BASE_WIDTH)),
    "masks": (
        "a list of mask names",
        lambda value: isinstance(value, list) and all(isinstance(item, str) for item in value),
    ),
    "acceleration": (
        "a list of accelerations R >= 1",
        lambda value: isinstance(value, list) and all(_number(r) and r >= 1 for r in value),
    ),
    "beta_sd": ("a finite number or null", lambda value: value is None or _number(value)),
    "beta_sd_by_R": (
        'a list of {"R_min", "R_max", "beta_sd"} numbers',
        lambda value: isinstance(value, list)
        and all(
            isinstance(item, dict)
            and set(item) == {"R_min", "R_max", "beta_sd"}
            and all(map(_number, item.values()))
            for item in value
        ),
    ),
    "fov": _one_of(FOV_MAPPINGS),
    "coil_compression": _one_of(COIL_COMPRESSIONS),
    "training": ("an object", lambda value: isinstance(value, dict)),
    "metrics": ("an object", lambda value: isinstance(value, dict)),
    "conformal": (
        'empty, or {"alpha" in (0, 1), "P" >= 1, "scale": {"<R>": number >= 0}, ...}',
        _conformal_block,
    ),
    "notes": ("a string", lambda value: isinstance(value, str)),
    "format_version": (f"an integer from 1 to {FORMAT_VERSION}", _integer(1, FORMAT_VERSION)),
}
"""Every metadata key: what its value must be (for messages) and the check."""

REQUIRED_KEYS = ("task", "image_size", "channels")


def _check_format_version(version: Any, source: str) -> None:
    if _number(version) and version > FORMAT_VERSION:
        raise WeightsError(
            f"{source}: weights format {version} is newer than this napari-rcgan understands "
            f"({FORMAT_VERSION}); upgrade napari-rcgan"
        )


@dataclass
class WeightsMetadata:
    """What a weights file is for and how it was made.

    Attributes:
        task: ``"mri"`` or ``"inpainting"``.
        image_size: ``[H, W]`` the generator was trained at.
        channels: image channels: virtual coils for MRI (the generator sees ``2·channels``), colour
            channels (3 or 1) for inpainting.
        architecture: ``"unet"`` (residual UNet) or ``"comodgan"`` (co-modulated generator).
        base_width: generator width of the first UNet level (128 in the paper).
        num_pool_layers: UNet depth (4 in the paper).
        input_skip: the generator adds its measurement input to its output (not in the paper).
        latent_dim: CoModGAN: size of the code ``z`` and the mapped code ``w`` (512).
        mapping_layers: CoModGAN: dense layers of the mapping network (8).
        channel_base, channel_max: CoModGAN width rule ``min(channel_base / 2**stage,
            channel_max)`` (16384 and 512 in CoModGAN).
        masks: mask kinds the weights were trained with (MRI), e.g. ``["gro"]``.
        acceleration: ``[R_min, R_max]`` trained (MRI).
        beta_sd: SD-reward weight at the end of training (one value; for a table over R, the
            value of the bin that holds the middle of ``acceleration``).
        beta_sd_by_R: mask-agnostic MRI weights: β_SD per R bin at the end of training,
            ``[{"R_min", "R_max", "beta_sd"}, ...]`` (bins ``[R_min, R_max)``, the last closed).
        fov: MRI: how an acquisition larger than ``image_size`` is mapped to it: ``"crop"``
            (centre of the image, the paper) or ``"full"`` (whole field of view, lower
            resolution).
        coil_compression: MRI: ``"reference"`` (SVD-compress acquisitions to ``channels`` virtual
            coils only when they have more, as the rcGAN reference does) or ``"always"`` (also
            rotate an acquisition with exactly ``channels`` coils into virtual coils).
        training: free-form description (data, steps, hardware, duration, config).
        metrics: measured evaluation metrics.
        conformal: conformal interval calibration, ``{"alpha", "P", "scale": {"<R>": λ},
            "coverage": {"<R>": measured}}`` (``napari-rcgan calibrate``); empty when none.
        notes: anything a user must know (e.g. "demo quality").
    """

    task: str
    image_size: list[int]
    channels: int
    architecture: str = "unet"
    base_width: int = 128
    num_pool_layers: int = 4
    input_skip: bool = False
    latent_dim: int = 512
    mapping_layers: int = 8
    channel_base: int = 16384
    channel_max: int = 512
    masks: list[str] = field(default_factory=list)
    acceleration: list[float] = field(default_factory=list)
    beta_sd: float | None = None
    beta_sd_by_R: list[dict[str, float]] = field(default_factory=list)
    fov: str = "crop"
    coil_compression: str = "reference"
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    conformal: dict[str, Any] = field(default_factory=dict)
    notes: str = ""
    format_version: int = FORMAT_VERSION

    @property
    def in_channels(self) -> int:
        """Generator input channels: measurement (+ hole mask for inpainting) + code vector."""
        if self.task == "mri":
            return 2 * self.channels + NOISE_CHANNELS
        return self.channels + 1 + NOISE_CHANNELS

    @property
    def out_channels(self) -> int:
        return 2 * self.channels if self.task == "mri" else self.channels

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    def describe_generator(self) -> str:
        """One line naming the generator architecture and its size."""
        if self.architecture == "comodgan":
            return (
                f"generator: CoModGAN (co-modulated StyleGAN2), latent {self.latent_dim}, "
                f"{self.mapping_layers} mapping layers, widths min({self.channel_base}/2^stage, "
                f"{self.channel_max})"
            )
        return (
            f"generator: residual UNet, base width {self.base_width}, {self.num_pool_layers} levels"
            + (", input skip" if self.input_skip else "")
        )

    @classmethod
    def from_json(cls, text: str, source: str) -> WeightsMetadata:
        """Parse and check the metadata block; nothing is built from it before it passes.

        Raises:
            WeightsError: not JSON, unknown or missing keys, or a value of the wrong type/range.
        """
        try:
            values = json.loads(text)
        except (json.JSONDecodeError, TypeError) as error:
            raise WeightsError(f"{source}: unreadable rcgan metadata ({error})") from error
        if not isinstance(values, dict):
            raise WeightsError(f"{source}: rcgan metadata must be a JSON object, found {values!r}")
        _check_format_version(values.get("format_version", FORMAT_VERSION), source)
        unknown = sorted(set(values) - set(METADATA_SCHEMA))
        missing = sorted(key for key in REQUIRED_KEYS if key not in values)
        if unknown or missing:
            raise WeightsError(
                f"{source}: rcgan metadata "
                + (f"has unknown keys {unknown}" if unknown else f"lacks the keys {missing}")
            )
        metadata = cls(**values)
        metadata.validate(source)
        return metadata

    def validate(self, source: str) -> None:
        """Check every field's type and range (:data:`METADATA_SCHEMA`) and the network's minimum
        image size (``2**num_pool_layers``).

        Raises:
            WeightsError: naming ``source``, the key, what was expected and what was found.
        """
        values = asdict(self)
        _check_format_version(values["format_version"], source)
        for key, (expected, accepts) in METADATA_SCHEMA.items():
            if not accepts(values[key]):
                raise WeightsError(
                    f"{source}: metadata {key} must be {expected}, found {values[key]!r}"
                )
        smallest = min_image_size(self.num_pool_layers)
        if self.architecture == "unet" and min(self.image_size) < smallest:
            raise WeightsError(
                f"{source}: metadata image_size {self.image_size} is smaller than the "
                f"{smallest}x{smallest} a generator with {self.num_pool_layers} levels needs"
            )
        if self.architecture == "comodgan":
            self._validate_comodgan(source)

    def _validate_comodgan(self, source: str) -> None:
        if self.task != "inpainting":
            raise WeightsError(
                f"{source}: architecture comodgan is an inpainting generator, but the task is "
                f"{self.task!r}"
            )
        height, width = self.image_size
        if height != width or height & (height - 1) or not MIN_RESOLUTION <= height <= MAX_RESOLUTION:
            raise WeightsError(
                f"{source}: architecture comodgan needs a square image whose side is a power of "
                f"two from {MIN_RESOLUTION} to {MAX_RESOLUTION} (the StyleGAN blocks), found "
                f"image_size {height}x{width}"
            )

    def acceleration_warning(self, R: float, name: str = "the weights") -> str | None:
        """A one-line warning when ``R`` is outside the trained ``acceleration`` range (MRI).

        Returns:
            the message, or None when ``R`` is inside the range (or nothing was recorded).
        """
        if self.task != "mri" or not self.acceleration or R is None or not math.isfinite(R):
            return None
        low, high = min(self.acceleration), max(self.acceleration)
        if low - 1e-6 <= R <= high + 1e-6:
            return None
        trained = f"R = {low:g}" if low == high else f"R {low:g} to {high:g}"
        return (
            f"R={R:.3g} is outside the range the weights {name} were trained for ({trained}): "
            "expect a worse reconstruction and an unreliable SD map"
        )

    def _describe_channels(self) -> str:
        """One summary line: colour channels, or MRI virtual coils and the coil-compression rule."""
        count = self.channels
        if self.task != "mri":
            return f"colour channels: {count}"
        if self.coil_compression == "always":
            return f"coils: {count} virtual (SVD of {count} coils or more)"
        return f"coils: {count} (more are SVD-compressed, {count} used as measured)"

    def describe(self) -> str:
        """Human-readable multi-line summary (used by ``napari-rcgan info`` and the widget)."""
        lines = [
            f"task: {self.task}",
            f"image size: {self.image_size[0]}x{self.image_size[1]}",
            self._describe_channels(),
            self.describe_generator(),
        ]
        if self.masks:
            lines.append(f"masks: {', '.join(self.masks)}")
        if self.acceleration:
            lines.append(f"acceleration R: {self.acceleration[0]:g} to {self.acceleration[-1]:g}")
        if self.task == "mri":
            lines.append(
                "field of view: whole (lower resolution)" if self.fov == "full"
                else "field of view: centre crop"
            )
        if self.beta_sd_by_R:
            last = len(self.beta_sd_by_R) - 1
            bins = ", ".join(  # half-open bins but the last, which is closed
                f"[{b['R_min']:g}, {b['R_max']:g}{']' if number == last else ')'}: {b['beta_sd']:.4g}"
                for number, b in enumerate(self.beta_sd_by_R)
            )
            lines.append(f"beta_SD by R: {bins}")
        elif self.beta_sd is not None:
            lines.append(f"beta_SD: {self.beta_sd:.4g}")
        if self.training.get("std_mult") is not None:
            lines.append(f"reference std_mult: {self.training['std_mult']:.4g}")
        if self.conformal.get("scale"):
            lines.append(
                f"conformal intervals: {100 * (1 - self.conformal['alpha']):g}% at "
                f"P={self.conformal['P']}, R {', '.join(sorted(self.conformal['scale'], key=float))}"
            )
        if self.notes:
            lines.append(f"notes: {self.notes}")
        return "\n".join(lines)


@dataclass
class Weights:
    """A generator state dict with its metadata and where it came from."""

    metadata: WeightsMetadata
    state_dict: dict[str, torch.Tensor]
    source: str

    def build_generator(self) -> Generator:
        """Instantiate the generator and load the tensors (strictly: every key must match).

        The tensors' names and shapes are compared with the architecture (built on the ``meta``
        device, which allocates nothing) before the real network is built.

        Raises:
            WeightsError: tensors of the other architecture than the metadata's, missing,
                unexpected or mis-shaped tensors, or NaN/Inf values.
        """
        expected = self.metadata.architecture
        found = tensor_architecture(self.state_dict)
        if found is not None and found != expected:
            raise WeightsError(
                f"{self.source}: its metadata says architecture {expected!r} but the tensors are "
                f"a {found} generator; expected {expected} tensors (re-export the weights, or "
                f"correct the metadata's \"architecture\")"
            )
        self.check_tensors()
        generator = build_generator(self.metadata)
        generator.load_state_dict(self.state_dict, strict=True)
        return generator.eval()

    def check_tensors(self) -> None:
        """Tensor names and shapes as the metadata's architecture needs, all values finite."""
        with torch.device("meta"):
            expected = {
                key: tuple(value.shape) for key, value in build_generator(self.metadata).state_dict().items()
            }
        found = {key: tuple(value.shape) for key, value in self.state_dict.items()}
        missing = sorted(set(expected) - set(found))
        unexpected = sorted(set(found) - set(expected))
        wrong = sorted(key for key in set(expected) & set(found) if expected[key] != found[key])
        if missing or unexpected or wrong:
            detail = (
                f"missing {missing[0]}" if missing
                else f"unexpected {unexpected[0]}" if unexpected
                else f"{wrong[0]} has shape {found[wrong[0]]}, expected {expected[wrong[0]]}"
            )
            raise WeightsError(
                f"{self.source}: tensors do not fit the architecture in its metadata ({detail}; "
                f"{len(missing) + len(unexpected) + len(wrong)} mismatches)"
            )
        for key, value in self.state_dict.items():
            if value.is_floating_point() and not bool(torch.isfinite(value).all()):
                raise WeightsError(f"{self.source}: tensor {key} holds NaN or Inf; the weights are corrupted")


def tensor_architecture(state_dict: dict[str, torch.Tensor]) -> str | None:
    """The architecture a generator state dict belongs to (None when it is neither)."""
    if any(key.startswith("mapping.") for key in state_dict):
        return "comodgan"
    if any(key.startswith("down_sample_layers.") for key in state_dict):
        return "unet"
    return None


def build_generator(metadata: WeightsMetadata) -> Generator:
    """A freshly initialised generator with the architecture described by ``metadata``."""
    if metadata.architecture == "comodgan":
        return CoModGenerator(
            channels=metadata.channels,
            resolution=metadata.image_size[0],
            latent_dim=metadata.latent_dim,
            mapping_layers=metadata.mapping_layers,
            channel_base=metadata.channel_base,
            channel_max=metadata.channel_max,
        )
    return ResidualUNet(
        metadata.in_channels,
        metadata.out_channels,
        metadata.base_width,
        metadata.num_pool_layers,
        metadata.input_skip,
        NOISE_CHANNELS,
    )


def save_weights(
    path: str | os.PathLike, generator_state: dict[str, torch.Tensor], metadata: WeightsMetadata
) -> Path:
    """Write ``generator_state`` and ``metadata`` to ``path`` atomically."""
    from napari_rcgan.io import atomic_output

    path = Path(path)
    metadata.validate(str(path))
    tensors = {key: value.detach().cpu().contiguous() for key, value in generator_state.items()}
    with atomic_output(path) as temporary:
        save_file(tensors, str(temporary), metadata={METADATA_KEY: metadata.to_json()})
    return path


def update_metrics(spec: str | os.PathLike, metrics: dict[str, Any]) -> Path:
    """Store ``metrics`` in the metadata of a weights file (bundled name or path), atomically.

    The top-level keys of ``metrics`` replace those of the stored metrics; other keys are kept.
    """
    weights = load_weights(spec)
    if weights.source.startswith("random:"):
        raise WeightsError(f"{spec}: random weights have no file to store metrics in")
    weights.metadata.metrics = {**weights.metadata.metrics, **metrics}
    return save_weights(resolve_path(str(spec)), weights.state_dict, weights.metadata)


def portable_name(spec: str | os.PathLike) -> str:
    """How metadata names a file or folder: its last component, never a path of the machine that
    wrote it (weights are shared; ``/home/me/scans/held-out`` is stored as ``held-out``)."""
    name = Path(str(spec).rstrip("/\\")).name
    return name or str(spec)


def read_metadata(path: str | os.PathLike) -> WeightsMetadata:
    """Only the metadata of a weights file (cheap: reads the header)."""
    from safetensors import safe_open

    path = _existing_file(path)
    try:
        with safe_open(str(path), framework="pt") as handle:
            header = handle.metadata() or {}
    except (SafetensorError, OSError, ValueError) as error:
        raise WeightsError(f"{path}: not a valid .safetensors weights file ({error})") from error
    if METADATA_KEY not in header:
        raise WeightsError(f"{path}: safetensors file without napari-rcgan metadata")
    return WeightsMetadata.from_json(header[METADATA_KEY], str(path))


def load_weights(spec: str | os.PathLike) -> Weights:
    """Resolve a weights spec: a path, a bundled name, or ``random:<task>``."""
    text = str(spec)
    if text.startswith("random:"):
        return random_weights(text.split(":", 1)[1])
    path = resolve_path(text)
    metadata = read_metadata(path)
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as error:
        raise WeightsError(f"{path}: corrupted weights file ({error})") from error
    return Weights(metadata, state, text if text in bundled_weights() else str(path))


def resolve_path(spec: str) -> Path:
    """A bundled name (``mri``, ``faces``) or a path to an existing ``.safetensors`` file."""
    bundled = BUNDLED_DIR / f"{spec}.safetensors"
    if bundled.is_file():
        return bundled
    return _existing_file(spec)


def bundled_weights() -> dict[str, Path]:
    """Bundled weights by name."""
    return {path.stem: path for path in sorted(BUNDLED_DIR.glob("*.safetensors"))}


def _existing_file(spec: str | os.PathLike) -> Path:
    path = Path(spec)
    if not path.is_file():
        names = ", ".join(sorted(bundled_weights())) or "none installed"
        raise WeightsError(
            f"{spec}: no such weights file, and not a bundled name (bundled: {names}; "
            f"or {', '.join('random:' + name for name in RANDOM_NAMES)})"
        )
    return path


def random_metadata(task: str) -> WeightsMetadata:
    """Metadata of the randomly initialised stand-in networks (``task`` is a name of
    :data:`RANDOM_NAMES`: ``comodgan`` is a small 256×256 colour CoModGAN inpainter)."""
    if task == "mri":
        return WeightsMetadata(
            task="mri",
            image_size=[384, 384],
            channels=8,
            base_width=16,
            masks=["gro", "equispaced", "random"],
            acceleration=[1.0, 16.0],
            notes="random initialisation: the samples are not meaningful",
        )
    if task == "inpainting":
        return WeightsMetadata(
            task="inpainting",
            image_size=[256, 256],
            channels=3,
            base_width=16,
            notes="random initialisation: the samples are not meaningful",
        )
    if task == "comodgan":
        return WeightsMetadata(
            task="inpainting",
            image_size=[256, 256],
            channels=3,
            architecture="comodgan",
            channel_base=2048,
            channel_max=128,
            notes="random initialisation: the samples are not meaningful",
        )
    raise WeightsError(
        f"random:{task}: unknown name; use {', '.join('random:' + name for name in RANDOM_NAMES)}"
    )


def random_weights(task: str, seed: int = 0) -> Weights:
    """A randomly initialised generator (fixed seed) for ``task``."""
    metadata = random_metadata(task)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        generator = build_generator(metadata)
    return Weights(metadata, generator.state_dict(), f"random:{task}")
