"""The objective protocol every objective implements, and what they share.

An objective is what an optimiser minimises over the pixels of one output
(or of N animation frames):

* ``objective(x) -> (loss, grad)``: value and gradient at the flat pixel
  vector ``x`` (float64, or float32 for the projected driver on very large
  images; the gradient comes back in ``x``'s dtype). The evaluation's
  breakdown is kept in :attr:`Objective.last`.
* ``objective.evaluate(image) -> Evaluation``: value only, with the
  breakdown: each term unweighted by name, the weights, and the statistics'
  share per octave.
* ``shape``, ``size``, ``config``; ``tile`` (the tile size of a tiled
  evaluation, ``None`` for a whole-image one); ``precision`` (the precision
  choice the objective's network runs in, as recorded, ``None`` for
  float32); ``draw``, ``redraw(draw)`` and ``redraw_every`` for the sliced
  statistic's directions (``redraw_every`` is ``None`` when the objective
  never changes).

Where a new statistic goes, without touching the objectives' classes or
the jobs:

* a statistic of the network's features: :class:`Statistics` (its loss on
  whole-image features, and on the tile engine's sums, with the per-tile
  part the engine accumulates in :mod:`multiscale.measure.engine`);
* a term of the image alone (no network, such as the spectrum constraint):
  :func:`multiscale.objectives.image_terms.image_terms`; it joins any
  objective through :class:`WithImageTerms`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._tf import tf
from ..config import DescriptorConfig
from ..layers import GramKey
from ..measure.engine import TileSeeds, TileSums
from ..measure.gram import feature_mean, gram_matrix, output_positions
from ..measure.sliced import REDRAW_EVERY, QuantileBank, SlicedTargets, TargetQuantiles, sorted_cotangent
from .terms import mean_loss, sliced_term, style_loss, term_shares, weighted_terms


@dataclass(frozen=True)
class Evaluation:
    """One evaluation of an objective, broken down.

    Attributes
    ----------
    total : float
        ``Σ weights[name] · terms[name]``, the value the optimiser sees.
    terms : dict of str → float
        Each term unweighted: ``style`` (the multiscale statistics' loss) for
        every objective, plus ``content`` and ``tv`` for style transfer,
        ``frames`` for animation, ``spectrum`` with the spectrum constraint.
        A term whose weight is 0 is not computed and reads 0.
    weights : dict of str → float
        Same keys.
    octave_losses : np.ndarray float64 (octaves,)
        Each octave's share of the unweighted ``style`` term (they sum to it).
    """

    total: float
    terms: dict[str, float]
    weights: dict[str, float]
    octave_losses: np.ndarray

    def weighted(self, name: str) -> float:
        """A term's weighted share of :attr:`total` (0 for a term not there)."""
        return self.weights.get(name, 0.0) * self.terms.get(name, 0.0)


class Objective:
    """The protocol of every objective (see the module docstring); subclasses implement
    ``__call__`` (setting :attr:`last`) and :meth:`evaluate`.

    Draws of the sliced directions are delegated to ``self._draws``
    (:class:`SlicedDraws`), which a subclass with network statistics sets.
    """

    shape: tuple[int, ...]
    size: int
    config: DescriptorConfig
    #: Interior tile size of a tiled evaluation; ``None``: whole images.
    tile: int | None = None
    #: The precision choice the network runs in (``PrecisionChoice.to_dict()``); ``None``: float32.
    precision: dict[str, Any] | None = None
    #: The breakdown of the latest ``__call__`` (``None`` before the first).
    last: Evaluation | None = None
    redraw_every: int | None = None
    _draws: SlicedDraws | None = None

    def __call__(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        raise NotImplementedError

    def evaluate(self, image: np.ndarray) -> Evaluation:
        """Value and breakdown of an image (the shape of ``shape`` without its leading 1), no gradient."""
        raise NotImplementedError

    @property
    def draw(self) -> int | None:
        """The sliced directions' current draw (``None``: no sliced term)."""
        return None if self._draws is None else self._draws.draw

    def redraw(self, draw: int) -> None:
        """Use the sliced directions of ``draw`` from now on (no-op without a sliced term)."""
        if self._draws is not None:
            self._draws.set(draw)


def texture_evaluation(total: float, octave_losses: np.ndarray) -> Evaluation:
    """The breakdown of a texture objective: one ``style`` term of weight 1."""
    return Evaluation(
        total=total, terms={"style": total}, weights={"style": 1.0}, octave_losses=octave_losses
    )


@dataclass(frozen=True)
class ImageTerm:
    """A weighted term of the image alone (no network).

    ``fn(image) -> (value, grad)`` for an (H, W, C) float image; ``grad`` has
    its shape. Built by :func:`multiscale.objectives.image_terms.image_terms`.
    """

    name: str
    weight: float
    fn: Callable[[np.ndarray], tuple[float, np.ndarray]]


class Wrapping(Objective):
    """An objective built around another, ``inner``, whose tiling, precision and draws are its own."""

    inner: Objective

    @property
    def tile(self) -> int | None:  # type: ignore[override]
        return self.inner.tile

    @property
    def precision(self) -> dict[str, Any] | None:  # type: ignore[override]
        return self.inner.precision

    @property
    def draw(self) -> int | None:
        return self.inner.draw

    def redraw(self, draw: int) -> None:
        self.inner.redraw(draw)


class WithImageTerms(Wrapping):
    """An objective plus weighted terms of its image: ``L = L_inner + Σ weight · term(image)``.

    Terms are evaluated in float64 numpy on the whole image; their gradient
    is added in the driver's dtype.
    """

    def __init__(self, inner: Objective, terms: Sequence[ImageTerm]) -> None:
        self.inner = inner
        self.terms = tuple(terms)
        self.shape, self.size, self.config = inner.shape, inner.size, inner.config
        self.redraw_every = inner.redraw_every

    def _plus(
        self, inner: Evaluation, total: float, image: np.ndarray, grad: np.ndarray | None
    ) -> Evaluation:
        terms, weights = dict(inner.terms), dict(inner.weights)
        for term in self.terms:
            value, g = term.fn(image)
            terms[term.name], weights[term.name] = value, term.weight
            total += term.weight * value
            if grad is not None:
                grad += (term.weight * g.reshape(-1)).astype(grad.dtype, copy=False)
        return Evaluation(total=total, terms=terms, weights=weights, octave_losses=inner.octave_losses)

    def __call__(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        loss, grad = self.inner(x)
        grad = np.array(grad, copy=True) if not grad.flags.writeable else grad
        if self.inner.last is None:
            raise RuntimeError("the inner objective recorded no evaluation")
        # the total from the value returned (not the breakdown): what the driver checks for finiteness
        self.last = self._plus(self.inner.last, loss, np.reshape(x, self.shape[1:]), grad)
        return self.last.total, grad

    def evaluate(self, image: np.ndarray) -> Evaluation:
        inner = self.inner.evaluate(image)
        return self._plus(inner, inner.total, np.reshape(image, self.shape[1:]), None)


def gradient_like(x: np.ndarray, grad: np.ndarray) -> np.ndarray:
    """A gradient from TF, flattened, in the driver's dtype: float32 for a float32 iterate
    (the projected driver on very large images, no copy), float64 otherwise (scipy)."""
    flat = np.reshape(grad, -1)
    return flat.astype(np.float32 if np.asarray(x).dtype == np.float32 else np.float64, copy=False)


class SlicedDraws:
    """The sliced terms' directions and target quantiles of the current draw.

    Directions (C, K) and a norm per (octave, layer) are TF variables, so a
    new draw is an assignment, not a new trace; the targets are
    :class:`~multiscale.measure.sliced.TargetQuantiles`, read a block of
    directions at a time where they are ranked, never as an (N, K) array.
    Shared by the untiled objectives (:meth:`loss`, inside their traced
    functions, which read the current draw's targets when they run) and the
    tiled ones (:meth:`numpy`).

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
        sliced: SlicedTargets | QuantileBank | None,
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
            raise ValueError("the sliced statistic needs the sources' features or a quantile bank")
        self.sliced = sliced
        self.counts = output_positions(height, width, config=config)
        self._dirs, self._norms = {}, {}
        self._targets: dict[GramKey, TargetQuantiles] = {}
        for key, c in sliced.channels.items():
            self._dirs[key] = tf.Variable(tf.zeros([c, c], dtype), trainable=False)
            self._norms[key] = tf.Variable(tf.ones([], dtype), trainable=False)
        self.set(0)

    def set(self, draw: int) -> None:
        """Draw ``draw``'s directions and targets (no-op if already current or inactive)."""
        if not self.active or draw == self.draw:
            return
        np_dtype = self._dtype.as_numpy_dtype
        for key, (d, target) in self.sliced.draw(seed=self.seed, draw=draw, counts=self.counts).items():
            self._dirs[key].assign(d.astype(np_dtype))
            self._targets[key] = target
            self._norms[key].assign(target.norm())
        self.draw = draw

    def loss(self, features: Mapping[GramKey, tf.Tensor]) -> tuple[tf.Tensor, tf.Tensor]:
        """(total, per octave) of the sliced terms for the features of one image (TF, differentiable)."""
        terms = {}
        for key, f in features.items():
            flat = tf.reshape(f, [-1, tf.shape(f)[-1]])
            terms[key] = sliced_term(
                flat, self._dirs[key], functools.partial(self.targets, key), self._norms[key]
            )
        return weighted_terms(terms, config=self.config)

    def targets(self, key: GramKey) -> TargetQuantiles:
        """``key``'s targets in the current draw."""
        return self._targets[key]

    def numpy(self, key: GramKey) -> tuple[np.ndarray, TargetQuantiles, float]:
        """(directions as numpy, targets, norm) of ``key`` in the current draw."""
        return self._dirs[key].numpy(), self._targets[key], float(self._norms[key].numpy())


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
        value, grad = sorted_cotangent(np.concatenate(parts, axis=1), target, shares[key] / norm)
        per_octave[key[0]] += value
        if scale != 1.0:
            grad *= scale
        seeds[key] = np.split(grad, np.cumsum([p.shape[1] for p in parts])[:-1], axis=1)
    return float(per_octave.sum()), per_octave, seeds


def _directions(draws: SlicedDraws) -> dict[GramKey, tf.Tensor] | None:
    """The current draw's directions per sliced key, as constants (``None``: no sliced term)."""
    if not draws.active:
        return None
    return {key: tf.constant(draws.numpy(key)[0]) for key in draws.counts}


def _divisor(value: float, dtype: tf.DType) -> tf.Tensor:
    return tf.constant(float(value), dtype=dtype)


class Statistics:
    """The ``style`` term every objective shares: the multiscale statistics of the image's features
    against the targets' (Gram, sliced and/or mean, as ``config.statistics`` says).

    This is where a network statistic lives: :meth:`loss` for a whole-image
    evaluation (traced TF) and :meth:`tiled` for the tile engine's sums; the
    objectives only hand over features or sums.

    Parameters
    ----------
    config : DescriptorConfig
    grams : dict of (octave, layer) → np.ndarray (C, C) or None
        Target Grams (used when ``config.statistics`` has ``gram``).
    draws : SlicedDraws
        The sliced terms' directions and targets (inactive without ``sliced``).
    dtype : tf.DType
        The network's.
    active : bool
        ``False``: no style term at all (a style transfer with style weight 0).
    means : dict of (octave, layer) → np.ndarray (C,) or None
        Target mean feature vectors; required when ``config.statistics`` has ``mean``.
    """

    def __init__(
        self,
        *,
        config: DescriptorConfig,
        grams: Mapping[GramKey, np.ndarray] | None,
        draws: SlicedDraws,
        dtype: tf.DType,
        active: bool = True,
        means: Mapping[GramKey, np.ndarray] | None = None,
    ) -> None:
        if "auto" in config.statistics:
            raise ValueError("statistics 'auto' must be resolved by the job before an objective is built")
        self.config, self.draws, self.dtype = config, draws, dtype
        self.use_gram = active and "gram" in config.statistics
        self.use_mean = active and "mean" in config.statistics
        self.targets = (
            {k: tf.constant(g, dtype=dtype) for k, g in (grams or {}).items()} if self.use_gram else {}
        )
        if self.use_mean and not means:
            raise ValueError("the mean statistic needs target mean feature vectors")
        self.mean_targets = (
            {k: tf.constant(m, dtype=dtype) for k, m in (means or {}).items()} if self.use_mean else {}
        )

    def loss(self, feats: Mapping[GramKey, tf.Tensor]) -> tuple[tf.Tensor, tf.Tensor]:
        """(total, per octave) of the features ``feats`` (1, h, w, C) per (octave, layer); TF, differentiable."""
        total, per_octave = tf.zeros([], self.dtype), tf.zeros([self.config.octaves], self.dtype)
        if self.use_gram:
            gram_total, gram_octaves = style_loss(
                {k: gram_matrix(f) for k, f in feats.items()}, self.targets, config=self.config
            )
            total, per_octave = total + gram_total, per_octave + gram_octaves
        if self.use_mean:
            mean_total, mean_octaves = mean_loss(
                {k: feature_mean(f) for k, f in feats.items()}, self.mean_targets, config=self.config
            )
            total, per_octave = total + mean_total, per_octave + mean_octaves
        if self.draws.active:
            sliced_total, sliced_octaves = self.draws.loss(feats)
            total, per_octave = total + sliced_total, per_octave + sliced_octaves
        return total, per_octave

    def tiled(
        self, sums: TileSums, positions: Callable[[GramKey], int], *, scale: float, gradient: bool
    ) -> tuple[float, np.ndarray, TileSeeds]:
        """The term from the tile engine's first pass: Gram sums ``Σ FᵀF``, feature sums ``Σ F``
        and every tile's projections.

        ``positions(key)``: the positions the sums run over. Returns the total
        and its per-octave shares (unscaled) and, with ``gradient``, the seeds
        of ``scale ×`` the term for the engine's second pass: per Gram (mean)
        key the gradient with respect to the sum, per sliced key each tile's
        (``errors`` is left empty).
        """
        total, per_octave = 0.0, np.zeros(self.config.octaves)
        seeds: dict[str, dict[GramKey, tf.Tensor]] = {"grams": {}, "means": {}}
        for name, use, loss, targets, got in (
            ("grams", self.use_gram, style_loss, self.targets, sums.grams),
            ("means", self.use_mean, mean_loss, self.mean_targets, sums.means),
        ):
            if not use:
                continue
            value, octaves, seeds[name] = _moment_term(
                got, targets, loss, positions, config=self.config, dtype=self.dtype,
                scale=scale if gradient else None,
            )  # fmt: skip
            total += value
            per_octave += octaves
        sliced_total, sliced_octaves, projection_seeds = _sliced_terms(
            self.draws, sums.projections, scale=scale
        )
        return (
            total + sliced_total,
            per_octave + sliced_octaves,
            TileSeeds(grams=seeds["grams"], means=seeds["means"], projections=projection_seeds),
        )


def _moment_term(
    sums: Mapping[GramKey, tf.Tensor],
    targets: Mapping[GramKey, tf.Tensor],
    loss: Callable[..., tuple[tf.Tensor, tf.Tensor]],
    positions: Callable[[GramKey], int],
    *,
    config: DescriptorConfig,
    dtype: tf.DType,
    scale: float | None,
) -> tuple[float, np.ndarray, dict[GramKey, tf.Tensor]]:
    """A moment's loss from its sums over positions (``Σ FᵀF`` or ``Σ F``, divided by the positions
    here) and, unless ``scale`` is ``None``, the seeds ``scale · ∂loss/∂sum``."""
    divisors = {key: _divisor(positions(key), dtype) for key in sums}
    moments = {key: s / divisors[key] for key, s in sums.items()}
    with tf.GradientTape(watch_accessed_variables=False) as tape:
        tape.watch(moments)
        value, octaves = loss(moments, targets, config=config)
    seeds = {}
    if scale is not None:
        grads = tape.gradient(value, moments)
        seeds = {key: scale * d / divisors[key] for key, d in grads.items()}
    return float(value.numpy()), octaves.numpy().astype(np.float64), seeds


def compiled(
    terms: Callable[[tf.Tensor], tuple[tf.Tensor, ...]], shape: tuple[int, ...], dtype: tf.DType
) -> tuple[Callable[[tf.Tensor], tuple[tf.Tensor, ...]], Callable[[tf.Tensor], tuple[tf.Tensor, ...]]]:
    """``terms(x) -> (total, *parts)`` traced twice: ``(total, ∂total/∂x, *parts)`` and ``(total, *parts)``.

    autograph is off here and in every traced function of the package: the
    graphs are Python loops over static structure (octaves, layers, tiles),
    and autograph's conversion alone took most of a small objective's first
    call (benchmarks/RESULTS.md, "Objective throughput").
    """
    spec = [tf.TensorSpec(shape, dtype)]

    @tf.function(input_signature=spec, reduce_retracing=True, autograph=False)
    def with_gradient(x: tf.Tensor) -> tuple[tf.Tensor, ...]:
        with tf.GradientTape() as tape:
            tape.watch(x)
            out = terms(x)
        return (out[0], tape.gradient(out[0], x), *out[1:])

    @tf.function(input_signature=spec, reduce_retracing=True, autograph=False)
    def value(x: tf.Tensor) -> tuple[tf.Tensor, ...]:
        return terms(x)

    return with_gradient, value
