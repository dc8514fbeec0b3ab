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

This module is numpy (no TensorFlow): the differentiable term of the
untiled objectives is :func:`multiscale.objectives.terms.sliced_term`; the tiled
objectives use :func:`sorted_cotangent` on projections gathered from every
tile, which gives the same values.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ..layers import GramKey

#: Iterations between two draws of the projection directions.
REDRAW_EVERY = 25

#: Source feature vectors kept per (octave, layer) and source: larger maps are
#: subsampled (a fixed random subset) so that a 4096² source costs bounded
#: memory; 2^18 samples give quantiles to about 0.2 % of the spread.
MAX_SOURCE_POSITIONS = 1 << 18

#: Floor of a target's mean square (an all-zero layer cannot divide by zero).
_NORM_FLOOR = 1e-8


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
    pos = np.clip((np.arange(count) + 0.5) * (n / count) - 0.5, 0.0, n - 1)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, n - 1)
    frac = (pos - lo).astype(sorted_values.dtype)[:, None]
    return sorted_values[lo] * (1 - frac) + sorted_values[hi] * frac


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

    def draw(
        self, *, seed: int, draw: int, counts: Mapping[GramKey, int]
    ) -> dict[GramKey, tuple[np.ndarray, np.ndarray]]:
        """Directions and target quantiles of one draw, for an output with ``counts`` positions per key.

        Returns
        -------
        dict of key → (directions (C, K) float32, targets (counts[key], K) float32)
        """
        out = {}
        for key, feats in self.features.items():
            d = directions(feats[0].shape[1], seed=seed, draw=draw, key=key)
            target = np.zeros((counts[key], d.shape[1]), np.float64)
            for w, f in zip(self.weights, feats, strict=True):
                projected = np.sort(f @ d, axis=0)
                target += w * quantiles(projected, counts[key])
            out[key] = (d, target.astype(np.float32))
        return out

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


def target_norm(target: np.ndarray) -> float:
    """Divisor of a key's term: the target's mean square (floored)."""
    return max(float(np.mean(np.square(target, dtype=np.float64))), _NORM_FLOOR)


def sorted_cotangent(projected: np.ndarray, target: np.ndarray, scale: float) -> tuple[float, np.ndarray]:
    """``scale · mean((sort(P) − T)²)`` and its gradient with respect to ``P`` (numpy).

    The tiled objective gathers every tile's projections into ``projected``
    (N, K), computes this once, and hands each tile its rows of the gradient.

    Returns
    -------
    value : float
    grad : np.ndarray (N, K), ``projected``'s dtype
    """
    order = np.argsort(projected, axis=0, kind="stable")
    ranked = np.take_along_axis(projected, order, axis=0)
    diff = ranked.astype(np.float64) - target
    value = scale * float(np.mean(np.square(diff)))
    grad = np.empty_like(projected)
    np.put_along_axis(grad, order, (2.0 * scale / diff.size * diff).astype(projected.dtype), axis=0)
    return value, grad
