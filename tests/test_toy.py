"""Toy experiment of Fig. 1: Props. 3.1 (rcGAN recovers mean and SD) and 3.2 (L2,P collapses)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from training.toy import fit_toy, landscape, main, regularizer_fn

MU0, SIGMA0 = 1.0, 0.5


@pytest.mark.parametrize("p_train", [2, 8])
def test_rcgan_regularizer_recovers_posterior(p_train: int) -> None:
    mu, sigma = fit_toy("rcgan", p_train, MU0, SIGMA0)
    assert mu == pytest.approx(MU0, rel=0.05)
    assert sigma == pytest.approx(SIGMA0, rel=0.05)


def test_l2_p_regularizer_collapses_sd() -> None:
    mu, sigma = fit_toy("l2", 8, MU0, SIGMA0)
    assert mu == pytest.approx(MU0, rel=0.05)
    assert sigma < 0.05 * SIGMA0


def test_fit_toy_rejects_unknown_regularizer() -> None:
    with pytest.raises(ValueError, match="regularizer"):
        fit_toy("l3", 2)


def test_landscape_minimum_near_truth() -> None:
    mus = np.linspace(0.5, 1.5, 11)
    sigmas = np.linspace(0.1, 1.0, 10)
    values = landscape(regularizer_fn("rcgan", 2), 2, mus, sigmas, MU0, SIGMA0, n_mc=20000)
    assert values.shape == (10, 11)
    i, j = np.unravel_index(np.argmin(values), values.shape)
    assert mus[j] == pytest.approx(MU0, abs=0.1)
    assert sigmas[i] == pytest.approx(SIGMA0, abs=0.1)


def test_main_writes_figure(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "fig" / "toy.png"
    assert main(["--out", str(out), "--steps", "20"]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in out.parent.iterdir()] == ["toy.png"]
    assert "rcgan" in capsys.readouterr().out
