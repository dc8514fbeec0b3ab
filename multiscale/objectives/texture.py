"""The texture objective (synthesis): the multiscale statistics loss of one image, whole or in tiles.

Style (texture) loss of an image x against target Grams A::

    L_gram(x) = Σ_k Σ_l  w_k · w_l · ‖G_kl(x) − A_kl‖²_F / ‖A_kl‖²_F   /   Σ_k Σ_l w_k · w_l

with k over octaves, l over layers, w the octave and layer weights. Each
term is a *relative* squared error, so layers with large activations do not
drown the others and octaves of any size count alike; the whole is a
weighted mean, so 0.01 reads as "Grams within about 10 %".

With ``"sliced"`` among the descriptor's ``statistics``, the relative
sliced-Wasserstein terms of :mod:`multiscale.measure.sliced` are weighted the same
way and added: ``L = L_gram + L_sliced`` (each present statistic once). With
``"mean"``, so are the relative first-moment terms::

    L_mean(x) = Σ_k Σ_l  w_k · w_l · ‖μ_kl(x) − m_kl‖² / max(‖m_kl‖², ε)   /   Σ_k Σ_l w_k · w_l

with μ_kl the layer's mean feature vector over positions (C,) and m_kl the
target's.

The terms themselves are in :mod:`multiscale.objectives.terms`; the tiled
evaluation's mathematics in :mod:`multiscale.measure.engine`.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .._tf import tf
from ..config import DescriptorConfig
from ..layers import GramKey
from ..measure.backbone import VGG16
from ..measure.engine import (
    _TiledPasses,
)
from ..measure.gram import pyramid_features
from ..measure.sliced import SlicedTargets
from .base import (
    Evaluation,
    Objective,
    SlicedDraws,
    Statistics,
    _directions,
    compiled,
    gradient_like,
    texture_evaluation,
)


class StyleObjective(Objective):
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
    means : dict of (octave, layer) → np.ndarray (C,) or None
        The mean feature vectors to match, needed when ``config.statistics`` has ``mean``.

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
        means: Mapping[GramKey, np.ndarray] | None = None,
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
        statistics = Statistics(config=config, grams=targets, draws=self._draws, dtype=dtype, means=means)

        def loss_of(x: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            return statistics.loss(pyramid_features(x, network=network, config=config))

        self._loss_and_grad, self._loss_only = compiled(loss_of, self.shape, dtype)

    def __call__(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        """Loss and gradient at the flat pixel vector ``x`` (RGB in [0, 1]).

        Returns
        -------
        loss : float
        grad : np.ndarray, same shape as ``x``; float64, or float32 for a float32 ``x``
        """
        t = tf.constant(np.reshape(x, self.shape), dtype=self._dtype)
        total, grad, per_octave = self._loss_and_grad(t)
        self.last = texture_evaluation(float(total.numpy()), per_octave.numpy().astype(np.float64))
        return self.last.total, gradient_like(x, grad.numpy())

    def evaluate(self, image: np.ndarray) -> Evaluation:
        """Loss and per-octave losses of an (H, W, 3) image in [0, 1], no gradient."""
        t = tf.constant(np.reshape(image, self.shape), dtype=self._dtype)
        total, per_octave = self._loss_only(t)
        return texture_evaluation(float(total.numpy()), per_octave.numpy().astype(np.float64))


class TiledStyleObjective(Objective):
    """:class:`multiscale.objectives.texture.StyleObjective`, evaluated tile by tile.

    Same interface and, to float32 rounding, the same values; peak memory
    is set by the largest tile instead of the image. Each tile's forward
    pass and its back-propagation are compiled TF functions (one trace per
    kind of tile: first, middle or last along each axis).

    The mean terms are exact too (sums of the features, see
    :mod:`multiscale.measure.engine`). The sliced terms are exact as well: the first pass keeps every tile's
    projections ``Dᵀ Fᵀ`` (a row per direction), they are ranked together (the
    sort is global, as in the untiled loss), and the second pass
    back-propagates each tile's columns of the gradient (:func:`multiscale.measure.sliced.sorted_cotangent`).

    Parameters
    ----------
    targets : dict of (octave, layer) → np.ndarray (C, C)
    network : VGG16
    config : DescriptorConfig
    height, width : int
        Output size in pixels.
    tile : int or None
        Interior size of a tile, in pixels of the octave it cuts; octaves
        no larger are one tile. ``None``: every octave is one tile.
    sliced, seed, means
        As :class:`~multiscale.objectives.texture.StyleObjective`.
    """

    def __init__(
        self,
        *,
        targets: Mapping[GramKey, np.ndarray],
        network: VGG16,
        config: DescriptorConfig,
        height: int,
        width: int,
        tile: int | None,
        sliced: SlicedTargets | None = None,
        seed: int = 0,
        means: Mapping[GramKey, np.ndarray] | None = None,
    ) -> None:
        self.shape = (1, height, width, 3)
        self.size = height * width * 3
        self.config = config
        self.tile = tile
        self._draws = SlicedDraws(
            config=config, height=height, width=width, sliced=sliced, seed=seed, dtype=network.dtype
        )
        self.redraw_every = self._draws.redraw_every
        self._passes = _TiledPasses(
            network=network, config=config, height=height, width=width, tile=tile,
            gram="gram" in config.statistics, sliced=self._draws.active, mean="mean" in config.statistics,
        )  # fmt: skip
        self.plans = self._passes.plans
        self._statistics = Statistics(
            config=config, grams=targets, draws=self._draws, dtype=network.dtype, means=means
        )

    def _evaluate(self, image: np.ndarray, *, gradient: bool) -> tuple[float, np.ndarray | None, np.ndarray]:
        passes = self._passes
        x = tf.constant(np.reshape(image, self.shape), dtype=passes.dtype)
        levels = passes.pyramid(x)
        dirs_tf = _directions(self._draws)
        sums = passes.first_pass(levels, {}, dirs_tf)
        total, per_octave, seeds = self._statistics.tiled(
            sums, lambda key: self.plans[key[0]].positions(key[1]), scale=1.0, gradient=gradient
        )
        grad = None
        if gradient:
            grad = passes.second_pass(x, levels, {}, seeds, 0.0, dirs_tf)
        return total, grad, per_octave

    def __call__(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        """Loss and gradient at the flat float64 pixel vector ``x`` (RGB in [0, 1]).

        Returns
        -------
        loss : float
        grad : np.ndarray, same shape as ``x``; float64, or float32 for a float32 ``x``
        """
        total, grad, per_octave = self._evaluate(x, gradient=True)
        self.last = texture_evaluation(total, per_octave)
        if grad is None:
            raise RuntimeError("the tiled evaluation returned no gradient")
        return total, gradient_like(x, grad)

    def evaluate(self, image: np.ndarray) -> Evaluation:
        """Loss and per-octave losses of an (H, W, 3) image in [0, 1], no gradient."""
        total, _, per_octave = self._evaluate(image, gradient=False)
        return texture_evaluation(total, per_octave)
