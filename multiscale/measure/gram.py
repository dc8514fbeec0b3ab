"""Gram matrices of VGG features at every octave: the texture descriptor.

For a layer's activation F with h·w positions and C channels (flattened to
an (h·w, C) matrix) the Gram matrix is

    G = Fᵀ F / (h · w)          (C × C, symmetric positive semi-definite)

Dividing by the number of positions makes Grams of octaves and images of any
size comparable: G is the mean outer product of the feature vectors. The
descriptor of an image is the set of G for every (octave, layer) pair.

The first moments (the ``mean`` statistic) are the mean feature vectors

    μ = 1ᵀ F / (h · w)          (C,)

taken in the same pass (:func:`image_moments`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from .._tf import tf
from ..config import DescriptorConfig
from ..errors import ImageTooSmallError
from ..layers import GramKey, feature_size, layer_index
from .backbone import VGG16, preprocess
from .pyramid import gaussian_pyramid, octave_sizes
from .sliced import sample_positions


def gram_matrix(features: tf.Tensor) -> tf.Tensor:
    """Gram matrix of one image's activations.

    Parameters
    ----------
    features : tf.Tensor, shape (1, h, w, C)

    Returns
    -------
    tf.Tensor, shape (C, C), same dtype: ``Fᵀ F / (h·w)``.
    """
    shape = tf.shape(features)
    flat = tf.reshape(features, [shape[1] * shape[2], shape[3]])
    positions = tf.cast(shape[1] * shape[2], features.dtype)
    return tf.matmul(flat, flat, transpose_a=True) / positions


def feature_mean(features: tf.Tensor) -> tf.Tensor:
    """Mean feature vector of one image's activations.

    Parameters
    ----------
    features : tf.Tensor, shape (1, h, w, C)

    Returns
    -------
    tf.Tensor, shape (C,), same dtype: ``1ᵀ F / (h·w)``.
    """
    return tf.reduce_mean(features, axis=[0, 1, 2])


def pyramid_features(
    pixels_01: tf.Tensor, *, network: VGG16, config: DescriptorConfig
) -> dict[GramKey, tf.Tensor]:
    """Activations of every selected layer at every octave.

    Parameters
    ----------
    pixels_01 : tf.Tensor, shape (1, H, W, 3)
        RGB in [0, 1], float32 (or float64 for gradient checks).
    network : VGG16
        Carries the padding and pooling to use.
    config : DescriptorConfig

    Returns
    -------
    dict of (octave, layer) → tf.Tensor (1, h, w, C)
    """
    out: dict[GramKey, tf.Tensor] = {}
    levels = gaussian_pyramid(preprocess(pixels_01), octaves=config.octaves, padding=config.padding)
    for k, level in enumerate(levels):
        for layer, feats in network.features(level, config.layers_at(k)).items():
            out[(k, layer)] = feats
    return out


def pyramid_grams(
    pixels_01: tf.Tensor, *, network: VGG16, config: DescriptorConfig
) -> dict[GramKey, tf.Tensor]:
    """Gram matrices of every selected layer at every octave, as TF tensors.

    Parameters as :func:`pyramid_features`.

    Returns
    -------
    dict of (octave, layer) → tf.Tensor (C, C)
    """
    return {
        key: gram_matrix(f) for key, f in pyramid_features(pixels_01, network=network, config=config).items()
    }


def output_positions(height: int, width: int, *, config: DescriptorConfig) -> dict[GramKey, int]:
    """Positions of every (octave, layer) feature map of an H×W image."""
    out = {}
    for k, (h, w) in enumerate(octave_sizes(height, width, octaves=config.octaves, padding=config.padding)):
        for layer in config.layers_at(k):
            out[(k, layer)] = feature_size(layer, h, config.padding) * feature_size(layer, w, config.padding)
    return out


def image_sliced_features(
    image: np.ndarray, *, network: VGG16, config: DescriptorConfig, seed: int = 0
) -> dict[GramKey, np.ndarray]:
    """Feature vectors of one image per (octave, layer), for the sliced statistic.

    Parameters
    ----------
    image : np.ndarray, float32, shape (H, W, 3), RGB in [0, 1]

    Returns
    -------
    dict of (octave, layer) → np.ndarray float32 (n, C), n at most
    :data:`multiscale.measure.sliced.MAX_SOURCE_POSITIONS` (a fixed subset of larger maps).
    """
    x = tf.constant(image[None], dtype=tf.float32)
    out = {}
    for key, f in pyramid_features(x, network=network, config=config).items():
        flat = f.numpy().reshape(-1, f.shape[-1])
        out[key] = sample_positions(flat, seed=seed)
    return out


def image_grams(image: np.ndarray, *, network: VGG16, config: DescriptorConfig) -> dict[GramKey, np.ndarray]:
    """Descriptor of one image as float64 numpy arrays.

    Parameters
    ----------
    image : np.ndarray, float32, shape (H, W, 3), RGB in [0, 1]

    Returns
    -------
    dict of (octave, layer) → np.ndarray float64 (C, C), symmetrised.

    Images of more than :data:`multiscale.measure.tiles.SOURCE_TILE_ABOVE` pixels are
    measured tile by tile (:func:`multiscale.measure.engine.tiled_grams`): the same
    Grams in bounded memory.
    """
    return image_moments(image, network=network, config=config)[0]


def image_moments(
    image: np.ndarray, *, network: VGG16, config: DescriptorConfig
) -> tuple[dict[GramKey, np.ndarray], dict[GramKey, np.ndarray]]:
    """Grams and mean feature vectors of one image, from one pass of the network.

    Parameters
    ----------
    image : np.ndarray, float32, shape (H, W, 3), RGB in [0, 1]

    Returns
    -------
    grams : dict of (octave, layer) → np.ndarray float64 (C, C), symmetrised
        As :func:`image_grams`.
    means : dict of (octave, layer) → np.ndarray float64 (C,)
        :func:`feature_mean` of each map.

    Large images are measured tile by tile, as in :func:`image_grams`.
    """
    from .tiles import SOURCE_TILE, SOURCE_TILE_ABOVE

    if image.shape[0] * image.shape[1] > SOURCE_TILE_ABOVE:
        from .engine import tiled_moments

        return tiled_moments(np.asarray(image, np.float32), network=network, config=config, tile=SOURCE_TILE)
    x = tf.constant(image[None], dtype=tf.float32)
    grams, means = {}, {}
    for key, f in pyramid_features(x, network=network, config=config).items():
        g64 = gram_matrix(f).numpy().astype(np.float64)
        grams[key] = (g64 + g64.T) / 2.0
        means[key] = feature_mean(f).numpy().astype(np.float64)
    return grams, means


#: Side, in pixels, that the deepest selected layer's map must keep at the
#: coarsest octave: below 2×2 a Gram describes one position, not a texture.
MIN_FEATURE_SIDE = 2


def min_image_side(config: DescriptorConfig) -> int:
    """Smallest short side (pixels) an image needs for ``config``.

    The coarsest octave must still give the deepest selected layer a map of
    at least :data:`MIN_FEATURE_SIDE` pixels per side.
    """
    deepest = max(config.layers_at(config.octaves - 1), key=layer_index)
    side = 8
    while True:
        coarsest = octave_sizes(side, side, octaves=config.octaves, padding=config.padding)[-1][0]
        if coarsest >= 3 and feature_size(deepest, coarsest, config.padding) >= MIN_FEATURE_SIDE:
            return side
        side += 1


def check_image_size(
    height: int, width: int, *, config: DescriptorConfig, name: str, is_output: bool = False
) -> None:
    """Raise :class:`ImageTooSmallError` if an image is too small for ``config``.

    ``name`` (a file name, "output", …) starts the message; the hint says
    which option helps: fewer ``--octaves``, shallower ``--layers`` (only if
    that would fit), and for the output (``is_output``) ``-W``/``-H``, for a
    source a larger image or ``--source-scale``.
    """
    need = min_image_side(config)
    short = min(height, width)
    if short >= need:
        return
    deepest = max(config.layers_at(config.octaves - 1), key=layer_index)
    hints = []
    fewer = [o for o in range(config.octaves - 1, 0, -1) if min_image_side(_with_octaves(config, o)) <= short]
    if fewer:
        hints.append(f"--octaves {fewer[0]}")
    shallow = dataclasses.replace(config, layers=("conv1_1",), layer_weights=None, coarse_layers=())
    if deepest != "conv1_1" and min_image_side(shallow) <= short:
        hints.append("shallower --layers")
    if is_output:
        side = "-H/--height" if height < width else "-W/--width"
        hints.append(f"a larger {side} (at least {need})")
    else:
        hints.append("a larger image (or a larger --source-scale)")
    raise ImageTooSmallError(
        f"{name}: image is {width}×{height} px; {config.octaves} octave(s) with layers up to {deepest} "
        f"need at least {need} px on the short side — use {' or '.join(hints)}"
    )


def _with_octaves(config: DescriptorConfig, octaves: int) -> DescriptorConfig:
    return dataclasses.replace(
        config, octaves=octaves, octave_weights=None, coarse_from=min(config.coarse_from, octaves - 1)
    )


def content_features(image: np.ndarray, *, network: VGG16, layers: Sequence[str]) -> dict[str, np.ndarray]:
    """Activations of ``layers`` for an (H, W, 3) RGB image in [0, 1], as numpy arrays (1, h, w, C).

    Images of more than :data:`multiscale.measure.tiles.SOURCE_TILE_ABOVE` pixels are
    measured tile by tile (:func:`multiscale.measure.engine.tiled_features`; the same
    values in bounded memory).
    """
    from .tiles import SOURCE_TILE, SOURCE_TILE_ABOVE

    if image.shape[0] * image.shape[1] > SOURCE_TILE_ABOVE:
        from .engine import tiled_features

        config = DescriptorConfig(padding=network.padding, pooling=network.pooling)
        return tiled_features(image, network=network, config=config, layers=layers, tile=SOURCE_TILE)
    x = tf.constant(np.asarray(image)[None], dtype=network.dtype)
    return {k: v.numpy() for k, v in network.features(preprocess(x), tuple(layers)).items()}
