"""The L-BFGS-B driver: bounds, best-finite tracking and every way a run can stop."""

import math

import numpy as np
import pytest

from multiscale.optim.base import Progress
from multiscale.optim.lbfgsb import minimize

TARGET = np.linspace(-0.5, 1.5, 12)
# Ill-conditioned on purpose, so L-BFGS-B needs a dozen evaluations, not two.
SCALE = np.logspace(0, 3, 12)


def quadratic(x):
    d = x - TARGET
    return float((SCALE * d**2).sum()), 2 * SCALE * d


def test_bounded_minimum_is_the_clipped_target():
    res = minimize(quadratic, np.full(12, 0.5), tol=0.0, max_iter=100)
    np.testing.assert_allclose(res.x, np.clip(TARGET, 0, 1), atol=1e-6)
    assert res.stop_reason in ("converged", "max_iter")
    assert res.loss == pytest.approx(quadratic(np.clip(TARGET, 0, 1))[0], rel=1e-9)


def test_every_evaluation_stays_inside_the_bounds():
    seen = []

    def fun(x):
        seen.append(x.copy())
        return quadratic(x)

    minimize(fun, np.full(12, 5.0), bounds=(0.0, 1.0))
    assert min(s.min() for s in seen) >= 0.0 and max(s.max() for s in seen) <= 1.0


@pytest.mark.parametrize("bad", ["nan_loss", "inf_grad"])
def test_non_finite_evaluation_keeps_the_best_finite_point(bad):
    calls = {"n": 0}
    best_seen = {"loss": math.inf, "x": None}

    def fun(x):
        calls["n"] += 1
        loss, grad = quadratic(x)
        if calls["n"] == 4:
            if bad == "nan_loss":
                return float("nan"), grad
            grad = grad.copy()
            grad[3] = np.inf
            return loss, grad
        if loss < best_seen["loss"]:
            best_seen.update(loss=loss, x=x.copy())
        return loss, grad

    res = minimize(fun, np.full(12, 0.5))
    assert res.stop_reason == "non_finite" and "non-finite" in res.message
    assert res.loss == best_seen["loss"]
    np.testing.assert_array_equal(res.x, best_seen["x"])
    assert np.isfinite(res.x).all()


def test_non_finite_first_evaluation_returns_the_start_point():
    res = minimize(lambda x: (float("nan"), x), np.full(3, 0.25))
    assert res.stop_reason == "non_finite" and res.loss == math.inf
    np.testing.assert_array_equal(res.x, np.full(3, 0.25))


def test_ctrl_c_during_an_evaluation_keeps_the_best_point():
    calls = {"n": 0}

    def fun(x):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return quadratic(x)

    res = minimize(fun, np.full(12, 0.5))
    assert res.stop_reason == "interrupted"
    assert res.loss < quadratic(np.full(12, 0.5))[0]


def test_time_limit_stops_the_run():
    res = minimize(quadratic, np.full(12, 0.5), time_limit=1e-9)
    assert res.stop_reason == "time_limit" and res.evaluations <= 1


def test_callback_sees_progress_and_can_stop():
    got: list[Progress] = []

    def cb(p: Progress) -> bool:
        got.append(p)
        return p.iteration == 2

    res = minimize(quadratic, np.full(12, 0.5), callback=cb, shape=(3, 4))
    assert res.stop_reason == "callback" and [p.iteration for p in got] == [1, 2]
    assert got[-1].image.shape == (3, 4)
    assert got[0].best_loss >= got[1].best_loss and got[1].evaluations >= 2


def test_max_iter_is_respected():
    def rosen(x):
        return (  # noqa: E731
            float(((1 - x[:-1]) ** 2).sum() + 100 * ((x[1:] - x[:-1] ** 2) ** 2).sum()),
            np.concatenate([[0], 200 * (x[1:] - x[:-1] ** 2)])
            + np.concatenate([-2 * (1 - x[:-1]) - 400 * x[:-1] * (x[1:] - x[:-1] ** 2), [0]]),
        )

    res = minimize(rosen, np.zeros(10), max_iter=5, bounds=None)
    assert res.iterations == 5 and res.stop_reason == "max_iter" and len(res.history) == 5
