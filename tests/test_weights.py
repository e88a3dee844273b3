"""Weights format: safetensors + JSON metadata, loading, mismatch and corruption errors."""

import json
import re

import pytest
import torch

from napari_rcgan.cli import main
from napari_rcgan.errors import WeightsError
from napari_rcgan.weights import (
    WeightsMetadata,
    build_generator,
    load_weights,
    portable_name,
    random_weights,
    read_metadata,
    save_weights,
)


def tiny_metadata(**overrides) -> WeightsMetadata:
    values = dict(
        task="mri",
        image_size=[32, 32],
        channels=8,
        base_width=4,
        num_pool_layers=2,
        masks=["gro"],
        acceleration=[2.0, 8.0],
        beta_sd=0.3,
        notes="test",
    )
    values.update(overrides)
    return WeightsMetadata(**values)


def test_save_load_round_trip_keeps_tensors_and_metadata(tmp_path):
    metadata = tiny_metadata(metrics={"R": {"4": {"psnr": {"8": 30.0}}}})
    generator = build_generator(metadata)
    path = save_weights(tmp_path / "w.safetensors", generator.state_dict(), metadata)
    loaded = load_weights(path)
    assert loaded.metadata == metadata
    for key, value in generator.state_dict().items():
        torch.testing.assert_close(loaded.state_dict[key], value)
    assert read_metadata(path).metrics["R"]["4"]["psnr"]["8"] == 30.0
    rebuilt = loaded.build_generator()
    assert not rebuilt.training
    assert not list(tmp_path.glob(".*tmp")), "no temporary file is left behind"


def test_info_prints_metadata(tmp_path, capsys):
    metadata = tiny_metadata()
    path = save_weights(
        tmp_path / "w.safetensors", build_generator(metadata).state_dict(), metadata
    )
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "task: mri" in out and "coils: 8" in out and "base width 4" in out
    assert "--json" in out and "{" not in out, "the summary is short and readable"
    assert main(["info", str(path), "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["beta_sd"] == 0.3


def test_info_summary_of_the_bundled_weights_is_short(capsys):
    assert main(["info", "mri"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert len(lines) <= 16 and max(len(line) for line in lines) <= 170, out
    assert "measured at R=4" in out and "PSNR" in out
    assert re.search(r"measured at R=4: .*\[E1/E8\]dB -?\d+\.\d\d \(ideal 2\.50\)", out), out
    assert "model card entries evaluation, evaluation_heldout_anatomy, evaluation_real_mr" in out
    assert "[2, " in out and "8]: " in out and "8): " not in out  # the last R bin is closed
    assert main(["info", "mri", "--json"]) == 0
    full = json.loads(capsys.readouterr().out)
    assert full["task"] == "mri" and "evaluation" in full["metrics"]


def test_random_weights_are_deterministic():
    first, second = random_weights("mri"), random_weights("mri")
    for key in first.state_dict:
        torch.testing.assert_close(first.state_dict[key], second.state_dict[key])
    assert random_weights("inpainting").metadata.in_channels == 3 + 1 + 2
    with pytest.raises(WeightsError, match="random:mri, random:inpainting, random:comodgan"):
        random_weights("ct")


def test_missing_and_corrupted_weights(tmp_path):
    with pytest.raises(WeightsError, match="no such weights file"):
        load_weights(tmp_path / "absent.safetensors")
    corrupted = tmp_path / "corrupt.safetensors"
    corrupted.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{garbage")
    with pytest.raises(WeightsError, match="corrupt.safetensors"):
        load_weights(corrupted)
    truncated = tmp_path / "truncated.safetensors"
    metadata = tiny_metadata()
    save_weights(truncated, build_generator(metadata).state_dict(), metadata)
    truncated.write_bytes(truncated.read_bytes()[:-1000])
    with pytest.raises(WeightsError, match="truncated.safetensors"):
        load_weights(truncated)


def test_tensors_that_do_not_fit_the_metadata_are_refused(tmp_path):
    metadata = tiny_metadata()
    state = build_generator(metadata).state_dict()
    wrong = tiny_metadata(base_width=8)
    path = save_weights(tmp_path / "w.safetensors", state, wrong)
    with pytest.raises(WeightsError, match="do not fit the architecture"):
        load_weights(path).build_generator()


def test_unknown_task_and_newer_format_are_refused(tmp_path):
    metadata = tiny_metadata()
    path = save_weights(
        tmp_path / "w.safetensors", build_generator(metadata).state_dict(), metadata
    )
    from safetensors.torch import load_file, save_file

    tensors = load_file(path)
    for bad, message in (({"task": "ct"}, "task must be one of"), ({"format_version": 99}, "newer"),
                         ({"coil_compression": "sometimes"}, '"reference" or "always"')):
        values = json.loads(metadata.to_json()) | bad
        save_file(tensors, str(path), metadata={"rcgan": json.dumps(values)})
        with pytest.raises(WeightsError, match=message):
            load_weights(path)


def test_input_skip_adds_the_measurement_to_the_output():
    metadata = tiny_metadata(input_skip=True)
    with_skip = build_generator(metadata).eval()
    plain = build_generator(tiny_metadata()).eval()
    plain.load_state_dict(with_skip.state_dict())
    inputs = torch.randn(2, 18, 32, 32)
    with torch.inference_mode():
        torch.testing.assert_close(with_skip(inputs), plain(inputs) + inputs[:, :16])
    assert "input skip" in metadata.describe()


@pytest.mark.parametrize("training", [False, True])
def test_a_widened_unet_computes_what_the_narrow_one_did(training):
    from napari_rcgan.models.unet import ResidualUNet

    torch.manual_seed(0)
    narrow = ResidualUNet(18, 16, base_width=4, num_pool_layers=3, input_skip=True)
    with torch.no_grad():  # trained-looking BatchNorms, so that their copies matter
        for module in narrow.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-1, 1)
                module.running_var.uniform_(0.5, 2)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.5, 0.5)
    wide = ResidualUNet(18, 16, base_width=6, num_pool_layers=3, input_skip=True)
    x = torch.randn(2, 18, 24, 20)
    narrow.train(training)
    wide.train(training)
    assert not torch.allclose(wide(x), narrow(x), atol=1e-3)
    wide.load_narrower(narrow)
    torch.testing.assert_close(wide(x), narrow(x), atol=1e-5, rtol=1e-5)
    # The extra channels exist and are free to learn: their own weights are not all zero.
    first = wide.down_sample_layers[0].conv_1.weight
    assert first.shape[0] == 6 and first[4:].abs().sum() > 0
    with pytest.raises(ValueError, match="wider than this one's"):
        narrow.load_narrower(wide)
    with pytest.raises(ValueError, match="same depth"):
        wide.load_narrower(ResidualUNet(18, 16, base_width=4, num_pool_layers=2, input_skip=True))


def test_acceleration_warning_names_r_and_the_trained_range():
    from napari_rcgan.weights import WeightsMetadata

    mri = WeightsMetadata(task="mri", image_size=[64, 64], channels=8, acceleration=[2.0, 8.0])
    assert mri.acceleration_warning(4.0) is None and mri.acceleration_warning(8.0) is None
    message = mri.acceleration_warning(32.0, "mri")
    assert "R=32 is outside" in message and "mri" in message and "R 2 to 8" in message
    assert "R 2 to 8" in mri.acceleration_warning(1.5)
    fixed = WeightsMetadata(task="mri", image_size=[64, 64], channels=8, acceleration=[4.0, 4.0])
    assert "R = 4" in fixed.acceleration_warning(8.0)
    faces = WeightsMetadata(task="inpainting", image_size=[64, 64], channels=3)
    assert faces.acceleration_warning(32.0) is None


@pytest.mark.parametrize(
    ("spec", "name"),
    [("/home/me/scans/held-out", "held-out"), ("/home/me/scans/held-out/", "held-out"),
     ("runs/w.safetensors", "w.safetensors"), ("mri", "mri"), ("/", "/")],
)
def test_portable_name_drops_the_machine_s_folders(spec, name):
    assert portable_name(spec) == name
