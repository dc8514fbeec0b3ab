"""Means of SPD matrices, checked against answers known in closed form."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.linalg
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from multiscale.descriptors.joins import (
    DEFAULT_EPS,
    JoinConvergenceWarning,
    affine_invariant_mean,
    log_euclidean_join,
    log_euclidean_mean,
    mean_join,
    regularise,
    spd_exp,
    spd_log,
    symmetrise,
)
from multiscale.errors import DescriptorError


def random_spd(rng: np.random.Generator, c: int, *, n: int | None = None, spread: float = 1.0) -> np.ndarray:
    """SPD matrices with eigenvalues spanning about e**(±spread)."""
    shape = (c, c) if n is None else (n, c, c)
    b = rng.standard_normal(shape)
    q, _ = np.linalg.qr(b)
    lam = np.exp(spread * rng.standard_normal(shape[:-1]))
    return symmetrise((q * lam[..., None, :]) @ np.swapaxes(q, -1, -2))


def geodesic(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    """A #_t B = A^½ (A^-½ B A^-½)^t A^½, by scipy (independent of the code under test)."""
    ah = scipy.linalg.sqrtm(a).real
    aih = np.linalg.inv(ah)
    return ah @ scipy.linalg.fractional_matrix_power(aih @ b @ aih, t).real @ ah


def assert_spd(x: np.ndarray) -> None:
    assert np.array_equal(x, x.T)
    assert np.linalg.eigvalsh(x).min() > 0


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


# ---------------------------------------------------------------- the join of one matrix is itself


def test_mean_join_is_sum_over_weight(rng):
    g = random_spd(rng, 5)
    # A power-of-two weight makes the division exact.
    np.testing.assert_array_equal(mean_join(4.0 * g, 4.0), g)
    np.testing.assert_allclose(mean_join(3.0 * g, 3.0), g, rtol=1e-15)


def test_log_domain_joins_of_one_matrix_are_that_matrix_without_regulariser(rng):
    g = random_spd(rng, 6)
    np.testing.assert_allclose(log_euclidean_mean(g, eps=0), g, rtol=0, atol=1e-13 * np.abs(g).max())
    np.testing.assert_allclose(affine_invariant_mean(g, eps=0), g, rtol=0, atol=1e-13 * np.abs(g).max())
    # The streaming form goes through log and exp, so equal up to round-off.
    streamed = log_euclidean_join(2.5 * spd_log(g, eps=0), 2.5)
    np.testing.assert_allclose(streamed, g, rtol=1e-12, atol=1e-12 * np.abs(g).max())


def test_log_domain_joins_of_one_matrix_with_eps_return_the_regularised_matrix(rng):
    # Documented: the log-domain joins average R(G) = G + eps·trace(G)/C·I.
    g = random_spd(rng, 6)
    eps = 1e-3
    expected = g + eps * np.trace(g) / 6 * np.eye(6)
    np.testing.assert_allclose(regularise(g, eps=eps), expected, rtol=1e-13, atol=1e-14)
    for x in (log_euclidean_mean(g, eps=eps), affine_invariant_mean(g, eps=eps)):
        np.testing.assert_allclose(x, expected, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(log_euclidean_join(spd_log(g, eps=eps), 1.0), expected, rtol=1e-12, atol=1e-13)


def test_join_of_identical_matrices_is_that_matrix(rng):
    g = random_spd(rng, 4)
    stack = np.stack([g, g, g])
    np.testing.assert_allclose(log_euclidean_mean(stack, eps=0), g, rtol=1e-12)
    np.testing.assert_allclose(affine_invariant_mean(stack, eps=0), g, rtol=1e-12)


# ---------------------------------------------------------------- regulariser


def test_regulariser_lifts_the_null_space_of_a_rank_deficient_gram(rng):
    features = rng.standard_normal((3, 8))  # 3 positions, 8 channels: rank 3
    g = features.T @ features
    assert np.linalg.eigvalsh(g).min() < 1e-12
    r = regularise(g, eps=DEFAULT_EPS)
    lam = np.linalg.eigvalsh(r)
    np.testing.assert_allclose(lam[:5], DEFAULT_EPS * np.trace(g) / 8, rtol=1e-9)
    assert np.isfinite(spd_log(g, eps=DEFAULT_EPS)).all()
    with pytest.raises(DescriptorError, match="singular"):
        spd_log(g, eps=0)


def test_regulariser_is_scale_and_rotation_equivariant(rng):
    g = random_spd(rng, 5)
    q, _ = np.linalg.qr(rng.standard_normal((5, 5)))
    np.testing.assert_allclose(regularise(7.0 * g, eps=0.01), 7.0 * regularise(g, eps=0.01), rtol=1e-12)
    np.testing.assert_allclose(
        regularise(q @ g @ q.T, eps=0.01), q @ regularise(g, eps=0.01) @ q.T, atol=1e-12
    )


def test_round_off_negative_eigenvalues_are_clipped_but_indefinite_matrices_refused(rng):
    g = random_spd(rng, 4)
    lam, vec = np.linalg.eigh(g)
    lam[0] = -1e-9 * lam[-1]
    nearly = (vec * lam) @ vec.T
    assert np.linalg.eigvalsh(regularise(nearly, eps=1e-4)).min() > 0
    lam[0] = -0.5 * lam[-1]
    with pytest.raises(DescriptorError, match="not positive semidefinite"):
        spd_log((vec * lam) @ vec.T, eps=1e-4)


def test_all_zero_gram_has_no_logarithm():
    with pytest.raises(DescriptorError, match="all-zero"):
        spd_log(np.zeros((3, 3)), eps=1e-4)


def test_non_finite_input_is_refused(rng):
    g = random_spd(rng, 3)
    g[0, 1] = g[1, 0] = np.nan
    with pytest.raises(DescriptorError, match="NaN"):
        spd_log(g, eps=1e-4)


def test_spd_log_and_exp_are_inverse(rng):
    g = random_spd(rng, 7, spread=2.0)
    np.testing.assert_allclose(spd_exp(spd_log(g, eps=0)), g, rtol=1e-11, atol=1e-11 * np.abs(g).max())
    s = symmetrise(rng.standard_normal((7, 7)))
    np.testing.assert_allclose(spd_log(spd_exp(s), eps=0), s, atol=1e-11)


def test_spd_log_matches_scipy_logm(rng):
    g = random_spd(rng, 5)
    np.testing.assert_allclose(spd_log(g, eps=0), scipy.linalg.logm(g).real, atol=1e-10)


def test_spd_exp_refuses_overflow():
    with pytest.raises(DescriptorError, match="overflows"):
        spd_exp(np.diag([1.0, 1000.0]))


# ---------------------------------------------------------------- known answers


def test_affine_invariant_mean_of_two_is_the_geometric_midpoint(rng):
    a = random_spd(rng, 5, spread=1.5)
    b = random_spd(rng, 5, spread=1.5)
    expected = geodesic(a, b, 0.5)
    x = affine_invariant_mean(np.stack([a, b]), eps=0)
    np.testing.assert_allclose(x, expected, rtol=1e-9, atol=1e-10 * np.abs(expected).max())
    # A # B = B # A, and det(A # B) = sqrt(det A · det B).
    np.testing.assert_allclose(affine_invariant_mean(np.stack([b, a]), eps=0), x, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(x), np.sqrt(np.linalg.det(a) * np.linalg.det(b)), rtol=1e-9)


def test_weighted_affine_invariant_mean_of_two_is_a_point_on_the_geodesic(rng):
    a = random_spd(rng, 4)
    b = random_spd(rng, 4)
    x = affine_invariant_mean(np.stack([a, b]), [1.0, 3.0], eps=0)
    np.testing.assert_allclose(x, geodesic(a, b, 0.75), rtol=1e-9, atol=1e-11)


def test_commuting_matrices_give_the_geometric_mean_of_eigenvalues(rng):
    q, _ = np.linalg.qr(rng.standard_normal((6, 6)))
    lams = np.exp(rng.standard_normal((3, 6)))
    stack = np.stack([(q * lam) @ q.T for lam in lams])
    w = np.array([1.0, 2.0, 5.0])
    expected = (q * np.prod(lams ** (w / w.sum())[:, None], axis=0)) @ q.T
    np.testing.assert_allclose(log_euclidean_mean(stack, w, eps=0), expected, rtol=1e-11, atol=1e-12)
    # For commuting matrices the Riemannian mean coincides with the log-Euclidean one.
    np.testing.assert_allclose(affine_invariant_mean(stack, w, eps=0), expected, rtol=1e-9, atol=1e-11)


def test_affine_invariant_mean_is_invariant_under_congruence(rng):
    stack = random_spd(rng, 5, n=4, spread=1.0)
    m = rng.standard_normal((5, 5)) + 3 * np.eye(5)
    x = affine_invariant_mean(stack, eps=0)
    y = affine_invariant_mean(m @ stack @ m.T, eps=0)
    expected = m @ x @ m.T
    np.testing.assert_allclose(y, expected, rtol=1e-8, atol=1e-9 * np.abs(expected).max())


def test_affine_invariant_mean_is_a_stationary_point_of_the_riemannian_variance(rng):
    stack = random_spd(rng, 6, n=5, spread=1.5)
    w = rng.uniform(0.5, 2.0, 5)
    x = affine_invariant_mean(stack, w, eps=0)
    lam, vec = np.linalg.eigh(x)
    xih = (vec / np.sqrt(lam)) @ vec.T
    gradient = np.einsum("i,ijk->jk", w, spd_log(xih @ stack @ xih, eps=0))
    assert np.linalg.norm(gradient) < 1e-8
    # det of the Karcher mean is the weighted geometric mean of the determinants.
    logdets = np.linalg.slogdet(stack)[1]
    np.testing.assert_allclose(np.linalg.slogdet(x)[1], np.dot(w, logdets) / w.sum(), rtol=1e-9)


def test_spread_out_rank_deficient_grams_converge(rng):
    # Rank-4 Grams in 16 channels: after regularisation their eigenvalues span
    # ~1e5, where the unit-step fixed point oscillates without converging.
    grams = []
    for _ in range(8):
        f = np.maximum(rng.standard_normal((4, 16)) + rng.standard_normal(16), 0)
        grams.append(f.T @ f + 1e-3 * np.eye(16))
    with warnings.catch_warnings():
        warnings.simplefilter("error", JoinConvergenceWarning)
        x = affine_invariant_mean(np.stack(grams), eps=1e-4)
    assert_spd(x)


def test_non_convergence_warns_and_returns_the_last_iterate(rng):
    stack = random_spd(rng, 5, n=6, spread=2.0)
    with pytest.warns(JoinConvergenceWarning, match="did not reach tol"):
        x = affine_invariant_mean(stack, eps=0, max_iter=1, tol=1e-15)
    assert_spd(x)


def test_bad_arguments_are_refused(rng):
    stack = random_spd(rng, 3, n=2)
    with pytest.raises(ValueError, match="weights"):
        log_euclidean_mean(stack, [1.0, -1.0])
    with pytest.raises(ValueError, match="2 weights"):
        affine_invariant_mean(stack, [1.0])
    with pytest.raises(ValueError, match="square"):
        log_euclidean_mean(np.ones((2, 3, 4)))
    with pytest.raises(ValueError, match="tol"):
        affine_invariant_mean(stack, tol=0)
    with pytest.raises(ValueError, match="max_iter"):
        affine_invariant_mean(stack, max_iter=0)
    with pytest.raises(ValueError, match="eps"):
        regularise(stack, eps=-1)
    with pytest.raises(ValueError, match="weight_total"):
        mean_join(stack[0], 0.0)


# ---------------------------------------------------------------- properties


def spd_stacks(max_c: int = 5, max_n: int = 4):
    def build(arr: np.ndarray) -> np.ndarray:
        c = arr.shape[-1]
        return arr @ np.swapaxes(arr, -1, -2) / c + 0.05 * np.eye(c)

    shapes = st.tuples(st.integers(1, max_n), st.integers(1, max_c)).map(lambda nc: (nc[0], nc[1], nc[1]))
    return hnp.arrays(np.float64, shapes, elements=st.floats(-3, 3)).map(build)


@settings(deadline=None, max_examples=60)
@given(stack=spd_stacks(), eps=st.sampled_from([0.0, 1e-4, 1e-2]))
def test_joins_are_symmetric_positive_definite(stack, eps):
    n = len(stack)
    arithmetic = mean_join(stack.sum(axis=0), n)
    assert np.array_equal(arithmetic, arithmetic.T)
    assert np.linalg.eigvalsh(arithmetic).min() > 0
    le = log_euclidean_mean(stack, eps=eps)
    ai = affine_invariant_mean(stack, eps=eps)
    assert_spd(le)
    assert_spd(ai)
    # Karcher mean ≤ arithmetic mean (Loewner order) of the same regularised matrices.
    am_reg = regularise(stack, eps=eps).mean(axis=0)
    assert np.linalg.eigvalsh(am_reg - ai).min() > -1e-9 * np.abs(am_reg).max()


@settings(deadline=None, max_examples=40)
@given(stack=spd_stacks(max_n=3), scale=st.floats(1e-3, 1e3))
def test_log_domain_joins_are_homogeneous(stack, scale):
    # The regulariser is relative, so scaling every Gram scales the joins.
    for join in (log_euclidean_mean, affine_invariant_mean):
        x = join(stack, eps=1e-4)
        np.testing.assert_allclose(join(scale * stack, eps=1e-4), scale * x, rtol=1e-8, atol=1e-10 * scale)
