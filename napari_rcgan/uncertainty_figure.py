"""The ``sample --png`` uncertainty figure: intervals, principal components, ROI posterior."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from napari_rcgan.schema import ResultRecord

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def render_uncertainty_figure(result: ResultRecord) -> Figure:
    """A figure with a panel per product present (``sample --png``'s ``*_uncertainty.png``).

    Panels: the P-average (with the ROI rectangle), the 90 % interval half-width and the pixels
    where the reference lies outside the interval, the first principal components (signed, with
    their share of the variance), the ROI posterior histogram with its credible interval and
    the reference value; the self-check sentence is the title.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    mean = result.stack.mean()
    datasets, attrs = result.datasets(), result.extra_attrs
    panels: list[tuple[str, str, object]] = [(f"mean (P={result.drawn})", "mean", mean)]
    if "interval_halfwidth" in datasets:
        level = 100 * (1 - attrs["interval_alpha"])
        panels.append((f"{level:g}% interval half-width", "halfwidth",
                       datasets["interval_halfwidth"]))
        if "outside_interval" in datasets:
            panels.append((f"outside interval (coverage {100 * attrs['coverage']:.1f}%)",
                           "outside", datasets["outside_interval"]))
    for index in range(min(2, len(datasets.get("pcs", [])))):
        panels.append((f"PC {index + 1} ({100 * datasets['pc_explained'][index]:.0f}% of var.)",
                       "pc", datasets["pcs"][index]))
    if "roi_values" in datasets:
        panels.append(("ROI posterior (mean intensity)", "roi", datasets["roi_values"]))
    scale = float(np.percentile(mean, 99.5)) or 1.0
    figure, axes = plt.subplots(1, len(panels), figsize=(2.9 * len(panels), 3.3), squeeze=False)
    for axis, (title, kind, data) in zip(axes[0], panels):
        if kind == "roi":
            _roi_histogram(axis, data, attrs)
        elif kind == "pc":
            limit = float(np.abs(data).max()) or 1.0
            axis.imshow(data, cmap="RdBu_r", vmin=-limit, vmax=limit)
        elif kind == "outside":
            axis.imshow(mean, cmap="gray", vmin=0, vmax=scale)
            axis.imshow(np.ma.masked_equal(data, 0), cmap="autumn", vmin=0, vmax=1, alpha=0.9)
        else:
            shown = axis.imshow(data, cmap="gray" if kind == "mean" else "viridis", vmin=0,
                                vmax=scale if kind == "mean" else None)
            if kind == "halfwidth":
                figure.colorbar(shown, ax=axis, fraction=0.046, pad=0.02)
        if kind == "mean" and "roi" in attrs:
            y0, x0, y1, x1 = (int(v) for v in attrs["roi"])
            axis.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False,
                                     edgecolor="yellow", linewidth=1.2))
        axis.set_title(title, fontsize=8)
        if kind != "roi":
            axis.axis("off")
    if "selfcheck_message" in attrs:
        figure.suptitle(_wrap(attrs["selfcheck_message"], 140), fontsize=8)
    figure.tight_layout()
    return figure


def _roi_histogram(axis, values: np.ndarray, attrs: dict) -> None:
    axis.hist(values, bins=max(5, len(values) // 3), color="tab:blue", alpha=0.8)
    low, high = attrs["roi_credible_interval"]
    axis.axvspan(low, high, color="tab:blue", alpha=0.15, label="90% credible interval")
    if "roi_reference" in attrs:
        axis.axvline(attrs["roi_reference"], color="tab:red", label="reference")
    axis.legend(fontsize=6)
    axis.tick_params(labelsize=6)


def _wrap(text: str, width: int) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width))
