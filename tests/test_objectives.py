"""The objective protocol: every objective offers value and gradient, value with a breakdown,
tiling, precision and draws the same way, and image terms join any objective."""

import importlib
import inspect
import pkgutil

import numpy as np
import pytest

import multiscale.objectives
from multiscale.config import SynthesisConfig
from multiscale.errors import ConfigError
from multiscale.objectives.base import Evaluation, ImageTerm, Objective, WithImageTerms, texture_evaluation
from multiscale.objectives.image_terms import image_terms

H, W = 12, 10


def _objective_classes():
    for info in pkgutil.iter_modules(multiscale.objectives.__path__):
        module = importlib.import_module(f"multiscale.objectives.{info.name}")
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if (
                cls.__module__ == module.__name__
                and cls.__name__.endswith("Objective")
                and cls is not Objective
            ):
                yield cls


@pytest.mark.parametrize("cls", list(_objective_classes()), ids=lambda c: c.__name__)
def test_every_objective_implements_the_protocol(cls):
    assert issubclass(cls, Objective)
    for method in ("__call__", "evaluate"):
        assert getattr(cls, method) is not getattr(Objective, method), f"{cls.__name__}.{method} missing"


def test_there_are_five_objectives():
    """Texture and style transfer, whole and tiled, and animation frames (a new one is checked above)."""
    assert len(list(_objective_classes())) == 5


class Quadratic(Objective):
    """``Σ (x − 0.3)²``: a network-free inner objective."""

    def __init__(self):
        self.shape, self.size, self.config = (1, H, W, 3), H * W * 3, None

    def __call__(self, x):
        d = np.asarray(x, np.float64) - 0.3
        self.last = texture_evaluation(float(d @ d), np.array([float(d @ d)]))
        return self.last.total, 2 * d

    def evaluate(self, image):
        d = np.reshape(image, -1).astype(np.float64) - 0.3
        return texture_evaluation(float(d @ d), np.array([float(d @ d)]))


def test_image_terms_add_their_weighted_value_and_exact_gradient():
    rng = np.random.default_rng(0)
    example = rng.uniform(size=(H, W, 3)).astype(np.float32)
    config = SynthesisConfig(spectrum_weight=2.0)
    obj = WithImageTerms(Quadratic(), image_terms(config, exemplars=[example], height=H, width=W))
    x = rng.uniform(size=H * W * 3)
    total, grad = obj(x)
    assert obj.last.terms["spectrum"] > 0 and obj.last.weights["spectrum"] == 2.0
    assert total == pytest.approx(obj.last.terms["style"] + 2.0 * obj.last.terms["spectrum"], rel=1e-12)
    assert obj.evaluate(x.reshape(H, W, 3)).total == pytest.approx(total, rel=1e-12)
    h = 1e-6
    for i in rng.choice(x.size, 8, replace=False):
        e = np.zeros_like(x)
        e[i] = h
        numeric = (obj(x + e)[0] - obj(x - e)[0]) / (2 * h)
        assert grad[i] == pytest.approx(numeric, rel=1e-5, abs=1e-8)


def test_image_terms_pass_tiling_precision_and_draws_through():
    inner = Quadratic()
    inner.tile, inner.precision = 256, {"precision": "bfloat16"}
    obj = WithImageTerms(inner, [ImageTerm("zero", 1.0, lambda im: (0.0, np.zeros_like(im)))])
    assert obj.tile == 256 and obj.precision == {"precision": "bfloat16"}
    assert obj.draw is None and obj.redraw_every is None
    obj.redraw(3)  # no sliced term: nothing to draw


def test_the_spectrum_constraint_needs_source_images():
    with pytest.raises(ConfigError, match="source images"):
        image_terms(SynthesisConfig(spectrum_weight=1.0), exemplars=[], height=H, width=W)
    assert image_terms(SynthesisConfig(spectrum_weight=0.0), exemplars=[], height=H, width=W) == []


def test_a_breakdown_weights_its_terms():
    e = Evaluation(
        total=3.5,
        terms={"style": 1.5, "tv": 4.0},
        weights={"style": 1.0, "tv": 0.5},
        octave_losses=np.ones(1),
    )
    assert e.weighted("tv") == 2.0 and e.weighted("content") == 0.0
    assert sum(e.weighted(n) for n in e.terms) == e.total
