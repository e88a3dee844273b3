"""CoModGAN architecture end to end: configs, losses, training, export, weights and sampling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from napari_rcgan.errors import WeightsError
from napari_rcgan.models import CoModCritic, CoModGenerator, ResidualUNet
from napari_rcgan.physics.inpainting import center_square_hole
from napari_rcgan.sampler import PosteriorSampler
from napari_rcgan.weights import (
    WeightsMetadata,
    build_generator,
    load_weights,
    random_weights,
    read_metadata,
    save_weights,
)
from training import comodgan_losses
from training.config import ConfigError, config_from_dict, load_config
from training.datasets import write_demo_faces
from training.export import export_checkpoint
from training.train import run

CONFIGS = Path(__file__).resolve().parents[1] / "training" / "configs"
SMOKE = "smoke-faces-comodgan.yaml"
SIZE = 32


def _values(name: str = SMOKE, **sections) -> dict:
    values = yaml.safe_load((CONFIGS / name).read_text())
    for section, changes in sections.items():
        if isinstance(changes, dict):
            values.setdefault(section, {}).update(changes)
        else:
            values[section] = changes
    return values


def _config_file(tmp_path: Path, root: Path, **sections) -> Path:
    values = _values(**sections)
    values["data"]["root"] = str(root)
    path = tmp_path / SMOKE
    path.write_text(yaml.safe_dump(values))
    return path


def _train(config: Path, out: Path, *extra: str):
    return run(["--config", str(config), "--out", str(out), "--no-progress-bar", *extra])


@pytest.fixture(scope="module")
def faces_root(tmp_path_factory) -> Path:
    return write_demo_faces(tmp_path_factory.mktemp("faces"))


def tiny_comodgan_metadata(**changes) -> WeightsMetadata:
    values = dict(task="inpainting", image_size=[SIZE, SIZE], channels=3, architecture="comodgan",
                  latent_dim=16, mapping_layers=2, channel_base=64, channel_max=16)
    values.update(changes)
    return WeightsMetadata(**values)


def test_paper_face_configs_match_section_4_3():
    config = load_config(CONFIGS / "faces-comodgan.yaml")
    data, model, train = config.data, config.model, config.train
    assert (config.task, config.method, model.architecture) == ("inpainting", "rcgan", "comodgan")
    assert (data.image_size, data.hole, data.hole_size, data.channels) == (256, "center", 128, 3)
    assert (model.latent_dim, model.mapping_layers, model.channel_base, model.channel_max) == (
        512, 8, 16384, 512)
    assert not model.critic_minibatch_sd(config.method)
    assert train.adv_weight == pytest.approx(5e-3) and train.epochs == 110
    assert train.batch_size * 4 == 100  # per device, 4 GPUs with DDP
    assert (train.p_train, train.p_val, train.beta_sd, train.beta_sd_autotune) == (2, 8, None, True)
    baseline = load_config(CONFIGS / "faces-comodgan-baseline.yaml")
    assert (baseline.method, baseline.model.architecture) == ("comodgan", "comodgan")
    assert baseline.model.critic_minibatch_sd(baseline.method)
    assert (baseline.train.r1_gamma, baseline.train.r1_interval) == (10.0, 16)
    assert baseline.train.lr == pytest.approx(2e-3)


@pytest.mark.parametrize(
    "sections, message",
    [
        ({"data": {"image_size": 48}}, "data.image_size must be a power of two from 32 to 1024"),
        ({"data": {"image_size": 16, "hole_size": 8}},
         "power of two from 32 to 1024 for model.architecture comodgan .*got 16"),
        ({"method": "adler"}, "method adler needs the three-input critic"),
        ({"model": {"architecture": "stylegan"}}, "model.architecture must be one of unet, comodgan"),
        ({"model": {"architecture": "unet"}, "method": "comodgan"}, "needs model.architecture: comodgan"),
        ({"model": {"channel_max": 0}}, "model.channel_max must be at least 1"),
    ],
)
def test_invalid_comodgan_configs_name_the_key(sections, message):
    with pytest.raises(ConfigError, match=message):
        config_from_dict(_values(**sections), source="bad.yaml")


def test_r1_penalty_matches_the_analytic_gradient():
    weight = torch.randn(1, 3, 8, 8)

    def critic(images, condition):
        return (images * weight).flatten(1).sum(1, keepdim=True)

    real = torch.randn(4, 3, 8, 8)
    penalty = comodgan_losses.r1_penalty(critic, real, torch.zeros(4, 4, 8, 8), gamma=10.0)
    assert penalty.item() == pytest.approx(5.0 * weight.square().sum().item(), rel=1e-5)
    lr, betas = comodgan_losses.lazy_adam_settings(0.002, (0.0, 0.99), 16)
    assert lr == pytest.approx(0.002 * 16 / 17) and betas[1] == pytest.approx(0.99 ** (16 / 17))
    scores = torch.tensor([[0.0], [2.0]])
    assert comodgan_losses.nonsaturating_generator_loss(scores).item() == pytest.approx(
        float(np.mean(np.log1p(np.exp(-scores.numpy())))))


def test_path_length_penalty_matches_the_analytic_jacobian():
    matrix = torch.randn(48, 5)
    w = torch.randn(2, 5, requires_grad=True)
    images = torch.einsum("pd,bd->bp", matrix, w).reshape(2, 3, 4, 4)
    torch.manual_seed(3)
    noise = torch.randn(2, 3, 4, 4) / 4
    expected_lengths = (noise.reshape(2, -1) @ matrix).norm(dim=1)
    torch.manual_seed(3)
    penalty, mean = comodgan_losses.path_length_penalty(images, w, torch.tensor(1.0), decay=0.5)
    expected_mean = 1.0 + 0.5 * (expected_lengths.mean() - 1.0)
    assert mean.item() == pytest.approx(expected_mean.item(), rel=1e-5)
    assert penalty.item() == pytest.approx(
        (expected_lengths - expected_mean).square().mean().item(), rel=1e-4)


def test_smoke_trains_resumes_exports_and_samples(faces_root, tmp_path):
    config = _config_file(tmp_path, faces_root)
    out = tmp_path / "run"
    trainer = _train(config, out, "--max-steps", "2")
    module = trainer.lightning_module
    assert isinstance(module.generator, CoModGenerator) and isinstance(module.critic, CoModCritic)
    assert not module.critic.minibatch_sd and module.iteration == 2
    trainer = _train(config, out, "--max-steps", "3", "--resume")
    assert trainer.lightning_module.iteration == 3 and trainer.lightning_module.batches_this_run == 1

    weights = export_checkpoint(out / "last.ckpt", tmp_path / "comod.safetensors")
    metadata = read_metadata(weights)
    assert (metadata.architecture, metadata.task, metadata.image_size) == (
        "comodgan", "inpainting", [SIZE, SIZE])
    assert (metadata.latent_dim, metadata.channel_base, metadata.channel_max) == (32, 256, 32)
    assert "CoModGAN" in metadata.describe()

    sampler = PosteriorSampler(weights, device="cpu")
    image = np.random.default_rng(0).random((SIZE, SIZE, 3)).astype(np.float32)
    hole = center_square_hole((SIZE, SIZE), 16)
    measurement = sampler.measure_inpainting(image, hole)
    result = sampler.sample(measurement, P=3, seed=5)
    assert result.images.shape == (3, 3, SIZE, SIZE)
    known = torch.from_numpy(~hole)
    torch.testing.assert_close(result.images[..., known],
                               measurement.image[..., known].expand(3, -1, -1))
    one_by_one = sampler.sample(measurement, P=3, seed=5, chunk_size=1)
    torch.testing.assert_close(one_by_one.images, result.images, atol=1e-5, rtol=1e-5)


def test_comodgan_baseline_trains_with_minibatch_sd_and_r1(faces_root, tmp_path):
    config = _config_file(tmp_path, faces_root, method="comodgan")
    trainer = _train(config, tmp_path / "baseline", "--max-steps", "2")
    module = trainer.lightning_module
    assert module.critic.minibatch_sd and module.beta_sd_history == []
    critic_opt = module.optimizers()[1].optimizer
    assert critic_opt.param_groups[0]["lr"] == pytest.approx(1e-3 * 2 / 3)
    weights = export_checkpoint(tmp_path / "baseline" / "last.ckpt", tmp_path / "b.safetensors")
    assert read_metadata(weights).training["method"] == "comodgan"


def test_comodgan_baseline_path_length_penalty_option(faces_root, tmp_path):
    config = _config_file(tmp_path, faces_root, method="comodgan",
                          train={"pl_weight": 2.0, "pl_interval": 1})
    trainer = _train(config, tmp_path / "pl", "--max-steps", "2")
    module = trainer.lightning_module
    assert module.path_length_mean.item() > 0
    generator_opt = module.optimizers()[0].optimizer
    assert generator_opt.param_groups[0]["lr"] == pytest.approx(1e-3 / 2)
    checkpoint = torch.load(tmp_path / "pl" / "last.ckpt", weights_only=True)
    assert checkpoint["state_dict"]["path_length_mean"] == module.path_length_mean


def test_comodgan_weights_round_trip(tmp_path):
    metadata = tiny_comodgan_metadata()
    generator = build_generator(metadata)
    assert isinstance(generator, CoModGenerator)
    path = save_weights(tmp_path / "c.safetensors", generator.state_dict(), metadata)
    loaded = load_weights(path)
    assert loaded.metadata.architecture == "comodgan"
    rebuilt = loaded.build_generator()
    for key, value in generator.state_dict().items():
        assert torch.equal(rebuilt.state_dict()[key], value)


def test_weights_of_one_architecture_with_the_others_metadata_fail_clearly(tmp_path):
    unet_metadata = WeightsMetadata(task="inpainting", image_size=[SIZE, SIZE], channels=3,
                                    base_width=4, num_pool_layers=2)
    unet_state = build_generator(unet_metadata).state_dict()
    comod_state = build_generator(tiny_comodgan_metadata()).state_dict()
    wrong = save_weights(tmp_path / "unet-as-comod.safetensors", unet_state, tiny_comodgan_metadata())
    with pytest.raises(WeightsError) as error:
        load_weights(wrong).build_generator()
    message = str(error.value)
    assert "unet-as-comod.safetensors" in message and "\n" not in message
    assert "metadata says architecture 'comodgan' but the tensors are a unet generator" in message
    other = save_weights(tmp_path / "comod-as-unet.safetensors", comod_state, unet_metadata)
    with pytest.raises(WeightsError, match="comod-as-unet.safetensors: its metadata says "
                       "architecture 'unet' but the tensors are a comodgan generator"):
        PosteriorSampler(other, device="cpu")
    assert isinstance(build_generator(unet_metadata), ResidualUNet)


@pytest.mark.parametrize("size", [[48, 48], [32, 64], [16, 16], [2048, 2048]])
def test_non_power_of_two_resolution_metadata_is_refused(tmp_path, size):
    path = tmp_path / "odd.safetensors"
    good = tiny_comodgan_metadata()
    save_weights(path, build_generator(good).state_dict(), good)
    from safetensors.torch import load_file, save_file

    bad = tiny_comodgan_metadata(image_size=size)
    save_file(load_file(str(path)), str(path), metadata={"rcgan": bad.to_json()})
    with pytest.raises(WeightsError) as error:
        read_metadata(path)
    message = str(error.value)
    assert message.startswith(f"{path}: architecture comodgan needs a square image whose side "
                              "is a power of two from 32 to 1024")
    assert f"found image_size {size[0]}x{size[1]}" in message and "\n" not in message


def test_comodgan_metadata_must_be_inpainting():
    with pytest.raises(WeightsError, match="x.safetensors: architecture comodgan is an inpainting"):
        tiny_comodgan_metadata(task="mri", channels=8).validate("x.safetensors")


def test_cli_samples_and_describes_random_comodgan(tmp_path, capsys):
    import h5py
    from PIL import Image
    from skimage.data import astronaut

    from napari_rcgan.cli import main

    weights = random_weights("comodgan")
    assert weights.metadata.architecture == "comodgan" and weights.metadata.image_size == [256, 256]
    assert main(["info", "random:comodgan"]) in (0, None)
    assert "CoModGAN" in capsys.readouterr().out
    photo = tmp_path / "astronaut.png"
    Image.fromarray(astronaut()[:256, 110:366]).save(photo)
    out = tmp_path / "out.h5"
    assert main(["sample", str(photo), "--P", "2", "--weights", "random:comodgan", "--device", "cpu",
                 "--out", str(out)]) == 0
    with h5py.File(out) as handle:
        samples = handle["samples"][()]
        hole = handle["mask"][()].astype(bool)
    assert samples.shape == (2, 256, 256, 3) and hole.sum() == 128 * 128
    assert np.isfinite(samples).all() and np.abs(samples[0][hole] - samples[1][hole]).mean() > 0
