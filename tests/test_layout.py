"""The engine stays headless: no engine module imports napari, Qt or an underscore plugin module.

The engine is every module of ``napari_rcgan`` whose dotted name has no component starting with
an underscore (the plugin modules ``_reader``, ``_writer``, ``_sample_data``, ``_demo`` and the
``_widget`` package are the front end). Lazy imports inside functions count too.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import napari_rcgan

PACKAGE = Path(napari_rcgan.__file__).resolve().parent
FORBIDDEN_ROOTS = ("napari", "qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "vispy", "magicgui")


def engine_modules() -> dict[str, Path]:
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if any(part.startswith("_") for part in parts[1:]):
            continue
        modules[".".join(parts)] = path
    return modules


def imported_names(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
            if node.module == "napari_rcgan":
                names += [f"napari_rcgan.{alias.name}" for alias in node.names]
    return names


def forbidden(name: str) -> bool:
    if name.split(".")[0] in FORBIDDEN_ROOTS:
        return True
    parts = name.split(".")
    return parts[0] == "napari_rcgan" and any(part.startswith("_") for part in parts[1:])


def test_the_engine_modules_are_found():
    modules = engine_modules()
    assert {"napari_rcgan.session", "napari_rcgan.schema", "napari_rcgan.pipeline",
            "napari_rcgan.cli", "napari_rcgan.sampler", "napari_rcgan.physics.masks"} <= set(modules)
    assert not any("_widget" in name or "_demo" in name for name in modules)


def test_no_engine_module_imports_napari_qt_or_a_plugin_module():
    offenders = {
        name: bad
        for name, path in engine_modules().items()
        if (bad := [item for item in imported_names(path) if forbidden(item)])
    }
    assert not offenders, f"engine modules importing GUI or plugin modules: {offenders}"


def test_the_rule_catches_what_it_should():
    assert forbidden("napari.layers") and forbidden("qtpy.QtCore") and forbidden("napari")
    assert forbidden("napari_rcgan._widget") and forbidden("napari_rcgan._widget.layers")
    assert not forbidden("napari_rcgan.session") and not forbidden("numpy")


def test_importing_the_engine_loads_no_gui_module():
    code = (
        "import importlib, sys\n"
        f"for name in {sorted(engine_modules())!r}:\n"
        "    importlib.import_module(name)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        f"{FORBIDDEN_ROOTS!r} or m.startswith('napari_rcgan._'))\n"
        "print(bad)\n"
        "sys.exit(1 if bad else 0)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
