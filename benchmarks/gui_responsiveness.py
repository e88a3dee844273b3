"""GUI responsiveness while the Posterior sampler widget samples: tick ratio and longest stall.

Usage (a display is needed; on a headless machine use ``xvfb-run``)::

    xvfb-run -a python benchmarks/gui_responsiveness.py [--P 32] [--weights mri] [--load N]
        [--trace]

Opens napari with the bundled brain sample and the widget, warms the sampler up, then runs a
20 ms ``QTimer`` while the widget draws P samples. Prints the tick ratio (ticks fired / ticks
expected; the budget is ≥ 0.8, i.e. no GUI event much over 20–50 ms) and the longest gap between
ticks. ``--load N`` runs N busy processes alongside (as ``demo_latency.py --load``).
``--trace`` prints where the GUI thread was during every gap over 100 ms.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
import traceback

import numpy as np


def settle(widget, seconds: float = 1.0) -> None:
    """Let the warm-up run finish its after-work (curves, pending redraws) before measuring."""
    from qtpy.QtWidgets import QApplication

    widget.pd_explorer.wait()
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        QApplication.processEvents()
        time.sleep(0.01)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--P", type=int, default=32)
    parser.add_argument("--R", type=float, default=4.0)
    parser.add_argument("--weights", default="mri")
    parser.add_argument("--interval-ms", type=int, default=20)
    parser.add_argument("--load", type=int, default=0, help="busy processes running alongside")
    parser.add_argument("--trace", action="store_true", help="print the GUI thread's stack "
                        "during stalls over 100 ms")
    args = parser.parse_args()

    import napari
    from demo_latency import start_load
    from napari.layers import Layer
    from qtpy.QtCore import QTimer

    from napari_rcgan._reader import read_fastmri
    from napari_rcgan._widget import PosteriorSamplerWidget
    from napari_rcgan.bundled import brain_sample_path

    viewer = napari.Viewer(show=True)
    widget = PosteriorSamplerWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Posterior sampler", area="right")
    for item in read_fastmri(brain_sample_path()):
        viewer.add_layer(Layer.create(*item))
    widget.run_sampling(P=2, R=args.R, weights=args.weights, device="cpu")  # load, warm up
    settle(widget)

    stop_load, load = start_load(args.load)
    ticks: list[float] = []
    main_thread = threading.main_thread().ident
    stop = threading.Event()
    stalls: list[str] = []

    def watchdog() -> None:
        reported = 0.0
        while not stop.wait(0.05):
            last = ticks[-1] if ticks else started
            if time.perf_counter() - last > 0.1 and last != reported:
                frame = sys._current_frames().get(main_thread)
                stalls.append("".join(traceback.format_stack(frame, limit=12)))
                reported = last

    timer = QTimer()
    timer.setInterval(args.interval_ms)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    timer.start()
    started = time.perf_counter()
    if args.trace:
        threading.Thread(target=watchdog, daemon=True).start()
    result = widget.run_sampling(P=args.P, seed=1)
    elapsed = time.perf_counter() - started
    stop.set()
    stop_load.set()
    timer.stop()
    gaps = np.diff([started, *ticks])
    expected = elapsed / (args.interval_ms / 1000)
    print(f"load {args.load}: P={args.P} {args.weights} in {elapsed:.2f} s ({result.drawn} "
          f"samples): tick ratio "
          f"{len(ticks) / expected:.2f}, longest stall {gaps.max() * 1e3:.0f} ms, "
          f"95th percentile gap {np.percentile(gaps, 95) * 1e3:.0f} ms")
    for stack in stalls:
        print("--- GUI thread during a stall:\n" + stack)
    viewer.close()


if __name__ == "__main__":
    main()
