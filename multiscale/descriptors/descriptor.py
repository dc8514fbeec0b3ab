"""Gram descriptors: a streaming accumulator of Gram matrices and its file format.

A descriptor summarises any number of source images by running sums of their
Gram matrices, one per ``(octave, layer)`` key, and optionally of their
sliced statistic's quantile functions (a *quantile bank*, see
:class:`multiscale.measure.sliced.QuantileBank`). Memory is independent of the
number of images (unless every Gram is kept for the affine-invariant join),
descriptors built on separate shards merge exactly, and the result is saved
as an ``.npz`` file that is checked member by member before anything is
allocated when it is read back.

File format (version 3; version 2 is the same without means, version 1 without a bank either)
----------------------------------------------------------------------------------------------
A zip archive readable by :func:`numpy.load` (``allow_pickle=False``) with
uncompressed ``.npy`` members:

``meta``
    uint8, shape (n,): UTF-8 JSON text with ``format``, ``version``,
    ``backbone``, ``weights_sha256``, ``descriptor`` (octaves, layers,
    pooling, padding, source_scale, source_width), ``channels`` (layer → C),
    ``eps``, ``keep_all``, ``count``, ``total_weight``, ``sources`` (list of
    ``{name, sha256, weight}`` in the order images were added),
    ``created`` (library versions) and, optionally, ``color_sum``:
    ``Σ w_i m_i`` with ``m_i`` image i's mean RGB in [0, 1] (three numbers,
    or null when some image was added without its colour; files without the
    key read as null). It gives a synthesis from the descriptor alone its
    start colour. Version 2 adds ``bank``: null, or ``{draws, levels,
    seed}``, the shape and directions' seed of the quantile bank. Version 3
    adds ``means``: true when the file holds the first moments (files
    without the key hold none).
``sum/{octave}/{layer}``
    float64, shape (C, C): ``Σ w_i G_i``.
``log_sum/{octave}/{layer}``
    float64, shape (C, C): ``Σ w_i log(R(G_i))``, ``R`` the regulariser of
    :func:`multiscale.descriptors.joins.regularise` with the recorded ``eps``.
``all/{octave}/{layer}``
    float64, shape (count, C, C): every image's Gram (only when ``keep_all``).
``bank_levels`` (with a bank)
    float64, shape (L,): the levels, increasing in (0, 1).
``bank_sum/{octave}/{layer}`` (with a bank)
    float32, shape (draws, L, C): ``Σ w_i q_i``, ``q_i`` image i's quantile
    functions of its features projected on the bank's directions
    (:func:`multiscale.measure.sliced.measure_bank`). Sums of nondecreasing
    functions, so each is nondecreasing along L. Held in float64 in memory;
    float32 in the file (5 MiB for the default layers at 4 octaves), so a
    merge of files equals one build to float32 rounding.
``mean_sum/{octave}/{layer}`` (with means)
    float64, shape (C,): ``Σ w_i μ_i``, ``μ_i`` image i's mean feature vector
    (:func:`multiscale.measure.gram.feature_mean`), for the ``mean`` statistic.

A file gets the oldest version that holds what it holds: without a bank or
means it is version 1, which older versions of multiscale read as before;
with a bank (and no means) version 2; with means version 3. Older readers
refuse a newer version with "made by a newer multiscale … upgrade".
Means are stored only when asked for (``grams build --statistics …,mean``),
although they are small (Σ C floats per octave), so that a Gram-only file
stays readable by every older multiscale.

Members are written in a fixed order with a fixed timestamp, so the same
descriptor always gives the same bytes.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import re
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .._version import __version__
from ..config import DescriptorConfig
from ..errors import ConfigError, DescriptorError
from ..io import PathLike
from ..layers import GramKey
from ..measure.sliced import BANK_DRAWS, BANK_SEED, QuantileBank, bank_levels
from ..npz import Member, NpzReader, write_npz
from .joins import (
    DEFAULT_EPS,
    DEFAULT_MAX_ITER,
    DEFAULT_TOL,
    affine_invariant_mean,
    log_euclidean_join,
    mean_join,
    spd_log,
    symmetrise,
)

logger = logging.getLogger(__name__)

#: Newest version of the file format (written when the descriptor matches
#: coarse layers); files with a larger version were made by a newer
#: multiscale and are refused.
FORMAT_VERSION = 4

#: Version written for a descriptor with ``coarse_layers`` (layers measured at
#: its coarse octaves only), whatever else it holds.
COARSE_VERSION = 4

#: Version written for a descriptor with a quantile bank and no means.
BANK_VERSION = 2

#: Version written for a descriptor with first moments (means).
MEANS_VERSION = 3

#: Version written for a descriptor without a quantile bank: the Gram-only
#: format, which older multiscale versions read.
GRAMS_ONLY_VERSION = 1

#: Most draws and levels a file's quantile bank may declare.
MAX_BANK_DRAWS = 1024
MAX_BANK_LEVELS = 65536

#: Value of ``meta["format"]``, telling a descriptor from any other npz.
FORMAT_NAME = "multiscale-gram-descriptor"

#: The joins :meth:`GramDescriptor.join` knows.
JOIN_METHODS = ("mean", "log-euclidean", "affine-invariant")

#: Default cap on the bytes a descriptor file may declare (4 GiB). A file of
#: 500 images with every Gram kept (see :func:`keep_all_nbytes`) needs 1.4 GB.
DEFAULT_MAX_BYTES = 4 * 1024**3

#: Fields of :class:`DescriptorConfig` that change what is measured. Layer and
#: octave weights only weight the loss, and the weights *path* is replaced by
#: the weights file's hash, so none of them is stored or compared.
MEASUREMENT_FIELDS = (
    "octaves", "layers", "pooling", "padding", "source_scale", "source_width", "coarse_layers", "coarse_from",
)  # fmt: skip

#: Measurement fields a file holds only with coarse layers (files of
#: :data:`COARSE_VERSION` on), so that every other file reads as before.
_OPTIONAL_MEASUREMENT = {"coarse_layers": [], "coarse_from": 1}

#: The meta text may not exceed this (64 MiB ≈ 400 000 sources).
MAX_META_BYTES = 64 * 1024**2

#: Most members and central-directory bytes an archive may list. A descriptor
#: has 2 + 4 × octaves × layers ≤ 722 members.
MAX_MEMBERS = 4096
MAX_DIRECTORY_BYTES = 4 * 1024**2

#: Largest channel count accepted from a file (VGG16 has at most 512).
MAX_CHANNELS = 65536

#: Allowed asymmetry ``max|G - Gᵀ| / max|G|`` of a Gram given to ``add``.
#: Float32 Grams from a GPU matmul are symmetric only to round-off.
ADD_SYMMETRY_RTOL = 1e-4

#: Allowed asymmetry of arrays read from a file; this module writes exactly
#: symmetric arrays, so anything beyond round-off means another writer or tampering.
LOAD_SYMMETRY_RTOL = 1e-9

#: ``sum`` must equal ``Σ w_i all_i`` to this relative tolerance in a file.
LOAD_CONSISTENCY_RTOL = 1e-9

_SHA256 = re.compile(r"[0-9a-f]{64}")
#: The ``meta`` member: UTF-8 JSON text as bytes.
_META = Member((None,), (np.uint8,))

FloatArray = NDArray[np.float64]

__all__ = [
    "DEFAULT_MAX_BYTES",
    "BANK_VERSION",
    "COARSE_VERSION",
    "FORMAT_VERSION",
    "GRAMS_ONLY_VERSION",
    "MEANS_VERSION",
    "JOIN_METHODS",
    "MEASUREMENT_FIELDS",
    "GramDescriptor",
    "keep_all_nbytes",
    "measurement_of",
    "require_means",
]


def measurement_of(config: DescriptorConfig) -> dict[str, Any]:
    """The fields of ``config`` that decide what a descriptor measures, as JSON-ready data.

    Parameters
    ----------
    config : DescriptorConfig

    Returns
    -------
    dict
        ``octaves``, ``layers`` (a list), ``pooling``, ``padding``,
        ``source_scale``, ``source_width``, ``coarse_layers`` (a list),
        ``coarse_from``.
    """
    full = dataclasses.asdict(config)
    out = {name: full[name] for name in MEASUREMENT_FIELDS}
    out["layers"] = list(out["layers"])
    out["coarse_layers"] = list(out["coarse_layers"])
    return out


def keep_all_nbytes(*, count: int, octaves: int, channels: Mapping[str, int]) -> int:
    """Bytes needed to keep every image's Grams (``keep_all=True``).

    ``count × octaves × Σ_layers C² × 8``. For 500 images, 4 octaves and
    layers conv1_1, pool1, pool2, pool3 (C = 64, 64, 128, 256) that is
    500 × 4 × 90 112 × 8 = 1 441 792 000 bytes (1.34 GiB), both in memory
    and in the file — against 5.8 MB for the two running sums.

    Parameters
    ----------
    count : int
        Number of images.
    octaves : int
        Number of octaves.
    channels : mapping of str to int
        Channels ``C`` of each layer of the descriptor.

    Returns
    -------
    int
    """
    return int(count) * int(octaves) * sum(int(c) ** 2 for c in channels.values()) * 8


class GramDescriptor:
    """Running sums of Gram matrices over images, per ``(octave, layer)``.

    Build one with :meth:`empty` and :meth:`add`, or read one with
    :meth:`load`; combine with :meth:`merge`; average with :meth:`join`.

    For every key ``(octave, layer)`` with ``C = channels[layer]`` it keeps,
    in float64:

    - ``sums[key]``, shape (C, C): ``Σ w_i G_i``;
    - ``log_sums[key]``, shape (C, C): ``Σ w_i log(R(G_i))``, so both the
      arithmetic and the log-Euclidean mean stream in O(1) memory in the
      number of images;
    - with ``keep_all``, ``all_grams[key]``, shape (count, C, C): every
      image's Gram, needed by the affine-invariant join. That costs
      :func:`keep_all_nbytes` bytes: count × octaves × Σ C² × 8, e.g.
      1.44 GB (1.34 GiB) for 500 images, 4 octaves and conv1_1, pool1,
      pool2, pool3 (C = 64, 64, 128, 256);
    - with a quantile bank (for the sliced statistic), ``bank_sums[key]``,
      shape (draws, L, C): ``Σ w_i q_i`` of the images' quantile functions
      (see :attr:`bank`);
    - with means (for the ``mean`` statistic), ``mean_sums[key]``, shape
      (C,): ``Σ w_i μ_i`` of the images' mean feature vectors (see :attr:`means`).

    ``count`` (images) and ``total_weight`` (``Σ w_i``) are shared by all keys
    since every image contributes to every key. Arrays handed out are
    read-only views; the object is never changed except by :meth:`add`.
    """

    def __init__(
        self,
        *,
        measurement: dict[str, Any],
        backbone: str,
        weights_sha256: str,
        channels: dict[str, int],
        eps: float,
        keep_all: bool,
        count: int = 0,
        total_weight: float = 0.0,
        sources: list[dict[str, Any]] | None = None,
        sums: dict[GramKey, FloatArray] | None = None,
        log_sums: dict[GramKey, FloatArray] | None = None,
        all_grams: dict[GramKey, list[FloatArray]] | None = None,
        created: dict[str, str] | None = None,
        color_sum: FloatArray | None = None,
        bank_sums: dict[GramKey, FloatArray] | None = None,
        bank_levels: FloatArray | None = None,
        bank_seed: int = BANK_SEED,
        mean_sums: dict[GramKey, FloatArray] | None = None,
        version: int | None = None,
        path: Path | None = None,
        file_bytes: int | None = None,
    ) -> None:
        # Private: use empty(), load() or merge(); they validate their inputs.
        self._measurement = measurement
        self._backbone = backbone
        self._weights_sha256 = weights_sha256
        self._channels = channels
        self._eps = float(eps)
        self._keep_all = bool(keep_all)
        self._keys: tuple[GramKey, ...] = tuple(_config_of(measurement).octave_layers())
        self._count = count
        self._total_weight = float(total_weight)
        self._sources = list(sources or [])
        self._sums = sums if sums is not None else {k: self._zeros(k) for k in self._keys}
        self._log_sums = log_sums if log_sums is not None else {k: self._zeros(k) for k in self._keys}
        self._all: dict[GramKey, list[FloatArray]] = (
            all_grams if all_grams is not None else {k: [] for k in self._keys} if keep_all else {}
        )
        self._created = created if created is not None else _created_info()
        # Σ w_i · mean RGB; None once an image came without its colour.
        self._color_sum = (
            np.zeros(3) if color_sum is None and count == 0 else None if color_sum is None else color_sum
        )
        # The quantile bank: None, or its levels (L,) and Σ w_i q_i per key (draws, L, C).
        self._bank_levels = bank_levels
        self._bank_seed = int(bank_seed)
        self._bank_sums: dict[GramKey, FloatArray] = {}
        if bank_levels is not None:
            bank_levels.setflags(write=False)
            self._bank_sums = (
                bank_sums
                if bank_sums is not None
                else {
                    k: np.zeros((BANK_DRAWS, len(bank_levels), channels[k[1]]), np.float64)
                    for k in self._keys
                }
            )
        # Σ w_i μ_i per key (C,); None: the descriptor holds no means.
        self._mean_sums = mean_sums
        self._version = version if version is not None else self._written_version()
        self._path = path
        self._file_bytes = file_bytes
        for arrays in (self._sums, self._log_sums, self._bank_sums, self._mean_sums or {}):
            for a in arrays.values():
                a.setflags(write=False)

    # ------------------------------------------------------------------ construction

    @classmethod
    def empty(
        cls,
        *,
        config: DescriptorConfig,
        backbone: str,
        weights_sha256: str,
        channels: Mapping[str, int],
        keep_all: bool = False,
        eps: float = DEFAULT_EPS,
        bank: bool = False,
        means: bool = False,
    ) -> GramDescriptor:
        """A descriptor holding no images yet.

        Parameters
        ----------
        config : DescriptorConfig
            What is measured; only :data:`MEASUREMENT_FIELDS` are kept.
        backbone : str
            Identifier of the network, e.g. ``"vgg16-hed-bsds500"``.
        weights_sha256 : str
            SHA-256 (64 hex digits) of the backbone's weights file.
        channels : mapping of str to int
            Channels ``C`` of each layer; must cover ``config.all_layers``
            (other entries are ignored).
        keep_all : bool
            Keep every image's Grams too, for the affine-invariant join (see
            :func:`keep_all_nbytes` for the cost).
        eps : float
            Relative regulariser of the log-Euclidean sums (≥ 0), see
            :func:`multiscale.descriptors.joins.regularise`.
        bank : bool
            Hold a quantile bank for the sliced statistic
            (:data:`~multiscale.measure.sliced.BANK_DRAWS` draws at
            :func:`~multiscale.measure.sliced.bank_levels`); every
            :meth:`add` must then bring the image's.
        means : bool
            Hold the images' mean feature vectors for the ``mean`` statistic;
            every :meth:`add` must then bring the image's.

        Returns
        -------
        GramDescriptor

        Raises
        ------
        DescriptorError
            If an argument is invalid (names it).
        """
        if not isinstance(config, DescriptorConfig):
            raise DescriptorError(f"config must be a DescriptorConfig, got {type(config).__name__}")
        if not isinstance(backbone, str) or not backbone.strip():
            raise DescriptorError(f"backbone must be a non-empty string, got {backbone!r}")
        sha = _check_sha256(weights_sha256, "weights_sha256")
        missing = [layer for layer in config.all_layers if layer not in channels]
        if missing:
            raise DescriptorError(f"channels: no channel count for layer(s) {', '.join(missing)}")
        chans: dict[str, int] = {}
        for layer in config.all_layers:
            c = channels[layer]
            if isinstance(c, bool) or not isinstance(c, (int, np.integer)) or not 1 <= c <= MAX_CHANNELS:
                raise DescriptorError(
                    f"channels[{layer!r}] must be an integer in 1…{MAX_CHANNELS}, got {c!r}"
                )
            chans[layer] = int(c)
        if not (isinstance(eps, (int, float)) and math.isfinite(eps) and eps >= 0):
            raise DescriptorError(f"eps must be a finite number ≥ 0, got {eps!r}")
        return cls(
            measurement=measurement_of(config),
            backbone=backbone,
            weights_sha256=sha,
            channels=chans,
            eps=float(eps),
            keep_all=bool(keep_all),
            bank_levels=bank_levels() if bank else None,
            mean_sums={k: np.zeros(chans[k[1]]) for k in config.octave_layers()} if means else None,
        )

    def add(
        self,
        grams: Mapping[tuple[int, str], ArrayLike],
        *,
        name: str,
        sha256: str,
        weight: float = 1.0,
        mean_color: ArrayLike | None = None,
        bank: Mapping[GramKey, ArrayLike] | None = None,
        means: Mapping[GramKey, ArrayLike] | None = None,
    ) -> None:
        """Add one image's Grams, with a weight (and optionally its mean colour).

        Everything is checked before anything changes: on error the
        descriptor is as before, so a caller may skip the image and go on.

        Parameters
        ----------
        grams : mapping of (int, str) to array_like
            One Gram per key ``(octave, layer)`` of :attr:`keys`, shape
            (C, C), real, finite and symmetric to ``ADD_SYMMETRY_RTOL`` of its
            largest entry (float32 is fine; it is stored as float64, symmetrised).
        name : str
            The image's name as shown to users (usually its file name).
        sha256 : str
            SHA-256 of the image file (64 hex digits).
        weight : float
            Finite, > 0.
        mean_color : array_like, shape (3,), optional
            The image's mean RGB in [0, 1], as measured; kept as a weighted
            sum so that :attr:`mean_color` can start a synthesis. Without it
            the descriptor stops tracking colour.
        bank : mapping of (int, str) to array_like, optional
            The image's quantile functions per key, shape (draws, L, C)
            (:func:`multiscale.measure.sliced.measure_bank` at this
            descriptor's levels); required when it holds a bank, refused otherwise.
        means : mapping of (int, str) to array_like, optional
            The image's mean feature vector per key, shape (C,)
            (:func:`multiscale.measure.gram.image_moments`); required when
            it holds means, refused otherwise.

        Raises
        ------
        DescriptorError
            Message starts with ``name``: missing or unexpected keys, a wrong
            shape, NaN/Inf, an asymmetric or non-PSD matrix, an all-zero Gram
            (its logarithm does not exist), a bad weight or hash.
        """
        if not isinstance(name, str) or not name:
            raise DescriptorError(f"name must be a non-empty string, got {name!r}")
        sha = _check_sha256(sha256, f"{name}: sha256")
        if isinstance(weight, bool) or not isinstance(weight, (int, float, np.floating)):
            raise DescriptorError(f"{name}: weight must be a number, got {weight!r}")
        weight = float(weight)
        if not (math.isfinite(weight) and weight > 0):
            raise DescriptorError(f"{name}: weight must be finite and > 0, got {weight!r}")
        color = None
        if mean_color is not None:
            color = np.asarray(mean_color, dtype=np.float64)
            if color.shape != (3,) or not np.all(np.isfinite(color)) or color.min() < 0 or color.max() > 1:
                raise DescriptorError(
                    f"{name}: mean_color must be three numbers in [0, 1], got {mean_color!r}"
                )
        given = {}
        for key, value in grams.items():
            norm = _normalise_key(key)
            given[norm if norm is not None else key] = value
        expected = set(self._keys)
        missing = [k for k in self._keys if k not in given]
        unexpected = [k for k in given if k not in expected]
        if missing or unexpected:
            parts = []
            if missing:
                parts.append("missing " + ", ".join(_key_label(k) for k in missing))
            if unexpected:
                parts.append("unexpected " + ", ".join(repr(k) for k in unexpected))
            raise DescriptorError(f"{name}: Grams do not match the descriptor's keys: {'; '.join(parts)}")

        new_grams: dict[GramKey, FloatArray] = {}
        new_logs: dict[GramKey, FloatArray] = {}
        for key in self._keys:
            where = f"{name}: Gram at {_key_label(key)}"
            arr = np.asarray(given[key])
            c = self._channels[key[1]]
            if arr.shape != (c, c):
                raise DescriptorError(f"{where} has shape {arr.shape}, expected ({c}, {c})")
            if arr.dtype.kind not in "fiu":
                raise DescriptorError(f"{where} has dtype {arr.dtype}, expected a real number type")
            g = arr.astype(np.float64)
            if not np.all(np.isfinite(g)):
                raise DescriptorError(f"{where} has NaN or infinite entries")
            _check_symmetric(g, ADD_SYMMETRY_RTOL, where)
            g = symmetrise(g)
            try:
                new_logs[key] = spd_log(g, eps=self._eps)
            except DescriptorError as exc:
                raise DescriptorError(f"{where}: {exc}") from None
            new_grams[key] = g
        new_bank = self._checked_bank(bank, name)
        new_means = self._checked_means(means, name)

        # Commit: new arrays rather than in-place updates, so views handed out stay valid.
        for key in new_means:
            m = self._mean_sums[key] + weight * new_means[key]
            m.setflags(write=False)
            self._mean_sums[key] = m
        for key in new_bank:
            b = self._bank_sums[key] + weight * new_bank[key]
            b.setflags(write=False)
            self._bank_sums[key] = b
        for key in self._keys:
            s = self._sums[key] + weight * new_grams[key]
            ls = self._log_sums[key] + weight * new_logs[key]
            s.setflags(write=False)
            ls.setflags(write=False)
            self._sums[key], self._log_sums[key] = s, ls
            if self._keep_all:
                new_grams[key].setflags(write=False)
                self._all[key].append(new_grams[key])
        if any(src["sha256"] == sha for src in self._sources):
            logger.warning("%s: an image with the same SHA-256 is already in the descriptor", name)
        self._color_sum = (
            None if color is None or self._color_sum is None else self._color_sum + weight * color
        )
        self._count += 1
        self._total_weight += weight
        self._sources.append({"name": name, "sha256": sha, "weight": weight})

    def _checked_bank(self, bank: Mapping[GramKey, ArrayLike] | None, name: str) -> dict[GramKey, FloatArray]:
        """One image's quantile bank, checked against this descriptor's (empty when it holds none)."""
        out = self._checked_extra(
            bank, name, held=self._bank_levels is not None, what="quantile bank",
            shape=lambda key: self._bank_sums[key].shape,
        )  # fmt: skip
        for key, arr in out.items():
            if np.any(np.diff(arr, axis=1) < 0):
                raise DescriptorError(
                    f"{name}: quantile bank at {_key_label(key)} decreases along the levels; not quantiles"
                )
        return out

    def _checked_means(
        self, means: Mapping[GramKey, ArrayLike] | None, name: str
    ) -> dict[GramKey, FloatArray]:
        """One image's mean feature vectors, checked against this descriptor's (empty when it holds none)."""
        return self._checked_extra(
            means, name, held=self._mean_sums is not None, what="mean feature vector",
            shape=lambda key: (self._channels[key[1]],),
        )  # fmt: skip

    def _checked_extra(
        self,
        arrays: Mapping[GramKey, ArrayLike] | None,
        name: str,
        *,
        held: bool,
        what: str,
        shape: Callable[[GramKey], tuple[int, ...]],
    ) -> dict[GramKey, FloatArray]:
        """One image's per-key arrays of an optional part (``what``: the quantile bank, the means), as
        float64: required when the descriptor ``held`` it, refused otherwise; every key, its shape, finite."""
        if not held:
            if arrays is not None:
                raise DescriptorError(f"{name}: {what}s were given, but this descriptor holds none")
            return {}
        if arrays is None:
            raise DescriptorError(f"{name}: this descriptor holds {what}s; give the image's")
        given = {_normalise_key(k) or k: v for k, v in arrays.items()}
        if set(given) != set(self._keys):
            raise DescriptorError(f"{name}: the {what}s do not match the descriptor's keys")
        out = {}
        for key in self._keys:
            arr = np.asarray(given[key], dtype=np.float64)
            if arr.shape != shape(key):
                raise DescriptorError(
                    f"{name}: {what} at {_key_label(key)} has shape {arr.shape}, expected {shape(key)}"
                )
            if not np.all(np.isfinite(arr)):
                raise DescriptorError(f"{name}: {what} at {_key_label(key)} has NaN or infinite entries")
            out[key] = arr
        return out

    def merge(self, *others: GramDescriptor) -> GramDescriptor:
        """A new descriptor holding the images of ``self`` and ``others``.

        Exact: sums add, counts and total weights add, sources are
        concatenated in order (never a mean of means). Equivalent to
        ``GramDescriptor.merge_all([self, *others])``.

        Raises
        ------
        DescriptorError
            If any descriptor is incompatible with ``self``; lists every
            differing field with both values.
        """
        return GramDescriptor.merge_all([self, *others])

    @classmethod
    def merge_all(cls, descriptors: Iterable[GramDescriptor]) -> GramDescriptor:
        """Merge descriptors exactly (see :meth:`merge`).

        Descriptors must agree on format version, backbone, weights hash,
        octaves, layers, pooling, padding, source scale and width, channels
        and ``eps``. If some keep every Gram and others do not, the result
        does not (logged as a warning): the affine-invariant join then needs
        a rebuild with ``--keep-grams``. Likewise for quantile banks: they
        add when every descriptor holds one (of the same draws and levels),
        else the result holds none (a warning says so); so do means.

        Parameters
        ----------
        descriptors : iterable of GramDescriptor
            At least one.

        Returns
        -------
        GramDescriptor
            A new object; the inputs are unchanged.

        Raises
        ------
        DescriptorError
            No descriptors, or incompatible ones (every difference listed).
        """
        ds = list(descriptors)
        if not ds:
            raise DescriptorError("nothing to merge: no descriptors given")
        for d in ds:
            if not isinstance(d, GramDescriptor):
                raise DescriptorError(f"can only merge GramDescriptor objects, got {type(d).__name__}")
        first = ds[0]
        problems = []
        for i, d in enumerate(ds[1:], start=1):
            diffs = _differences(first._identity(), d._identity())
            if diffs:
                problems.append(f"{first._label(0)} and {d._label(i)} differ in {'; '.join(diffs)}")
        if problems:
            raise DescriptorError("cannot merge incompatible descriptors: " + " | ".join(problems))
        keep_all = all(d._keep_all for d in ds)
        if not keep_all and any(d._keep_all for d in ds):
            logger.warning(
                "merging descriptors with and without kept Grams: the result keeps none, "
                "so the affine-invariant join needs a rebuild with --keep-grams"
            )
        banks = [d._bank_levels is not None for d in ds]
        if any(banks) and not all(banks):
            logger.warning(
                "merging descriptors with and without a quantile bank: the result holds none, "
                "so the sliced statistic needs a rebuild with --statistics gram,sliced"
            )
        if all(banks):
            diffs = [
                f"{first._label(0)} and {d._label(i)} hold other quantile banks ({'; '.join(found)})"
                for i, d in enumerate(ds[1:], start=1)
                if (found := _differences(first._bank_identity(), d._bank_identity()))
            ]
            if diffs:
                raise DescriptorError("cannot merge incompatible descriptors: " + " | ".join(diffs))
        bank_sums = {k: _sum_arrays(d._bank_sums[k] for d in ds) for k in first._keys} if all(banks) else None
        with_means = [d._mean_sums is not None for d in ds]
        if any(with_means) and not all(with_means):
            logger.warning(
                "merging descriptors with and without mean feature vectors: the result holds none, "
                "so the mean statistic needs a rebuild with --statistics gram,mean"
            )
        mean_sums = (
            {k: _sum_arrays(d._mean_sums[k] for d in ds) for k in first._keys}  # type: ignore[index]
            if all(with_means)
            else None
        )
        sums = {k: _sum_arrays(d._sums[k] for d in ds) for k in first._keys}
        log_sums = {k: _sum_arrays(d._log_sums[k] for d in ds) for k in first._keys}
        all_grams = {k: [g for d in ds for g in d._all[k]] for k in first._keys} if keep_all else None
        total = 0.0
        for d in ds:
            total += d._total_weight
        colors = [d._color_sum for d in ds]
        color_sum = None if any(c is None for c in colors) else _sum_arrays(colors)
        sources = [dict(src) for d in ds for src in d._sources]
        shas = [s["sha256"] for s in sources]
        if len(set(shas)) != len(shas):
            logger.warning("merged descriptor counts %d image(s) more than once", len(shas) - len(set(shas)))
        return cls(
            measurement=first.measurement,
            backbone=first._backbone,
            weights_sha256=first._weights_sha256,
            channels=dict(first._channels),
            eps=first._eps,
            keep_all=keep_all,
            count=sum(d._count for d in ds),
            total_weight=total,
            sources=sources,
            sums=sums,
            log_sums=log_sums,
            all_grams=all_grams,
            color_sum=color_sum,
            bank_sums=bank_sums,
            bank_levels=None if bank_sums is None else first._bank_levels.copy(),
            bank_seed=first._bank_seed,
            mean_sums=mean_sums,
        )

    # ------------------------------------------------------------------ results

    def join(
        self,
        method: str = "mean",
        *,
        tol: float = DEFAULT_TOL,
        max_iter: int = DEFAULT_MAX_ITER,
    ) -> dict[GramKey, FloatArray]:
        """One Gram matrix per key: the weighted mean of the images' Grams.

        Parameters
        ----------
        method : {"mean", "log-euclidean", "affine-invariant"}
            ``mean``: ``sums / total_weight``. ``log-euclidean``:
            ``exp(log_sums / total_weight)``. ``affine-invariant``: the
            weighted Karcher mean of the regularised Grams (needs
            ``keep_all``), see :func:`multiscale.descriptors.joins.affine_invariant_mean`.
            The log-domain joins average ``R(G_i) = G_i + eps·trace(G_i)/C·I``,
            so a one-image descriptor gives back ``R(G_1)``, not ``G_1``.
        tol, max_iter
            Stopping rule of the affine-invariant iteration (ignored otherwise).

        Returns
        -------
        dict of (int, str) to ndarray
            float64 arrays of shape (C, C), symmetric (positive definite for
            the log-domain joins), keyed as :attr:`keys`.

        Raises
        ------
        ConfigError
            Unknown ``method`` (field ``join``).
        DescriptorError
            The descriptor holds no images, or ``affine-invariant`` is asked
            of a descriptor built without every Gram.
        """
        if method not in JOIN_METHODS:
            raise ConfigError("join", f"must be one of {', '.join(JOIN_METHODS)}, got {method!r}")
        if self._count == 0:
            raise DescriptorError(f"{self._label()}: holds no images; nothing to join")
        if method == "mean":
            return {k: mean_join(self._sums[k], self._total_weight) for k in self._keys}
        if method == "log-euclidean":
            return {k: log_euclidean_join(self._log_sums[k], self._total_weight) for k in self._keys}
        if not self._keep_all:
            raise DescriptorError(
                f"{self._label()}: the affine-invariant join needs every image's Gram, which this "
                "descriptor did not keep; rebuild it with --keep-grams (or use the mean or "
                "log-euclidean join)"
            )
        weights = np.array([s["weight"] for s in self._sources], dtype=np.float64)
        out = {}
        for k in self._keys:
            init = log_euclidean_join(self._log_sums[k], self._total_weight)
            out[k] = affine_invariant_mean(
                np.stack(self._all[k]), weights, eps=self._eps, tol=tol, max_iter=max_iter, init=init
            )
        return out

    # ------------------------------------------------------------------ compatibility

    def differences(
        self,
        config: DescriptorConfig,
        *,
        backbone: str,
        weights_sha256: str,
        ignore: Collection[str] = (),
    ) -> list[str]:
        """What differs between this descriptor and a run's settings.

        Parameters
        ----------
        config : DescriptorConfig
            The run's descriptor config; its :data:`MEASUREMENT_FIELDS` are compared.
        backbone, weights_sha256 : str
            The run's backbone id and weights hash.
        ignore : collection of str
            Field names not to compare (e.g. ``{"source_scale", "source_width"}``
            when synthesising from the descriptor alone).

        Returns
        -------
        list of str
            One ``"field: descriptor value vs run value"`` per difference;
            empty when compatible.
        """
        ours = {
            "backbone": self._backbone,
            "weights_sha256": self._weights_sha256,
            **self._measurement,
        }
        theirs = {
            "backbone": backbone,
            "weights_sha256": str(weights_sha256).lower(),
            **measurement_of(config),
        }
        return [
            f"{name}: {ours[name]!r} (descriptor) vs {theirs[name]!r} (run)"
            for name in ours
            if name not in ignore and ours[name] != theirs[name]
        ]

    def compatible_with(
        self,
        config: DescriptorConfig,
        *,
        backbone: str,
        weights_sha256: str,
        ignore: Collection[str] = (),
    ) -> bool:
        """Whether :meth:`differences` finds nothing."""
        return not self.differences(config, backbone=backbone, weights_sha256=weights_sha256, ignore=ignore)

    def check_compatible(
        self,
        config: DescriptorConfig,
        *,
        backbone: str,
        weights_sha256: str,
        ignore: Collection[str] = (),
    ) -> None:
        """Raise :class:`DescriptorError` listing every difference from a run's settings.

        The message starts with the descriptor's path (if it was loaded).
        """
        diffs = self.differences(config, backbone=backbone, weights_sha256=weights_sha256, ignore=ignore)
        if diffs:
            raise DescriptorError(f"{self._label()}: descriptor does not match this run: {'; '.join(diffs)}")

    # ------------------------------------------------------------------ files

    def save(self, path: PathLike, *, overwrite: bool = False) -> Path:
        """Write the descriptor to ``path`` atomically (format in the module docstring).

        The name is used as given (no ``.npz`` is appended).

        Returns
        -------
        Path

        Raises
        ------
        DescriptorError
            If the descriptor holds no images.
        OutputError
            If ``path`` exists and not ``overwrite``, or cannot be written.
        """
        if self._count == 0:
            raise DescriptorError(f"{path}: nothing to save; the descriptor holds no images")
        meta = json.dumps(self._meta(), allow_nan=False, ensure_ascii=False).encode("utf-8")

        def members() -> Iterator[tuple[str, np.ndarray]]:
            # A generator, so that only one kept-Grams stack exists at a time.
            yield "meta", np.frombuffer(meta, dtype=np.uint8)
            if self._bank_levels is not None:
                yield "bank_levels", self._bank_levels
            for k in self._keys:
                yield _member("sum", k), self._sums[k]
                yield _member("log_sum", k), self._log_sums[k]
                if self._keep_all:
                    yield _member("all", k), np.stack(self._all[k])
                if self._bank_levels is not None:
                    yield _member("bank_sum", k), self._bank_sums[k].astype(np.float32)
                if self._mean_sums is not None:
                    yield _member("mean_sum", k), self._mean_sums[k]

        write_npz(path, members(), overwrite=overwrite)
        logger.info("wrote descriptor %s (%d images)", path, self._count)
        return Path(path)

    @classmethod
    def load(cls, path: PathLike, *, max_bytes: int = DEFAULT_MAX_BYTES) -> GramDescriptor:
        """Read a descriptor file, checking everything before allocating.

        Every member's ``.npy`` header is read from the archive and its dtype
        and shape compared with what the metadata implies, and the declared
        sizes with ``max_bytes`` and with the archive's record, before any
        array data is read; pickled (object) members are refused without
        unpickling. Then values must be finite, Grams symmetric, sums
        consistent with the kept Grams, and the metadata self-consistent.

        Parameters
        ----------
        path : str or PathLike
        max_bytes : int
            Most bytes of array data the file may declare (default
            :data:`DEFAULT_MAX_BYTES`).

        Returns
        -------
        GramDescriptor

        Raises
        ------
        DescriptorError
            Message starts with ``path``: missing or unreadable file, not an
            npz archive, truncated or corrupted, made by a newer multiscale,
            missing, unexpected or malformed members, too large, non-finite
            or asymmetric values, inconsistent metadata.
        """
        p = Path(path)
        return _Loader(p, max_bytes=max_bytes).load()

    # ------------------------------------------------------------------ introspection

    def info(self) -> dict[str, Any]:
        """A JSON-ready summary for ``grams info``.

        Returns
        -------
        dict
            ``path`` and ``file_bytes`` (``None`` unless loaded), ``format``,
            ``version``, ``backbone``, ``weights_sha256``, ``descriptor``,
            ``channels``, ``eps``, ``keep_all``, ``count``, ``total_weight``,
            ``created``, ``color_sum`` and ``mean_color`` (``None`` if not
            tracked), ``memory_bytes``, ``keys`` (octave, layer, shape),
            ``sources``, ``bank`` (``None``, or its ``draws``, ``levels``
            and ``seed``) and ``means`` (whether it holds mean feature vectors).
        """
        color = self.mean_color
        return {
            "path": None if self._path is None else os.fspath(self._path),
            "file_bytes": self._file_bytes,
            "bank": None,
            "means": False,
            **self._meta(),
            "descriptor": self.measurement,
            "version": self._version,
            "mean_color": None if color is None else [float(v) for v in color],
            "memory_bytes": self.nbytes,
            "keys": [
                {"octave": o, "layer": layer, "shape": [self._channels[layer]] * 2} for o, layer in self._keys
            ],
        }

    @property
    def version(self) -> int:
        """Format version (of the file it was loaded from, else the one :meth:`save` writes:
        :data:`GRAMS_ONLY_VERSION` without a bank or means, :data:`BANK_VERSION` with a bank and
        no means, :data:`MEANS_VERSION` with means)."""
        return self._version

    @property
    def backbone(self) -> str:
        """Backbone identifier."""
        return self._backbone

    @property
    def weights_sha256(self) -> str:
        """SHA-256 of the backbone weights (lowercase hex)."""
        return self._weights_sha256

    @property
    def measurement(self) -> dict[str, Any]:
        """The :data:`MEASUREMENT_FIELDS` as a dict (a copy)."""
        m = self._measurement
        return dict(m, layers=list(m["layers"]), coarse_layers=list(m["coarse_layers"]))

    def descriptor_config(self) -> DescriptorConfig:
        """A :class:`DescriptorConfig` with this descriptor's measurement fields (others default)."""
        return _config_of(self._measurement)

    @property
    def mean_color(self) -> NDArray[np.float32] | None:
        """Weighted mean RGB of the images in [0, 1], float32 (3,); ``None`` if not tracked or empty."""
        if self._color_sum is None or self._count == 0:
            return None
        return np.clip(self._color_sum / self._total_weight, 0.0, 1.0).astype(np.float32)

    @property
    def channels(self) -> dict[str, int]:
        """Channels ``C`` of each layer (a copy)."""
        return dict(self._channels)

    @property
    def eps(self) -> float:
        """Relative regulariser of the log sums."""
        return self._eps

    @property
    def keep_all(self) -> bool:
        """Whether every image's Grams are kept."""
        return self._keep_all

    @property
    def count(self) -> int:
        """Number of images added."""
        return self._count

    @property
    def total_weight(self) -> float:
        """``Σ w_i`` over the images."""
        return self._total_weight

    @property
    def sources(self) -> list[dict[str, Any]]:
        """``{name, sha256, weight}`` of each image, in order (copies)."""
        return [dict(s) for s in self._sources]

    @property
    def keys(self) -> tuple[GramKey, ...]:
        """``(octave, layer)`` keys, octave-major, layers in config order."""
        return self._keys

    @property
    def path(self) -> Path | None:
        """The file it was loaded from, if any."""
        return self._path

    @property
    def sums(self) -> dict[GramKey, FloatArray]:
        """``Σ w_i G_i`` per key: read-only float64 arrays of shape (C, C)."""
        return dict(self._sums)

    @property
    def log_sums(self) -> dict[GramKey, FloatArray]:
        """``Σ w_i log(R(G_i))`` per key: read-only float64 arrays of shape (C, C)."""
        return dict(self._log_sums)

    @property
    def all_grams(self) -> dict[GramKey, FloatArray]:
        """Every image's Gram per key: float64 arrays of shape (count, C, C) (new copies).

        Raises
        ------
        DescriptorError
            If the descriptor does not keep them.
        """
        if not self._keep_all:
            raise DescriptorError(f"{self._label()}: built without --keep-grams; per-image Grams not kept")
        c = self._channels
        return {k: np.stack(v) if v else np.zeros((0, c[k[1]], c[k[1]])) for k, v in self._all.items()}

    @property
    def has_bank(self) -> bool:
        """Whether the descriptor holds a quantile bank (the sliced statistic can use it)."""
        return self._bank_levels is not None

    @property
    def bank_draws(self) -> int:
        """Draws of directions in the quantile bank (0 without one)."""
        return 0 if not self._bank_sums else int(next(iter(self._bank_sums.values())).shape[0])

    @property
    def bank(self) -> QuantileBank | None:
        """The sliced statistic's targets: the images' weighted mean quantile functions.

        ``None`` without a bank. A mean of quantile functions is the 1-D
        Wasserstein barycentre of the images' projected features, whichever
        :meth:`join` the Grams use.

        Raises
        ------
        DescriptorError
            The descriptor holds no images.
        """
        if self._bank_levels is None:
            return None
        return QuantileBank(
            quantiles={
                k: q.astype(np.float32)
                for k, q in self._weighted_means(self._bank_sums, "quantile bank").items()
            },
            levels=self._bank_levels.copy(),
            seed=self._bank_seed,
        )

    @property
    def bank_sums(self) -> dict[GramKey, FloatArray]:
        """``Σ w_i q_i`` per key: read-only float64 arrays (draws, L, C); empty without a bank."""
        return dict(self._bank_sums)

    @property
    def has_means(self) -> bool:
        """Whether the descriptor holds the images' mean feature vectors (the mean statistic can use them)."""
        return self._mean_sums is not None

    @property
    def means(self) -> dict[GramKey, FloatArray] | None:
        """The ``mean`` statistic's targets: ``mean_sums / total_weight`` per key, float64 (C,).

        ``None`` without means. Always the arithmetic mean, whichever
        :meth:`join` the Grams use (a vector has no other geometry here).

        Raises
        ------
        DescriptorError
            The descriptor holds no images.
        """
        if self._mean_sums is None:
            return None
        return self._weighted_means(self._mean_sums, "mean feature vectors")

    def _weighted_means(self, sums: dict[GramKey, FloatArray], what: str) -> dict[GramKey, FloatArray]:
        """``sums / total_weight`` per key (the bank's and the means' targets); refused without images."""
        if self._count == 0:
            raise DescriptorError(f"{self._label()}: holds no images; no {what}")
        return {k: s / self._total_weight for k, s in sums.items()}

    @property
    def mean_sums(self) -> dict[GramKey, FloatArray]:
        """``Σ w_i μ_i`` per key: read-only float64 arrays (C,); empty without means."""
        return dict(self._mean_sums or {})

    @property
    def nbytes(self) -> int:
        """Bytes of array data held in memory."""
        sums = sum(a.nbytes for a in self._sums.values()) * 2
        kept = sum(g.nbytes for v in self._all.values() for g in v)
        bank = sum(a.nbytes for a in self._bank_sums.values())
        means = sum(a.nbytes for a in (self._mean_sums or {}).values())
        return sums + kept + bank + means

    def __repr__(self) -> str:
        where = f" from {self._path}" if self._path else ""
        return (
            f"<GramDescriptor{where}: {self._count} image(s), {len(self._keys)} keys, "
            f"backbone {self._backbone!r}, keep_all={self._keep_all}>"
        )

    # ------------------------------------------------------------------ internals

    def _zeros(self, key: GramKey) -> FloatArray:
        c = self._channels[key[1]]
        return np.zeros((c, c), dtype=np.float64)

    def _label(self, index: int | None = None) -> str:
        if self._path is not None:
            return os.fspath(self._path)
        return "descriptor" if index is None else f"descriptor #{index + 1}"

    def _identity(self) -> dict[str, Any]:
        """Everything two descriptors must share to be merged."""
        return {
            "backbone": self._backbone,
            "weights_sha256": self._weights_sha256,
            **self._measurement,
            "channels": self._channels,
            "eps": self._eps,
        }

    def _bank_identity(self) -> dict[str, Any]:
        """What two quantile banks must share to be added."""
        levels = self._bank_levels
        return {
            "bank draws": None if levels is None else self.bank_draws,
            "bank levels": None if levels is None else [float(v) for v in levels],
            "bank seed": self._bank_seed,
        }

    def _written_version(self) -> int:
        """The format version a file of this descriptor gets: the oldest that holds it."""
        if self._measurement["coarse_layers"]:
            return COARSE_VERSION
        if self._mean_sums is not None:
            return MEANS_VERSION
        return GRAMS_ONLY_VERSION if self._bank_levels is None else BANK_VERSION

    def _meta(self) -> dict[str, Any]:
        bank = (
            {}
            if self._bank_levels is None
            else {
                "bank": {"draws": self.bank_draws, "levels": len(self._bank_levels), "seed": self._bank_seed}
            }
        )
        return {
            "format": FORMAT_NAME,
            "version": self._written_version(),
            "backbone": self._backbone,
            "weights_sha256": self._weights_sha256,
            "descriptor": {  # coarse layers' fields only where there are any: older readers read the rest
                k: v
                for k, v in self.measurement.items()
                if k not in _OPTIONAL_MEASUREMENT or self._measurement["coarse_layers"]
            },
            "channels": dict(self._channels),
            "eps": self._eps,
            "keep_all": self._keep_all,
            "count": self._count,
            "total_weight": self._total_weight,
            "sources": self.sources,
            "created": dict(self._created),
            "color_sum": None if self._color_sum is None else [float(v) for v in self._color_sum],
            **bank,
            **({} if self._mean_sums is None else {"means": True}),
        }


# ---------------------------------------------------------------------- loading


class _Loader:
    """Reads one descriptor file; every failure is a DescriptorError naming the path."""

    def __init__(self, path: Path, *, max_bytes: int) -> None:
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1:
            raise DescriptorError(f"{path}: max_bytes must be a positive integer, got {max_bytes!r}")
        self.path = path
        self.max_bytes = max_bytes

    def fail(self, message: str) -> DescriptorError:
        return DescriptorError(f"{self.path}: {message}")

    def load(self) -> GramDescriptor:
        with NpzReader(
            self.path,
            error=DescriptorError,
            what="a descriptor file",
            max_members=MAX_MEMBERS,
            max_directory_bytes=MAX_DIRECTORY_BYTES,
        ) as reader:
            return self._read(reader)

    def _read(self, reader: NpzReader) -> GramDescriptor:
        if not reader.has("meta"):
            raise self.fail("not a multiscale descriptor: member 'meta' is missing")
        text = reader.read({"meta": _META}, max_bytes=MAX_META_BYTES)["meta"]
        meta = self._parse_meta(text.tobytes())
        count, keep_all, channels = meta["count"], meta["keep_all"], meta["channels"]
        measurement, bank, means = meta["descriptor"], meta["bank"], meta["means"]
        keys = _config_of(measurement).octave_layers()

        expected: dict[str, tuple[str, GramKey, tuple[int, ...]]] = {}
        for k in keys:
            c = channels[k[1]]
            expected[_member("sum", k)] = ("sum", k, (c, c))
            expected[_member("log_sum", k)] = ("log_sum", k, (c, c))
            if keep_all:
                expected[_member("all", k)] = ("all", k, (count, c, c))
        mean_shapes = {_member("mean_sum", k): (channels[k[1]],) for k in keys} if means else {}
        bank_shapes = (
            {}
            if bank is None
            else {_member("bank_sum", k): (bank["draws"], bank["levels"], channels[k[1]]) for k in keys}
        )
        needed = (
            sum(8 * math.prod(shape) for _, _, shape in expected.values())
            + sum(4 * math.prod(shape) for shape in bank_shapes.values())
            + sum(8 * math.prod(shape) for shape in mean_shapes.values())
        )
        if needed > self.max_bytes:
            raise self.fail(
                f"declares {needed} bytes of arrays ({count} images, keep_all={keep_all}), more than "
                f"max_bytes={self.max_bytes}; raise the limit only for a file you trust"
            )
        schema = {name: Member(shape, finite=True) for name, (_, _, shape) in expected.items()}
        schema.update(
            {name: Member(shape, (np.float32,), finite=True) for name, shape in bank_shapes.items()}
        )
        schema.update({name: Member(shape, finite=True) for name, shape in mean_shapes.items()})
        if bank is not None:
            schema["bank_levels"] = Member((bank["levels"],), finite=True)
        reader.check_names(schema, fit="the metadata", allowed=("meta",))
        # Every header is checked before any array is allocated.
        arrays = reader.read(schema, max_bytes=self.max_bytes)
        bank_sums, levels = self._bank(arrays, bank, keys)

        sums: dict[GramKey, FloatArray] = {}
        log_sums: dict[GramKey, FloatArray] = {}
        kept: dict[GramKey, FloatArray] = {}
        for name, (kind, key, _) in expected.items():
            arr = arrays[name]
            where = f"member {name}"
            _check_symmetric(arr, LOAD_SYMMETRY_RTOL, where, prefix=f"{self.path}: ")
            if kind != "log_sum" and np.any(np.diagonal(arr, axis1=-2, axis2=-1) < 0):
                raise self.fail(f"{where} has a negative diagonal entry; not a sum of Gram matrices")
            arr.setflags(write=False)
            {"sum": sums, "log_sum": log_sums, "all": kept}[kind][key] = arr

        weights = np.array([s["weight"] for s in meta["sources"]], dtype=np.float64)
        for key, stack in kept.items():
            recomputed = np.einsum("i,ijk->jk", weights, stack)
            scale = np.einsum("i,ijk->jk", weights, np.abs(stack)).max()
            if np.max(np.abs(recomputed - sums[key])) > LOAD_CONSISTENCY_RTOL * scale:
                raise self.fail(
                    f"member sum/{key[0]}/{key[1]} disagrees with the kept Grams and the source "
                    "weights in meta; the file is inconsistent"
                )
        all_grams = {k: list(stack) for k, stack in kept.items()} if keep_all else None
        return GramDescriptor(
            measurement=measurement,
            backbone=meta["backbone"],
            weights_sha256=meta["weights_sha256"],
            channels=channels,
            eps=meta["eps"],
            keep_all=keep_all,
            count=count,
            total_weight=meta["total_weight"],
            sources=meta["sources"],
            sums=sums,
            log_sums=log_sums,
            all_grams=all_grams,
            created=meta["created"],
            color_sum=meta["color_sum"],
            bank_sums=bank_sums,
            bank_levels=levels,
            bank_seed=BANK_SEED if bank is None else bank["seed"],
            mean_sums={k: arrays[_member("mean_sum", k)].astype(np.float64) for k in keys} if means else None,
            version=meta["version"],
            path=self.path,
            file_bytes=reader.size,
        )

    def _bank(
        self, arrays: Mapping[str, np.ndarray], bank: dict[str, int] | None, keys: Iterable[GramKey]
    ) -> tuple[dict[GramKey, FloatArray] | None, FloatArray | None]:
        """The quantile bank's sums (float64) and levels, checked; (None, None) without one."""
        if bank is None:
            return None, None
        levels = arrays["bank_levels"]
        if levels[0] <= 0 or levels[-1] >= 1 or np.any(np.diff(levels) <= 0):
            raise self.fail("member bank_levels must increase strictly within (0, 1)")
        sums = {}
        for k in keys:
            name = _member("bank_sum", k)
            if np.any(np.diff(arrays[name], axis=1) < 0):
                raise self.fail(f"member {name} decreases along the levels; not a sum of quantile functions")
            sums[k] = arrays[name].astype(np.float64)
        return sums, levels.astype(np.float64)

    # -- metadata

    def _parse_meta(self, raw: bytes) -> dict[str, Any]:
        def reject_constant(token: str) -> Any:
            raise ValueError(f"{token} is not allowed")

        try:
            meta = json.loads(raw.decode("utf-8"), parse_constant=reject_constant)
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise self.fail(f"member meta is not valid JSON text ({exc})") from None
        if not isinstance(meta, dict):
            raise self.fail("member meta is not a JSON object")
        if meta.get("format") != FORMAT_NAME:
            raise self.fail(f"not a multiscale descriptor (meta format is {meta.get('format')!r})")
        version = meta.get("version")
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise self.fail(f"meta version must be an integer ≥ 1, got {version!r}")
        if version > FORMAT_VERSION:
            raise self.fail(
                f"made by a newer multiscale (format version {version}; this one reads up to "
                f"{FORMAT_VERSION}); upgrade multiscale to read it"
            )

        def field(name: str, kind: type | tuple[type, ...]) -> Any:
            if name not in meta:
                raise self.fail(f"meta has no {name!r}")
            value = meta[name]
            if isinstance(value, bool) and kind is not bool:
                raise self.fail(f"meta {name} has the wrong type (bool)")
            if not isinstance(value, kind):
                raise self.fail(f"meta {name} has the wrong type ({type(value).__name__})")
            return value

        backbone = field("backbone", str)
        if not backbone:
            raise self.fail("meta backbone is empty")
        weights_sha = field("weights_sha256", str)
        if not _SHA256.fullmatch(weights_sha):
            raise self.fail("meta weights_sha256 is not 64 lowercase hex digits")
        measurement = self._parse_measurement(field("descriptor", dict), version)
        channels_raw = field("channels", dict)
        channels: dict[str, int] = {}
        for layer in measurement["layers"] + measurement["coarse_layers"]:
            c = channels_raw.get(layer)
            if isinstance(c, bool) or not isinstance(c, int) or not 1 <= c <= MAX_CHANNELS:
                raise self.fail(f"meta channels[{layer!r}] must be an integer in 1…{MAX_CHANNELS}, got {c!r}")
            channels[layer] = c
        if set(channels_raw) != set(channels):
            raise self.fail("meta channels lists layers that the descriptor does not measure")
        eps = field("eps", (int, float))
        if not (math.isfinite(eps) and eps >= 0):
            raise self.fail(f"meta eps must be finite and ≥ 0, got {eps!r}")
        keep_all = field("keep_all", bool)
        count = field("count", int)
        if count < 1:
            raise self.fail(f"meta count must be ≥ 1, got {count}")
        total_weight = field("total_weight", (int, float))
        if not (math.isfinite(total_weight) and total_weight > 0):
            raise self.fail(f"meta total_weight must be finite and > 0, got {total_weight!r}")
        sources_raw = field("sources", list)
        if len(sources_raw) != count:
            raise self.fail(f"meta says count {count} but lists {len(sources_raw)} sources")
        sources = [self._parse_source(i, s) for i, s in enumerate(sources_raw)]
        weight_sum = math.fsum(s["weight"] for s in sources)
        if abs(weight_sum - total_weight) > 1e-9 * weight_sum:
            raise self.fail(
                f"meta total_weight {total_weight!r} disagrees with the sources' weights (sum {weight_sum!r})"
            )
        color_sum = meta.get("color_sum")
        if color_sum is not None:
            if (
                not isinstance(color_sum, list)
                or len(color_sum) != 3
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in color_sum)
                or not all(math.isfinite(v) and 0 <= v <= total_weight * (1 + 1e-9) for v in color_sum)
            ):
                raise self.fail("meta color_sum must be null or three numbers in [0, total_weight]")
            color_sum = np.array(color_sum, dtype=np.float64)
        created = meta.get("created", {})
        if not isinstance(created, dict) or not all(isinstance(v, str) for v in created.values()):
            raise self.fail("meta created must map names to version strings")
        bank = self._parse_bank(meta.get("bank"), version)
        means = meta.get("means", False)
        if not isinstance(means, bool):
            raise self.fail(f"meta means must be true or false, got {means!r}")
        if means and version < MEANS_VERSION:
            raise self.fail(
                f"meta declares mean feature vectors, which format version {version} does not have"
            )
        return {
            "bank": bank,
            "means": means,
            "version": version,
            "backbone": backbone,
            "weights_sha256": weights_sha,
            "descriptor": measurement,
            "channels": channels,
            "eps": float(eps),
            "keep_all": keep_all,
            "count": count,
            "total_weight": float(total_weight),
            "sources": sources,
            "created": dict(created),
            "color_sum": color_sum,
        }

    def _parse_bank(self, bank: Any, version: int) -> dict[str, int] | None:
        """meta ``bank``: null, or draws, levels and seed (version 2 on)."""
        if bank is None:
            return None
        if version < BANK_VERSION:
            raise self.fail(f"meta declares a quantile bank, which format version {version} does not have")
        limits = {"draws": MAX_BANK_DRAWS, "levels": MAX_BANK_LEVELS, "seed": 2**63 - 1}
        if not isinstance(bank, dict) or set(bank) != set(limits):
            raise self.fail("meta bank must be null or an object with draws, levels and seed")
        for name, top in limits.items():
            v = bank[name]
            low = 0 if name == "seed" else 1
            if isinstance(v, bool) or not isinstance(v, int) or not low <= v <= top:
                raise self.fail(f"meta bank {name} must be an integer in {low}…{top}, got {v!r}")
        return dict(bank)

    def _parse_measurement(self, d: dict[str, Any], version: int) -> dict[str, Any]:
        missing = [f for f in MEASUREMENT_FIELDS if f not in d and f not in _OPTIONAL_MEASUREMENT]
        if missing:
            raise self.fail(f"meta descriptor lacks {', '.join(missing)}")
        newer = [f for f in _OPTIONAL_MEASUREMENT if f in d]
        if newer and version < COARSE_VERSION:
            raise self.fail(f"meta descriptor.{newer[0]} is not in format version {version}")
        d = {**_OPTIONAL_MEASUREMENT, **d}
        for name in ("layers", "coarse_layers"):
            if not isinstance(d[name], list) or not all(isinstance(x, str) for x in d[name]):
                raise self.fail(f"meta descriptor.{name} must be a list of layer names")
        try:
            config = _config_of(d)
        except ConfigError as exc:
            raise self.fail(f"meta descriptor.{exc}") from None
        except TypeError as exc:
            raise self.fail(f"meta descriptor is malformed ({exc})") from None
        return measurement_of(config)

    def _parse_source(self, i: int, s: Any) -> dict[str, Any]:
        if not isinstance(s, dict):
            raise self.fail(f"meta sources[{i}] is not an object")
        name, sha, weight = s.get("name"), s.get("sha256"), s.get("weight")
        if not isinstance(name, str) or not name:
            raise self.fail(f"meta sources[{i}].name must be a non-empty string")
        if not isinstance(sha, str) or not _SHA256.fullmatch(sha):
            raise self.fail(f"meta sources[{i}].sha256 is not 64 lowercase hex digits")
        if (
            isinstance(weight, bool)
            or not isinstance(weight, (int, float))
            or not (math.isfinite(weight) and weight > 0)
        ):
            raise self.fail(f"meta sources[{i}].weight must be a finite number > 0, got {weight!r}")
        return {"name": name, "sha256": sha, "weight": float(weight)}


# ---------------------------------------------------------------------- helpers


def require_means(config: DescriptorConfig, descriptors: Iterable[GramDescriptor]) -> None:
    """Raise :class:`ConfigError` when the ``mean`` statistic is asked of descriptors without means."""
    if "mean" not in config.statistics:
        return
    lacking = [d._label() for d in descriptors if not d.has_means]
    if lacking:
        raise ConfigError(
            "statistics",
            f"the mean statistic needs a descriptor built with it, and {', '.join(lacking)} holds no mean "
            "feature vectors: rebuild it with `multiscale grams build --statistics gram,mean` (add sliced "
            "if you use it), give the images with -s, or leave mean out of --statistics",
        )


def _config_of(measurement: Mapping[str, Any]) -> DescriptorConfig:
    """The :class:`DescriptorConfig` of a :func:`measurement_of` dict (its inverse; other fields
    default). Raises :class:`ConfigError` for invalid values."""
    fields = {f: measurement[f] for f in MEASUREMENT_FIELDS}
    return DescriptorConfig(
        **dict(fields, layers=tuple(fields["layers"]), coarse_layers=tuple(fields["coarse_layers"]))
    )


def _created_info() -> dict[str, str]:
    return {"multiscale": __version__, "numpy": np.__version__}


def _check_sha256(value: Any, what: str) -> str:
    if not isinstance(value, str) or not _SHA256.fullmatch(value.lower()):
        raise DescriptorError(f"{what} must be a SHA-256 hex digest (64 hex digits), got {value!r}")
    return value.lower()


def _normalise_key(key: Any) -> GramKey | None:
    if (
        isinstance(key, tuple)
        and len(key) == 2
        and isinstance(key[0], (int, np.integer))
        and not isinstance(key[0], bool)
        and isinstance(key[1], str)
    ):
        return int(key[0]), key[1]
    return None


def _key_label(key: GramKey) -> str:
    return f"octave {key[0]}, {key[1]}"


def _member(kind: str, key: GramKey) -> str:
    return f"{kind}/{key[0]}/{key[1]}"


def _check_symmetric(a: FloatArray, rtol: float, where: str, *, prefix: str = "") -> None:
    scale = float(np.max(np.abs(a))) if a.size else 0.0
    asym = float(np.max(np.abs(a - np.swapaxes(a, -1, -2)))) if a.size else 0.0
    if asym > rtol * scale:
        raise DescriptorError(
            f"{prefix}{where} is not symmetric (max |G - Gᵀ| = {asym:.3g}, {asym / scale:.3g} of its largest entry)"
        )


def _sum_arrays(arrays: Iterable[FloatArray]) -> FloatArray:
    it = iter(arrays)
    out = np.array(next(it), dtype=np.float64)
    for a in it:
        out += a
    return out


def _differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    return [f"{name}: {a[name]!r} vs {b[name]!r}" for name in a if a[name] != b[name]]
