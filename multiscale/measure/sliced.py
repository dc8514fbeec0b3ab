"""Sliced-Wasserstein statistics of VGG features: whole feature distributions, not only Grams.

A Gram matrix pins the second moments of a layer's feature vectors; two very
different distributions (say, a few strong features against many weak ones)
can share it. The sliced-Wasserstein distance (Heitz, Vacher, Newson &
Peyré, CVPR 2021) compares whole distributions through 1-D projections:
for K unit directions d_j in feature space, the sorted projections of the
output's N feature vectors are matched to the target's quantile function at
the same N levels::

    SW²(x) = (1 / (N K)) Σ_j Σ_i ( sort(F d_j)_i − Q_j((i + ½) / N) )²

Sorting makes this the exact squared 2-Wasserstein distance between the
projected distributions, and its gradient is simple: each output position
is pulled toward the target value of its rank. Matching every 1-D marginal
for enough directions matches the distribution, so directions are redrawn
every :data:`REDRAW_EVERY` iterations (the optimiser restarts its memory at
each draw, since the objective changes). Directions depend only on the run's
seed, the draw and the (octave, layer) key, so a resumed run draws the same.

Targets
-------
The target of an (octave, layer) is the quantile function of the source's
projected features. With several sources (or styles) the quantile functions
are averaged with the sources' weights: in one dimension that is exactly
the Wasserstein barycentre of the sources' distributions. Quantiles are
taken by linear interpolation between order statistics, so an output of any
size can be matched to a source of any size.

Each term is relative, like the Gram terms: divided by the target's mean
square, so layers and octaves of different magnitude count alike.

Quantile banks (descriptor files)
---------------------------------
A descriptor file cannot hold every photo's features, and the directions of
a run are not known when it is built. It holds instead a *quantile bank*
(:class:`QuantileBank`): for a fixed set of :data:`BANK_DRAWS` draws of
directions (seeded by :data:`BANK_SEED`, not by the run), the weighted mean
over its photos of their projections' quantile functions at
:data:`BANK_LEVELS` levels (:func:`bank_levels`). A mean of quantile
functions is the 1-D Wasserstein barycentre, so banks of photo sets merge
exactly by weighted sums, like Grams. A run's draw ``d`` uses bank entry
``(seed + d) mod BANK_DRAWS`` and reads its targets off the stored quantile
function by linear interpolation in the level. The levels crowd toward 0
and 1 (a stretched probit grid), where the quantile functions of VGG
features bend most; evenly spaced levels would err tens to hundreds of times
more (figures: ``benchmarks/RESULTS.md``, ``benchmarks/sliced_bank.py``).

This module is numpy (no TensorFlow): the differentiable term of the
untiled objectives is :func:`multiscale.objectives.terms.sliced_term`; the tiled
objectives use :func:`sorted_cotangent` on projections gathered from every
tile, which gives the same values.
"""

from __future__ import annotations

import functools
import zlib
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from ..layers import GramKey, shift_octaves

#: Iterations between two draws of the projection directions.
REDRAW_EVERY = 25

#: Source feature vectors kept per (octave, layer) and source: larger maps are
#: subsampled (a fixed random subset) so that a 4096² source costs bounded
#: memory; 2^18 samples give quantiles to about 0.2 % of the spread.
MAX_SOURCE_POSITIONS = 1 << 18

#: Floor of a target's mean square (an all-zero layer cannot divide by zero).
_NORM_FLOOR = 1e-8

#: Draws of directions a quantile bank holds (:class:`QuantileBank`): 16 draws
#: cover a 400-iteration run with fresh directions (one draw per
#: :data:`REDRAW_EVERY` iterations); longer runs reuse them in turn.
BANK_DRAWS = 16

#: Levels at which a bank stores each quantile function (see :func:`bank_levels`).
#: With :data:`BANK_DRAWS` that is 16 × 64 × Σ C float32 values per octave:
#: 5.0 MiB for the default layers (pool1, conv3_2) at 4 octaves, beside their Grams' 4.3 MiB.
BANK_LEVELS = 64

#: Seed of a bank's directions: fixed, so every descriptor file holds the same
#: directions and banks merge.
BANK_SEED = 0

#: How far :func:`bank_levels` pushes its levels toward 0 and 1.
BANK_STRETCH = 2.0


#: Projected values ranked at a time in one thread: a key's directions are ranked a
#: block of them after another (one direction at least), so the sort's ranks, sorted
#: values and targets take about 24 bytes × this (48 MiB) per thread.
RANK_BLOCK_VALUES = 1 << 21
#: Directions at least this long are ranked by :func:`rank_order`'s radix passes; shorter
#: ones by numpy's argsort, which is as fast there.
RADIX_MIN_LENGTH = 2048
#: Blocks ranked at once, each in its own thread (numpy sorts without the GIL, and the
#: network waits on the ranking, so the cores would idle otherwise). Memory counts
#: one block per thread (:data:`multiscale.measure.memory.SLICED_BLOCK_BYTES`).
RANK_THREADS = 2


@dataclass(frozen=True)
class TargetQuantiles:
    """One key's target quantile functions in one draw, read at the output's N levels on demand.

    A run never holds the (N, K) target array: at 2048² it would be as large as
    the output's projections. It holds what the targets are read from — each
    source's sorted projections, or a bank's quantile functions at its
    levels, one row per direction — and :meth:`rows` reads the targets of a
    block of directions when they are ranked (:func:`sorted_cotangent`), by
    the same interpolation, value for value, as :func:`quantiles` and
    :func:`interpolate_quantiles` give for the whole array. The interpolation's
    positions depend only on the sizes, and are computed once per run.

    Attributes
    ----------
    count : int
        N, the output's positions: targets are read at levels (i + ½) / N.
    sources : tuple of (weight, np.ndarray (K, n_s) float32, each row sorted)
        Each source's share of the barycentre and its sorted projections, a
        row per direction (:func:`quantiles` of each, weighted sum).
    bank : (np.ndarray (L,) float64, np.ndarray (K, L) float32) or None
        Instead of ``sources``: a quantile function known at levels, a row per
        direction (:func:`interpolate_quantiles`).
    """

    count: int
    sources: tuple[tuple[float, np.ndarray], ...] = ()
    bank: tuple[np.ndarray, np.ndarray] | None = None

    @classmethod
    def of(cls, target: np.ndarray) -> TargetQuantiles:
        """The quantiles of an (N, K) array of targets already read at N levels (read back as they are)."""
        return cls(count=int(target.shape[0]), sources=((1.0, np.ascontiguousarray(target.T)),))

    @property
    def width(self) -> int:
        """K, the directions."""
        return int(self.bank[1].shape[0] if self.bank is not None else self.sources[0][1].shape[0])

    def rows(self, start: int, stop: int, dtype: np.dtype | type = np.float32) -> np.ndarray:
        """The targets of directions ``start:stop``, a row per direction: (stop − start, N) in ``dtype``.

        Values as a run has always read them: the sources' weighted sum (or the
        bank's interpolation) in float64, rounded to float32, then to ``dtype``.
        A single source of weight 1 is read in its own precision (the float64
        sum of one term is that term), then cast to ``dtype``.
        """
        if self.bank is not None:
            levels, values = self.bank
            index = _bank_index(levels.tobytes(), self.count)
            block = _interpolate_rows(values[start:stop].astype(np.float64), index, np.float32)
        elif len(self.sources) == 1 and self.sources[0][0] == 1.0:
            block = _read_rows(self.sources[0][1][start:stop], self.count)
        else:
            total = np.zeros((stop - start, self.count), np.float64)
            for weight, values in self.sources:
                total += weight * _read_rows(values[start:stop], self.count)
            block = total.astype(np.float32)
        return block.astype(dtype, copy=False)

    def array(self) -> np.ndarray:
        """Every direction's targets, float32 (N, K): for tests and measurements, not for runs."""
        return np.ascontiguousarray(self.rows(0, self.width).T)

    def norm(self) -> float:
        """The targets' mean square (floored): the divisor of the key's term, read block by block."""
        step = _block_rows(self.count, self.width)
        total = 0.0
        for start in range(0, self.width, step):
            block = self.rows(start, min(start + step, self.width))
            total += float(np.sum(np.square(block, dtype=np.float64)))
        return max(total / (self.count * self.width), _NORM_FLOOR)


def _block_rows(length: int, directions: int) -> int:
    """Directions of ``length`` values each ranked at a time (:data:`RANK_BLOCK_VALUES`), at least 1."""
    return max(1, min(directions, RANK_BLOCK_VALUES // max(length, 1)))


@functools.lru_cache(maxsize=64)
def _source_index(n: int, count: int, dtype: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where levels (i + ½) / count fall among n order statistics: (lo, hi, frac) for
    ``v[lo]·(1 − frac) + v[hi]·frac``, frac in ``dtype``. Depends on the sizes only: computed once."""
    pos = np.clip((np.arange(count) + 0.5) * (n / count) - 0.5, 0.0, n - 1)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, n - 1)
    frac = (pos - lo).astype(dtype)
    for a in (lo, hi, frac):
        a.flags.writeable = False
    return lo, hi, frac


@functools.lru_cache(maxsize=64)
def _bank_index(levels: bytes, count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where levels (i + ½) / count fall among a bank's stored ``levels`` (float64 bytes): (lo, hi,
    frac), linear in the level between stored levels, constant beyond the first and the last."""
    stored = np.frombuffer(levels, np.float64)
    t = (np.arange(count) + 0.5) / count
    pos = np.interp(t, stored, np.arange(len(stored), dtype=np.float64))
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, len(stored) - 1)
    frac = pos - lo
    for a in (lo, hi, frac):
        a.flags.writeable = False
    return lo, hi, frac


def _read_rows(sorted_rows: np.ndarray, count: int) -> np.ndarray:
    """:func:`quantiles` of each row of (k, n) sorted rows: (k, count), the rows' dtype."""
    n = sorted_rows.shape[1]
    if n == count:
        return sorted_rows
    return _interpolate_rows(sorted_rows, _source_index(n, count, sorted_rows.dtype.str), sorted_rows.dtype)


def _interpolate_rows(
    rows: np.ndarray, index: tuple[np.ndarray, np.ndarray, np.ndarray], dtype: np.dtype | type
) -> np.ndarray:
    """``row[lo]·(1 − frac) + row[hi]·frac`` for each row of (k, n) ``rows``, computed in the rows'
    precision and stored in ``dtype``: (k, len(lo)). ``index`` is (lo, hi, frac) from
    :func:`_source_index` or :func:`_bank_index`; a row at a time, so the temporaries are one row's."""
    lo, hi, frac = index
    out = np.empty((rows.shape[0], len(lo)), dtype)
    for i, row in enumerate(rows):
        out[i] = row[lo] * (1 - frac) + row[hi] * frac
    return out


def directions(channels: int, *, seed: int, draw: int, key: GramKey) -> np.ndarray:
    """K = ``channels`` random unit directions in feature space, float32 (C, K).

    Deterministic in (``seed``, ``draw``, ``key``): a resumed run, or the
    tiled and untiled objectives, draw the same directions.
    """
    octave, layer = key
    tag = zlib.crc32(f"{octave}/{layer}".encode())
    rng = np.random.default_rng([seed, draw, tag])
    d = rng.standard_normal((channels, channels))
    d /= np.linalg.norm(d, axis=0, keepdims=True)
    return d.astype(np.float32)


def quantiles(sorted_values: np.ndarray, count: int) -> np.ndarray:
    """The quantile function of each column at ``count`` levels (i + ½) / count.

    Parameters
    ----------
    sorted_values : np.ndarray (n, K), each column sorted ascending
    count : int

    Returns
    -------
    np.ndarray (count, K), same dtype; linear interpolation between order statistics.
    """
    n = sorted_values.shape[0]
    if n == count:
        return sorted_values
    lo, hi, frac = _source_index(n, count, sorted_values.dtype.str)
    return sorted_values[lo] * (1 - frac[:, None]) + sorted_values[hi] * frac[:, None]


def quantiles_at(sorted_values: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """The quantile function of each column at ``levels`` in [0, 1], as :func:`quantiles` takes it.

    Level ``t`` is read at position ``t·n − ½`` between the order statistics
    (clamped to the first and the last), so ``quantiles_at(s, (i + ½) / count)``
    equals ``quantiles(s, count)``.

    Parameters
    ----------
    sorted_values : np.ndarray (n, K), each column sorted ascending
    levels : np.ndarray (L,), float

    Returns
    -------
    np.ndarray (L, K), float64
    """
    n = sorted_values.shape[0]
    pos = np.clip(np.asarray(levels, np.float64) * n - 0.5, 0.0, n - 1)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, n - 1)
    frac = (pos - lo)[:, None]
    values = sorted_values.astype(np.float64, copy=False)
    return values[lo] * (1 - frac) + values[hi] * frac


def bank_levels(count: int = BANK_LEVELS, *, stretch: float = BANK_STRETCH) -> np.ndarray:
    """The levels of a quantile bank: ``Φ(stretch · Φ⁻¹((i + ½) / count))``, float64 (count,).

    Increasing, symmetric about ½, in (0, 1); with ``stretch`` > 1 they
    crowd toward the tails (the outermost of 64 is 7e-7 from 0 and 1, so an
    output's extreme ranks are read off stored values, not clamped), and
    the middle ones are ``stretch / count`` apart.
    """
    from scipy.special import ndtr, ndtri

    return np.asarray(ndtr(stretch * ndtri((np.arange(count) + 0.5) / count)), np.float64)


def measure_bank(
    features: Mapping[GramKey, np.ndarray],
    *,
    draws: int = BANK_DRAWS,
    levels: np.ndarray | None = None,
    seed: int = BANK_SEED,
) -> dict[GramKey, np.ndarray]:
    """One image's quantile functions for a bank: per key, float64 (draws, L, C).

    Entry ``[j, :, k]`` is the quantile function, at ``levels`` (default
    :func:`bank_levels`), of the feature vectors projected on column ``k``
    of ``directions(C, seed=seed, draw=j, key=key)``.

    Parameters
    ----------
    features : dict of (octave, layer) → np.ndarray (n, C)
        The image's feature vectors (:func:`multiscale.measure.gram.image_sliced_features`).
    """
    lv = bank_levels() if levels is None else np.asarray(levels, np.float64)
    out = {}
    for key, f in features.items():
        c = f.shape[1]
        out[key] = np.stack(
            [
                quantiles_at(np.sort(f @ directions(c, seed=seed, draw=j, key=key), axis=0), lv)
                for j in range(draws)
            ]
        )
    return out


def interpolate_quantiles(levels: np.ndarray, values: np.ndarray, count: int) -> np.ndarray:
    """A quantile function known at ``levels``, read at the ``count`` levels (i + ½) / count.

    Linear in the level between stored levels, constant beyond the first
    and the last.

    Parameters
    ----------
    levels : np.ndarray (L,), increasing
    values : np.ndarray (L, K)
    count : int

    Returns
    -------
    np.ndarray (count, K), float64
    """
    lo, hi, frac = _bank_index(np.asarray(levels, np.float64).tobytes(), count)
    v = values.astype(np.float64, copy=False)
    return v[lo] * (1 - frac[:, None]) + v[hi] * frac[:, None]


@dataclass
class QuantileBank:
    """Sliced targets from a descriptor file: mean quantile functions for a fixed set of draws.

    Serves the same :meth:`draw` as :class:`SlicedTargets`, so the
    objectives cannot tell them apart: draw ``d`` of a run seeded ``seed``
    uses bank entry ``j = (seed + d) mod B`` — its directions
    ``directions(C, seed=self.seed, draw=j, key=key)`` and its quantile
    functions read at the output's positions (:func:`interpolate_quantiles`).

    Attributes
    ----------
    quantiles : dict of (octave, layer) → np.ndarray float32 (B, L, C)
        The weighted mean over the photos of their quantile functions
        (each nondecreasing along L).
    levels : np.ndarray float64 (L,)
        The levels they are stored at (:func:`bank_levels`).
    seed : int
        Seed of the bank's directions (:data:`BANK_SEED`).
    """

    quantiles: dict[GramKey, np.ndarray]
    levels: np.ndarray
    seed: int = BANK_SEED
    #: Added to a key's octave to find its directions: 0, except in a bank
    #: :meth:`shifted` for a synthesis stage, whose keys are renumbered.
    octave_offset: int = 0

    @property
    def draws(self) -> int:
        """B, the draws of directions the bank holds."""
        return int(next(iter(self.quantiles.values())).shape[0])

    @property
    def channels(self) -> dict[GramKey, int]:
        """C of every (octave, layer) key."""
        return {key: int(q.shape[2]) for key, q in self.quantiles.items()}

    def draw(
        self, *, seed: int, draw: int, counts: Mapping[GramKey, int]
    ) -> dict[GramKey, tuple[np.ndarray, TargetQuantiles]]:
        """Directions and target quantiles of a run's draw ``draw``, as :meth:`SlicedTargets.draw`."""
        j = (seed + draw) % self.draws
        out = {}
        for key, q in self.quantiles.items():
            octave, layer = key
            d = directions(q.shape[2], seed=self.seed, draw=j, key=(octave + self.octave_offset, layer))
            out[key] = (
                d,
                TargetQuantiles(count=counts[key], bank=(self.levels, np.ascontiguousarray(q[j].T))),
            )
        return out

    def shifted(self, shift: int) -> QuantileBank:
        """The bank of octaves ≥ ``shift`` renumbered from 0 (:func:`~multiscale.layers.shift_octaves`),
        with the directions it was measured with (the arrays are shared, not copied)."""
        return QuantileBank(
            quantiles=shift_octaves(self.quantiles, shift), levels=self.levels, seed=self.seed,
            octave_offset=self.octave_offset + shift,
        )  # fmt: skip

    @classmethod
    def blend(cls, banks: Sequence[QuantileBank], weights: Sequence[float]) -> QuantileBank:
        """The banks' weighted mean (weights normalised): the barycentre of their textures.

        Raises ``ValueError`` for banks of other levels, seeds, draws or keys.
        """
        first = banks[0]
        for b in banks[1:]:
            same = (
                b.seed == first.seed
                and np.array_equal(b.levels, first.levels)
                and b.channels == first.channels
                and b.draws == first.draws
            )
            if not same:
                raise ValueError("quantile banks of other draws, levels or layers cannot be blended")
        w = np.asarray(weights, np.float64) / float(np.sum(weights))
        quantiles = {
            key: sum(wk * b.quantiles[key].astype(np.float64) for wk, b in zip(w, banks, strict=True)).astype(
                np.float32
            )
            for key in first.quantiles
        }
        return cls(quantiles=quantiles, levels=first.levels, seed=first.seed)

    @property
    def nbytes(self) -> int:
        """Bytes held by the bank."""
        return sum(q.nbytes for q in self.quantiles.values()) + self.levels.nbytes


@dataclass
class SlicedTargets:
    """Source features for the sliced terms, from which each draw's targets are made.

    Attributes
    ----------
    features : dict of (octave, layer) → list of np.ndarray float32 (n_s, C)
        Every source's feature vectors (rows), subsampled to at most
        :data:`MAX_SOURCE_POSITIONS`.
    weights : list of float
        Each source's share of the barycentre (sum 1).
    """

    features: dict[GramKey, list[np.ndarray]]
    weights: list[float]
    #: Added to a key's octave to draw its directions: 0, except for targets
    #: :meth:`shifted` for a synthesis stage, whose keys are renumbered.
    octave_offset: int = 0

    @property
    def channels(self) -> dict[GramKey, int]:
        """C of every (octave, layer) key."""
        return {key: int(feats[0].shape[1]) for key, feats in self.features.items()}

    def draw(
        self, *, seed: int, draw: int, counts: Mapping[GramKey, int]
    ) -> dict[GramKey, tuple[np.ndarray, TargetQuantiles]]:
        """Directions and target quantiles of one draw, for an output with ``counts`` positions per key.

        Returns
        -------
        dict of key → (directions (C, K) float32, the targets at ``counts[key]`` levels)
            The targets hold each source's sorted projections (K × n_s), not
            the (counts[key], K) array (:class:`TargetQuantiles`).
        """
        out = {}
        for key, feats in self.features.items():
            octave, layer = key
            d = directions(feats[0].shape[1], seed=seed, draw=draw, key=(octave + self.octave_offset, layer))
            parts = tuple(
                (w, np.sort(np.ascontiguousarray((f @ d).T), axis=1))  # contiguous rows: read by row
                for w, f in zip(self.weights, feats, strict=True)
            )
            out[key] = (d, TargetQuantiles(count=counts[key], sources=parts))
        return out

    def shifted(self, shift: int) -> SlicedTargets:
        """The features of octaves ≥ ``shift`` renumbered from 0 (:func:`~multiscale.layers.shift_octaves`),
        drawing the directions of the octaves they came from (the arrays are shared, not copied)."""
        return SlicedTargets(
            features=shift_octaves(self.features, shift), weights=self.weights,
            octave_offset=self.octave_offset + shift,
        )  # fmt: skip

    @property
    def nbytes(self) -> int:
        """Bytes held by the source features."""
        return sum(f.nbytes for feats in self.features.values() for f in feats)


def sample_positions(features: np.ndarray, *, seed: int = 0) -> np.ndarray:
    """Feature vectors (n, C) of one map, at most :data:`MAX_SOURCE_POSITIONS` of them (a fixed subset)."""
    if features.shape[0] <= MAX_SOURCE_POSITIONS:
        return np.ascontiguousarray(features, dtype=np.float32)
    rng = np.random.default_rng(seed)
    keep = np.sort(rng.choice(features.shape[0], MAX_SOURCE_POSITIONS, replace=False))
    return np.ascontiguousarray(features[keep], dtype=np.float32)


def join_sliced(parts: Sequence[SlicedTargets], weights: Sequence[float] | None = None) -> SlicedTargets:
    """One :class:`SlicedTargets` of several (e.g. one per source image), weighted (default: equally)."""
    n = len(parts)
    w = [1.0 / n] * n if weights is None else [float(v) / float(sum(weights)) for v in weights]
    features: dict[GramKey, list[np.ndarray]] = {}
    shares: list[float] = []
    for part, wp in zip(parts, w, strict=True):
        shares += [wp * s for s in part.weights]
        for key, feats in part.features.items():
            features.setdefault(key, []).extend(feats)
    return SlicedTargets(features=features, weights=shares)


def rank_order(rows: np.ndarray) -> np.ndarray:
    """An order that sorts each row ascending: ``np.argsort(rows, axis=1)``, faster on long rows.

    The sliced statistic's ranking is most of its cost, and numpy's argsort is
    a comparison sort. A float32's bits, with the sign bit flipped for
    positives and every bit flipped for negatives, are a 32-bit unsigned key
    in the float's order; two passes of numpy's stable sort of 16-bit keys (a
    radix sort, linear in the row's length), low half then high half, order
    the row by it. A row at a time, so that each pass works in cache: several
    times faster than ``np.argsort`` on rows of 4096 values or more (figures:
    ``benchmarks/RESULTS.md``); numpy's own argsort is as fast or faster on
    rows shorter than :data:`RADIX_MIN_LENGTH`, and ranks them.

    Ties: the radix passes keep equal values in index order (-0.0 is keyed
    as +0.0), the order of ``np.argsort(kind="stable")`` for every row
    without NaN; numpy's argsort leaves them in an order of its own. The
    sliced terms' values do not depend on the order of ties.

    Parameters
    ----------
    rows : np.ndarray (k, n), float
        bfloat16 and float16 rows are ranked as float32 (exactly their
        values; numpy's argsort of bfloat16 compares in Python-level loops,
        about 15× slower); float64 rows by ``np.argsort``.

    Returns
    -------
    np.ndarray (k, n), intp
        ``order[i]`` lists row ``i``'s indices from its smallest value to its largest.
    """
    if rows.dtype.name in ("bfloat16", "float16"):
        rows = rows.astype(np.float32)  # exact; numpy has no fast sort of these
    if rows.dtype != np.float32 or rows.shape[1] < RADIX_MIN_LENGTH:
        return np.argsort(rows, axis=1)
    order = np.empty(rows.shape, np.intp)
    for i, row in enumerate(rows):
        key = (row + np.float32(0.0)).view(np.int32)  # -0.0 + 0.0 is +0.0
        flip = key >> 31  # all bits of a negative, none of a positive …
        flip |= np.int32(-(2**31))  # … and the sign bit of both
        key ^= flip
        del flip
        low = key.astype(np.uint16)  # the low 16 bits
        key >>= 16
        high = key.astype(np.uint16)
        del key
        by_low = np.argsort(low, kind="stable")
        del low
        np.take(by_low, np.argsort(high[by_low], kind="stable"), out=order[i])
    return order


def sorted_cotangent(
    projected: np.ndarray, target: TargetQuantiles | np.ndarray, scale: float
) -> tuple[float, np.ndarray]:
    """``scale · mean((sort(P) − T)²)`` and its gradient with respect to ``P`` (numpy).

    ``P`` holds a row per direction: K rows of the N projections ``(F D)ᵀ``,
    transposed by TensorFlow on all cores (:func:`multiscale.measure.engine.direction_projections`),
    so each direction is ranked along a contiguous row. Both objectives use it: the untiled one on the whole
    image's projections (:func:`multiscale.objectives.terms.sliced_term`), the
    tiled one on every tile's projections joined along the rows, handing each
    tile its columns of the gradient. Ranking is by :func:`rank_order`,
    several times faster than TensorFlow's sort on the CPU; the sorted values
    are gathered, and the gradient scattered back, a row at a time
    (``np.take_along_axis`` on the whole block was 4× slower). Equal
    projections (ReLU zeros) are ranked in a deterministic order; any order
    gives the same value.

    The directions are ranked a block at a time (:data:`RANK_BLOCK_VALUES`),
    :data:`RANK_THREADS` blocks at once, and the targets read for each block
    (:meth:`TargetQuantiles.rows`): beyond ``projected`` and the gradient,
    memory stays bounded at any size. The blocks' sums are added in block
    order, so the value does not depend on which thread finished first.

    Parameters
    ----------
    projected : np.ndarray (K, N), float
        A row per direction; not modified.
    target : TargetQuantiles at N levels, or np.ndarray (K, N) of targets, a row per direction
    scale : float

    Returns
    -------
    value : float
    grad : np.ndarray (K, N), ``projected``'s dtype
    """
    projected = np.ascontiguousarray(projected)
    if not isinstance(target, TargetQuantiles):
        target = TargetQuantiles.of(np.asarray(target).T)  # of() takes the (N, K) array
    k, n = projected.shape
    if target.count != n or target.width != k:
        raise ValueError(f"targets of {target.width}×{target.count} for {k}×{n} projections")
    grad = np.empty_like(projected)
    two_scale = projected.dtype.type(2.0 * scale / (n * k))

    def rank(start: int, stop: int) -> float:
        rows = projected[start:stop]
        order = rank_order(rows)
        diff = np.empty_like(rows)
        for i in range(stop - start):
            np.take(rows[i], order[i], out=diff[i])
        diff -= target.rows(start, stop, rows.dtype)
        value = float(np.sum(np.square(diff, dtype=np.float64)))
        diff *= two_scale
        for i in range(stop - start):
            grad[start + i][order[i]] = diff[i]
        return value

    step = _block_rows(n, k)
    blocks = [(start, min(start + step, k)) for start in range(0, k, step)]
    if len(blocks) == 1:
        total = rank(*blocks[0])
    else:
        with ThreadPoolExecutor(max_workers=RANK_THREADS) as pool:
            total = sum(pool.map(lambda block: rank(*block), blocks))
    return scale * total / (n * k), grad
