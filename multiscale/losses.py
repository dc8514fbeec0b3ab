"""Loss terms built from texture statistics, and the objective handed to the driver.

Style (texture) loss of an image x against target Grams A::

    L_gram(x) = Σ_k Σ_l  w_k · w_l · ‖G_kl(x) − A_kl‖²_F / ‖A_kl‖²_F   /   Σ_k Σ_l w_k · w_l

with k over octaves, l over layers, w the octave and layer weights. Each
term is a *relative* squared error, so layers with large activations do not
drown the others and octaves of any size count alike; the whole is a
weighted mean, so 0.01 reads as "Grams within about 10 %".

With ``"sliced"`` among the descriptor's ``statistics``, the relative
sliced-Wasserstein terms of :mod:`multiscale.sliced` are weighted the same
way and added: ``L = L_gram + L_sliced`` (each present statistic once).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ._tf import tf
from .backbone import VGG16
from .config import DescriptorConfig
from .gram import GramKey, gram_matrix, output_positions, pyramid_features
from .sliced import REDRAW_EVERY, SlicedTargets, target_norm

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
        tf.add_n([shares[(k, layer)] * terms[(k, layer)] for layer in config.layers])
        for k in range(config.octaves)
    ]
    stacked = tf.stack(per_octave)
    return tf.reduce_sum(stacked), stacked


def term_shares(config: DescriptorConfig) -> dict[GramKey, float]:
    """Each (octave, layer) term's weight in :func:`weighted_terms` (they sum to 1)."""
    lw = dict(zip(config.layers, config.resolved_layer_weights, strict=False))
    ow = config.resolved_octave_weights
    norm = sum(ow) * sum(lw.values())
    return {(k, layer): ow[k] * lw[layer] / norm for k in range(config.octaves) for layer in config.layers}


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
    terms = {}
    for key, a in targets.items():
        terms[key] = tf.reduce_sum(tf.square(grams[key] - a)) / tf.maximum(
            tf.reduce_sum(tf.square(a)), _NORM_FLOOR
        )
    return weighted_terms(terms, config=config)


def sliced_term(flat: tf.Tensor, d: tf.Tensor, target: tf.Tensor, norm: tf.Tensor) -> tf.Tensor:
    """One key's relative sliced term, differentiable (TF).

    Parameters
    ----------
    flat : tf.Tensor (N, C)
        The output's feature vectors.
    d : tf.Tensor (C, K)
    target : tf.Tensor (N, K)
        Target quantiles at the N levels.
    norm : tf.Tensor scalar
        :func:`target_norm` of ``target``.
    """
    projected = tf.matmul(flat, d)
    ranked = tf.transpose(tf.sort(tf.transpose(projected), axis=-1))
    return tf.reduce_mean(tf.square(ranked - target)) / norm


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


class StyleObjective(Redrawable):
    """Loss and gradient of the texture loss over the pixels of one image.

    Built once per output size; :meth:`__call__` is what the L-BFGS driver
    calls. The pixel vector is float64 (or float32) at the driver's boundary
    and the network's dtype inside TensorFlow; the conversion happens here,
    once each way.

    Parameters
    ----------
    targets : dict of (octave, layer) → np.ndarray (C, C)
        The Grams to match (float64 is fine; cast to the network's dtype).
        Unused (may be empty) when ``config.statistics`` has no ``gram``.
    network : VGG16
    config : DescriptorConfig
    height, width : int
        Output size in pixels.
    sliced : SlicedTargets or None
        The sources' features, needed when ``config.statistics`` has ``sliced``.
    seed : int
        Seeds the sliced terms' directions (with the draw number, see :meth:`redraw`).

    Attributes
    ----------
    redraw_every : int or None
        Iterations between two draws of the sliced directions (``None``: no
        sliced term, the objective never changes).
    """

    def __init__(
        self,
        *,
        targets: Mapping[GramKey, np.ndarray],
        network: VGG16,
        config: DescriptorConfig,
        height: int,
        width: int,
        sliced: SlicedTargets | None = None,
        seed: int = 0,
    ) -> None:
        self.shape = (1, height, width, 3)
        self.size = height * width * 3
        self.config = config
        self.network = network
        dtype = network.dtype
        self._dtype = dtype
        self._draws = SlicedDraws(
            config=config, height=height, width=width, sliced=sliced, seed=seed, dtype=dtype
        )
        self.redraw_every = self._draws.redraw_every
        use_gram = "gram" in config.statistics
        self._targets = {key: tf.constant(g, dtype=dtype) for key, g in targets.items()} if use_gram else {}
        self.last_octave_losses: np.ndarray | None = None
        draws = self._draws

        def loss_of(x: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            feats = pyramid_features(x, network=network, config=config)
            parts = []
            if use_gram:
                parts.append(
                    style_loss({k: gram_matrix(f) for k, f in feats.items()}, self._targets, config=config)
                )
            if draws.active:
                parts.append(draws.loss(feats))
            total = tf.add_n([p[0] for p in parts])
            return total, tf.add_n([p[1] for p in parts])

        # autograph=False here and in every traced function of the package: the
        # graphs are Python loops over static structure (octaves, layers, tiles),
        # and autograph's conversion alone cost 1.2–2 s of a 128² objective's
        # first call (1.9–2.9 s against 0.7–0.8 s, measured).
        @tf.function(
            input_signature=[tf.TensorSpec(self.shape, dtype)], reduce_retracing=True, autograph=False
        )
        def loss_and_grad(x: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
            with tf.GradientTape() as tape:
                tape.watch(x)
                total, per_octave = loss_of(x)
            return total, tape.gradient(total, x), per_octave

        @tf.function(
            input_signature=[tf.TensorSpec(self.shape, dtype)], reduce_retracing=True, autograph=False
        )
        def loss_only(x: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            return loss_of(x)

        self._loss_and_grad = loss_and_grad
        self._loss_only = loss_only

    def __call__(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        """Loss and gradient at the flat pixel vector ``x`` (RGB in [0, 1]).

        Returns
        -------
        loss : float
        grad : np.ndarray, same shape as ``x``; float64, or float32 for a float32 ``x``
        """
        t = tf.constant(np.reshape(x, self.shape), dtype=self._dtype)
        total, grad, per_octave = self._loss_and_grad(t)
        self.last_octave_losses = per_octave.numpy().astype(np.float64)
        return float(total.numpy()), gradient_like(x, grad.numpy())

    def loss(self, image: np.ndarray) -> tuple[float, np.ndarray]:
        """Loss (and per-octave losses) of an (H, W, 3) image in [0, 1], no gradient."""
        t = tf.constant(np.reshape(image, self.shape), dtype=self._dtype)
        total, per_octave = self._loss_only(t)
        return float(total.numpy()), per_octave.numpy().astype(np.float64)


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
