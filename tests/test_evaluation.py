"""``napari-rcgan evaluate``: the metrics schema, the model-card update, bad input."""

import json
import math
import shutil

import pytest

from napari_rcgan.cli import main
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
                               "sd_error_spearman"}
        assert set(values["psnr"]) == set(values["ssim"]) == set(values["e1_over_ep_db"]) == {"1", "2", "4"}
        assert values["e1_over_ep_db"]["1"] == 0.0
        assert values["apsd"] > 0 and -1 <= values["sd_error_spearman"] <= 1
        assert all(math.isfinite(v) for v in values["psnr"].values())
    assert metrics["R"]["4"]["zero_filled_psnr"] > metrics["R"]["8"]["zero_filled_psnr"]
    stored = read_metadata(weights).metrics["evaluation"]
    assert stored["R"] == metrics["R"] and stored["data"] == str(data)


def test_evaluate_bad_input(tmp_path, face_weights_64, mri_weights_64, capsys):
    with pytest.raises(SystemExit):
        main(["evaluate", "--weights", str(mri_weights_64), "--data", str(tmp_path / "none"),
              "--out", str(tmp_path / "m.json")])
    assert "no such data folder" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["evaluate", "--weights", str(face_weights_64), "--data", str(tmp_path),
              "--out", str(tmp_path / "m.json")])
    assert "evaluate measures MRI weights" in capsys.readouterr().err
    assert not (tmp_path / "m.json").exists()
