"""Parameterisations (benchmarks/param.py): exact maps and adjoints, the wrapped gradient, coarse stages, honest saved loss."""

import dataclasses
import sys
from pathlib import Path

import numpy as np
import pytest

from multiscale._tf import tf
from multiscale.config import DescriptorConfig
from multiscale.jobs.runner import quantize
from multiscale.measure.backbone import VGG16, load_weights
from multiscale.measure.gram import image_grams
from multiscale.measure.pyramid import downsample, gaussian_pyramid
from multiscale.objectives.texture import StyleObjective
from multiscale.optim.projected import minimize as projected

# Research code used by benchmarks/time_to_loss.py, kept out of the package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from param import (  # noqa: E402
    LaplacianPyramid,
    ParameterizedObjective,
    coarse_stage,
    expand_matrix,
    reduce_matrix,
    subspace_map,
    upsample,
)

CFG = DescriptorConfig(octaves=2, layers=("conv1_1", "pool1", "conv2_1"), octave_weights=(1.0, 0.5))


def _style(dtype, *, size, config=CFG, source=None, seed=0):
    rng = np.random.default_rng(seed)
    if source is None:
        source = rng.uniform(size=(size, size, 3)).astype(np.float32)
    targets = image_grams(source, network=VGG16(load_weights(), padding=config.padding), config=config)
    net = VGG16(load_weights(), pooling=config.pooling, padding=config.padding, dtype=dtype)
    return StyleObjective(targets=targets, network=net, config=config, height=size, width=size)


# ---------------------------------------------------------------- the 1-d filters


def test_expand_matrix_known_answer_and_rows_sum_to_one():
    eight = expand_matrix(6).toarray() * 8
    np.testing.assert_array_equal(eight, [[6, 2, 0], [4, 4, 0], [1, 6, 1], [0, 4, 4], [0, 1, 7], [0, 0, 8]])
    for n, mode in [(7, "reflect"), (12, "reflect"), (12, "wrap"), (1, "reflect")]:
        m = expand_matrix(n, padding=mode).toarray()
        assert m.shape == (n, (n + 1) // 2) and (m >= 0).all()
        np.testing.assert_allclose(m.sum(axis=1), 1.0, rtol=0, atol=1e-15)


def test_wrap_needs_even_lengths_and_modes_are_checked():
    with pytest.raises(ValueError, match="even"):
        expand_matrix(7, padding="wrap")
    with pytest.raises(ValueError, match="padding"):
        reduce_matrix(8, padding="same")


@pytest.mark.parametrize("mode,shape", [("reflect", (13, 10, 3)), ("wrap", (12, 8, 3))])
def test_reduce_matrix_is_the_pyramid_downsample(mode, shape):
    x = np.random.default_rng(0).uniform(size=shape)
    rows, cols = (reduce_matrix(n, padding=mode).toarray() for n in shape[:2])
    ours = np.einsum("ij,jkc,lk->ilc", rows, x, cols)
    theirs = downsample(tf.constant(x[None]), mode).numpy()[0]
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-14)


# ---------------------------------------------------------------- linear maps


@pytest.mark.parametrize(
    "height,width,levels,scale,mode",
    [(23, 17, 3, 0.5, "reflect"), (32, 16, 4, (1.0, 2.0, 0.3, 5.0), "wrap"), (9, 9, 1, 1.0, "reflect")],
)
def test_laplacian_round_trip_is_exact(height, width, levels, scale, mode):
    pyr = LaplacianPyramid(height=height, width=width, levels=levels, level_scale=scale, padding=mode)
    x = np.random.default_rng(1).uniform(size=(height, width, 3))
    z = pyr.from_pixels(x)
    assert z.shape == (pyr.size,) and pyr.size == sum(h * w * 3 for h, w, _ in pyr.shapes)
    np.testing.assert_allclose(pyr.to_pixels(z), x, rtol=0, atol=1e-13)


def test_a_constant_coarse_level_gives_a_constant_image():
    pyr = LaplacianPyramid(height=20, width=14, levels=3, level_scale=0.5)
    z = np.zeros(pyr.size)
    z[-np.prod(pyr.shapes[-1]) :] = 0.8  # coarsest level only
    np.testing.assert_allclose(pyr.to_pixels(z), 0.8 * 0.25, rtol=0, atol=1e-15)


@pytest.mark.parametrize(
    "make",
    [
        lambda: LaplacianPyramid(height=21, width=18, levels=3, level_scale=0.7),
        lambda: LaplacianPyramid(height=16, width=24, levels=4, level_scale=2.0, padding="wrap"),
        lambda: subspace_map(37, 20, skip=2),
        lambda: subspace_map(32, 32, skip=1, padding="wrap"),
    ],
)
def test_adjoint_is_exact(make):
    """<A z, y> = <z, Aᵀ y> for random z, y: the gradient in z is the true one."""
    a = make()
    rng = np.random.default_rng(2)
    for _ in range(3):
        z, y = rng.normal(size=a.size), rng.normal(size=a.pixel_shape)
        lhs, rhs = np.vdot(a.to_pixels(z), y), np.vdot(z, a.adjoint(y))
        assert lhs == pytest.approx(rhs, rel=1e-12)


@pytest.mark.parametrize("skip,mode", [(1, "reflect"), (2, "reflect"), (2, "wrap")])
def test_subspace_map_is_octave_skip_of_the_expanded_image(skip, mode):
    """M y is octave ``skip`` of U^skip y: a coarse stage sees exactly what the full image will have."""
    n = 40
    m = subspace_map(n, n, skip=skip, padding=mode)
    y = np.random.default_rng(3).uniform(size=m.coefficient_shape)
    full = y
    for level in range(skip - 1, -1, -1):
        side = -(-n // 2**level)
        full = upsample(full, height=side, width=side, padding=mode)
    assert full.shape == (n, n, 3) and full.min() >= 0 and full.max() <= 1
    octave = gaussian_pyramid(tf.constant(full[None]), octaves=skip + 1, padding=mode)[skip].numpy()[0]
    np.testing.assert_allclose(m.to_pixels(y), octave, rtol=0, atol=1e-13)


def test_coarse_stage_loss_is_the_full_loss_of_those_octaves():
    config = DescriptorConfig(octaves=3, layers=("conv1_1", "pool1"), octave_weights=(1.0, 2.0, 0.5))
    size = 32
    rng = np.random.default_rng(4)
    source = rng.uniform(size=(size, size, 3)).astype(np.float32)
    net = VGG16(load_weights(), padding=config.padding, dtype=tf.float64)
    grams = image_grams(source, network=VGG16(load_weights(), padding=config.padding), config=config)
    full = StyleObjective(targets=grams, network=net, config=config, height=size, width=size)
    sub_grams, sub_config = coarse_stage(grams, config=config, skip=1)
    assert sub_config.octaves == 2 and sub_config.resolved_octave_weights == (2.0, 0.5)
    assert set(sub_grams) == {(0, "conv1_1"), (0, "pool1"), (1, "conv1_1"), (1, "pool1")}
    stage = StyleObjective(targets=sub_grams, network=net, config=sub_config, height=16, width=16)
    y = rng.uniform(size=(16, 16, 3))
    x = upsample(y, height=size, width=size)
    m = subspace_map(size, size, skip=1)
    stage_loss = stage.evaluate(m.to_pixels(y)).total
    per_octave = full.evaluate(x).octave_losses
    # each loss is a weighted mean: undo the two normalisations
    assert stage_loss * 2.5 == pytest.approx(per_octave[1:].sum() * 3.5, rel=1e-9)


def test_coarse_stage_rejects_skipping_every_octave():
    with pytest.raises(ValueError, match="skip"):
        coarse_stage({}, config=CFG, skip=2)


# ---------------------------------------------------------------- the wrapped objective


def _box_straddling_image(size, rng):
    """Pixels well inside the box, and some well outside (no kink within a finite-difference step)."""
    x = rng.uniform(0.2, 0.8, size=(size, size, 3))
    x[rng.uniform(size=x.shape) < 0.1] = 1.15
    x[rng.uniform(size=x.shape) < 0.1] = -0.1
    return x


def test_wrapped_objective_is_the_clipped_loss_plus_the_penalty():
    size = 20
    style = _style(tf.float64, size=size)
    pyr = LaplacianPyramid(height=size, width=size, levels=2, level_scale=0.5)
    fun = ParameterizedObjective(style, transform=pyr, penalty=3.0)
    x = _box_straddling_image(size, np.random.default_rng(5))
    loss, _ = fun(pyr.from_pixels(x))
    excess = x - np.clip(x, 0, 1)
    assert fun.last_penalty == pytest.approx(3.0 * np.mean(excess**2), rel=1e-12) and fun.last_penalty > 0
    assert loss == pytest.approx(style.evaluate(np.clip(x, 0, 1)).total + fun.last_penalty, rel=1e-10)
    inside = np.full((size, size, 3), 0.5)
    fun(pyr.from_pixels(inside))
    assert fun.last_penalty == 0.0


@pytest.mark.parametrize("transform", ["laplacian", "subspace"])
def test_wrapped_gradient_matches_central_finite_differences_in_float64(transform):
    size = 20
    rng = np.random.default_rng(6)
    if transform == "laplacian":
        style = _style(tf.float64, size=size)
        a = LaplacianPyramid(height=size, width=size, levels=3, level_scale=0.6)
        z = a.from_pixels(_box_straddling_image(size, rng))
    else:
        style = _style(tf.float64, size=10, config=dataclasses.replace(CFG, octaves=1, octave_weights=None))
        a = subspace_map(size, size, skip=1)
        z = rng.uniform(0.2, 0.8, size=a.size)
    fun = ParameterizedObjective(style, transform=a, penalty=2.0)
    loss, grad = fun(z)
    assert grad.shape == z.shape and grad.dtype == np.float64
    h = 1e-5
    for _ in range(4):
        v = rng.normal(size=z.shape)
        v /= np.linalg.norm(v)
        fd = (fun(z + h * v)[0] - fun(z - h * v)[0]) / (2 * h)
        assert grad @ v == pytest.approx(fd, rel=1e-6, abs=1e-10 * abs(loss))
    for i in rng.choice(z.size, size=3, replace=False):
        e = np.zeros_like(z)
        e[i] = h
        fd = (fun(z + e)[0] - fun(z - e)[0]) / (2 * h)
        assert grad[i] == pytest.approx(fd, rel=1e-5, abs=1e-9)


def test_unbounded_laplacian_run_saves_an_image_as_good_as_its_loss():
    """The box is active (a black-and-white source drives pixels past it), yet the saved loss is honest."""
    size = 32
    rng = np.random.default_rng(7)
    source = (rng.uniform(size=(size, size, 3)) < 0.5).astype(np.float32)
    style = _style(tf.float32, size=size, source=source)
    pyr = LaplacianPyramid(height=size, width=size, levels=3, level_scale=0.5)
    fun = ParameterizedObjective(style, transform=pyr)
    x0 = np.clip(0.5 + rng.normal(0, 0.1, size=(size, size, 3)), 0, 1)
    outside = []

    def watch(p) -> None:
        x = pyr.to_pixels(p.image)
        outside.append(float(np.mean((x < 0) | (x > 1))))

    res = projected(
        fun, pyr.from_pixels(x0), bounds=None, max_iter=40, tol=0.0, callback=watch, shape=(pyr.size,)
    )
    assert max(outside) > 0.01  # clipping mattered during the run
    saved = style.evaluate(quantize(fun.pixels(res.x), bit_depth=8)).total
    assert res.loss < 0.5 * style.evaluate(x0).total  # it did optimise
    assert saved <= 1.05 * res.loss
