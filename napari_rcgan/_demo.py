"""``napari-rcgan demo`` with a display: napari with the brain sample and the widget docked.

The CLI (engine side, no napari import) starts it as ``python -m napari_rcgan._demo``; the exit
status :data:`napari_rcgan.cli.DEMO_NO_GUI` tells it that napari cannot start here.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any


def launch_demo(
    weights: str | None = None,
    *,
    P: int | None = None,
    R: float | None = None,
    device: str | None = None,
    viewer: Any = None,
    run: bool = True,
    sample: bool = True,
) -> tuple[Any, Any]:
    """Open napari with the brain sample slices loaded and the Posterior sampler docked.

    Args:
        weights: weights for the widget (default: the widget's choice, bundled ``mri``).
        P, R, device: initial widget fields.
        viewer: an existing viewer to use (tests); default a new one.
        run: start the Qt event loop (``napari.run()``); False returns at once.
        sample: start a sampling run at once (in the background), so samples appear on screen.

    Returns:
        ``(viewer, widget)``.

    Raises:
        InputFileError: the sample data is not installed.
    """
    import napari

    from napari_rcgan._sample_data import brain_sample

    layers = brain_sample()  # fail early, with a clear message, if the sample is missing
    if viewer is None:
        viewer = napari.Viewer(title="napari-rcgan demo: rcGAN posterior sampling")
    try:
        viewer.open_sample("napari-rcgan", "brain")
    except (KeyError, ValueError, LookupError):  # plugin not registered (running from source)
        from napari.layers import Layer

        for item in layers:
            viewer.add_layer(Layer.create(*item))
    try:
        _, widget = viewer.window.add_plugin_dock_widget("napari-rcgan", "Posterior sampler")
    except (KeyError, ValueError, LookupError):
        from napari_rcgan._widget import PosteriorSamplerWidget

        widget = PosteriorSamplerWidget(viewer)
        viewer.window.add_dock_widget(widget, name="Posterior sampler", area="right")
    if weights:
        widget.select_weights(weights)
    if P is not None:
        widget.P_spin.setValue(int(P))
    if R is not None:
        widget.R_spin.setValue(float(R))
    if device is not None and widget.device_combo.findText(device) >= 0:
        widget.device_combo.setCurrentText(device)
    if sample:
        widget.run_sampling(wait=False)
    if run:
        napari.run()
    return viewer, widget


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m napari_rcgan._demo [--weights W] [--P P] [--R R] [--device D]``."""
    from napari_rcgan.cli import DEMO_NO_GUI

    parser = argparse.ArgumentParser(prog="napari-rcgan demo")
    parser.add_argument("--weights", default=None)
    parser.add_argument("--P", type=int, default=None)
    parser.add_argument("--R", type=float, default=None)
    parser.add_argument("--device", default=None)
    args = parser.parse_args(argv)
    try:
        import napari  # noqa: F401
    except ImportError as error:
        print(f"napari cannot start here ({error})", file=sys.stderr)
        return DEMO_NO_GUI
    launch_demo(weights=args.weights, P=args.P, R=args.R, device=args.device)
    return 0


if __name__ == "__main__":
    sys.exit(main())
