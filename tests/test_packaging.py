"""The wheel: the plugin package with its weights and sample data, and no top-level ``training``."""

from __future__ import annotations

import zipfile
from pathlib import Path

from hatchling.builders.wheel import WheelBuilder

ROOT = Path(__file__).resolve().parent.parent


def test_wheel_ships_only_the_napari_rcgan_package(tmp_path):
    [wheel] = WheelBuilder(str(ROOT)).build(directory=str(tmp_path), versions=["standard"])
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/")[0] for name in names}
    assert top == {"napari_rcgan", "napari_rcgan-0.1.0.dist-info"}, top
    assert not any(name.startswith("training/") for name in names)
    for needed in ("napari_rcgan/napari.yaml", "napari_rcgan/weights/mri.safetensors",
                   "napari_rcgan/sample_data/brain_sim.h5", "napari_rcgan/session.py",
                   "napari_rcgan/_widget/widget.py"):
        assert needed in names, needed


def test_the_package_never_imports_training():
    offenders = [
        str(path.relative_to(ROOT))
        for path in (ROOT / "napari_rcgan").rglob("*.py")
        if any(line.lstrip().startswith(("import training", "from training"))
               for line in path.read_text().splitlines())
    ]
    assert not offenders, offenders
