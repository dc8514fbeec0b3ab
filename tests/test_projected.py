"""Projected L-BFGS: same minima as scipy's L-BFGS-B, the same stops, exact resume, safe checkpoints."""

import io
import math
import pickle
import zipfile

import numpy as np
import pytest

from multiscale.errors import CheckpointError, MultiscaleError, OutputError
from multiscale.optim import lbfgsb as scipy_driver
from multiscale.optim import projected as lbfgs
from multiscale.optim.base import Progress
from multiscale.optim.projected import LBFGSResult, LBFGSState, load_state, minimize, save_state

TARGET = np.linspace(-0.5, 1.5, 12)
# Ill-conditioned on purpose (condition 1000), as in test_lbfgsb.
SCALE = np.logspace(0, 3, 12)


def quadratic(x):
    d = x - TARGET
    return float((SCALE * d**2).sum()), 2 * SCALE * d


def rosenbrock(x):
    a, b = x[:-1], x[1:]
    loss = float(((1 - a) ** 2).sum() + 100 * ((b - a**2) ** 2).sum())
    grad = np.zeros_like(x)
    grad[:-1] += -2 * (1 - a) - 400 * a * (b - a**2)
    grad[1:] += 200 * (b - a**2)
    return loss, grad


class Coupled:
    """A bounded, non-quadratic, non-separable problem over more than two 4096-blocks.

    Large enough that the float32 block products run; a quarter of the
    targets lie outside [0, 1] so the bounds are active.
    """

    def __init__(self, n=3 * 4096 + 77, seed=0):
        rng = np.random.default_rng(seed)
        self.target = rng.uniform(-0.25, 1.25, n)
        self.curv = rng.uniform(1.0, 50.0, n)
        self.mix = rng.normal(size=n) / math.sqrt(n)

    def __call__(self, x):
        d = x - self.target
        m = float(self.mix @ x)
        loss = float((self.curv * d**2).sum() + 0.5 * (d**4).sum() + 20.0 * m**2)
        return loss, 2 * self.curv * d + 2.0 * d**3 + 40.0 * m * self.mix


def run_with_iterates(fun, x0, **kwargs):
    """minimize(), also returning every iterate (copied) seen by the callback."""
    seen = []

    def cb(p):
        seen.append(p.image.copy())

    res = minimize(fun, x0, callback=cb, shape=(x0.size,), **kwargs)
    return res, seen


# --------------------------------------------------------------------------- same minima as scipy


def test_bounded_quadratic_reaches_scipys_minimum():
    ours = minimize(quadratic, np.full(12, 0.5), tol=0.0, max_iter=100)
    ref = scipy_driver.minimize(quadratic, np.full(12, 0.5), tol=0.0, max_iter=100)
    assert isinstance(ours, LBFGSResult) and ours.stop_reason in ("converged", "max_iter")
    np.testing.assert_allclose(ours.x, np.clip(TARGET, 0, 1), atol=1e-6)
    np.testing.assert_allclose(ours.x, ref.x, atol=1e-6)
    assert ours.loss == pytest.approx(ref.loss, rel=1e-9)


@pytest.mark.parametrize("bounds", [(-1.0, 0.8), (0.0, 2.0), None])
def test_rosenbrock_reaches_scipys_minimum(bounds):
    ours = minimize(rosenbrock, np.zeros(10), bounds=bounds, tol=1e-12, max_iter=500)
    ref = scipy_driver.minimize(rosenbrock, np.zeros(10), bounds=bounds, tol=1e-12, max_iter=500)
    assert ours.stop_reason == "converged", ours.message
    np.testing.assert_allclose(ours.x, ref.x, atol=1e-5)
    assert ours.loss == pytest.approx(ref.loss, rel=1e-8, abs=1e-10)


def test_compact_direction_equals_the_two_loop_recursion():
    rng = np.random.default_rng(3)
    n, k, gamma = 40, 5, 0.37
    a = rng.normal(size=(n, n))
    hessian = a @ a.T + n * np.eye(n)
    s = rng.normal(size=(k, n))
    y = s @ hessian  # sᵀy > 0 for every pair
    g = rng.normal(size=n)

    q = g.copy()
    alphas = []
    for i in reversed(range(k)):
        alphas.append(s[i] @ q / (s[i] @ y[i]))
        q -= alphas[-1] * y[i]
    r = gamma * q
    for i, alpha in zip(range(k), reversed(alphas), strict=True):
        r += s[i] * (alpha - y[i] @ r / (s[i] @ y[i]))

    coef_a, coef_t = lbfgs._compact_coefficients(np.triu(s @ y.T), y @ y.T, gamma, s @ g, y @ g)
    np.testing.assert_allclose(gamma * g + s.T @ coef_a - gamma * y.T @ coef_t, r, rtol=1e-10)


def test_block_products_accumulate_in_float64():
    rng = np.random.default_rng(4)
    w = rng.normal(size=(6, 5 * 4096 + 11)).astype(np.float32)
    v = rng.normal(size=(2, w.shape[1])).astype(np.float32)
    w64, v64 = w.astype(np.float64), v.astype(np.float64)
    scale = np.abs(w64) @ np.abs(v64).T
    np.testing.assert_array_less(np.abs(lbfgs._products(w, v) - w64 @ v64.T), 1e-6 * scale)
    # Same-sign terms, the worst case of a float32 running sum (a BLAS sdot is off by ~5e-4).
    tenths = np.full(3 * 10**6, 0.1, np.float32)
    exact = 3 * 10**6 * float(np.float32(0.1))
    assert lbfgs._dot(tenths, np.ones_like(tenths)) == pytest.approx(exact, rel=1e-6)


# --------------------------------------------------------------------------- bounds and stops


def test_every_evaluation_stays_inside_the_bounds():
    seen = []
    fun = Coupled()

    def recording(x):
        seen.append((x.min(), x.max()))
        return fun(x)

    res = minimize(recording, np.full(fun.target.size, 5.0), max_iter=40)
    assert min(lo for lo, _ in seen) >= 0.0 and max(hi for _, hi in seen) <= 1.0
    # at a bound exactly where the unconstrained optimum lies beyond it
    assert (res.x[fun.target < -0.1] == 0.0).mean() > 0.9


@pytest.mark.parametrize("bad", ["nan_loss", "inf_grad"])
def test_non_finite_evaluation_keeps_the_best_finite_point(bad):
    calls = {"n": 0}
    best_seen = {"loss": math.inf, "x": None}

    def fun(x):
        calls["n"] += 1
        loss, grad = quadratic(x)
        if calls["n"] == 6:
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


def test_non_finite_first_evaluation_returns_the_start_point():
    res = minimize(lambda x: (float("nan"), x), np.full(3, 0.25))
    assert res.stop_reason == "non_finite" and res.loss == math.inf and res.state is None
    np.testing.assert_array_equal(res.x, np.full(3, 0.25))


def test_ctrl_c_during_an_evaluation_keeps_the_best_point():
    calls = {"n": 0}
    best = {"loss": math.inf}

    def fun(x):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        loss, grad = quadratic(x)
        best["loss"] = min(best["loss"], loss)
        return loss, grad

    res = minimize(fun, np.full(12, 0.5))
    assert res.stop_reason == "interrupted" and res.evaluations == 4
    assert res.loss == best["loss"] < quadratic(np.full(12, 0.5))[0]
    assert quadratic(res.x)[0] == res.loss and res.state is not None


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
    assert got[-1].image.shape == (3, 4) and got[-1].max_iter == 200
    assert got[0].best_loss >= got[1].best_loss and got[1].evaluations >= 2
    assert res.history == [p.loss for p in got] and res.iterations == 2


def test_max_iter_is_respected():
    res = minimize(rosenbrock, np.zeros(10), max_iter=5, bounds=None)
    assert res.iterations == 5 and res.stop_reason == "max_iter" and len(res.history) == 5


def test_loss_never_increases_and_history_matches():
    res = minimize(Coupled(), np.full(Coupled().target.size, 0.5), max_iter=30, history=4)
    assert all(b < a for a, b in zip(res.history, res.history[1:], strict=False))
    assert res.loss == res.history[-1] and len(res.history) == res.iterations


def test_an_objective_that_reuses_its_gradient_buffer_gives_the_same_run():
    fun = Coupled()
    buf = np.empty(fun.target.size)

    def reusing(x):
        loss, grad = fun(x)
        buf[:] = grad
        return loss, buf

    x0 = np.full(fun.target.size, 0.5)
    a = minimize(fun, x0, max_iter=15)
    b = minimize(reusing, x0, max_iter=15)
    np.testing.assert_array_equal(a.x, b.x)


def test_the_objective_cannot_write_into_the_iterate():
    def vandal(x):
        x[0] = 0.5
        return quadratic(x)

    with pytest.raises(ValueError, match="read-only"):
        minimize(vandal, np.full(12, 0.5))


def test_bad_history_is_a_config_error():
    with pytest.raises(MultiscaleError, match="history"):
        minimize(quadratic, np.full(12, 0.5), history=0)


# --------------------------------------------------------------------------- exact resume


@pytest.mark.parametrize("cut", [1, 7, 13])
def test_resuming_after_k_iterations_repeats_the_uninterrupted_run_exactly(cut):
    fun = Coupled()
    x0 = np.full(fun.target.size, 0.5)
    kwargs = dict(max_iter=25, tol=0.0, history=3)  # 3 pairs: the ring wraps around
    full, full_iterates = run_with_iterates(fun, x0, **kwargs)
    first, first_iterates = run_with_iterates(fun, x0, **{**kwargs, "max_iter": cut})
    assert first.stop_reason == "max_iter" and first.state.iteration == cut
    rest, rest_iterates = run_with_iterates(fun, x0, state=first.state, **kwargs)
    assert len(first_iterates) + len(rest_iterates) == len(full_iterates) == 25
    for a, b in zip(first_iterates + rest_iterates, full_iterates, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(rest.x, full.x)
    assert rest.history == full.history and rest.iterations == full.iterations
    assert rest.evaluations == full.evaluations


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_segments_that_take_over_the_state_repeat_the_run_in_the_same_memory(dtype):
    fun = Coupled(seed=2)
    x0 = np.full(fun.target.size, 0.5, dtype=dtype)
    kwargs = dict(tol=0.0, history=3, bounds=(0.0, 1.0))
    full, full_iterates = run_with_iterates(fun, x0, max_iter=24, **kwargs)
    seen, res, blocks = [], None, []
    for cap in (5, 6, 13, 24):  # the ring wraps around between the cuts
        res, iterates = run_with_iterates(
            fun, x0, max_iter=cap, state=None if res is None else res.state, overwrite_inputs=True, **kwargs
        )
        seen += iterates
        blocks.append(res.state.S.base)
    assert len(seen) == len(full_iterates) == 24
    for a, b in zip(seen, full_iterates, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(res.x, full.x)
    assert res.history == full.history and res.evaluations == full.evaluations
    assert all(b is blocks[0] for b in blocks), "each segment must reuse the first one's pairs"


def test_switching_objective_goes_on_from_the_best_point_with_fresh_memory():
    first_target = np.linspace(0.2, 0.8, 50)
    second_target = first_target[::-1].copy()

    def towards(target):
        return lambda x: (float(((x - target) ** 2).sum()), 2 * (x - target))

    first = minimize(towards(first_target), np.full(50, 0.5), max_iter=3, tol=0.0, history=4)
    loss, grad = towards(second_target)(first.state.best_x)
    switched = lbfgs.switch_objective(first.state, loss=loss, grad=grad)
    assert switched.pairs == 0 and switched.loss == loss == switched.best_loss
    assert switched.iteration == first.state.iteration == 3
    assert switched.evaluations == first.state.evaluations + 1
    np.testing.assert_array_equal(switched.x, first.x)
    rest = minimize(
        towards(second_target), np.full(50, 0.5), max_iter=40, tol=1e-14, history=4, state=switched
    )
    np.testing.assert_allclose(rest.x, second_target, atol=1e-6)
    assert rest.history[:3] == first.history and rest.iterations > 3


def test_a_run_that_may_overwrite_x0_works_in_its_buffer_and_gives_the_same_run():
    fun = Coupled(seed=5)
    x0 = np.full(fun.target.size, 0.5, dtype=np.float32)
    kept = minimize(fun, x0, max_iter=10, tol=0.0, history=3)
    np.testing.assert_array_equal(x0, 0.5)  # by default the caller's start point is left alone
    owned = minimize(fun, x0, max_iter=10, tol=0.0, history=3, overwrite_inputs=True)
    np.testing.assert_array_equal(owned.x, kept.x)
    assert owned.history == kept.history
    assert not np.all(x0 == 0.5), "the run's iterates should have gone through x0's buffer"


def test_a_state_read_from_a_file_is_copied_even_when_taken(tmp_path):
    fun = Coupled(seed=4)
    x0 = np.full(fun.target.size, 0.5)
    full = minimize(fun, x0, max_iter=12, tol=0.0, history=3)
    first = minimize(fun, x0, max_iter=5, tol=0.0, history=3)
    save_state(tmp_path / "s.npz", first.state)
    rest = minimize(
        fun, x0, max_iter=12, tol=0.0, history=3, state=load_state(tmp_path / "s.npz"), overwrite_inputs=True
    )
    np.testing.assert_array_equal(rest.x, full.x)


def test_resuming_after_ctrl_c_through_a_file_repeats_the_run_exactly(tmp_path):
    fun = Coupled(seed=1)
    x0 = np.full(fun.target.size, 0.5)
    full, full_iterates = run_with_iterates(fun, x0, max_iter=20, tol=0.0, history=4)
    calls = {"n": 0}

    def interrupted(x):
        calls["n"] += 1
        if calls["n"] == 12:
            raise KeyboardInterrupt
        return fun(x)

    first, _ = run_with_iterates(interrupted, x0, max_iter=20, tol=0.0, history=4)
    assert first.stop_reason == "interrupted"
    k = first.state.iteration
    save_state(tmp_path / "run.ckpt.npz", first.state)
    state = load_state(tmp_path / "run.ckpt.npz")
    rest, rest_iterates = run_with_iterates(fun, x0, max_iter=20, tol=0.0, history=4, state=state)
    for a, b in zip(rest_iterates, full_iterates[k:], strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(rest.x, full.x)
    assert rest.history == full.history


def test_resume_with_a_shorter_history_keeps_the_newest_pairs():
    fun = Coupled()
    x0 = np.full(fun.target.size, 0.5)
    first = minimize(fun, x0, max_iter=10, history=6)
    assert first.state.pairs == 6
    rest = minimize(fun, x0, max_iter=20, history=2, state=first.state)
    assert rest.iterations == 20 and rest.loss < first.loss


def test_state_of_a_wrong_size_or_outside_the_bounds_is_refused():
    state = minimize(quadratic, np.full(12, 0.5), max_iter=3).state
    with pytest.raises(CheckpointError, match="12 variables"):
        minimize(quadratic, np.full(13, 0.5), state=state)
    with pytest.raises(CheckpointError, match="outside the bounds"):
        minimize(quadratic, np.full(12, 0.5), bounds=(0.6, 1.0), state=state)


# --------------------------------------------------------------------------- checkpoint files


@pytest.fixture
def saved(tmp_path):
    fun = Coupled()
    state = minimize(fun, np.full(fun.target.size, 0.5), max_iter=6, history=3).state
    path = save_state(tmp_path / "state.npz", state)
    return state, path


def _rewrite(path, **changes):
    """The checkpoint at ``path`` rewritten with some members changed (None: removed)."""
    with np.load(path, allow_pickle=False) as npz:
        members = dict(npz)
    for name, value in changes.items():
        if value is None:
            del members[name]
        else:
            members[name] = value
    out = path.with_name("bad.npz")
    with open(out, "wb") as fh:
        np.savez(fh, **members)
    return out


def test_save_and_load_round_trip(saved):
    state, path = saved
    back = load_state(path)
    assert isinstance(back, LBFGSState)
    for name in ("x", "grad", "S", "Y", "sty", "yty", "best_x", "history"):
        a, b = getattr(state, name), getattr(back, name)
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)
    for name in ("loss", "pending", "gamma", "slots", "iteration", "evaluations", "best_loss"):
        assert getattr(back, name) == getattr(state, name)
    assert state.pairs == 3 and state.S.dtype == np.float32


def test_save_does_not_overwrite_unless_asked(saved):
    state, path = saved
    with pytest.raises(OutputError, match="exists"):
        save_state(path, state)
    save_state(path, state, overwrite=True)
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]


class _Trap:
    """Unpickling this records it: the loader must refuse without unpickling."""

    triggered: list[str] = []

    def __reduce__(self):
        return (_Trap.triggered.append, ("unpickled",))


@pytest.mark.parametrize(
    "change, match",
    [
        ({"S": np.zeros((3, 5), np.float32)}, "shape"),
        ({"x": np.zeros(7)}, "shape"),
        ({"sty": np.zeros((3, 3), np.float32)}, "float32"),
        ({"slots": np.array([0, 0, 1])}, "slots"),
        ({"x": np.full(3 * 4096 + 77, np.nan)}, "not finite"),
        ({"history": np.zeros(2)}, "history"),
        ({"format": np.frombuffer(b"something else", np.uint8)}, "not an optimiser checkpoint"),
        ({"gamma": None}, r"missing member\(s\) gamma"),
        ({"extra": np.zeros(3)}, "unexpected"),
        ({"S": np.array([_Trap()], dtype=object)}, "object"),
    ],
)
def test_a_hostile_or_broken_checkpoint_is_refused(saved, change, match):
    _, path = saved
    bad = _rewrite(path, **change)
    with pytest.raises(CheckpointError, match=match) as info:
        load_state(bad)
    assert str(bad) in str(info.value)
    assert _Trap.triggered == []


def test_compressed_truncated_or_foreign_files_are_refused(saved, tmp_path):
    _, path = saved
    with np.load(path) as npz:
        members = dict(npz)
    compressed = tmp_path / "compressed.npz"
    np.savez_compressed(compressed, **members)
    with pytest.raises(CheckpointError, match="compressed"):
        load_state(compressed)
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated.npz"):
        load_state(truncated)
    foreign = tmp_path / "foreign.npz"
    foreign.write_bytes(pickle.dumps({"x": 1}))
    with pytest.raises(CheckpointError, match="not a readable"):
        load_state(foreign)
    with pytest.raises(CheckpointError, match="no such file"):
        load_state(tmp_path / "missing.npz")
    assert zipfile.is_zipfile(path)


def test_a_lying_header_is_refused_before_allocating(saved, tmp_path):
    """A member whose header declares 10¹² elements (8 TB) must not be allocated."""
    _, path = saved
    lying = tmp_path / "lying.npz"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(lying, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == "x.npy":
                out = io.BytesIO()
                header = {"descr": "<f8", "fortran_order": False, "shape": (10**12,)}
                np.lib.format.write_array_header_1_0(out, header)
                data = out.getvalue() + data[-64:]
            dst.writestr(info.filename, data)
    with pytest.raises(CheckpointError, match="declares 8000000000000 bytes"):
        load_state(lying)


def test_a_state_built_by_hand_is_checked_before_saving(tmp_path):
    state = minimize(quadratic, np.full(12, 0.5), max_iter=3).state
    broken = LBFGSState(**{**vars(state), "S": state.S.astype(np.float64)})
    with pytest.raises(CheckpointError, match="S is float64"):
        save_state(tmp_path / "x.npz", broken)
    with pytest.raises(CheckpointError, match="S is float64"):
        minimize(quadratic, np.full(12, 0.5), state=broken)


# --------------------------------------------------------------------------- the real objective


@pytest.mark.slow
def test_on_the_style_objective_it_keeps_up_with_scipy():
    from multiscale.config import DescriptorConfig
    from multiscale.measure.backbone import VGG16, load_weights
    from multiscale.measure.gram import image_grams
    from multiscale.objectives.texture import StyleObjective

    config = DescriptorConfig(octaves=2, layers=("conv1_1", "pool1"))
    rng = np.random.default_rng(0)
    net = VGG16(load_weights(), pooling=config.pooling, padding=config.padding)
    source = rng.uniform(size=(32, 32, 3)).astype(np.float32)
    targets = image_grams(source, network=net, config=config)
    objective = StyleObjective(targets=targets, network=net, config=config, height=32, width=32)
    x0 = rng.uniform(0.2, 0.8, size=32 * 32 * 3)

    ref = scipy_driver.minimize(objective, x0, max_iter=30, tol=0.0)
    ours = minimize(objective, x0, max_iter=30, tol=0.0)
    assert ours.iterations == ref.iterations == 30
    assert ours.loss <= 1.5 * ref.loss
    assert ours.x.min() >= 0.0 and ours.x.max() <= 1.0


# --------------------------------------------------------------------------- float32 iterate


def test_a_float32_start_keeps_the_iterate_in_float32_and_reaches_the_float64_minimum(tmp_path):
    fun = Coupled(seed=2)
    x64 = np.full(fun.target.size, 0.5)
    ref = minimize(fun, x64, bounds=(0.0, 1.0), max_iter=60, tol=0.0)
    res = minimize(fun, x64.astype(np.float32), bounds=(0.0, 1.0), max_iter=60, tol=0.0)
    assert res.x.dtype == np.float32 and res.state.x.dtype == np.float32
    assert ref.x.dtype == np.float64
    assert res.loss == pytest.approx(ref.loss, rel=1e-4)
    np.testing.assert_allclose(res.x, ref.x, atol=1e-3)
    # its state saves, reloads and resumes in float32
    save_state(tmp_path / "f32.npz", res.state)
    state = load_state(tmp_path / "f32.npz")
    assert state.x.dtype == state.grad.dtype == state.best_x.dtype == np.float32
    more = minimize(fun, x64, bounds=(0.0, 1.0), max_iter=70, tol=0.0, state=state)
    assert more.x.dtype == np.float32 and more.loss <= res.loss
    # it goes on to 70, unless float32 runs out of representable decreases first (seen at 64)
    assert more.iterations == 70 or (more.iterations > 60 and more.stop_reason == "converged"), more.message


def test_float32_resume_repeats_the_uninterrupted_float32_run_exactly():
    fun = Coupled(seed=3)
    x0 = np.full(fun.target.size, 0.5, dtype=np.float32)
    kwargs = dict(max_iter=20, tol=0.0, history=3, bounds=(0.0, 1.0))
    full, full_iterates = run_with_iterates(fun, x0, **kwargs)
    first, _ = run_with_iterates(fun, x0, **{**kwargs, "max_iter": 8})
    rest, rest_iterates = run_with_iterates(fun, x0, state=first.state, **kwargs)
    for a, b in zip(rest_iterates, full_iterates[8:], strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(rest.x, full.x)


def test_start_point_switches_to_float32_only_for_very_large_problems():
    from multiscale.measure import memory

    assert lbfgs.start_point(np.zeros((4, 4, 3), np.float32)).dtype == np.float64
    big = np.zeros(lbfgs.FLOAT32_ITERATE_ABOVE + 1, np.float64)
    assert lbfgs.start_point(big).dtype == np.float32
    assert memory.FLOAT32_ITERATE_ABOVE == lbfgs.FLOAT32_ITERATE_ABOVE  # the estimate knows the switch
