"""The rcGAN LightningModule: generator + critic with the paper's losses and its baselines.

Per training batch (manual optimisation, critic first as in the reference implementation):

1. critic (``train.critic_steps`` times): WGAN loss ``mean D(x̂, y) − mean D(x, y)`` + gradient
   penalty (weight 10) + drift penalty (0.001); for ``method: adler`` the three-input loss of
   eq. (5) with its penalties;
2. generator: ``β_adv·L_adv + L_1,P − β_SD·L_SD,P`` with P = ``train.p_train`` samples per example
   (``rcgan``, eqs. 6–9); ``β_adv·L_adv + λ·L_2,P`` (``ohayon``, eq. 14); ``β_adv·L_adv^adler``
   (``adler``, eq. 5); for the CoModGAN baseline (``comodgan``) the non-saturating logistic
   loss alone, its critic trained with the logistic loss and lazy R1
   (:mod:`training.comodgan_losses`). ``train.adv_reduction`` averages (paper) or sums
   (reference code) L_adv over the batch; ``train.sd_reward`` picks eq. (9) or the reference's
   ``torch.std`` reward.

``model.architecture: comodgan`` swaps in the CoModGAN generator and StyleGAN2 residual critic
(:mod:`napari_rcgan.models.comodgan`); the losses above are unchanged.

Generator outputs are made data consistent before any loss, exactly as the plugin's sampler
finishes them (:meth:`napari_rcgan.sampler.MRIMeasurement.finish`): un-normalise, replace the
k-space on the sampled lines by the measurement, normalise again. For inpainting the known pixels
are restored. Losses are computed on the normalised channels the generator produces.

Once per validation epoch β_SD is updated by eq. (23) from Ê_1 and Ê_Pval (eqs. 21–22, P_val = 8,
on the normalised channels, summed over the whole validation set and all DDP ranks). With
``train.val_cfid`` the validation CFID of one draw per example is computed too (the reference's
embeddings, :mod:`napari_rcgan.metrics`), and ``within_tolerance`` says whether [E1/E_Pval]dB is
within ``train.select_tolerance_db`` of ideal (the reference's checkpoint selection).
``sd_error_spearman`` is the mean over the examples of the Spearman correlation between the
pixel-wise SD of the P_val samples and the absolute error of their average, inside the object (the
model card's uncertainty measure, :func:`napari_rcgan.stats.sd_error_spearman`, at P_val); for
mask-agnostic MRI runs it and [E1/E_Pval]dB are also logged per R bin. Its history,
the latest validation metrics and the dataset description are stored in every checkpoint (key
``"rcgan"``) and end up in the exported weights. A NaN or infinite loss stops the run with
:class:`TrainingDiverged` before the bad step is taken.
"""

from __future__ import annotations

import copy
import math
import platform
import time
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import Tensor

from napari_rcgan import metrics as paper_metrics
from napari_rcgan import stats
from napari_rcgan.metrics import feature_weights
from napari_rcgan.models import CoModCritic, Critic
from napari_rcgan.physics import transforms
from napari_rcgan.weights import NOISE_CHANNELS, Weights, WeightsMetadata, build_generator
from training import comodgan_losses, losses
from training.config import ADV_SCHEDULE, Config, config_from_dict

GENERATOR_PREFIX = "generator."
"""State-dict prefix of the trained generator in a checkpoint."""
AVERAGED_GENERATOR_PREFIX = "generator_ema."
"""The weight average of ``train.generator_ema_half_life``: exported instead when present."""
AVERAGE_UPDATES_KEY = "generator_ema_updates"
"""Buffer counting the updates of the weight average, for its warm-up (saved with checkpoints)."""


class TrainingDiverged(RuntimeError):
    """A loss became NaN or infinite; the message says where and what to try."""


def weights_metadata(config: Config, **extra: Any) -> WeightsMetadata:
    """The :class:`WeightsMetadata` describing the generator of ``config``."""
    data, model = config.data, config.model
    size = [data.image_size, data.image_size]
    if model.architecture == "comodgan":
        return WeightsMetadata(
            task="inpainting", image_size=size, channels=data.channels, architecture="comodgan",
            latent_dim=model.latent_dim, mapping_layers=model.mapping_layers,
            channel_base=model.channel_base, channel_max=model.channel_max, **extra,
        )
    if config.task == "mri":
        return WeightsMetadata(
            task="mri", image_size=size, channels=data.coils, base_width=model.base_width,
            num_pool_layers=model.num_pool_layers, input_skip=model.input_skip,
            masks=list(data.mask.kinds),
            acceleration=list(data.mask.r_range), fov=data.fov,
            coil_compression=data.coil_compression, **extra,
        )
    return WeightsMetadata(
        task="inpainting", image_size=size, channels=data.channels, base_width=model.base_width,
        num_pool_layers=model.num_pool_layers, input_skip=model.input_skip, **extra,
    )


def per_r_bin(metrics: dict[str, float], name: str) -> list[float]:
    """The values of validation metric ``name`` for each R bin (``<name>_R<low>-<high>``), or
    ``[metrics[name]]`` when the model has no R bins: what a selection averages, so that every R
    bin counts alike whatever its number of examples."""
    prefix = f"{name}_R"
    return [value for key, value in metrics.items() if key.startswith(prefix)] or [metrics[name]]


def calibration_distance_db(metrics: dict[str, float]) -> float:
    """How far one validation epoch's samples are from calibrated, in dB.

    The mean over the R bins of ``|[E1/E_Pval]dB − 10·log10(2·Pval/(Pval+1))|`` (each bin's own
    examples, ``e1_over_ep_db_R<low>-<high>``), or that distance for all examples when the model
    has no R bins; NaN when the ratio could not be measured.

    Args:
        metrics: a validation epoch's metrics, with ``e1_over_ep_db`` and ``target_ratio_db``.
    """
    ratios = per_r_bin(metrics, "e1_over_ep_db")
    return float(np.mean([abs(ratio - metrics["target_ratio_db"]) for ratio in ratios]))


def build_critic(config: Config, metadata: WeightsMetadata) -> Critic | CoModCritic:
    """The critic of ``config``: the CoModGAN residual critic, or the reference critic on
    ``[image(s), condition]`` channels."""
    model, size = config.model, config.data.image_size
    if model.architecture == "comodgan":
        return CoModCritic(
            metadata.channels, size, model.channel_base, model.channel_max,
            minibatch_sd=model.critic_minibatch_sd(config.method),
        )
    condition = metadata.in_channels - NOISE_CHANNELS
    images = metadata.out_channels * (2 if config.method == "adler" else 1)
    return Critic(images + condition, (size, size), model.critic_width, model.critic_num_down)


def _psnr(estimate: Tensor, reference: Tensor) -> Tensor:
    """Per-example PSNR (dB) of ``(B, H, W)`` images, peak = the reference's maximum."""
    mse = (estimate - reference).pow(2).flatten(1).mean(1)
    peak = reference.flatten(1).amax(1)
    return 10 * torch.log10(peak.pow(2) / mse.clamp_min(1e-20))


class RcGANModule(L.LightningModule):
    """Generator + critic trained with rcGAN (or a baseline) losses.

    Args:
        config: a :class:`Config` or its ``to_dict()``.
        dataset: description of the training data (stored in checkpoints and exports).
    """

    def __init__(self, config: Config | dict, dataset: dict | None = None) -> None:
        super().__init__()
        self.config = config if isinstance(config, Config) else config_from_dict(config)
        self.save_hyperparameters({"config": self.config.to_dict(), "dataset": dataset or {}})
        self.dataset_description = dataset or {}
        self.automatic_optimization = False
        cfg = self.config
        self.metadata = weights_metadata(cfg)
        self.generator = build_generator(self.metadata)
        if cfg.train.generator_ema_half_life is not None:
            self.generator_ema = copy.deepcopy(self.generator).requires_grad_(False)
            self.register_buffer(AVERAGE_UPDATES_KEY, torch.zeros((), dtype=torch.long))
        self.critic = build_critic(cfg, self.metadata)
        if cfg.method == "comodgan" and cfg.train.pl_weight > 0:
            self.register_buffer("path_length_mean", torch.zeros(()))
        self.beta_sd_nominal = losses.beta_sd_nominal(cfg.train.p_train)
        self.beta_sd = (
            self.beta_sd_nominal if cfg.train.beta_sd is None else float(cfg.train.beta_sd)
        )
        self.beta_sd_history: list[dict[str, float]] = []
        low, high = cfg.data.mask.r_range
        mask_agnostic = cfg.task == "mri" and cfg.method == "rcgan" and high > low
        self.r_bins = losses.r_bins(low, high, cfg.train.beta_sd_bins) if mask_agnostic else []
        self.beta_sd_table = [self.beta_sd] * len(self.r_bins)
        self._val_bins: Tensor | None = None
        self._val_bin_spearman: Tensor | None = None
        self.val_metrics: dict[str, float] = {}
        self.batches_this_run = 0
        self._val_sums: Tensor | None = None
        self._cfid_rows: list[Tensor] | None = None
        self.train_seconds_before = 0.0
        self._fit_started = time.monotonic()

    # -- generation ---------------------------------------------------------------------------

    @property
    def evaluated_generator(self) -> torch.nn.Module:
        """The generator that is validated and exported: the weight average when
        ``train.generator_ema_half_life`` is set, else the trained generator."""
        return getattr(self, "generator_ema", self.generator)

    @property
    def nominal_ema_decay(self) -> float:
        """``0.5^(1/h)`` for the weight average's half-life ``h`` in iterations."""
        return 0.5 ** (1.0 / self.config.train.generator_ema_half_life)

    def generator_ema_decay(self, updates: int) -> float:
        """Decay ``d`` of the weight average's next step after ``updates`` steps.

        ``d = min(0.5^(1/h), (1 + n)/(10 + n))`` for the half-life ``h`` in iterations: the warm-up
        of TensorFlow's ``ExponentialMovingAverage(num_updates=n)``, so that the average of a run
        from random weights follows its generator within tens of iterations instead of holding
        on to the random start for ``h`` (validation and the β_SD tuning use the average).
        """
        return min(self.nominal_ema_decay, (1 + updates) / (10 + updates))

    def warmed_up_ema_updates(self) -> int:
        """The fewest updates after which the warm-up no longer shortens the average's memory:
        the count given to an average that starts from trained weights."""
        decay = self.nominal_ema_decay
        return math.ceil((10 * decay - 1) / (1 - decay))

    @torch.no_grad()
    def update_generator_ema(self) -> None:
        """One step of the weight average: ``ema ← d·ema + (1 − d)·weights`` with ``d`` from
        :meth:`generator_ema_decay` (buffers are copied)."""
        updates = getattr(self, AVERAGE_UPDATES_KEY)
        decay = self.generator_ema_decay(int(updates))
        for averaged, current in zip(self.generator_ema.parameters(), self.generator.parameters()):
            averaged.lerp_(current.detach(), 1.0 - decay)
        for averaged, current in zip(self.generator_ema.buffers(), self.generator.buffers()):
            averaged.copy_(current)
        updates.add_(1)

    def generate(
        self, batch: dict[str, Tensor], count: int, generator: torch.nn.Module | None = None
    ) -> Tensor:
        """``count`` data-consistent samples per example: ``(B, count, C_out, H, W)``, from
        ``generator`` (default: the trained one)."""
        generator = self.generator if generator is None else generator
        conditioning = batch["input"]
        size, height, width = conditioning.shape[0], *conditioning.shape[-2:]
        repeated = conditioning.repeat_interleave(count, dim=0)
        code = torch.randn(
            size * count, *generator.code_shape(height, width),
            device=conditioning.device, dtype=conditioning.dtype,
        )
        output = generator.sample(repeated, code)
        output = output.float().reshape(size, count, *output.shape[1:])
        return self.consistent(output, batch)

    def consistent(self, output: Tensor, batch: dict[str, Tensor]) -> Tensor:
        """Data consistency on ``(B, P, C, H, W)`` normalised outputs (see the module doc)."""
        if self.config.task == "mri":
            with torch.autocast(device_type=output.device.type, enabled=False):
                shape = (-1, 1, 1, 1, 1)
                mean = batch["mean"].float().reshape(shape)
                std = batch["std"].float().reshape(shape)
                images = transforms.channels_to_complex(output.float() * std + mean)
                kspace = batch["kspace"][:, None]
                mask = batch["mask"][:, None, None]
                images = transforms.data_consistency(images, kspace, mask)
                return (transforms.complex_to_channels(images) - mean) / std
        hole = batch["hole"][:, None, None]
        return torch.where(hole, output, batch["target"][:, None].to(output.dtype))

    def display(self, channels: Tensor, batch: dict[str, Tensor]) -> Tensor:
        """Images users see, ``(B, ..., H, W)`` (RSS magnitude for MRI, grey level for faces)
        from normalised channels ``(B, ..., C, H, W)``."""
        if self.config.task == "mri":
            shape = (-1,) + (1,) * (channels.ndim - 1)
            mean = batch["mean"].float().reshape(shape)
            std = batch["std"].float().reshape(shape)
            return transforms.rss(transforms.channels_to_complex(channels.float() * std + mean))
        return ((channels.float() + 1) / 2).clamp(0, 1).mean(dim=-3)

    # -- losses -------------------------------------------------------------------------------

    @property
    def iteration(self) -> int:
        """Training batches done (Lightning's global_step counts every optimizer step)."""
        return self.global_step // self.config.steps_per_iteration

    def adversarial_weight(self) -> float:
        value = self.config.train.adv_weight
        if value == ADV_SCHEDULE:
            return losses.adversarial_weight(self.current_epoch)
        return float(value)

    def critic_loss(self, batch: dict[str, Tensor]) -> Tensor:
        train = self.config.train
        target, condition = batch["target"], batch["input"]
        if self.config.method == "comodgan":
            return self.comodgan_critic_loss(batch)
        with torch.no_grad():
            fakes = self.generate(batch, 2 if self.config.method == "adler" else 1)
        if self.config.method == "adler":
            return losses.adler_critic_loss(
                self.critic, target, fakes[:, 0], fakes[:, 1], condition,
                gp_weight=train.gp_weight, drift_weight=train.drift_weight,
            )
        fake = fakes[:, 0]
        real_scores = self.critic(target, condition)
        fake_scores = self.critic(fake, condition)
        return (
            losses.critic_wasserstein_loss(real_scores, fake_scores)
            + losses.gradient_penalty(self.critic, target, fake, condition, train.gp_weight)
            + losses.drift_penalty(real_scores, train.drift_weight)
        )

    def comodgan_critic_loss(self, batch: dict[str, Tensor]) -> Tensor:
        """Logistic critic loss, plus ``r1_interval``·R1 on every ``r1_interval``-th batch."""
        train = self.config.train
        target, condition = batch["target"], batch["input"]
        with torch.no_grad():
            fake = self.generate(batch, 1)[:, 0]
        loss = comodgan_losses.logistic_critic_loss(
            self.critic(target, condition), self.critic(fake, condition)
        )
        if self.iteration % train.r1_interval == 0:
            penalty = comodgan_losses.r1_penalty(self.critic, target, condition, train.r1_gamma)
            loss = loss + train.r1_interval * penalty
        return loss

    def path_length_penalty(self, condition: Tensor) -> Tensor:
        """StyleGAN2's path-length penalty on half the batch (CoModGAN generator only); updates
        the running mean path length kept in the checkpoint."""
        condition = condition[: max(1, condition.shape[0] // 2)]
        code = torch.randn(
            condition.shape[0], *self.generator.code_shape(*condition.shape[-2:]),
            device=condition.device, dtype=condition.dtype,
        )
        z, noises = self.generator.split_code(code)
        w = self.generator.mapping(z)
        images = self.generator.synthesize(condition, w, noises)
        penalty, mean = comodgan_losses.path_length_penalty(images, w, self.path_length_mean)
        self.path_length_mean.copy_(mean)
        return penalty

    def generator_loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        train = self.config.train
        target, condition = batch["target"], batch["input"]
        if self.config.method == "comodgan":
            fake = self.generate(batch, 1)[:, 0]
            adversarial = comodgan_losses.nonsaturating_generator_loss(
                self.critic(fake, condition)
            )
            parts = {"adversarial": adversarial.detach()}
            if train.pl_weight > 0 and self.iteration % train.pl_interval == 0:
                penalty = self.path_length_penalty(condition)
                parts["path_length"] = penalty.detach()
                return adversarial + train.pl_weight * train.pl_interval * penalty, parts
            return adversarial, parts
        samples = self.generate(batch, train.p_train)
        beta_adv = self.adversarial_weight()
        if self.config.method == "adler":
            adversarial = losses.adler_generator_loss(
                self.critic, target, samples[:, 0], samples[:, 1], condition, train.adv_reduction
            )
            regularizer = torch.zeros((), device=samples.device)
        else:
            count = samples.shape[1]
            scores = self.critic(
                samples.flatten(0, 1), condition.repeat_interleave(count, dim=0)
            )
            adversarial = losses.generator_adversarial_loss(
                scores.reshape(samples.shape[0], count, -1), train.adv_reduction
            )
            if self.config.method == "ohayon":
                regularizer = train.l2_weight * losses.l2_p_loss(samples, target)
            else:
                regularizer = losses.rcgan_regularizer(
                    samples, target, self.example_beta_sd(batch), train.sd_reward
                )
        loss = beta_adv * adversarial + regularizer
        parts = {"adversarial": adversarial.detach(), "regularizer": regularizer.detach()}
        if self.config.method == "rcgan":
            parts["l1"] = losses.l1_p_loss(samples.detach(), target)
            parts["sd"] = losses.sd_reward(samples.detach(), train.sd_reward)
        return loss, parts

    def example_beta_sd(self, batch: dict[str, Tensor]) -> float | Tensor:
        """β_SD of each example: the table entry of its R bin (mask-agnostic), else the one β_SD."""
        if not self.r_bins:
            return self.beta_sd
        table = torch.tensor(self.beta_sd_table, device=batch["R"].device)
        return table[losses.r_bin_index(batch["R"].float(), self.r_bins)]

    def beta_sd_by_R(self) -> list[dict[str, float]]:
        """The per-R β_SD table as plain values (empty for fixed-R models)."""
        return [
            {"R_min": float(low), "R_max": float(high), "beta_sd": float(beta)}
            for (low, high), beta in zip(self.r_bins, self.beta_sd_table, strict=True)
        ]

    def _guard(self, loss: Tensor, what: str) -> None:
        """Stop the run (on every rank) when ``loss`` is not finite."""
        bad = not bool(torch.isfinite(loss.detach()).all())
        if self._trainer is not None:
            bad = self.trainer.strategy.reduce_boolean_decision(bad, all=False)
        if bad:
            where = ""
            if self._trainer is not None:
                where = (
                    f" at iteration {self.iteration} (epoch {self.current_epoch}); "
                    f"the weights were not updated and {self.trainer.default_root_dir}/last.ckpt "
                    "holds the last good checkpoint"
                )
            raise TrainingDiverged(
                f"training diverged: the {what} is {float(loss.detach().float()):g}{where}. "
                "Try a lower learning rate (train.lr), precision 32, or check the data; resume "
                "from last.ckpt with --resume"
            )

    # -- Lightning hooks ------------------------------------------------------------------------

    def optimizer_settings(self) -> list[tuple[float, tuple[float, float]]]:
        """``[(lr, betas)]`` of the generator and the critic optimizers, from the config."""
        train = self.config.train
        betas = tuple(train.betas)
        generator = (train.lr, betas)
        if self.config.method == "comodgan" and train.pl_weight > 0:
            generator = comodgan_losses.lazy_adam_settings(train.lr, betas, train.pl_interval)
        critic = (train.critic_lr or train.lr, betas)
        if self.config.method == "comodgan":
            critic = comodgan_losses.lazy_adam_settings(critic[0], betas, train.r1_interval)
        return [generator, critic]

    def configure_optimizers(self):
        (generator_lr, generator_betas), (critic_lr, critic_betas) = self.optimizer_settings()
        generator = torch.optim.Adam(
            self.generator.parameters(), lr=generator_lr, betas=generator_betas
        )
        critic = torch.optim.Adam(self.critic.parameters(), lr=critic_lr, betas=critic_betas)
        return [generator, critic]

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        generator_opt, critic_opt = self.optimizers()
        self.toggle_optimizer(critic_opt)
        for _ in range(self.config.train.critic_steps):
            critic_loss = self.critic_loss(batch)
            self._guard(critic_loss, "critic loss")
            critic_opt.zero_grad(set_to_none=True)
            self.manual_backward(critic_loss)
            critic_opt.step()
        self.untoggle_optimizer(critic_opt)

        self.toggle_optimizer(generator_opt)
        generator_loss, parts = self.generator_loss(batch)
        self._guard(generator_loss, "generator loss")
        generator_opt.zero_grad(set_to_none=True)
        self.manual_backward(generator_loss)
        generator_opt.step()
        self.untoggle_optimizer(generator_opt)
        if hasattr(self, "generator_ema"):
            self.update_generator_ema()
        self.batches_this_run += 1

        size = batch["target"].shape[0]
        self.log("train/g_loss", generator_loss.detach(), prog_bar=True, batch_size=size)
        self.log("train/d_loss", critic_loss.detach(), prog_bar=True, batch_size=size)
        for name, value in parts.items():
            self.log(f"train/{name}", value, batch_size=size)
        self.log("train/beta_adv", self.adversarial_weight(), batch_size=size)
        self.log("train/beta_sd", self.beta_sd, prog_bar=True, batch_size=size)
        self.log("train/iteration", float(self.iteration), batch_size=size)
        return generator_loss.detach()

    def on_validation_epoch_start(self) -> None:
        self._val_sums = torch.zeros(8, dtype=torch.float64, device=self.device)
        self._val_bins = torch.zeros(len(self.r_bins), 3, dtype=torch.float64, device=self.device)
        self._val_bin_spearman = torch.zeros(len(self.r_bins), dtype=torch.float64, device=self.device)
        sanity = self._trainer is not None and self.trainer.sanity_checking
        self._cfid_rows = [] if self.config.train.val_cfid and not sanity else None

    def cfid_embeddings(self, generated: Tensor, batch: dict[str, Tensor]) -> Tensor:
        """``(B, 3, D)`` float64 embeddings of (one draw, condition, truth) per example.

        MRI: un-normalised coil images, SENSE with ESPIRiT maps of the measured (zero-filled)
        k-space, VGG-16 (the reference recipe). Faces: images in [0, 1], Inception-v3.
        """
        device = str(self.device)
        if self.config.task == "mri":
            shape = (-1, 1, 1, 1)
            mean = batch["mean"].float().reshape(shape)
            std = batch["std"].float().reshape(shape)
            coils = [transforms.channels_to_complex(channels.float() * std + mean)
                     for channels in (generated, batch["input"], batch["target"])]
            rows = [paper_metrics.mri_embeddings(
                        torch.stack([images[i] for images in coils]),
                        paper_metrics.reference_sense_maps(batch["kspace"][i]), device=device)
                    for i in range(len(generated))]
            return torch.from_numpy(np.stack(rows))
        known = (~batch["hole"])[:, None].to(batch["image"].dtype)
        images = torch.cat([((generated.float() + 1) / 2).clamp(0, 1), batch["image"] * known,
                            batch["image"]])
        features = paper_metrics.inception_features(images, device=device)
        return torch.from_numpy(features.reshape(3, len(generated), -1).transpose(1, 0, 2).copy())

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        p_val = self.config.train.p_val
        samples = self.generate(batch, p_val, self.evaluated_generator)
        target = batch["target"].float()
        size = target.shape[0]
        e1_each, ep_each = (energy.double() for energy in
                            losses.error_energies(samples, target, self.config.train.e1_estimate))
        shown = self.display(samples, batch)  # (B, P, H, W)
        reference = self.display(target, batch)  # (B, H, W)
        average = shown.mean(dim=1)
        psnr_1 = _psnr(shown[:, 0], reference)
        psnr_p = _psnr(average, reference)
        ssim = self._ssim(average, reference)
        sd = shown.std(dim=1, unbiased=False)
        apsd = sd.flatten(1).mean(1)
        spearman = self._sd_error_spearman(sd, (average - reference).abs(), reference)
        values = torch.stack([
            e1_each.sum(), ep_each.sum(),
            torch.tensor(float(size), device=self.device, dtype=torch.float64),
            psnr_1.sum().double(), psnr_p.sum().double(), ssim.sum().double(),
            apsd.sum().double(), spearman.sum(),
        ])
        self._val_sums += values
        if self.r_bins:
            index = losses.r_bin_index(batch["R"].float(), self.r_bins).to(self._val_bins.device)
            rows = torch.stack([e1_each, ep_each, torch.ones_like(e1_each)], dim=1)
            self._val_bins.index_add_(0, index, rows)
            self._val_bin_spearman.index_add_(0, index, spearman)
        if self._cfid_rows is not None:
            self._cfid_rows.append(self.cfid_embeddings(samples[:, 0], batch))

    def _sd_error_spearman(self, sd: Tensor, error: Tensor, reference: Tensor) -> Tensor:
        """``(B,)`` float64: per example, Spearman(SD, |error|) inside the object, from
        ``(B, H, W)`` maps (SciPy on the CPU; a few thousand pixels per example). An example
        whose SD map is flat (the generator ignores its noise) ranks nothing and counts 0."""
        maps = [m.detach().float().cpu().numpy() for m in (sd, error, reference)]
        values = [stats.sd_error_spearman(s, e, stats.object_support(r)) for s, e, r in zip(*maps)]
        return torch.tensor(np.nan_to_num(values, nan=0.0), dtype=torch.float64, device=self.device)

    @staticmethod
    def _ssim(estimate: Tensor, reference: Tensor) -> Tensor:
        from torchmetrics.functional.image import structural_similarity_index_measure

        peak = reference.flatten(1).amax(1).clamp_min(1e-12).reshape(-1, 1, 1, 1)
        return structural_similarity_index_measure(
            (estimate[:, None] / peak).clamp(0, 1), reference[:, None] / peak,
            data_range=1.0, reduction="none",
        )

    def _reduce_sum(self, values: Tensor) -> Tensor:
        if self._trainer is None or self.trainer.world_size == 1:
            return values
        return self.trainer.strategy.reduce(values, reduce_op="sum")

    def on_validation_epoch_end(self) -> None:
        if self._val_sums is None:
            return
        sums = self._reduce_sum(self._val_sums)
        self._val_sums = None
        bins = self._reduce_sum(self._val_bins) if self.r_bins else None
        bin_spearman = self._reduce_sum(self._val_bin_spearman) if self.r_bins else None
        self._val_bins = self._val_bin_spearman = None
        count = float(sums[2])
        if count == 0:
            return
        e1, ep = float(sums[0]) / count, float(sums[1]) / count
        p_val = self.config.train.p_val
        if not (math.isfinite(e1) and math.isfinite(ep)):
            raise TrainingDiverged(
                f"training diverged: validation errors are not finite (E1={e1}, E{p_val}={ep}) "
                f"at epoch {self.current_epoch}; resume from last.ckpt with a lower learning rate"
            )
        ratio_db = 10 * math.log10(e1 / ep) if ep > 0 and e1 > 0 else float("nan")
        metrics = {
            "e1": e1,
            f"e{p_val}": ep,
            "e1_over_ep_db": ratio_db,
            "target_ratio_db": stats.ideal_e1_over_ep_db(p_val),
            "psnr_1": float(sums[3]) / count,
            f"psnr_{p_val}": float(sums[4]) / count,
            f"ssim_{p_val}": float(sums[5]) / count,
            f"apsd_{p_val}": float(sums[6]) / count,
            "sd_error_spearman": float(sums[7]) / count,
            "examples": count,
        }
        if self._cfid_rows:
            rows = torch.cat(self._cfid_rows).to(self.device)
            if self._trainer is not None and self.trainer.world_size > 1:
                rows = self.all_gather(rows).flatten(0, 1)
            rows = rows.cpu()
            metrics["cfid"] = paper_metrics.cfid(rows[:, 0], rows[:, 1], rows[:, 2])
            metrics["within_tolerance"] = float(
                abs(ratio_db - metrics["target_ratio_db"]) <= self.config.train.select_tolerance_db
            )
        self._cfid_rows = None
        for number, (low, high) in enumerate(self.r_bins):
            e1_bin, ep_bin, count_bin = (float(v) for v in bins[number])
            if count_bin > 0 and e1_bin > 0 and ep_bin > 0:
                metrics[f"e1_over_ep_db_R{low:g}-{high:g}"] = 10 * math.log10(e1_bin / ep_bin)
            if count_bin > 0:
                metrics[f"sd_error_spearman_R{low:g}-{high:g}"] = float(bin_spearman[number]) / count_bin
        metrics["calibration_distance_db"] = calibration_distance_db(metrics)
        attached = self._trainer is not None
        if attached:
            for name, value in metrics.items():
                self.log(f"val/{name}", value, batch_size=1, sync_dist=True)
            if self.trainer.sanity_checking:
                return
        if self.r_bins:
            pooled = losses.pool_neighbouring_bins(bins, self.config.train.beta_sd_bin_pooling)
            for number in range(len(self.r_bins)):
                e1_pool, ep_pool, count_pool = (float(v) for v in pooled[number])
                if count_pool > 0 and e1_pool > 0 and ep_pool > 0:
                    self.update_beta_sd(e1_pool / count_pool, ep_pool / count_pool, number)
            self.fit_beta_sd_table()
            tuned = {f"beta_sd_R{low:g}-{high:g}": beta
                     for (low, high), beta in zip(self.r_bins, self.beta_sd_table, strict=True)}
        else:
            self.update_beta_sd(e1, ep)
            tuned = {}
        tuned["beta_sd"] = self.beta_sd
        metrics.update(tuned)
        metrics["epoch"] = int(self.current_epoch) if attached else 0
        metrics["iteration"] = int(self.iteration) if attached else 0
        self.val_metrics = metrics
        if attached:
            for name, value in tuned.items():
                self.log(f"val/{name}", value, batch_size=1, sync_dist=True)

    @property
    def autotunes_beta_sd(self) -> bool:
        """Whether validation tunes β_SD (eq. 23): rcgan with ``train.beta_sd_autotune``."""
        return self.config.method == "rcgan" and self.config.train.beta_sd_autotune

    def update_beta_sd(self, e1: float, ep: float, r_bin: int | None = None) -> float:
        """Eq. (23) once (rcgan with ``train.beta_sd_autotune``); records the history.

        With ``r_bin`` the entry of that R bin of the per-R table is updated (from the
        validation examples of that bin); ``beta_sd`` then follows the bin holding the middle of
        the R range.
        """
        train = self.config.train
        if not self.autotunes_beta_sd or e1 <= 0 or ep <= 0:
            return self.beta_sd
        before = self.beta_sd if r_bin is None else self.beta_sd_table[r_bin]
        after = losses.update_beta_sd(
            before, e1, ep, train.p_val, train.mu_sd, beta_sd_n=self.beta_sd_nominal
        )
        entry = {
            "epoch": int(self.current_epoch) if self._trainer is not None else 0,
            "iteration": int(self.iteration) if self._trainer is not None else 0,
            "beta_sd_before": float(before),
            "beta_sd": float(after),
            "e1_over_ep_db": 10 * math.log10(e1 / ep),
        }
        if r_bin is None:
            self.beta_sd = after
        else:
            self.beta_sd_table[r_bin] = after
            low, high = self.r_bins[r_bin]
            entry.update({"R_min": float(low), "R_max": float(high)})
            self.beta_sd = self.middle_bin_beta_sd()
        self.beta_sd_history.append(entry)
        return after

    def fit_beta_sd_table(self) -> None:
        """Replace the per-R table by its polynomial fit (``train.beta_sd_fit_degree``, if set)."""
        degree = self.config.train.beta_sd_fit_degree
        if degree is None or not self.autotunes_beta_sd:
            return
        self.beta_sd_table = losses.fit_beta_sd_table(self.beta_sd_table, self.r_bins, degree)
        self.beta_sd = self.middle_bin_beta_sd()

    def start_from_weights(self, weights: Weights) -> str:
        """Start from plugin weights of this architecture (``--init-generator``); says what was taken.

        The generator and its weight average start from ``weights``. β_SD starts from the value
        the weights were trained to (their per-R table remapped onto ``train.beta_sd_bins``, or
        their single value), so that fine-tuning calibrated weights continues calibrated, unless
        ``train.beta_sd`` is set, the method has no β_SD, or the weights were trained with
        another P_train (β_SD's scale depends on it). UNet weights of a smaller base width are
        widened without changing what the generator computes (:meth:`ResidualUNet.load_narrower`).
        """
        if weights.metadata.base_width == self.metadata.base_width:
            self.generator.load_state_dict(weights.state_dict)
        else:
            self.generator.load_narrower(weights.build_generator())
        if hasattr(self, "generator_ema"):
            self.generator_ema.load_state_dict(self.generator.state_dict())
            getattr(self, AVERAGE_UPDATES_KEY).fill_(self.warmed_up_ema_updates())
        found = weights.metadata
        p_train = ((found.training or {}).get("config") or {}).get("train", {}).get("p_train")
        if self.config.method != "rcgan":
            return f"beta_SD: not used by {self.config.method}"
        if self.config.train.beta_sd is not None:
            return f"beta_SD: {self.beta_sd:g} (train.beta_sd)"
        if p_train not in (None, self.config.train.p_train):
            return (f"beta_SD: nominal {self.beta_sd:.4g} (the weights were trained with "
                    f"P_train = {p_train}, this run uses {self.config.train.p_train})")
        if self.r_bins and found.beta_sd_by_R:
            self.beta_sd_table = losses.remap_beta_sd_table(found.beta_sd_by_R, self.r_bins)
            self.beta_sd = self.middle_bin_beta_sd()
            return "beta_SD: the weights' per-R table " + ", ".join(
                f"{beta:.4g}" for beta in self.beta_sd_table)
        if found.beta_sd is not None:
            self.beta_sd = float(found.beta_sd)
            self.beta_sd_table = [self.beta_sd] * len(self.r_bins)
            return f"beta_SD: the weights' {self.beta_sd:.4g}"
        return f"beta_SD: nominal {self.beta_sd:.4g} (the weights record none)"

    def middle_bin_beta_sd(self) -> float:
        """β_SD of the table's bin that holds the middle of the R range (the scalar ``beta_sd``)."""
        middle = sum(self.config.data.mask.r_range) / 2
        return self.beta_sd_table[int(losses.r_bin_index(torch.tensor(middle), self.r_bins))]

    def on_fit_start(self) -> None:
        self._fit_started = time.monotonic()
        if self.config.train.val_cfid:
            # Fail at the start, not after the first epoch, when the feature weights are missing.
            needed = "vgg16.safetensors" if self.config.task == "mri" else "inception.safetensors"
            feature_weights.verified_path(needed)

    def hardware(self) -> str:
        """Where this run trains, e.g. ``"1 x cpu (x86_64, 2 cores)"`` or ``"4 x NVIDIA H200"``."""
        devices = self.trainer.num_devices * self.trainer.num_nodes
        if self.device.type == "cuda":
            return f"{devices} x {torch.cuda.get_device_name(self.device)}"
        return f"{devices} x {self.device.type} ({platform.machine()}, {torch.get_num_threads()} threads)"

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        elapsed = time.monotonic() - self._fit_started
        checkpoint["rcgan"] = {
            "train_seconds": self.train_seconds_before + elapsed,
            "hardware": self.hardware() if self._trainer is not None else "unknown",
            "beta_sd": float(self.beta_sd),
            "beta_sd_nominal": float(self.beta_sd_nominal),
            "beta_sd_history": list(self.beta_sd_history),
            "beta_sd_by_R": self.beta_sd_by_R(),
            "val_metrics": dict(self.val_metrics),
            "dataset": self.dataset_description,
            "iteration": int(self.iteration) if self._trainer is not None else 0,
            "epoch": int(self.current_epoch) if self._trainer is not None else 0,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        weights = checkpoint.get("state_dict", {})
        averaged = [key for key in weights if key.startswith(AVERAGED_GENERATOR_PREFIX)]
        if hasattr(self, "generator_ema"):
            if not averaged:
                # Resuming a run without a weight average: the average starts from the generator.
                weights.update({
                    AVERAGED_GENERATOR_PREFIX + key[len(GENERATOR_PREFIX):]: value.clone()
                    for key, value in list(weights.items()) if key.startswith(GENERATOR_PREFIX)
                })
            # An average from trained weights, or saved before the warm-up existed, is past it.
            weights.setdefault(AVERAGE_UPDATES_KEY, torch.tensor(self.warmed_up_ema_updates()))
        else:
            for key in [*averaged, AVERAGE_UPDATES_KEY]:
                weights.pop(key, None)
        state = checkpoint.get("rcgan", {})
        self.beta_sd = float(state.get("beta_sd", self.beta_sd))
        self.beta_sd_history = list(state.get("beta_sd_history", []))
        table = state.get("beta_sd_by_R", [])
        if self.r_bins and table:
            self.beta_sd_table = losses.remap_beta_sd_table(table, self.r_bins)
        self.train_seconds_before = float(state.get("train_seconds", 0.0))
        self.val_metrics = dict(state.get("val_metrics", {}))
        # The config is the source of truth on --resume: a changed train.lr / betas applies to the
        # restored Adam states instead of being overwritten by the values saved with them.
        optimizer_states = checkpoint.get("optimizer_states", [])
        for state_dict, (lr, betas) in zip(optimizer_states, self.optimizer_settings()):
            for group in state_dict.get("param_groups", []):
                group["lr"] = float(lr)
                group["betas"] = tuple(float(b) for b in betas)
