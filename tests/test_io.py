"""Input readers and atomic output."""

import h5py
import numpy as np
import pytest
from PIL import Image

from napari_rcgan.errors import InputFileError, ParameterError
from napari_rcgan.io import FastMRIFile, atomic_output, read_hole_mask, read_image, write_result_h5


def test_fastmri_file_reads_one_slice_and_its_reference(small_fastmri_file):
    data = FastMRIFile.open(small_fastmri_file)
    assert (data.num_slices, data.num_coils, data.kspace_shape) == (2, 8, (128, 72))
    assert data.has_reference and data.attrs["acquisition"] == "AXT2"
    kspace = data.read_kspace(1)
    assert kspace.shape == (8, 128, 72) and kspace.dtype == np.complex64
    with h5py.File(small_fastmri_file) as handle:
        np.testing.assert_array_equal(kspace, handle["kspace"][1])
        np.testing.assert_array_equal(data.read_reference(1), handle["reconstruction_rss"][1])
    with pytest.raises(ParameterError, match=r"slice -1 out of range; the file has 2 slices \(0..1\)"):
        data.read_kspace(-1)


def test_reference_is_optional(tmp_path):
    path = tmp_path / "compact.h5"
    with h5py.File(path, "w") as handle:
        handle.create_dataset("kspace", data=np.ones((1, 8, 16, 16), np.complex64))
    data = FastMRIFile.open(path)
    assert not data.has_reference and data.read_reference(0) is None
    assert "1 slices, 8 coils, k-space 16x16" in data.describe()


def test_images_and_hole_masks(tmp_path):
    rgb = np.zeros((6, 5, 3), np.uint8)
    rgb[..., 0] = 255
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    Image.fromarray(np.full((6, 5), 128, np.uint8)).save(tmp_path / "grey.png")
    assert read_image(tmp_path / "rgb.png").shape == (6, 5, 3)
    assert read_image(tmp_path / "rgb.png")[..., 0].min() == 1.0
    grey = read_image(tmp_path / "grey.png")
    assert grey.shape == (6, 5) and grey.max() == pytest.approx(128 / 255)
    hole = np.zeros((6, 5), np.uint8)
    hole[2:4, 1:3] = 255
    Image.fromarray(hole).save(tmp_path / "hole.png")
    np.testing.assert_array_equal(read_hole_mask(tmp_path / "hole.png"), hole > 0)
    np.save(tmp_path / "hole.npy", hole > 0)
    np.testing.assert_array_equal(read_hole_mask(tmp_path / "hole.npy"), hole > 0)
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(InputFileError, match="broken.png: not a readable image"):
        read_image(tmp_path / "broken.png")


def test_atomic_output_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "result.h5"
    with pytest.raises(RuntimeError):
        with atomic_output(target) as temporary:
            temporary.write_text("half")
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []
    write_result_h5(target, {"mean": np.ones((2, 2))}, {"task": "mri"})
    with h5py.File(target) as handle:
        assert handle["mean"].dtype == np.float32 and handle.attrs["task"] == "mri"
    assert [path.name for path in tmp_path.iterdir()] == ["result.h5"]
