"""How much memory a synthesis run needs, estimated before TensorFlow starts.

The estimate is a sum of components, each in bytes (see
:class:`MemoryEstimate`)::

    total = baseline + weights + max(sources, activations) + lbfgs + bounds + images

with n = H·W·3 variables, m = ``history`` and A(h, w) = Σ_octaves Σ_layers
h_l·w_l·C_l·4, the float32 size of every layer output up to the deepest
selected layer (pooling layers included) at every octave:

``baseline``
    Resident size of the process once Python, TensorFlow, scipy, h5py and
    Pillow are imported and TF has run one op (:data:`TF_BASELINE_BYTES`).
``weights``
    All 13 VGG16 kernels and biases in float32, times
    :data:`WEIGHT_COPIES`: the backbone loads the whole conv stack whatever
    the selected layers, and holds it as numpy arrays and as TF constants.
``activations``
    ``ACTIVATION_FACTOR · A(H, W) + GRAPH_BYTES``: what one
    loss-and-gradient evaluation holds at its peak — the layer outputs kept
    for the backward pass, the padded copies the convolutions read, the
    gradients in flight — plus the traced and optimised graphs.
``sources``
    ``SOURCE_FACTOR · max over sources of A(h, w)``: the eager forward pass
    that takes each source's Grams. It ends before synthesis starts and TF
    reuses its memory, so only the larger of ``sources`` and
    ``activations`` counts in the total.
``lbfgs``
    The driver's arrays: with the projected driver (the default)
    :func:`projected_lbfgs_bytes`; with scipy's L-BFGS-B
    ``8·(2mn + 5n + 11m² + 8m)`` (the float64 workspace: m correction pairs
    s, y of n values each, plus work vectors) ``+ 4·3n`` (int32 index
    workspace) ``+ 20n`` (float64 lower/upper bounds, int32 bound kinds).
``bounds``
    ``BOUNDS_BYTES_PER_VALUE · n``, scipy's driver only: scipy turns the
    bounds into a list of n (low, high) pairs and back into arrays through
    Python lists (even when given arrays); the peak of that conversion
    stays in the process's high-water mark.
``images``
    ``IMAGE_BYTES_PER_VALUE · n`` (``PROJECTED_IMAGE_BYTES_PER_VALUE`` with
    the projected driver): float64 and float32 copies of the image
    and its gradient (start point, best point, scipy's own x and g, the
    float32 tensor handed to TF and the gradient cast back to float64).

Calibration (TensorFlow 2.21, scipy 1.17, oneDNN on, x86-64 Linux, glibc
malloc): the constants below were fitted to the peak RSS (``ru_maxrss``)
of fresh processes running :func:`multiscale.jobs.synthesize.synthesize` on
random array sources (``benchmarks/memory_calibration.py`` re-measures
them; estimate ÷ measured peak: ``benchmarks/RESULTS.md``, "Memory
estimate"). Peak RSS depends on the allocator and the TF build, so treat
the estimate as ±25 %, not as a guarantee.

This module imports no TensorFlow, so ``--dry-run`` and the memory check
cost nothing.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..config import DescriptorConfig
from ..errors import ResourceError
from ..layers import LAYER_NAMES, VGG16_BLOCKS, feature_size, layer_channels, layer_index, octave_sizes
from .sliced import BANK_DRAWS, BANK_LEVELS, RADIX_MIN_LENGTH, RANK_BLOCK_VALUES, RANK_THREADS

#: Mirrors :data:`multiscale.optim.projected.FLOAT32_ITERATE_ABOVE` (that module imports
#: scipy; this one must stay light). A test checks they agree.
FLOAT32_ITERATE_ABOVE = 1 << 24

MIB = 1 << 20
GIB = 1 << 30

#: Resident bytes of a process that has imported multiscale's dependencies
#: (TensorFlow, scipy, h5py, Pillow) and run one tiny TF op. Measured as
#: VmRSS in a fresh process: 584 MiB with TensorFlow 2.21 on x86-64.
TF_BASELINE_BYTES = 584 * MIB

#: Copies of the VGG16 parameters that stay resident: the float32 arrays read
#: from the h5 file, the TF constants made from them, and a transient
#: conversion buffer the allocator keeps (measured: +169 MiB for 56 MiB of
#: parameters).
WEIGHT_COPIES = 3.0

#: Peak bytes of one loss-and-gradient evaluation per byte of layer outputs
#: A(H, W). Layer outputs (kept for ReLU's and the Gram's backward pass) count
#: once; the reflect-padded conv inputs, the gradients in flight and oneDNN's
#: scratch add the rest. Fitted on 256²–1024² outputs.
ACTIVATION_FACTOR = 1.55

#: Fixed cost of tracing the loss-and-gradient and loss-only functions and of
#: Grappler's rewrites (intercept of evaluation peak against A at 256²–512²).
GRAPH_BYTES = 24 * MIB

#: Tiled evaluation: bytes per output pixel of what stays whole — the
#: pyramid's levels, each octave's gradient accumulator and the gradient
#: handed back through the pyramid (float32, 3 channels, 4/3 for the octaves).
TILED_BYTES_PER_PIXEL = 64

#: Tiled evaluation: its traced functions (one per kind of tile and octave).
TILED_GRAPH_BYTES = 64 * MIB

#: Peak bytes of the eager forward pass over one source per byte of A(h, w).
#: Measured 0.97–1.17 at 512²–1024² (eager frees each intermediate as soon as
#: the next op has run, but keeps the selected layers' outputs and the
#: pyramid); the upper end is taken.
SOURCE_FACTOR = 1.15

#: Peak bytes per variable of scipy's conversion of the list of n (low, high)
#: bounds into arrays (measured with a cheap objective: bounded minus
#: unbounded peak, 185 B per variable).
BOUNDS_BYTES_PER_VALUE = 185

#: Bytes per variable of image and gradient copies outside TF (about ten
#: float64 vectors; measured with a cheap objective: unbounded peak minus the
#: L-BFGS-B arrays, 78 B per variable).
IMAGE_BYTES_PER_VALUE = 80

#: The same with the projected driver, which reads the objective's gradient
#: in place and keeps no bounds arrays: fitted on tiled 1024² and 2048² runs
#: (history 2; estimate ÷ peak RSS 1.06 and 1.01).
PROJECTED_IMAGE_BYTES_PER_VALUE = 40

#: Share of the available memory that :func:`default_max_memory` allows.
DEFAULT_MEMORY_SHARE = 0.8

#: Bytes per projected value of the sliced statistic during one evaluation, counted from
#: the arrays it holds (not fitted): the projections Dᵀ·Fᵀ and their gradient, each C × N per
#: (octave, layer). The targets are read and the directions ranked a block at a time
#: (:func:`multiscale.measure.sliced.sorted_cotangent`): that block's ranks, sorted values
#: and targets (:data:`SLICED_BLOCK_BYTES`) and one key's projections gathered from the tiles
#: come on top, whatever the number of keys.
SLICED_BYTES_PER_VALUE = 8

#: Peak of ranking one block of directions: int64 ranks, the sorted values, the float64
#: targets read for it and their float32 copy, 24 bytes per value (the projections are
#: ranked in place, a row per direction);
#: :data:`multiscale.measure.sliced.RANK_THREADS` blocks at once.
SLICED_BYTES_PER_RANKED_VALUE = 24
#: Those blocks' peak where every direction is shorter than a block
#: (:data:`multiscale.measure.sliced.RANK_BLOCK_VALUES` values); a longer direction is
#: ranked whole, and counts its own length (:func:`sliced_bytes`).
SLICED_BLOCK_BYTES = SLICED_BYTES_PER_RANKED_VALUE * RANK_BLOCK_VALUES * RANK_THREADS
#: Peak of the radix passes of :func:`multiscale.measure.sliced.rank_order` over one direction
#: (keys, numpy's sort buffers and two orders of that direction's length; tracemalloc, printed
#: by ``benchmarks/sliced_rank.py``), on top of its block's, in each thread.
SLICED_BYTES_PER_RADIX_VALUE = 26

#: Source feature vectors kept per (octave, layer) for the sliced statistic
#: (:data:`multiscale.measure.sliced.MAX_SOURCE_POSITIONS`, float32 rows of C values).
SLICED_SOURCE_ROWS = 1 << 18

#: Bytes per value of a descriptor's quantile bank in a run from descriptor
#: files: the loaded descriptor's float64 sums and the run's float32 means.
BANK_BYTES_PER_VALUE = 12


@dataclass(frozen=True)
class MemoryEstimate:
    """Estimated peak resident memory of a synthesis run, by component.

    Every field is in bytes; see the module docstring for how each is
    computed.

    Attributes
    ----------
    baseline : int
        Python plus TensorFlow and the other imports, before any work.
    weights : int
        The VGG16 parameters as held in memory.
    sources : int
        Peak of taking the sources' Grams (overlaps ``activations``).
    activations : int
        Peak of one loss-and-gradient evaluation of the output.
    lbfgs : int
        The driver's arrays (correction pairs, work vectors, bounds).
    bounds : int
        Peak of scipy's conversion of the bounds (0 with the projected driver).
    images : int
        float64/float32 copies of the image and gradient outside TF.
    sliced : int
        The sliced statistic's sources' features, its target quantiles and
        one evaluation's projections (0 without it).
    means : int
        The mean statistic's targets and the gradient of one mean broadcast
        over its map (0 without it; :func:`mean_bytes`).
    """

    baseline: int
    weights: int
    sources: int
    activations: int
    lbfgs: int
    bounds: int
    images: int
    sliced: int = 0
    means: int = 0

    @property
    def total(self) -> int:
        """Estimated peak resident bytes of the whole run.

        ``sources`` and ``activations`` happen one after the other and TF
        reuses the memory, so only the larger one counts.
        """
        return (
            self.baseline
            + self.weights
            + max(self.sources, self.activations)
            + self.lbfgs
            + self.bounds
            + self.images
            + self.sliced
            + self.means
        )

    def components(self) -> dict[str, int]:
        """Every component and the total, in bytes, in display order."""
        return {
            "baseline": self.baseline,
            "weights": self.weights,
            "sources": self.sources,
            "activations": self.activations,
            "lbfgs": self.lbfgs,
            "bounds": self.bounds,
            "images": self.images,
            "sliced": self.sliced,
            "means": self.means,
            "total": self.total,
        }

    def describe(self) -> str:
        """One line: the total and its largest parts, for messages and ``--dry-run``."""
        parts = ", ".join(
            f"{name} {human_bytes(value)}" for name, value in self.components().items() if name != "total"
        )
        return f"about {human_bytes(self.total)} ({parts})"


def network_output_bytes(height: int, width: int, *, config: DescriptorConfig, octave: int = 0) -> int:
    """float32 bytes of every layer output for one H×W input (one octave or one tile of it).

    Sums, over every layer from ``conv1_1`` to the deepest one selected at
    ``octave`` (:meth:`~multiscale.config.DescriptorConfig.layers_at`;
    poolings included), ``h · w · channels · 4``.
    """
    deepest = max(layer_index(n) for n in config.layers_at(octave))
    return sum(
        feature_size(name, height, config.padding)
        * feature_size(name, width, config.padding)
        * layer_channels(name)
        * 4
        for name in LAYER_NAMES[: deepest + 1]
    )


def layer_output_bytes(height: int, width: int, *, config: DescriptorConfig) -> int:
    """A(H, W): float32 bytes of every layer output the network computes.

    :func:`network_output_bytes` summed over every octave of an H×W image.
    """
    return sum(
        network_output_bytes(h, w, config=config, octave=k)
        for k, (h, w) in enumerate(
            octave_sizes(height, width, octaves=config.octaves, padding=config.padding)
        )
    )


def tiled_output_bytes(height: int, width: int, *, config: DescriptorConfig, tile: int) -> int:
    """Layer-output bytes of the largest tile (halo included) of any octave.

    Tiles are evaluated one at a time (:mod:`multiscale.measure.engine`), so this,
    not A(H, W), is what one evaluation holds.
    """
    from .tiles import plan_octaves

    return max(
        network_output_bytes(*plan.largest_tile, config=config, octave=k)
        for k, plan in enumerate(plan_octaves(height, width, config=config, tile=tile))
    )


def source_pass_bytes(height: int, width: int, *, config: DescriptorConfig) -> int:
    """Layer-output bytes of measuring one H×W image (tiled above :data:`~multiscale.measure.tiles.SOURCE_TILE_ABOVE`)."""
    from .tiles import SOURCE_TILE, SOURCE_TILE_ABOVE

    if height * width > SOURCE_TILE_ABOVE:
        return tiled_output_bytes(height, width, config=config, tile=SOURCE_TILE)
    return layer_output_bytes(height, width, config=config)


#: Tile sizes the automatic choice tries, largest (fastest) first.
AUTO_TILE_SIZES = (2048, 1024, 512, 256, 128)


def choose_tile(
    estimate: Callable[[int | None], MemoryEstimate],
    *,
    height: int,
    width: int,
    limit: int | None,
    tile_size: int | None,
) -> tuple[int | None, MemoryEstimate]:
    """How to evaluate the loss so that the run fits ``limit``, decided before allocating.

    Parameters
    ----------
    estimate : callable
        ``estimate(tile)`` → the run's :class:`MemoryEstimate` untiled
        (``None``) or with that tile size.
    height, width : int
        The (largest) image optimised.
    limit : int or None
        Bytes allowed; ``None``: no limit.
    tile_size : int or None
        Given by the user: taken as is (no tiling if it is at least the
        image). ``None``: untiled if that fits, else the largest of
        :data:`AUTO_TILE_SIZES` that fits (the smallest if none does, so
        that the refusal quotes the least the run could need).

    Returns
    -------
    tile : int or None
    estimate : MemoryEstimate
        The estimate for that choice.
    """
    side = max(height, width)
    if tile_size is not None:
        tile = tile_size if tile_size < side else None
        return tile, estimate(tile)
    untiled = estimate(None)
    if limit is None or untiled.total <= limit:
        return None, untiled
    chosen: tuple[int | None, MemoryEstimate] = (None, untiled)
    for tile in (t for t in AUTO_TILE_SIZES if t < side):
        chosen = (tile, estimate(tile))
        if chosen[1].total <= limit:
            break
    return chosen


def vgg16_parameter_bytes() -> int:
    """float32 bytes of all 13 VGG16 kernels (3×3×C_in×C_out) and biases."""
    total, c_in = 0, 3
    for convs, c_out in VGG16_BLOCKS:
        for _ in range(convs):
            total += (9 * c_in * c_out + c_out) * 4
            c_in = c_out
    return total


def projected_lbfgs_bytes(n: int, history: int) -> int:
    """Bytes of :mod:`multiscale.optim.projected` for n variables: a float32 ring of
    ``2(m+1)`` pairs plus about 8 n-vectors (iterate, trial point,
    gradients, direction, masks, best point), float64 — or float32 above
    :data:`multiscale.optim.projected.FLOAT32_ITERATE_ABOVE` variables, where the
    driver keeps its iterate in float32. A model from the module's layout,
    checked against tracemalloc (``benchmarks/RESULTS.md``, "Memory estimate")."""
    vector = 4 if n > FLOAT32_ITERATE_ABOVE else 8
    return 4 * 2 * (history + 1) * n + 8 * vector * n


def lbfgs_bytes(n: int, history: int) -> int:
    """Bytes of the arrays scipy's L-BFGS-B allocates for n variables, m = ``history``.

    ``8·(2mn + 5n + 11m² + 8m)`` float64 workspace, ``4·3n`` int32
    workspace, ``8·2n + 4·n`` for the bounds arrays.
    """
    m = history
    return 8 * (2 * m * n + 5 * n + 11 * m * m + 8 * m) + 4 * 3 * n + 20 * n


def estimate_synthesis_memory(
    *,
    height: int,
    width: int,
    config: DescriptorConfig,
    history: int,
    sources: Sequence[tuple[int, int]],
    bounded: bool = True,
    baseline: int = TF_BASELINE_BYTES,
    optimizer: str = "lbfgsb",
    frames: int = 1,
    tile: int | None = None,
    bank: bool = False,
) -> MemoryEstimate:
    """Estimate the peak resident memory of a synthesis run.

    Parameters
    ----------
    height, width : int
        Output size in pixels.
    config : DescriptorConfig
        Octaves, layers and padding decide the network's activations.
    history : int
        L-BFGS memory m (``SynthesisConfig.history``).
    sources : sequence of (height, width)
        Size of each source in pixels *after* ``source_scale`` or
        ``source_width``. Empty if the targets come from a descriptor file.
    bounded : bool
        Whether the pixels are box-bounded (synthesis always is).
    optimizer : {"lbfgsb", "projected"}
        scipy's workspace (plus its bounds conversion) or the float32
        projected driver's.
    frames : int
        Frames optimised together (animation): the optimiser's vectors grow
        with them, the network's activations do not (frames go one at a time).
    tile : int or None
        Tile size of the exact tiled evaluation; ``None``: untiled. Tiled,
        the activations are those of the largest tile plus
        :data:`TILED_BYTES_PER_PIXEL` per output pixel (the pyramid and the
        octaves' gradients, kept whole).
    baseline : int
        Bytes of the process before any work; default
        :data:`TF_BASELINE_BYTES`.
    bank : bool
        The sliced statistic's targets are a descriptor's quantile bank
        (:func:`bank_bytes`), not source features.

    Returns
    -------
    MemoryEstimate
        Bytes per component; ``.total`` is the estimated peak RSS.
    """
    n = height * width * 3 * frames
    source_peak = max((source_pass_bytes(h, w, config=config) for h, w in sources), default=0)
    return MemoryEstimate(
        baseline=int(baseline),
        weights=int(WEIGHT_COPIES * vgg16_parameter_bytes()),
        sources=int(SOURCE_FACTOR * source_peak),
        activations=(
            int(ACTIVATION_FACTOR * layer_output_bytes(height, width, config=config)) + GRAPH_BYTES
            if tile is None
            else int(ACTIVATION_FACTOR * tiled_output_bytes(height, width, config=config, tile=tile))
            + TILED_GRAPH_BYTES
            + TILED_BYTES_PER_PIXEL * height * width
        ),
        lbfgs=projected_lbfgs_bytes(n, history) if optimizer == "projected" else lbfgs_bytes(n, history),
        bounds=BOUNDS_BYTES_PER_VALUE * n if bounded and optimizer != "projected" else 0,
        images=(PROJECTED_IMAGE_BYTES_PER_VALUE if optimizer == "projected" else IMAGE_BYTES_PER_VALUE) * n,
        sliced=sliced_bytes(height, width, config=config, sources=sources)
        + (bank_bytes(config) if bank else 0)
        if "sliced" in config.statistics
        else 0,
        means=mean_bytes(height, width, config=config, tile=tile) if "mean" in config.statistics else 0,
    )


def mean_bytes(height: int, width: int, *, config: DescriptorConfig, tile: int | None = None) -> int:
    """Memory of the mean statistic: its targets (float64 in the job, float32 on the graph: 12 bytes
    per value, Σ C values per octave) and, untiled, the gradient of one mean broadcast over the
    largest (octave, layer) map in float32 before it joins the other terms' (the tile engine's
    is a tile's, within its activations)."""
    targets = 12 * sum(layer_channels(layer) for _, layer in config.octave_layers())
    if tile is not None:
        return targets
    largest = max(
        feature_size(layer, oh, config.padding)
        * feature_size(layer, ow, config.padding)
        * layer_channels(layer)
        for k, (oh, ow) in enumerate(
            octave_sizes(height, width, octaves=config.octaves, padding=config.padding)
        )
        for layer in config.layers_at(k)
    )
    return targets + 4 * largest


def sliced_bytes(
    height: int, width: int, *, config: DescriptorConfig, sources: Sequence[tuple[int, int]]
) -> int:
    """Memory of the sliced statistic: per (octave, layer), N × C projected values of the output at
    :data:`SLICED_BYTES_PER_VALUE`, the largest key's projections gathered once more and the blocks
    ranked at once (:data:`SLICED_BLOCK_BYTES`, or the longest direction's own length in each
    thread where it is longer) with one direction's radix passes in each thread
    (:data:`SLICED_BYTES_PER_RADIX_VALUE`); and per source, its feature vectors and their sorted
    projections in the current draw (float32 each)."""

    def maps(h: int, w: int) -> list[tuple[int, int]]:
        """(positions, channels) of every (octave, layer) map of an h × w image."""
        return [
            (
                feature_size(layer, oh, config.padding) * feature_size(layer, ow, config.padding),
                layer_channels(layer),
            )
            for k, (oh, ow) in enumerate(octave_sizes(h, w, octaves=config.octaves, padding=config.padding))
            for layer in config.layers_at(k)
        ]

    def values(h: int, w: int, cap: int | None = None) -> list[int]:
        return [(rows if cap is None else min(rows, cap)) * c for rows, c in maps(h, w)]

    output_maps = maps(height, width)
    keys = [rows * c for rows, c in output_maps]
    longest = max(rows for rows, _ in output_maps)
    blocks = max(SLICED_BLOCK_BYTES, SLICED_BYTES_PER_RANKED_VALUE * RANK_THREADS * longest)
    if longest >= RADIX_MIN_LENGTH:
        blocks += SLICED_BYTES_PER_RADIX_VALUE * RANK_THREADS * longest
    output = sum(keys) * SLICED_BYTES_PER_VALUE + 4 * max(keys) + blocks
    return output + sum(8 * sum(values(h, w, SLICED_SOURCE_ROWS)) for h, w in sources)


def bank_bytes(config: DescriptorConfig) -> int:
    """Memory of a descriptor's quantile bank in a run: :data:`BANK_BYTES_PER_VALUE` per value,
    ``BANK_DRAWS × BANK_LEVELS × C`` values per (octave, layer) (:mod:`multiscale.measure.sliced`)."""
    values = BANK_DRAWS * BANK_LEVELS * sum(layer_channels(layer) for _, layer in config.octave_layers())
    return BANK_BYTES_PER_VALUE * values


def check_memory(estimate: MemoryEstimate, *, max_memory: int | None, what: str = "this run") -> None:
    """Raise :class:`ResourceError` if ``estimate.total`` exceeds ``max_memory`` bytes.

    ``None`` disables the check. The message names the largest components
    and what to change.
    """
    if max_memory is None or estimate.total <= max_memory:
        return
    raise ResourceError(
        f"{what} needs {estimate.describe()}, more than the {human_bytes(max_memory)} allowed "
        "— use a smaller --width/--height, fewer --octaves, shallower --layers or a smaller "
        "--history, or raise --max-memory"
    )


_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def human_bytes(n: int | float) -> str:
    """Bytes in binary units with three significant digits: ``1.50 GiB``, ``640 MiB``, ``12 B``."""
    value = float(n)
    sign = "-" if value < 0 else ""
    value = abs(value)
    for unit in _UNITS:
        if value < 1024 or unit == _UNITS[-1]:
            if unit == "B":
                return f"{sign}{int(value)} B"
            digits = 2 if value < 10 else 1 if value < 100 else 0
            return f"{sign}{value:.{digits}f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


_SIZE_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?)\s*([kmgtp]?)(i?b?)\s*$", re.IGNORECASE)


def parse_memory(text: str) -> int:
    """Parse a memory size: ``4G``, ``4GiB``, ``512M``, ``1.5g``, ``1000000`` (bytes).

    Suffixes K, M, G, T, P are binary (powers of 1024), with or without
    ``B``/``iB``. ``80%`` means that share of :func:`available_memory_bytes`.

    Raises
    ------
    ValueError
        If the text is not a size, or a percentage cannot be resolved.
    """
    s = str(text).strip()
    if s.endswith("%"):
        try:
            share = float(s[:-1]) / 100.0
        except ValueError:
            raise ValueError(f"expected a size such as 4G or 80%, got {text!r}") from None
        available = available_memory_bytes()
        if not 0 < share <= 1:
            raise ValueError(f"a percentage must lie in (0, 100], got {text!r}")
        if available is None:
            raise ValueError("cannot read the available memory here; give a size such as 4G")
        return int(share * available)
    match = _SIZE_RE.match(s)
    if not match:
        raise ValueError(f"expected a size such as 4G, 512M or 80%, got {text!r}")
    number, prefix = float(match.group(1)), match.group(2).lower()
    power = " kmgtp".index(prefix) if prefix else 0
    return int(number * 1024**power)


def _read_int(path: str) -> int | None:
    try:
        with open(path) as fh:
            text = fh.read().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _cgroup_dirs() -> list[tuple[str, str, str]]:
    """(directory, limit file, usage file) of this process's memory cgroups, innermost first.

    Read from /proc/self/cgroup; the hierarchy's root is tried last, for
    containers that mount their own cgroup as the root.
    """
    found: list[tuple[str, str, str]] = []
    try:
        with open("/proc/self/cgroup") as fh:
            lines = fh.read().splitlines()
    except OSError:
        lines = []
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if controllers == "":
            found.append((f"/sys/fs/cgroup{path}", "memory.max", "memory.current"))
        elif "memory" in controllers.split(","):
            found.append((f"/sys/fs/cgroup/memory{path}", "memory.limit_in_bytes", "memory.usage_in_bytes"))
    found += [
        ("/sys/fs/cgroup", "memory.max", "memory.current"),
        ("/sys/fs/cgroup/memory", "memory.limit_in_bytes", "memory.usage_in_bytes"),
    ]
    return found


def _cgroup_headroom() -> int | None:
    """Bytes left under this process's tightest cgroup memory limit, if it has one.

    A container's limit can be far below the machine's free memory that
    /proc/meminfo reports.
    """
    headroom: int | None = None
    for folder, limit_name, usage_name in _cgroup_dirs():
        limit = _read_int(f"{folder}/{limit_name}")
        usage = _read_int(f"{folder}/{usage_name}")
        # v2 writes "max" for no limit (not an int); v1 writes about 2**63.
        if limit is None or usage is None or limit >= 1 << 60:
            continue
        left = max(limit - usage, 0)
        headroom = left if headroom is None else min(headroom, left)
    return headroom


def available_memory_bytes() -> int | None:
    """Bytes of memory available to new allocations, or ``None`` if unknown.

    ``MemAvailable`` from /proc/meminfo (falling back to psutil), capped by
    the headroom under a cgroup memory limit when there is one.
    """
    available: int | None = None
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    available = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        available = None
    if available is None:
        try:
            import psutil
        except ImportError:
            psutil = None
        if psutil is not None:
            available = int(psutil.virtual_memory().available)
    headroom = _cgroup_headroom()
    if headroom is not None:
        available = headroom if available is None else min(available, headroom)
    return available


def default_max_memory() -> int | None:
    """A safe memory budget: :data:`DEFAULT_MEMORY_SHARE` of the available memory.

    ``None`` if the available memory cannot be read (no check is made then).
    """
    available = available_memory_bytes()
    return None if available is None else int(DEFAULT_MEMORY_SHARE * available)


__all__ = [
    "MemoryEstimate",
    "bank_bytes",
    "estimate_synthesis_memory",
    "check_memory",
    "human_bytes",
    "parse_memory",
    "available_memory_bytes",
    "default_max_memory",
    "layer_output_bytes",
    "lbfgs_bytes",
]


def process_memory() -> tuple[int, int] | None:
    """(current, peak) resident memory of this process in bytes, from
    ``/proc/self/status`` (``VmRSS``, ``VmHWM``); ``None`` where there is none.

    ``VmHWM`` belongs to the process's own address space, whereas
    ``ru_maxrss`` survives fork+exec and so reports a large parent's size in
    a fresh child.
    """
    fields = {}
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                fields[key] = value
        return int(fields["VmRSS"].split()[0]) * 1024, int(fields["VmHWM"].split()[0]) * 1024
    except (OSError, KeyError, ValueError, IndexError):
        return None


def peak_rss_bytes() -> int:
    """This process's peak resident memory in bytes (see :func:`process_memory`).

    Falls back to ``ru_maxrss`` where ``/proc`` is missing (KiB on Linux,
    bytes on macOS).
    """
    mem = process_memory()
    if mem is not None:
        return mem[1]
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024
