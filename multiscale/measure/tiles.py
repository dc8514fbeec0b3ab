"""Tile plans: how each octave is cut for the exact tiled evaluation (no TensorFlow).

See :mod:`multiscale.measure.engine` for the method. This module does the integer
bookkeeping, per axis (rows and columns are cut alike and independently):
where each layer's feature map starts and ends, where the tiles' interiors
are cut at every layer, which input rows a tile must read (its halo,
propagated back from the deepest layer it serves), and, layer by layer,
which sides of the tile get the border padding and which rows a pooling
drops to line up with the whole image's 2×2 windows. Kept free of
TensorFlow so that the memory estimate and ``--dry-run`` can use it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from ..config import DescriptorConfig
from ..errors import ConfigError
from ..layers import LAYER_NAMES, layer_index, octave_sizes

#: Images (sources, styles, content) with more pixels than this are measured
#: tile by tile, in tiles of :data:`SOURCE_TILE` pixels: the same Grams and
#: features, in bounded memory.
SOURCE_TILE_ABOVE = 1536 * 1536
SOURCE_TILE = 1024

__all__ = ["AxisSegment", "OctavePlan", "plan_axis", "plan_octaves", "present_layers", "tiles_of"]


@dataclass(frozen=True)
class AxisSegment:
    """One tile's extent along one axis of an octave.

    Attributes
    ----------
    start, stop : int
        Rows (or columns) of the octave the tile reads: the interior plus
        the halo. With ``wrap`` on a split axis they may run outside
        ``[0, n)`` and are taken modulo ``n``.
    edges : tuple of (int, int)
        Per network layer up to the deepest selected one: for a convolution
        whether the (low, high) side gets the border padding; for a pooling
        how many rows are dropped on each side first.
    interiors : dict of layer name → (int, int)
        The slice of the tile's feature map (at that layer) that is this
        tile's share of the image's map.
    placed : dict of layer name → (int, int)
        The same share as a slice of the whole image's feature map.
    """

    start: int
    stop: int
    edges: tuple[tuple[int, int], ...]
    interiors: dict[str, tuple[int, int]]
    placed: dict[str, tuple[int, int]]


@dataclass(frozen=True)
class OctavePlan:
    """How one octave is cut into tiles.

    Attributes
    ----------
    size : (int, int)
        The octave's (height, width).
    rows, cols : tuple of AxisSegment
        The tiles are every (row segment, column segment) pair.
    layers : tuple of str
        The layers evaluated at this octave.
    map_sizes : dict of layer name → (int, int)
        (h, w) of each layer's whole feature map; ``h · w`` positions are
        the Gram's divisor.
    """

    size: tuple[int, int]
    rows: tuple[AxisSegment, ...]
    cols: tuple[AxisSegment, ...]
    layers: tuple[str, ...]
    map_sizes: dict[str, tuple[int, int]]

    def positions(self, layer: str) -> int:
        """Positions of ``layer``'s whole feature map at this octave."""
        h, w = self.map_sizes[layer]
        return h * w

    @property
    def tiles(self) -> int:
        return len(self.rows) * len(self.cols)

    @property
    def largest_tile(self) -> tuple[int, int]:
        """(height, width) of the largest crop any tile reads."""
        return max(s.stop - s.start for s in self.rows), max(s.stop - s.start for s in self.cols)


def _frames(n: int, layers: Sequence[str], *, mode: str, periodic: bool) -> list[tuple[int, int]]:
    """The whole map's extent [A, E) before the first layer and after each layer.

    Coordinates are those of the layer's own map; poolings re-base them so
    that the pooled map starts at 0.
    """
    a, e = 0, n
    out = [(a, e)]
    for name in layers:
        if name.startswith("conv"):
            if mode == "valid":
                a, e = a + 1, e - 1
        else:
            if periodic and (e - a) % 2:
                raise _odd_wrap(name)
            a, e = 0, (e - a) // 2
        out.append((a, e))
    return out


def _odd_wrap(name: str) -> ConfigError:
    return ConfigError(
        "tile_size",
        f"tiling a wrap-padded (tileable) octave needs even sizes at every pooling, and {name} "
        "would halve an odd size: use a width and height divisible by a larger power of two, "
        "or a --tile-size at least the image size",
    )


def plan_axis(
    n: int, *, layers: Sequence[str], mode: str, tile: int | None
) -> tuple[tuple[AxisSegment, ...], dict[str, int]]:
    """Cut one axis of size ``n`` into segments of about ``tile`` (interior) pixels.

    Parameters
    ----------
    n : int
        The octave's size along the axis.
    layers : sequence of str
        The selected layers.
    mode : {"reflect", "symmetric", "wrap", "same", "valid"}
    tile : int or None
        Interior size; ``None`` or ≥ ``n``: one segment (the whole axis).

    Returns
    -------
    segments : tuple of AxisSegment
    sizes : dict of layer name → int
        Each selected layer's whole map size along this axis.
    """
    deepest = max(layer_index(name) for name in layers)
    chain = LAYER_NAMES[: deepest + 1]
    count = 1 if tile is None or tile >= n else math.ceil(n / tile)
    periodic = mode == "wrap" and count > 1
    frames = _frames(n, chain, mode=mode, periodic=periodic)
    sizes = {name: frames[i + 1][1] - frames[i + 1][0] for i, name in enumerate(chain) if name in layers}
    # Interior cuts at the input, carried through the layers (poolings round
    # up); the first and last segments always reach the map's ends.
    align = 1 if mode == "valid" else 2 ** sum(1 for name in chain if name.startswith("pool"))
    cuts = [align * round(j * n / count / align) for j in range(count + 1)]
    cut_at: list[list[int]] = []
    for i, name in enumerate(chain):
        before, (a, e) = frames[i], frames[i + 1]
        if not name.startswith("conv"):
            cuts = [-(-(c - before[0]) // 2) for c in cuts]
        cuts = [min(max(c, a), e) for c in cuts]
        cuts[0], cuts[-1] = a, e
        cut_at.append(list(cuts))
    segments = []
    for j in range(count):
        lo, hi = _needed(j, chain, layers, cut_at, frames, periodic=periodic)
        segments.append(_walk(lo, hi, j, chain, layers, cut_at, frames, mode=mode, periodic=periodic))
    return tuple(segments), sizes


def _needed(
    j: int,
    chain: Sequence[str],
    layers: Sequence[str],
    cut_at: list[list[int]],
    frames: list[tuple[int, int]],
    *,
    periodic: bool,
) -> tuple[int, int]:
    """Input rows segment ``j`` must read so every selected layer's interior is exact."""
    lo_all, hi_all = math.inf, -math.inf
    for i, name in enumerate(chain):
        if name not in layers:
            continue
        lo, hi = cut_at[i][j], cut_at[i][j + 1]
        if lo >= hi:
            continue
        for q in range(i, -1, -1):
            a, e = frames[q]  # the map entering layer q
            if chain[q].startswith("conv"):
                lo, hi = lo - 1, hi + 1
                if not periodic:
                    lo, hi = max(lo, a), min(hi, e)
            else:
                lo, hi = 2 * lo + a, 2 * hi + a
        lo_all, hi_all = min(lo_all, lo), max(hi_all, hi)
    if lo_all > hi_all:  # no layer has an interior here (tiny tiles): read one row
        lo_all = hi_all = cut_at[0][j]
    return int(lo_all), int(hi_all)


def _walk(
    lo: int,
    hi: int,
    j: int,
    chain: Sequence[str],
    layers: Sequence[str],
    cut_at: list[list[int]],
    frames: list[tuple[int, int]],
    *,
    mode: str,
    periodic: bool,
) -> AxisSegment:
    """Follow the crop [lo, hi) through the layers: padding, drops, interiors."""
    a, e = lo, hi
    edges: list[tuple[int, int]] = []
    interiors: dict[str, tuple[int, int]] = {}
    placed: dict[str, tuple[int, int]] = {}
    for i, name in enumerate(chain):
        fa, fe = frames[i]
        if name.startswith("conv"):
            pad = not periodic and mode != "valid"
            low = int(pad and a == fa)
            high = int(pad and e == fe)
            a, e = a + 1 - low, e - 1 + high
            edges.append((low, high))
        else:
            drop_lo = (a - fa) % 2
            end = e if periodic else min(e, fa + 2 * ((fe - fa) // 2))
            end -= (end - (a + drop_lo)) % 2
            edges.append((drop_lo, e - end))
            a, e = (a + drop_lo - fa) // 2, (end - fa) // 2
        if name in layers:
            i0, i1 = cut_at[i][j], cut_at[i][j + 1]
            if i1 > i0 and not (a <= i0 and i1 <= e):
                raise AssertionError(f"tile plan: {name} interior [{i0}, {i1}) outside the tile's [{a}, {e})")
            interiors[name] = (max(i0 - a, 0), max(i1 - a, 0)) if i1 > i0 else (0, 0)
            origin = frames[i + 1][0]
            placed[name] = (i0 - origin, i1 - origin) if i1 > i0 else (0, 0)
    return AxisSegment(start=lo, stop=hi, edges=tuple(edges), interiors=interiors, placed=placed)


def plan_octaves(
    height: int,
    width: int,
    *,
    config: DescriptorConfig,
    tile: int | None,
    octave0_layers: Sequence[str] = (),
) -> list[OctavePlan]:
    """Tile plans of every octave of an H×W image (``tile=None``: one tile each).

    ``octave0_layers`` are needed at full resolution only (style transfer's
    content layers): octave 0 serves them too.
    """
    plans = []
    for k, (h, w) in enumerate(octave_sizes(height, width, octaves=config.octaves, padding=config.padding)):
        layers = tuple(dict.fromkeys(config.layers_at(k) + (tuple(octave0_layers) if k == 0 else ())))
        rows, hs = plan_axis(h, layers=layers, mode=config.padding, tile=tile)
        cols, ws = plan_axis(w, layers=layers, mode=config.padding, tile=tile)
        plans.append(
            OctavePlan(
                size=(h, w), rows=rows, cols=cols, layers=layers,
                map_sizes={n: (hs[n], ws[n]) for n in layers},
            )
        )  # fmt: skip
    return plans


def tiles_of(plan: OctavePlan, layers: Sequence[str]) -> list[tuple[AxisSegment, AxisSegment]]:
    """Every (row, column) segment pair of an octave that has some interior."""
    return [(r, c) for r in plan.rows for c in plan.cols if present_layers(r, c, layers)]


def present_layers(rows: AxisSegment, cols: AxisSegment, layers: Sequence[str]) -> tuple[str, ...]:
    """The layers whose interior in this tile is not empty (tiny tiles may have none at depth)."""
    return tuple(
        n
        for n in layers
        if rows.interiors[n][1] > rows.interiors[n][0] and cols.interiors[n][1] > cols.interiors[n][0]
    )
