"""The tile engine: exact tiled evaluation of feature statistics and their gradient, in bounded memory.

At 4096² an untiled loss-and-gradient evaluation keeps tens of GB of VGG
activations for back-propagation (:mod:`multiscale.measure.memory` estimates
how many). The Gram loss is a function of sums over positions, so it can be
computed one tile at a time without changing a bit of the mathematics:

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

The cost is one more forward pass per split octave plus the halos' share of
the area, so smaller tiles cost more time (measured: ``benchmarks/RESULTS.md``,
"Large syntheses", tiled against untiled evaluation).

The first moments are sums over positions too: the first pass adds each
interior's ``Σ F`` (C,) per layer, ``μ_l = Σ_tiles Σ F / N_l``, and the second
pass back-propagates ``∂L/∂μ_l / N_l``, the same vector at every position.

The engine computes sums (Gram sums, feature sums, projections, squared
content errors) and pulls seeds back through them; which loss the sums enter is the business of
:mod:`multiscale.objectives`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from .._tf import tf
from ..config import DescriptorConfig
from ..layers import LAYER_NAMES, GramKey, layer_channels, layer_index
from .backbone import VGG16, preprocess
from .pyramid import gaussian_pyramid
from .tiles import AxisSegment, plan_octaves, present_layers, tiles_of


def direction_projections(flat: tf.Tensor, directions: tf.Tensor) -> tf.Tensor:
    """Feature vectors projected on the sliced statistic's directions, a row per direction.

    Parameters
    ----------
    flat : tf.Tensor, shape (N, C)
        Feature vectors, one per position.
    directions : tf.Tensor, shape (C, K)
        Unit directions as columns.

    Returns
    -------
    tf.Tensor, shape (K, N), same dtype: ``Dᵀ Fᵀ``. Each direction's N values are one
    contiguous row, which :func:`multiscale.measure.sliced.sorted_cotangent` ranks in place;
    the transpose runs in TensorFlow, on all cores. The untiled objective
    (:func:`multiscale.objectives.terms.sliced_term`) and the tiles here both take it.
    """
    return tf.transpose(tf.matmul(flat, directions))


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


@dataclass(frozen=True)
class TileSums:
    """What the first pass measures, summed over every tile's interior.

    Attributes
    ----------
    grams : dict of (octave, layer) → tf.Tensor (C, C)
        ``Σ Fᵀ F`` per Gram key.
    means : dict of (octave, layer) → tf.Tensor (C,)
        ``Σ F`` (over positions) per mean key.
    errors : dict of layer → tf.Tensor scalar
        ``Σ (F − F_c)²`` per content layer.
    projections : dict of (octave, layer) → list of np.ndarray (K, n_tile)
        ``Dᵀ Fᵀ`` of every tile's interior per sliced key (a row per direction), in tile order.
    """

    grams: dict[GramKey, tf.Tensor] = field(default_factory=dict)
    means: dict[GramKey, tf.Tensor] = field(default_factory=dict)
    errors: dict[str, tf.Tensor] = field(default_factory=dict)
    projections: dict[GramKey, list[np.ndarray]] = field(default_factory=dict)


@dataclass(frozen=True)
class TileSeeds:
    """The gradients the second pass pulls back, one per part of :class:`TileSums`.

    Attributes
    ----------
    grams : dict of (octave, layer) → tf.Tensor (C, C)
        ``∂L/∂(Σ Fᵀ F)``.
    means : dict of (octave, layer) → tf.Tensor (C,)
        ``∂L/∂(Σ F)``, broadcast over the positions.
    errors : dict of layer → tf.Tensor scalar
        ``∂L/∂(Σ (F − F_c)²)``.
    projections : dict of (octave, layer) → list of np.ndarray (K, n_tile)
        ``∂L/∂(Dᵀ Fᵀ)`` of each tile, in the tile order of the first pass.
    """

    grams: Mapping[GramKey, tf.Tensor] = field(default_factory=dict)
    means: Mapping[GramKey, tf.Tensor] = field(default_factory=dict)
    errors: Mapping[str, tf.Tensor] = field(default_factory=dict)
    projections: Mapping[GramKey, Sequence[np.ndarray]] = field(default_factory=dict)


class _TiledPasses:
    """The two passes over the tiles, for any mix of Gram (style), first-moment and content terms.

    Parameters
    ----------
    network : VGG16
    config : DescriptorConfig
        Octaves, style layers and padding.
    height, width : int
        Image size in pixels.
    tile : int or None
        Interior size of a tile (``None``: one tile per octave).
    style : bool
        Whether the style layers are measured: ``config.layers_at(k)`` at octave k.
    gram, sliced, mean : bool
        What is measured there (with ``style``): Gram sums, the projections
        of the interiors' feature vectors on given directions, feature sums.
    content_layers : tuple of str
        Layers whose activations at octave 0 enter a content term.
    channels : {3, 1}
        1: the image is a luminance image, repeated into R, G and B.
    image_term : callable or None
        A differentiable scalar of the whole (1, H, W, channels) image that
        needs no network (the style transfer's total variation); the second
        pass adds ``term_weight ×`` its gradient.
    """

    def __init__(
        self,
        *,
        network: VGG16,
        config: DescriptorConfig,
        height: int,
        width: int,
        tile: int | None,
        style: bool = True,
        content_layers: Sequence[str] = (),
        channels: int = 3,
        gram: bool = True,
        sliced: bool = False,
        mean: bool = False,
        image_term: Callable[[tf.Tensor], tf.Tensor] | None = None,
    ) -> None:
        self.network = network
        self.dtype = network.dtype
        # each octave's plan lists its own layers (config.layers_at); these say what each is measured for
        self.style_layers = config.all_layers if style and gram else ()
        self.sliced_layers = config.all_layers if style and sliced else ()
        self.mean_layers = config.all_layers if style and mean else ()
        self.content_layers = tuple(content_layers)
        if not style:
            config = dataclasses.replace(
                config,
                octaves=1,
                layers=self.content_layers,
                layer_weights=tuple(1.0 for _ in self.content_layers),
                octave_weights=None,
                coarse_layers=(),
            )
        self.config = config
        self.shape = (1, height, width, channels)
        self.plans = plan_octaves(height, width, config=config, tile=tile, octave0_layers=self.content_layers)
        all_layers = {n for plan in self.plans for n in plan.layers}
        self._chain = LAYER_NAMES[: max(layer_index(n) for n in all_layers) + 1]
        image_spec = tf.TensorSpec(self.shape, self.dtype)
        level_specs = [tf.TensorSpec([1, h, w, 3], self.dtype) for h, w in (p.size for p in self.plans)]

        def pyramid(x: tf.Tensor) -> list[tf.Tensor]:
            rgb = tf.tile(x, [1, 1, 1, 3]) if channels == 1 else x
            return gaussian_pyramid(preprocess(rgb), octaves=config.octaves, padding=config.padding)

        @tf.function(
            input_signature=[image_spec, level_specs, tf.TensorSpec([], self.dtype)], autograph=False
        )
        def pyramid_vjp(x: tf.Tensor, level_grads: list[tf.Tensor], term_weight: tf.Tensor) -> tf.Tensor:
            with tf.GradientTape() as tape:
                tape.watch(x)
                levels = pyramid(x)
                pulled = tf.add_n([tf.reduce_sum(lv * g) for lv, g in zip(levels, level_grads, strict=True)])
                if image_term is not None:
                    pulled += term_weight * image_term(x)
            return tape.gradient(pulled, x)

        @tf.function(reduce_retracing=True, autograph=False)
        def tile_parts(
            crop: tf.Tensor, bounds: tf.Tensor, fc: list[tf.Tensor], dirs: list[tf.Tensor], key: tuple
        ) -> list[tf.Tensor]:
            return self._parts(crop, bounds, fc, dirs, key)

        @tf.function(reduce_retracing=True, autograph=False)
        def tile_grad(
            crop: tf.Tensor,
            bounds: tf.Tensor,
            fc: list[tf.Tensor],
            dirs: list[tf.Tensor],
            seeds: list[tf.Tensor],
            key: tuple,
        ) -> tf.Tensor:
            with tf.GradientTape() as tape:
                tape.watch(crop)
                parts = self._parts(crop, bounds, fc, dirs, key)
            return tape.gradient(parts, crop, output_gradients=seeds)

        @tf.function(reduce_retracing=True, autograph=False)
        def tile_maps(crop: tf.Tensor, bounds: tf.Tensor, key: tuple) -> list[tf.Tensor]:
            edges, layers = key[0], key[1]
            feats = self.network.features(crop, layers, edges=dict(zip(self._chain, edges, strict=False)))
            return [_interior(feats[n], bounds[i]) for i, n in enumerate(layers)]

        self.pyramid = tf.function(pyramid, input_signature=[image_spec], autograph=False)
        self.pyramid_vjp = pyramid_vjp
        self._tile_parts = tile_parts
        self._tile_grad = tile_grad
        self._tile_maps = tile_maps

    def _parts(
        self, crop: tf.Tensor, bounds: tf.Tensor, fc: list[tf.Tensor], dirs: list[tf.Tensor], key: tuple
    ) -> list[tf.Tensor]:
        """``Fᵀ F`` of each Gram layer's interior, ``Dᵀ Fᵀ`` of each sliced layer's (a row per
        direction, columns in row-major order of the interior), ``Σ F`` of each mean layer's, then ``Σ (F − F_c)²``
        of each content layer's."""
        edges, layers, style, content, sliced, mean = key
        feats = self.network.features(crop, layers, edges=dict(zip(self._chain, edges, strict=False)))
        inner = {n: _interior(feats[n], bounds[i]) for i, n in enumerate(layers)}
        out = []
        for name in style:
            flat = tf.reshape(inner[name], [-1, tf.shape(inner[name])[-1]])
            out.append(tf.matmul(flat, flat, transpose_a=True))
        for name, d in zip(sliced, dirs, strict=True):
            flat = tf.reshape(inner[name], [-1, tf.shape(inner[name])[-1]])
            out.append(direction_projections(flat, d))
        for name in mean:
            out.append(tf.reduce_sum(inner[name], axis=[0, 1]))
        for name, target in zip(content, fc, strict=True):
            out.append(tf.reduce_sum(tf.square(inner[name] - target)))
        return out

    def tiles(self, k: int) -> list[tuple[AxisSegment, AxisSegment, tf.Tensor, tuple]]:
        """Octave k's tiles: (rows, cols, interior bounds, static key of the compiled function)."""
        plan = self.plans[k]
        out = []
        for rows, cols in tiles_of(plan, plan.layers):
            layers = present_layers(rows, cols, plan.layers)
            bounds = tf.constant([[*rows.interiors[n], *cols.interiors[n]] for n in layers], dtype=tf.int32)
            edges = tuple((*r, *c) for r, c in zip(rows.edges, cols.edges, strict=True))
            style = tuple(n for n in layers if n in self.style_layers)
            content = tuple(n for n in layers if k == 0 and n in self.content_layers)
            sliced = tuple(n for n in layers if n in self.sliced_layers)
            mean = tuple(n for n in layers if n in self.mean_layers)
            out.append((rows, cols, bounds, (edges, layers, style, content, sliced, mean)))
        return out

    def first_pass(
        self,
        levels: Sequence[tf.Tensor],
        content: Mapping[str, np.ndarray],
        dirs: Mapping[GramKey, tf.Tensor] | None = None,
    ) -> TileSums:
        """Gram sums and feature sums per (octave, layer), squared content errors per content
        layer, and the projections ``Dᵀ Fᵀ`` of every tile's interior per (octave, sliced layer),
        in tile order (``dirs``: the directions D of each sliced key)."""
        sums = TileSums()
        for k, level in enumerate(levels):
            for rows, cols, bounds, key in self.tiles(k):
                style, content_layers, sliced, mean = key[2], key[3], key[4], key[5]
                tile_dirs = [dirs[(k, n)] for n in sliced] if sliced and dirs is not None else []
                parts = iter(
                    self._tile_parts(
                        _crop(level, rows, cols), bounds, _fc(content, rows, cols, key), tile_dirs, key
                    )
                )
                for name in style:
                    _accumulate(sums.grams, (k, name), next(parts))
                for name in sliced:
                    sums.projections.setdefault((k, name), []).append(next(parts).numpy())
                for name in mean:
                    _accumulate(sums.means, (k, name), next(parts))
                for name in content_layers:
                    _accumulate(sums.errors, name, next(parts))
        return sums

    def second_pass(
        self,
        x: tf.Tensor,
        levels: Sequence[tf.Tensor],
        content: Mapping[str, np.ndarray],
        seeds: TileSeeds,
        term_weight: float,
        dirs: Mapping[GramKey, tf.Tensor] | None = None,
    ) -> np.ndarray:
        """Gradient of ``Σ seed · part`` (plus ``term_weight ·`` the image term) with respect to the image.

        ``seeds.projections``: per sliced key, the gradient with respect to each
        tile's projections, in the tile order of :meth:`first_pass`."""
        level_grads = []
        for k, level in enumerate(levels):
            acc = np.zeros(level.shape[1:], dtype=level.dtype.as_numpy_dtype)
            for i, (rows, cols, bounds, key) in enumerate(self.tiles(k)):
                sliced = key[4]
                tile_dirs = [dirs[(k, n)] for n in sliced] if sliced and dirs is not None else []
                tile_seeds = (
                    [seeds.grams[(k, n)] for n in key[2]]
                    + [tf.constant(seeds.projections[(k, n)][i]) for n in sliced]
                    + [seeds.means[(k, n)] for n in key[5]]
                    + [seeds.errors[n] for n in key[3]]
                )
                fc = _fc(content, rows, cols, key)
                grad = self._tile_grad(_crop(level, rows, cols), bounds, fc, tile_dirs, tile_seeds, key)
                _add_wrapped(acc, grad.numpy()[0], rows, cols)
            level_grads.append(tf.constant(acc[None]))
            del acc
        return self.pyramid_vjp(x, level_grads, tf.constant(term_weight, self.dtype)).numpy()

    def maps(self, image: np.ndarray, layers: Sequence[str]) -> dict[str, np.ndarray]:
        """Whole feature maps of ``layers`` (octave-0 layers of the plan), pasted from the tiles."""
        level = self.pyramid(tf.constant(np.reshape(image, self.shape), dtype=self.dtype))[0]
        plan = self.plans[0]
        out = {
            n: np.zeros((1, *plan.map_sizes[n], layer_channels(n)), self.dtype.as_numpy_dtype) for n in layers
        }
        for rows, cols, bounds, key in self.tiles(0):
            for name, value in zip(
                key[1], self._tile_maps(_crop(level, rows, cols), bounds, key), strict=True
            ):
                if name in out:
                    (r0, r1), (c0, c1) = rows.placed[name], cols.placed[name]
                    out[name][0, r0:r1, c0:c1] = value.numpy()
        return out


def _accumulate(sums: dict, key: object, value: tf.Tensor) -> None:
    """``sums[key] += value`` (first value: itself)."""
    sums[key] = sums[key] + value if key in sums else value


def _interior(feats: tf.Tensor, bounds: tf.Tensor) -> tf.Tensor:
    """The (h, w, C) interior of a (1, H, W, C) tile map; ``bounds`` = r0, r1, c0, c1."""
    return feats[0, bounds[0] : bounds[1], bounds[2] : bounds[3]]


def _fc(
    content: Mapping[str, np.ndarray], rows: AxisSegment, cols: AxisSegment, key: tuple
) -> list[tf.Tensor]:
    """The content image's features over the tile's interior, per content layer of the tile."""
    out = []
    for name in key[3]:
        (r0, r1), (c0, c1) = rows.placed[name], cols.placed[name]
        out.append(tf.constant(content[name][0, r0:r1, c0:c1]))
    return out


def tiled_grams(
    image: np.ndarray, *, network: VGG16, config: DescriptorConfig, tile: int
) -> dict[GramKey, np.ndarray]:
    """:func:`multiscale.measure.gram.image_grams` of a large image, one tile at a time (same values).

    Parameters
    ----------
    image : np.ndarray float32 (H, W, 3), RGB in [0, 1]

    Returns
    -------
    dict of (octave, layer) → np.ndarray float64 (C, C), symmetrised.
    """
    return tiled_moments(image, network=network, config=config, tile=tile)[0]


def tiled_moments(
    image: np.ndarray, *, network: VGG16, config: DescriptorConfig, tile: int
) -> tuple[dict[GramKey, np.ndarray], dict[GramKey, np.ndarray]]:
    """:func:`multiscale.measure.gram.image_moments` of a large image, one tile at a time (same values).

    Parameters
    ----------
    image : np.ndarray float32 (H, W, 3), RGB in [0, 1]

    Returns
    -------
    grams : dict of (octave, layer) → np.ndarray float64 (C, C), symmetrised.
    means : dict of (octave, layer) → np.ndarray float64 (C,)
    """
    h, w = image.shape[:2]
    passes = _TiledPasses(network=network, config=config, height=h, width=w, tile=tile, mean=True)
    sums = passes.first_pass(passes.pyramid(tf.constant(image[None], dtype=network.dtype)), {})
    grams, means = {}, {}
    for (k, name), s in sums.grams.items():
        g = s.numpy().astype(np.float64) / passes.plans[k].positions(name)
        grams[(k, name)] = (g + g.T) / 2.0
    for (k, name), s in sums.means.items():
        means[(k, name)] = s.numpy().astype(np.float64) / passes.plans[k].positions(name)
    return grams, means


def tiled_features(
    image: np.ndarray, *, network: VGG16, config: DescriptorConfig, layers: Sequence[str], tile: int
) -> dict[str, np.ndarray]:
    """:func:`multiscale.measure.gram.content_features` of a large image, one tile at a time.

    Parameters
    ----------
    image : np.ndarray float32 (H, W, 3), RGB in [0, 1]
    config : DescriptorConfig
        Only its padding counts (the network's own).

    Returns
    -------
    dict of layer → np.ndarray (1, h, w, C) in the network's dtype.
    """
    h, w = image.shape[:2]
    passes = _TiledPasses(
        network=network,
        config=config,
        height=h,
        width=w,
        tile=tile,
        style=False,
        content_layers=tuple(layers),
    )
    return passes.maps(image, layers)
