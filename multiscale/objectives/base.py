"""What every objective shares: the sliced directions' draws, and the glue between
TensorFlow gradients and the optimisers' flat pixel vectors.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from .._tf import tf
from ..config import DescriptorConfig
from ..layers import GramKey
from ..measure.gram import output_positions
from ..measure.sliced import REDRAW_EVERY, SlicedTargets, sorted_cotangent, target_norm
from .terms import sliced_term, term_shares, weighted_terms


class Redrawable:
    """What every objective with sliced terms offers its job: the current draw and a new one.

    A subclass sets ``self._draws`` (:class:`SlicedDraws`) and ``self.redraw_every``.
    """

    _draws: SlicedDraws
    redraw_every: int | None

    @property
    def draw(self) -> int | None:
        """The sliced directions' current draw (``None``: no sliced term)."""
        return self._draws.draw

    def redraw(self, draw: int) -> None:
        """Use the sliced directions of ``draw`` from now on (no-op without a sliced term)."""
        self._draws.set(draw)


def gradient_like(x: np.ndarray, grad: np.ndarray) -> np.ndarray:
    """A gradient from TF, flattened, in the driver's dtype: float32 for a float32 iterate
    (the projected driver on very large images, no copy), float64 otherwise (scipy)."""
    flat = np.reshape(grad, -1)
    return flat.astype(np.float32 if np.asarray(x).dtype == np.float32 else np.float64, copy=False)


class SlicedDraws:
    """The sliced terms' directions and target quantiles of the current draw.

    Held in TF variables (directions (C, K), targets (N, K) and a norm per
    (octave, layer)), so a new draw is an assignment, not a new trace. Shared
    by the untiled objectives (:meth:`loss`, inside their traced functions)
    and the tiled ones (:meth:`numpy`).

    Parameters
    ----------
    config : DescriptorConfig
    height, width : int
        Output size: sets N, the positions of each (octave, layer) map.
    sliced : SlicedTargets or None
        Required when ``config.statistics`` has ``sliced``.
    seed : int
    dtype : tf.DType
    active : bool
        ``False`` turns the sliced terms off whatever ``config`` says (a
        style transfer without a style term).
    """

    def __init__(
        self,
        *,
        config: DescriptorConfig,
        height: int,
        width: int,
        sliced: SlicedTargets | None,
        seed: int,
        dtype: tf.DType,
        active: bool = True,
    ) -> None:
        self.active = active and "sliced" in config.statistics
        self.config = config
        self._dtype = dtype
        self.seed = seed
        self.draw: int | None = None
        self.redraw_every = REDRAW_EVERY if self.active else None
        if not self.active:
            return
        if sliced is None:
            raise ValueError("the sliced statistic needs the sources' features (SlicedTargets)")
        self.sliced = sliced
        self.counts = output_positions(height, width, config=config)
        self._dirs, self._targets, self._norms = {}, {}, {}
        for key, feats in sliced.features.items():
            c = feats[0].shape[1]
            self._dirs[key] = tf.Variable(tf.zeros([c, c], dtype), trainable=False)
            self._targets[key] = tf.Variable(tf.zeros([self.counts[key], c], dtype), trainable=False)
            self._norms[key] = tf.Variable(tf.ones([], dtype), trainable=False)
        self.set(0)

    def set(self, draw: int) -> None:
        """Draw ``draw``'s directions and targets (no-op if already current or inactive)."""
        if not self.active or draw == self.draw:
            return
        np_dtype = self._dtype.as_numpy_dtype
        for key, (d, target) in self.sliced.draw(seed=self.seed, draw=draw, counts=self.counts).items():
            self._dirs[key].assign(d.astype(np_dtype))
            self._targets[key].assign(target.astype(np_dtype))
            self._norms[key].assign(target_norm(target))
        self.draw = draw

    def loss(self, features: Mapping[GramKey, tf.Tensor]) -> tuple[tf.Tensor, tf.Tensor]:
        """(total, per octave) of the sliced terms for the features of one image (TF, differentiable)."""
        terms = {}
        for key, f in features.items():
            flat = tf.reshape(f, [-1, tf.shape(f)[-1]])
            terms[key] = sliced_term(flat, self._dirs[key], self._targets[key], self._norms[key])
        return weighted_terms(terms, config=self.config)

    def numpy(self, key: GramKey) -> tuple[np.ndarray, np.ndarray, float]:
        """(directions, targets, norm) of ``key`` in the current draw, as numpy values."""
        return self._dirs[key].numpy(), self._targets[key].numpy(), float(self._norms[key].numpy())


def _sliced_terms(
    draws: SlicedDraws, projections: Mapping[GramKey, Sequence[np.ndarray]], *, scale: float
) -> tuple[float, np.ndarray, dict[GramKey, list[np.ndarray]]]:
    """The sliced loss from every tile's projections, ranked together, and each tile's gradient.

    Returns the total, its share per octave (both unscaled) and, per key,
    the gradient of ``scale ×`` the total with respect to each tile's
    projections, in tile order.
    """
    per_octave = np.zeros(draws.config.octaves)
    seeds: dict[GramKey, list[np.ndarray]] = {}
    if not draws.active:
        return 0.0, per_octave, seeds
    shares = term_shares(draws.config)
    for key, parts in projections.items():
        _, target, norm = draws.numpy(key)
        value, grad = sorted_cotangent(np.concatenate(parts), target, shares[key] / norm)
        per_octave[key[0]] += value
        if scale != 1.0:
            grad *= scale
        seeds[key] = np.split(grad, np.cumsum([len(p) for p in parts])[:-1])
    return float(per_octave.sum()), per_octave, seeds


def _directions(draws: SlicedDraws) -> dict[GramKey, tf.Tensor] | None:
    """The current draw's directions per sliced key, as constants (``None``: no sliced term)."""
    if not draws.active:
        return None
    return {key: tf.constant(draws.numpy(key)[0]) for key in draws.counts}


def _divisor(value: float, dtype: tf.DType) -> tf.Tensor:
    return tf.constant(float(value), dtype=dtype)
