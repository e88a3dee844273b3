"""Self-check, conformal intervals, posterior principal components and ROI posteriors."""

from __future__ import annotations

import math
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from napari_rcgan import stats
from napari_rcgan.calibration import calibrate, split_slices
from napari_rcgan.cli import main
from napari_rcgan.errors import ParameterError, WeightsError
from napari_rcgan.io import FastMRIFile
from napari_rcgan.physics.masks import mask_from_array
from napari_rcgan.sampler import PosteriorSampler
from napari_rcgan.uncertainty import (
    MIN_OUTSIDE_LINES,
    OOD_RATIO,
    center_block,
    conformal_scale,
    conformal_scores,
    interval_maps,
    interval_scale,
    min_calibration_images,
    self_check,
    spread_coverage,
)
from napari_rcgan.weights import Weights, build_generator, load_weights, save_weights
from tests.conftest import ANATOMY, tiny_weights
from training.simulate import simulate_volume_file

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data" / "brain_sim.h5"


def random_like(spec: str) -> Weights:
    """A random initialisation of the architecture of ``spec`` (as random:mri, at its size)."""
    weights = load_weights(spec)
    torch.manual_seed(0)
    return Weights(weights.metadata, build_generator(weights.metadata).state_dict(), "random")


# ------------------------------------------------------------------------------------------
# Self-check


@pytest.fixture(scope="module")
def shipped_measurements():
    sampler = PosteriorSampler("mri", device="cpu")
    data = FastMRIFile.open(SAMPLE)
    return {
        (index, R): sampler.measure_mri(data.read_kspace(index), R=R, source=f"slice {index}")
        for index in (0, 2)
        for R in (4.0, 8.0)
    }


def test_self_check_never_says_out_of_distribution_for_the_shipped_weights_on_the_shipped_slices(
    shipped_measurements,
):
    # The demo weights (whole-FOV, domain-randomised, short CPU training) are over-dispersed at
    # R=4 (model card: [E1/E8]dB 3.4 on these slices), so the self-check may say "uncertain";
    # on held-out slices of their training anatomy it must not say "out of distribution".
    sampler = PosteriorSampler("mri", device="cpu")
    for (index, R), measurement in shipped_measurements.items():
        check = self_check(sampler, measurement)
        assert check.verdict in ("fits", "uncertain"), (index, R, check)
        assert check.error_ratio < OOD_RATIO
        assert 0 < check.coverage <= 1
        assert check.ideal_coverage == pytest.approx(8 / 9)
        assert check.held_out_lines >= 1 and check.splits == 3
        assert f"{100 * check.error_ratio:.0f}%" in check.message


def test_self_check_says_out_of_distribution_for_random_weights(shipped_measurements):
    sampler = PosteriorSampler(random_like("mri"), device="cpu")
    for measurement in shipped_measurements.values():
        check = self_check(sampler, measurement)
        assert check.verdict == "out_of_distribution"
        assert check.error_ratio >= OOD_RATIO
        assert "do not trust" in check.message


def test_self_check_ignores_the_reference_and_is_reproducible(shipped_measurements):
    sampler = PosteriorSampler("mri", device="cpu")
    measurement = shipped_measurements[(0, 8.0)]
    first = self_check(sampler, measurement, P=4, splits=1, seed=3)
    measurement.target = torch.zeros_like(measurement.target)  # a wrong reference changes nothing
    second = self_check(sampler, measurement, P=4, splits=1, seed=3)
    assert first.error_ratio == second.error_ratio and first.coverage == second.coverage


def test_too_few_lines_outside_the_centre_gives_no_verdict():
    sampler = PosteriorSampler("mri", device="cpu")
    kspace = FastMRIFile.open(SAMPLE).read_kspace(0)
    columns = np.zeros(128, dtype=bool)
    columns[60:69] = True  # the centre block
    columns[[10, 100, 120]] = True  # three lines outside it
    mask = mask_from_array(columns, (128, 128))
    check = self_check(sampler, sampler.measure_mri(kspace, mask=mask))
    assert check.verdict is None and math.isnan(check.error_ratio)
    assert check.outside_lines == 3
    assert f"at least {MIN_OUTSIDE_LINES}" in check.message and "3 measured lines" in check.message
    assert check.attrs()["selfcheck_verdict"] == "none"


def test_center_block_is_the_contiguous_run_around_the_centre():
    lines = np.array([0, 5, 30, 31, 32, 33, 34, 40])
    assert center_block(lines, 64).tolist() == [30, 31, 32, 33, 34]
    assert center_block(np.array([1, 2]), 64).size == 0


def test_spread_coverage_of_exchangeable_values_is_p_over_p_plus_one():
    generator = torch.Generator().manual_seed(0)
    P = 8
    values = torch.randn(P + 1, 200_000, dtype=torch.complex64, generator=generator) * 3 + 1j
    covered = spread_coverage(values[:P], values[P])
    assert float(covered.float().mean()) == pytest.approx(P / (P + 1), abs=0.005)
    # over-confident samples (half the spread) cover much less
    assert float(spread_coverage(values[:P] * 0.5, values[P]).float().mean()) < 0.7


# ------------------------------------------------------------------------------------------
# Conformal intervals


def test_conformal_scale_with_one_pixel_per_image_is_the_split_conformal_quantile():
    rng = np.random.default_rng(0)
    for n, alpha in [(9, 0.1), (20, 0.1), (57, 0.2)]:
        scores = rng.exponential(size=n)
        rank = math.ceil((n + 1) * (1 - alpha))
        expected = np.sort(scores)[rank - 1]
        assert conformal_scale([np.array([s]) for s in scores], alpha) == expected


def test_conformal_scale_reaches_the_corrected_mean_coverage():
    rng = np.random.default_rng(1)
    images = [rng.exponential(scale=1 + i % 3, size=100 + i) for i in range(30)]
    scale = conformal_scale(images, 0.1)
    covered = np.mean([np.mean(image <= scale) for image in images])
    assert covered >= 31 * 0.9 / 30
    below = np.nextafter(scale, 0)
    assert np.mean([np.mean(image <= below) for image in images]) < 31 * 0.9 / 30


def test_too_few_calibration_images_names_the_minimum():
    assert min_calibration_images(0.1) == 9
    assert min_calibration_images(0.05) == 19
    with pytest.raises(ParameterError, match="at least 9"):
        conformal_scale([np.ones(4)] * 8, 0.1)


def test_scores_and_interval_maps():
    truth = np.array([[1.0, 2.0], [3.0, 0.0]])
    mean = np.array([[1.5, 2.0], [2.0, 0.0]])
    sd = np.array([[0.25, 0.0], [0.5, 0.0]])
    region = np.array([[True, True], [True, False]])
    assert conformal_scores(truth, mean, sd, region).tolist() == [2.0, 0.0, 2.0]
    assert np.isinf(conformal_scores(truth + 1, mean, sd, region)[1])
    maps, attrs = interval_maps(mean, sd, 3.0, reference=truth)
    assert np.allclose(maps["interval_halfwidth"], 3 * sd)
    assert maps["outside_interval"].tolist() == [[0, 0], [0, 0]]
    maps, attrs = interval_maps(mean, sd, 1.5, reference=truth)
    assert maps["outside_interval"].tolist() == [[1, 0], [1, 0]]
    assert attrs["coverage"] == pytest.approx(1 / 3)


def test_weights_without_calibration_give_a_clear_message():
    with pytest.raises(WeightsError, match="no conformal calibration.*napari-rcgan calibrate"):
        interval_scale({}, 4.0, "mine.safetensors")
    conformal = {"alpha": 0.1, "P": 8, "scale": {"4": 2.0, "8": 3.0}}
    assert interval_scale(conformal, 8.0, "w") == 3.0
    with pytest.raises(WeightsError, match="R = 4, 8 only, not R=6"):
        interval_scale(conformal, 6.0, "w")


@pytest.fixture(scope="module")
def calibration_data(tmp_path_factory) -> Path:
    """184 simulated 32x32 slices (two coil/noise draws of every central axial slice)."""
    folder = tmp_path_factory.mktemp("calibration")
    for number, seed in enumerate((1, 2)):
        simulate_volume_file(
            folder / f"file_brain_AXT2_sim_{number}.h5", ANATOMY, "t2",
            slice_indices=range(38, 130), coils=8, kspace_shape=(32, 32), image_size=32,
            seed=seed, compact=True,
        )
    return folder


def test_conformal_coverage_on_a_disjoint_simulated_set(calibration_data, tmp_path):
    weights = tiny_weights(tmp_path / "tiny32.safetensors", "mri", 32, 8)
    sampler = PosteriorSampler(str(weights), device="cpu")
    conformal = calibrate(
        sampler, calibration_data, [4.0, 8.0], alpha=0.1, P=4, test_fraction=0.5, chunk_size=4
    )
    assert conformal["images"] == {"calibration": 92, "test": 92}
    assert set(conformal["scale"]) == {"4", "8"}
    for R in ("4", "8"):
        assert conformal["scale"][R] > 0
        assert abs(conformal["coverage"][R] - 0.9) <= 0.02, conformal


def test_split_slices_is_disjoint_and_seeded():
    calibration, test = split_slices(40, 0.25, seed=3)
    assert len(test) == 10 and len(calibration) == 30
    assert not set(calibration) & set(test) and set(calibration) | set(test) == set(range(40))
    assert np.array_equal(split_slices(40, 0.25, seed=3)[1], test)


def test_calibrate_command_writes_metadata_and_sample_writes_intervals(
    small_fastmri_file, mri_weights_64, tmp_path, capsys
):
    folder = tmp_path / "data"
    folder.mkdir()
    for number in range(6):
        simulate_volume_file(
            folder / f"file_brain_AXT2_sim_{number}.h5", ANATOMY, "t2",
            slice_indices=[60 + 5 * number, 61 + 5 * number], coils=8, kspace_shape=(128, 72),
            image_size=64, seed=number, compact=True,
        )
    out = tmp_path / "calibrated.safetensors"
    # 12 slices, 3 kept for testing: 9 calibration slices are enough for alpha=0.1 ...
    assert main(["calibrate", "--weights", str(mri_weights_64), "--data", str(folder), "--R", "4",
                 "8", "--alpha", "0.1", "--P", "4", "--out", str(out), "--device", "cpu"]) == 0
    conformal = load_weights(out).metadata.conformal
    assert conformal["alpha"] == 0.1 and conformal["P"] == 4
    assert set(conformal["scale"]) == set(conformal["coverage"]) == {"4", "8"}
    assert conformal["images"] == {"calibration": 9, "test": 3}
    assert conformal["data"] == "data"  # the folder's name, not this machine's path
    # ... but not for alpha=0.05
    with pytest.raises(SystemExit) as raised:
        main(["calibrate", "--weights", str(mri_weights_64), "--data", str(folder), "--alpha",
              "0.05", "--P", "4", "--out", str(tmp_path / "no.safetensors")])
    assert raised.value.code == 2
    assert "at least 19 are needed" in capsys.readouterr().err
    assert not (tmp_path / "no.safetensors").exists()

    result = tmp_path / "out.h5"
    assert main(["sample", str(small_fastmri_file), "--weights", str(out), "--R", "8", "--P", "4",
                 "--out", str(result), "--device", "cpu"]) == 0
    with h5py.File(result) as handle:
        halfwidth = handle["interval_halfwidth"][()]
        outside = handle["outside_interval"][()]
        mean, target, std = handle["mean"][()], handle["target"][()], handle["std"][()]
        coverage = handle.attrs["coverage"]
    assert np.allclose(halfwidth, conformal["scale"]["8"] * std, rtol=1e-5)
    region = mean > 0.05 * mean.max()
    expected = region & (np.abs(target - mean) > halfwidth)
    assert np.array_equal(outside.astype(bool), expected)
    assert coverage == pytest.approx(1 - expected.sum() / region.sum())


def test_intervals_requested_without_calibration_is_an_error_and_writes_nothing(
    small_fastmri_file, mri_weights_64, tmp_path, capsys
):
    out = tmp_path / "out.h5"
    with pytest.raises(SystemExit) as raised:
        main(["sample", str(small_fastmri_file), "--weights", str(mri_weights_64), "--P", "2",
              "--intervals", "--out", str(out)])
    assert raised.value.code == 2
    assert "no conformal calibration" in capsys.readouterr().err
    assert not out.exists()
    assert main(["sample", str(small_fastmri_file), "--weights", str(mri_weights_64), "--P", "2",
                 "--out", str(out)]) == 0
    with h5py.File(out) as handle:
        assert "interval_halfwidth" not in handle and "outside_interval" not in handle


def test_calibrated_weights_round_trip_and_describe(mri_weights_64, tmp_path):
    weights = load_weights(mri_weights_64)
    weights.metadata.conformal = {"alpha": 0.1, "P": 32, "scale": {"4": 1.5}, "coverage": {}}
    path = save_weights(tmp_path / "c.safetensors", weights.state_dict, weights.metadata)
    loaded = load_weights(path).metadata
    assert loaded.conformal["scale"] == {"4": 1.5}
    assert "conformal intervals: 90% at P=32, R 4" in loaded.describe()
    weights.metadata.conformal = {"alpha": 1.5, "P": 32, "scale": {"4": 1.5}}
    with pytest.raises(WeightsError, match="metadata conformal must be"):
        save_weights(tmp_path / "bad.safetensors", weights.state_dict, weights.metadata)


# ------------------------------------------------------------------------------------------
# Principal components and ROI posteriors


def test_principal_components_match_numpy_pca():
    rng = np.random.default_rng(0)
    P, H, W = 12, 9, 7
    basis = rng.normal(size=(3, H * W))
    noise = 0.1 * rng.normal(size=(P, H * W))
    samples = (rng.normal(size=(P, 3)) * [5.0, 2.0, 0.5]) @ basis + noise
    samples = samples.reshape(P, H, W)
    components, variances, explained = stats.principal_components(samples, 4)
    covariance = np.cov(samples.reshape(P, -1), rowvar=False)
    eigenvalues, eigenvectors = np.linalg.eigh(covariance)
    order = np.argsort(eigenvalues)[::-1][:4]
    assert np.allclose(variances, eigenvalues[order], rtol=1e-8)
    for k in range(4):
        expected = eigenvectors[:, order[k]]
        expected *= np.sign(expected[np.argmax(np.abs(expected))])
        assert np.allclose(components[k].ravel(), expected, atol=1e-5)
    total = np.trace(covariance)
    assert np.allclose(explained, eigenvalues[order] / total, rtol=1e-8)
    assert components.shape == (4, H, W) and components.dtype == np.float32


def test_principal_components_count_is_checked():
    samples = np.zeros((5, 4, 4))
    with pytest.raises(ParameterError, match="1..4"):
        stats.principal_components(samples, 5)
    with pytest.raises(ParameterError):
        stats.principal_components(np.zeros((40, 4, 4)), 11)


def test_roi_values_equal_a_direct_computation():
    rng = np.random.default_rng(0)
    samples = rng.random((6, 10, 12))
    mask = np.zeros((10, 12), dtype=bool)
    mask[2:5, 3:9] = True
    mask[7, 1] = True
    expected = [samples[p][mask].mean() for p in range(6)]
    assert np.allclose(stats.roi_values(samples, mask), expected)
    box = stats.roi_box_mask((2, 3, 5, 9), (10, 12))
    assert np.allclose(stats.roi_values(samples, box), samples[:, 2:5, 3:9].mean(axis=(1, 2)))
    low, high = stats.credible_interval(np.arange(101.0))
    assert (low, high) == pytest.approx((5.0, 95.0))


def test_empty_or_out_of_image_roi_is_an_error():
    samples = np.zeros((3, 10, 12))
    with pytest.raises(ParameterError, match="no pixel"):
        stats.roi_values(samples, np.zeros((10, 12), dtype=bool))
    with pytest.raises(ParameterError, match="does not fit"):
        stats.roi_values(samples, np.ones((10, 11), dtype=bool))
    for box in [(2, 3, 2, 9), (0, 0, 11, 5), (-1, 0, 4, 4), (0, 5, 4, 13)]:
        with pytest.raises(ParameterError, match="inside the 10x12 image"):
            stats.roi_box_mask(box, (10, 12))


def test_sample_cli_writes_pcs_roi_and_self_check(small_fastmri_file, mri_weights_64, tmp_path):
    out = tmp_path / "out.h5"
    assert main(["sample", str(small_fastmri_file), "--weights", str(mri_weights_64), "--R", "4",
                 "--P", "6", "--pcs", "3", "--roi", "10,12,30,40", "--self-check",
                 "--out", str(out), "--png", str(tmp_path)]) == 0
    with h5py.File(out) as handle:
        samples = handle["samples"][()]
        pcs, variances = handle["pcs"][()], handle["pc_variances"][()]
        roi = handle["roi_values"][()]
        attrs = dict(handle.attrs)
    expected_pcs, expected_variances, _ = stats.principal_components(samples, 3)
    assert pcs.shape == (3, 64, 64) and np.allclose(pcs, expected_pcs, atol=1e-6)
    assert np.allclose(variances, expected_variances, rtol=1e-5)
    assert np.allclose(roi, samples[:, 10:30, 12:40].mean(axis=(1, 2)), rtol=1e-5)
    assert attrs["roi"].tolist() == [10, 12, 30, 40]
    assert attrs["selfcheck_verdict"] in ("fits", "uncertain", "out_of_distribution")
    assert 0 <= attrs["selfcheck_coverage"] <= 1 and attrs["selfcheck_error_ratio"] > 0
    assert (tmp_path / f"{small_fastmri_file.stem}_slice0_R4_P6_uncertainty.png").is_file()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--P", "4", "--pcs", "4"], "at most min(P - 1, 10) = 3"),
        (["--roi", "10,10,10,20"], "non-empty rectangle inside the 64x64 image"),
        (["--roi", "0,0,65,20"], "non-empty rectangle inside the 64x64 image"),
        (["--roi", "1,2,3"], "four integers"),
    ],
)
def test_bad_uncertainty_flags(small_fastmri_file, mri_weights_64, tmp_path, capsys, flags,
                               message):
    out = tmp_path / "out.h5"
    with pytest.raises(SystemExit) as raised:
        main(["sample", str(small_fastmri_file), "--weights", str(mri_weights_64), *flags,
              "--out", str(out)])
    assert raised.value.code == 2
    assert message in capsys.readouterr().err
    assert not out.exists()
