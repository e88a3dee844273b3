"""Simulated k-space from real anatomy (training/simulate.py): layout, physics, splits."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from napari_rcgan.physics.fft import ifft2c
from training import simulate

NS = {"m": simulate.ISMRMRD_NAMESPACE}
SMALL = {"coils": 8, "kspace_shape": (128, 72), "image_size": 64}

needs_colin27 = pytest.mark.skipif(
    not simulate.COLIN27_PATH.is_file(), reason="Debian package mricron-data not installed"
)


def _rss_of_crop(kspace: np.ndarray, size: int) -> np.ndarray:
    """Independent reference: RSS over coils of the centre size×size crop of ifft2c(kspace)."""
    images = ifft2c(torch.from_numpy(kspace)).numpy()
    top, left = (kspace.shape[-2] - size) // 2, (kspace.shape[-1] - size) // 2
    crop = images[..., top : top + size, left : left + size]
    return np.sqrt((np.abs(crop) ** 2).sum(axis=-3))


@pytest.fixture(scope="module")
def raw_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not simulate.COLIN27_PATH.is_file():
        pytest.skip("Debian package mricron-data not installed")
    path = tmp_path_factory.mktemp("sim") / "file_brain_AXT2_sim_test_0.h5"
    return simulate.simulate_volume_file(path, "colin27", "t2", slice_indices=[84, 85], seed=3)


def test_raw_file_has_the_fastmri_layout(raw_file: Path) -> None:
    with h5py.File(raw_file, "r") as handle:
        assert set(handle) == {"kspace", "reconstruction_rss", "ismrmrd_header"}
        kspace, recon = handle["kspace"], handle["reconstruction_rss"]
        assert kspace.shape == (2, 16, 768, 396) and kspace.dtype == np.complex64
        assert recon.shape == (2, 384, 384) and recon.dtype == np.float32
        rss = recon[()]
        attrs = dict(handle.attrs)
    assert attrs["acquisition"] == "AXT2"
    assert attrs["max"] == pytest.approx(float(rss.max()))
    assert attrs["norm"] == pytest.approx(float(np.linalg.norm(rss.astype(np.float64))))
    assert attrs["patient_id"]
    assert attrs["provenance"] == "simulated k-space from real anatomy (colin27, t2)"
    assert list(attrs["slice_indices"]) == [84, 85]


def test_reconstruction_rss_is_rss_of_the_cropped_kspace_image(raw_file: Path) -> None:
    with h5py.File(raw_file, "r") as handle:
        kspace, recon = handle["kspace"][()], handle["reconstruction_rss"][()]
    np.testing.assert_allclose(recon, _rss_of_crop(kspace, 384), rtol=1e-4, atol=1e-6)
    # The anatomy sits inside the crop: the readout oversampling outside it is noise only.
    full = np.sqrt((np.abs(ifft2c(torch.from_numpy(kspace[0])).numpy()) ** 2).sum(axis=0))
    assert full[:192].max() < 0.1 * full[192:576].max()
    assert full[576:].max() < 0.1 * full[192:576].max()


def test_ismrmrd_header_parses(raw_file: Path) -> None:
    with h5py.File(raw_file, "r") as handle:
        root = ET.fromstring(handle["ismrmrd_header"][()])
    assert root.tag == f"{{{simulate.ISMRMRD_NAMESPACE}}}ismrmrdHeader"

    def size(space: str, axis: str) -> int:
        return int(root.findtext(f"m:encoding/m:{space}/m:matrixSize/m:{axis}", namespaces=NS))

    assert (size("encodedSpace", "x"), size("encodedSpace", "y")) == (768, 396)
    assert (size("reconSpace", "x"), size("reconSpace", "y")) == (384, 384)
    assert float(root.findtext("m:encoding/m:reconSpace/m:fieldOfView_mm/m:x", namespaces=NS)) > 0
    assert root.findtext("m:encoding/m:trajectory", namespaces=NS) == "cartesian"


@needs_colin27
def test_same_seed_same_bytes_other_seed_different(tmp_path: Path) -> None:
    def kspace(seed: int, name: str) -> bytes:
        path = simulate.simulate_volume_file(
            tmp_path / name, slice_indices=[80, 81], seed=seed, augment=True, **SMALL
        )
        with h5py.File(path, "r") as handle:
            return handle["kspace"][()].tobytes()

    assert kspace(7, "a.h5") == kspace(7, "b.h5")
    assert kspace(7, "a.h5") != kspace(8, "c.h5")


def test_fewer_than_eight_coils_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least 8"):
        simulate.simulate_kspace(np.ones((20, 20)), coils=7, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="at least 8"):
        simulate.simulate_volume_file(tmp_path / "x.h5", coils=4)
    assert not list(tmp_path.iterdir())


@needs_colin27
def test_compact_layout_has_eight_coils_at_384(tmp_path: Path) -> None:
    path = simulate.simulate_volume_file(tmp_path / "c.h5", slice_indices=[84], compact=True)
    with h5py.File(path, "r") as handle:
        kspace, recon = handle["kspace"][()], handle["reconstruction_rss"][()]
        header = ET.fromstring(handle["ismrmrd_header"][()])
        layout = handle.attrs["layout"]
    assert kspace.shape == (1, 8, 384, 384) and kspace.dtype == np.complex64
    assert recon.shape == (1, 384, 384) and layout == "compact"
    np.testing.assert_allclose(recon, _rss_of_crop(kspace, 384), rtol=1e-4, atol=1e-6)
    x = header.findtext("m:encoding/m:encodedSpace/m:matrixSize/m:x", namespaces=NS)
    assert int(x) == 384


def test_noise_covariance_is_sigma_squared_a_a_hermitian() -> None:
    rng = np.random.default_rng(0)
    coils, shape, size, level = 8, (256, 128), 64, 0.1
    maps = simulate.birdcage_coil_maps(coils, shape, size, rng)
    mixing = simulate.noise_mixing_matrix(coils, rng)
    kspace = simulate.simulate_kspace(
        np.ones((20, 20)), coils, shape, size, level, rng=rng, coil_maps=maps, noise_mixing=mixing
    )
    # Rows far outside the object hold noise only; orthonormal FFT keeps it white.
    noise = ifft2c(torch.from_numpy(kspace)).numpy()[:, :80].reshape(coils, -1)
    estimate = noise @ noise.conj().T / noise.shape[1]
    expected = level**2 * (mixing @ mixing.conj().T)
    np.testing.assert_allclose(estimate, expected, atol=6 * level**2 / np.sqrt(noise.shape[1]))
    off_diagonal = np.abs(expected - np.diag(np.diag(expected))).max()
    assert off_diagonal > 0.02 * level**2  # correlated coils, yet close to identity
    np.testing.assert_allclose(np.trace(expected).real / coils, level**2, rtol=1e-5)


def test_axial_slices_put_the_nose_up_and_patient_right_on_the_left() -> None:
    volume = np.ones((10, 20, 5), dtype=np.float32)
    volume[9, 19, 2] = 5.0  # most right (+x), most anterior (+y)
    slices = simulate.axial_slices(volume, [2, 3])
    assert slices.shape == (2, 20, 10) and slices.dtype == np.float32
    assert slices[0, 0, 0] == 5.0 and slices[1, 0, 0] == 1.0


def test_augment_is_seeded_bounded_and_changes_the_image() -> None:
    image = np.zeros((64, 48), dtype=np.float32)
    image[16:48, 12:36] = np.linspace(0.1, 0.9, 24, dtype=np.float32)
    first = simulate.augment(image, np.random.default_rng(1))
    again = simulate.augment(image, np.random.default_rng(1))
    assert first.shape == image.shape and first.dtype == np.float32
    assert np.array_equal(first, again)
    assert 0.0 <= first.min() and first.max() <= 1.0
    assert np.abs(first - image).mean() > 1e-3


def test_write_is_atomic_and_validates_shapes(tmp_path: Path) -> None:
    kspace = np.zeros((2, 8, 32, 24), dtype=np.complex64)
    with pytest.raises(ValueError, match="reconstruction_rss"):
        simulate.write_fastmri_file(
            tmp_path / "bad.h5",
            kspace,
            np.zeros((3, 16, 16), np.float32),
            source="colin27",
            contrast="t2",
            patient_id="p",
        )
    target = simulate.write_fastmri_file(
        tmp_path / "ok.h5",
        kspace,
        np.zeros((2, 16, 16), np.float32),
        source="mni152",
        contrast="t1",
        patient_id="p",
        acquisition="AXT1",
    )
    assert [p.name for p in tmp_path.iterdir()] == ["ok.h5"]
    with h5py.File(target, "r") as handle:
        assert handle.attrs["provenance"] == "simulated k-space from real anatomy (mni152, t1)"


def test_mni152_t2_contrast_orders_csf_grey_white() -> None:
    datasets = pytest.importorskip("nilearn.datasets")
    volume = simulate.load_anatomy("mni152", "t2")
    assert volume.shape == simulate.GRID_SHAPE and volume.dtype == np.float32
    assert volume.min() == 0.0 and volume.max() == 1.0
    grey = simulate._on_common_grid(datasets.load_mni152_gm_template(resolution=1))
    white = simulate._on_common_grid(datasets.load_mni152_wm_template(resolution=1))
    brain = simulate._on_common_grid(datasets.load_mni152_brain_mask(resolution=1)) > 0
    csf = brain & (grey < 0.05) & (white < 0.05)  # ventricles and sulci
    means = [float(volume[m].mean()) for m in (csf, grey > 0.9, white > 0.9)]
    assert means[0] > means[1] > means[2]


@needs_colin27
def test_main_writes_disjoint_slab_splits_with_gaps(tmp_path: Path) -> None:
    gap = 3
    simulate.main(
        [
            "--out",
            str(tmp_path),
            "--coils",
            "8",
            "--slices-per-volume",
            "2",
            "--volumes-per-split",
            "train=2,val=1,test=1",
            "--augment-copies",
            "1",
            "--gap",
            str(gap),
            "--seed",
            "5",
            "--image-size",
            "64",
            "--kspace-shape",
            "128x72",
        ]
    )
    description = json.loads((tmp_path / "dataset.json").read_text())
    assert description["provenance"] == ["simulated k-space from real anatomy (colin27, t2)"]
    assert description["seed"] == 5 and description["coils"] == 8
    splits = description["splits"]
    indices = {name: set(split["slice_indices"]) for name, split in splits.items()}
    for a, b in [("train", "val"), ("train", "test"), ("val", "test")]:
        distance = min(abs(i - j) for i in indices[a] for j in indices[b])
        assert distance > gap, (a, b, distance)
    assert len(splits["train"]["files"]) == 2 * 2  # each slab plus one augmented copy
    assert [len(splits[name]["files"]) for name in ("val", "test")] == [1, 1]
    for name, split in splits.items():
        for entry in split["files"]:
            path = tmp_path / entry["file"]
            assert path.parent.name == name and path.name.startswith("file_brain_AXT2_sim_")
            with h5py.File(path, "r") as handle:
                assert list(handle.attrs["slice_indices"]) == entry["slice_indices"]
                assert handle["kspace"].shape == (2, 8, 128, 72)
                assert bool(handle.attrs["augmented"]) == entry["augmented"]
            assert not entry["augmented"] or name == "train"


def test_realistic_contrasts_leave_out_the_arbitrary_intensity_maps() -> None:
    """Arbitrary maps go up and down along the T1 axis; T1-, T2- and PD-like ones are monotone up
    to their knot noise: the total variation beyond |end - start| separates them."""
    t1 = np.linspace(0.001, 1.0, 501)

    def wiggle(contrasts: str, seed: int) -> float:
        mapped = simulate.random_contrast(t1, np.random.default_rng(seed), contrasts)
        return float(np.abs(np.diff(mapped)).sum() - abs(mapped[-1] - mapped[0]))

    realistic = [wiggle("realistic", seed) for seed in range(200)]
    randomised = [wiggle("randomised", seed) for seed in range(200)]
    assert max(realistic) < 0.4
    assert sum(w > 0.5 for w in randomised) > 20  # about a quarter are arbitrary
    with pytest.raises(simulate.ParameterError, match="unknown contrast set 'fancy'"):
        simulate.random_contrast(t1, np.random.default_rng(0), "fancy")


@needs_colin27
def test_tissue_fractions_split_colin27s_brain_and_rebuild_its_t1() -> None:
    fractions = simulate.tissue_fractions("colin27")
    t1 = simulate.cached_anatomy("colin27", "t1")
    assert fractions.shape == (3, *simulate.GRID_SHAPE) and fractions.dtype == np.float32
    assert not fractions.flags.writeable
    brain = fractions.sum(axis=0)
    assert brain.min() > -1e-5 and brain.max() < 1 + 1e-5
    inside, outside = brain > 0.999, brain < 1e-6
    assert 0.15 < inside.mean() < 0.3  # the brain, not the head (the head fills about half)
    assert (t1[outside] > 0.05).mean() > 0.3  # scalp and skull are outside the brain
    # the fractions are barycentric coordinates of the T1 intensity between the tissue means
    design = fractions[:, inside].T
    means, *_ = np.linalg.lstsq(design, t1[inside], rcond=None)
    assert means[0] < means[1] < means[2]  # CSF, grey, white on a T1
    assert np.abs(design @ means - t1[inside]).max() < 1e-3
    with pytest.raises(simulate.ParameterError, match="only colin27 has a brain extraction"):
        simulate.tissue_fractions("mni152")


@needs_colin27
def test_tissue_contrasts_order_the_tissues_and_keep_the_rest_of_the_head_t1_like() -> None:
    fractions = np.stack([
        simulate.anatomy_slice(f, "axial", 90) for f in simulate.tissue_fractions("colin27")
    ])
    t1 = simulate.anatomy_slice(simulate.cached_anatomy("colin27", "t1"), "axial", 90)
    pure = [(fractions[k] > 0.95) & (fractions[k] < 1.05) for k in range(3)]
    rest = (fractions.sum(axis=0) < 1e-6) & (t1 > 0)
    fat, bone = rest & (t1 > np.percentile(t1[rest], 90)), rest & (t1 < np.percentile(t1[rest], 10))
    orders = set()
    for seed in range(60):
        image = simulate.tissue_contrast(t1, fractions, np.random.default_rng(seed), "realistic")
        assert image.shape == t1.shape and image.dtype == np.float32 and image.min() >= 0
        assert np.all(image[t1 == 0] == 0)
        csf, grey, white = (float(image[m].mean()) for m in pure)
        orders.add("T1" if white > grey > csf else "T2" if csf > grey > white
                   else "FLAIR" if grey > white > csf else "PD" if grey > csf and grey > white else "?")
        assert image[fat].mean() > image[bone].mean()  # outside the brain the T1 order stays
    assert orders == {"T1", "T2", "PD", "FLAIR"}
    with pytest.raises(simulate.ParameterError, match=r"shape \(3, 4, 4\) do not match"):
        simulate.tissue_contrast(t1, np.zeros((3, 4, 4), np.float32), np.random.default_rng(0))


def _high_frequency_share(kspace: np.ndarray) -> float:
    """Fraction of the k-space energy outside the central half of each axis."""
    energy = np.abs(kspace) ** 2
    side = kspace.shape[-1]
    centre = energy[:, side // 4: 3 * side // 4, side // 4: 3 * side // 4].sum()
    return float(1 - centre / energy.sum())


def test_blurred_anatomy_has_less_high_frequency_energy() -> None:
    plane = np.random.default_rng(1).uniform(0.0, 1.0, (48, 48)).astype(np.float32)
    quiet = (1e-6, 1e-6)  # noise would add high frequencies of its own

    def kspace(seed: int, blur_probability: float) -> np.ndarray:
        return simulate.randomized_kspace(plane, 48, np.random.default_rng(seed), noise_range=quiet,
                                          blur_probability=blur_probability)

    # Without blurring no random number is drawn for it: the default examples stay as they were.
    np.testing.assert_array_equal(kspace(3, 0.0), simulate.randomized_kspace(
        plane, 48, np.random.default_rng(3), noise_range=quiet))
    sharp = [_high_frequency_share(kspace(seed, 0.0)) for seed in range(6)]
    blurred = [_high_frequency_share(kspace(seed, 1.0)) for seed in range(6)]
    assert np.mean(blurred) < 0.5 * np.mean(sharp), (sharp, blurred)
