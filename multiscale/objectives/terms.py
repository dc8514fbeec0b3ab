"""The loss terms every objective is built from.

Each term is relative (divided by the size of its target), so that layers,
octaves and images of any size count alike; :func:`weighted_terms` takes
their weighted mean with the descriptor's layer and octave weights. The
formulas are given in :mod:`multiscale.objectives.texture` (Gram, sliced, mean)
and :mod:`multiscale.objectives.style` (content, total variation).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from .._tf import tf
from ..config import DescriptorConfig
from ..layers import GramKey
from ..measure.engine import direction_projections
from ..measure.sliced import TargetQuantiles, sorted_cotangent

#: Floor of ‖A‖² so an all-zero target (a black source) cannot divide by zero.
_NORM_FLOOR = 1e-8


def weighted_terms(
    terms: Mapping[GramKey, tf.Tensor], *, config: DescriptorConfig
) -> tuple[tf.Tensor, tf.Tensor]:
    """Weighted mean of per-(octave, layer) terms with the config's layer and octave weights
    (:func:`term_shares`).

    Returns
    -------
    total : tf.Tensor, scalar
    per_octave : tf.Tensor, shape (octaves,)
        Each octave's weighted share, so ``sum(per_octave) == total``.
    """
    shares = term_shares(config)
    per_octave = [
        tf.add_n([shares[(k, layer)] * terms[(k, layer)] for layer in config.layers_at(k)])
        for k in range(config.octaves)
    ]
    stacked = tf.stack(per_octave)
    return tf.reduce_sum(stacked), stacked


def term_shares(config: DescriptorConfig) -> dict[GramKey, float]:
    """Each (octave, layer) term's weight in :func:`weighted_terms` (they sum to 1): its octave's
    weight times its layer's (:meth:`DescriptorConfig.weight_of`), over the sum of those products."""
    lw = {layer: config.weight_of(layer) for layer in config.all_layers}
    ow = config.resolved_octave_weights
    coarse = sum(lw[layer] for layer in config.coarse_layers)
    norm = sum(ow) * sum(lw[layer] for layer in config.layers) + sum(ow[config.coarse_from :]) * coarse
    return {(k, layer): ow[k] * lw[layer] / norm for k, layer in config.octave_layers()}


def style_loss(
    grams: Mapping[GramKey, tf.Tensor],
    targets: Mapping[GramKey, tf.Tensor],
    *,
    config: DescriptorConfig,
) -> tuple[tf.Tensor, tf.Tensor]:
    """The multiscale Gram loss (see the module docstring).

    Parameters
    ----------
    grams, targets : dict of (octave, layer) → tf.Tensor (C, C)
        Same keys; targets are constants.
    config : DescriptorConfig
        Supplies the layer and octave weights.

    Returns
    -------
    total : tf.Tensor, scalar
    per_octave : tf.Tensor, shape (octaves,)
        Each octave's weighted share, so ``sum(per_octave) == total``.
    """
    return _relative_loss(grams, targets, config=config)


def mean_loss(
    means: Mapping[GramKey, tf.Tensor],
    targets: Mapping[GramKey, tf.Tensor],
    *,
    config: DescriptorConfig,
) -> tuple[tf.Tensor, tf.Tensor]:
    """The multiscale first-moment loss: ``‖μ − μ_t‖² / max(‖μ_t‖², floor)`` per (octave, layer),
    weighted as the Gram terms (:func:`weighted_terms`).

    Parameters
    ----------
    means, targets : dict of (octave, layer) → tf.Tensor (C,)
        Mean feature vectors (:func:`multiscale.measure.gram.feature_mean`); same keys;
        targets are constants.
    config : DescriptorConfig

    Returns
    -------
    total : tf.Tensor, scalar
    per_octave : tf.Tensor, shape (octaves,)
    """
    return _relative_loss(means, targets, config=config)


def _relative_loss(
    values: Mapping[GramKey, tf.Tensor], targets: Mapping[GramKey, tf.Tensor], *, config: DescriptorConfig
) -> tuple[tf.Tensor, tf.Tensor]:
    """Weighted mean of ``‖v − t‖² / max(‖t‖², floor)`` over the keys, for arrays of any shape."""
    terms = {}
    for key, a in targets.items():
        terms[key] = tf.reduce_sum(tf.square(values[key] - a)) / tf.maximum(
            tf.reduce_sum(tf.square(a)), _NORM_FLOOR
        )
    return weighted_terms(terms, config=config)


def sliced_term(
    flat: tf.Tensor,
    d: tf.Tensor,
    target: Callable[[], TargetQuantiles] | TargetQuantiles | tf.Tensor | np.ndarray,
    norm: tf.Tensor | float,
) -> tf.Tensor:
    """One key's relative sliced term, differentiable (TF).

    Parameters
    ----------
    flat : tf.Tensor (N, C)
        The output's feature vectors.
    d : tf.Tensor (C, K)
    target : TargetQuantiles at N levels, a function returning them, or an (N, K) array
        The targets. A function is called each time the term runs, so a
        traced objective reads the current draw's targets
        (:class:`~multiscale.objectives.base.SlicedDraws`).
    norm : tf.Tensor scalar
        The targets' mean square (:meth:`TargetQuantiles.norm`).
    """
    projected = direction_projections(flat, d)  # (K, N): a row per direction
    if callable(target):
        return _sorted_distance(projected, target) / norm
    fixed = target if isinstance(target, TargetQuantiles) else TargetQuantiles.of(np.asarray(target))

    def current() -> TargetQuantiles:
        return fixed

    return _sorted_distance(projected, current) / norm


def _sorted_distance(projected: tf.Tensor, target: Callable[[], TargetQuantiles]) -> tf.Tensor:
    """``mean((sort(projected) − target)²)`` over the rows of (K, N) ``projected`` (a row per
    direction), ranked in numpy (:func:`sorted_cotangent`, several times faster than ``tf.sort``
    and its gradient on a CPU); the targets are constants."""

    def ranked(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        value, grad = sorted_cotangent(p, target(), 1.0)
        return np.asarray(value, p.dtype), grad

    @tf.custom_gradient
    def distance(p: tf.Tensor) -> tuple[tf.Tensor, object]:
        value, grad = tf.numpy_function(ranked, [p], [p.dtype, p.dtype], stateful=True)
        value.set_shape([])
        grad.set_shape(p.shape)

        def backward(upstream: tf.Tensor) -> tf.Tensor:
            return upstream * grad

        return value, backward

    return distance(projected)


#: Names of the loss terms, in the order :class:`StylizeObjective` reports them.
TERMS = ("content", "style", "tv")


def content_loss(features: Mapping[str, tf.Tensor], targets: Mapping[str, tf.Tensor]) -> tf.Tensor:
    """The normalised content loss (see the module docstring).

    Parameters
    ----------
    features, targets : dict of layer name → tf.Tensor (1, h, w, C)
        Same keys and shapes; targets are constants.

    Returns
    -------
    tf.Tensor, scalar.
    """
    terms = []
    for layer, target in targets.items():
        err = tf.reduce_mean(tf.square(features[layer] - target))
        terms.append(err / tf.maximum(tf.reduce_mean(tf.square(target)), _NORM_FLOOR))
    return tf.add_n(terms) / len(terms)


def total_variation(x: tf.Tensor) -> tf.Tensor:
    """Mean squared difference of vertically and horizontally adjacent pixels.

    Parameters
    ----------
    x : tf.Tensor, (1, H, W, C), H and W ≥ 2

    Returns
    -------
    tf.Tensor, scalar: the average of the vertical and horizontal means.
    """
    dy = x[:, 1:, :, :] - x[:, :-1, :, :]
    dx = x[:, :, 1:, :] - x[:, :, :-1, :]
    return (tf.reduce_mean(tf.square(dy)) + tf.reduce_mean(tf.square(dx))) / 2
