"""The multiscale style objective: gradient, normalisation and invariants."""

import numpy as np
import pytest

from multiscale._tf import tf
from multiscale.config import DescriptorConfig
from multiscale.measure.backbone import VGG16, load_weights
from multiscale.measure.gram import image_grams
from multiscale.objectives.texture import StyleObjective

CFG = DescriptorConfig(octaves=2, layers=("conv1_1", "pool1", "conv2_1"), octave_weights=(1.0, 0.5))


def _objective(dtype, *, config=CFG, size=20, seed=0):
    rng = np.random.default_rng(seed)
    net = VGG16(load_weights(), pooling=config.pooling, padding=config.padding, dtype=dtype)
    source = rng.uniform(size=(size, size, 3)).astype(np.float32)
    targets = image_grams(source, network=VGG16(load_weights(), padding=config.padding), config=config)
    obj = StyleObjective(targets=targets, network=net, config=config, height=size, width=size)
    x = rng.uniform(0.2, 0.8, size=size * size * 3)
    return obj, x, source


@pytest.mark.parametrize("padding", ["reflect", "wrap"])
def test_gradient_matches_central_finite_differences_in_float64(padding):
    config = DescriptorConfig(
        octaves=2, layers=("conv1_1", "pool1", "conv2_1"), octave_weights=(1.0, 0.5), padding=padding
    )
    obj, x, _ = _objective(tf.float64, config=config)
    loss, grad = obj(x)
    assert grad.dtype == np.float64 and grad.shape == x.shape
    rng = np.random.default_rng(1)
    h = 1e-5
    for _ in range(4):
        v = rng.normal(size=x.shape)
        v /= np.linalg.norm(v)
        fd = (obj(x + h * v)[0] - obj(x - h * v)[0]) / (2 * h)
        assert grad @ v == pytest.approx(fd, rel=1e-6, abs=1e-10 * abs(loss))
    # and one coordinate at a time, where a wrong index would show
    for i in rng.choice(x.size, size=3, replace=False):
        e = np.zeros_like(x)
        e[i] = h
        fd = (obj(x + e)[0] - obj(x - e)[0]) / (2 * h)
        assert grad[i] == pytest.approx(fd, rel=1e-5, abs=1e-9)


def test_loss_of_the_source_itself_is_zero():
    obj, _, source = _objective(tf.float32)
    scored = obj.evaluate(source)
    loss, per_octave = scored.total, scored.octave_losses
    assert loss == pytest.approx(0.0, abs=1e-9) and per_octave.shape == (2,)


def test_octave_losses_add_up_to_the_total():
    obj, x, _ = _objective(tf.float32)
    loss, _ = obj(x)
    assert obj.last.octave_losses.sum() == pytest.approx(loss, rel=1e-5)
    assert (obj.last.octave_losses > 0).all()


def test_loss_is_a_relative_error_independent_of_weight_scale():
    """Scaling all layer or octave weights by a constant does not change the loss (conv1_1's default
    weight is 2, the others' 1)."""
    a, x, _ = _objective(tf.float32)
    scaled = DescriptorConfig(
        octaves=2, layers=CFG.layers, layer_weights=(6.0, 3.0, 3.0), octave_weights=(10.0, 5.0)
    )
    b, _, _ = _objective(tf.float32, config=scaled)
    assert a(x)[0] == pytest.approx(b(x)[0], rel=1e-5)


def test_a_constant_image_has_relative_loss_of_order_one():
    """Normalisation: a flat grey image against a textured source scores about 1, not 1e6."""
    obj, _, _ = _objective(tf.float32)
    loss = obj.evaluate(np.full((20, 20, 3), 0.5, np.float32)).total
    assert 0.05 < loss < 5
