"""Train rcGAN (or a baseline) with Lightning.

Usage::

    python -m training.train --config training/configs/paper-mri-r4.yaml --out runs/r4 \\
        [--data-root DIR] [--max-steps N] [--devices N] [--num-nodes N] [--accelerator auto]
        [--precision 32|bf16-mixed|16-mixed] [--resume]

``--max-steps`` counts training iterations (batches: ``critic_steps`` critic updates plus one
generator update); the run also stops after ``train.epochs`` epochs. ``--devices``/``--num-nodes``
above 1 train with DDP (one process per device; launch with ``srun``/``torchrun`` on clusters, or
let Lightning spawn the local processes); ``train.batch_size`` is per device.

Everything goes to ``--out``: ``last.ckpt`` (always the latest state: written at every epoch end,
every ``train.checkpoint_every_n_steps`` iterations and at the end of the run, each time to a
temporary file that is then renamed over it, so it is never half-written), optional
``epoch=NNN.ckpt`` snapshots, ``config.yaml``, TensorBoard logs (``tensorboard/``) and CSV
metrics (``csv/``), and with ``train.select: cfid`` ``best.ckpt``: the epoch with the lowest
validation CFID among those whose [E1/E_Pval]dB is within ``train.select_tolerance_db`` (0.25 dB)
of ideal, as the reference code selects its weights (``train.select: calibration``: the epoch
whose [E1/E_Pval]dB is closest to ideal, averaged over the R bins; ``train.select: spearman``:
the epoch whose SD map best ranks the errors, Spearman(SD, |error|), among those with a
calibration distance within the tolerance). ``--resume`` continues from
``last.ckpt`` (global step, epoch, optimizer states, β_SD and its history). Without ``--resume`` an ``--out``
that already holds a run is refused.

Exit status: 0 done, 1 training diverged (NaN/Inf loss), 2 bad configuration or data.
"""

from __future__ import annotations

import abc
import argparse
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.plugins.io import TorchCheckpointIO

from napari_rcgan.cli import one_line_warnings
from napari_rcgan.errors import RcganError
from napari_rcgan.io import atomic_output, remove_stale_temporaries
from napari_rcgan.weights import Weights, load_weights
from training.config import (
    PRECISIONS,
    Config,
    ConfigError,
    check_data_paths,
    config_from_dict,
    load_config,
)
from training.datasets import RcGANDataModule
from training.module import RcGANModule, TrainingDiverged, per_r_bin, weights_metadata

LAST = "last.ckpt"
BEST = "best.ckpt"


class AtomicCheckpointIO(TorchCheckpointIO):
    """``torch.save`` to a temporary file in the target folder, fsync, then ``os.replace``."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        with atomic_output(path) as temporary, open(temporary, "wb") as stream:
            torch.save(checkpoint, stream)
            stream.flush()
            os.fsync(stream.fileno())


class LastCheckpoint(Callback):
    """Keeps ``DIR/last.ckpt`` the latest state (epoch ends, every N iterations, run end)."""

    def __init__(self, dirpath: Path, every_n_iterations: int, steps_per_iteration: int) -> None:
        self.path = Path(dirpath) / LAST
        self.every = every_n_iterations
        self.steps_per_iteration = steps_per_iteration
        self._saved_step = -1

    def _save(self, trainer: L.Trainer) -> None:
        if trainer.sanity_checking:
            return
        trainer.save_checkpoint(self.path, weights_only=False)
        self._saved_step = trainer.global_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        iteration = trainer.global_step // self.steps_per_iteration
        last_step = 0 < trainer.max_steps <= trainer.global_step
        # The final step of a --max-steps run is saved here, as a mid-epoch state: after it
        # Lightning closes the epoch early, and a resume from that state would run a short epoch.
        if last_step or (self.every and iteration % self.every == 0):
            self._save(trainer)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        # After the epoch's validation, so the file holds the updated beta_SD. An epoch cut
        # short by --max-steps was saved at its last batch (see above).
        if trainer.fit_loop.epoch_loop.batch_progress.is_last_batch:
            self._save(trainer)

    def on_train_end(self, trainer, pl_module) -> None:
        if trainer.global_step != self._saved_step:
            self._save(trainer)


class ValidationReport(Callback):
    """One line on stderr per validation epoch (for runs without a progress bar, e.g. in the
    background): the calibration ratio against its ideal, the P_val-average PSNR, the SD–error
    Spearman correlation and β_SD."""

    def on_validation_end(self, trainer: L.Trainer, pl_module: RcGANModule) -> None:
        metrics = pl_module.val_metrics
        if trainer.sanity_checking or not trainer.is_global_zero or "e1_over_ep_db" not in metrics:
            return
        p_val = pl_module.config.train.p_val
        if pl_module.r_bins:
            table = pl_module.beta_sd_table
            beta = f"beta_SD {min(table):.3g} to {max(table):.3g} over {len(table)} R bins"
        else:
            beta = f"beta_SD {metrics['beta_sd']:.4g}"
        print(
            f"training: validation at epoch {metrics['epoch']}, iteration {metrics['iteration']}: "
            f"[E1/E{p_val}]dB {metrics['e1_over_ep_db']:.2f} (ideal {metrics['target_ratio_db']:.2f}; "
            f"calibration distance {metrics['calibration_distance_db']:.2f} dB), "
            f"PSNR P={p_val} {metrics[f'psnr_{p_val}']:.2f} dB, "
            f"Spearman(SD, error) {metrics['sd_error_spearman']:.3f}, {beta}",
            file=sys.stderr, flush=True,
        )


class BestCheckpoint(Callback, abc.ABC):
    """Keeps ``DIR/best.ckpt``: the validated epoch with the lowest :meth:`score`; the best
    value survives ``--resume``. Subclasses say what is scored."""

    measure = "score"
    unit = ""
    no_epoch = "qualified"

    def __init__(self, dirpath: Path) -> None:
        self.dirpath = Path(dirpath)
        self.best_score = math.inf
        self.best_epoch: int | None = None

    @abc.abstractmethod
    def score(self, metrics: dict[str, float]) -> float | None:
        """The value to minimise, or None when this epoch does not qualify."""

    def on_validation_end(self, trainer: L.Trainer, pl_module: RcGANModule) -> None:
        score = None if trainer.sanity_checking else self.score(pl_module.val_metrics)
        if score is not None and score < self.best_score:
            self.best_score, self.best_epoch = float(score), int(pl_module.val_metrics["epoch"])
            trainer.save_checkpoint(self.dirpath / BEST)

    def describe(self) -> str:
        """One line for the end of the run."""
        if self.best_epoch is None:
            return f"no epoch {self.no_epoch}; {BEST} was not written"
        return (f"{self.dirpath}/{BEST} is epoch {self.best_epoch} "
                f"({self.measure} {self.best_score:.4g}{self.unit})")

    def state_dict(self) -> dict[str, Any]:
        return {"best_score": self.best_score, "best_epoch": self.best_epoch}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best_score = float(state_dict.get("best_score", state_dict.get("best_cfid", math.inf)))
        self.best_epoch = state_dict.get("best_epoch")


class BestCFIDCheckpoint(BestCheckpoint):
    """``train.select: cfid``: the lowest validation CFID among epochs within the
    [E1/E_Pval]dB tolerance (``val_metrics["within_tolerance"]``)."""

    measure = "validation CFID"

    def __init__(self, dirpath: Path, tolerance_db: float) -> None:
        super().__init__(dirpath)
        self.no_epoch = f"had [E1/E_Pval]dB within {tolerance_db} dB of ideal"

    def score(self, metrics: dict[str, float]) -> float | None:
        return metrics["cfid"] if "cfid" in metrics and metrics.get("within_tolerance") else None


class BestSpearmanCheckpoint(BestCheckpoint):
    """``train.select: spearman``: the highest validation Spearman(SD, |error|) among epochs
    whose calibration distance is within the tolerance: of the calibrated epochs, the one whose
    SD map best ranks where the errors are. Mask-agnostic models score the mean over their R
    bins (``sd_error_spearman_R<low>-<high>``), so that every R counts alike."""

    measure = "validation Spearman(SD, |error|)"

    def __init__(self, dirpath: Path, tolerance_db: float) -> None:
        super().__init__(dirpath)
        self.tolerance_db = tolerance_db
        self.no_epoch = f"had a calibration distance within {tolerance_db} dB"

    def score(self, metrics: dict[str, float]) -> float | None:
        distance = metrics.get("calibration_distance_db", math.nan)
        if not (math.isfinite(distance) and distance <= self.tolerance_db):
            return None
        values = per_r_bin(metrics, "sd_error_spearman")
        return -sum(values) / len(values)

    def describe(self) -> str:
        if self.best_epoch is None:
            return super().describe()
        return f"{self.dirpath}/{BEST} is epoch {self.best_epoch} ({self.measure} {-self.best_score:.3f})"


class BestCalibrationCheckpoint(BestCheckpoint):
    """``train.select: calibration``: the smallest ``val_metrics["calibration_distance_db"]``
    (:func:`training.module.calibration_distance_db`)."""

    measure = "calibration distance"
    unit = " dB"
    no_epoch = "had a measurable [E1/E_Pval]dB"

    def score(self, metrics: dict[str, float]) -> float | None:
        distance = metrics.get("calibration_distance_db", math.nan)
        return distance if math.isfinite(distance) else None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training.train",
        description="Train an rcGAN generator (or the Adler / Ohayon baselines) with Lightning.",
    )
    parser.add_argument("--config", required=True, type=Path, help="YAML config")
    parser.add_argument("--out", required=True, type=Path, help="run folder")
    parser.add_argument("--data-root", type=str, default=None, help="overrides data.root")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a config value, e.g. --set train.batch_size=4 --set data.train=train "
        "(repeatable; values are YAML)",
    )
    parser.add_argument(
        "--max-steps", type=int, default=None,
        help="stop when the run reaches N training iterations in total, counting those "
        "before a --resume (default: after train.epochs epochs)",
    )
    parser.add_argument("--devices", type=int, default=1, help="devices per node (DDP if > 1)")
    parser.add_argument("--num-nodes", type=int, default=1, help="nodes (DDP if > 1)")
    parser.add_argument(
        "--accelerator", default="auto", help="auto (default), gpu, cpu, mps, ..."
    )
    parser.add_argument("--precision", choices=PRECISIONS, default=None,
                        help="overrides train.precision")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/last.ckpt")
    parser.add_argument(
        "--init-generator", default=None, metavar="WEIGHTS",
        help="start the generator from these plugin weights (.safetensors or a bundled name) "
        "instead of a random initialisation; the architecture must match the config",
    )
    parser.add_argument("--no-progress-bar", action="store_true")
    return parser


def prepare(args: argparse.Namespace) -> tuple[Config, Path]:
    """Load and check everything that can be checked before training starts."""
    config = load_config(args.config, overrides=args.overrides)
    if args.data_root is not None:
        config.data.root = args.data_root
    if args.precision is not None:
        config.train.precision = args.precision
    if args.max_steps is not None and args.max_steps < 1:
        raise ConfigError(f"--max-steps must be at least 1, got {args.max_steps}")
    if args.devices < 1 or args.num_nodes < 1:
        raise ConfigError("--devices and --num-nodes must be at least 1")
    check_data_paths(config)
    out = args.out
    last = out / LAST
    if args.resume and not last.is_file():
        raise ConfigError(f"--resume: {last} does not exist; start without --resume")
    if not args.resume and last.exists():
        raise ConfigError(
            f"{out} already holds a run ({last}); pass --resume to continue it or choose "
            "another --out"
        )
    if args.resume:
        check_resumable(last, config)
        for stale in remove_stale_temporaries(out):
            print(f"training: removed {stale}, left by an interrupted write", file=sys.stderr)
    return config, out


ARCHITECTURE_KEYS = (
    "task", "method", "data.image_size", "data.coils", "data.channels", "model.architecture",
    "model.base_width", "model.num_pool_layers", "model.input_skip", "model.critic_width",
    "model.critic_num_down", "model.latent_dim", "model.mapping_layers", "model.channel_base",
    "model.channel_max", "model.minibatch_sd",
)


def check_resumable(checkpoint_path: Path, config: Config) -> None:
    """Refuse to resume a checkpoint whose networks the config would build differently."""
    try:
        checkpoint = torch.load(checkpoint_path, map_location="cpu", weights_only=True, mmap=True)
        saved = config_from_dict(checkpoint["hyper_parameters"]["config"]).to_dict()
    except Exception as error:  # unreadable or not ours
        raise ConfigError(f"--resume: {checkpoint_path} is not a readable training checkpoint "
                          f"({error})") from error
    current = config.to_dict()
    for key in ARCHITECTURE_KEYS:
        old, new = saved, current
        for part in key.split("."):
            old, new = old.get(part), new.get(part)
        if old != new:
            raise ConfigError(
                f"--resume: {checkpoint_path} was trained with {key} = {old!r} but "
                f"{config.source} says {new!r}; use the run's config ({checkpoint_path.parent}/"
                "config.yaml)"
            )


def init_generator(config: Config, spec: str) -> tuple[Weights, dict[str, Any]]:
    """Load the weights ``spec``, check that they fit the generator of ``config``; describe them.

    Raises:
        ConfigError: unreadable weights or another architecture (named keys).
    """
    try:
        weights = load_weights(spec)
    except RcganError as error:
        raise ConfigError(f"--init-generator: {error}") from error
    expected = weights_metadata(config)
    found = weights.metadata
    for key in ("task", "image_size", "channels", "architecture", "base_width", "num_pool_layers",
                "input_skip", "latent_dim", "mapping_layers", "channel_base", "channel_max"):
        widens = (key == "base_width" and found.architecture == "unet"
                  and found.base_width < expected.base_width)
        if getattr(found, key) != getattr(expected, key) and not widens:
            raise ConfigError(
                f"--init-generator: {weights.source} has {key} = {getattr(found, key)!r} but "
                f"{config.source} builds {getattr(expected, key)!r}"
                + (" (a UNet can only be widened)" if key == "base_width" else "")
            )
    training = found.training or {}
    description = {
        "weights": Path(weights.source).name,
        "iterations": training.get("iterations"),
        "notes": found.notes,
    }
    if found.base_width != expected.base_width:
        description["widened_from_base_width"] = found.base_width
    return weights, description


def build_trainer(config: Config, out: Path, args: argparse.Namespace) -> L.Trainer:
    train = config.train
    steps = config.steps_per_iteration
    distributed = args.devices * args.num_nodes > 1
    if distributed:
        from lightning.pytorch.strategies import DDPStrategy

        # Each batch runs two backward passes (critic, generator) through one DDP module;
        # parameters that one of them does not reach must be marked unused.
        strategy: Any = DDPStrategy(find_unused_parameters=True)
    else:
        strategy = "auto"
    callbacks: list[Callback] = [
        LastCheckpoint(out, train.checkpoint_every_n_steps, steps),
    ]
    if train.select == "cfid":
        callbacks.append(BestCFIDCheckpoint(out, train.select_tolerance_db))
    elif train.select == "calibration":
        callbacks.append(BestCalibrationCheckpoint(out))
    elif train.select == "spearman":
        callbacks.append(BestSpearmanCheckpoint(out, train.select_tolerance_db))
    if train.keep_epoch_checkpoints:
        callbacks.append(ModelCheckpoint(
            dirpath=out, filename="epoch={epoch:03d}", save_top_k=-1, every_n_epochs=1,
            save_on_train_epoch_end=True, auto_insert_metric_name=False,
        ))
    if args.no_progress_bar:
        callbacks.append(ValidationReport())
    else:
        callbacks.append(TQDMProgressBar())
    loggers = [
        TensorBoardLogger(out, name="tensorboard"),
        CSVLogger(out, name="csv"),
    ]
    return L.Trainer(
        default_root_dir=out,
        accelerator=args.accelerator,
        devices=args.devices,
        num_nodes=args.num_nodes,
        strategy=strategy,
        precision=train.precision,
        max_epochs=train.epochs,
        max_steps=-1 if args.max_steps is None else args.max_steps * steps,
        logger=loggers,
        callbacks=callbacks,
        plugins=[AtomicCheckpointIO()],
        enable_checkpointing=train.keep_epoch_checkpoints,
        enable_progress_bar=not args.no_progress_bar,
        log_every_n_steps=max(1, train.log_every_n_steps),
        check_val_every_n_epoch=train.val_every_n_epochs,
        num_sanity_val_steps=train.num_sanity_val_steps,
        benchmark=torch.cuda.is_available(),
    )


def run(argv: Sequence[str] | None = None) -> L.Trainer:
    """Train as the command line says; returns the finished Trainer (raises on errors)."""
    args = build_parser().parse_args(argv)
    config, out = prepare(args)
    L.seed_everything(config.seed, workers=True, verbose=False)
    if torch.cuda.is_available():
        torch.set_float32_matmul_precision("high")
    datamodule = RcGANDataModule(config)
    datamodule.setup("fit")  # scans and validates the data before any process starts training
    description = datamodule.describe()
    initial_weights = None
    if args.init_generator is not None and not args.resume:
        initial_weights, description["initialised_from"] = init_generator(config, args.init_generator)
    module = RcGANModule(config, dataset=description)
    if initial_weights is not None:
        started = module.start_from_weights(initial_weights)
        description["initialised_from"]["beta_sd"] = started
        narrower = description["initialised_from"].get("widened_from_base_width")
        generator = "generator" if narrower is None else (
            f"generator widened from base width {narrower} to {config.model.base_width}")
        print(f"--init-generator {args.init_generator}: {generator} and {started}", file=sys.stderr)
    trainer = build_trainer(config, out, args)
    if trainer.is_global_zero:
        out.mkdir(parents=True, exist_ok=True)
        name = "config.yaml" if not args.resume else "config.resumed.yaml"
        with atomic_output(out / name) as temporary:
            temporary.write_text(config.to_yaml())
    trainer.fit(module, datamodule=datamodule, ckpt_path=str(out / LAST) if args.resume else None)
    return trainer


def main(argv: Sequence[str] | None = None) -> int:
    try:
        with one_line_warnings("training"):
            trainer = run(argv)
    except TrainingDiverged as error:
        print(f"training: error: {error}", file=sys.stderr)
        return 1
    except (ConfigError, RcganError) as error:
        print(f"training: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("training: interrupted; resume with --resume", file=sys.stderr)
        return 130
    if trainer.is_global_zero:
        module = trainer.lightning_module
        print(
            f"training: done after {module.iteration} iterations ({trainer.current_epoch} "
            f"epochs); beta_SD = {module.beta_sd:.4g}; checkpoint {trainer.default_root_dir}/"
            f"{LAST}; export with: python -m training.export {trainer.default_root_dir}/{LAST} "
            "OUT.safetensors",
            file=sys.stderr,
        )
        best = next((c for c in trainer.callbacks if isinstance(c, BestCheckpoint)), None)
        if best is not None:
            print(f"training: {best.describe()}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
