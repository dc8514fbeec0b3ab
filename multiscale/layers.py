"""The VGG16 conv-stack architecture as plain data (no TensorFlow import).

Layer names follow the usual convention: ``conv{block}_{i}`` for the i-th
3×3 convolution (+ ReLU) of a block and ``pool{block}`` for the 2×2 stride-2
pooling that ends it. Kept apart from :mod:`multiscale.measure.backbone` so that
config validation and ``--help`` never import TensorFlow.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

V = TypeVar("V")

#: Convolutions per block and output channels of each block.
VGG16_BLOCKS: tuple[tuple[int, int], ...] = ((2, 64), (2, 128), (3, 256), (3, 512), (3, 512))


def _names() -> tuple[str, ...]:
    names: list[str] = []
    for b, (convs, _) in enumerate(VGG16_BLOCKS, start=1):
        names += [f"conv{b}_{i}" for i in range(1, convs + 1)]
        names.append(f"pool{b}")
    return tuple(names)


#: A statistic's address: (octave, layer name); octave 0 is the full-size image.
GramKey = tuple[int, str]


def shift_octaves(mapping: Mapping[GramKey, V], shift: int) -> dict[GramKey, V]:
    """The entries of octaves ≥ ``shift``, renumbered from 0: key (k, layer) becomes (k − shift, layer).

    What a synthesis stage ``shift`` halvings below the output matches: its
    octave j is the output's octave j + ``shift`` (a Gaussian pyramid of
    the image halved ``shift`` times is the image's pyramid from that octave on).
    """
    return {(k - shift, layer): v for (k, layer), v in mapping.items() if k >= shift}


#: Every selectable layer, in network order.
LAYER_NAMES: tuple[str, ...] = _names()


def layer_channels(name: str) -> int:
    """Number of channels of a layer's output."""
    # "conv3_1"[4] and "pool3"[4] are both the block number.
    block = int(name[4])
    return VGG16_BLOCKS[block - 1][1]


def layer_index(name: str) -> int:
    """Position of the layer in network order (0 for ``conv1_1``)."""
    return LAYER_NAMES.index(name)


def receptive_field(name: str) -> int:
    """Receptive field of one output unit of ``name``, in input pixels.

    Each 3×3 convolution widens it by 2·stride, each 2×2 pooling by
    stride and then doubles the stride.
    """
    rf, stride = 1, 1
    for layer in LAYER_NAMES[: layer_index(name) + 1]:
        if layer.startswith("conv"):
            rf += 2 * stride
        else:
            rf += stride
            stride *= 2
    return rf


def feature_size(name: str, size: int, padding: str) -> int:
    """Spatial size of ``name``'s output for an input side of ``size`` pixels.

    With ``valid`` padding each convolution trims 2 pixels; poolings floor
    the size to half.
    """
    for layer in LAYER_NAMES[: layer_index(name) + 1]:
        if layer.startswith("conv"):
            size = size - 2 if padding == "valid" else size
        else:
            size //= 2
        if size < 1:
            return 0
    return size


def octave_sizes(height: int, width: int, *, octaves: int, padding: str) -> list[tuple[int, int]]:
    """(height, width) of every Gaussian-pyramid octave, without building it.

    Each octave halves (rounding up) the previous one; with ``valid``
    padding the blur first trims 2 pixels per side.
    """
    sizes = [(height, width)]
    for _ in range(octaves - 1):
        h, w = sizes[-1]
        if padding == "valid":
            h, w = h - 4, w - 4
        sizes.append(((h + 1) // 2, (w + 1) // 2))
    return sizes
