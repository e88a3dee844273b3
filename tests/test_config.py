"""Training configs: the shipped files load, bad ones fail early with the key in the message."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from training.config import (
    ConfigError,
    check_data_paths,
    config_from_dict,
    load_config,
)

CONFIGS = Path(__file__).resolve().parents[1] / "training" / "configs"


def write(tmp_path: Path, values, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(values if isinstance(values, str) else yaml.safe_dump(values))
    return path


def test_every_shipped_config_loads():
    names = sorted(path.name for path in CONFIGS.glob("*.yaml"))
    for required in ("paper-mri-r4.yaml", "paper-mri-r8.yaml", "mri-agnostic.yaml",
                     "faces.yaml", "smoke-mri.yaml", "smoke-faces.yaml"):
        assert required in names
    for name in names:
        config = load_config(CONFIGS / name)
        assert config.source.endswith(name)


@pytest.mark.parametrize("name, R", [("paper-mri-r4.yaml", 4.0), ("paper-mri-r8.yaml", 8.0)])
def test_paper_mri_configs_match_the_paper(name, R):
    config = load_config(CONFIGS / name)
    assert (config.task, config.method) == ("mri", "rcgan")
    assert config.data.image_size == 384 and config.data.coils == 8
    assert config.data.acquisitions == ["AXT2"] and config.data.min_coils == 8
    assert config.data.min_width == 384 and config.data.slices_per_volume == 8
    assert config.data.mask.kinds == ["gro"] and config.data.mask.r_range == (R, R)
    assert config.model.base_width == 128 and config.model.num_pool_layers == 4
    train = config.train
    assert (train.batch_size, train.p_train, train.p_val, train.epochs) == (9, 2, 8, 100)
    assert train.lr == pytest.approx(1e-3) and train.betas == [0.0, 0.99]
    assert (train.gp_weight, train.drift_weight) == (10.0, 0.001)
    assert train.adv_weight == "schedule" and train.beta_sd is None and train.beta_sd_autotune
    # The reference code's loss variants (training.losses): batch sum, torch.std reward.
    assert (train.adv_reduction, train.sd_reward) == ("sum", "reference")


def test_other_configs_default_to_the_papers_equations():
    for path in CONFIGS.glob("*.yaml"):
        if not path.name.startswith("paper-"):
            train = load_config(path).train
            assert (train.adv_reduction, train.sd_reward) == ("mean", "paper"), path.name
    assert config_from_dict({}).train.adv_reduction == "mean"
    assert config_from_dict({}).train.sd_reward == "paper"


def test_agnostic_and_faces_configs():
    agnostic = load_config(CONFIGS / "mri-agnostic.yaml")
    assert agnostic.data.mask.r_range == (2.0, 8.0)
    faces = load_config(CONFIGS / "faces.yaml")
    assert faces.task == "inpainting"
    assert (faces.data.image_size, faces.data.hole, faces.data.hole_size) == (256, "center", 128)
    assert faces.train.adv_weight == pytest.approx(5e-3)


def test_round_trip_through_dict():
    config = load_config(CONFIGS / "mri-agnostic.yaml")
    again = config_from_dict(config.to_dict())
    assert again.to_dict() == config.to_dict()
    assert yaml.safe_load(config.to_yaml()) == config.to_dict()


def test_yaml_scientific_notation_is_a_number(tmp_path):
    path = write(tmp_path, "train:\n  lr: 1e-4\n  adv_weight: 5e-3\n")
    config = load_config(path)
    assert config.train.lr == pytest.approx(1e-4)
    assert config.train.adv_weight == pytest.approx(5e-3)


@pytest.mark.parametrize(
    "values, words",
    [
        ({"optimiser": {}}, ["unknown key", "'optimiser'"]),
        ({"train": {"learning_rate": 1e-3}}, ["unknown key", "'train.learning_rate'"]),
        ({"data": {"mask": {"accel": 4}}}, ["unknown key", "'data.mask.accel'"]),
        ({"train": {"p_train": 1}}, ["train.p_train", "at least 2"]),
        ({"train": {"p_val": 1}}, ["train.p_val", "at least 2"]),
        ({"data": {"mask": {"R": 0.5}}}, ["data.mask.R", "at least 1"]),
        ({"data": {"mask": {"R": [0, 8]}}}, ["data.mask.R", "at least 1"]),
        ({"data": {"mask": {"R": [8, 2]}}}, ["data.mask.R", "R_min <= R_max"]),
        ({"data": {"mask": {"R": [2, 4, 8]}}}, ["data.mask.R", "range"]),
        ({"data": {"mask": {"kind": "spiral"}}}, ["data.mask.kind", "spiral"]),
        ({"train": {"gp_weight": -10}}, ["train.gp_weight", "non-negative"]),
        ({"train": {"drift_weight": -0.1}}, ["train.drift_weight", "non-negative"]),
        ({"train": {"adv_weight": -1e-3}}, ["train.adv_weight", "non-negative"]),
        ({"train": {"adv_weight": "sometimes"}}, ["train.adv_weight", "schedule"]),
        ({"train": {"beta_sd": -0.1}}, ["train.beta_sd", "non-negative"]),
        ({"train": {"l2_weight": -1}}, ["train.l2_weight", "non-negative"]),
        ({"train": {"lr": 0}}, ["train.lr", "positive"]),
        ({"train": {"batch_size": 0}}, ["train.batch_size", "at least 1"]),
        ({"train": {"batch_size": "nine"}}, ["train.batch_size", "integer"]),
        ({"train": {"beta_sd_autotune": "yes"}}, ["train.beta_sd_autotune", "true or false"]),
        ({"train": {"betas": [0.9]}}, ["train.betas"]),
        ({"train": {"precision": "8-bit"}}, ["train.precision"]),
        ({"train": {"adv_reduction": "max"}}, ["train.adv_reduction", "mean, sum", "'max'"]),
        ({"train": {"sd_reward": "biased"}}, ["train.sd_reward", "paper, reference", "'biased'"]),
        ({"task": "denoising"}, ["task", "denoising"]),
        ({"method": "vae"}, ["method", "vae"]),
        ({"data": {"image_size": 100}}, ["data.image_size", "divisible"]),
        ({"data": {"min_coils": 4}}, ["data.min_coils", "data.coils"]),
        ({"data": "folder"}, ["data", "mapping"]),
        ({"task": "inpainting", "data": {"image_size": 64, "hole_size": 64}},
         ["data.hole_size", "smaller"]),
        ({"task": "inpainting", "data": {"channels": 2}}, ["data.channels"]),
        ({"task": "inpainting", "data": {"hole": "ring"}}, ["data.hole", "ring"]),
    ],
)
def test_bad_values_name_the_key_and_file(tmp_path, values, words):
    path = write(tmp_path, values)
    with pytest.raises(ConfigError) as error:
        load_config(path)
    message = str(error.value)
    assert str(path) in message
    for word in words:
        assert word in message, message


def test_unreadable_files(tmp_path):
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "train: [unclosed\n"))
    with pytest.raises(ConfigError, match="mapping"):
        load_config(write(tmp_path, "- a\n- b\n"))


def test_missing_data_folders_are_reported_before_training(tmp_path):
    values = {"data": {"root": str(tmp_path / "nowhere"), "image_size": 64},
              "model": {"critic_num_down": 3}}
    path = write(tmp_path, values)
    config = load_config(path)  # loading alone does not need the data
    with pytest.raises(ConfigError) as error:
        check_data_paths(config)
    assert str(tmp_path / "nowhere" / "train") in str(error.value)
    assert "training.simulate" in str(error.value)
    with pytest.raises(ConfigError):
        load_config(path, check_paths=True)
    (tmp_path / "nowhere" / "train").mkdir(parents=True)
    with pytest.raises(ConfigError, match="data.val"):
        check_data_paths(config)
    (tmp_path / "nowhere" / "val").mkdir()
    check_data_paths(config)


def test_folders_resolve_against_root(tmp_path):
    config = config_from_dict({"data": {"root": str(tmp_path), "train": "a",
                                        "val": str(tmp_path / "b")}})
    assert config.data.folder("train") == tmp_path / "a"
    assert config.data.folder("val") == tmp_path / "b"


def test_train_command_stops_on_bad_config_before_training(tmp_path, capsys):
    from training.train import main

    path = write(tmp_path, {"train": {"p_train": 1}})
    assert main(["--config", str(path), "--out", str(tmp_path / "run")]) == 2
    assert "train.p_train" in capsys.readouterr().err
    path = write(tmp_path, {"data": {"root": str(tmp_path / "absent")}}, "missing.yaml")
    assert main(["--config", str(path), "--out", str(tmp_path / "run")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_command_line_overrides(tmp_path):
    path = write(tmp_path, {"data": {"image_size": 64}, "model": {"critic_num_down": 3}})
    config = load_config(path, overrides=["train.batch_size=4", "data.mask.R=[2, 8]",
                                          "data.train=sim/train", "method=ohayon"])
    assert config.train.batch_size == 4 and config.data.mask.r_range == (2.0, 8.0)
    assert config.data.train == "sim/train" and config.method == "ohayon"
    with pytest.raises(ConfigError, match="'train.batchsize'"):
        load_config(path, overrides=["train.batchsize=4"])
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        load_config(path, overrides=["train.batch_size"])
    with pytest.raises(ConfigError, match="train.p_train"):
        load_config(path, overrides=["train.p_train=1"])
    assert load_config(path, overrides=["train.beta_sd_bins=[2.5, 4]"]).train.beta_sd_bins == [2.5, 4]
    with pytest.raises(ConfigError, match="train.beta_sd_bins.*increasing"):
        load_config(path, overrides=["train.beta_sd_bins=[4, 2.5]"])
    assert load_config(path, overrides=["train.beta_sd_bin_pooling=1"]).train.beta_sd_bin_pooling == 1
    with pytest.raises(ConfigError, match="train.beta_sd_bin_pooling.*0 or more"):
        load_config(path, overrides=["train.beta_sd_bin_pooling=-1"])
    assert load_config(path).train.e1_estimate == "first"  # eq. (22)
    assert load_config(path, overrides=["train.e1_estimate=all"]).train.e1_estimate == "all"
    with pytest.raises(ConfigError, match="train.e1_estimate.*first"):
        load_config(path, overrides=["train.e1_estimate=mean"])
    assert load_config(path).train.generator_ema_half_life is None  # the paper: no average
    averaged = load_config(path, overrides=["train.generator_ema_half_life=200"])
    assert averaged.train.generator_ema_half_life == 200
    for bad in ("0", "2.5", "true"):  # a bad value of an optional option names the option (not a TypeError)
        with pytest.raises(ConfigError, match="generator_ema_half_life must be (a whole number|an integer)"):
            load_config(path, overrides=[f"train.generator_ema_half_life={bad}"])


def test_anatomy_names_mirror_the_simulator():
    """The config lists the simulator's anatomy sources itself (importing it is heavy); the two
    lists must not drift apart."""
    from training import config, simulate

    assert config.VOLUME_ANATOMY == simulate.SOURCES
    assert config.ANATOMY_SOURCES == simulate.SOURCES + simulate.SLICE_SOURCES
    assert config.TISSUE_ANATOMY == simulate.TISSUE_SOURCES
