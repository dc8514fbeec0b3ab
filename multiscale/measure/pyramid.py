"""Gaussian pyramid as differentiable TensorFlow ops, and border padding.

Octave 0 is the image itself; octave k+1 is octave k blurred with the
separable 5-tap binomial kernel [1, 4, 6, 4, 1]/16 and then subsampled by
taking every second row and column. So octave k is the image blurred and
downsampled by 2**k. The blur's borders follow the run's padding mode, the
same mode the convolutions use:

``reflect``
    mirror without repeating the edge pixel (``abcd|cb``); no frame.
``symmetric``
    mirror repeating the edge pixel (``abcd|dc``): a 3×3 window centred on
    the edge pixel sees it twice and its inner neighbour once, not the
    neighbour twice as with ``reflect``, so the edge pixel weighs in the
    statistics as an inner one does.
``wrap``
    circular; the pyramid of a tileable image is tileable when every octave
    has even sizes.
``same``
    zeros. Images here are mean-subtracted, so zero is the mean colour.
``valid``
    no padding: every blur trims 2 pixels on each side.
"""

from __future__ import annotations

import numpy as np

from .._tf import tf
from ..layers import octave_sizes

__all__ = ["blur", "downsample", "gaussian_pyramid", "octave_sizes", "pad2d", "pad_sides"]

_BINOMIAL_5 = np.array([1.0, 4.0, 6.0, 4.0, 1.0], dtype=np.float32) / 16.0


def pad2d(x: tf.Tensor, amount: int, mode: str) -> tf.Tensor:
    """Pad the two spatial axes of an NHWC tensor by ``amount`` on each side.

    Parameters
    ----------
    x : tf.Tensor, float32, shape (N, H, W, C)
    amount : int
        Pixels added on every side.
    mode : {"reflect", "symmetric", "wrap", "same", "valid"}
        ``valid`` returns ``x`` unchanged; ``same`` pads zeros.

    Returns
    -------
    tf.Tensor, shape (N, H + 2·amount, W + 2·amount, C) (or ``x`` for valid).
    """
    return pad_sides(x, (amount, amount, amount, amount), mode)


def pad_sides(x: tf.Tensor, sides: tuple[int, int, int, int], mode: str) -> tf.Tensor:
    """Pad each side of an NHWC tensor's spatial axes by its own amount.

    Parameters
    ----------
    x : tf.Tensor, shape (N, H, W, C)
    sides : (top, bottom, left, right) int ≥ 0
    mode : {"reflect", "symmetric", "wrap", "same", "valid"}
        As :func:`pad2d`. ``wrap`` needs equal amounts on both sides of an
        axis (the axis is whole, so its two ends meet).

    Returns
    -------
    tf.Tensor, shape (N, H + top + bottom, W + left + right, C) (``x`` for valid).
    """
    top, bottom, left, right = sides
    if mode == "valid" or not any(sides):
        return x
    if mode == "wrap":
        if top != bottom or left != right:
            raise ValueError(f"wrap padding needs both sides of an axis alike, got {sides}")
        if top:
            x = tf.concat([x[:, -top:], x, x[:, :top]], axis=1)
        if left:
            x = tf.concat([x[:, :, -left:], x, x[:, :, :left]], axis=2)
        return x
    paddings = [[0, 0], [top, bottom], [left, right], [0, 0]]
    if mode == "reflect":
        return tf.pad(x, paddings, mode="REFLECT")
    if mode == "symmetric":
        return tf.pad(x, paddings, mode="SYMMETRIC")
    if mode == "same":
        return tf.pad(x, paddings)
    raise ValueError(f"unknown padding mode {mode!r}")


def blur(x: tf.Tensor, padding: str) -> tf.Tensor:
    """Blur each channel with the 5×5 binomial kernel (separable).

    Parameters
    ----------
    x : tf.Tensor, float32, shape (N, H, W, C)
    padding : str
        Border mode, see the module docstring.

    Returns
    -------
    tf.Tensor, float32, shape (N, H, W, C), or (N, H-4, W-4, C) for valid.
    """
    channels = x.shape[-1]
    k = tf.constant(_BINOMIAL_5, dtype=x.dtype)
    kh = tf.tile(tf.reshape(k, [5, 1, 1, 1]), [1, 1, channels, 1])
    kw = tf.tile(tf.reshape(k, [1, 5, 1, 1]), [1, 1, channels, 1])
    x = pad2d(x, 2, padding)
    x = tf.nn.depthwise_conv2d(x, kh, strides=[1, 1, 1, 1], padding="VALID")
    return tf.nn.depthwise_conv2d(x, kw, strides=[1, 1, 1, 1], padding="VALID")


def downsample(x: tf.Tensor, padding: str) -> tf.Tensor:
    """One octave down: blur, then keep every second row and column.

    Output shape (N, ceil(H/2), ceil(W/2), C) (valid: of the trimmed size).
    """
    return blur(x, padding)[:, ::2, ::2, :]


def gaussian_pyramid(x: tf.Tensor, *, octaves: int, padding: str) -> list[tf.Tensor]:
    """The Gaussian pyramid of ``x``: a list of ``octaves`` tensors.

    Parameters
    ----------
    x : tf.Tensor, float32, shape (N, H, W, C)
    octaves : int ≥ 1
    padding : str
        Border mode, see the module docstring.

    Returns
    -------
    list of tf.Tensor
        ``[x, down(x), down(down(x)), …]``; element k has about H/2**k rows.
    """
    levels = [x]
    for _ in range(octaves - 1):
        levels.append(downsample(levels[-1], padding))
    return levels
