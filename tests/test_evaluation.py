"""``napari-rcgan evaluate``: the metrics schema, the paper's metrics, the model-card update, bad input."""

import json
import math
import shutil

import pytest

from napari_rcgan.cli import main
from napari_rcgan.evaluation import evaluate
from napari_rcgan.io import FastMRIFile
from napari_rcgan.sampler import PosteriorSampler
from napari_rcgan.weights import read_metadata


def test_evaluate_writes_the_documented_schema_and_stores_it(small_fastmri_file, mri_weights_64, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(small_fastmri_file, data)
    weights = shutil.copy(mri_weights_64, tmp_path / "w.safetensors")
    out = tmp_path / "metrics.json"
    assert main(["evaluate", "--weights", str(weights), "--data", str(data), "--R", "4", "8",
                 "--P", "1", "2", "4", "--device", "cpu", "--out", str(out), "--store-in-weights"]) == 0
    metrics = json.loads(out.read_text())
    assert set(metrics["R"]) == {"4", "8"} and metrics["slices"] == 2
    for values in metrics["R"].values():
        assert set(values) == {"zero_filled_psnr", "psnr", "ssim", "apsd", "e1_over_ep_db",
                               "e1_over_ep_db_per_slice", "sd_error_spearman", "sd_error_spearman_ceiling",
                               "psnr_gain_min_db", "slices_below_zero_filled"}
        assert 0 < values["sd_error_spearman_ceiling"] < 1
        assert 0 <= values["slices_below_zero_filled"] <= 2
        assert values["psnr_gain_min_db"] <= values["psnr"]["4"] - values["zero_filled_psnr"] + 1e-9
        assert set(values["psnr"]) == set(values["ssim"]) == set(values["e1_over_ep_db"]) == {"1", "2", "4"}
        assert values["e1_over_ep_db"]["1"] == 0.0
        assert values["apsd"] > 0 and -1 <= values["sd_error_spearman"] <= 1
        assert all(math.isfinite(v) for v in values["psnr"].values())
    assert metrics["R"]["4"]["zero_filled_psnr"] > metrics["R"]["8"]["zero_filled_psnr"]
    stored = read_metadata(weights).metrics["evaluation"]
    assert stored["R"] == metrics["R"]
    # Weights are shared: the card names the data and weights without this machine's paths.
    assert metrics["weights"] == str(weights) and stored["weights"] == "w.safetensors"
    assert stored["data"] == "data"
    # A second evaluation stored under another name keeps the first one.
    assert main(["evaluate", "--weights", str(weights), "--data", str(data), "--R", "4",
                 "--P", "1", "2", "--device", "cpu", "--out", str(out), "--store-in-weights",
                 "--store-as", "evaluation_other", "--data-label", "one simulated volume"]) == 0
    card = read_metadata(weights).metrics
    assert card["evaluation"]["R"] == metrics["R"] and set(card["evaluation_other"]["R"]) == {"4"}
    assert card["evaluation_other"]["data"] == "one simulated volume"


def test_e1_over_ep_uses_every_sample_in_disjoint_groups(small_fastmri_file, mri_weights_64, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(small_fastmri_file, data)
    sampler = PosteriorSampler(str(mri_weights_64), device="cpu", backend="torch")
    values = evaluate(sampler, data, [4.0], [1, 2, 4], seed=3)["R"]["4"]
    energies = {1: 0.0, 2: 0.0, 4: 0.0}
    fastmri = FastMRIFile.open(data / small_fastmri_file.name)
    for index in range(fastmri.num_slices):
        measurement = sampler.measure_mri(fastmri.read_kspace(index), R=4.0)
        images = sampler.sample(measurement, 4, seed=3).images
        for P in energies:  # E1 over all 4 single samples, E2 over both pairs
            groups = images.reshape(4 // P, P, *images.shape[1:]).mean(dim=1)
            energies[P] += float((groups - measurement.target).abs().pow(2).sum()) / (4 // P)
        if index == 0:
            first_slice = dict(energies)
    for P in (2, 4):
        expected = 10 * math.log10(energies[1] / energies[P])
        assert values["e1_over_ep_db"][str(P)] == pytest.approx(expected, abs=1e-4)
    # Each slice's own ratio; the set's ratio pools the energies, so it lies between them.
    for P in (2, 4):
        per_slice = values["e1_over_ep_db_per_slice"][str(P)]
        assert len(per_slice) == fastmri.num_slices
        assert per_slice[0] == pytest.approx(10 * math.log10(first_slice[1] / first_slice[P]), abs=1e-4)
        assert min(per_slice) - 1e-9 <= values["e1_over_ep_db"][str(P)] <= max(per_slice) + 1e-9


def test_evaluate_bad_input(tmp_path, face_weights_64, mri_weights_64, capsys):
    with pytest.raises(SystemExit):
        main(["evaluate", "--weights", str(mri_weights_64), "--data", str(tmp_path / "none"),
              "--out", str(tmp_path / "m.json")])
    assert "no such data folder" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["evaluate", "--weights", str(face_weights_64), "--data", str(tmp_path),
              "--out", str(tmp_path / "m.json")])
    assert "no PNG/JPEG/TIFF images to evaluate on (--data)" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["evaluate", "--weights", str(face_weights_64), "--task", "mri", "--data", str(tmp_path),
              "--out", str(tmp_path / "m.json")])
    assert "--task mri but these weights are for inpainting" in capsys.readouterr().err
    assert not (tmp_path / "m.json").exists()


def test_evaluate_paper_metrics_on_mri(small_fastmri_file, mri_weights_64, feature_dir, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(small_fastmri_file, data)
    out = tmp_path / "metrics.json"
    assert main(["evaluate", "--weights", str(mri_weights_64), "--data", str(data), "--R", "4",
                 "--P", "1", "2", "--device", "cpu", "--out", str(out), "--combine", "sense",
                 "--metrics", "psnr", "cfid", "fid", "lpips", "dists", "time",
                 "--cfid-sets", "test:3,val:2,val+train", "--val-data", str(data),
                 "--train-data", str(data), "--fid-P", "3", "--features-dir", str(feature_dir)]) == 0
    metrics = json.loads(out.read_text())
    values = metrics["R"]["4"]
    assert metrics["combine"] == "sense" and metrics["cfid_P"] == {"test": 3, "val": 2, "val+train": 1}
    assert set(values["cfid"]) == {"test", "val", "val+train"}
    assert all(value > 0 and math.isfinite(value) for value in values["cfid"].values())
    assert values["fid"] > 0 and math.isfinite(values["fid"])
    assert set(values["lpips"]) == set(values["dists"]) == {"1", "2"}
    assert all(0 < value < 1 for name in ("lpips", "dists") for value in values[name].values())
    assert values["time_ms"]["4"] > 0 and values["time_ms_per_sample"] == values["time_ms"]["4"] / 4
    assert {"psnr", "ssim", "apsd", "e1_over_ep_db"} <= set(values)


def test_evaluate_inpainting_uses_inception_features(face_weights_64, feature_dir, tmp_path):
    from napari_rcgan.bundled import sample_data_dir

    data = tmp_path / "faces"
    data.mkdir()
    for face in sorted(sample_data_dir().glob("face*.png")):
        shutil.copy(face, data)
    out = tmp_path / "faces.json"
    assert main(["evaluate", "--weights", str(face_weights_64), "--task", "inpainting", "--data",
                 str(data), "--P", "1", "2", "--device", "cpu", "--metrics", "cfid", "lpips",
                 "--out", str(out), "--features-dir", str(feature_dir)]) == 0
    metrics = json.loads(out.read_text())
    values = metrics["hole"]["center"]
    assert metrics["task"] == "inpainting" and metrics["images"] == 2 and metrics["cfid_P"] == {"test": 1}
    assert math.isfinite(values["cfid"]["test"]) and values["cfid"]["test"] > 0
    assert set(values["lpips"]) == {"1", "2"} and "dists" not in values


def test_evaluate_rejects_unknown_metrics_and_folders_without_usable_files(mri_weights_64, tmp_path,
                                                                          capsys):
    out = tmp_path / "m.json"
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", "--weights", str(mri_weights_64), "--data", str(tmp_path),
              "--metrics", "psnr", "kid", "--out", str(out)])
    message = capsys.readouterr().err
    assert exit_info.value.code == 2 and message.count("\n") == 1
    assert "--metrics: unknown name 'kid'" in message
    (tmp_path / "notes.txt").write_text("no data here")
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", "--weights", str(mri_weights_64), "--data", str(tmp_path), "--out", str(out)])
    message = capsys.readouterr().err
    assert exit_info.value.code == 2 and message.count("\n") == 1
    assert f"{tmp_path}: no .h5 files to evaluate on (--data)" in message
    (tmp_path / "broken.h5").write_bytes(b"not hdf5")
    with pytest.raises(SystemExit):
        main(["evaluate", "--weights", str(mri_weights_64), "--data", str(tmp_path), "--out", str(out)])
    assert "broken.h5: not an HDF5 file" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["evaluate", "--weights", str(mri_weights_64), "--data", str(tmp_path), "--out", str(out),
              "--metrics", "cfid", "--cfid-sets", "val"])
    assert "--cfid-sets val needs --val-data FOLDER" in capsys.readouterr().err
    assert not out.exists()


def test_evaluate_with_missing_feature_weights_names_the_command(small_fastmri_file, mri_weights_64,
                                                                 tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(small_fastmri_file, data)
    out = tmp_path / "m.json"
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", "--weights", str(mri_weights_64), "--data", str(data), "--R", "4", "--P", "1",
              "--device", "cpu", "--metrics", "lpips", "--features-dir", str(tmp_path / "empty"),
              "--out", str(out)])
    *warnings, message = capsys.readouterr().err.splitlines()
    assert exit_info.value.code == 2 and message.startswith("napari-rcgan: error: ")
    assert all(line.startswith("napari-rcgan: warning: ") for line in warnings)
    assert "lpips_alex.safetensors: feature weights not found; run `napari-rcgan features prepare`" in message
    assert not out.exists()
