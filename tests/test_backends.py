"""Inference backends: agreement with eager fp32, precision rules, the OpenVINO cache, bad input."""

import sys
import warnings

import numpy as np
import pytest
import torch

from napari_rcgan import backends
from napari_rcgan.backends import (
    DEFAULT_ENV,
    OpenVINOBackend,
    cpu_flags,
    cpu_has_bf16,
    make_backend,
    openvino_available,
    resolve_backend,
    resolve_precision,
)
from napari_rcgan.errors import BackendWarning, ParameterError
from napari_rcgan.io import FastMRIFile
from napari_rcgan.sampler import PosteriorSampler
from napari_rcgan.weights import Weights, WeightsMetadata, build_generator, load_weights
from tests.reference_rcgan import randomize_batchnorm

CPU = torch.device("cpu")
needs_openvino = pytest.mark.skipif(
    not openvino_available(), reason="needs the extra: pip install 'napari-rcgan[openvino]'"
)
needs_bf16 = pytest.mark.skipif(not cpu_has_bf16(), reason="this CPU has no native bf16")
BACKENDS = ["torch", pytest.param("openvino", marks=needs_openvino)]


@pytest.fixture(autouse=True)
def product_defaults(monkeypatch):
    """``auto`` as a user gets it (the suite's conftest pins it to torch fp32)."""
    for variable in DEFAULT_ENV.values():
        monkeypatch.delenv(variable, raising=False)


def relative_error(output: torch.Tensor, reference: torch.Tensor) -> float:
    """max |y − y_eager| / max |y_eager|."""
    return float((output - reference).abs().max() / reference.abs().max())


def random_weights(width: int, size: int, seed: int) -> Weights:
    """A random MRI generator (8 coils) with non-trivial BatchNorm statistics."""
    metadata = WeightsMetadata(task="mri", image_size=[size, size], channels=8, base_width=width)
    torch.manual_seed(seed)
    generator = build_generator(metadata)
    randomize_batchnorm(generator, seed)
    return Weights(metadata, generator.state_dict(), f"random width {width}")


def network_inputs(weights: Weights, count: int = 1, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """A random condition ``(count, C, H, W)`` and code ``(count, *code_shape)``."""
    generator = weights.build_generator()
    height, width = weights.metadata.image_size
    code_shape = generator.code_shape(height, width)
    condition_channels = generator.in_channels - code_shape[0]
    random = torch.Generator().manual_seed(seed)
    condition = torch.randn((count, condition_channels, height, width), generator=random)
    return condition, torch.randn((count, *code_shape), generator=random)


def shapes_of(inputs: tuple[torch.Tensor, ...]) -> tuple[tuple[int, ...], ...]:
    return tuple(tuple(tensor.shape) for tensor in inputs)


def eager(weights: Weights, inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """The reference: a plain fp32 module in contiguous memory format."""
    with torch.inference_mode():
        return weights.build_generator().sample(*inputs)


@pytest.fixture(scope="module")
def demo() -> Weights:
    return load_weights("mri")


@pytest.fixture(scope="module")
def width32() -> Weights:
    return random_weights(32, 64, seed=3)


class Unconvertible(torch.nn.Module):
    """The generator plus an exactly-zero SVD term: OpenVINO has no rule for aten::linalg_svd."""

    def __init__(self, generator: torch.nn.Module) -> None:
        super().__init__()
        self.generator = generator

    def code_shape(self, height: int, width: int) -> tuple[int, ...]:
        return self.generator.code_shape(height, width)

    def sample(self, condition: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        zero = 0 * torch.linalg.svd(condition[0, 0])[1].sum()
        return self.generator.sample(condition, code) + zero


@pytest.mark.parametrize("weights_name", ["demo", "width32"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_fp32_backends_agree_with_eager_to_1e5(request, weights_name, backend):
    weights = request.getfixturevalue(weights_name)
    inputs = network_inputs(weights)
    runner = make_backend(weights.build_generator(), CPU, backend, "fp32")
    assert (runner.name, runner.precision) == (backend, "fp32")
    output = runner(*inputs)
    reference = eager(weights, inputs)
    assert output.dtype == torch.float32 and output.shape == reference.shape
    assert relative_error(output, reference) <= 1e-5


@needs_bf16
@pytest.mark.parametrize("backend", BACKENDS)
def test_bf16_really_runs_in_bf16_and_stays_close(demo, backend):
    inputs = network_inputs(demo)
    runner = make_backend(demo.build_generator(), CPU, backend, "bf16")
    error = relative_error(runner(*inputs), eager(demo, inputs))
    assert 1e-4 < error < 3e-2, "bf16 rounding must show (not fp32), yet stay small"


@needs_openvino
def test_openvino_precision_hint_is_always_explicit(demo):
    import openvino

    shapes = shapes_of(network_inputs(demo))
    fp32 = OpenVINOBackend(demo.build_generator(), "fp32").compiled_model(shapes)
    assert fp32.get_property("INFERENCE_PRECISION_HINT") == openvino.Type.f32
    if cpu_has_bf16():
        bf16 = OpenVINOBackend(demo.build_generator(), "bf16").compiled_model(shapes)
        assert bf16.get_property("INFERENCE_PRECISION_HINT") == openvino.Type.bf16


@needs_openvino
def test_sampler_converts_once_per_weights_shape_and_precision(small_fastmri_file):
    weights = random_weights(8, 64, seed=11)  # weights no other test converts
    kspace = FastMRIFile.open(small_fastmri_file).read_kspace(0)
    first = PosteriorSampler(weights, device="cpu", backend="openvino", precision="fp32")
    measurement = first.measure_mri(kspace, R=4)
    result = first.sample(measurement, P=3, seed=2)
    assert (result.backend, result.precision) == ("openvino", "fp32")
    assert result.timings["conversion_s"] > 0
    assert "conversion_s" not in first.sample(measurement, P=2).timings, "reported once"
    second = PosteriorSampler(weights, device="cpu", backend="openvino", precision="fp32")
    again = second.sample(measurement, P=3, seed=2)
    assert "conversion_s" not in again.timings, "a new sampler of the same weights reuses it"
    shapes = shapes_of(network_inputs(weights))
    assert first.backend.compiled_model(shapes) is second.backend.compiled_model(shapes)
    chunked = first.sample(measurement, P=5, chunk_size=2, seed=2)  # batches of 2, 2 and 1
    assert "conversion_s" not in chunked.timings, "the batch axis is dynamic: one conversion"
    np.testing.assert_allclose(chunked.stack.samples[:3], result.stack.samples, rtol=0,
                               atol=1e-5 * result.stack.samples.max())
    eager_result = PosteriorSampler(weights, "cpu", "torch", "fp32").sample(measurement, 3, 2)
    np.testing.assert_allclose(
        result.stack.samples, eager_result.stack.samples, rtol=0, atol=1e-5 * result.stack.samples.max()
    )


@needs_openvino
def test_conversion_failure_falls_back_to_torch_with_a_one_line_warning(width32):
    runner = OpenVINOBackend(Unconvertible(width32.build_generator()), "fp32")
    inputs = network_inputs(width32)
    with pytest.warns(BackendWarning) as record:
        output = runner(*inputs)
    message = str(record[0].message)
    assert "\n" not in message
    assert message.startswith("OpenVINO conversion failed (") and "aten::linalg_svd" in message
    assert runner.name == "torch" and runner.failure
    assert relative_error(output, eager(width32, inputs)) <= 1e-5
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        runner(*inputs)  # warned once; no second conversion attempt


@needs_openvino
def test_a_run_whose_conversion_fails_is_labelled_torch(small_fastmri_file, mri_weights_64):
    sampler = PosteriorSampler(mri_weights_64, device="cpu", backend="torch", precision="fp32")
    measurement = sampler.measure_mri(FastMRIFile.open(small_fastmri_file).read_kspace(0), R=4)
    expected = sampler.sample(measurement, P=2, seed=4)
    sampler.backend = OpenVINOBackend(Unconvertible(sampler.generator), "fp32")
    with pytest.warns(BackendWarning, match="linalg_svd"):
        result = sampler.sample(measurement, P=2, seed=4)
    assert (result.backend, result.precision) == ("torch", "fp32")
    np.testing.assert_allclose(result.stack.samples, expected.stack.samples, rtol=1e-5, atol=1e-6)


def test_openvino_without_the_extra_says_how_to_install(monkeypatch, width32):
    monkeypatch.setitem(sys.modules, "openvino", None)  # `import openvino` now fails
    assert not openvino_available()
    with pytest.raises(ParameterError) as error:
        PosteriorSampler(width32, device="cpu", backend="openvino")
    assert "\n" not in str(error.value)
    assert "pip install 'napari-rcgan[openvino]'" in str(error.value)
    assert PosteriorSampler(width32, device="cpu", backend="auto").backend.name == "torch"


def test_bf16_on_a_cpu_without_it_is_a_one_line_error(monkeypatch):
    monkeypatch.setattr(backends, "cpu_has_bf16", lambda: False)
    assert resolve_precision("auto", CPU) == "fp32"
    assert resolve_precision("fp32", CPU) == "fp32"
    with pytest.raises(ParameterError, match="no native bf16") as error:
        resolve_precision("bf16", CPU)
    assert "\n" not in str(error.value)


def test_auto_precision_follows_the_cpu_flags():
    flags = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f amx_bf16 amx_tile\n\nprocessor\t: 1\n"
    assert {"amx_bf16", "avx2"} <= cpu_flags(flags)
    assert cpu_flags("processor\t: 0\nvendor_id\t: ARM\n") == set()
    probe = torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported()
    assert cpu_has_bf16() == probe, "/proc/cpuinfo and torch's probe agree on this machine"
    assert resolve_precision("auto", CPU) == ("bf16" if cpu_has_bf16() else "fp32")


def test_auto_backend_is_openvino_on_the_cpu_when_installed():
    assert resolve_backend("auto", CPU) == ("openvino" if openvino_available() else "torch")
    assert resolve_backend("torch", CPU) == "torch"


def test_environment_replaces_auto_but_not_an_explicit_choice(monkeypatch):
    monkeypatch.setenv("NAPARI_RCGAN_BACKEND", "torch")
    monkeypatch.setenv("NAPARI_RCGAN_PRECISION", "fp32")
    assert resolve_backend("auto", CPU) == "torch" and resolve_precision("auto", CPU) == "fp32"
    if cpu_has_bf16():
        assert resolve_precision("bf16", CPU) == "bf16"
    monkeypatch.setenv("NAPARI_RCGAN_BACKEND", "onnx")
    with pytest.raises(ParameterError, match=r"backend \(from NAPARI_RCGAN_BACKEND\) 'onnx'"):
        resolve_backend("auto", CPU)


def test_unknown_backend_or_precision_is_rejected(width32):
    with pytest.raises(ParameterError, match="backend 'tensorrt'"):
        PosteriorSampler(width32, device="cpu", backend="tensorrt")
    with pytest.raises(ParameterError, match="precision 'fp16'"):
        PosteriorSampler(width32, device="cpu", precision="fp16")
