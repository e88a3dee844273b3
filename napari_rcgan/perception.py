"""Perception–distortion curves of the P-sample average (paper, Tables 2–3 and Appendix K).

For a run's :class:`~napari_rcgan.stats.SampleStack` and its reference, :func:`pd_curves`
measures the P-average ``x̂_(P)`` for every P: distortion (PSNR, SSIM, MSE) and perception
(LPIPS with AlexNet, DISTS), the paper's way — magnitude images min–max scaled per image,
3 channels, LPIPS on [−1, 1], DISTS on [0, 1] (colour images are clamped to [0, 1] instead).
The reference's network features are computed once and the P-averages go through the
networks in batches, so all P = 1…32 of a 128×128 result cost 33 image passes per network.

Without a reference there is no trade-off to measure: the curves hold APSD and the sharpness
(mean gradient magnitude, :func:`sharpness`) against P. Without the feature networks
(``napari-rcgan features prepare``) PSNR/SSIM/MSE are still measured and :attr:`PDCurves.notes`
says how to get LPIPS/DISTS. Results are cached per run (per stack, its sample count and the
reference), so the widget, ``widget.explorer_metrics()`` and the CLI figure share one
computation.

Reading the plane: small P gives sharp, realistic P-averages (low LPIPS/DISTS) with more
distortion; large P approaches the MMSE estimate (best PSNR) and is smoother.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import math
import os
import textwrap
import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from napari_rcgan import stats
from napari_rcgan.errors import ParameterError, WeightsError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DISTORTIONS = ("psnr", "mse")
"""Distortion axes of the plane (PSNR: higher is better; MSE: lower is better)."""
PERCEPTIONS = ("dists", "lpips")
"""Perception axes of the plane (both: lower is better)."""
METRICS = ("psnr", "ssim", "lpips", "dists")
"""The four metric-vs-P curves (paper, Tables 2–3)."""
HIGHER_IS_BETTER = {"psnr": True, "ssim": True, "mse": False, "lpips": False, "dists": False}
LABELS = {"psnr": "PSNR (dB)", "ssim": "SSIM", "mse": "MSE", "lpips": "LPIPS (AlexNet)",
          "dists": "DISTS", "apsd": "APSD", "sharpness": "sharpness (mean |∇x|)"}
ZOOM_P = (1, 2, 4, 32)
"""P values of the zoom strip (paper, Appendices K.1–K.2)."""
ALL_P_PIXELS = 32 * 192 * 192
"""Up to this many P × pixels every P gets a point; above, powers of two and the total."""
BATCH = 16
PRECISIONS = ("auto", "fp32", "bf16")
FEATURES_NOTE = "LPIPS/DISTS need the feature networks: run `napari-rcgan features prepare`"
SINGLE_P_NOTE = "P = 1 only: the perception–distortion trade-off needs P ≥ 2 samples"
NO_REFERENCE_NOTE = ("no reference: the perception–distortion trade-off needs one; "
                     "APSD and sharpness (mean gradient magnitude) against P instead")


@dataclass(frozen=True)
class PDCurves:
    """Metrics of the P-average for each P in :attr:`P` (arrays aligned with it).

    ``psnr``/``ssim``/``mse`` are None without a reference; ``lpips``/``dists`` are None
    without a reference or without the feature networks. ``apsd[i]`` is the APSD of the first
    ``P[i]`` samples, ``sharpness[i]`` that of their average; ``reference_sharpness`` is the
    reference's (None without one). ``notes`` are one-line messages for the user.
    """

    P: tuple[int, ...]
    apsd: np.ndarray
    sharpness: np.ndarray
    psnr: np.ndarray | None = None
    ssim: np.ndarray | None = None
    mse: np.ndarray | None = None
    lpips: np.ndarray | None = None
    dists: np.ndarray | None = None
    reference_sharpness: float | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def has_reference(self) -> bool:
        return self.psnr is not None

    @property
    def has_perceptual(self) -> bool:
        return self.dists is not None

    def values(self, name: str) -> np.ndarray | None:
        """The curve of ``name`` (psnr, ssim, mse, lpips, dists, apsd, sharpness)."""
        if name not in LABELS:
            raise ParameterError(f"metric {name!r}: use one of {', '.join(LABELS)}")
        return getattr(self, name)

    def best(self, name: str) -> int | None:
        """The P with the best value of ``name`` (None when it was not measured)."""
        values = self.values(name)
        if values is None:
            return None
        index = int(np.argmax(values) if HIGHER_IS_BETTER[name] else np.argmin(values))
        return self.P[index]

    def at(self, P: int) -> dict[str, float | None]:
        """All metrics at ``P`` (which must be one of :attr:`P`)."""
        if P not in self.P:
            raise ParameterError(f"P = {P} has no point on the curves (P values: {list(self.P)})")
        index = self.P.index(P)
        row = {}
        for name in ("psnr", "ssim", "mse", "lpips", "dists", "apsd", "sharpness"):
            values = self.values(name)
            row[name] = None if values is None else float(values[index])
        return row

    def as_dict(self, names: Sequence[str] = METRICS) -> dict[int, dict[str, float | None]]:
        """``{P: {name: value}}`` for ``names`` (None where not measured)."""
        return {P: {name: self.at(P)[name] for name in names} for P in self.P}


def curve_P_values(count: int, image_shape: Sequence[int]) -> list[int]:
    """Every P from 1 to ``count`` when ``count × H × W ≤ ALL_P_PIXELS``, else the powers of
    two up to ``count`` and ``count`` itself."""
    if count < 1:
        raise ParameterError(f"a perception–distortion curve needs at least 1 sample, got {count}")
    if count * int(np.prod(image_shape[:2])) <= ALL_P_PIXELS:
        return list(range(1, count + 1))
    return sorted({2**k for k in range(int(math.log2(count)) + 1)} | {count})


def sharpness(image: np.ndarray, scale: float) -> float:
    """Mean gradient magnitude ``mean(√(∂x² + ∂y²))`` (central differences) of an image
    ``(H, W)`` (colour ``(H, W, 3)``: of its channel mean), in units of ``scale`` per pixel."""
    grey = np.asarray(image, np.float64)
    grey = grey.mean(axis=-1) if grey.ndim == 3 else grey
    rows, cols = np.gradient(grey)
    return float(np.mean(np.hypot(rows, cols)) / (scale if scale > 0 else 1.0))


def perceptual_images(images: np.ndarray):
    """``(N, H, W)`` magnitudes → ``(N, 3, H, W)`` float32 tensor in [0, 1], each image min–max
    scaled (the paper's evaluation); colour ``(N, H, W, 3)`` → clamped to [0, 1]."""
    import torch

    from napari_rcgan.metrics import as_image_batch, min_max

    images = torch.from_numpy(np.asarray(images, np.float32))
    if images.ndim == 4:
        return as_image_batch(images.permute(0, 3, 1, 2)).clamp(0, 1)
    return min_max(as_image_batch(images[:, None]))  # (N, 1, H, W): never read as one RGB image


def resolve_precision(precision: str, device: str = "cpu") -> str:
    """``fp32`` or ``bf16`` for the feature networks: ``auto`` is bf16 on a CPU that computes
    bf16 natively (AMX / AVX512-BF16, about 3× faster for VGG-16), else fp32."""
    if precision not in PRECISIONS:
        raise ParameterError(f"precision {precision!r}: use one of {', '.join(PRECISIONS)}")
    if precision != "auto":
        return precision
    if str(device) != "cpu":
        return "fp32"
    from napari_rcgan.backends import cpu_has_bf16

    return "bf16" if cpu_has_bf16() else "fp32"


@functools.lru_cache(maxsize=4)
def _networks(folder: str, device: str, precision: str) -> tuple:
    """LPIPS (AlexNet) and DISTS; for bf16 copies whose trunks run in bf16, channels-last."""
    import torch

    from napari_rcgan.metrics.networks import load_network

    networks = (load_network("lpips-alex", folder, device), load_network("dists", folder, device))
    if precision == "fp32":
        return networks
    converted = tuple(copy.deepcopy(network) for network in networks)
    for network in converted:
        network.trunk.to(torch.bfloat16).to(memory_format=torch.channels_last)
    return converted


def _features(network, images, precision: str) -> list:
    """The network's feature list of ``images`` (float32 out, whatever the trunk's dtype)."""
    import torch

    if precision == "fp32":
        return network.features(images)
    with torch.autocast(images.device.type, dtype=torch.bfloat16):
        taps = network.features(images.contiguous(memory_format=torch.channels_last))
    return [tap.float() for tap in taps]


def perceptual_distances(estimates: np.ndarray, reference: np.ndarray,
                         folder: str | os.PathLike | None = None, device: str = "cpu",
                         precision: str = "fp32") -> dict[str, np.ndarray]:
    """LPIPS (AlexNet) and DISTS ``(N,)`` of each estimate ``(N, H, W[, 3])`` against one
    reference ``(H, W[, 3])``; the reference's features are computed once.

    ``precision``: fp32 (the metrics' own precision), bf16 (the conv trunks in bf16: LPIPS and
    DISTS within about 1e-3 of fp32) or auto (:func:`resolve_precision`).

    Raises:
        WeightsError: the feature networks are not prepared.
    """
    import torch

    precision = resolve_precision(precision, device)
    lpips_network, dists_network = _networks(_folder_key(folder), str(device), precision)
    target = perceptual_images(np.asarray(reference)[None]).to(device)
    inputs = perceptual_images(estimates)
    distances = {"lpips": [], "dists": []}
    with torch.inference_mode():
        target_lpips = _features(lpips_network, 2 * target - 1, precision)
        target_dists = _features(dists_network, target, precision)
        for start in range(0, len(inputs), BATCH):
            batch = inputs[start : start + BATCH].to(device)
            distances["lpips"].append(lpips_network.compare(
                _features(lpips_network, 2 * batch - 1, precision), target_lpips).cpu())
            distances["dists"].append(dists_network.compare(
                _features(dists_network, batch, precision), target_dists).cpu())
    return {name: torch.cat(values).double().numpy() for name, values in distances.items()}


def pd_curves(stack: stats.SampleStack, reference: np.ndarray | None = None,
              P_values: Sequence[int] | None = None, *, perceptual: bool = True,
              folder: str | os.PathLike | None = None, device: str = "cpu",
              precision: str = "fp32") -> PDCurves:
    """The perception–distortion curves of a run (cached per stack, count and reference; any
    thread, never the GUI thread: LPIPS/DISTS of 32 P-averages take seconds on a CPU).

    Args:
        stack: the run's samples ``(N, H, W[, 3])``.
        reference: the fully sampled image ``(H, W[, 3])``, or None.
        P_values: the P of each point (default :func:`curve_P_values`).
        perceptual: measure LPIPS/DISTS (when the feature networks are prepared).
        folder, device: where the feature networks are and where they run.
        precision: of the feature networks (see :func:`perceptual_distances`); the widget's
            explorer uses ``auto``, ``evaluate`` and ``--pd-figure`` fp32.
    """
    count = len(stack)
    P_values = tuple(sorted(set(P_values or curve_P_values(count, stack.sample_shape))))
    if not P_values or P_values[0] < 1 or P_values[-1] > count:
        raise ParameterError(f"P values must lie in 1..{count} (the samples drawn), got "
                             f"{list(P_values)}")
    if reference is not None and np.shape(reference) != stack.sample_shape:
        raise ParameterError(f"reference of shape {np.shape(reference)} does not fit the samples "
                             f"{stack.sample_shape}")
    precision = resolve_precision(precision, device)
    key = (count, P_values, _digest(reference), perceptual, _folder_key(folder), device, precision)
    with _LOCK:
        cached = _CACHE.get(stack, {}).get(key)
    if cached is not None:
        return cached
    curves = _measure(stack, reference, P_values, perceptual, folder, device, precision)
    with _LOCK:
        _CACHE.setdefault(stack, {})[key] = curves
    return curves


def _folder_key(folder: str | os.PathLike | None) -> str:
    """The feature-network folder as an absolute path (``None``: the default folder now)."""
    from napari_rcgan.metrics.feature_weights import default_dir

    return str(Path(folder if folder is not None else default_dir()).resolve())


def _digest(reference: np.ndarray | None) -> str | None:
    if reference is None:
        return None
    return hashlib.sha1(np.ascontiguousarray(reference, np.float32).tobytes()).hexdigest()


_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def _measure(stack, reference, P_values, perceptual, folder, device, precision) -> PDCurves:
    averages = np.stack([stack.mean(P) for P in P_values])
    notes = [SINGLE_P_NOTE] if P_values[-1] < 2 else []
    scale = stats.data_range(reference if reference is not None else averages[-1])
    common = {
        "P": P_values,
        "apsd": np.array([stats.apsd(stack, P) for P in P_values]),
        "sharpness": np.array([sharpness(average, scale) for average in averages]),
    }
    if reference is None:
        return PDCurves(**common, notes=(NO_REFERENCE_NOTE, *notes))
    reference = np.asarray(reference, np.float32)
    errors = averages.astype(np.float64) - reference
    measured = {
        "psnr": np.array([stats.psnr(average, reference) for average in averages]),
        "ssim": np.array([stats.ssim(average, reference) for average in averages]),
        "mse": np.mean(errors.reshape(len(averages), -1) ** 2, axis=1),
        "reference_sharpness": sharpness(reference, scale),
    }
    if perceptual:
        try:
            measured.update(perceptual_distances(averages, reference, folder, device, precision))
        except WeightsError:
            notes.insert(0, FEATURES_NOTE)
    return PDCurves(**common, **measured, notes=tuple(notes))


def summary_lines(curves: PDCurves) -> list[str]:
    """The best P of each measured metric and the notes, one line each (CLI)."""
    lines = []
    for name in ("dists", "lpips", "psnr", "ssim"):
        best = curves.best(name)
        if best is not None:
            value = curves.at(best)[name]
            lines.append(f"best {LABELS[name]}: P={best} ({value:.4g})")
    return lines + list(curves.notes)


def zoom_box(image_shape: Sequence[int], box: Sequence[float] | None = None) -> tuple[int, int, int, int]:
    """``(top, left, bottom, right)`` pixel box inside ``image_shape``: ``box`` (any two
    opposite corners, in pixels) clipped to the image, or by default a centred square of a
    third of the smaller side (at least 16 pixels).

    Raises:
        ParameterError: the box lies outside the image or is less than 2 pixels wide.
    """
    height, width = int(image_shape[0]), int(image_shape[1])
    if box is None:
        side = min(max(16, min(height, width) // 3), height, width)
        top, left = (height - side) // 2, (width - side) // 2
        return top, left, top + side, left + side
    r0, c0, r1, c1 = (float(value) for value in box)
    top, bottom = sorted((r0, r1))
    left, right = sorted((c0, c1))
    top, left = max(0, math.floor(top)), max(0, math.floor(left))
    bottom, right = min(height, math.ceil(bottom)), min(width, math.ceil(right))
    if bottom - top < 2 or right - left < 2:
        raise ParameterError(f"zoom region {list(box)} has no 2×2 pixels inside the "
                             f"{height}×{width} image")
    return top, left, bottom, right


def zoom_strip(stack: stats.SampleStack, box: Sequence[float] | None = None,
               P_values: Sequence[int] = ZOOM_P) -> list[tuple[int, np.ndarray]]:
    """``[(P, crop)]``: the P-average over :func:`zoom_box` for each P in ``P_values`` that
    was drawn (a P above the count is replaced by the count)."""
    top, left, bottom, right = zoom_box(stack.sample_shape, box)
    chosen = sorted({min(int(P), len(stack)) for P in P_values})
    return [(P, stack.mean(P)[top:bottom, left:right]) for P in chosen]


PANELS = ("all", "plane", "curves")


class PDPlot:
    """The perception–distortion plane and the metric-vs-P curves drawn on a matplotlib
    ``Figure`` (Agg for files, a Qt canvas in the widget); :meth:`highlight` moves the
    current-P markers without redrawing the curves.

    Plane: distortion (PSNR, x axis inverted, or MSE) against perception (DISTS or LPIPS), one
    point per P; the best-perception P (star) and best-distortion P (square) are marked, and
    better lies to the lower left. Curves: PSNR, SSIM, LPIPS, DISTS against P (without a
    reference: APSD and sharpness). ``notes``: write :attr:`PDCurves.notes` under the panels.
    """

    def __init__(self, figure, curves: PDCurves, panels: str = "all", distortion: str = "psnr",
                 perception: str = "dists", notes: bool = False) -> None:
        if panels not in PANELS:
            raise ParameterError(f"panels {panels!r}: use one of {', '.join(PANELS)}")
        if distortion not in DISTORTIONS:
            raise ParameterError(f"distortion axis {distortion!r}: use {' or '.join(DISTORTIONS)}")
        if perception not in PERCEPTIONS:
            raise ParameterError(f"perception axis {perception!r}: use {' or '.join(PERCEPTIONS)}")
        self.figure, self.curves = figure, curves
        self.distortion, self.perception = distortion, perception
        self._markers: list[tuple[object, object, str | tuple[str, str]]] = []
        figure.clear()
        names = list(METRICS) if curves.has_reference else ["apsd", "sharpness"]
        names = [name for name in names if curves.values(name) is not None]
        plane = panels != "curves" and curves.has_reference
        show_curves = panels != "plane" or not curves.has_reference
        rows = 2 if len(names) > 2 else 1
        columns = (1 if plane else 0) + (math.ceil(len(names) / rows) if show_curves else 0)
        grid = figure.add_gridspec(rows, max(columns, 1))
        if plane:
            self._draw_plane(figure.add_subplot(grid[:, 0]))
        if show_curves:
            offset = 1 if plane else 0
            for index, name in enumerate(names):
                self._draw_curve(figure.add_subplot(grid[index % rows, offset + index // rows]), name)
        notes = "\n".join(textwrap.fill(note, 130) for note in curves.notes) if notes else ""
        if notes:
            figure.text(0.5, 0.005, notes, ha="center", va="bottom", fontsize=7, color="0.25")
        figure.tight_layout(rect=(0, 0.04 * (1 + notes.count("\n")) if notes else 0, 1, 1))

    def _draw_plane(self, axis) -> None:
        curves, x_name, y_name = self.curves, self.distortion, self.perception
        x, y = curves.values(x_name), curves.values(y_name)
        axis.set_xlabel(f"distortion: {LABELS[x_name]}", fontsize=8)
        axis.tick_params(labelsize=7)
        if x_name == "psnr":
            axis.invert_xaxis()
        if y is None:
            axis.set_ylabel("perception: not measured", fontsize=8)
            axis.text(0.5, 0.5, FEATURES_NOTE.replace(": ", ":\n"), ha="center", va="center",
                      fontsize=7, transform=axis.transAxes, wrap=True)
            axis.set_title("perception–distortion plane", fontsize=8)
            return
        axis.set_ylabel(f"perception: {LABELS[y_name]}", fontsize=8)
        axis.plot(x, y, "-", color="0.6", lw=0.8, zorder=1)
        colours = axis.scatter(x, y, c=np.log2(curves.P), cmap="viridis", s=14, zorder=2)
        for index, P in enumerate(curves.P):
            if P & (P - 1) == 0 or P == curves.P[-1]:
                axis.annotate(str(P), (x[index], y[index]), fontsize=6, xytext=(3, 3),
                              textcoords="offset points")
        best_y, best_x = curves.best(y_name), curves.best(x_name)
        for P, style, label in ((best_y, "*", f"best perception (P={best_y})"),
                                (best_x, "s", f"best distortion (P={best_x})")):
            index = curves.P.index(P)
            axis.plot([x[index]], [y[index]], style, ms=11 if style == "*" else 8,
                      mfc="none", mec="tab:green" if style == "*" else "tab:blue", mew=1.4,
                      label=label, zorder=3)
        axis.legend(fontsize=6, loc="best", framealpha=0.7)
        bar = self.figure.colorbar(colours, ax=axis, fraction=0.05, pad=0.02)
        bar.set_label("log₂ P", fontsize=7)
        bar.ax.tick_params(labelsize=6)
        axis.set_title("perception–distortion plane (better: lower left)", fontsize=8)
        (marker,) = axis.plot([], [], "o", ms=9, mfc="none", mec="tab:red", mew=1.6, zorder=4)
        self._markers.append((axis, marker, (x_name, y_name)))

    def _draw_curve(self, axis, name: str) -> None:
        curves = self.curves
        values = curves.values(name)
        axis.plot(curves.P, values, ".-", ms=3, lw=1.0, color="tab:blue")
        if name == "sharpness" and curves.reference_sharpness is not None:
            axis.axhline(curves.reference_sharpness, color="0.5", ls="--", lw=0.8)
        if name in HIGHER_IS_BETTER and len(curves.P) > 1:
            best = curves.best(name)
            axis.plot([best], [values[curves.P.index(best)]], "*", ms=8, color="tab:green")
        axis.set_xscale("log", base=2)
        ticks = [P for P in curves.P if P & (P - 1) == 0] or list(curves.P)
        axis.set_xticks(ticks)
        axis.set_xticklabels([str(P) for P in ticks])
        axis.set_xlim(0.8, max(curves.P) * 1.25)
        axis.ticklabel_format(axis="y", style="plain", useOffset=False)
        arrow = {True: " ↑", False: " ↓"}.get(HIGHER_IS_BETTER.get(name), "")
        axis.set_title(LABELS[name] + arrow, fontsize=8)
        axis.set_xlabel("P", fontsize=7)
        axis.tick_params(labelsize=6)
        (marker,) = axis.plot([], [], "o", ms=6, color="tab:red", zorder=4)
        self._markers.append((axis, marker, name))

    def highlight(self, P: int | None) -> None:
        """Mark ``P`` on every panel (hidden when ``P`` has no point)."""
        curves = self.curves
        index = curves.P.index(P) if P in curves.P else None
        for _, marker, names in self._markers:
            if index is None:
                marker.set_data([], [])
            elif isinstance(names, tuple):
                x, y = (curves.values(name) for name in names)
                marker.set_data([x[index]], [y[index]])
            else:
                marker.set_data([P], [curves.values(names)[index]])


def write_pd_figure(curves: PDCurves, path: str | os.PathLike, title: str = "",
                    distortion: str = "psnr", perception: str = "dists") -> Path:
    """:func:`render_pd_figure` as a PNG (atomically written)."""
    from napari_rcgan.io import atomic_output

    figure = render_pd_figure(curves, title, distortion, perception)
    path = Path(path)
    with atomic_output(path) as temporary:
        figure.savefig(temporary, format="png")
    return path


def render_pd_figure(curves: PDCurves, title: str = "", distortion: str = "psnr",
                     perception: str = "dists") -> Figure:
    """The plane and the four curves, drawn but not saved (``sample --pd-figure``)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    wide = curves.has_reference
    figure = Figure(figsize=(11.0, 5.2) if wide else (8.0, 3.4), dpi=110)
    PDPlot(figure, curves, "all", distortion, perception, notes=True)
    if title:
        figure.suptitle(title, fontsize=9)
        figure.tight_layout(rect=(0, 0.04 * len(curves.notes), 1, 0.95))
    return figure
