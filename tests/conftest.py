"""Shared fixtures: simulated k-space from real anatomy and tiny generator weights."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from napari_rcgan.weights import WeightsMetadata, build_generator, save_weights
from training.simulate import COLIN27_PATH, simulate_volume_file

ANATOMY = "colin27" if Path(COLIN27_PATH).is_file() else "mni152"

# The suite compares samples with eager fp32 computations, so `auto` means torch fp32 here unless
# a test asks for more; tests/test_backends.py clears these and tests OpenVINO, bf16 and what
# `auto` resolves to on the machine that runs it.
os.environ.setdefault("NAPARI_RCGAN_BACKEND", "torch")
os.environ.setdefault("NAPARI_RCGAN_PRECISION", "fp32")


@pytest.fixture(autouse=True)
def _thread_workers_end_with_their_test():
    """Wait for a test's napari thread workers (e.g. the perception–distortion curves) at its
    end, as napari's event loop does on quit: a worker still running when the QApplication is
    torn down aborts the process."""
    yield
    if "superqt.utils" in sys.modules:
        from superqt.utils import WorkerBase

        WorkerBase.await_workers(120_000)


@pytest.fixture
def viewer_widget(make_napari_viewer):
    """A napari viewer (napari's test fixture) with the Posterior sampler widget docked."""
    from tests import plugin_helpers

    viewer = make_napari_viewer()
    return viewer, plugin_helpers.dock_sampler_widget(viewer)


def tiny_weights(path: Path, task: str, size: int, channels: int, seed: int = 0) -> Path:
    """Save a randomly initialised, very small generator (base width 4, 2 levels)."""
    import torch

    metadata = WeightsMetadata(
        task=task,
        image_size=[size, size],
        channels=channels,
        base_width=4,
        num_pool_layers=2,
        masks=["gro"] if task == "mri" else [],
        acceleration=[2.0, 8.0] if task == "mri" else [],
        notes="tiny random test network",
    )
    torch.manual_seed(seed)
    return save_weights(path, build_generator(metadata).state_dict(), metadata)


@pytest.fixture(scope="session")
def raw_fastmri_file(tmp_path_factory) -> Path:
    """A raw-layout fastMRI file: 2 slices, 16 coils, 768×396 k-space, simulated from anatomy."""
    path = tmp_path_factory.mktemp("raw") / "file_brain_AXT2_sim_test_0.h5"
    return simulate_volume_file(path, ANATOMY, "t2", slice_indices=[84, 85], coils=16, seed=0)


@pytest.fixture(scope="session")
def small_fastmri_file(tmp_path_factory) -> Path:
    """A small raw-layout file (8 coils, 128×72 k-space → 64×64 images), 2 slices."""
    path = tmp_path_factory.mktemp("small") / "file_brain_AXT2_sim_small.h5"
    return simulate_volume_file(
        path,
        ANATOMY,
        "t2",
        slice_indices=[84, 85],
        coils=8,
        kspace_shape=(128, 72),
        image_size=64,
        seed=1,
    )


@pytest.fixture(scope="session")
def mri_weights_384(tmp_path_factory) -> Path:
    return tiny_weights(tmp_path_factory.mktemp("w") / "mri384.safetensors", "mri", 384, 8)


@pytest.fixture(scope="session")
def mri_weights_64(tmp_path_factory) -> Path:
    return tiny_weights(tmp_path_factory.mktemp("w") / "mri64.safetensors", "mri", 64, 8)


@pytest.fixture(scope="session")
def face_weights_64(tmp_path_factory) -> Path:
    return tiny_weights(tmp_path_factory.mktemp("w") / "faces64.safetensors", "inpainting", 64, 3)


@pytest.fixture(scope="session")
def feature_dir() -> Path:
    """The metric feature networks from ``napari-rcgan features prepare`` (required in CI)."""
    from napari_rcgan.metrics import feature_weights

    folder = feature_weights.default_dir()
    if not (folder / feature_weights.MANIFEST).is_file():
        if os.environ.get("NAPARI_RCGAN_REQUIRE_FEATURES") == "1":
            pytest.fail(f"{folder}: feature weights missing; CI must run `napari-rcgan features prepare`")
        pytest.skip("feature weights not prepared (run `napari-rcgan features prepare`)")
    return folder
