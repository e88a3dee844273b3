"""Training configuration: YAML files loaded into validated dataclasses.

A config has four top-level keys besides ``task``/``method``/``seed``: ``data``, ``model`` and
``train`` (see the dataclasses below for every key, its default and its meaning). Every error —
an unknown key, a wrong type, an impossible value (``P_train < 2``, ``R < 1``, a negative loss
weight, ...), a missing data folder — is a :class:`ConfigError` whose message names the key and
the file, raised before any training starts.

Paths: ``data.train`` / ``data.val`` are folders; when relative they are taken relative to
``data.root`` (if set), and a relative ``data.root`` relative to the current working directory.
``python -m training.train --data-root DIR`` overrides ``data.root``.
"""

from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import yaml

from napari_rcgan.physics.transforms import COIL_COMPRESSIONS, FOV_MAPPINGS
from training.losses import ADV_REDUCTIONS, E1_ESTIMATES, R_BIN_EDGES, SD_REWARDS

TASKS = ("mri", "inpainting")
METHODS = ("rcgan", "adler", "ohayon", "comodgan")
ARCHITECTURES = ("unet", "comodgan")
SELECTIONS = ("last", "cfid", "calibration", "spearman")
MASK_KINDS = ("gro", "equispaced", "random")
HOLE_KINDS = ("center", "random")
PRECISIONS = ("32", "bf16-mixed", "16-mixed")
DATA_KINDS = ("fastmri", "simulated")
VOLUME_ANATOMY = ("colin27", "mni152")  # training.simulate.SOURCES (not imported: heavy)
ANATOMY_SOURCES = (*VOLUME_ANATOMY, "dipy")  # ... + training.simulate.SLICE_SOURCES
TISSUE_ANATOMY = ("colin27",)  # training.simulate.TISSUE_SOURCES
ADV_SCHEDULE = "schedule"


class ConfigError(ValueError):
    """A training configuration is unreadable, has unknown keys or impossible values."""


@dataclass
class MaskConfig:
    """MRI sampling masks.

    Attributes:
        kind: ``gro``, ``equispaced`` or ``random``, or a list of them (one is drawn uniformly
            per training example: a mask-agnostic model).
        R: one acceleration (e.g. ``4``), or ``[R_min, R_max]``: R drawn uniformly per training
            example (validation examples use fixed, per-example draws).
    """

    kind: str | list[str] = "gro"
    R: float | list[float] = 4.0

    @property
    def kinds(self) -> list[str]:
        return [self.kind] if isinstance(self.kind, str) else list(self.kind)

    @property
    def r_range(self) -> tuple[float, float]:
        if isinstance(self.R, list):
            return float(self.R[0]), float(self.R[-1])
        return float(self.R), float(self.R)


@dataclass
class DataConfig:
    """Where the data is and how an example is made.

    Attributes:
        root: base folder of ``train``/``val`` (optional).
        train: training folder (fastMRI ``.h5`` files for MRI; images for inpainting).
        val: validation folder; ``null`` for inpainting takes ``val_fraction`` of ``train``.
        image_size: side of the square images (MRI: the image-domain crop).
        num_workers: DataLoader worker processes.
        val_examples: use at most this many validation examples (``null``: all).
        coils: MRI virtual coils after SVD compression.
        acquisitions: MRI: keep volumes whose ``acquisition`` attribute is one of these
            (empty list: all).
        min_coils: MRI: keep volumes with at least this many coils.
        min_width: MRI: keep volumes whose k-space has at least this many columns.
        slices_per_volume: MRI: use the first N slices of each volume (``null``: all).
        mask: MRI sampling masks (:class:`MaskConfig`).
        channels: inpainting: 3 (colour) or 1 (grey).
        hole: inpainting: ``center`` (the centred square) or ``random`` (random rectangles).
        hole_size: inpainting: side of the centred square / largest random rectangle.
        val_fraction: inpainting without ``val``: fraction of ``train`` held out.
        flip: inpainting: random horizontal flips of training images.
        kind: MRI: ``fastmri`` (the ``train``/``val`` folders of ``.h5`` files) or
            ``simulated`` (examples generated on the fly from real anatomy with domain
            randomisation, :class:`training.simulate.RandomizedBrainDataset`; no folders).
        fov: MRI: how acquisitions larger than ``image_size`` are mapped to it, ``crop`` (the
            paper: image centre) or ``full`` (whole field of view, lower resolution).
        coil_compression: MRI: ``reference`` (SVD-compress to ``coils`` virtual coils only
            volumes with more coils, as the rcGAN reference) or ``always`` (also rotate volumes
            with exactly ``coils`` into virtual coils); stored in the weights.
        anatomy: MRI ``simulated``: anatomy sources used for training and validation
            (the volumes ``colin27``, ``mni152``; at least one) and for training only (``dipy``:
            11 single slices of two more subjects); the others stay out for evaluation.
        anatomy_weights: MRI ``simulated``: the probability of each ``anatomy`` source
            (normalised; one positive weight per source); null draws them uniformly.
        acquisition_size: MRI ``simulated``: side of the simulated acquisition, mapped to
            ``image_size`` by ``fov``.
        examples_per_epoch: MRI ``simulated``: training examples per epoch.
        val_contrasts: MRI ``simulated``: contrasts of the validation examples that tune β_SD,
            ``randomised`` (like training: T1-, T2-, PD-like and arbitrary) or ``realistic``
            (T1-, T2- and PD-like only, like the scans users bring).
        val_simulation: MRI ``simulated``: how the validation examples are simulated,
            ``randomised`` (like training) or ``evaluation`` (like the evaluation and sample
            files: upright T1/T2 template slices, birdcage coils, 2× readout oversampling;
            :func:`training.simulate.evaluation_like_kspace`), so that β_SD is tuned on the
            acquisitions the weights will be used on.
        blur_probability: MRI ``simulated``: fraction of the training and validation examples
            whose anatomy is blurred before the acquisition is simulated (lower native
            resolution; :func:`training.simulate.randomized_kspace`).
        evaluation_like_fraction: MRI ``simulated``: fraction of the training examples
            simulated like the evaluation files (as ``val_simulation: evaluation``) instead of
            domain-randomised; 0 (default) trains on randomised examples only.
        tissue_contrast_fraction: MRI ``simulated``: fraction of the randomised training and
            validation examples of a source with tissue fractions (``colin27``) whose contrast
            is built from its CSF / grey / white-matter fractions, with the rest of the head
            apart (:func:`training.simulate.tissue_contrast`), instead of a random map of the
            T1 intensity (:func:`training.simulate.random_contrast`); 0 (default): none.
    """

    root: str | None = None
    train: str = "train"
    val: str | None = "val"
    image_size: int = 384
    num_workers: int = 4
    val_examples: int | None = None
    coils: int = 8
    acquisitions: list[str] = field(default_factory=lambda: ["AXT2"])
    min_coils: int = 8
    min_width: int = 384
    slices_per_volume: int | None = 8
    mask: MaskConfig = field(default_factory=MaskConfig)
    channels: int = 3
    hole: str = "center"
    hole_size: int = 128
    val_fraction: float = 0.05
    flip: bool = True
    kind: str = "fastmri"
    fov: str = "crop"
    coil_compression: str = "reference"
    anatomy: list[str] = field(default_factory=lambda: ["colin27"])
    anatomy_weights: list[float] | None = None
    acquisition_size: int = 256
    examples_per_epoch: int = 1000
    val_contrasts: str = "randomised"
    val_simulation: str = "randomised"
    blur_probability: float = 0.0
    evaluation_like_fraction: float = 0.0
    tissue_contrast_fraction: float = 0.0

    def folder(self, split: str) -> Path | None:
        """The resolved folder of ``split`` (``"train"`` or ``"val"``), or None."""
        value = self.train if split == "train" else self.val
        if value is None:
            return None
        path = Path(os.path.expanduser(value))
        if not path.is_absolute() and self.root is not None:
            path = Path(os.path.expanduser(self.root)) / path
        return path


@dataclass
class ModelConfig:
    """Network sizes.

    Attributes:
        architecture: ``unet`` (the residual UNet and its critic) or ``comodgan`` (the CoModGAN
            generator and StyleGAN2 residual critic of the paper's face experiment; inpainting,
            power-of-two image sizes 32..1024).
        base_width: generator (residual UNet) width of the first level (128 in the paper).
        num_pool_layers: generator depth (4 in the paper).
        input_skip: the generator learns a correction added to its measurement input (not in
            the paper; helps short trainings such as the CPU demo).
        critic_width: critic width of the first layer (32 in the reference).
        critic_num_down: critic pooling blocks (6 in the reference: 384 → 6);
            ``image_size`` must be divisible by ``2**critic_num_down``.
        latent_dim: comodgan: size of ``z`` and ``w`` (512).
        mapping_layers: comodgan: mapping-network depth (8).
        channel_base, channel_max: comodgan width rule ``min(channel_base / 2**stage,
            channel_max)`` for the generator and the critic (16384 and 512 in CoModGAN).
        minibatch_sd: comodgan critic's minibatch standard-deviation layer; ``null``: on for
            ``method: comodgan``, off otherwise (the paper's rcGAN drops it).
    """

    architecture: str = "unet"
    base_width: int = 128
    num_pool_layers: int = 4
    input_skip: bool = False
    critic_width: int = 32
    critic_num_down: int = 6
    latent_dim: int = 512
    mapping_layers: int = 8
    channel_base: int = 16384
    channel_max: int = 512
    minibatch_sd: bool | None = None

    def critic_minibatch_sd(self, method: str) -> bool:
        """Whether the comodgan critic gets the minibatch-SD layer under ``method``."""
        return method == "comodgan" if self.minibatch_sd is None else self.minibatch_sd


@dataclass
class TrainConfig:
    """Optimisation.

    Attributes:
        epochs: training epochs.
        batch_size: examples per device and step.
        p_train: samples per example in the regulariser (P_train ≥ 2; 2 in the paper).
        p_val: samples per validation example for the β_SD update (P_val, 8 in the paper).
        lr, betas: Adam settings of both networks (1e-3, (0, 0.99) in the reference).
        critic_lr: critic learning rate (default: ``lr``).
        critic_steps: critic updates per generator update.
        gp_weight: WGAN gradient-penalty weight (10).
        drift_weight: critic drift-penalty weight (0.001).
        adv_weight: β_adv: a number, or ``schedule`` (the reference MRI schedule by epoch,
            :func:`training.losses.adversarial_weight`).
        adv_reduction: ``mean`` (the paper's expectation, eq. 4) or ``sum`` (the reference code:
            the generator's critic scores are summed over the examples of the per-device batch,
            so β_adv acts batch_size times as strongly); see :mod:`training.losses`.
        beta_sd: initial β_SD (default: β_SD^N of eq. 11).
        beta_sd_autotune: update β_SD once per validation epoch by eq. (23) (rcgan only).
        sd_reward: ``paper`` (eq. 9) or ``reference`` (the reference code's unbiased
            ``torch.std`` over the P samples, eq. 9 / sqrt(π/2) at P = 2); see
            :func:`training.losses.sd_reward`.
        mu_sd: step μ_SD of eq. (23).
        beta_sd_bins: inner R edges of a mask-agnostic MRI model's per-R β_SD table (edges
            inside ``data.mask.R`` split it into bins; :func:`training.losses.r_bins`).
        beta_sd_bin_pooling: eq. (23) for a bin of that table measures [E1/E_Pval] on the
            validation examples of the bin and of this many neighbouring bins on each side
            (0: its own only; binomial weights, 1-2-1 for 1; see
            :func:`training.losses.pool_neighbouring_bins`). Keeps a fine table smooth in R when
            each bin has few examples.
        beta_sd_fit_degree: after each validation's per-bin eq. (23) updates, replace that
            table by its least-squares polynomial of this degree in R (null: off; see
            :func:`training.losses.fit_beta_sd_table`). Keeps β_SD a smooth function of R, so
            neighbouring accelerations are not trained with very different weights.
        e1_estimate: Ê_1 of eq. (23): ``first`` (eq. 22: the error of each validation example's
            first sample) or ``all`` (the mean error of all its P_val samples: the same
            expectation with less noise, for bins with few validation examples); see
            :func:`training.losses.error_energies`.
        generator_ema_half_life: keep an exponential moving average of the generator's weights
            with this half-life in iterations (null: off, as in the paper). Validation, the
            β_SD auto-tuning and the export then use the averaged generator; training updates
            the raw one. From random weights the average warms up (its n-th step decays by at
            most ``(1 + n)/(10 + n)``; README, *β_SD per R*: why, and what it did on the demo run).
        l2_weight: weight of L_2,P for ``method: ohayon``.
        r1_gamma: ``method: comodgan``: R1 penalty weight γ (the critic loss gets
            ``γ/2·E||∇D(x)||²`` on real images; 10 in CoModGAN).
        r1_interval: ``method: comodgan``: lazy R1, applied every N batches with weight
            ``N·γ/2``, the critic's Adam lr and betas scaled by ``N/(N+1)`` (16 in CoModGAN).
        pl_weight: ``method: comodgan``: StyleGAN2 path-length penalty weight (0: off, as in
            CoModGAN's official code; 2 in the PyTorch port the paper used for its baseline).
        pl_interval: ``method: comodgan``: lazy path-length penalty every N batches (weight
            ``N·pl_weight``, the generator's Adam settings scaled by ``N/(N+1)``; 4).
        precision: ``32``, ``bf16-mixed`` or ``16-mixed``.
        checkpoint_every_n_steps: also write ``last.ckpt`` every N iterations (0: only at
            epoch ends).
        keep_epoch_checkpoints: keep ``epoch=NNN.ckpt`` of every epoch besides ``last.ckpt``.
        log_every_n_steps: logging interval in iterations.
        val_every_n_epochs: validation (and β_SD update) interval.
        num_sanity_val_steps: validation batches run before training to catch errors early.
        val_cfid: also compute the validation CFID each validation epoch (one draw per
            example; VGG-16 embeddings for MRI, Inception for faces; needs the weights of
            ``napari-rcgan features prepare``).
        select: ``last`` (export ``last.ckpt``), ``cfid``: keep ``best.ckpt`` = the epoch with
            the lowest validation CFID among those whose [E1/E_Pval]dB is within
            ``select_tolerance_db`` of the ideal 10·log10(2P/(P+1)) (the reference's selection),
            or ``calibration``: keep ``best.ckpt`` = the epoch whose validation [E1/E_Pval]dB is
            closest to that ideal, averaged over the R bins
            (:func:`training.module.calibration_distance_db`), or ``spearman``: keep
            ``best.ckpt`` = the epoch with the highest validation Spearman(SD, |error|)
            (``sd_error_spearman``, averaged over the R bins that have examples) among those
            whose calibration distance is within ``select_tolerance_db``.
        select_tolerance_db: that tolerance (0.25 dB in the reference).
    """

    epochs: int = 100
    batch_size: int = 9
    p_train: int = 2
    p_val: int = 8
    lr: float = 1e-3
    betas: list[float] = field(default_factory=lambda: [0.0, 0.99])
    critic_lr: float | None = None
    critic_steps: int = 1
    gp_weight: float = 10.0
    drift_weight: float = 0.001
    adv_weight: float | str = ADV_SCHEDULE
    adv_reduction: str = "mean"
    beta_sd: float | None = None
    beta_sd_autotune: bool = True
    sd_reward: str = "paper"
    mu_sd: float = 0.02
    beta_sd_bins: list[float] = field(default_factory=lambda: list(R_BIN_EDGES))
    beta_sd_bin_pooling: int = 0
    beta_sd_fit_degree: int | None = None
    e1_estimate: str = "first"
    generator_ema_half_life: int | None = None
    l2_weight: float = 1.0
    r1_gamma: float = 10.0
    r1_interval: int = 16
    pl_weight: float = 0.0
    pl_interval: int = 4
    precision: str = "32"
    checkpoint_every_n_steps: int = 1000
    keep_epoch_checkpoints: bool = False
    log_every_n_steps: int = 50
    val_every_n_epochs: int = 1
    num_sanity_val_steps: int = 1
    val_cfid: bool = False
    select: str = "last"
    select_tolerance_db: float = 0.25


@dataclass
class Config:
    """A whole training configuration (see the module docstring)."""

    task: str = "mri"
    method: str = "rcgan"
    seed: int = 0
    name: str = ""
    description: str = ""
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    source: str = field(default="<dict>", repr=False, compare=False)

    @property
    def steps_per_iteration(self) -> int:
        """Optimizer steps Lightning counts per training batch (critic steps + 1 generator)."""
        return self.train.critic_steps + 1

    def to_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        values.pop("source")
        return values

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


# ------------------------------------------------------------------------------------------
# Loading


def load_config(
    path: str | os.PathLike, check_paths: bool = False, overrides: Sequence[str] = ()
) -> Config:
    """Read and validate a YAML config.

    Args:
        path: the ``.yaml`` file.
        check_paths: also check that the data folders exist (:func:`check_data_paths`).
        overrides: ``KEY=VALUE`` strings applied before validation, e.g.
            ``train.batch_size=4`` or ``data.mask.R=[2, 8]`` (values are parsed as YAML).

    Raises:
        ConfigError: unreadable file, unknown key, wrong type or impossible value.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    try:
        values = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML ({error})") from error
    if values is None:
        values = {}
    if overrides and isinstance(values, dict):
        apply_overrides(values, overrides, str(path))
    config = config_from_dict(values, source=str(path))
    if check_paths:
        check_data_paths(config)
    return config


def apply_overrides(values: dict, overrides: Sequence[str], source: str = "<dict>") -> dict:
    """Set ``KEY=VALUE`` overrides (dotted keys, YAML values) in nested ``values`` in place."""
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r}: expected KEY=VALUE, e.g. train.batch_size=4")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise ConfigError(f"override {item!r}: value is not valid YAML ({error})") from error
        parts = key.strip().split(".")
        node = values
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"{source}: override {item!r}: {part} is not a section")
            node = child
        node[parts[-1]] = value
    return values


def config_from_dict(values: Any, source: str = "<dict>") -> Config:
    """Build and validate a :class:`Config` from nested plain values."""
    if not isinstance(values, dict):
        raise ConfigError(f"{source}: a config must be a mapping of keys, got {type(values).__name__}")
    values = {key: value for key, value in values.items() if key != "source"}
    config = _build(Config, values, "", source)
    config.source = source
    validate(config)
    return config


def _build(cls: type, values: Any, prefix: str, source: str) -> Any:
    if not isinstance(values, dict):
        raise ConfigError(
            f"{source}: {prefix.rstrip('.') or 'config'} must be a mapping, got {values!r}"
        )
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls) if f.name != "source"}
    unknown = sorted(set(values) - known)
    if unknown:
        name = f"{prefix}{unknown[0]}"
        raise ConfigError(
            f"{source}: unknown key {name!r}; expected one of "
            f"{', '.join(prefix + key for key in sorted(known))}"
        )
    kwargs = {}
    for key, value in values.items():
        kwargs[key] = _coerce(value, hints[key], f"{prefix}{key}", source)
    return cls(**kwargs)


def _coerce(value: Any, hint: Any, name: str, source: str) -> Any:
    """Check ``value`` against the annotation ``hint``; convert ints to floats, numeric strings
    (YAML 1.1 reads ``1e-3`` as a string) to numbers."""
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, f"{name}.", source)
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None:
            if type(None) in options:
                return None
            raise ConfigError(f"{source}: {name} must not be null")
        errors = []
        # Prefer exact matches (a list for a list option, a string for a str option).
        ordered = sorted(
            (option for option in options if option is not type(None)),
            key=lambda option: 0 if _matches_exactly(value, option) else 1,
        )
        for option in ordered:
            try:
                return _coerce(value, option, name, source)
            except ConfigError as error:
                errors.append(str(error))
        raise ConfigError(errors[0]) if len(errors) == 1 else ConfigError(
            f"{source}: {name} has an invalid value {value!r} (expected {_type_name(hint)})"
        )
    if origin is list:
        (item,) = typing.get_args(hint)
        if not isinstance(value, list):
            raise ConfigError(f"{source}: {name} must be a list, got {value!r}")
        return [_coerce(v, item, f"{name}[{i}]", source) for i, v in enumerate(value)]
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{source}: {name} must be true or false, got {value!r}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{source}: {name} must be an integer, got {value!r}")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{source}: {name} must be a number, got {value!r}")
    if hint is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{source}: {name} must be a string, got {value!r}")
    raise ConfigError(f"{source}: {name}: unsupported type {hint!r}")  # pragma: no cover


def _matches_exactly(value: Any, option: Any) -> bool:
    if typing.get_origin(option) is list:
        return isinstance(value, list)
    if option is str:
        return isinstance(value, str)
    if option in (int, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return False


def _type_name(hint: Any) -> str:
    return str(hint).replace("typing.", "")


# ------------------------------------------------------------------------------------------
# Validation


def _require_one_of(fail: Callable[[str, str], None], key: str, value: Any, choices: Sequence[str]) -> None:
    """``fail`` with the accepted values unless ``value`` is one of ``choices``."""
    if value not in choices:
        fail(key, f"must be one of {', '.join(choices)}, got {value!r}")


def validate(config: Config) -> None:
    """Check every value for consistency; raise :class:`ConfigError` naming the key."""
    src = config.source
    data, model, train = config.data, config.model, config.train

    def fail(key: str, message: str) -> None:
        raise ConfigError(f"{src}: {key} {message}")

    _require_one_of(fail, "task", config.task, TASKS)
    _require_one_of(fail, "method", config.method, METHODS)

    positive_ints = {
        "data.image_size": data.image_size,
        "data.coils": data.coils,
        "data.min_coils": data.min_coils,
        "data.channels": data.channels,
        "data.hole_size": data.hole_size,
        "model.base_width": model.base_width,
        "model.num_pool_layers": model.num_pool_layers,
        "model.critic_width": model.critic_width,
        "train.epochs": train.epochs,
        "train.batch_size": train.batch_size,
        "train.critic_steps": train.critic_steps,
        "train.log_every_n_steps": train.log_every_n_steps,
        "train.val_every_n_epochs": train.val_every_n_epochs,
        "train.r1_interval": train.r1_interval,
        "train.pl_interval": train.pl_interval,
    }
    for key, value in positive_ints.items():
        if value < 1:
            fail(key, f"must be at least 1, got {value}")
    non_negative_ints = {
        "data.num_workers": data.num_workers,
        "data.min_width": data.min_width,
        "model.critic_num_down": model.critic_num_down,
        "train.checkpoint_every_n_steps": train.checkpoint_every_n_steps,
        "train.num_sanity_val_steps": train.num_sanity_val_steps,
    }
    for key, value in non_negative_ints.items():
        if value < 0:
            fail(key, f"must be at least 0, got {value}")
    for key, value in (("data.slices_per_volume", data.slices_per_volume),
                       ("data.val_examples", data.val_examples)):
        if value is not None and value < 1:
            fail(key, f"must be at least 1 (or null for all), got {value}")
    if model.base_width < 2:
        fail("model.base_width", f"must be at least 2, got {model.base_width}")

    if train.p_train < 2:
        fail("train.p_train", f"(P_train) must be at least 2, got {train.p_train}")
    if train.p_val < 2:
        fail("train.p_val", f"(P_val) must be at least 2, got {train.p_val}")
    weights = {
        "train.gp_weight": train.gp_weight,
        "train.drift_weight": train.drift_weight,
        "train.mu_sd": train.mu_sd,
        "train.l2_weight": train.l2_weight,
        "train.r1_gamma": train.r1_gamma,
        "train.pl_weight": train.pl_weight,
    }
    if train.beta_sd is not None:
        weights["train.beta_sd"] = train.beta_sd
    if isinstance(train.adv_weight, str) and train.adv_weight != ADV_SCHEDULE:
        try:
            train.adv_weight = float(train.adv_weight)
        except ValueError:
            pass
    if not isinstance(train.adv_weight, str):
        weights["train.adv_weight"] = train.adv_weight
    elif train.adv_weight != ADV_SCHEDULE:
        fail("train.adv_weight", f"must be a number or {ADV_SCHEDULE!r}, got {train.adv_weight!r}")
    for key, value in weights.items():
        if not math.isfinite(value) or value < 0:
            fail(key, f"must be a non-negative number, got {value}")
    for key, value in (("train.lr", train.lr), ("train.critic_lr", train.critic_lr)):
        if value is not None and not (math.isfinite(value) and value > 0):
            fail(key, f"must be a positive number, got {value}")
    if len(train.betas) != 2 or not all(0 <= b < 1 for b in train.betas):
        fail("train.betas", f"must be two Adam betas in [0, 1), got {train.betas}")
    edges = train.beta_sd_bins
    if not all(math.isfinite(e) for e in edges) or any(b <= a for a, b in zip(edges, edges[1:])):
        fail("train.beta_sd_bins", f"must be increasing finite R values, got {edges}")
    if train.beta_sd_bin_pooling < 0:
        fail("train.beta_sd_bin_pooling", f"must be 0 or more bins, got {train.beta_sd_bin_pooling}")
    if train.beta_sd_fit_degree is not None and train.beta_sd_fit_degree < 0:
        fail("train.beta_sd_fit_degree", f"must be 0 or more (or null), got {train.beta_sd_fit_degree}")
    _require_one_of(fail, "train.select", train.select, SELECTIONS)
    if train.select == "cfid" and not train.val_cfid:
        fail("train.select", "cfid needs train.val_cfid: true")
    if not (math.isfinite(train.select_tolerance_db) and train.select_tolerance_db > 0):
        fail("train.select_tolerance_db", f"must be a positive number, got {train.select_tolerance_db}")
    _require_one_of(fail, "train.precision", train.precision, PRECISIONS)
    _require_one_of(fail, "train.adv_reduction", train.adv_reduction, ADV_REDUCTIONS)
    _require_one_of(fail, "train.sd_reward", train.sd_reward, SD_REWARDS)
    _require_one_of(fail, "train.e1_estimate", train.e1_estimate, E1_ESTIMATES)
    half_life = train.generator_ema_half_life
    if half_life is not None and half_life < 1:
        fail("train.generator_ema_half_life", f"must be a whole number of iterations ≥ 1 or null, "
             f"got {half_life!r}")

    size = data.image_size
    _require_one_of(fail, "model.architecture", model.architecture, ARCHITECTURES)
    if model.architecture == "comodgan":
        _validate_comodgan(config, fail)
    elif config.method == "comodgan":
        fail("method", "comodgan (the CoModGAN baseline) needs model.architecture: comodgan")
    elif size % 2**model.critic_num_down:
        fail(
            "data.image_size",
            f"({size}) must be divisible by 2**model.critic_num_down = "
            f"{2**model.critic_num_down} (the critic halves it {model.critic_num_down} times)",
        )
    if data.train in (None, ""):
        fail("data.train", "must name the training folder")

    if config.task == "mri":
        _validate_mri(config, fail)
    else:
        if data.channels not in (1, 3):
            fail("data.channels", f"must be 1 (grey) or 3 (colour), got {data.channels}")
        _require_one_of(fail, "data.hole", data.hole, HOLE_KINDS)
        if not data.hole_size < size:
            fail("data.hole_size", f"({data.hole_size}) must be smaller than data.image_size ({size})")
        if data.val is None and not 0 < data.val_fraction < 1:
            fail("data.val_fraction", f"must be in (0, 1) when data.val is null, got {data.val_fraction}")


def _validate_comodgan(config: Config, fail) -> None:
    model, size = config.model, config.data.image_size
    if config.task != "inpainting":
        fail("model.architecture", f"comodgan is for task inpainting, got task {config.task!r}")
    if size & (size - 1) or not 32 <= size <= 1024:
        fail(
            "data.image_size",
            f"must be a power of two from 32 to 1024 for model.architecture comodgan (the "
            f"StyleGAN blocks), got {size}",
        )
    if config.method == "adler":
        fail("method", "adler needs the three-input critic of the unet architecture; use "
             "rcgan, ohayon or comodgan with model.architecture comodgan")
    for key in ("latent_dim", "mapping_layers", "channel_base", "channel_max"):
        if getattr(model, key) < 1:
            fail(f"model.{key}", f"must be at least 1, got {getattr(model, key)}")


def _validate_mri(config: Config, fail) -> None:
    data = config.data
    _require_one_of(fail, "data.kind", data.kind, DATA_KINDS)
    _require_one_of(fail, "data.fov", data.fov, FOV_MAPPINGS)
    _require_one_of(fail, "data.coil_compression", data.coil_compression, COIL_COMPRESSIONS)
    if data.kind == "simulated":
        if not data.anatomy or any(a not in ANATOMY_SOURCES for a in data.anatomy):
            fail("data.anatomy", f"must list sources among {', '.join(ANATOMY_SOURCES)}, "
                 f"got {data.anatomy}")
        if not set(data.anatomy) & set(VOLUME_ANATOMY):
            fail("data.anatomy", f"must include a volume ({' or '.join(VOLUME_ANATOMY)}) for "
                 f"validation, got {data.anatomy}")
        if data.anatomy_weights is not None and (
            len(data.anatomy_weights) != len(data.anatomy) or min(data.anatomy_weights) <= 0
        ):
            fail("data.anatomy_weights", f"must give one positive weight to each of {data.anatomy}, "
                 f"got {data.anatomy_weights}")
        if data.acquisition_size < data.image_size:
            fail("data.acquisition_size", f"({data.acquisition_size}) must be at least "
                 f"data.image_size ({data.image_size})")
        if data.examples_per_epoch < 1:
            fail("data.examples_per_epoch", f"must be at least 1, got {data.examples_per_epoch}")
        if not 0.0 <= data.blur_probability <= 1.0:
            fail("data.blur_probability", f"must be between 0 and 1, got {data.blur_probability}")
        if not 0.0 <= data.evaluation_like_fraction <= 1.0:
            fail("data.evaluation_like_fraction",
                 f"must be between 0 and 1, got {data.evaluation_like_fraction}")
        if not 0.0 <= data.tissue_contrast_fraction <= 1.0:
            fail("data.tissue_contrast_fraction",
                 f"must be between 0 and 1, got {data.tissue_contrast_fraction}")
        if data.tissue_contrast_fraction > 0 and not set(data.anatomy) & set(TISSUE_ANATOMY):
            fail("data.tissue_contrast_fraction",
                 f"needs a source with tissue fractions ({' or '.join(TISSUE_ANATOMY)}) in "
                 f"data.anatomy, got {data.anatomy}")
        from training.simulate import CONTRAST_SETS, VALIDATION_SIMULATIONS  # heavy imports

        _require_one_of(fail, "data.val_contrasts", data.val_contrasts, CONTRAST_SETS)
        _require_one_of(fail, "data.val_simulation", data.val_simulation, VALIDATION_SIMULATIONS)
    mask = data.mask
    kinds = mask.kinds
    if not kinds:
        fail("data.mask.kind", "must name at least one mask kind")
    for kind in kinds:
        _require_one_of(fail, "data.mask.kind", kind, MASK_KINDS)
    values = mask.R if isinstance(mask.R, list) else [mask.R]
    if isinstance(mask.R, list) and len(mask.R) != 2:
        fail("data.mask.R", f"must be one number or a range [R_min, R_max], got {mask.R}")
    for value in values:
        if not math.isfinite(value) or value < 1:
            fail("data.mask.R", f"must be at least 1 (R = 1 is fully sampled), got {value}")
    low, high = mask.r_range
    if low > high:
        fail("data.mask.R", f"range [{low}, {high}] must have R_min <= R_max")
    if high > data.image_size / 4:
        fail("data.mask.R", f"({high}) leaves fewer than 4 of the {data.image_size} k-space lines")
    if "gro" in kinds and data.image_size < 32:
        fail("data.image_size", f"must be at least 32 for GRO masks, got {data.image_size}")
    if data.min_coils < data.coils:
        fail(
            "data.min_coils",
            f"({data.min_coils}) must be at least data.coils ({data.coils}): volumes with fewer "
            f"coils cannot be compressed to {data.coils} virtual coils",
        )


def check_data_paths(config: Config) -> None:
    """Raise :class:`ConfigError` when a data folder of ``config`` is missing."""
    if config.task == "mri" and config.data.kind == "simulated":
        return
    splits = ["train"] + (["val"] if config.data.val is not None else [])
    if config.task == "mri" and config.data.val is None:
        raise ConfigError(
            f"{config.source}: data.val must name a validation folder for MRI (the β_SD update "
            "and the validation metrics need one)"
        )
    for split in splits:
        folder = config.data.folder(split)
        if not folder.exists():
            hint = (
                "; make a simulated one with `python -m training.simulate --out DIR` and pass "
                "--data-root DIR"
                if config.task == "mri"
                else "; point it at a folder of face images (or `python -m training.datasets "
                "faces-demo --out DIR`)"
            )
            raise ConfigError(
                f"{config.source}: data.{split} folder {folder} does not exist{hint}"
            )
        if not folder.is_dir():
            raise ConfigError(f"{config.source}: data.{split} {folder} is not a folder")
