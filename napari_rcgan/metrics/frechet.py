"""Fréchet distances of embedding sets: FID and conditional FID (CFID), in float64.

Embeddings are ``(N, D)`` matrices (numpy arrays or torch tensors, any float dtype); each row is
one image. CFID follows the reference rcGAN evaluation exactly (see ``docs`` and design.md,
"Evaluation"): covariances with 1/N, the pseudo-inverse of the condition covariance, and the
SVD square root that leaves singular values below 1e-10 as they are.
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.linalg

from napari_rcgan.errors import ParameterError

SQRT_THRESHOLD = 1e-10
FID_DIAGONAL_OFFSET = 1e-6
_warned_small_n: set[str] = set()


def as_embeddings(values, name: str) -> np.ndarray:
    """``values`` as a float64 ``(N, D)`` array with N ≥ 2 and finite entries.

    Raises:
        ParameterError: naming ``name`` when the shape or the values are unusable.
    """
    if hasattr(values, "detach"):
        values = values.detach().cpu().double().numpy()
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 2:
        raise ParameterError(f"{name} embeddings: expected an (N, D) matrix, got shape {array.shape}")
    if array.shape[0] < 2:
        raise ParameterError(f"{name} embeddings: need at least 2 rows, got {array.shape[0]}")
    bad = ~np.isfinite(array)
    if bad.any():
        row = int(np.argwhere(bad)[0, 0])
        raise ParameterError(
            f"{name} embeddings: {int(bad.sum())} NaN/Inf values (first in row {row}); "
            f"expected finite features"
        )
    return array


def _same_shape(**matrices: np.ndarray) -> None:
    shapes = {name: matrix.shape for name, matrix in matrices.items()}
    if len(set(shapes.values())) != 1:
        raise ParameterError(f"embedding matrices must have the same (N, D) shape, got {shapes}")


def _warn_if_biased(n: int, d: int, what: str) -> None:
    if n < d and what not in _warned_small_n:
        _warned_small_n.add(what)
        warnings.warn(
            f"{what} with N={n} embeddings of dimension D={d} (N < D): the covariances are "
            f"singular, the estimate is biased at small N (compare values only at equal N)",
            stacklevel=3,
        )


def svd_sqrt(matrix: np.ndarray, threshold: float = SQRT_THRESHOLD) -> np.ndarray:
    """√M = U·diag(s′)·Vh from the SVD M = U·diag(s)·Vh, with s′ = √s for s ≥ ``threshold``
    and s′ = s otherwise (the reference's rule for symmetric PSD matrices)."""
    u, s, vh = np.linalg.svd(matrix)
    rooted = np.where(s >= threshold, np.sqrt(np.maximum(s, 0.0)), s)
    return (u * rooted) @ vh


def cfid(generated, condition, true) -> float:
    """Conditional FID of generated vs true embeddings given the condition embeddings.

    Args:
        generated, condition, true: ``(N, D)`` embeddings; row i of each belongs to the same
            measurement (one row per posterior sample drawn).

    Returns:
        ‖m_t − m_g‖² + tr[(Σ_tc − Σ_gc) Σ_cc⁺ (Σ_ct − Σ_cg)] + tr Σ_t|c + tr Σ_g|c
        − 2 tr √(A Σ_t|c A), A = √Σ_g|c (covariances with 1/N, float64).

    Raises:
        ParameterError: shapes differ, N < 2, or NaN/Inf values. Warns once when N < D.
    """
    g = as_embeddings(generated, "generated")
    c = as_embeddings(condition, "condition")
    t = as_embeddings(true, "true")
    _same_shape(generated=g, condition=c, true=t)
    n, d = g.shape
    _warn_if_biased(n, d, "CFID")
    m_g, m_c, m_t = g.mean(0), c.mean(0), t.mean(0)
    g, c, t = g - m_g, c - m_c, t - m_t
    s_gg, s_gc, s_cc = g.T @ g / n, g.T @ c / n, c.T @ c / n
    s_tt, s_tc = t.T @ t / n, t.T @ c / n
    s_cc_inv = scipy.linalg.pinv(s_cc, atol=0.0, rtol=d * np.finfo(np.float64).eps)
    s_t_given_c = s_tt - s_tc @ s_cc_inv @ s_tc.T
    s_g_given_c = s_gg - s_gc @ s_cc_inv @ s_gc.T
    mean_term = float(np.sum((m_t - m_g) ** 2))
    difference = s_tc - s_gc
    cross_term = float(np.trace(difference @ s_cc_inv @ difference.T))
    root = svd_sqrt(s_g_given_c)
    product_root = svd_sqrt(root @ s_t_given_c @ root)
    covariance_term = float(np.trace(s_t_given_c) + np.trace(s_g_given_c) - 2 * np.trace(product_root))
    return mean_term + cross_term + covariance_term


def fid(a, b) -> float:
    """Fréchet distance ‖m_a − m_b‖² + tr(Σ_a + Σ_b − 2 (Σ_a Σ_b)^½) of two embedding sets.

    Covariances with 1/(N−1); when the product's square root is not finite (singular
    product), 1e-6 is added to both diagonals, as in the TF/pytorch FID code.

    Raises:
        ParameterError: D differs, N < 2, or NaN/Inf values. Warns once when N < D.
    """
    a = as_embeddings(a, "first")
    b = as_embeddings(b, "second")
    if a.shape[1] != b.shape[1]:
        raise ParameterError(f"embedding dimensions differ: {a.shape[1]} and {b.shape[1]}")
    _warn_if_biased(min(len(a), len(b)), a.shape[1], "FID")
    mean_a, mean_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = _sqrtm(cov_a @ cov_b)
    if not np.isfinite(root).all():
        offset = FID_DIAGONAL_OFFSET * np.eye(a.shape[1])
        root = _sqrtm((cov_a + offset) @ (cov_b + offset))
    return float(np.sum((mean_a - mean_b) ** 2) + np.trace(cov_a) + np.trace(cov_b)
                 - 2 * np.trace(root.real))


def _sqrtm(matrix: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return scipy.linalg.sqrtm(matrix)
