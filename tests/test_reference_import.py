"""Importing reference rcGAN Lightning checkpoints reproduces the reference forward pass.

The reference training script (github.com/matt-bendel/rcGAN: ``train.py``,
``models/lightning/rcGAN.py``) reads ``configs/mri.yml`` into a ``types.SimpleNamespace``, builds
``rcGAN(cfg, exp_name, num_gpus)`` (attributes ``generator`` and ``discriminator``), calls
``save_hyperparameters()`` and stores its SD-reward multiplier ``std_mult`` as ``beta_std`` (a numpy
scalar after the first validation epoch) and ``is_valid`` in ``on_save_checkpoint``; Lightning adds
its loop, callback and optimizer state. The fixtures below write checkpoints of exactly that kind,
one of them through a real Lightning ``Trainer``.
"""

import pickle
import types
import zipfile
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import nn

from napari_rcgan.cli import main
from napari_rcgan.errors import WeightsError
from napari_rcgan.models.reference_import import reference_generator_weights
from napari_rcgan.weights import load_weights
from tests.reference_rcgan import ReferenceUNetModel, randomize_batchnorm

# configs/mri.yml of the reference, as its train.py loads it (yaml FullLoader reads 1e-5 as a
# string; the JSON round trip with object_hook=SimpleNamespace keeps it one).
REFERENCE_CONFIG = {
    "checkpoint_dir": "/storage/matt_models/mri/",
    "data_path": "/storage/fastMRI_brain/data",
    "sense_maps_path": "/storage/fastMRI_brain/sense_maps/",
    "num_of_top_slices": 8,
    "use-middle-slices": False,
    "calib_width": 16,
    "R": 8,
    "num_z_test": 32,
    "num_z_valid": 8,
    "num_z_train": 2,
    "in_chans": 16,
    "out_chans": 16,
    "im_size": 384,
    "num_coils": 8,
    "lr": 0.001,
    "beta_1": 0,
    "beta_2": 0.99,
    "gp_weight": 10,
    "adv_weight": "1e-5",
    "batch_size": 9,
    "num_epochs": 100,
    "psnr_gain_tol": 0.25,
}


def _progress(count: int, started: bool = True) -> dict:
    counts = {"ready": count, "completed": count}
    if started:
        counts.update(started=count, processed=count)
    return {"total": dict(counts), "current": dict(counts)}


def _lightning_1_9_checkpoint(model: nn.Module, std_mult, epoch: int = 3) -> dict:
    """The dict pytorch-lightning 1.9 (the reference's version) saves for the reference module:
    ``Trainer.save_checkpoint`` content with the ``epoch``-monitoring ``ModelCheckpoint``."""
    state = {f"generator.{key}": value for key, value in model.state_dict().items()}
    critic = {
        "discriminator.initial_layers.0.weight": torch.randn(32, 32, 3, 3),
        "discriminator.initial_layers.0.bias": torch.zeros(32),
        "discriminator.dense.1.weight": torch.randn(1, 512 * 6 * 6),
        "discriminator.dense.1.bias": torch.zeros(1),
    }
    state.update(critic)
    steps = 10 * (epoch + 1)
    adam = {"lr": 0.001, "betas": (0, 0.99), "eps": 1e-08, "weight_decay": 0, "amsgrad": False,
            "maximize": False, "foreach": None, "capturable": False, "differentiable": False,
            "fused": False}
    critic_state = {
        index: {"step": torch.tensor(float(steps)), "exp_avg": torch.zeros_like(value),
                "exp_avg_sq": torch.zeros_like(value)}
        for index, value in enumerate(critic.values())
    }
    monitor = ("ModelCheckpoint{'monitor': 'epoch', 'mode': 'max', 'every_n_train_steps': 0, "
               "'every_n_epochs': 1, 'train_time_interval': None}")
    return {
        "epoch": epoch,
        "global_step": 2 * steps,
        "pytorch-lightning_version": "1.9.0",
        "state_dict": state,
        "loops": {
            "fit_loop": {
                "state_dict": {},
                "epoch_loop.state_dict": {"_batches_that_stepped": steps},
                "epoch_loop.batch_progress": {**_progress(steps), "is_last_batch": True},
                "epoch_loop.scheduler_progress": _progress(0, started=False),
                "epoch_loop.batch_loop.state_dict": {},
                "epoch_loop.batch_loop.optimizer_loop.state_dict": {},
                "epoch_loop.batch_loop.optimizer_loop.optim_progress": {
                    "optimizer": {"step": _progress(2 * steps, started=False),
                                  "zero_grad": _progress(2 * steps)},
                    "optimizer_position": 2,
                },
                "epoch_loop.val_loop.state_dict": {},
                "epoch_loop.val_loop.dataloader_progress": _progress(epoch + 1, started=False),
                "epoch_loop.val_loop.epoch_loop.batch_progress": {**_progress(4),
                                                                  "is_last_batch": True},
                "epoch_progress": _progress(epoch),
            },
            "validate_loop": {"state_dict": {}, "dataloader_progress": _progress(0, False)},
        },
        "callbacks": {
            monitor: {
                "monitor": "epoch", "best_model_score": torch.tensor(epoch),
                "best_model_path": f"/storage/checkpoint-epoch={epoch}.ckpt",
                "current_score": torch.tensor(epoch), "dirpath": "/storage/",
                "best_k_models": {f"/storage/checkpoint-epoch={e}.ckpt": torch.tensor(e)
                                  for e in range(epoch + 1)},
                "kth_best_model_path": "/storage/checkpoint-epoch=0.ckpt",
                "kth_value": torch.tensor(0), "last_model_path": "",
            }
        },
        "optimizer_states": [
            {"state": critic_state, "param_groups": [{**adam, "params": list(critic_state)}]},
            {"state": {}, "param_groups": [{**adam, "params": list(range(len(state)))}]},
        ],
        "lr_schedulers": [],
        "hparams_name": "kwargs",
        "hyper_parameters": {
            "args": types.SimpleNamespace(**REFERENCE_CONFIG),
            "exp_name": "rcgan_r8",
            "num_gpus": 4,
        },
        "beta_std": std_mult,
        "is_valid": 1,
    }


def _as_numpy_1_pickle(path: Path) -> None:
    """Rename the numpy scalar constructor in a torch zip checkpoint as numpy 1.x pickles it."""
    with zipfile.ZipFile(path) as archive:
        entries = {name: archive.read(name) for name in archive.namelist()}
    (name,) = [name for name in entries if name.endswith("/data.pkl")]
    assert b"numpy._core.multiarray\nscalar" in entries[name]
    entries[name] = entries[name].replace(
        b"numpy._core.multiarray\nscalar", b"numpy.core.multiarray\nscalar"
    )
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for key, data in entries.items():
            archive.writestr(key, data)


@pytest.fixture(scope="module")
def paper_size_checkpoint(tmp_path_factory):
    """Paper-size generator (width 128, 8 coils) in a pytorch-lightning 1.9 checkpoint."""
    torch.manual_seed(0)
    reference = ReferenceUNetModel(in_chans=18, out_chans=16, chans=128).eval()
    randomize_batchnorm(reference)
    # 1 + mu_0 * psnr_diff with psnr_diff from .cpu().numpy() values: a numpy float32 scalar.
    std_mult = 1 + 2e-2 * ((np.float32(31.2) + 2.5) - np.float32(32.9))
    assert isinstance(std_mult, np.float32)
    path = tmp_path_factory.mktemp("ref") / "checkpoint-epoch=3.ckpt"
    torch.save(_lightning_1_9_checkpoint(reference, std_mult), path)
    return path, reference, float(std_mult)


def test_genuine_format_needs_the_allow_list(paper_size_checkpoint):
    path = paper_size_checkpoint[0]
    unsafe = set(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    assert {"types.SimpleNamespace", "numpy.dtype"} <= unsafe
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, map_location="cpu", weights_only=True)


def test_convert_cli_matches_reference_forward(paper_size_checkpoint, tmp_path, capsys):
    path, reference, std_mult = paper_size_checkpoint
    out = tmp_path / "imported.safetensors"
    assert main(["convert", str(path), str(out)]) == 0
    weights = load_weights(out)
    metadata = weights.metadata
    assert metadata.base_width == 128 and metadata.channels == 8
    assert metadata.num_pool_layers == 4
    assert metadata.image_size == [384, 384] and metadata.acceleration == [8.0, 8.0]
    # std_mult is a multiplier of beta_SD^N on the torch.std reward, not beta_SD.
    assert metadata.beta_sd is None
    assert metadata.training["std_mult"] == pytest.approx(std_mult)
    assert metadata.training["sd_reward"] == "reference"
    assert metadata.training["adv_reduction"] == "sum"
    assert metadata.training["p_train"] == 2 and metadata.training["epoch"] == 3
    assert metadata.training["within_psnr_gain_tol"] is True
    assert metadata.training["reference_args"]["adv_weight"] == "1e-5"
    ours = weights.build_generator()
    inputs = torch.randn(2, 18, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        expected = reference(inputs)
        produced = ours(inputs)
    torch.testing.assert_close(produced, expected, atol=1e-5, rtol=1e-5)
    # Our generator has no unused layers.
    assert not any(key.startswith("res_layer_1") for key in weights.state_dict)
    printed = capsys.readouterr().out
    assert "wrote" in printed and f"reference std_mult: {std_mult:.4g}" in printed


def test_numpy_1_checkpoints_convert(tmp_path):
    torch.manual_seed(2)
    reference = ReferenceUNetModel(in_chans=18, out_chans=16, chans=16).eval()
    randomize_batchnorm(reference, seed=2)
    path = tmp_path / "numpy1.ckpt"
    torch.save(_lightning_1_9_checkpoint(reference, np.float64(1.25), epoch=0), path)
    _as_numpy_1_pickle(path)
    assert "numpy.core.multiarray.scalar" in torch.serialization.get_unsafe_globals_in_checkpoint(
        path
    )
    weights = reference_generator_weights(path)
    assert weights.metadata.training["std_mult"] == 1.25
    assert weights.metadata.base_width == 16


class _FullDownBlock(nn.Module):
    def __init__(self, in_chans: int, out_chans: int) -> None:
        super().__init__()
        self.downsample = nn.Sequential(
            nn.AvgPool2d(2), nn.Conv2d(in_chans, out_chans, 3, padding=1),
            nn.InstanceNorm2d(out_chans), nn.LeakyReLU(0.2),
        )

    def forward(self, x):
        return self.downsample(x)


class _Critic(nn.Module):
    """A small critic with the reference DiscriminatorModel's layer names."""

    def __init__(self, in_chans: int, size: int) -> None:
        super().__init__()
        self.initial_layers = nn.Sequential(nn.Conv2d(in_chans, 8, 3, padding=1), nn.LeakyReLU())
        self.encoder_layers = nn.ModuleList([_FullDownBlock(8, 16), _FullDownBlock(16, 16)])
        self.dense = nn.Sequential(nn.Flatten(), nn.Linear(16 * (size // 4) ** 2, 1))

    def forward(self, input, y):
        output = self.initial_layers(torch.cat([input, y], dim=1))
        for layer in self.encoder_layers:
            output = layer(output)
        return self.dense(output)


class _ReferenceModule(L.LightningModule):
    """The reference rcGAN LightningModule's checkpoint-relevant layout (its losses shortened)."""

    def __init__(self, args, exp_name, num_gpus):
        super().__init__()
        self.args = args
        self.generator = ReferenceUNetModel(args.in_chans + 2, args.out_chans, chans=32)
        self.discriminator = _Critic(args.in_chans * 2, args.im_size)
        self.std_mult = 1
        self.is_good_model = 0
        self.automatic_optimization = False  # Lightning 2 has no optimizer_idx loop
        self.save_hyperparameters()

    def _sample(self, y):
        noise = torch.randn(y.shape[0], 2, *y.shape[-2:])
        return self.generator(torch.cat([y, noise], dim=1))

    def training_step(self, batch, batch_idx):
        y, x = batch
        opt_d, opt_g = self.optimizers()
        fake = self._sample(y).detach()
        d_loss = self.discriminator(fake, y).mean() - self.discriminator(x, y).mean()
        opt_d.zero_grad()
        self.manual_backward(d_loss)
        opt_d.step()
        gens = self._sample(y)
        g_loss = -self.discriminator(gens, y).sum() + (gens - x).abs().mean()
        opt_g.zero_grad()
        self.manual_backward(g_loss)
        opt_g.step()
        self.log("g_loss", g_loss, prog_bar=True)
        self.log("d_loss", d_loss, prog_bar=True)

    def validation_step(self, batch, batch_idx):
        y, x = batch
        self.log("psnr_8_step", -10 * torch.log10((self._sample(y) - x).pow(2).mean()))

    def on_validation_epoch_end(self):
        avg_psnr = torch.tensor(32.9).cpu().numpy()
        avg_single_psnr = torch.tensor(31.2).cpu().numpy()
        psnr_diff = (avg_single_psnr + 2.5) - avg_psnr
        self.std_mult += 2e-2 * psnr_diff
        self.is_good_model = int(np.abs(psnr_diff) <= self.args.psnr_gain_tol)

    def configure_optimizers(self):
        betas = (float(self.args.beta_1), self.args.beta_2)
        opt_g = torch.optim.Adam(self.generator.parameters(), lr=self.args.lr, betas=betas)
        opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=self.args.lr, betas=betas)
        return [opt_d, opt_g]

    def on_save_checkpoint(self, checkpoint):
        checkpoint["beta_std"] = self.std_mult
        checkpoint["is_valid"] = self.is_good_model


@pytest.fixture(scope="module")
def lightning_checkpoint(tmp_path_factory):
    """A checkpoint written by a real Lightning Trainer for the reference module layout."""
    torch.manual_seed(3)
    folder = tmp_path_factory.mktemp("lightning")
    args = types.SimpleNamespace(**{**REFERENCE_CONFIG, "im_size": 16})
    module = _ReferenceModule(args, "rcgan_test", 1)
    y, x = torch.randn(2, 16, 16, 16), torch.randn(2, 16, 16, 16)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(y, x), batch_size=2)
    trainer = L.Trainer(
        max_epochs=1, accelerator="cpu", logger=False, enable_progress_bar=False,
        enable_model_summary=False, num_sanity_val_steps=0, default_root_dir=folder,
        callbacks=[ModelCheckpoint(monitor="epoch", mode="max", dirpath=folder,
                                   filename="checkpoint-{epoch}", save_top_k=50)],
    )
    trainer.fit(module, loader, loader)
    return folder / "checkpoint-epoch=0.ckpt", module


def test_lightning_written_checkpoint_converts(lightning_checkpoint, tmp_path):
    path, module = lightning_checkpoint
    raw = torch.load(path, map_location="cpu", weights_only=False)
    assert isinstance(raw["hyper_parameters"]["args"], types.SimpleNamespace)
    assert isinstance(raw["beta_std"], np.floating) and raw["optimizer_states"]
    assert {"loops", "callbacks", "lr_schedulers"} <= set(raw)

    out = tmp_path / "imported.safetensors"
    assert main(["convert", str(path), str(out)]) == 0
    weights = load_weights(out)
    assert weights.metadata.base_width == 32 and weights.metadata.image_size == [16, 16]
    assert weights.metadata.training["std_mult"] == pytest.approx(float(module.std_mult))
    assert weights.metadata.training["std_mult"] == pytest.approx(1 + 2e-2 * 0.8, rel=1e-6)
    inputs = torch.randn(3, 18, 16, 16, generator=torch.Generator().manual_seed(4))
    reference = module.generator.eval()
    with torch.inference_mode():
        torch.testing.assert_close(
            weights.build_generator()(inputs), reference(inputs), atol=1e-5, rtol=1e-5
        )


def test_import_rejects_non_checkpoints(tmp_path):
    not_a_checkpoint = tmp_path / "bad.ckpt"
    not_a_checkpoint.write_bytes(b"definitely not a torch file")
    with pytest.raises(WeightsError, match="bad.ckpt"):
        reference_generator_weights(not_a_checkpoint)
    torch.save({"state_dict": {"discriminator.w": torch.zeros(1)}}, tmp_path / "nogen.ckpt")
    with pytest.raises(WeightsError, match="no rcGAN MRI generator"):
        reference_generator_weights(tmp_path / "nogen.ckpt")


class _Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


@pytest.mark.parametrize(
    "content",
    [
        {"state_dict": {}, "evil": _Payload()},
        # An allowed container does not open the door to what it holds.
        {"state_dict": {}, "hyper_parameters": {"args": types.SimpleNamespace(x=_Payload())}},
    ],
)
def test_import_refuses_pickled_code(tmp_path, capsys, content):
    torch.save(content, tmp_path / "evil.ckpt")
    with pytest.raises(WeightsError, match="weights_only=True: it holds print, which is not on"):
        reference_generator_weights(tmp_path / "evil.ckpt")
    with pytest.raises(SystemExit) as exit_info:
        main(["convert", str(tmp_path / "evil.ckpt"), str(tmp_path / "out.safetensors")])
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    assert "must never run" not in captured.out + captured.err
    assert len(captured.err.strip().splitlines()) == 1 and "evil.ckpt" in captured.err
    assert not (tmp_path / "out.safetensors").exists()
