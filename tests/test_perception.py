"""Perception–distortion curves: per-P metrics against direct computations, the no-reference,
no-feature-weights and P = 1 paths, the zoom strip and the figure."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from napari_rcgan import metrics, perception, stats
from napari_rcgan.errors import ParameterError


def _posterior(count: int = 6, size: int = 64) -> tuple[stats.SampleStack, np.ndarray, np.ndarray]:
    """A real photograph (skimage's camera) as the reference and ``count`` 'posterior samples':
    the reference plus independent sharp noise, so averaging trades sharpness for distortion."""
    from skimage import data, transform

    reference = transform.resize(data.camera(), (size, size), anti_aliasing=True).astype(np.float32)
    rng = np.random.default_rng(0)
    samples = (reference + 0.12 * rng.normal(size=(count, size, size))).astype(np.float32)
    samples = np.clip(samples, 0, None)
    stack = stats.SampleStack((size, size))
    stack.extend(samples)
    return stack, samples, reference


def test_per_P_metrics_match_direct_computations(feature_dir):
    stack, samples, reference = _posterior()
    curves = perception.pd_curves(stack, reference, folder=feature_dir)
    assert curves.P == (1, 2, 3, 4, 5, 6)
    averages = np.stack([samples[:P].astype(np.float64).mean(0) for P in curves.P])
    scaled = metrics.min_max(metrics.as_image_batch(averages))
    target = metrics.min_max(metrics.as_image_batch(reference)).expand(len(averages), -1, -1, -1)
    expected = {
        "psnr": [stats.psnr(a, reference) for a in averages],
        "ssim": [stats.ssim(a, reference) for a in averages],
        "mse": [np.mean((a - reference) ** 2) for a in averages],
        "lpips": metrics.lpips(2 * scaled - 1, 2 * target - 1, "alex", feature_dir),
        "dists": metrics.dists(scaled, target, feature_dir),
        "apsd": [np.sqrt(np.mean(samples[:P].astype(np.float64).var(0))) for P in curves.P],
    }
    for name, values in expected.items():
        np.testing.assert_allclose(curves.values(name), values, rtol=1e-4, atol=1e-6, err_msg=name)
    # Averaging independent noise: PSNR rises and DISTS falls with P, sharpness falls.
    assert np.all(np.diff(curves.psnr) > 0) and curves.best("psnr") == 6
    assert curves.dists[0] > curves.dists[-1]
    assert np.all(np.diff(curves.sharpness) < 0)
    assert curves.as_dict()[3] == {name: pytest.approx(expected[name][2], rel=1e-4)
                                   for name in ("psnr", "ssim", "lpips", "dists")}
    assert curves.notes == ()


def test_bf16_feature_networks_stay_close_to_fp32(feature_dir):
    stack, _, reference = _posterior()
    exact = perception.pd_curves(stack, reference, folder=feature_dir, precision="fp32")
    fast = perception.pd_curves(stack, reference, folder=feature_dir, precision="bf16")
    np.testing.assert_allclose(fast.lpips, exact.lpips, atol=2e-3)
    np.testing.assert_allclose(fast.dists, exact.dists, atol=3e-3)
    assert fast.psnr is not exact.psnr and np.array_equal(fast.psnr, exact.psnr)
    with pytest.raises(ParameterError, match="precision 'fp16'"):
        perception.pd_curves(stack, reference, precision="fp16")


def test_curves_are_cached_per_run_and_renewed_when_samples_are_added(feature_dir):
    stack, samples, reference = _posterior(count=4)
    first = perception.pd_curves(stack, reference, folder=feature_dir)
    assert perception.pd_curves(stack, reference, folder=feature_dir) is first
    assert perception.pd_curves(stack, reference + 0.01, folder=feature_dir) is not first
    stack.extend(samples[:2])
    grown = perception.pd_curves(stack, reference, folder=feature_dir)
    assert grown.P == (1, 2, 3, 4, 5, 6) and grown.psnr[:4] == pytest.approx(first.psnr)


def test_without_reference_the_curves_are_apsd_and_sharpness():
    stack, samples, _ = _posterior()
    curves = perception.pd_curves(stack, None)
    assert curves.psnr is None and curves.lpips is None and not curves.has_reference
    assert curves.notes == (perception.NO_REFERENCE_NOTE,)
    assert curves.apsd[0] == 0 and np.all(np.diff(curves.apsd[1:]) > -1e-3)
    average = samples[:3].astype(np.float64).mean(0)
    rows, cols = np.gradient(average)
    scale = float(samples.astype(np.float64).mean(0).max())
    assert curves.sharpness[2] == pytest.approx(np.mean(np.hypot(rows, cols)) / scale, rel=1e-5)
    assert curves.as_dict()[2] == {"psnr": None, "ssim": None, "lpips": None, "dists": None}


def test_without_feature_weights_psnr_ssim_remain_and_one_line_says_how(tmp_path):
    stack, _, reference = _posterior(count=3)
    curves = perception.pd_curves(stack, reference, folder=tmp_path)
    assert curves.lpips is None and curves.dists is None and not curves.has_perceptual
    assert curves.psnr is not None and len(curves.psnr) == 3
    assert curves.notes == (perception.FEATURES_NOTE,)
    assert "napari-rcgan features prepare" in curves.notes[0]
    path = perception.write_pd_figure(curves, tmp_path / "no-features.png")
    assert Image.open(path).size[0] > 500


def test_a_single_sample_is_one_point_with_the_message(feature_dir, tmp_path):
    stack, _, reference = _posterior(count=1)
    curves = perception.pd_curves(stack, reference, folder=feature_dir)
    assert curves.P == (1,) and len(curves.dists) == 1
    assert curves.notes == (perception.SINGLE_P_NOTE,)
    assert curves.best("dists") == curves.best("psnr") == 1
    assert perception.write_pd_figure(curves, tmp_path / "one.png").is_file()


def test_plot_marks_best_points_and_moves_the_highlight(feature_dir):
    from matplotlib.figure import Figure

    stack, _, reference = _posterior()
    curves = perception.pd_curves(stack, reference, folder=feature_dir)
    figure = Figure()
    plot = perception.PDPlot(figure, curves, "all", distortion="mse", perception="lpips")
    assert len(figure.axes) >= 5
    legend = [text.get_text() for text in figure.axes[0].get_legend().get_texts()]
    assert legend == [f"best perception (P={curves.best('lpips')})",
                      f"best distortion (P={curves.best('mse')})"]
    plot.highlight(3)
    marked = {str(names): marker.get_data() for _, marker, names in plot._markers}
    assert marked["('mse', 'lpips')"] == ([curves.mse[2]], [curves.lpips[2]])
    assert marked["dists"] == ([3], [curves.dists[2]])
    plot.highlight(99)
    assert all(len(marker.get_data()[0]) == 0 for _, marker, _ in plot._markers)
    with pytest.raises(ParameterError, match="perception axis 'ssim'"):
        perception.PDPlot(figure, curves, perception="ssim")


def test_zoom_strip_is_the_P_average_over_the_region():
    stack, samples, _ = _posterior(count=8)
    strip = perception.zoom_strip(stack)
    assert [P for P, _ in strip] == [1, 2, 4, 8]
    top, left, bottom, right = perception.zoom_box((64, 64))
    assert (bottom - top, right - left) == (21, 21) and top == (64 - 21) // 2
    np.testing.assert_allclose(strip[1][1], samples[:2].mean(0)[top:bottom, left:right], rtol=1e-6)
    assert perception.zoom_box((64, 64), (50.4, 10, -3, 30.2)) == (0, 10, 51, 31)
    with pytest.raises(ParameterError, match="no 2×2 pixels inside the 64×64 image"):
        perception.zoom_box((64, 64), (70, 70, 90, 90))


def test_curve_P_values_cover_every_P_for_small_results():
    assert perception.curve_P_values(32, (128, 128)) == list(range(1, 33))
    assert perception.curve_P_values(64, (384, 384)) == [1, 2, 4, 8, 16, 32, 64]
    assert perception.curve_P_values(48, (384, 384)) == [1, 2, 4, 8, 16, 32, 48]


def test_sample_pd_figure_writes_the_plane_and_prints_the_best_P(
    small_fastmri_file, mri_weights_64, feature_dir, tmp_path, capsys
):
    from napari_rcgan.cli import main

    figure = tmp_path / "pd.png"
    assert main(["sample", str(small_fastmri_file), "--R", "4", "--P", "4", "--weights",
                 str(mri_weights_64), "--device", "cpu", "--out", str(tmp_path / "out.h5"),
                 "--pd-figure", str(figure)]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {figure}" in printed
    assert "best DISTS: P=" in printed and "best PSNR (dB): P=" in printed
    assert Image.open(figure).size == (1210, 572)
    with pytest.raises(SystemExit) as stopped:
        main(["sample", str(small_fastmri_file), "--weights", str(mri_weights_64), "--out",
              str(tmp_path / "b.h5"), "--pd-figure", str(tmp_path / "pd.pdf")])
    assert stopped.value.code == 2
    assert "--pd-figure" in capsys.readouterr().err and not (tmp_path / "b.h5").exists()


def test_evaluate_per_P_numbers_are_the_curves_of_each_slice(
    small_fastmri_file, mri_weights_64, feature_dir, tmp_path
):
    """``evaluate``'s ``lpips``/``dists`` per P (metrics.json) and the explorer's curves agree on
    the same slice, measurement and seed (one slice: the mean over slices is that slice's)."""
    import shutil

    from napari_rcgan.evaluation import EvaluationOptions, evaluate
    from napari_rcgan.io import FastMRIFile
    from napari_rcgan.sampler import PosteriorSampler

    folder = tmp_path / "data"
    folder.mkdir()
    shutil.copy(small_fastmri_file, folder / small_fastmri_file.name)
    sampler = PosteriorSampler(str(mri_weights_64), device="cpu")
    options = EvaluationOptions(metrics=("psnr", "ssim", "apsd", "lpips", "dists"),
                                feature_dir=str(feature_dir))
    values = evaluate(sampler, folder, [4.0], [1, 2, 4], max_slices=1, options=options)["R"]["4"]
    kspace = FastMRIFile.open(folder / small_fastmri_file.name).read_kspace(0)
    measurement = sampler.measure_mri(kspace, R=4.0, mask_kind="gro")
    result = sampler.sample(measurement, 4, seed=0)
    curves = perception.pd_curves(result.stack, measurement.reference, [1, 2, 4], folder=feature_dir)
    # LPIPS/DISTS: batches of different sizes reach oneDNN's convolutions, and unit-normalised
    # features of the near-zero background amplify their rounding (measured up to 4e-6)
    tolerance = {"psnr": 1e-6, "ssim": 1e-6, "lpips": 5e-5, "dists": 5e-5}
    for P in (1, 2, 4):
        for name, atol in tolerance.items():
            assert values[name][str(P)] == pytest.approx(curves.at(P)[name], abs=atol), name
    assert values["lpips"]["1"] > 100 * tolerance["lpips"] and values["dists"]["1"] > 0.05


def test_three_grey_estimates_are_three_images_not_one_colour_image(feature_dir):
    stack, _, reference = _posterior(count=3)
    averages = np.stack([stack.mean(P) for P in (1, 2, 3)])
    distances = perception.perceptual_distances(averages, reference, feature_dir)
    assert distances["lpips"].shape == distances["dists"].shape == (3,)
    assert perception.perceptual_images(averages).shape == (3, 3, 64, 64)
