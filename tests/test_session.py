"""The session: one sampling path for the CLI, the widget and the writer, and its output hook."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from napari_rcgan import session as session_module
from napari_rcgan.errors import InputFileError
from napari_rcgan.pipeline import write_result
from napari_rcgan.schema import Output
from napari_rcgan.session import SamplingRequest, Session, input_task
from tests import plugin_helpers as helpers


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("session")
    return {
        "mri": str(helpers.write_phantom_fastmri(folder / "phantom.h5", slices=2)),
        "weights": str(helpers.write_tiny_weights(folder / "mri.safetensors", "mri")),
    }


def test_the_run_mask_is_the_preview_mask_and_measurements_are_cached(files):
    session = Session()
    request = SamplingRequest(input=files["mri"], weights=files["weights"], device="cpu", P=2,
                              slice=1, R=4, mask="random", mask_seed=3)
    first = session.run(request)
    preview = Session.mask(request, (helpers.SIZE, helpers.SIZE))
    np.testing.assert_array_equal(first.measurement.mask.mask, preview.mask)
    other_seed = Session.mask(SamplingRequest(mask="random", R=4, mask_seed=4),
                              (helpers.SIZE, helpers.SIZE))
    assert not np.array_equal(other_seed.mask, preview.mask), "the mask seed is used"
    again = session.run(SamplingRequest(input=files["mri"], weights=files["weights"],
                                        device="cpu", P=3, seed=1, slice=1, R=4, mask="random",
                                        mask_seed=3))
    assert again.measurement is first.measurement and len(session.samplers) == 1
    assert first.slice == 1 and first.attrs()["slice"] == 1
    assert first.layer_info("mean", 1)["slice"] == 1 and first.layer_info("mean", 1)["P"] == 1


def test_registered_outputs_reach_the_file(files, tmp_path, monkeypatch):
    def brightest(result):
        mean = result.stack.mean()
        result.extras["brightest"] = Output(data=(mean >= mean.max()).astype(np.float32),
                                            title="brightest pixel", colorbar=True,
                                            at_P=lambda P: result.stack.std(P))
        result.extra_attrs["brightest_value"] = float(mean.max())

    monkeypatch.setitem(session_module._producers, "brightest", brightest)
    result = Session().run(SamplingRequest(input=files["mri"], weights=files["weights"],
                                           device="cpu", P=4, R=4))
    out = write_result(result, tmp_path / "out.h5", P=2)
    with h5py.File(out, "r") as handle:
        assert handle.attrs["brightest_value"] == pytest.approx(float(result.stack.mean().max()))
        np.testing.assert_allclose(handle["brightest"][()], result.stack.std(2), rtol=1e-6)
        assert handle.attrs["P"] == 2 and handle["samples"].shape[0] == 2


def test_unknown_inputs_are_named():
    with pytest.raises(InputFileError, match="notes.txt: unknown input type"):
        input_task("notes.txt")
    assert input_task("a.H5") == "mri" and input_task("face.png") == "inpainting"
