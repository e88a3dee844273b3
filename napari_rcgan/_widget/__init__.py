"""The "Posterior sampler" dock widget: rcGAN posterior samples as napari layers, and a P explorer.

The widget takes an input layer (a fastMRI acquisition opened by this plugin's reader, or an image
layer for inpainting), builds a :class:`~napari_rcgan.session.SamplingRequest` from its fields
and draws the samples with the engine's :class:`~napari_rcgan.session.Session` in a
``thread_worker``. It shows the result layers of :mod:`napari_rcgan.schema` (reference,
zero-filled, mask, samples, P-average, |mean − reference|, SD) and a P explorer that re-averages
the first P samples from prefix sums.

Modules: :mod:`.controls` (fields → request), :mod:`.run` (a run and its worker),
:mod:`.layers` (publishing layers, mask preview), :mod:`.explorer` (P slider and plot),
:mod:`.pd_explorer` and :mod:`.uncertainty` (result panels), :mod:`.plots` (matplotlib canvases),
:mod:`.teardown` (slots that may fire while the viewer closes), :mod:`.widget` (the dock widget
composing them).

Scripting::

    widget = PosteriorSamplerWidget(viewer)
    run = widget.run_sampling(P=8, R=4, seed=0, weights="random:mri", wait=True)
    run.stack.mean(4), run.layers["std"].data

``run_sampling`` returns a :class:`SamplingRun` (or None when the run failed: the engine's message
is then shown as a napari notification and kept in ``widget.last_error``).
"""

from napari_rcgan._widget.layers import PREVIEW_NAME
from napari_rcgan._widget.run import SamplingRun
from napari_rcgan._widget.widget import PosteriorSamplerWidget
from napari_rcgan.schema import LAYER_NAMES, RESULT_KINDS

__all__ = ["LAYER_NAMES", "PREVIEW_NAME", "RESULT_KINDS", "PosteriorSamplerWidget", "SamplingRun"]
