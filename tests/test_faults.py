"""Fault suite: malformed inputs, bad options and failing disks get one clear error.

The contract for every command: exit status 2; the last stderr line reads
``napari-rcgan: error: <file or option>: <problem>``; no traceback; nothing written (no output,
no temporary) and an existing output file untouched. The API raises only the project's errors
(:class:`~napari_rcgan.errors.RcganError`), and the napari reader returns None for what it
cannot read.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import struct
import tempfile
import warnings
import zlib
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from safetensors.torch import load_file, save_file

from napari_rcgan._reader import get_reader, read_face_image, read_fastmri
from napari_rcgan.cli import main
from napari_rcgan.errors import (
    InputFileError,
    NumericalError,
    OutputFileError,
    ParameterError,
    RcganError,
    WeightsError,
)
from napari_rcgan.io import FastMRIFile, atomic_output, atomic_outputs, read_image
from napari_rcgan.sampler import MAX_SEED, PosteriorSampler, check_seed, resolve_device

PREFIX = "napari-rcgan: error: "
SENTINEL = b"an existing output that a failed run must leave untouched"
FAST = settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _listing(folder: Path) -> dict[str, bytes]:
    return {str(path): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def fails_cleanly(argv: list[str], capsys, watched: Path, subject: str | Path) -> str:
    """Run the CLI in-process and check the failure contract; return the problem text."""
    before = _listing(watched)
    with pytest.raises(SystemExit) as info:
        main([str(item) for item in argv])
    error = capsys.readouterr().err
    assert info.value.code == 2, error
    assert "Traceback" not in error
    last = error.rstrip("\n").splitlines()[-1]
    assert last.startswith(PREFIX), error
    assert last[len(PREFIX):].startswith(f"{subject}"), f"names {subject}: {last}"
    assert _listing(watched) == before, "a failed run wrote, removed or changed files"
    return last[len(PREFIX) + len(str(subject)):]


@pytest.fixture()
def out(tmp_path) -> Path:
    """An existing output file: every failing run must leave it as it is."""
    path = tmp_path / "out.h5"
    path.write_bytes(SENTINEL)
    return path


@pytest.fixture(scope="module")
def kspace(small_fastmri_file) -> np.ndarray:
    with h5py.File(small_fastmri_file) as handle:
        return handle["kspace"][()]


def write_kspace(path: Path, kspace: np.ndarray, **options) -> Path:
    with h5py.File(path, "w") as handle:
        handle.create_dataset("kspace", data=kspace, **options)
    return path


def png_header(path: Path, width: int, height: int) -> Path:
    """A PNG whose header declares ``width × height`` 8-bit grey pixels (one row of data)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                     + chunk(b"IDAT", zlib.compress(b"\0" * (width + 1))) + chunk(b"IEND", b""))
    return path


def sample_argv(path, weights, out, *extra) -> list:
    return ["sample", path, "--weights", weights, "--device", "cpu", "--P", "2", "--out", out, *extra]


# ------------------------------------------------------------------------------------------------
# numeric options: seeds, chunks, sizes, devices, slice counts


@pytest.mark.parametrize("seed", [-1, MAX_SEED, 2**64])
def test_seed_outside_int64_is_refused_before_sampling(seed, small_fastmri_file, mri_weights_64, out,
                                                       capsys):
    problem = fails_cleanly(sample_argv(small_fastmri_file, mri_weights_64, out, "--seed", seed),
                            capsys, out.parent, "seed")
    assert "2**63 - 1" in problem and str(seed) in problem


@given(seed=st.one_of(st.integers(max_value=-1), st.integers(min_value=MAX_SEED)))
@FAST
def test_check_seed_refuses_every_seed_outside_int64(seed):
    with pytest.raises(ParameterError, match="seed"):
        check_seed(seed)


def test_chunk_zero_is_refused(small_fastmri_file, mri_weights_64, out, capsys):
    problem = fails_cleanly(sample_argv(small_fastmri_file, mri_weights_64, out, "--chunk", "0"),
                            capsys, out.parent, "chunk")
    assert "at least 1" in problem


@pytest.mark.parametrize("device", ["meta", "xpu", "cuda:7", "tpu"])
def test_unsupported_or_absent_devices_are_refused(device, small_fastmri_file, mri_weights_64, out,
                                                   capsys):
    fails_cleanly(sample_argv(small_fastmri_file, mri_weights_64, out, "--device", device),
                  capsys, out.parent, f"device '{device}'")
    with pytest.raises(ParameterError):
        resolve_device(device)


def test_evaluate_max_slices_zero_is_refused(small_fastmri_file, mri_weights_64, tmp_path, capsys):
    metrics = tmp_path / "metrics.json"
    fails_cleanly(["evaluate", "--weights", mri_weights_64, "--data", small_fastmri_file.parent,
                   "--device", "cpu", "--max-slices", "0", "--out", metrics],
                  capsys, tmp_path, "max-slices")


def reference_checkpoint(path: Path) -> Path:
    from tests.reference_rcgan import ReferenceUNetModel

    torch.manual_seed(0)
    reference = ReferenceUNetModel(in_chans=18, out_chans=16, chans=4, num_pool_layers=2)
    torch.save({"state_dict": {f"generator.{k}": v for k, v in reference.state_dict().items()},
                "hyper_parameters": {"args": argparse.Namespace(im_size=64)}}, path)
    return path


@pytest.mark.parametrize("size", ["0", "3", "-64"])
def test_convert_image_size_below_the_network_minimum_is_refused(size, tmp_path, capsys):
    checkpoint = reference_checkpoint(tmp_path / "reference.ckpt")
    problem = fails_cleanly(["convert", checkpoint, tmp_path / "w.safetensors", "--image-size", size],
                            capsys, tmp_path, "image-size")
    assert "from 4" in problem


# ------------------------------------------------------------------------------------------------
# weights


def weights_with(path: Path, source: Path, metadata: dict | None = None, tensors=None) -> Path:
    tensors = load_file(source) if tensors is None else tensors
    with open(source, "rb") as stream:
        header = json.loads(stream.read(struct.unpack("<Q", stream.read(8))[0]))
    values = json.loads(header["__metadata__"]["rcgan"]) | (metadata or {})
    save_file(tensors, str(path), metadata={"rcgan": json.dumps(values)})
    return path


WRONG_VALUES = {
    "image_size": st.one_of(st.text(max_size=4), st.lists(st.text(max_size=3), min_size=2, max_size=2),
                            st.lists(st.integers(-5, 0), min_size=2, max_size=2), st.just([64])),
    "channels": st.one_of(st.text(max_size=3), st.integers(-3, 0), st.floats(), st.booleans()),
    "base_width": st.one_of(st.integers(-10, 1), st.text(max_size=3), st.none()),
    "num_pool_layers": st.one_of(st.integers(-3, 0), st.integers(9, 99), st.floats()),
    "task": st.one_of(st.integers(), st.text(max_size=5).filter(lambda t: t not in ("mri", "inpainting"))),
    "input_skip": st.one_of(st.integers(), st.text(max_size=3)),
    "beta_sd": st.one_of(st.text(max_size=3), st.lists(st.integers(), max_size=2)),
    "masks": st.one_of(st.text(min_size=1, max_size=3), st.lists(st.integers(), min_size=1, max_size=2)),
}


@given(data=st.data(), key=st.sampled_from(sorted(WRONG_VALUES)))
@FAST
def test_weights_metadata_of_wrong_types_is_refused_before_anything_is_built(
    data, key, mri_weights_64, tmp_path_factory
):
    folder = tmp_path_factory.mktemp("meta")
    value = data.draw(WRONG_VALUES[key])
    path = weights_with(folder / "bad.safetensors", mri_weights_64, {key: value})
    for argv in (["info", path], sample_argv(path, path, folder / "o.h5")):
        with pytest.raises(SystemExit) as info:
            main([str(item) for item in argv])
        assert info.value.code == 2
    with pytest.raises(WeightsError, match=f"{path}: metadata {key} must be"):
        PosteriorSampler(path, device="cpu")


def test_image_size_below_the_network_minimum_is_refused(mri_weights_64, tmp_path):
    path = weights_with(tmp_path / "w.safetensors", mri_weights_64, {"image_size": [2, 2]})
    with pytest.raises(WeightsError, match=r"smaller than the 4x4 a generator with 2 levels needs"):
        PosteriorSampler(path, device="cpu")


def test_weights_full_of_nan_are_refused(small_fastmri_file, mri_weights_64, out, capsys):
    tensors = {key: torch.full_like(value, float("nan")) if value.is_floating_point() else value
               for key, value in load_file(mri_weights_64).items()}
    path = weights_with(out.parent / "nan.safetensors", mri_weights_64, tensors=tensors)
    problem = fails_cleanly(sample_argv(small_fastmri_file, path, out), capsys, out.parent, path)
    assert "NaN or Inf" in problem


def test_weights_that_overflow_give_an_error_not_nan_samples(small_fastmri_file, mri_weights_64, out,
                                                               capsys):
    tensors = load_file(mri_weights_64)
    tensors["conv2.1.weight"] = torch.full_like(tensors["conv2.1.weight"], 3e38)
    path = weights_with(out.parent / "huge.safetensors", mri_weights_64, tensors=tensors)
    problem = fails_cleanly(sample_argv(small_fastmri_file, path, out), capsys, out.parent,
                            f"{small_fastmri_file} slice 0")
    assert "NaN or Inf" in problem and str(path) in problem
    sampler = PosteriorSampler(path, device="cpu")
    measurement = sampler.measure_mri(FastMRIFile.open(small_fastmri_file).read_kspace(0), R=4)
    with pytest.raises(NumericalError):
        sampler.sample(measurement, P=1)


# ------------------------------------------------------------------------------------------------
# k-space values float32 cannot carry


@pytest.mark.parametrize(("scale", "expected"), [
    (1e30, "peaks at"), (1e-30, "peaks at"), (0.0, "all zero"), ("max", "peaks at")
])
def test_kspace_outside_float32_range_is_an_error_naming_the_file(scale, expected, kspace,
                                                                   mri_weights_64, out, capsys):
    peak = np.abs(kspace.view(np.float32)).max()
    factor = 3e38 / peak if scale == "max" else scale
    scaled = (kspace.astype(np.complex128) * factor).astype(np.complex64)
    path = write_kspace(out.parent / "scaled.h5", scaled)
    problem = fails_cleanly(sample_argv(path, mri_weights_64, out), capsys, out.parent, f"{path} slice 0")
    assert expected in problem and "constant" not in problem


# ------------------------------------------------------------------------------------------------
# HDF5 files: corrupt chunks, huge declarations, empty datasets, truncations


def corrupt_chunk_file(path: Path, kspace: np.ndarray) -> Path:
    write_kspace(path, kspace, compression="gzip", chunks=(1, *kspace.shape[1:]))
    with h5py.File(path) as handle:
        dataset = handle["kspace"].id
        offsets = [dataset.get_chunk_info(i).byte_offset for i in range(dataset.get_num_chunks())]
    data = bytearray(path.read_bytes())
    for offset in offsets:
        data[offset + 16 : offset + 256] = bytes(240)
    path.write_bytes(bytes(data))
    return path


def huge_file(path: Path) -> Path:
    with h5py.File(path, "w") as handle:
        handle.create_dataset("kspace", shape=(1, 8, 100000, 100000), dtype=np.complex64,
                              chunks=(1, 1, 64, 64))
    return path


def test_corrupt_compressed_chunk_is_an_input_error(kspace, mri_weights_64, out, capsys):
    path = corrupt_chunk_file(out.parent / "corrupt.h5", kspace)
    problem = fails_cleanly(sample_argv(path, mri_weights_64, out), capsys, out.parent, path)
    assert "cannot read slice 0 of 'kspace'" in problem
    with pytest.raises(InputFileError):
        read_fastmri(str(path))


def test_huge_declared_dataset_is_refused_before_allocating(mri_weights_64, out, capsys):
    path = huge_file(out.parent / "huge.h5")
    problem = fails_cleanly(sample_argv(path, mri_weights_64, out), capsys, out.parent, path)
    assert "596.0 GiB" in problem
    fails_cleanly(["info", path], capsys, out.parent, path)


@pytest.mark.parametrize("shape", [(0, 8, 64, 64), (2, 0, 64, 64), (2, 8, 0, 64)])
def test_empty_kspace_is_an_input_error(shape, tmp_path):
    path = write_kspace(tmp_path / "empty.h5", np.zeros(shape, np.complex64))
    with pytest.raises(InputFileError, match="'kspace' is empty"):
        FastMRIFile.open(path)
    with pytest.raises(InputFileError, match="empty"):
        get_reader(str(path))(str(path))


@given(cut=st.floats(0.0, 1.0), flips=st.lists(st.integers(0, 2**31), max_size=4))
@FAST
def test_truncated_or_damaged_hdf5_raises_only_input_errors(cut, flips, kspace, tmp_path_factory):
    folder = tmp_path_factory.mktemp("cut")
    whole = write_kspace(folder / "whole.h5", kspace[:1], compression="gzip").read_bytes()
    data = bytearray(whole[: int(cut * len(whole))])
    for position in flips:
        if data:
            data[position % len(data)] ^= 0xFF
    path = folder / "damaged.h5"
    path.write_bytes(bytes(data))
    try:
        FastMRIFile.open(path).read_kspace(0)
    except RcganError:
        pass
    reader = get_reader(str(path))
    if reader is not None:
        try:
            reader(str(path))
        except RcganError:
            pass


KSPACE_DTYPES = [np.complex64, np.complex128, np.float32, np.int16, np.uint8, np.bool_]


@given(dtype=st.sampled_from(KSPACE_DTYPES),
       shape=st.lists(st.integers(0, 70), min_size=1, max_size=5).map(tuple))
@FAST
def test_kspace_of_any_dtype_and_shape_is_measured_or_refused_with_a_project_error(
    dtype, shape, mri_weights_64, tmp_path_factory
):
    if np.prod(shape, dtype=np.int64) > 2_000_000:
        shape = shape[:1] + tuple(min(side, 8) for side in shape[1:])
    rng = np.random.default_rng(0)
    complex_dtype = dtype in KSPACE_DTYPES[:2]
    values = rng.standard_normal(shape) + (1j * rng.standard_normal(shape) if complex_dtype else 0)
    path = write_kspace(tmp_path_factory.mktemp("k") / "k.h5", values.astype(dtype))
    sampler = PosteriorSampler(mri_weights_64, device="cpu")
    try:
        measurement = sampler.measure_mri(FastMRIFile.open(path).read_kspace(0), R=4, source=str(path))
    except RcganError as error:
        assert str(path) in str(error)
    else:
        assert complex_dtype and len(shape) == 4 and min(shape[1:]) > 0
        assert np.isfinite(measurement.zero_filled_display).all()


@given(dtype=st.sampled_from([np.uint8, np.uint16, np.int32, np.float32]),
       channels=st.sampled_from([None, 3, 4]), scale=st.sampled_from([1.0, 255.0, 1e6]))
@FAST
def test_images_of_any_dtype_read_into_the_unit_range(dtype, channels, scale, tmp_path_factory):
    rng = np.random.default_rng(1)
    shape = (24, 20) if channels is None else (24, 20, channels)
    values = (rng.random(shape) * scale).astype(dtype)
    path = tmp_path_factory.mktemp("i") / "image.tif"
    try:
        Image.fromarray(values).save(path)
    except (TypeError, ValueError, OSError, KeyError):
        return  # a combination Pillow cannot write is not an input anyone can have
    try:
        image = read_image(path)
    except InputFileError as error:
        assert str(path) in str(error)
        return
    assert image.dtype == np.float32 and image.shape[:2] == (24, 20)
    assert 0 <= image.min() and image.max() <= 1


# ------------------------------------------------------------------------------------------------
# images: high bit depth, decompression bombs, damaged files


def test_16_bit_grey_png_is_scaled_by_its_real_range(tmp_path):
    values = np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)
    Image.fromarray(values).save(tmp_path / "grey16.png")
    image = read_image(tmp_path / "grey16.png")
    np.testing.assert_allclose(image, values / 65535, atol=1e-6)
    assert (image >= 1.0).mean() < 0.001, "no saturation"


def test_float_and_32_bit_images_are_scaled_into_the_unit_range(tmp_path):
    ramp = np.linspace(-1000, 3000, 32 * 32).reshape(32, 32)
    stored = {"float.tif": ramp.astype(np.float32), "int32.tif": ramp.astype(np.int32) * 1000}
    for name, values in stored.items():
        Image.fromarray(values).save(tmp_path / name)
        image = read_image(tmp_path / name)
        assert image.min() == 0 and image.max() == 1
        np.testing.assert_allclose(image, (values - values.min()) / np.ptp(values), atol=1e-6)


@pytest.mark.parametrize("side", [30000, 10000])
def test_decompression_bomb_is_an_input_error(side, face_weights_64, out, capsys):
    path = png_header(out.parent / "bomb.png", side, side)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(InputFileError, match="decompression bomb"):
            read_image(path)
    assert get_reader(str(path)) is read_face_image, "an image too large is still an image"
    with pytest.raises(InputFileError, match="decompression bomb"):
        read_face_image(str(path))
    fails_cleanly(sample_argv(path, face_weights_64, out), capsys, out.parent, path)


@given(cut=st.floats(0.05, 1.0), flips=st.lists(st.integers(0, 2**31), max_size=3))
@FAST
def test_truncated_or_damaged_images_raise_only_input_errors(cut, flips, tmp_path_factory):
    folder = tmp_path_factory.mktemp("img")
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((40, 40, 3)) * 255).astype(np.uint8)).save(folder / "whole.png")
    whole = (folder / "whole.png").read_bytes()
    data = bytearray(whole[: int(cut * len(whole))])
    for position in flips:
        data[position % len(data)] ^= 0xFF
    path = folder / "damaged.png"
    path.write_bytes(bytes(data))
    try:
        image = read_image(path)
    except InputFileError:
        return
    assert image.dtype == np.float32 and 0 <= image.min() and image.max() <= 1


# ------------------------------------------------------------------------------------------------
# the napari reader


def test_reader_returns_none_for_what_it_cannot_read(tmp_path):
    (tmp_path / "folder.h5").mkdir()
    (tmp_path / "folder.png").mkdir()
    (tmp_path / "text.png").write_text("not an image")
    (tmp_path / "empty.h5").write_bytes(b"")
    with h5py.File(tmp_path / "other.h5", "w") as handle:
        handle.create_dataset("image", data=np.zeros((2, 4, 4)))
    for name in ("missing.h5", "missing.png", "folder.h5", "folder.png", "text.png", "empty.h5",
                 "other.h5"):
        assert get_reader(str(tmp_path / name)) is None, name


def test_reader_raises_only_project_errors_for_claimed_broken_files(kspace, tmp_path):
    zero_slices = write_kspace(tmp_path / "zero.h5", np.zeros((0, 8, 64, 64), np.complex64))
    cases = [zero_slices, huge_file(tmp_path / "huge.h5"), corrupt_chunk_file(tmp_path / "c.h5", kspace),
             png_header(tmp_path / "bomb.png", 30000, 30000)]
    for path in cases:
        reader = get_reader(str(path))
        assert reader is not None, path
        with pytest.raises(InputFileError, match=str(path)):
            reader(str(path))


# ------------------------------------------------------------------------------------------------
# outputs that cannot be written


def _unwritable_outputs(tmp_path: Path) -> dict[str, Path]:
    (tmp_path / "a_folder.h5").mkdir()
    (tmp_path / "a_file").write_bytes(b"x")
    return {
        "folder": tmp_path / "a_folder.h5",
        "below a file": tmp_path / "a_file" / "out.h5",
        "/proc": Path("/proc/rcgan-out.h5"),
    }


@pytest.mark.parametrize("case", ["folder", "below a file", "/proc"])
def test_sample_output_that_cannot_be_written(case, small_fastmri_file, mri_weights_64, tmp_path, capsys):
    target = _unwritable_outputs(tmp_path)[case]
    fails_cleanly(sample_argv(small_fastmri_file, mri_weights_64, target), capsys, tmp_path, target)


@pytest.mark.parametrize("case", ["folder", "below a file"])
def test_convert_output_that_cannot_be_written(case, tmp_path, capsys):
    checkpoint = reference_checkpoint(tmp_path / "reference.ckpt")
    target = _unwritable_outputs(tmp_path)[case].with_suffix(".safetensors")
    if case == "folder":
        target.mkdir()
    fails_cleanly(["convert", checkpoint, target], capsys, tmp_path, target)


@pytest.mark.parametrize("case", ["folder", "below a file"])
def test_evaluate_output_that_cannot_be_written(case, small_fastmri_file, mri_weights_64, tmp_path,
                                                capsys):
    target = _unwritable_outputs(tmp_path)[case]
    fails_cleanly(["evaluate", "--weights", mri_weights_64, "--data", small_fastmri_file.parent,
                   "--device", "cpu", "--R", "4", "--P", "1", "--max-slices", "1", "--out", target],
                  capsys, tmp_path, target)


def test_read_only_file_system_is_an_output_error(monkeypatch, tmp_path):
    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    expected = f"{tmp_path / 'x.h5'}: cannot be written \\(Read-only file system\\)"
    with pytest.raises(OutputFileError, match=expected):
        with atomic_output(tmp_path / "x.h5"):
            pass


def test_disk_full_while_writing_leaves_nothing_and_keeps_the_old_file(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(SENTINEL)
    with pytest.raises(OutputFileError, match=f"{target}: cannot be written \\(No space left on device\\)"):
        with atomic_output(target) as temporary:
            with open("/dev/full", "wb") as full, open(temporary, "wb") as partial:
                partial.write(b"half")
                full.write(b"x" * 65536)
                full.flush()
    assert target.read_bytes() == SENTINEL
    assert [path.name for path in tmp_path.iterdir()] == ["out.bin"]


def test_outputs_are_committed_together_or_not_at_all(tmp_path):
    first, second = tmp_path / "a.h5", tmp_path / "b.png"
    first.write_bytes(SENTINEL)
    (tmp_path / "b.png").mkdir()
    with pytest.raises(OutputFileError, match=f"{second}: is a folder"):
        with atomic_outputs([first, second]) as temporaries:
            for temporary in temporaries:
                temporary.write_bytes(b"new")
    assert first.read_bytes() == SENTINEL
    second.rmdir()
    with atomic_outputs([first, second]) as temporaries:
        for temporary in temporaries:
            temporary.write_bytes(b"new")
    assert first.read_bytes() == second.read_bytes() == b"new"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["a.h5", "b.png"]


def test_a_failed_rename_restores_the_files_already_replaced(tmp_path, monkeypatch):
    first, second = tmp_path / "a.h5", tmp_path / "b.png"
    first.write_bytes(SENTINEL)
    replace = os.replace

    def fail_on_second(source, target):
        if Path(target) == second:
            raise OSError(errno.ENOSPC, "No space left on device", str(source), None, str(target))
        return replace(source, target)

    monkeypatch.setattr(os, "replace", fail_on_second)
    with pytest.raises(OutputFileError, match=f"{second}: cannot be written \\(No space left"):
        with atomic_outputs([first, second]) as temporaries:
            for temporary in temporaries:
                temporary.write_bytes(b"new")
    assert first.read_bytes() == SENTINEL
    assert [path.name for path in tmp_path.iterdir()] == ["a.h5"]


# ------------------------------------------------------------------------------------------------
# training


def test_resume_removes_stale_temporary_checkpoints(tmp_path):
    from training.config import load_config
    from training.train import build_parser, prepare

    config_path = Path(__file__).resolve().parents[1] / "training" / "configs" / "smoke-faces.yaml"
    root = tmp_path / "faces"
    for split in ("train", "val"):
        (root / split).mkdir(parents=True)
    run = tmp_path / "run"
    run.mkdir()
    config = load_config(config_path)
    torch.save({"hyper_parameters": {"config": config.to_dict()}}, run / "last.ckpt")
    stale = run / ".last.ckpt.k3j4_x.tmp"
    stale.write_bytes(b"half a checkpoint")
    prepare(build_parser().parse_args(["--config", str(config_path), "--out", str(run),
                                       "--data-root", str(root), "--resume"]))
    assert not stale.exists()
    assert (run / "last.ckpt").is_file()


# ------------------------------------------------------------------------------------------------
# all outputs of one run, or none


@pytest.mark.parametrize("case", ["png is a file", "png folder not writable"])
def test_failing_png_leaves_no_h5_and_keeps_the_old_one(case, small_fastmri_file, mri_weights_64, out,
                                                        monkeypatch, capsys):
    png = out.parent / "figures"
    if case == "png is a file":
        png.write_bytes(b"a file where the figure folder should be")
    else:
        png.mkdir()
        make_temporary = tempfile.mkstemp

        def refuse_in_png(*args, **kwargs):
            if Path(kwargs.get("dir", "")) == png:
                raise PermissionError(errno.EACCES, "Permission denied", str(png))
            return make_temporary(*args, **kwargs)

        monkeypatch.setattr(tempfile, "mkstemp", refuse_in_png)
    figure = png / "file_brain_AXT2_sim_small_slice0_R8_P2.png"
    for target in (out, out.parent / "fresh.h5"):
        argv = sample_argv(small_fastmri_file, mri_weights_64, target, "--png", png)
        fails_cleanly(argv, capsys, out.parent, figure)
    assert not (out.parent / "fresh.h5").exists()


def test_headless_demo_into_a_file_fails_before_sampling(tmp_path, capsys):
    target = tmp_path / "a_file"
    target.write_bytes(SENTINEL)
    problem = fails_cleanly(["demo", "--headless", "--out", target, "--P", "1", "--device", "cpu"],
                            capsys, tmp_path, target)
    assert "is a file, not a folder" in problem


def test_disk_full_during_sample_is_one_error_line_and_leaves_nothing(small_fastmri_file,
                                                                      mri_weights_64, out):
    """A real write failure: the process may write at most 64 KiB per file (RLIMIT_FSIZE)."""
    import resource
    import signal
    import subprocess
    import sys

    def limit_file_size():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (65536, 65536))

    before = _listing(out.parent)
    argv = [str(item) for item in sample_argv(small_fastmri_file, mri_weights_64, out, "--P", "8")]
    completed = subprocess.run([sys.executable, "-m", "napari_rcgan.cli", *argv], capture_output=True,
                               text=True, timeout=300, preexec_fn=limit_file_size)
    assert completed.returncode == 2, completed.stderr
    assert "Traceback" not in completed.stderr
    assert completed.stderr.splitlines()[-1] == f"{PREFIX}{out}: cannot be written (File too large)"
    assert _listing(out.parent) == before


def test_warnings_are_one_line_each_and_the_error_line_is_last(small_fastmri_file, mri_weights_64,
                                                               tmp_path):
    """evaluate with P=1 warns (constant SD: Spearman undefined) for R=4, then fails on R=1000."""
    import subprocess
    import sys

    argv = ["evaluate", "--weights", mri_weights_64, "--data", small_fastmri_file.parent, "--device",
            "cpu", "--R", "4", "1000", "--P", "1", "--max-slices", "1", "--out", tmp_path / "m.json"]
    completed = subprocess.run([sys.executable, "-W", "default", "-m", "napari_rcgan.cli",
                                *map(str, argv)], capture_output=True, text=True, timeout=300)
    lines = completed.stderr.splitlines()
    assert completed.returncode == 2
    assert any(line.startswith("napari-rcgan: warning: ") for line in lines), completed.stderr
    assert all(line.startswith(("napari-rcgan: warning: ", PREFIX)) for line in lines), completed.stderr
    assert lines[-1].startswith(PREFIX) and "R=1000" in lines[-1]
    assert not list(tmp_path.iterdir())


# ------------------------------------------------------------------------------------------------
# the napari writers


def _samples_layer(samples, **attributes):
    info = {"kind": "samples", "run": 1, "task": "mri", "seed": 0}
    arrays = {"zero_filled": np.ones((8, 8), np.float32), "mask": np.ones((8, 8), np.float32)}
    metadata = {"rcgan": info | attributes.pop("info", {}), "rcgan_arrays": arrays}
    return [(samples, {"name": "rcgan samples", "metadata": metadata, **attributes}, "image")]


def test_writers_raise_only_project_errors(tmp_path):
    from napari_rcgan._writer import write_h5, write_nifti

    good = np.random.default_rng(0).random((2, 8, 8)).astype(np.float32)
    (tmp_path / "folder.h5").mkdir()
    (tmp_path / "folder.nii.gz").mkdir()
    with pytest.raises(OutputFileError, match="is a folder"):
        write_h5(str(tmp_path / "folder.h5"), _samples_layer(good))
    with pytest.raises(OutputFileError, match="is a folder"):
        write_nifti(str(tmp_path / "folder.nii.gz"), _samples_layer(good))
    malformed = [
        _samples_layer(np.zeros((8, 8), np.float32)),
        _samples_layer(np.array(["a", "b"])),
        _samples_layer(good, info={"seed": "not a number"}),
        _samples_layer(good, info={"R": [1, 2]}),
        _samples_layer(good, scale=(1.0,)),
    ]
    for layers in malformed:
        for writer, name in ((write_h5, "x.h5"), (write_nifti, "x.nii.gz")):
            with pytest.raises(ParameterError):
                writer(str(tmp_path / name), layers)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["folder.h5", "folder.nii.gz"]
