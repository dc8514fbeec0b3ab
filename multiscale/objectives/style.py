"""The style-transfer objective: content, style and total-variation terms, whole or in tiles.

Content loss of an image x against a content image c over layers L::

    L_content(x) = (1/|L|) Σ_l  mean((F_l(x) − F_l(c))²) / mean(F_l(c)²)

F_l are the VGG16 activations of layer l at full resolution (octave 0). Each
term is the squared error relative to the content features' own mean square:
0 at the content, about 1 for an unrelated image, whatever the layer or the
image size.

Total variation, on pixel values in [0, 1]::

    L_tv(x) = ½ (mean((x[i+1, j] − x[i, j])²) + mean((x[i, j+1] − x[i, j])²))

(means over all neighbour pairs and channels; borders are not wrapped).

The objective of :class:`StylizeObjective` is::

    content_weight · L_content + style_weight · L_style + tv_weight · L_tv

with ``L_style`` the multiscale texture loss of :mod:`multiscale.objectives.terms` (Gram,
sliced-Wasserstein and/or first-moment terms, as ``config.statistics`` says) over every
octave of the output's Gaussian pyramid. The octave-0 pass of the
network serves both the style and the content terms.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np

from .._tf import tf
from ..config import DescriptorConfig
from ..layers import GramKey
from ..measure.backbone import VGG16, preprocess
from ..measure.engine import (
    _TiledPasses,
)
from ..measure.pyramid import gaussian_pyramid
from ..measure.sliced import SlicedTargets
from .base import (
    Evaluation,
    Objective,
    SlicedDraws,
    Statistics,
    _directions,
    _divisor,
    compiled,
    gradient_like,
)
from .terms import TERMS, content_loss, total_variation

#: Floor of mean(F(c)²) so a content image with dead features cannot divide by zero.
_NORM_FLOOR = 1e-8


def _evaluation(
    weights: tuple[float, float, float], total: float, stacked: np.ndarray, per_octave: np.ndarray
) -> Evaluation:
    """The breakdown of a style-transfer evaluation: ``content``, ``style`` and ``tv``."""
    return Evaluation(
        total=total, terms={n: float(v) for n, v in zip(TERMS, stacked, strict=True)},
        weights=dict(zip(TERMS, weights, strict=True)), octave_losses=np.asarray(per_octave, np.float64),
    )  # fmt: skip


class StylizeObjective(Objective):
    """Loss and gradient of the style-transfer objective over one image's pixels.

    Built once per stage size; :meth:`__call__` is what the L-BFGS-B driver
    calls. One ``tf.function`` with a fixed input signature computes the
    loss, its gradient, the three terms and the style loss per octave.

    Parameters
    ----------
    style_targets : dict of (octave, layer) → np.ndarray (C, C)
        Grams to match (the blended styles'). Unused if ``style_weight`` is 0.
    content_targets : dict of layer → np.ndarray (1, h, w, C)
        The content image's activations at this size. Unused if
        ``content_weight`` is 0.
    network : VGG16
        Its dtype is the graph's (float64 for gradient checks).
    config : DescriptorConfig
        How the style is measured.
    content_weight, style_weight, tv_weight : float
    height, width : int
        Image size in pixels.
    channels : {3, 1}
        3: the variables are RGB. 1: they are a luminance image, repeated
        into R, G and B before the network (``--preserve-color luminance``).
    sliced : SlicedTargets or None
        The styles' features, when ``config.statistics`` has ``sliced``.
    seed : int
        Seeds the sliced directions (see :meth:`redraw`).
    means : dict of (octave, layer) → np.ndarray (C,) or None
        The styles' blended mean feature vectors, when ``config.statistics``
        has ``mean`` (and ``style_weight`` > 0).
    """

    def __init__(
        self,
        *,
        style_targets: Mapping[GramKey, np.ndarray] | None,
        content_targets: Mapping[str, np.ndarray] | None,
        network: VGG16,
        config: DescriptorConfig,
        content_weight: float,
        style_weight: float,
        tv_weight: float,
        height: int,
        width: int,
        channels: int = 3,
        sliced: SlicedTargets | None = None,
        seed: int = 0,
        means: Mapping[GramKey, np.ndarray] | None = None,
    ) -> None:
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels!r}")
        self.shape = (1, height, width, channels)
        self.size = height * width * channels
        self.config = config
        dtype = network.dtype
        self._dtype = dtype
        use_style = style_weight > 0
        use_content = content_weight > 0
        draws = SlicedDraws(
            config=config, height=height, width=width, sliced=sliced if use_style else None, seed=seed,
            dtype=dtype, active=use_style,
        )  # fmt: skip
        self._draws = draws
        self.redraw_every = draws.redraw_every
        statistics = Statistics(
            config=config, grams=style_targets, draws=draws, dtype=dtype, active=use_style, means=means
        )
        self._content_targets = (
            {layer: tf.constant(f, dtype=dtype) for layer, f in content_targets.items()}
            if use_content
            else {}
        )
        content_layers = tuple(self._content_targets)
        self._weights = (float(content_weight), float(style_weight), float(tv_weight))
        weights = tf.constant(self._weights, dtype=dtype)

        def terms(x: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
            rgb = tf.tile(x, [1, 1, 1, 3]) if channels == 1 else x
            zero = tf.zeros([], dtype)
            octaves = config.octaves if use_style else 1
            levels = gaussian_pyramid(preprocess(rgb), octaves=octaves, padding=config.padding)
            style_feats: dict[GramKey, tf.Tensor] = {}
            feats_c: dict[str, tf.Tensor] = {}
            for k, level in enumerate(levels):
                wanted = (config.layers_at(k) if use_style else ()) + (content_layers if k == 0 else ())
                if not wanted:
                    continue
                feats = network.features(level, tuple(dict.fromkeys(wanted)))
                if use_style:
                    style_feats.update({(k, layer): feats[layer] for layer in config.layers_at(k)})
                if k == 0:
                    feats_c = {layer: feats[layer] for layer in content_layers}
            style, per_octave = statistics.loss(style_feats)
            content = content_loss(feats_c, self._content_targets) if use_content else zero
            tv = total_variation(x)
            stacked = tf.stack([content, style, tv])
            return tf.reduce_sum(weights * stacked), stacked, per_octave

        self._loss_and_grad, self._loss_only = compiled(terms, self.shape, dtype)

    def __call__(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        """Loss and gradient at the flat float64 pixel vector ``x`` (values in [0, 1]).

        Returns
        -------
        loss : float
        grad : np.ndarray, same shape as ``x``; float64, or float32 for a float32 ``x``
        """
        t = tf.constant(np.reshape(x, self.shape), dtype=self._dtype)
        total, grad, stacked, per_octave = self._loss_and_grad(t)
        self.last = _evaluation(self._weights, float(total.numpy()), stacked.numpy(), per_octave.numpy())
        return self.last.total, gradient_like(x, grad.numpy())

    def evaluate(self, image: np.ndarray) -> Evaluation:
        """Loss of an (H, W, channels) image in [0, 1] without gradient: the unweighted
        ``content``, ``style`` and ``tv`` terms, and each octave's share of the style term."""
        t = tf.constant(np.reshape(image, self.shape), dtype=self._dtype)
        total, stacked, per_octave = self._loss_only(t)
        return _evaluation(self._weights, float(total.numpy()), stacked.numpy(), per_octave.numpy())


class TiledStylizeObjective(Objective):
    """:class:`multiscale.objectives.style.StylizeObjective`, evaluated tile by tile.

    The content term is a sum over positions too, so each tile adds its
    interior's squared error to it in the first pass and back-propagates a
    constant seed in the second; total variation is taken on the whole image
    (it needs no network). Parameters as :class:`~multiscale.objectives.style.StylizeObjective`,
    plus ``tile``.
    """

    def __init__(
        self,
        *,
        style_targets: Mapping[GramKey, np.ndarray] | None,
        content_targets: Mapping[str, np.ndarray] | None,
        network: VGG16,
        config: DescriptorConfig,
        content_weight: float,
        style_weight: float,
        tv_weight: float,
        height: int,
        width: int,
        channels: int = 3,
        tile: int | None,
        sliced: SlicedTargets | None = None,
        seed: int = 0,
        means: Mapping[GramKey, np.ndarray] | None = None,
    ) -> None:
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels!r}")
        self.shape = (1, height, width, channels)
        self.size = height * width * channels
        self.config = config
        self.tile = tile
        dtype = network.dtype
        self._weights = (float(content_weight), float(style_weight), float(tv_weight))
        self._use_style = style_weight > 0
        self._draws = SlicedDraws(
            config=config, height=height, width=width, sliced=sliced if self._use_style else None, seed=seed,
            dtype=dtype, active=self._use_style,
        )  # fmt: skip
        self.redraw_every = self._draws.redraw_every
        content = dict(content_targets or {}) if content_weight > 0 else {}
        self._content = {n: np.asarray(f, dtype=dtype.as_numpy_dtype) for n, f in content.items()}
        # mean(F_c²) · (number of values): the divisor of Σ (F − F_c)² in the content loss.
        self._norms = {
            n: max(float(np.mean(np.square(f, dtype=np.float64))), _NORM_FLOOR) * f.size
            for n, f in self._content.items()
        }
        self._passes = _TiledPasses(
            network=network, config=config, height=height, width=width, tile=tile,
            style=self._use_style, content_layers=tuple(self._content), channels=channels,
            gram=self._use_style and "gram" in config.statistics, sliced=self._draws.active,
            mean=self._use_style and "mean" in config.statistics, image_term=total_variation,
        )  # fmt: skip
        self.plans = self._passes.plans
        self._statistics = Statistics(
            config=config, grams=style_targets, draws=self._draws, dtype=dtype, active=self._use_style,
            means=means,
        )  # fmt: skip

    def _evaluate(
        self, image: np.ndarray, *, gradient: bool
    ) -> tuple[float, np.ndarray, np.ndarray, np.ndarray | None]:
        passes, dtype = self._passes, self._passes.dtype
        wc, ws, wt = self._weights
        x = tf.constant(np.reshape(image, self.shape), dtype=dtype)
        levels = passes.pyramid(x)
        dirs = _directions(self._draws)
        sums = passes.first_pass(levels, self._content, dirs)
        errors = sums.errors
        style, per_octave, seeds = self._statistics.tiled(
            sums, lambda key: self.plans[key[0]].positions(key[1]), scale=ws, gradient=gradient
        )
        # mean((F − F_c)²) / mean(F_c²), averaged over the content layers.
        n_content = max(len(self._content), 1)
        content = sum(
            (errors[n] / _divisor(self._norms[n], dtype) for n in self._content), tf.zeros([], dtype)
        )
        content = content / n_content
        tv = total_variation(x)
        stacked = np.array([float(content.numpy()), style, float(tv.numpy())])
        total = float(np.dot(self._weights, stacked))
        grad = None
        if gradient:
            error_seeds = {n: _divisor(wc / n_content / self._norms[n], dtype) for n in self._content}
            seeds = dataclasses.replace(seeds, errors=error_seeds)
            grad = passes.second_pass(x, levels, self._content, seeds, wt, dirs)
        return total, stacked, per_octave, grad

    def __call__(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        """Loss and gradient at the flat float64 pixel vector ``x`` (values in [0, 1])."""
        total, stacked, per_octave, grad = self._evaluate(x, gradient=True)
        self.last = _evaluation(self._weights, total, stacked, per_octave)
        if grad is None:
            raise RuntimeError("the tiled evaluation returned no gradient")
        return total, gradient_like(x, grad)

    def evaluate(self, image: np.ndarray) -> Evaluation:
        """As :meth:`StylizeObjective.evaluate`."""
        total, stacked, per_octave, _ = self._evaluate(image, gradient=False)
        return _evaluation(self._weights, total, stacked, per_octave)
