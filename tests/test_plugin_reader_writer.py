"""napari plugin: readers (fastMRI .h5, face images), sample data, writers (.h5, .nii.gz)."""

from __future__ import annotations

import math

import h5py
import nibabel as nib
import numpy as np
import pytest

from napari_rcgan import _sample_data, bundled
from napari_rcgan._reader import get_reader, read_face_image, read_fastmri
from napari_rcgan._writer import read_nifti_attrs, result_from_layers, write_h5, write_nifti
from napari_rcgan.errors import InputFileError, ParameterError, RcganError
from napari_rcgan.io import FastMRIFile
from napari_rcgan.physics.inpainting import center_square_hole
from napari_rcgan.session import SamplingRequest, Session
from tests import plugin_helpers as helpers
from tests.plugin_helpers import napari_rcgan_plugin  # noqa: F401 (fixture)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("plugin_io")
    return {
        "mri": helpers.write_phantom_fastmri(folder / "phantom.h5", slices=3),
        "mri_noref": helpers.write_phantom_fastmri(
            folder / "phantom_noref.h5", slices=2, with_reference=False
        ),
        "face": helpers.write_face(folder / "face.png"),
        "mri_weights": helpers.write_tiny_weights(folder / "mri.safetensors", "mri"),
        "face_weights": helpers.write_tiny_weights(folder / "faces.safetensors", "inpainting"),
        **helpers.write_broken_files(folder),
    }


# ------------------------------------------------------------------------------------------------
# readers


def test_reader_claims_only_its_files(files, tmp_path):
    assert get_reader(str(files["mri"])) is not None
    assert get_reader(str(files["face"])) is not None
    assert get_reader([str(files["mri"])]) is not None
    assert get_reader(str(tmp_path / "notes.txt")) is None
    assert get_reader(str(tmp_path / "volume.nii.gz")) is None
    assert get_reader(str(tmp_path / "folder")) is None
    assert get_reader([str(files["mri"]), str(files["face"])]) is None


def test_fastmri_reader_gives_lazy_reference_stack_with_source_metadata(files):
    [(data, kwargs, layer_type)] = get_reader(str(files["mri"]))(str(files["mri"]))
    assert layer_type == "image"
    assert data.shape == (3, helpers.SIZE, helpers.SIZE)
    assert type(data).__module__.startswith("dask"), "the stack is read lazily, slice by slice"
    source = kwargs["metadata"]["rcgan_source"]
    assert source["kind"] == "fastmri"
    assert source["num_slices"] == 3 and source["num_coils"] == helpers.COILS
    assert FastMRIFile.open(source["path"]).num_slices == 3
    with h5py.File(files["mri"], "r") as handle:
        np.testing.assert_allclose(np.asarray(data[1]), handle["reconstruction_rss"][1])


def test_fastmri_reader_without_reconstruction_rss_uses_rss_of_kspace(files):
    [(data, kwargs, _)] = read_fastmri(str(files["mri_noref"]))
    [(with_ref, _, _)] = read_fastmri(str(files["mri"]))
    assert kwargs["metadata"]["rcgan_source"]["has_reference"] is False
    # same phantom slices, same k-space: the RSS computed from k-space is the reference
    np.testing.assert_allclose(np.asarray(data[0]), np.asarray(with_ref[0]), rtol=1e-5, atol=1e-6)


def test_image_reader_gives_rgb_layer_in_unit_range(files):
    [(data, kwargs, layer_type)] = get_reader(str(files["face"]))(str(files["face"]))
    assert layer_type == "image" and kwargs["rgb"]
    assert data.shape == (helpers.SIZE, helpers.SIZE, 3)
    assert 0.0 <= data.min() and data.max() <= 1.0
    assert kwargs["metadata"]["rcgan_source"]["kind"] == "image"


@pytest.mark.parametrize(
    ("name", "reader", "expected"),
    [("corrupt", read_fastmri, "not an HDF5 file"), ("no_kspace", read_fastmri, "no 'kspace' dataset"),
     ("bad_png", read_face_image, "not a readable image")],
)
def test_unreadable_files_are_not_claimed_and_the_readers_name_the_problem(files, name, reader, expected):
    path = str(files[name])
    assert get_reader(path) is None, "napari may try another reader"
    with pytest.raises(InputFileError, match=expected) as info:
        reader(path)
    assert path in str(info.value), "the message names the file"


def test_viewer_open_uses_the_plugin(napari_rcgan_plugin, make_napari_viewer, files):  # noqa: F811
    viewer = make_napari_viewer()
    layers = viewer.open(str(files["mri"]), plugin="napari-rcgan")
    assert len(layers) == 1 and layers[0].metadata["rcgan_source"]["kind"] == "fastmri"
    assert viewer.layers[0].data.shape == (3, helpers.SIZE, helpers.SIZE)
    layers = viewer.open(str(files["face"]), plugin="napari-rcgan")
    assert layers[0].rgb


# ------------------------------------------------------------------------------------------------
# sample data


def test_sample_data_dir_points_at_the_shipped_folder():
    folder = bundled.sample_data_dir()
    assert folder.name == "sample_data"


def test_brain_sample_opens():
    [(data, kwargs, layer_type)] = _sample_data.brain_sample()
    assert layer_type == "image" and data.ndim == 3
    source = kwargs["metadata"]["rcgan_source"]
    assert source["kind"] == "fastmri" and source["num_coils"] >= 8
    assert "simulated k-space from real anatomy" in source.get("provenance", "")
    assert np.isfinite(np.asarray(data[data.shape[0] // 2])).all()


def test_face_sample_has_the_centred_hole():
    (image, kwargs, kind), (hole, hole_kwargs, hole_kind) = _sample_data.face_sample()
    assert kind == "image" and kwargs["rgb"] and hole_kind == "labels"
    np.testing.assert_array_equal(hole.astype(bool), center_square_hole(image.shape[:2]))


# ------------------------------------------------------------------------------------------------
# writers: build the layer data the widget produces from an engine run


def _layer_data(result, P=None, partial=False):
    """Layer-data tuples like the widget's seven result layers (explorer at P)."""
    datasets = result.datasets()
    attrs = result.attrs()
    drawn = result.drawn
    P = drawn if P is None else P
    R = None if math.isnan(attrs["R"]) else attrs["R"]
    info = {"P": P, "R": R, "seed": attrs["seed"], "weights": attrs["weights"],
            "task": attrs["task"], "mask_kind": attrs["mask_kind"], "run": 7, "input": "x",
            "slice": attrs.get("slice"),
            "partial": partial}
    mean = result.stack.mean(P)
    arrays = {
        "samples": (datasets["samples"], drawn),
        "mean": (mean, P),
        "std": (result.stack.std(P), P),
        "zero_filled": (datasets["zero_filled"], drawn),
        "mask": (datasets["mask"], drawn),
    }
    if "target" in datasets:
        arrays["reference"] = (datasets["target"], drawn)
        arrays["error"] = (np.abs(mean - datasets["target"]), P)
    layers = []
    for kind, (data, layer_P) in arrays.items():
        ndim = data.ndim - (1 if attrs["task"] == "inpainting" and kind != "mask" and
                            data.shape[-1] == 3 else 0)
        meta = {"rcgan": {**info, "kind": kind, "P": layer_P}}
        layers.append((data, {"name": f"rcgan {kind}", "metadata": meta,
                              "scale": (1.0,) * (ndim - 2) + (0.5, 0.25),
                              "translate": (0.0,) * ndim}, "image"))
    return layers


@pytest.fixture(scope="module")
def mri_result(files):
    return Session().run(SamplingRequest(input=str(files["mri"]), weights=str(files["mri_weights"]),
                                         device="cpu", slice=1, R=4.0, P=4, seed=3))


@pytest.fixture(scope="module")
def face_result(files):
    return Session().run(SamplingRequest(input=str(files["face"]), weights=str(files["face_weights"]),
                                         device="cpu", P=3, seed=1))


def test_h5_writer_round_trip_matches_the_cli_schema(mri_result, tmp_path):
    out = tmp_path / "result.h5"
    assert write_h5(str(out), _layer_data(mri_result)) == [str(out)]
    expected = mri_result.datasets()
    attrs = mri_result.attrs()
    with h5py.File(out, "r") as handle:
        assert set(handle) == set(expected) == {
            "samples", "mean", "std", "zero_filled", "mask", "target", "error"
        }
        for name, array in expected.items():
            np.testing.assert_allclose(handle[name][()], array, rtol=1e-5, atol=1e-6)
        for key in ("task", "P", "seed", "mask_kind", "weights", "complete", "slice"):
            value = handle.attrs[key]
            assert (value.decode() if isinstance(value, bytes) else value) == attrs[key], key
        assert handle.attrs["R"] == pytest.approx(attrs["R"])
    assert not list(tmp_path.glob(".*.tmp")), "written atomically, no temporary left"


def test_h5_writer_writes_the_explored_P(mri_result, tmp_path):
    out = tmp_path / "p2.h5"
    write_h5(str(out), _layer_data(mri_result, P=2))
    with h5py.File(out, "r") as handle:
        assert handle.attrs["P"] == 2
        assert handle["samples"].shape[0] == 2
        np.testing.assert_allclose(handle["mean"][()], mri_result.stack.mean(2), rtol=1e-5,
                                   atol=1e-6)
        np.testing.assert_allclose(handle["std"][()], mri_result.stack.std(2), rtol=1e-4,
                                   atol=1e-6)


def test_h5_writer_from_samples_layer_alone_uses_the_stashed_arrays(mri_result, tmp_path):
    layers = _layer_data(mri_result)
    by_name = {attrs["name"]: (data, attrs, kind) for data, attrs, kind in layers}
    samples = by_name["rcgan samples"]
    samples[1]["metadata"]["rcgan_arrays"] = {
        "zero_filled": by_name["rcgan zero_filled"][0], "mask": by_name["rcgan mask"][0],
        "reference": by_name["rcgan reference"][0],
    }
    out = tmp_path / "alone.h5"
    write_h5(str(out), [samples])
    with h5py.File(out, "r") as handle:
        assert {"target", "error", "zero_filled", "mask"} <= set(handle)


def test_partial_result_is_marked_incomplete(mri_result, tmp_path):
    out = tmp_path / "partial.h5"
    write_h5(str(out), _layer_data(mri_result, partial=True))
    with h5py.File(out, "r") as handle:
        assert not handle.attrs["complete"]


def test_h5_writer_for_inpainting(face_result, tmp_path):
    out = tmp_path / "face.h5"
    write_h5(str(out), _layer_data(face_result))
    with h5py.File(out, "r") as handle:
        assert handle["samples"].shape == (3, helpers.SIZE, helpers.SIZE, 3)
        assert handle.attrs["task"] == "inpainting" and np.isnan(handle.attrs["R"])
        assert handle.attrs["mask_kind"] == "hole"
        np.testing.assert_allclose(handle["std"][()], face_result.stack.std(), atol=1e-6)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii"])
def test_nifti_writer_round_trip(mri_result, tmp_path, suffix):
    out = tmp_path / f"samples{suffix}"
    assert write_nifti(str(out), _layer_data(mri_result)) == [str(out)]
    image = nib.load(str(out))
    volume = np.asarray(image.dataobj)
    assert volume.shape == (helpers.SIZE, helpers.SIZE, 4)
    np.testing.assert_array_equal(np.moveaxis(volume, 2, 0), mri_result.stack.samples)
    assert image.header.get_zooms()[:2] == (0.5, 0.25)
    description = image.header["descrip"].item().decode()
    assert "rcGAN samples mri" in description and "P=4" in description
    attrs = read_nifti_attrs(out)
    assert attrs["task"] == "mri" and attrs["P"] == 4 and attrs["seed"] == 3
    assert attrs["R"] == pytest.approx(mri_result.attrs()["R"])
    assert not list(tmp_path.glob(".*.tmp"))


def test_nifti_writer_colour_stack(face_result, tmp_path):
    out = tmp_path / "face.nii.gz"
    write_nifti(str(out), _layer_data(face_result))
    volume = np.asarray(nib.load(str(out)).dataobj)
    assert volume.shape == (helpers.SIZE, helpers.SIZE, 3, 3)
    np.testing.assert_array_equal(np.moveaxis(volume, 2, 0), face_result.stack.samples)
    assert read_nifti_attrs(out)["R"] is None


def test_writers_reject_layers_that_are_not_a_result(tmp_path):
    plain = [(np.zeros((4, 4), np.float32), {"name": "x", "metadata": {}}, "image")]
    for writer in (write_h5, write_nifti):
        with pytest.raises(ParameterError, match="nothing to save"):
            writer(str(tmp_path / "x.h5"), plain)
    assert not list(tmp_path.iterdir()), "nothing written on error"


def test_writer_rejects_two_runs(mri_result, tmp_path):
    first, second = _layer_data(mri_result), _layer_data(mri_result)
    for _, attrs, _ in second:
        attrs["metadata"]["rcgan"]["run"] = 8
    with pytest.raises(RcganError, match="one run"):
        result_from_layers(first + second)


def test_missing_sample_data_gives_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(bundled, "sample_data_dir", lambda: tmp_path)
    with pytest.raises(InputFileError, match="sample file missing"):
        _sample_data.brain_sample()
    with pytest.raises(InputFileError, match="sample face found"):
        _sample_data.face_sample()
