"""Training pipeline on CPU: smoke configs train, resume, export and sample through the plugin."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from scipy.stats import spearmanr
from torch import nn

from napari_rcgan.io import FastMRIFile
from napari_rcgan.physics.fft import fft2c
from napari_rcgan.sampler import PosteriorSampler
from napari_rcgan.weights import load_weights, read_metadata, save_weights
from training import losses
from training.config import ConfigError, config_from_dict
from training.datasets import RcGANDataModule, write_demo_faces
from training.export import export_checkpoint
from training.export import main as export_main
from training.module import RcGANModule, TrainingDiverged
from training.simulate import simulate_volume_file
from training.train import build_trainer, run
from training.train import main as train_main

CONFIGS = Path(__file__).resolve().parents[1] / "training" / "configs"
SIZE = 32


def _simulate(path: Path, slices, seed: int) -> None:
    options = dict(coils=8, kspace_shape=(SIZE, SIZE), image_size=SIZE, seed=seed, compact=True)
    try:
        simulate_volume_file(path, "colin27", slice_indices=slices, **options)
    except FileNotFoundError:  # Colin27 (Debian mricron-data) not installed
        simulate_volume_file(path, "mni152", slice_indices=slices, **options)


@pytest.fixture(scope="module")
def mri_root(tmp_path_factory) -> Path:
    """Compact 32×32 simulated volumes: train 2×4 slices, val 1×4, test 1×2."""
    root = tmp_path_factory.mktemp("smoke-mri")
    _simulate(root / "train" / "file_brain_AXT2_sim_train_0.h5", range(60, 64), 1)
    _simulate(root / "train" / "file_brain_AXT2_sim_train_1.h5", range(70, 74), 2)
    _simulate(root / "val" / "file_brain_AXT2_sim_val_0.h5", range(80, 84), 3)
    _simulate(root / "test" / "file_brain_AXT2_sim_test_0.h5", range(90, 92), 4)
    return root


def _config_file(tmp_path: Path, name: str, root: Path, **overrides) -> Path:
    values = yaml.safe_load((CONFIGS / name).read_text())
    values["data"]["root"] = str(root)
    for section, changes in overrides.items():
        values.setdefault(section, {}).update(changes) if isinstance(changes, dict) else (
            values.__setitem__(section, changes)
        )
    path = tmp_path / f"{name}"
    path.write_text(yaml.safe_dump(values))
    return path


def _train(config: Path, out: Path, *extra: str):
    return run(["--config", str(config), "--out", str(out), "--no-progress-bar", *extra])


@pytest.mark.filterwarnings("ignore:You're resuming from a checkpoint that ended before")
def test_smoke_mri_trains_resumes_exports_and_samples(mri_root, tmp_path, capsys):
    config = _config_file(tmp_path, "smoke-mri.yaml", mri_root)
    out = tmp_path / "run"
    trainer = _train(config, out, "--max-steps", "3")
    module = trainer.lightning_module
    assert module.iteration == 3 and module.batches_this_run == 3
    assert trainer.global_step == 3 * 2  # one critic + one generator optimizer step per batch
    assert (out / "last.ckpt").is_file() and (out / "config.yaml").is_file()
    assert list((out / "csv").glob("version_*/metrics.csv"))
    assert list((out / "tensorboard").glob("version_*/events.*"))
    assert not list(out.glob(".*.tmp"))
    first_run_seconds = torch.load(out / "last.ckpt", weights_only=True)["rcgan"]["train_seconds"]

    # A finished run is not overwritten; --resume needs a checkpoint.
    assert train_main(["--config", str(config), "--out", str(out)]) == 2
    assert "--resume" in capsys.readouterr().err
    assert train_main(["--config", str(config), "--out", str(tmp_path / "new"), "--resume"]) == 2
    assert train_main(["--config", str(config), "--out", str(out), "--resume",
                       "--set", "model.base_width=4"]) == 2
    assert "model.base_width = 8" in capsys.readouterr().err

    # Resume: the global step continues (epoch 0 ends at iteration 4 with a β_SD update).
    trainer = _train(config, out, "--max-steps", "5", "--resume")
    module = trainer.lightning_module
    assert module.batches_this_run == 2 and module.iteration == 5
    checkpoint = torch.load(out / "last.ckpt", weights_only=True)
    assert checkpoint["global_step"] == 10
    history = checkpoint["rcgan"]["beta_sd_history"]
    assert len(history) == 1 and history[0]["epoch"] == 0 and history[0]["iteration"] == 4
    assert history[0]["beta_sd_before"] == pytest.approx(losses.beta_sd_nominal(2))
    assert checkpoint["rcgan"]["beta_sd"] == pytest.approx(history[0]["beta_sd"])
    assert checkpoint["rcgan"]["val_metrics"]["examples"] == 4
    assert checkpoint["rcgan"]["train_seconds"] > first_run_seconds > 0, "time adds up over resumes"
    assert "cpu" in checkpoint["rcgan"]["hardware"]
    assert checkpoint["optimizer_states"][0]["param_groups"][0]["lr"] == pytest.approx(
        yaml.safe_load(config.read_text())["train"]["lr"])

    # A resume with a changed learning rate trains with it (not with the lr saved in the Adam state).
    trainer = _train(config, out, "--max-steps", "6", "--resume", "--set", "train.lr=1.0e-5")
    assert [group["lr"] for opt in trainer.optimizers for group in opt.param_groups] == [1e-5, 1e-5]
    checkpoint = torch.load(out / "last.ckpt", weights_only=True)
    assert checkpoint["optimizer_states"][1]["param_groups"][0]["lr"] == pytest.approx(1e-5)

    # Export: generator + metadata readable by the plugin.
    weights = tmp_path / "smoke.safetensors"
    assert export_main([str(out / "last.ckpt"), str(weights)]) == 0
    metadata = read_metadata(weights)
    assert metadata.task == "mri" and metadata.image_size == [SIZE, SIZE]
    assert metadata.channels == 8 and metadata.base_width == 8 and metadata.num_pool_layers == 2
    assert metadata.masks == ["gro"] and metadata.acceleration == [4.0, 4.0]
    assert metadata.beta_sd == pytest.approx(history[0]["beta_sd"])
    assert metadata.training["beta_sd_history"] == history
    assert metadata.training["config"]["train"]["p_train"] == 2
    assert "simulated k-space from real anatomy" in " ".join(
        metadata.training["dataset"]["train"]["provenance"]
    )
    assert "psnr_8" in metadata.metrics
    assert metadata.training["train_seconds"] == pytest.approx(checkpoint["rcgan"]["train_seconds"])
    assert metadata.training["hardware"].startswith("1 x cpu")
    from napari_rcgan.cli import main as cli_main

    assert cli_main(["info", str(weights)]) in (0, None)
    assert "beta_SD" in capsys.readouterr().out

    # Sampling with data consistency: the sampled k-space lines equal the measurement.
    sampler = PosteriorSampler(weights, device="cpu")
    volume = FastMRIFile.open(mri_root / "test" / "file_brain_AXT2_sim_test_0.h5")
    measurement = sampler.measure_mri(volume.read_kspace(1), R=4, mask_kind="gro")
    result = sampler.sample(measurement, P=3, seed=0)
    assert result.images.shape == (3, 8, SIZE, SIZE)
    sampled = measurement.mask_tensor
    kspace = fft2c(result.images)
    measured = measurement.measured_kspace
    scale = float(measured.abs().max())
    assert float((kspace[..., sampled] - measured[..., sampled]).abs().max()) < 1e-5 * scale
    assert float((kspace[..., ~sampled]).abs().max()) > 0


def _module(root: Path, **train) -> tuple[RcGANModule, dict]:
    values = yaml.safe_load((CONFIGS / "smoke-mri.yaml").read_text())
    values["data"]["root"] = str(root)
    values["train"].update(train)
    config = config_from_dict(values)
    data = RcGANDataModule(config)
    batch = next(iter(data.val_dataloader()))
    return RcGANModule(config), batch


def test_module_outputs_are_data_consistent(mri_root):
    module, batch = _module(mri_root)
    samples = module.generate(batch, 2)
    assert samples.shape == (2, 2, 16, SIZE, SIZE)
    std = batch["std"].reshape(-1, 1, 1, 1, 1)
    mean = batch["mean"].reshape(-1, 1, 1, 1, 1)
    channels = samples * std + mean
    images = torch.complex(channels[:, :, :8], channels[:, :, 8:])
    kspace = fft2c(images)
    mask = batch["mask"][:, None, None].expand_as(kspace)
    measured = batch["kspace"][:, None].expand_as(kspace)
    assert float((kspace[mask] - measured[mask]).abs().max().detach()) < 1e-4


def test_reference_loss_variants_reach_the_generator_loss(mri_root):
    paper, batch = _module(mri_root)
    reference, _ = _module(mri_root, adv_reduction="sum", sd_reward="reference")
    reference.load_state_dict(paper.state_dict())
    size = batch["target"].shape[0]
    assert size > 1
    results = []
    for module in (paper, reference):
        torch.manual_seed(0)
        with torch.no_grad():
            results.append(module.generator_loss(batch))
    (paper_loss, paper_parts), (reference_loss, reference_parts) = results
    # Same samples and critic scores: the sum over the batch is B times the mean ...
    assert float(reference_parts["adversarial"]) == pytest.approx(
        size * float(paper_parts["adversarial"]), rel=1e-5
    )
    # ... and at P_train = 2 the torch.std reward is eq. (9) / sqrt(pi / 2).
    assert float(reference_parts["sd"]) == pytest.approx(
        float(paper_parts["sd"]) / math.sqrt(math.pi / 2), rel=1e-5
    )
    assert float(reference_parts["l1"]) == pytest.approx(float(paper_parts["l1"]), rel=1e-6)
    beta_adv, beta_sd = paper.adversarial_weight(), paper.beta_sd
    expected = (
        beta_adv * float(reference_parts["adversarial"])
        + float(reference_parts["l1"]) - beta_sd * float(reference_parts["sd"])
    )
    assert float(reference_loss) == pytest.approx(expected, rel=1e-5)
    assert float(reference_loss) != pytest.approx(float(paper_loss), rel=1e-3)


class _NoiseBlind(nn.Module):
    """A 'generator' that ignores the code vector: every sample equals the input."""

    def code_shape(self, height, width):
        return (2, height, width)

    def sample(self, condition, code):
        return condition[:, :16] * 1.0


class _NoiseOnly(_NoiseBlind):
    """A 'generator' dominated by the code vector: samples differ wildly."""

    def sample(self, condition, code):
        return 50 * code[:, :1].expand(-1, 16, -1, -1)


@pytest.mark.parametrize("generator, grows", [(_NoiseBlind(), True), (_NoiseOnly(), False)])
def test_beta_sd_update_direction(mri_root, generator, grows):
    module, batch = _module(mri_root)
    module.generator = generator
    before = module.beta_sd
    assert before == pytest.approx(losses.beta_sd_nominal(2))
    module.on_validation_epoch_start()
    module.validation_step(batch, 0)
    module.on_validation_epoch_end()
    ratio = module.val_metrics["e1_over_ep_db"]
    target = 10 * math.log10(2 * 8 / 9)
    assert (ratio < target) == grows
    assert (module.beta_sd > before) == grows
    assert module.beta_sd_history[-1]["beta_sd"] == module.beta_sd
    expected = losses.update_beta_sd(
        before, module.val_metrics["e1"], module.val_metrics["e8"], 8,
        beta_sd_n=losses.beta_sd_nominal(2),
    )
    assert module.beta_sd == pytest.approx(expected)


def test_beta_sd_fixed_without_autotune_and_for_baselines(mri_root):
    module, batch = _module(mri_root, beta_sd_autotune=False, beta_sd=0.5)
    module.generator = _NoiseBlind()
    module.on_validation_epoch_start()
    module.validation_step(batch, 0)
    module.on_validation_epoch_end()
    assert module.beta_sd == 0.5 and module.beta_sd_history == []


def test_nan_guard_stops_the_run(mri_root, tmp_path):
    config = config_from_dict({
        **yaml.safe_load((CONFIGS / "smoke-mri.yaml").read_text()),
        "data": {**yaml.safe_load((CONFIGS / "smoke-mri.yaml").read_text())["data"],
                 "root": str(mri_root)},
    })
    module = RcGANModule(config)
    with torch.no_grad():
        next(module.generator.parameters()).fill_(float("nan"))
    args = argparse.Namespace(devices=1, num_nodes=1, accelerator="cpu", max_steps=2,
                              no_progress_bar=True)
    config.train.num_sanity_val_steps = 0
    trainer = build_trainer(config, tmp_path / "nan", args)
    with pytest.raises(TrainingDiverged) as error:
        trainer.fit(module, datamodule=RcGANDataModule(config))
    message = str(error.value)
    assert "diverged" in message and "nan" in message.lower() and "iteration 0" in message
    assert "--resume" in message


@pytest.mark.parametrize("method", ["adler", "ohayon"])
def test_baselines_train(mri_root, tmp_path, method):
    config = _config_file(tmp_path, "smoke-mri.yaml", mri_root, method=method)
    trainer = _train(config, tmp_path / method, "--max-steps", "1")
    module = trainer.lightning_module
    assert module.iteration == 1
    expected = (3 if method == "adler" else 2) * 16
    assert module.critic.initial_layers[0].in_channels == expected
    assert module.beta_sd_history == []
    weights = export_checkpoint(tmp_path / method / "last.ckpt", tmp_path / f"{method}.safetensors")
    assert read_metadata(weights).training["method"] == method


def test_smoke_faces_trains_exports_and_samples(tmp_path):
    import numpy as np

    from napari_rcgan.physics.inpainting import center_square_hole

    root = write_demo_faces(tmp_path / "faces")
    config = _config_file(tmp_path, "smoke-faces.yaml", root)
    trainer = _train(config, tmp_path / "run", "--max-steps", "2")
    assert trainer.lightning_module.iteration == 2
    weights = export_checkpoint(tmp_path / "run" / "last.ckpt", tmp_path / "faces.safetensors")
    metadata = read_metadata(weights)
    assert metadata.task == "inpainting" and metadata.channels == 3
    # Weights are shared: the training record names the data folders, not this machine's paths.
    assert str(tmp_path) not in json.dumps([metadata.training, metadata.notes, metadata.metrics])
    assert metadata.training["config"]["data"]["root"] == "faces"
    sampler = PosteriorSampler(weights, device="cpu")
    image = np.random.default_rng(0).random((SIZE, SIZE, 3)).astype(np.float32)
    hole = center_square_hole((SIZE, SIZE), 16)
    result = sampler.sample(sampler.measure_inpainting(image, hole), P=2)
    known = torch.from_numpy(~hole)
    torch.testing.assert_close(result.images[..., known], sampler.measure_inpainting(
        image, hole).image[..., known].expand(2, -1, -1))


def test_export_rejects_non_checkpoints(tmp_path, capsys):
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"not a checkpoint")
    assert export_main([str(bad), str(tmp_path / "out.safetensors")]) == 2
    assert "bad.ckpt" in capsys.readouterr().err
    torch.save({"state_dict": {}}, tmp_path / "plain.ckpt")
    assert export_main([str(tmp_path / "plain.ckpt"), str(tmp_path / "out.safetensors")]) == 2
    assert "training config" in capsys.readouterr().err
    assert not (tmp_path / "out.safetensors").exists()


def _agnostic_module(root: Path, **train: object) -> tuple[RcGANModule, dict]:
    values = yaml.safe_load((CONFIGS / "smoke-mri.yaml").read_text())
    values["data"]["root"] = str(root)
    values["data"]["mask"]["R"] = [2, 8]
    values["train"].update(train)
    config = config_from_dict(values)
    batch = next(iter(RcGANDataModule(config).val_dataloader()))
    return RcGANModule(config), batch


def test_mask_agnostic_beta_sd_table_is_tuned_per_r_bin_and_exported(mri_root, tmp_path):
    module, batch = _agnostic_module(mri_root)
    nominal = losses.beta_sd_nominal(2)
    assert module.r_bins == [(2.0, 3.0), (3.0, 5.0), (5.0, 7.0), (7.0, 8.0)]
    assert module.beta_sd_table == [pytest.approx(nominal)] * 4
    # Each example's beta_SD is the entry of its R bin.
    module.beta_sd_table = [0.1, 0.2, 0.3, 0.4]
    batch = dict(batch, R=torch.tensor([2.5, 7.5]))
    assert module.example_beta_sd(batch).tolist() == pytest.approx([0.1, 0.4])
    # Validation examples of one bin move only that bin (eq. 23 on that bin's E1 / E8).
    module.beta_sd_table = [nominal] * 4
    module.generator = _NoiseBlind()  # no sample spread: beta_SD must grow
    module.on_validation_epoch_start()
    module.validation_step(dict(batch, R=torch.tensor([3.5, 4.5])), 0)
    module.on_validation_epoch_end()
    assert module.beta_sd_table[1] > nominal
    assert [module.beta_sd_table[i] for i in (0, 2, 3)] == [pytest.approx(nominal)] * 3
    assert module.beta_sd_history[-1]["R_min"] == 3.0
    assert module.beta_sd == module.beta_sd_table[2]  # the bin of the middle R = 5
    # The table survives a checkpoint and ends up in the exported weights.
    checkpoint = {}
    module.on_save_checkpoint(checkpoint)
    fresh, _ = _agnostic_module(mri_root)
    fresh.on_load_checkpoint(checkpoint)
    assert fresh.beta_sd_table == module.beta_sd_table
    assert checkpoint["rcgan"]["beta_sd_by_R"][1] == {
        "R_min": 3.0, "R_max": 5.0, "beta_sd": module.beta_sd_table[1]
    }
    # Resumed with finer bins, each new bin starts from the saved bin holding its middle R.
    finer, _ = _agnostic_module(mri_root, beta_sd_bins=[2.5, 3, 4, 5, 7])
    assert finer.r_bins == [(2.0, 2.5), (2.5, 3.0), (3.0, 4.0), (4.0, 5.0), (5.0, 7.0), (7.0, 8.0)]
    finer.on_load_checkpoint(checkpoint)
    table = module.beta_sd_table
    assert finer.beta_sd_table == [table[0], table[0], table[1], table[1], table[2], table[3]]


def _weights_of(module: RcGANModule, path: Path, **metadata: object) -> Path:
    """Plugin weights of ``module``'s generator, with ``metadata`` changes (as an export writes)."""
    return save_weights(path, module.generator.state_dict(), dataclasses.replace(module.metadata, **metadata))


def test_init_generator_starts_from_the_weights_and_their_beta_sd(mri_root, tmp_path, capsys):
    trained, _ = _agnostic_module(mri_root)
    table = [{"R_min": 2.0, "R_max": 5.0, "beta_sd": 0.05}, {"R_min": 5.0, "R_max": 8.0, "beta_sd": 0.4}]
    weights = _weights_of(trained, tmp_path / "calibrated.safetensors", beta_sd=0.4, beta_sd_by_R=table,
                          training={"config": {"train": {"p_train": 2}}})

    # The generator and its average start from the weights; each bin takes the saved bin of its middle R.
    fresh, _ = _agnostic_module(mri_root, generator_ema_half_life=10)
    started = fresh.start_from_weights(load_weights(weights))
    assert started == "beta_SD: the weights' per-R table 0.05, 0.05, 0.4, 0.4"
    assert fresh.beta_sd_table == [0.05, 0.05, 0.4, 0.4] and fresh.beta_sd == 0.4
    for name, value in trained.generator.state_dict().items():
        assert torch.equal(fresh.generator.state_dict()[name], value)
        assert torch.equal(fresh.generator_ema.state_dict()[name], value)
    assert fresh.generator_ema_updates == fresh.warmed_up_ema_updates()  # trained weights: no warm-up
    # A β_SD set in the config wins; weights trained with another P_train keep the nominal value.
    fixed, _ = _agnostic_module(mri_root, beta_sd=0.2)
    assert fixed.start_from_weights(load_weights(weights)) == "beta_SD: 0.2 (train.beta_sd)"
    assert fixed.beta_sd_table == [0.2] * 4
    other_p = _weights_of(trained, tmp_path / "p8.safetensors", beta_sd_by_R=table,
                          training={"config": {"train": {"p_train": 8}}})
    nominal, _ = _agnostic_module(mri_root)
    assert "trained with P_train = 8" in nominal.start_from_weights(load_weights(other_p))
    assert nominal.beta_sd_table == [pytest.approx(losses.beta_sd_nominal(2))] * 4

    # End to end: the run says what it took and records it; another architecture is refused.
    config = _config_file(tmp_path, "smoke-mri.yaml", mri_root, data={"mask": {"kind": "gro", "R": [2, 8]}})
    trainer = _train(config, tmp_path / "run", "--init-generator", str(weights), "--max-steps", "1")
    assert "generator and beta_SD: the weights' per-R table 0.05, 0.05, 0.4, 0.4" in capsys.readouterr().err
    saved = torch.load(tmp_path / "run" / "last.ckpt", weights_only=True)["rcgan"]["dataset"]
    assert saved["initialised_from"]["weights"] == "calibrated.safetensors"
    assert saved["initialised_from"]["beta_sd"].endswith("0.05, 0.05, 0.4, 0.4")
    # Training steps do not tune β_SD (validation does, and none ran).
    assert trainer.lightning_module.beta_sd_table == [0.05, 0.05, 0.4, 0.4]
    # Weights of a narrower UNet are widened; a wider one cannot be narrowed.
    trainer = _train(config, tmp_path / "wider", "--init-generator", str(weights), "--max-steps", "1",
                     "--set", "model.base_width=12")
    assert "generator widened from base width 8 to 12 and beta_SD" in capsys.readouterr().err
    assert trainer.lightning_module.generator.down_sample_layers[0].conv_1.out_channels == 12
    assert train_main(["--config", str(config), "--out", str(tmp_path / "narrower"), "--init-generator",
                       str(weights), "--set", "model.base_width=4"]) == 2
    assert "has base_width = 8 but" in (error := capsys.readouterr().err)
    assert "(a UNet can only be widened)" in error


def test_pooled_beta_sd_bins_also_move_their_neighbours(mri_root):
    module, batch = _agnostic_module(mri_root, beta_sd_bin_pooling=1)
    nominal = losses.beta_sd_nominal(2)
    module.generator = _NoiseBlind()  # no sample spread: beta_SD must grow
    module.on_validation_epoch_start()
    module.validation_step(dict(batch, R=torch.tensor([2.5, 2.5])), 0)  # examples of bin [2, 3) only
    module.on_validation_epoch_end()
    table = module.beta_sd_table
    assert table[0] > nominal and table[1] == pytest.approx(table[0])  # [3, 5) pools in [2, 3)
    assert table[2:] == [pytest.approx(nominal)] * 2
    assert "e1_over_ep_db_R3-5" not in module.val_metrics  # its own examples: none


def test_fitted_beta_sd_table_moves_every_bin_onto_one_line(mri_root):
    module, batch = _agnostic_module(mri_root, beta_sd_fit_degree=1)
    nominal = losses.beta_sd_nominal(2)
    module.generator = _NoiseBlind()  # no sample spread: the bin with examples must grow
    module.on_validation_epoch_start()
    with pytest.warns(RuntimeWarning, match="SD map is constant"):
        module.validation_step(dict(batch, R=torch.tensor([2.5, 2.5])), 0)  # examples of bin [2, 3) only
    module.on_validation_epoch_end()
    assert module.val_metrics["sd_error_spearman"] == 0.0  # a flat SD map ranks nothing
    table = module.beta_sd_table
    # Eq. (23) raised bin [2, 3) alone; the fit spreads that onto a line falling towards R = 8.
    assert table[0] > table[1] > table[2] > table[3]
    middles = [(low + high) / 2 for low, high in module.r_bins]
    slopes = [(b - a) / (r2 - r1) for a, b, r1, r2 in zip(table, table[1:], middles, middles[1:])]
    assert slopes == [pytest.approx(slopes[0])] * 3 and slopes[0] < 0
    assert sum(table) > 4 * nominal
    assert module.val_metrics["beta_sd_R7-8"] == pytest.approx(table[3])
    assert module.beta_sd == table[module.r_bins.index((5.0, 7.0))]  # the bin of R = 5
    with pytest.raises(ConfigError, match="train.beta_sd_fit_degree.*0 or more"):
        _agnostic_module(mri_root, beta_sd_fit_degree=-1)


@pytest.mark.parametrize("estimate", ["first", "all"])
def test_validation_e1_uses_the_configured_estimate(mri_root, estimate):
    module, batch = _module(mri_root, e1_estimate=estimate)
    module.eval()
    torch.manual_seed(0)
    with torch.no_grad():
        samples = module.generate(batch, module.config.train.p_val)
    e1, ep = losses.error_energies(samples, batch["target"].float(), estimate)
    torch.manual_seed(0)
    module.on_validation_epoch_start()
    with torch.no_grad():  # as Lightning runs validation
        module.validation_step(batch, 0)
    module.on_validation_epoch_end()
    assert module.val_metrics["e1"] == pytest.approx(float(e1.mean()), rel=1e-5)
    assert module.val_metrics["e8"] == pytest.approx(float(ep.mean()), rel=1e-5)


def test_validation_measures_the_sd_error_spearman_inside_the_object(mri_root):
    module, batch = _agnostic_module(mri_root)
    module.eval()
    batch = dict(batch, R=torch.tensor([2.5, 7.5]))  # one example in bin [2, 3), one in [7, 8]
    torch.manual_seed(0)
    with torch.no_grad():
        samples = module.display(module.generate(batch, module.config.train.p_val), batch)
        reference = module.display(batch["target"].float(), batch)
    expected = []
    for shown, truth in zip(samples.numpy(), reference.numpy()):
        support = truth > 0.05 * truth.max()
        error = np.abs(shown.mean(0) - truth)
        expected.append(spearmanr(shown.std(0)[support], error[support]).statistic)
    torch.manual_seed(0)
    module.on_validation_epoch_start()
    with torch.no_grad():
        module.validation_step(batch, 0)
    module.on_validation_epoch_end()
    metrics = module.val_metrics
    assert metrics["sd_error_spearman"] == pytest.approx(np.mean(expected), abs=1e-4)
    assert metrics["sd_error_spearman_R2-3"] == pytest.approx(expected[0], abs=1e-4)
    assert metrics["sd_error_spearman_R7-8"] == pytest.approx(expected[1], abs=1e-4)
    assert "sd_error_spearman_R3-5" not in metrics  # no example in that bin


def test_fixed_r_keeps_a_single_beta_sd(mri_root):
    module, batch = _module(mri_root)
    assert module.r_bins == [] and module.beta_sd_by_R() == []
    assert module.example_beta_sd(batch) == pytest.approx(losses.beta_sd_nominal(2))


def _logged(out: Path, name: str) -> list[float]:
    import csv

    (metrics_file,) = sorted((out / "csv").glob("version_*/metrics.csv"))
    with open(metrics_file) as handle:
        return [float(row[name]) for row in csv.DictReader(handle) if row.get(name)]


def test_validation_cfid_selects_best_checkpoint_that_exports(mri_root, tmp_path, feature_dir,
                                                               monkeypatch, capsys):
    monkeypatch.setenv("NAPARI_RCGAN_FEATURES", str(feature_dir))
    train = {"val_cfid": True, "select": "cfid", "select_tolerance_db": 100.0, "epochs": 2}
    config = _config_file(tmp_path, "smoke-mri.yaml", mri_root, train=train)
    out = tmp_path / "run"
    assert train_main(["--config", str(config), "--out", str(out), "--no-progress-bar"]) == 0
    assert "best.ckpt is epoch" in capsys.readouterr().err
    cfids = _logged(out, "val/cfid")
    assert len(cfids) == 2 and all(math.isfinite(value) and value > 0 for value in cfids)
    best = torch.load(out / "best.ckpt", weights_only=True)
    assert best["rcgan"]["val_metrics"]["cfid"] == pytest.approx(min(cfids))
    assert best["rcgan"]["val_metrics"]["within_tolerance"] == 1.0
    assert best["epoch"] == cfids.index(min(cfids))
    weights = tmp_path / "best.safetensors"
    assert export_main([str(out / "best.ckpt"), str(weights)]) == 0
    assert read_metadata(weights).metrics["cfid"] == pytest.approx(min(cfids))

    # No epoch within a tolerance nobody meets: no best.ckpt, and the run says so.
    (tmp_path / "strict").mkdir()
    strict = _config_file(tmp_path / "strict", "smoke-mri.yaml", mri_root,
                          train={**train, "select_tolerance_db": 1e-9, "epochs": 1})
    assert train_main(["--config", str(strict), "--out", str(tmp_path / "strict-run"),
                       "--no-progress-bar"]) == 0
    assert "best.ckpt was not written" in capsys.readouterr().err
    assert not (tmp_path / "strict-run" / "best.ckpt").exists()


def test_mask_agnostic_run_logs_every_r_bin(mri_root, tmp_path):
    config = _config_file(tmp_path, "smoke-mri.yaml", mri_root, data={"mask": {"kind": "gro", "R": [2, 8]}},
                          train={"beta_sd_fit_degree": 1, "epochs": 2, "select": "calibration"})
    out = tmp_path / "run"
    assert train_main(["--config", str(config), "--out", str(out), "--no-progress-bar"]) == 0
    saved = torch.load(out / "last.ckpt", weights_only=True)["rcgan"]
    final = saved["val_metrics"]
    ratios = {name: _logged(out, f"val/{name}") for name in final if name.startswith("e1_over_ep_db_R")}
    assert ratios and all(len(values) == 2 for values in ratios.values())
    assert [values[-1] for values in ratios.values()] == pytest.approx(
        [final[name] for name in ratios], abs=1e-4)
    ideal = 10 * math.log10(16 / 9)
    assert _logged(out, "val/calibration_distance_db")[-1] == pytest.approx(
        sum(abs(values[-1] - ideal) for values in ratios.values()) / len(ratios), abs=1e-4)
    spearman = {name: _logged(out, f"val/{name}") for name in final if name.startswith("sd_error_spearman_R")}
    assert spearman.keys() == {name.replace("e1_over_ep_db", "sd_error_spearman") for name in ratios}
    assert [values[-1] for values in spearman.values()] == pytest.approx(
        [final[name] for name in spearman], abs=1e-4)
    assert all(-1 <= value <= 1 for value in _logged(out, "val/sd_error_spearman"))
    # The tuned table is logged per bin, as fitted: one line in R.
    table = [_logged(out, f"val/beta_sd_R{entry['R_min']:g}-{entry['R_max']:g}")[-1]
             for entry in saved["beta_sd_by_R"]]
    assert table == pytest.approx([entry["beta_sd"] for entry in saved["beta_sd_by_R"]], abs=1e-6)
    middles = [(entry["R_min"] + entry["R_max"]) / 2 for entry in saved["beta_sd_by_R"]]
    slopes = [(b - a) / (r2 - r1) for a, b, r1, r2 in zip(table, table[1:], middles, middles[1:])]
    assert slopes == pytest.approx([slopes[0]] * len(slopes), abs=1e-6)


def test_calibration_selection_keeps_the_epoch_closest_to_the_ideal_ratio(mri_root, tmp_path, capsys):
    config = _config_file(tmp_path, "smoke-mri.yaml", mri_root, train={"select": "calibration", "epochs": 3})
    out = tmp_path / "run"
    assert train_main(["--config", str(config), "--out", str(out), "--no-progress-bar"]) == 0
    distances = _logged(out, "val/calibration_distance_db")
    ratios, ideal = _logged(out, "val/e1_over_ep_db"), 10 * math.log10(16 / 9)
    assert len(distances) == 3
    assert distances == pytest.approx([abs(ratio - ideal) for ratio in ratios], abs=1e-4)  # no R bins
    best = torch.load(out / "best.ckpt", weights_only=True)
    assert best["rcgan"]["val_metrics"]["calibration_distance_db"] == pytest.approx(min(distances), abs=1e-4)
    best_epoch = distances.index(min(distances))
    assert best["epoch"] == best_epoch
    err = capsys.readouterr().err
    assert f"best.ckpt is epoch {best_epoch} (calibration distance" in err
    # Without a progress bar every validation epoch reports one line with the same numbers.
    reports = [line for line in err.splitlines() if line.startswith("training: validation at epoch")]
    assert len(reports) == 3
    reported = re.search(r"\[E1/E8\]dB (\S+) \(ideal 2\.50; calibration distance (\S+) dB\)", reports[-1])
    assert [float(value) for value in reported.groups()] == pytest.approx(
        [ratios[-1], distances[-1]], abs=0.006)


def test_calibration_distance_averages_the_r_bins():
    from training.module import calibration_distance_db

    ideal = 10 * math.log10(16 / 9)
    binned = {"e1_over_ep_db": 2.5, "target_ratio_db": ideal,
              "e1_over_ep_db_R2-4": ideal + 1.0, "e1_over_ep_db_R4-8": ideal - 0.5}
    assert calibration_distance_db(binned) == pytest.approx(0.75)  # not |2.5 - ideal| overall
    unbinned = {"e1_over_ep_db": ideal - 0.3, "target_ratio_db": ideal}
    assert calibration_distance_db(unbinned) == pytest.approx(0.3)
    assert math.isnan(calibration_distance_db({"e1_over_ep_db": math.nan, "target_ratio_db": ideal}))


def test_spearman_selection_scores_calibrated_epochs_by_the_mean_over_r_bins(tmp_path):
    from training.train import BestSpearmanCheckpoint

    best = BestSpearmanCheckpoint(tmp_path, tolerance_db=0.25)
    binned = {"calibration_distance_db": 0.2, "sd_error_spearman": 0.5,
              "sd_error_spearman_R2-4": 0.4, "sd_error_spearman_R4-8": 0.1}
    assert best.score(binned) == pytest.approx(-0.25)  # the bins count alike, not their examples
    assert best.score(dict(binned, calibration_distance_db=0.3)) is None  # not calibrated enough
    assert best.score({"calibration_distance_db": math.nan, "sd_error_spearman": 0.9}) is None
    assert best.score({"calibration_distance_db": 0.0, "sd_error_spearman": 0.3}) == pytest.approx(-0.3)


def test_spearman_selection_keeps_the_calibrated_epoch_with_the_best_sd_map(mri_root, tmp_path, capsys):
    config = _config_file(tmp_path, "smoke-mri.yaml", mri_root,
                          train={"select": "spearman", "select_tolerance_db": 100.0, "epochs": 3})
    out = tmp_path / "run"
    assert train_main(["--config", str(config), "--out", str(out), "--no-progress-bar"]) == 0
    correlations = _logged(out, "val/sd_error_spearman")
    assert len(correlations) == 3 and len(set(correlations)) == 3
    best = torch.load(out / "best.ckpt", weights_only=True)
    assert best["epoch"] == correlations.index(max(correlations))
    assert best["rcgan"]["val_metrics"]["sd_error_spearman"] == pytest.approx(max(correlations), abs=1e-4)
    err = capsys.readouterr().err
    epoch, value = best["epoch"], max(correlations)
    selected = f"best.ckpt is epoch {epoch} (validation Spearman(SD, |error|) {value:.3f})"
    assert selected in err
    reports = [line for line in err.splitlines() if line.startswith("training: validation at epoch")]
    assert f"Spearman(SD, error) {correlations[-1]:.3f}" in reports[-1]
    # No epoch within a tolerance that tight: no best.ckpt, and the run says why.
    config = _config_file(tmp_path, "smoke-mri.yaml", mri_root,
                          train={"select": "spearman", "select_tolerance_db": 1e-9, "epochs": 1})
    assert train_main(["--config", str(config), "--out", str(tmp_path / "tight"), "--no-progress-bar"]) == 0
    assert not (tmp_path / "tight" / "best.ckpt").exists()
    assert "no epoch had a calibration distance within 1e-09 dB" in capsys.readouterr().err


def test_cfid_selection_needs_validation_cfid_and_feature_weights(mri_root, tmp_path, monkeypatch,
                                                                    capsys):
    config = _config_file(tmp_path, "smoke-mri.yaml", mri_root, train={"select": "cfid"})
    assert train_main(["--config", str(config), "--out", str(tmp_path / "a")]) == 2
    assert "train.select cfid needs train.val_cfid: true" in capsys.readouterr().err
    monkeypatch.setenv("NAPARI_RCGAN_FEATURES", str(tmp_path / "empty"))
    config = _config_file(tmp_path, "smoke-mri.yaml", mri_root, train={"val_cfid": True})
    assert train_main(["--config", str(config), "--out", str(tmp_path / "b"), "--no-progress-bar"]) == 2
    assert "vgg16.safetensors: feature weights not found; run `napari-rcgan features prepare`" in (
        capsys.readouterr().err)


@pytest.mark.filterwarnings("ignore:You're resuming from a checkpoint that ended before")
def test_generator_weight_average_is_validated_resumed_and_exported(mri_root, tmp_path):
    config = _config_file(tmp_path, "smoke-mri.yaml", mri_root)
    out = tmp_path / "run"
    _train(config, out, "--max-steps", "2")  # a run without a weight average ...
    trainer = _train(config, out, "--max-steps", "4", "--resume",  # ... resumed with one
                     "--set", "train.generator_ema_half_life=3")
    module = trainer.lightning_module
    assert module.evaluated_generator is module.generator_ema
    checkpoint = torch.load(out / "last.ckpt", weights_only=True)
    weights = checkpoint["state_dict"]
    name = next(key for key in weights if key.startswith("generator.") and weights[key].ndim == 4)
    averaged, trained = weights["generator_ema." + name[len("generator."):]], weights[name]
    assert not torch.equal(averaged, trained)

    # One step moves the average (1 - 0.5^(1/3)) of the way to the trained weights.
    before = [parameter.clone() for parameter in module.generator_ema.parameters()]
    with torch.no_grad():
        for parameter in module.generator.parameters():
            parameter.add_(1.0)
    module.update_generator_ema()
    step = 1 - 0.5 ** (1 / 3)
    for old, new, current in zip(before, module.generator_ema.parameters(), module.generator.parameters()):
        torch.testing.assert_close(new, old + step * (current - old))

    # The average started from the trained generator of the first run, so it skipped the warm-up.
    assert checkpoint["state_dict"]["generator_ema_updates"] == module.warmed_up_ema_updates() + 2

    # The export holds the average, and says so.
    exported = export_checkpoint(out / "last.ckpt", tmp_path / "averaged.safetensors")
    from safetensors.torch import load_file

    torch.testing.assert_close(load_file(exported)[name[len("generator."):]], averaged)
    assert read_metadata(exported).training["generator"] == "weight average, half-life 3 iterations"

    # Resumed without the average, the run trains on (the average is dropped, not an error).
    trainer = _train(config, out, "--max-steps", "5", "--resume")
    assert not hasattr(trainer.lightning_module, "generator_ema")
    assert not any(key.startswith("generator_ema")
                   for key in torch.load(out / "last.ckpt", weights_only=True)["state_dict"])


def test_weight_average_of_a_run_from_random_weights_warms_up(mri_root):
    module, _ = _agnostic_module(mri_root, generator_ema_half_life=400)
    assert module.generator_ema_updates == 0
    # The first step moves the average 9/10 of the way to the generator, not 1 - 0.5^(1/400) of it:
    # validation and the beta_SD tuning must not judge the random start.
    before = [parameter.clone() for parameter in module.generator_ema.parameters()]
    with torch.no_grad():
        for parameter in module.generator.parameters():
            parameter.add_(1.0)
    module.update_generator_ema()
    assert module.generator_ema_updates == 1
    for old, new, current in zip(before, module.generator_ema.parameters(), module.generator.parameters()):
        torch.testing.assert_close(new, old + 0.9 * (current - old))
    # The memory grows with the run until it reaches the half-life, and stays there.
    decays = [module.generator_ema_decay(n) for n in (0, 10, 100, 1000)]
    assert decays == sorted(decays) and decays[0] == pytest.approx(0.1)
    warm, nominal = module.warmed_up_ema_updates(), 0.5 ** (1 / 400)
    assert module.generator_ema_decay(warm) == nominal == module.generator_ema_decay(10 ** 6)
    assert module.generator_ema_decay(warm - 1) < nominal
