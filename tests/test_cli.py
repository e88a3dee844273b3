"""The ``napari-rcgan`` command line: the sample pipeline end to end, and every bad input."""

import json
import subprocess
import sys

import h5py
import numpy as np
import pytest
from PIL import Image

from napari_rcgan.cli import main
from napari_rcgan.io import FastMRIFile
from napari_rcgan.sampler import PosteriorSampler


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "napari_rcgan.cli", *args], capture_output=True,
                          text=True, timeout=300)


def test_sample_on_raw_fastmri_file_writes_the_documented_outputs(
    raw_fastmri_file, mri_weights_384, tmp_path
):
    out = tmp_path / "out.h5"
    figures = tmp_path / "figures"
    completed = run_cli("sample", str(raw_fastmri_file), "--slice", "1", "--R", "8", "--P", "4",
                        "--seed", "3", "--weights", str(mri_weights_384), "--device", "cpu",
                        "--chunk", "2", "--out", str(out), "--png", str(figures))
    assert completed.returncode == 0, completed.stderr
    with h5py.File(out) as handle:
        assert handle["samples"].shape == (4, 384, 384)
        for name in ("mean", "std", "zero_filled", "mask", "target", "error"):
            assert handle[name].shape == (384, 384) and handle[name].dtype == np.float32, name
        assert handle["samples"].dtype == np.float32
        attrs = dict(handle.attrs)
        samples = handle["samples"][()]
        np.testing.assert_allclose(handle["mean"][()], samples.mean(0), rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(handle["std"][()], samples.std(0), rtol=1e-3, atol=1e-6)
        np.testing.assert_allclose(handle["error"][()], np.abs(handle["mean"][()] - handle["target"][()]),
                                   rtol=1e-5, atol=1e-6)
        assert handle["mask"][()].mean() == pytest.approx(1 / 8, rel=0.05)
    assert attrs["task"] == "mri" and attrs["P"] == 4 and attrs["seed"] == 3
    assert attrs["mask_kind"] == "gro" and attrs["R"] == pytest.approx(8, rel=0.05)
    assert attrs["weights"] == str(mri_weights_384)
    assert attrs["backend"] in ("torch", "openvino") and attrs["precision"] in ("fp32", "bf16")
    pngs = list(figures.glob("*.png"))
    assert len(pngs) == 1
    figure = np.asarray(Image.open(pngs[0]).convert("L"), dtype=np.float32)
    assert figure.std() > 10, "the figure is not blank"


def test_cli_output_equals_the_api_with_the_same_seed(small_fastmri_file, mri_weights_64, tmp_path):
    out = tmp_path / "out.h5"
    assert main(["sample", str(small_fastmri_file), "--R", "4", "--P", "3", "--seed", "5", "--weights",
                 str(mri_weights_64), "--device", "cpu", "--out", str(out)]) == 0
    with h5py.File(out) as handle:
        samples = handle["samples"][()]
    sampler = PosteriorSampler(mri_weights_64, device="cpu")
    measurement = sampler.measure_mri(FastMRIFile.open(small_fastmri_file).read_kspace(0), R=4)
    np.testing.assert_allclose(sampler.sample(measurement, P=3, seed=5).stack.samples, samples,
                               rtol=1e-4, atol=1e-6)


def test_sample_on_a_face_image(face_weights_64, tmp_path):
    rng = np.random.default_rng(0)
    photo = tmp_path / "face.png"
    Image.fromarray((rng.random((80, 96, 3)) * 255).astype(np.uint8)).save(photo)
    out = tmp_path / "face.h5"
    assert main(["sample", str(photo), "--P", "2", "--weights", str(face_weights_64), "--device",
                 "cpu", "--out", str(out), "--png", str(tmp_path)]) == 0
    with h5py.File(out) as handle:
        assert handle["samples"].shape == (2, 64, 64, 3)
        assert handle["mask"].shape == (64, 64) and handle["mask"][()].sum() == 32 * 32
        assert handle.attrs["task"] == "inpainting" and "target" in handle and "error" in handle
    assert (tmp_path / "face_P2.png").is_file()


def write_h5(path, **datasets):
    with h5py.File(path, "w") as handle:
        for name, data in datasets.items():
            handle.create_dataset(name, data=data)
    return path


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory, small_fastmri_file):
    folder = tmp_path_factory.mktemp("bad")
    with h5py.File(small_fastmri_file) as handle:
        kspace = handle["kspace"][()]
    nan_kspace = kspace.copy()
    nan_kspace[0, 0, 5, 5] = np.inf
    not_hdf5 = folder / "text.h5"
    not_hdf5.write_text("hello")
    corrupt_weights = folder / "corrupt.safetensors"
    corrupt_weights.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{broken}" + b"0" * 64)
    np.save(folder / "empty_mask.npy", np.zeros(64, dtype=bool))
    np.save(folder / "wrong_mask.npy", np.ones((32, 32), dtype=bool))
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(folder / "small.png")
    return {
        "missing": folder / "absent.h5",
        "not_hdf5": not_hdf5,
        "no_kspace": write_h5(folder / "nokspace.h5", image=np.zeros((2, 4, 4))),
        "real_kspace": write_h5(folder / "real.h5", kspace=np.zeros((2, 8, 64, 64), np.float32)),
        "rank3": write_h5(folder / "rank3.h5", kspace=np.zeros((8, 64, 64), np.complex64)),
        "four_coils": write_h5(folder / "fourcoils.h5", kspace=kspace[:, :4]),
        "tiny": write_h5(folder / "tiny.h5", kspace=kspace[:, :, :32, :32]),
        "nan": write_h5(folder / "nan.h5", kspace=nan_kspace),
        "good": small_fastmri_file,
        "corrupt_weights": corrupt_weights,
        "empty_mask": folder / "empty_mask.npy",
        "wrong_mask": folder / "wrong_mask.npy",
        "small_image": folder / "small.png",
    }


BAD_CASES = [
    ("missing", [], "no such file"),
    ("not_hdf5", [], "not an HDF5 file"),
    ("no_kspace", [], "no 'kspace' dataset"),
    ("real_kspace", [], "must be complex"),
    ("rank3", [], "rank 4"),
    ("good", ["--slice", "7"], "slice 7 out of range"),
    ("four_coils", [], "has 4 coils but the weights"),
    ("tiny", [], "smaller than the 64x64"),
    ("nan", [], "NaN or Inf"),
    ("good", ["--R", "0.5"], "R=0.5 is out of range"),
    ("good", ["--R", "1000"], "R=1000.0 is out of range"),
    ("good", ["--P", "0"], "must be an integer in 1..512"),
    ("good", ["--P", "513"], "must be an integer in 1..512"),
    ("good", ["--mask", "@empty_mask"], "samples no k-space line"),
    ("good", ["--mask", "@wrong_mask"], "wrong_mask.npy"),
    ("good", ["--weights", "@face"], "weights are for inpainting"),
    ("good", ["--weights", "@corrupt_weights"], "corrupt.safetensors"),
    ("small_image", ["--weights", "@face"], "smaller than the 64x64"),
    ("small_image", ["--weights", "@mri"], "weights are for mri"),
]


@pytest.mark.parametrize(
    ("case", "extra", "message"),
    BAD_CASES,
    ids=[f"{case}{'-' + '-'.join(extra) if extra else ''}" for case, extra, _ in BAD_CASES],
)
def test_bad_input_gives_one_line_error_and_no_output(
    case, extra, message, bad_inputs, mri_weights_64, face_weights_64, tmp_path, capsys
):
    references = dict(bad_inputs, face=face_weights_64, mri=mri_weights_64)
    extra = [str(references[item[1:]]) if item.startswith("@") else item for item in extra]
    if "--weights" not in extra:
        extra += ["--weights", str(mri_weights_64)]
    out = tmp_path / "out.h5"
    with pytest.raises(SystemExit) as exit_info:
        main(["sample", str(bad_inputs[case]), *extra, "--P" if "--P" not in extra else "--seed",
              "2" if "--P" not in extra else "0", "--device", "cpu", "--out", str(out),
              "--png", str(tmp_path / "png")])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert error.startswith("napari-rcgan: error: ") and error.count("\n") == 1, error
    assert message in error
    assert "Traceback" not in error
    assert not out.exists() and not list(tmp_path.glob("**/*.png")) and not list(tmp_path.glob(".*tmp"))


def test_cli_process_exit_status_and_message(tmp_path):
    completed = run_cli("sample", str(tmp_path / "absent.h5"), "--weights", "random:mri",
                        "--out", str(tmp_path / "o.h5"))
    assert completed.returncode == 2
    assert completed.stderr.strip() == f"napari-rcgan: error: {tmp_path / 'absent.h5'}: no such file"


def test_info_on_fastmri_file_and_bad_output_suffix(small_fastmri_file, capsys, tmp_path):
    assert main(["info", str(small_fastmri_file)]) == 0
    assert "2 slices, 8 coils, k-space 128x72" in capsys.readouterr().out
    assert main(["info", str(small_fastmri_file), "--json"]) == 0
    block = json.loads(capsys.readouterr().out)
    assert block["num_slices"] == 2 and block["kspace_shape"] == [128, 72]
    with pytest.raises(SystemExit):
        main(["sample", str(small_fastmri_file), "--weights", "random:mri", "--out", str(tmp_path / "x.txt")])
    assert "must be an .h5 file" in capsys.readouterr().err


def test_headless_demo_samples_the_bundled_data_with_the_bundled_weights(tmp_path, capsys):
    assert main(["demo", "--headless", "--out", str(tmp_path), "--P", "4", "--device", "cpu"]) == 0
    figures = sorted(path.name for path in tmp_path.glob("*.png"))
    assert figures == ["brain_sim_R4_P4.png", "face_astronaut_P4.png"]
    with h5py.File(tmp_path / "brain_sim_R4_P4.h5") as handle:
        assert handle.attrs["weights"] == "mri" and handle["samples"].shape[0] == 4
    with h5py.File(tmp_path / "face_astronaut_P4.h5") as handle:
        assert handle.attrs["weights"] == "faces" and handle.attrs["task"] == "inpainting"
    assert "headless demo" in capsys.readouterr().out


def test_sample_outside_the_trained_r_range_warns_and_records_it(small_fastmri_file, mri_weights_64,
                                                                  tmp_path, capsys):
    out = tmp_path / "r12.h5"
    assert main(["sample", str(small_fastmri_file), "--R", "12", "--P", "2", "--weights",
                 str(mri_weights_64), "--device", "cpu", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "warning: R=12" in err and "is outside the range" in err and "R 2 to 8" in err
    with h5py.File(out) as handle:
        assert "R 2 to 8" in handle.attrs["R_warning"]
        assert handle.attrs["fov"] == "crop" and handle.attrs["pixel_scale"] == 1.0
    inside = tmp_path / "r4.h5"
    assert main(["sample", str(small_fastmri_file), "--R", "4", "--P", "2", "--weights",
                 str(mri_weights_64), "--device", "cpu", "--out", str(inside)]) == 0
    assert "warning" not in capsys.readouterr().err
    with h5py.File(inside) as handle:
        assert "R_warning" not in handle.attrs


def _sample_args(small_fastmri_file, mri_weights_64, out, *extra):
    return ["sample", str(small_fastmri_file), "--P", "2", "--weights", str(mri_weights_64),
            "--device", "cpu", "--out", str(out), *extra]


def test_backend_and_precision_flags_reach_the_output(small_fastmri_file, mri_weights_64, tmp_path,
                                                      capsys):
    out = tmp_path / "torch.h5"
    assert main(_sample_args(small_fastmri_file, mri_weights_64, out, "--backend", "torch",
                             "--precision", "fp32")) == 0
    with h5py.File(out) as handle:
        assert (handle.attrs["backend"], handle.attrs["precision"]) == ("torch", "fp32")
    assert "torch fp32" in capsys.readouterr().out


@pytest.mark.parametrize("case", ["openvino_missing", "bf16_missing", "unknown_backend"])
def test_backend_bad_input_is_one_line(case, small_fastmri_file, mri_weights_64, tmp_path, capsys,
                                       monkeypatch):
    from napari_rcgan import backends

    flags, message = {
        "openvino_missing": (["--backend", "openvino"], "pip install 'napari-rcgan[openvino]'"),
        "bf16_missing": (["--precision", "bf16"], "no native bf16"),
        "unknown_backend": (["--backend", "onnx"], "use one of auto, torch, openvino"),
    }[case]
    monkeypatch.setitem(sys.modules, "openvino", None)  # as without the extra
    monkeypatch.setattr(backends, "cpu_has_bf16", lambda: False)  # as on a CPU without bf16
    out = tmp_path / "out.h5"
    with pytest.raises(SystemExit) as exit_info:
        main(_sample_args(small_fastmri_file, mri_weights_64, out, *flags))
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert error.startswith("napari-rcgan: error: ") and error.count("\n") == 1, error
    assert message in error and not out.exists()

