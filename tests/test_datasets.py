"""Training datasets on small simulated fastMRI folders and generated face folders."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from napari_rcgan.errors import InputFileError, ParameterError
from napari_rcgan.io import FastMRIFile
from napari_rcgan.physics.inpainting import center_square_hole
from napari_rcgan.sampler import PosteriorSampler
from napari_rcgan.weights import Weights, WeightsMetadata, build_generator
from training.config import ConfigError, config_from_dict
from training.datasets import (
    DatasetError,
    FaceFolderDataset,
    FastMRIDataset,
    RcGANDataModule,
    face_datasets,
    list_images,
    select_volumes,
)
from training.simulate import simulate_volume_file

SIZE = 32


def _simulate(path: Path, slices, seed: int, **kwargs) -> Path:
    options = dict(coils=10, kspace_shape=(64, 40), image_size=SIZE, seed=seed)
    options.update(kwargs)
    try:
        return simulate_volume_file(path, "colin27", slice_indices=slices, **options)
    except FileNotFoundError:  # Colin27 (Debian mricron-data) not installed: nilearn's MNI152
        return simulate_volume_file(path, "mni152", slice_indices=slices, **options)


@pytest.fixture(scope="module")
def mri_folder(tmp_path_factory) -> Path:
    """train/: two raw AXT2 volumes (10 coils, 64×40 k-space) and one AXT1; val/: one."""
    root = tmp_path_factory.mktemp("fastmri")
    _simulate(root / "train" / "file_brain_AXT2_a.h5", [70, 71, 72], seed=1)
    _simulate(root / "train" / "file_brain_AXT2_b.h5", [80, 81, 82], seed=2)
    _simulate(root / "train" / "file_brain_AXT1_c.h5", [90, 91], seed=3, contrast="t1")
    _simulate(root / "val" / "file_brain_AXT2_v.h5", [100, 101], seed=4)
    return root


def _sampler(task: str = "mri") -> PosteriorSampler:
    channels = 8 if task == "mri" else 3
    metadata = WeightsMetadata(task=task, image_size=[SIZE, SIZE], channels=channels,
                               base_width=4, num_pool_layers=2)
    state = build_generator(metadata).state_dict()
    return PosteriorSampler(Weights(metadata, state, "test-weights"), device="cpu")


def _dataset(folder: Path, **kwargs) -> FastMRIDataset:
    options = dict(image_size=SIZE, coils=8, min_width=SIZE, slices_per_volume=2, train=False)
    options.update(kwargs)
    return FastMRIDataset(folder, **options)


def test_selection_and_items_match_the_sampler(mri_folder):
    dataset = _dataset(mri_folder / "train")
    assert [v.path.name for v in dataset.volumes] == ["file_brain_AXT2_a.h5", "file_brain_AXT2_b.h5"]
    assert [(p.name, "AXT1" in r) for p, r in dataset.skipped] == [("file_brain_AXT1_c.h5", True)]
    assert len(dataset) == 4  # first 2 slices of each selected volume
    item = dataset[3]
    assert item["input"].shape == (16, SIZE, SIZE) and item["input"].dtype == torch.float32
    assert item["target"].shape == (16, SIZE, SIZE)
    assert item["kspace"].shape == (8, SIZE, SIZE) and item["kspace"].dtype == torch.complex64
    assert item["mask"].shape == (SIZE, SIZE) and item["mask"].dtype == torch.bool
    assert float(item["R"]) == pytest.approx(4.0)

    # Identical preprocessing to the plugin's sampler for the same slice and mask.
    volume = FastMRIFile.open(mri_folder / "train" / "file_brain_AXT2_b.h5")
    reference = _sampler().measure_mri(volume.read_kspace(1), mask=dataset.mask_for(3))
    torch.testing.assert_close(item["input"], reference.network_input())
    torch.testing.assert_close(item["kspace"], reference.measured_kspace)
    assert float(item["mean"]) == pytest.approx(reference.normalization.mean)
    assert float(item["std"]) == pytest.approx(reference.normalization.std)
    target = reference.normalization.invert(item["target"])
    torch.testing.assert_close(
        target, torch.cat([reference.target.real, reference.target.imag]), atol=1e-5, rtol=1e-4
    )
    # The zero-filled input is normalised to zero mean and unit SD.
    raw = reference.normalization.apply(
        torch.cat([reference.zero_filled.real, reference.zero_filled.imag])
    )
    assert float(raw.mean()) == pytest.approx(0, abs=1e-5)
    assert float(raw.std()) == pytest.approx(1, abs=1e-4)


def test_all_slices_and_other_acquisitions_are_configurable(mri_folder):
    dataset = _dataset(mri_folder / "train", slices_per_volume=None, acquisitions=())
    assert len(dataset) == 3 + 3 + 2
    assert _dataset(mri_folder / "train", acquisitions=("AXT1",)).volumes[0].path.name == (
        "file_brain_AXT1_c.h5"
    )


def test_selection_by_width_and_coils(mri_folder):
    with pytest.raises(DatasetError) as error:
        _dataset(mri_folder / "train", min_width=384)
    assert "k-space width 40 < 384" in str(error.value)
    assert "file_brain_AXT2_a.h5" in str(error.value)
    with pytest.raises(DatasetError, match="10 coils, fewer than 16"):
        _dataset(mri_folder / "train", min_coils=16)


def test_validation_masks_are_fixed_training_masks_vary(mri_folder):
    kinds = ("gro", "equispaced", "random")
    fixed = _dataset(mri_folder / "train", mask_kinds=kinds, r_range=(2.0, 8.0))
    first = [fixed.mask_for(i) for i in range(4)]
    again = [fixed.mask_for(i) for i in range(4)]
    assert all(np.array_equal(a.mask, b.mask) for a, b in zip(first, again, strict=True))
    trained = _dataset(mri_folder / "train", mask_kinds=kinds, r_range=(2.0, 8.0), train=True)
    torch.manual_seed(0)
    masks = [trained.mask_for(0) for _ in range(40)]
    assert {m.kind for m in masks} == set(kinds)
    rates = [m.achieved_R for m in masks]
    assert min(rates) >= 1.9 and max(rates) <= 8.5 and max(rates) - min(rates) > 2


def test_fewer_coils_than_needed_names_the_file(tmp_path):
    _simulate(tmp_path / "few.h5", [70], seed=0, coils=8)
    with pytest.raises(DatasetError) as error:
        _dataset(tmp_path, min_coils=12, coils=12)
    assert "few.h5" in str(error.value) and "8 coils" in str(error.value)


def test_bad_folders_and_files(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        select_volumes(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no data here")
    with pytest.raises(DatasetError, match="no .h5 files"):
        select_volumes(tmp_path / "empty")
    bad = tmp_path / "bad"
    bad.mkdir()
    with h5py.File(bad / "no_kspace.h5", "w") as handle:
        handle.create_dataset("reconstruction_rss", data=np.zeros((1, 4, 4), np.float32))
    with pytest.raises(InputFileError) as error:
        select_volumes(bad)
    assert "no_kspace.h5" in str(error.value) and "kspace" in str(error.value)
    (bad / "no_kspace.h5").unlink()
    (bad / "text.h5").write_text("not hdf5")
    with pytest.raises(InputFileError, match="text.h5"):
        select_volumes(bad)


def test_simulated_split_is_disjoint_and_readable(tmp_path):
    from training.simulate import main as simulate

    out = tmp_path / "sim"
    simulate([
        "--out", str(out), "--compact", "--image-size", str(SIZE), "--kspace-shape", "32x32",
        "--coils", "8", "--slices-per-volume", "2", "--volumes-per-split",
        "train=2,val=1,test=1", "--augment-copies", "0",
    ])
    info = json.loads((out / "dataset.json").read_text())
    slices = {split: set(info["splits"][split]["slice_indices"]) for split in ("train", "val", "test")}
    assert not slices["train"] & slices["val"]
    assert not slices["train"] & slices["test"]
    assert not slices["val"] & slices["test"]
    for split, volumes in (("train", 2), ("val", 1), ("test", 1)):
        dataset = _dataset(out / split)
        assert len(dataset.volumes) == volumes and len(dataset) == 2 * volumes
        assert dataset[0]["input"].shape == (16, SIZE, SIZE)
        described = dataset.describe()
        assert "simulated k-space from real anatomy" in " ".join(described["provenance"])
        assert described["dataset_json"]["layout"] == "compact"


def test_data_module_batches(mri_folder, tmp_path):
    config = config_from_dict({
        "seed": 3,
        "data": {"root": str(mri_folder), "image_size": SIZE, "min_width": SIZE,
                 "slices_per_volume": 2, "num_workers": 0, "val_examples": 1,
                 "mask": {"kind": "gro", "R": [2, 6]}},
        "model": {"critic_num_down": 3},
        "train": {"batch_size": 3},
    })
    module = RcGANDataModule(config)
    batch = next(iter(module.train_dataloader()))
    assert batch["input"].shape == (3, 16, SIZE, SIZE)
    assert batch["kspace"].dtype == torch.complex64 and batch["mean"].shape == (3,)
    assert len(module.val_dataloader().dataset) == 1
    description = module.describe()
    assert description["train"]["volumes"] == 2 and description["val"]["used_examples"] == 1


# ------------------------------------------------------------------------------------------
# Faces


@pytest.fixture()
def face_folder(tmp_path) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    root = tmp_path / "faces"
    (root / "00000").mkdir(parents=True)
    Image.fromarray(rng.integers(0, 255, (50, 40, 3), dtype=np.uint8)).save(root / "a.png")
    Image.fromarray(rng.integers(0, 255, (30, 30), dtype=np.uint8)).save(root / "00000" / "b.jpg")
    Image.fromarray(rng.integers(0, 255, (64, 64, 4), dtype=np.uint8)).save(root / "00000" / "c.png")
    (root / "labels.csv").write_text("a,b,c\n")
    return root


def test_face_folder_items_match_the_sampler(face_folder):
    files = list_images(face_folder)
    assert [f.name for f in files] == ["b.jpg", "c.png", "a.png"]
    dataset = FaceFolderDataset(files, image_size=SIZE, hole_size=12, train=False)
    item = dataset[2]
    assert item["input"].shape == (4, SIZE, SIZE) and item["target"].shape == (3, SIZE, SIZE)
    assert float(item["target"].min()) >= -1 and float(item["target"].max()) <= 1
    hole = center_square_hole((SIZE, SIZE), 12)
    assert np.array_equal(item["hole"].numpy(), hole)
    reference = _sampler("inpainting").measure_inpainting(
        item["image"].permute(1, 2, 0).numpy(), hole
    )
    torch.testing.assert_close(item["input"], reference.network_input())
    assert float(item["input"][:3, torch.from_numpy(hole)].abs().max()) == 0
    grey = FaceFolderDataset(files, image_size=SIZE, channels=1, hole_size=12, train=False)
    assert grey[0]["input"].shape == (2, SIZE, SIZE)


def test_random_holes(face_folder):
    files = list_images(face_folder)
    dataset = FaceFolderDataset(files, image_size=SIZE, hole="random", hole_size=16, train=False)
    holes = [dataset[i]["hole"] for i in range(3)]
    assert torch.equal(holes[0], dataset[0]["hole"])  # fixed per validation example
    assert not torch.equal(holes[0], holes[1])
    for hole in holes:
        assert 0 < int(hole.sum()) < SIZE * SIZE


def test_face_errors_and_split(face_folder, tmp_path):
    (tmp_path / "none").mkdir()
    with pytest.raises(DatasetError, match="no images"):
        list_images(tmp_path / "none")
    with pytest.raises(DatasetError, match="does not exist"):
        list_images(tmp_path / "absent")
    (face_folder / "broken.png").write_bytes(b"\x89PNG not really")
    dataset = FaceFolderDataset(list_images(face_folder), image_size=SIZE, hole_size=8)
    with pytest.raises(DatasetError, match="broken.png"):
        [dataset[i] for i in range(len(dataset))]
    (face_folder / "broken.png").unlink()
    config = config_from_dict({
        "task": "inpainting",
        "data": {"root": str(tmp_path), "train": "faces", "val": None, "val_fraction": 0.3,
                 "image_size": SIZE, "hole_size": 8},
        "model": {"critic_num_down": 3},
    })
    train, val = face_datasets(config)
    assert len(train) + len(val) == 3 and len(val) == 1
    assert not set(train.files) & set(val.files)


def test_demo_faces(tmp_path):
    from training.datasets import main

    assert main(["faces-demo", "--out", str(tmp_path / "demo"), "--val", "5"]) == 0
    assert len(list_images(tmp_path / "demo" / "train")) == 95
    assert len(list_images(tmp_path / "demo" / "val")) == 5


def test_randomized_brain_examples_split_bins_and_determinism(monkeypatch):
    from training.datasets import RandomizedBrainDataset
    from training.losses import r_bins
    from training.simulate import ORIENTATIONS, split_positions

    for orientation in ORIENTATIONS:
        train, val, test = (set(split_positions("colin27", orientation, s)) for s in ("train", "val", "test"))
        assert train and val and test
        assert not (train & val or train & test or val & test)
        # No held-out slice is next to a training slice of the same orientation.
        assert min(abs(a - b) for a in val | test for b in train) > 3
    bins = r_bins(2.0, 8.0)
    val_set = RandomizedBrainDataset(
        split="val", image_size=32, acquisition_size=48, length=4, train=False, r_bins=bins
    )
    items = [val_set[i] for i in range(4)]
    for number, item in enumerate(items):
        low, high = bins[number]
        assert low - 0.2 <= float(item["R"]) <= high + 0.2  # achieved R of a whole-line mask
        assert item["input"].shape == item["target"].shape == (16, 32, 32)
        assert torch.isfinite(item["input"]).all()
    torch.testing.assert_close(val_set[1]["input"], items[1]["input"])  # fixed per index
    # ... and simulated once: a fresh set makes the same example, a second read makes none.
    again = RandomizedBrainDataset(
        split="val", image_size=32, acquisition_size=48, length=4, train=False, r_bins=bins
    )
    torch.testing.assert_close(again[1]["target"], items[1]["target"])
    simulated = []
    monkeypatch.setattr(again, "measurement", lambda index: simulated.append(index))
    assert again[1] is again[1] and simulated == []
    train_set = RandomizedBrainDataset(image_size=32, acquisition_size=48, length=2, train=True)
    assert not torch.equal(train_set[0]["target"], train_set[0]["target"])  # fresh each time
    description = train_set.describe()
    assert description["anatomy"] == ["colin27"] and description["held_out_anatomy"] == ["mni152"]


def _simulated_config(train: dict | None = None, **data):
    """A small simulated-data MRI config (32×32, GRO R in [2, 8]) with ``data`` overrides."""
    return config_from_dict({
        "task": "mri",
        "data": {
            "kind": "simulated", "anatomy": ["colin27"], "fov": "full", "image_size": 32,
            "acquisition_size": 48, "examples_per_epoch": 5, "val_examples": 3,
            "mask": {"kind": "gro", "R": [2, 8]}, **data,
        },
        "model": {"critic_num_down": 3},
        "train": train or {},
    })


def test_simulated_config_builds_randomized_datasets():
    from training.datasets import RandomizedBrainDataset, build_datasets

    config = _simulated_config()
    train, val = build_datasets(config)
    assert isinstance(train, RandomizedBrainDataset) and len(train) == 5 and len(val) == 3
    assert train.fov == "full" and val.r_bins == [(2.0, 3.0), (3.0, 5.0), (5.0, 7.0), (7.0, 8.0)]
    assert train.coil_compression == "reference"


def test_coil_compression_and_beta_sd_bins_reach_the_datasets_and_the_weights():
    from training.datasets import build_datasets
    from training.module import weights_metadata

    config = _simulated_config({"beta_sd_bins": [4]}, coil_compression="always")
    train, val = build_datasets(config)
    assert train.coil_compression == val.coil_compression == "always"
    assert val.r_bins == [(2.0, 4.0), (4.0, 8.0)]
    assert weights_metadata(config).coil_compression == "always"
    assert train.contrasts == val.contrasts == "randomised"
    config.data.val_contrasts = "realistic"
    train, val = build_datasets(config)
    assert (train.contrasts, val.contrasts) == ("randomised", "realistic")
    assert "arbitrary" not in val.describe()["randomisation"]
    assert torch.isfinite(val[0]["target"]).all()
    with pytest.raises(ConfigError, match="data.val_contrasts"):
        config_from_dict({"task": "mri",
                          "data": {"kind": "simulated", "image_size": 128, "val_contrasts": "fancy"}})
    config.data.blur_probability = 0.3
    train, val = build_datasets(config)
    assert train.blur_probability == val.blur_probability == 0.3
    assert "30% of the slices blurred" in train.describe()["randomisation"]
    with pytest.raises(ConfigError, match="data.blur_probability"):
        config_from_dict({"task": "mri",
                          "data": {"kind": "simulated", "image_size": 128, "blur_probability": 1.5}})
    with pytest.raises(ConfigError, match="data.coil_compression"):
        config_from_dict({"task": "mri", "data": {"coil_compression": "sometimes"}})


def test_validation_examples_can_be_simulated_like_the_evaluation_files():
    from training import make_sample_data, simulate
    from training.datasets import RandomizedBrainDataset, build_datasets

    config = _simulated_config(val_simulation="evaluation")
    train, val = build_datasets(config)
    assert (train.simulation, val.simulation) == ("randomised", "evaluation")
    assert val.describe()["simulation"] == "evaluation"
    example = val[0]
    assert example["target"].shape == (16, 32, 32) and torch.isfinite(example["target"]).all()
    # Not the randomised simulation of the same example.
    config.data.val_simulation = "randomised"
    randomised = build_datasets(config)[1][0]
    assert not torch.allclose(example["target"], randomised["target"])
    # The geometry of the shipped evaluation and sample files, for 128x128 weights.
    kspace = simulate.evaluation_like_kspace("colin27", "axial", 90, 128, np.random.default_rng(0))
    assert kspace.shape[1:] == make_sample_data.KSPACE_SHAPE
    assert simulate.MIN_COILS <= kspace.shape[0] <= 20
    with pytest.raises(ConfigError, match="data.val_simulation"):
        config_from_dict({"task": "mri",
                          "data": {"kind": "simulated", "image_size": 128, "val_simulation": "scanner"}})
    with pytest.raises(DatasetError, match="unknown validation simulation 'scanner'"):
        RandomizedBrainDataset(image_size=32, acquisition_size=48, train=False, simulation="scanner")


def _calls_per_example(monkeypatch, module, names: tuple[str, ...]):
    """Wrap ``module``'s functions ``names`` so that they record their calls; return
    ``kinds(dataset, count)``: the names called while ``dataset`` makes its first ``count``
    measurements, in order."""
    calls: list[str] = []
    for name in names:
        real = getattr(module, name)
        monkeypatch.setattr(module, name, lambda *a, _real=real, _name=name, **k: (
            calls.append(_name), _real(*a, **k))[1])

    def kinds(dataset, count: int) -> list[str]:
        calls.clear()
        for index in range(count):
            dataset.measurement(index)
        return list(calls)

    return kinds


def test_training_examples_can_mix_in_evaluation_like_simulations(monkeypatch):
    from training import simulate
    from training.datasets import RandomizedBrainDataset, build_datasets

    kinds = _calls_per_example(monkeypatch, simulate, ("evaluation_like_kspace", "randomized_kspace"))

    config = _simulated_config(evaluation_like_fraction=1.0)
    train, val = build_datasets(config)
    assert train.describe()["evaluation_like_fraction"] == 1.0
    assert kinds(train, 3) == ["evaluation_like_kspace"] * 3
    assert val.evaluation_like_fraction == 0.0 and kinds(val, 3) == ["randomized_kspace"] * 3
    half = RandomizedBrainDataset(image_size=32, acquisition_size=48, evaluation_like_fraction=0.5)
    assert set(kinds(half, 24)) == {"evaluation_like_kspace", "randomized_kspace"}
    config.data.evaluation_like_fraction = 0.0
    assert kinds(build_datasets(config)[0], 3) == ["randomized_kspace"] * 3
    with pytest.raises(ConfigError, match="data.evaluation_like_fraction"):
        _simulated_config(evaluation_like_fraction=1.5)
    with pytest.raises(DatasetError, match="between 0 and 1, got -0.1"):
        RandomizedBrainDataset(image_size=32, acquisition_size=48, evaluation_like_fraction=-0.1)


def test_training_examples_can_take_contrasts_from_tissue_fractions(monkeypatch):
    from training import simulate
    from training.datasets import RandomizedBrainDataset, build_datasets

    kinds = _calls_per_example(monkeypatch, simulate, ("tissue_contrast", "random_contrast"))

    train, val = build_datasets(_simulated_config(tissue_contrast_fraction=1.0))
    assert train.describe()["tissue_contrast_fraction"] == 1.0
    assert "100% of the colin27 contrasts built from CSF/grey/white" in train.describe()["randomisation"]
    assert kinds(train, 3) == ["tissue_contrast"] * 3
    assert kinds(val, 3) == ["tissue_contrast"] * 3  # randomised validation is made like training
    half = RandomizedBrainDataset(image_size=32, acquisition_size=48, tissue_contrast_fraction=0.5)
    assert set(kinds(half, 24)) == {"tissue_contrast", "random_contrast"}
    # dipy slices have no tissue fractions: they keep the intensity maps
    slices = RandomizedBrainDataset(image_size=32, acquisition_size=48, anatomy=["colin27", "dipy"],
                                    anatomy_weights=[1e-6, 1.0], tissue_contrast_fraction=1.0)
    assert kinds(slices, 3) == ["random_contrast"] * 3
    assert kinds(RandomizedBrainDataset(image_size=32, acquisition_size=48), 3) == ["random_contrast"] * 3
    with pytest.raises(ConfigError, match="data.tissue_contrast_fraction.*between 0 and 1"):
        _simulated_config(tissue_contrast_fraction=1.5)
    with pytest.raises(ConfigError, match="needs a source with tissue fractions"):
        _simulated_config(anatomy=["mni152"], tissue_contrast_fraction=0.5)
    with pytest.raises(DatasetError, match="between 0 and 1, got -0.1"):
        RandomizedBrainDataset(image_size=32, acquisition_size=48, tissue_contrast_fraction=-0.1)
    with pytest.raises(DatasetError, match="tissue contrasts need a source with tissue fractions"):
        RandomizedBrainDataset(image_size=32, acquisition_size=48, anatomy=["mni152"],
                               tissue_contrast_fraction=0.5)


def test_training_can_draw_single_slices_of_more_subjects_by_weight(monkeypatch):
    from training import simulate
    from training.datasets import RandomizedBrainDataset, build_datasets

    slices = simulate.slice_anatomy("dipy")
    assert len(slices) == 11  # dipy's T1 coronal slice and its ten b0 slices
    for plane in slices:
        assert plane.dtype == np.float32 and 0.0 <= plane.min() and plane.max() <= 1.0
        assert plane.max() > 0.9 and min(plane.shape) >= 64 and not plane.flags.writeable
        # Cut to the object with a margin: empty borders, the object spans most of each side.
        assert not plane[[0, -1]].any() and not plane[:, [0, -1]].any()
        for axis in (0, 1):
            extent = np.nonzero(plane.any(axis=1 - axis))[0]
            assert np.ptp(extent) > 0.8 * plane.shape[axis]
    # The b0 slices are inverted to a T1-like contrast: their ventricles are darker than tissue.
    b0 = slices[5]
    centre = b0[b0.shape[0] // 2 - 5: b0.shape[0] // 2 + 5, b0.shape[1] // 2 - 5: b0.shape[1] // 2 + 5]
    assert centre.min() < 0.6 * np.median(b0[b0 > 0.3])

    drawn = []
    real = simulate.randomized_kspace
    monkeypatch.setattr(simulate, "randomized_kspace", lambda plane, *a, **k: (
        drawn.append(any(plane is s for s in slices)), real(plane, *a, **k))[1])
    config = _simulated_config(anatomy=["colin27", "dipy"], anatomy_weights=[1.0, 3.0])
    train, val = build_datasets(config)
    assert train.sources == ("colin27", "dipy") and np.allclose(train.source_probabilities, [0.25, 0.75])
    names = [train.measurement(i).source for i in range(24)]
    assert 12 <= sum(drawn) <= 23 and sum("dipy as acquired" in n for n in names) == sum(drawn)
    assert train.describe()["slice_positions"] == sum(len(p) for p in train.positions.values()) + 11
    # Validation has no slice sources: its examples, and their random stream, are Colin27's.
    drawn.clear()
    assert val.sources == ("colin27",) and val.source_probabilities is None
    alone = build_datasets(_simulated_config())[1]
    torch.testing.assert_close(val[0]["target"], alone[0]["target"])
    assert not any(drawn)
    # Evaluation-like mixing applies to volumes; slices are always domain-randomised.
    mixed = RandomizedBrainDataset(image_size=32, acquisition_size=48, anatomy=["colin27", "dipy"],
                                   anatomy_weights=[1e-6, 1.0], evaluation_like_fraction=1.0)
    assert "dipy" in mixed.measurement(0).source

    with pytest.raises(ConfigError, match="data.anatomy_weights"):
        _simulated_config(anatomy=["colin27", "dipy"], anatomy_weights=[1.0])
    with pytest.raises(ConfigError, match="must include a volume"):
        _simulated_config(anatomy=["dipy"])
    with pytest.raises(ConfigError, match="data.anatomy"):
        _simulated_config(anatomy=["colin27", "hcp"])
    with pytest.raises(DatasetError, match="positive weight to each of the 2 sources"):
        RandomizedBrainDataset(anatomy=["colin27", "dipy"], anatomy_weights=[1.0, 0.0])
    with pytest.raises(DatasetError, match="at least one volume"):
        RandomizedBrainDataset(anatomy=["dipy"])
    with pytest.raises(ParameterError, match="unknown slice anatomy"):
        simulate.slice_anatomy("colin27")


def test_the_more_subjects_evaluation_file_holds_the_dipy_slices(tmp_path):
    from training.make_sample_data import EVAL_COILS, FOV, KSPACE_SHAPE, write_more_subjects
    from training.simulate import slice_anatomy

    path = write_more_subjects(tmp_path)
    volume = FastMRIFile.open(path)
    assert volume.num_slices == len(slice_anatomy("dipy")) == 11
    assert volume.read_kspace(0).shape == (EVAL_COILS, *KSPACE_SHAPE)
    with h5py.File(path) as handle:
        reference = handle["reconstruction_rss"][:]
        assert handle.attrs["split"] == "more subjects"
    assert reference.shape == (11, FOV, FOV) and np.isfinite(reference).all()
    # Slice 0 is the T1 coronal slice (wider than tall), the others the axial b0 slices.
    rows, cols = np.nonzero(reference[0] > 0.2 * reference[0].max())
    assert np.ptp(cols) > np.ptp(rows)
    (tmp_path / "again").mkdir()
    again = write_more_subjects(tmp_path / "again")  # the same file: fixed seeds
    np.testing.assert_array_equal(FastMRIFile.open(again).read_kspace(5), volume.read_kspace(5))
