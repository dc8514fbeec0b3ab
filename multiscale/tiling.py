"""Exact tiled evaluation of the style loss and its gradient, in bounded memory.

At 4096² one untiled loss-and-gradient evaluation keeps about 30 GB of VGG
activations for back-propagation. The Gram loss is a function of sums over
positions, so it can be computed one tile at a time without changing a bit
of the mathematics:

1. *Pyramid.* The Gaussian pyramid is built whole (3 channels: small) and
   kept on a gradient tape.
2. *First pass.* Each octave is cut into tiles. A tile is run through the
   network with a halo wide enough for the deepest selected layer; for every
   layer l the tile's *interior* (its share of a partition of that layer's
   feature map) adds ``Fᵀ F`` to an accumulator. ``G_l = Σ_tiles Fᵀ F / N_l``
   are exactly the untiled Grams, so the loss is too.
3. ``∂L/∂G`` is computed once (C × C per layer).
4. *Second pass.* Each tile is run again on a tape and ``∂L/∂G_l / N_l`` is
   back-propagated through its interior's ``Fᵀ F`` to the tile's input; the
   contributions are added into a gradient of the octave's pixels.
5. The octaves' gradients go back through the pyramid in one step.

Making a tile's features equal the whole image's
------------------------------------------------
Coordinates are tracked per axis (the network acts on rows and columns
alike). On a side where a tile meets the image's border, every convolution
pads as the whole image does (``reflect``, zeros for ``same``, nothing for
``valid``); on a side where the halo stands, the convolution is ``valid``
and eats one halo pixel. Before each 2×2 pooling a tile drops a leading (or
trailing) row so that its windows are the image's. The halo is not a guess:
the rows each layer's interior needs are propagated back through the layers
to the input, so the crop is exactly what is needed. ``wrap`` padding on a
split axis treats the image as periodic (crops run over the edge and wrap
around), which is exact when every pooling halves an even size; whole axes
pad as usual. An octave smaller than the tile is one tile, evaluated in a
single pass.

The cost is one more forward pass per split octave (about 1.4× the untiled
evaluation) plus the halos' share of the area.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import numpy as np

from ._tf import tf
from .backbone import VGG16, preprocess
from .config import DescriptorConfig
from .gram import GramKey
from .layers import LAYER_NAMES, layer_index
from .losses import style_loss
from .pyramid import gaussian_pyramid
from .tiles import AxisSegment, OctavePlan, plan_octaves, present_layers, tiles_of

log = logging.getLogger(__name__)

__all__ = ["TiledStyleObjective"]


def _crop(level: tf.Tensor, rows: AxisSegment, cols: AxisSegment) -> tf.Tensor:
    """The tile's input: a slice, or for wrap a gather that runs over the edges."""
    h, w = level.shape[1], level.shape[2]
    if rows.start >= 0 and rows.stop <= h:
        level = level[:, rows.start : rows.stop]
    else:
        level = tf.gather(level, np.arange(rows.start, rows.stop) % h, axis=1)
    if cols.start >= 0 and cols.stop <= w:
        return level[:, :, cols.start : cols.stop]
    return tf.gather(level, np.arange(cols.start, cols.stop) % w, axis=2)


def _add_wrapped(acc: np.ndarray, grad: np.ndarray, rows: AxisSegment, cols: AxisSegment) -> None:
    """``acc[rows, cols] += grad``, folding any part outside the octave back (wrap)."""
    h, w = acc.shape[:2]
    for r0 in range(rows.start - rows.start % h, rows.stop, h):
        a, b = max(rows.start, r0), min(rows.stop, r0 + h)
        for c0 in range(cols.start - cols.start % w, cols.stop, w):
            c, d = max(cols.start, c0), min(cols.stop, c0 + w)
            acc[a - r0 : b - r0, c - c0 : d - c0] += grad[
                a - rows.start : b - rows.start, c - cols.start : d - cols.start
            ]


class TiledStyleObjective:
    """:class:`multiscale.losses.StyleObjective`, evaluated tile by tile.

    Same interface and, to float32 rounding, the same values; peak memory
    is set by the largest tile instead of the image. Each tile's forward
    pass and its back-propagation are compiled TF functions (one trace per
    kind of tile: first, middle or last along each axis).

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
    ) -> None:
        self.shape = (1, height, width, 3)
        self.size = height * width * 3
        self.config = config
        self.network = network
        self.tile = tile
        dtype = network.dtype
        self._dtype = dtype
        self._targets = {key: tf.constant(g, dtype=dtype) for key, g in targets.items()}
        self._chain = LAYER_NAMES[: max(layer_index(n) for n in config.layers) + 1]
        self.plans = plan_octaves(height, width, config=config, tile=tile)
        self.last_octave_losses: np.ndarray | None = None
        image_spec = tf.TensorSpec(self.shape, dtype)

        def pyramid(x: tf.Tensor) -> list[tf.Tensor]:
            return gaussian_pyramid(preprocess(x), octaves=config.octaves, padding=config.padding)

        @tf.function(
            input_signature=[image_spec, [tf.TensorSpec([1, h, w, 3], dtype) for h, w in self._sizes()]]
        )
        def pyramid_vjp(x: tf.Tensor, level_grads: list[tf.Tensor]) -> tf.Tensor:
            with tf.GradientTape() as tape:
                tape.watch(x)
                levels = pyramid(x)
            return tape.gradient(levels, x, output_gradients=level_grads)

        @tf.function(reduce_retracing=True)
        def tile_sums(crop: tf.Tensor, bounds: tf.Tensor, edges: tuple, layers: tuple) -> list[tf.Tensor]:
            return self._sums(crop, bounds, edges, layers)

        @tf.function(reduce_retracing=True)
        def tile_grad(
            crop: tf.Tensor, bounds: tf.Tensor, seeds: list[tf.Tensor], edges: tuple, layers: tuple
        ) -> tf.Tensor:
            with tf.GradientTape() as tape:
                tape.watch(crop)
                sums = self._sums(crop, bounds, edges, layers)
            return tape.gradient(sums, crop, output_gradients=seeds)

        self._pyramid = tf.function(pyramid, input_signature=[image_spec])
        self._pyramid_vjp = pyramid_vjp
        self._tile_sums = tile_sums
        self._tile_grad = tile_grad

    def _sizes(self) -> list[tuple[int, int]]:
        return [plan.size for plan in self.plans]

    def _sums(self, crop: tf.Tensor, bounds: tf.Tensor, edges: tuple, layers: tuple) -> list[tf.Tensor]:
        """``Fᵀ F`` over each layer's interior (bounds[i] = r0, r1, c0, c1 of ``layers[i]``)."""
        feats = self.network.features(crop, layers, edges=dict(zip(self._chain, edges, strict=False)))
        out = []
        for i, name in enumerate(layers):
            f = feats[name][0, bounds[i, 0] : bounds[i, 1], bounds[i, 2] : bounds[i, 3]]
            flat = tf.reshape(f, [-1, tf.shape(f)[-1]])
            out.append(tf.matmul(flat, flat, transpose_a=True))
        return out

    def _tile_args(self, rows: AxisSegment, cols: AxisSegment) -> tuple[tf.Tensor, tuple, tuple]:
        layers = present_layers(rows, cols, self.config.layers)
        bounds = tf.constant([[*rows.interiors[n], *cols.interiors[n]] for n in layers], dtype=tf.int32)
        edges = tuple((*rows.edges[i], *cols.edges[i]) for i in range(len(self._chain)))
        return bounds, edges, layers

    def _evaluate(self, image: np.ndarray, *, gradient: bool) -> tuple[float, np.ndarray | None, np.ndarray]:
        x = tf.constant(np.reshape(image, self.shape), dtype=self._dtype)
        levels = self._pyramid(x)
        sums: dict[GramKey, tf.Tensor] = {}
        for k, (level, plan) in enumerate(zip(levels, self.plans, strict=True)):
            for rows, cols in tiles_of(plan, self.config.layers):
                bounds, edges, layers = self._tile_args(rows, cols)
                part = self._tile_sums(_crop(level, rows, cols), bounds, edges, layers)
                for name, value in zip(layers, part, strict=True):
                    sums[(k, name)] = sums[(k, name)] + value if (k, name) in sums else value
        grams = {(k, n): s / _positions(self.plans[k], n, s.dtype) for (k, n), s in sums.items()}
        with tf.GradientTape(watch_accessed_variables=False) as loss_tape:
            loss_tape.watch(grams)
            total, per_octave = style_loss(grams, self._targets, config=self.config)
        if not gradient:
            return float(total.numpy()), None, per_octave.numpy().astype(np.float64)
        d_grams = loss_tape.gradient(total, grams)
        level_grads = []
        for k, (level, plan) in enumerate(zip(levels, self.plans, strict=True)):
            acc = np.zeros(level.shape[1:], dtype=level.dtype.as_numpy_dtype)
            for rows, cols in tiles_of(plan, self.config.layers):
                bounds, edges, layers = self._tile_args(rows, cols)
                seeds = [d_grams[(k, n)] / _positions(plan, n, level.dtype) for n in layers]
                grad = self._tile_grad(_crop(level, rows, cols), bounds, seeds, edges, layers)
                _add_wrapped(acc, grad.numpy()[0], rows, cols)
            level_grads.append(tf.constant(acc[None]))
            del acc
        grad_x = self._pyramid_vjp(x, level_grads)
        return float(total.numpy()), grad_x.numpy(), per_octave.numpy().astype(np.float64)

    def __call__(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        """Loss and gradient at the flat float64 pixel vector ``x`` (RGB in [0, 1]).

        Returns
        -------
        loss : float
        grad : np.ndarray float64, same shape as ``x``
        """
        total, grad, per_octave = self._evaluate(x, gradient=True)
        self.last_octave_losses = per_octave
        assert grad is not None
        return total, grad.reshape(-1).astype(np.float64)

    def loss(self, image: np.ndarray) -> tuple[float, np.ndarray]:
        """Loss (and per-octave losses) of an (H, W, 3) image in [0, 1], no gradient."""
        total, _, per_octave = self._evaluate(image, gradient=False)
        return total, per_octave


def _positions(plan: OctavePlan, layer: str, dtype: tf.DType) -> tf.Tensor:
    """The Gram divisor of ``layer`` at this octave, as a scalar tensor."""
    return tf.constant(float(plan.positions[layer]), dtype=dtype)
