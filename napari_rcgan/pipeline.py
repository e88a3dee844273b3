"""Headless outputs of a run: the ``.h5`` result file and the summary figure.

No napari, no Qt, no command-line parsing: the CLI (:mod:`napari_rcgan.cli`) calls these after
:class:`~napari_rcgan.session.Session` has sampled; the schema is
:class:`~napari_rcgan.schema.ResultRecord`'s.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from napari_rcgan import stats
from napari_rcgan.io import atomic_outputs, fill_result_h5
from napari_rcgan.schema import LAYER_NAMES, ResultRecord

if TYPE_CHECKING:
    from matplotlib.figure import Figure

FIGURE_DPI = 110


def write_result(result: ResultRecord, path: str | os.PathLike, P: int | None = None) -> Path:
    """Write the datasets and attributes of the first ``P`` samples to ``path`` atomically."""
    return write_outputs(result, path, P=P)[0]


def write_outputs(
    result: ResultRecord,
    path: str | os.PathLike,
    figures: Mapping[Path, Figure] | None = None,
    P: int | None = None,
) -> list[Path]:
    """The ``.h5`` result (first ``P`` samples) and its drawn ``figures``, committed together.

    All files are written to temporaries and renamed into place together, so a failure (a folder
    in the way, a full or read-only disk) leaves none of them, and existing files untouched. The
    figures are closed in any case.

    Raises:
        OutputFileError: naming the output that cannot be written.
    """
    figures = dict(figures or {})
    paths = [Path(path), *map(Path, figures)]
    try:
        with atomic_outputs(paths) as temporaries:
            fill_result_h5(temporaries[0], result.datasets(P), result.attrs(P))
            for figure, temporary in zip(figures.values(), temporaries[1:]):
                figure.savefig(temporary, dpi=FIGURE_DPI, format="png")
    finally:
        for figure in figures.values():
            _close(figure)
    return paths


def figure_title(result: ResultRecord) -> str:
    """Weights, P, seed, mask and (with a reference) PSNR/SSIM of the P-average."""
    text = f"weights {Path(result.weights).name}, P={result.drawn}, seed {result.seed}"
    if result.R is not None:
        text += f", {result.mask_kind} mask R={result.R:.2f}"
    if result.reference is not None:
        mean = result.stack.mean()
        text += (
            f" — PSNR {stats.psnr(mean, result.reference):.2f} dB, "
            f"SSIM {stats.ssim(mean, result.reference):.3f}"
        )
    return text


def _close(figure: Figure) -> None:
    import matplotlib.pyplot as plt

    plt.close(figure)


def render_figure(result: ResultRecord, title: str = "") -> Figure:
    """One figure: reference, zero-filled, two samples, mean, error, SD (saved by
    :func:`write_outputs`)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    datasets = result.datasets()
    samples = datasets["samples"]
    panels = [("reference", datasets.get("target"), "gray"),
              ("zero-filled", datasets["zero_filled"], "gray")]
    panels += [(f"sample {i + 1}", samples[i], "gray") for i in range(min(2, len(samples)))]
    panels += [
        (f"mean (P={result.drawn})", datasets["mean"], "gray"),
        (LAYER_NAMES["error"], datasets.get("error"), "magma"),
        (LAYER_NAMES["std"], datasets["std"], "viridis"),
    ]
    panels = [panel for panel in panels if panel[1] is not None]
    scale = float(np.percentile(datasets["mean"], 99.5)) or 1.0
    figure, axes = plt.subplots(1, len(panels), figsize=(2.6 * len(panels), 3.0))
    for axis, (name, image, colormap) in zip(axes, panels):
        colour = image.ndim == 3
        if colormap != "gray":
            shown = axis.imshow(image.mean(-1) if colour else image, cmap=colormap)
            figure.colorbar(shown, ax=axis, fraction=0.046, pad=0.02)
        else:
            axis.imshow(np.clip(image, 0, 1) if colour else image, cmap="gray", vmin=0,
                        vmax=None if colour else scale)
        axis.set_title(name, fontsize=9)
        axis.axis("off")
    if title:
        figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    return figure
