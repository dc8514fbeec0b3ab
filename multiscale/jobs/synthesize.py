"""Texture synthesis: match an image's multiscale Grams to the sources'.

The job is a function of (config, sources) → result; it loads nothing from
the command line and prints nothing. Progress goes to ``callback``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..config import (
    AUTO_SLICED_MAX_BYTES,
    DEFAULT_SPECTRUM_WEIGHT,
    DESCRIPTOR_DEFAULTS,
    MAX_STAGES,
    STAGE_DETAIL_MIN_STAGES,
    SYNTHESIS_DEFAULTS,
    SYNTHESIS_FIRST_STAGE_MAX_SIDE,
    DescriptorConfig,
    SynthesisConfig,
)
from ..errors import ConfigError, DescriptorError, MultiscaleError
from ..io import file_sha256, load_image, scale_source
from ..layers import shift_octaves
from ..measure.sliced import QuantileBank, SlicedTargets
from .runner import (
    STOPPED_EARLY,
    ImageSource,
    Limits,
    Phase,
    RunReport,
    SourceInfo,
    StageProgress,
    check_array,
    load_network,
    measure_sliced,
    optimize,
    precision_network,
    quantize,
    resolve_precision,
    share_of_rest,
    stage_sizes,
    versions,
    work_done,
    work_shares,
)
from .starts import STAGE_SEED_STEP, initial_image, stage_start, upsample

if TYPE_CHECKING:
    from ..descriptors.build import BuildResult
    from ..descriptors.descriptor import GramDescriptor
    from .checkpoint import Checkpoint

log = logging.getLogger(__name__)

#: Start colour of a synthesis whose descriptors do not record their sources' colour.
NEUTRAL_COLOR = (0.5, 0.5, 0.5)

#: How a stage before the last may end and hand its image over to the next.
_HANDS_OVER = ("max_iter", "converged", "time_limit", "abnormal")


@dataclass(kw_only=True)
class SynthesisReport(RunReport):
    """Everything needed to understand and reproduce a synthesis: :class:`~multiscale.jobs.runner.RunReport`'s
    fields and these.

    Attributes
    ----------
    config : SynthesisConfig
    sources : list of SourceInfo
    join : str or None
        How the sources' Grams were averaged (``None``: the plain mean of a
        few named images).
    descriptors : list of dict
        Descriptor files used (``path``, ``sha256``, ``count``,
        ``total_weight``, ``weight``: the file's share of the target).
    skipped : list of dict
        Source files skipped by a streaming build (``name``, ``reason``).
    tile_size : int or None
        Tile size of the exact tiled evaluation (``None``: untiled), as
        chosen from the memory estimate or given.
    precision : dict or None
        What the convolutions ran in and why
        (:meth:`multiscale.jobs.precision.PrecisionChoice.to_dict`: CPU flags,
        and for ``auto`` the measured seconds and accuracy check).
    spectrum_loss : float or None
        The spectrum constraint's weighted share of ``loss`` (``None``: no
        constraint), so that ``loss == sum(octave_losses) + spectrum_loss``.
    stages : list of dict
        For a run in stages, each stage that ran: ``stage`` (1-based),
        ``height``, ``width``, ``octaves``, ``iterations``, ``loss`` (its
        best), ``stop_reason``, ``spectrum_weight`` and ``elapsed_s`` (the
        seconds it optimised); empty for a run of one stage.
        ``iterations``, ``evaluations`` and ``history`` count over all of them.
    """

    config: SynthesisConfig
    sources: list[SourceInfo]
    join: str | None = None
    descriptors: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    tile_size: int | None = None
    precision: dict[str, Any] | None = None
    spectrum_loss: float | None = None
    stages: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class SynthesisResult:
    """A synthesized texture and its report.

    Attributes
    ----------
    image : np.ndarray
        float32 (H, W, 3), RGB in [0, 1].
    report : SynthesisReport
    """

    image: np.ndarray
    report: SynthesisReport


def load_sources(
    sources: Sequence[ImageSource], *, config: SynthesisConfig
) -> tuple[list[np.ndarray], list[SourceInfo]]:
    """Load and scale source images as the descriptor options say.

    Returns float32 (H, W, 3) arrays in [0, 1] and their :class:`SourceInfo`.
    """
    images, infos = [], []
    for i, src in enumerate(sources):
        if isinstance(src, np.ndarray):
            image, name, digest = check_array(src, name=f"source #{i + 1}"), f"<array #{i + 1}>", None
        else:
            image = load_image(src, max_pixels=config.max_input_pixels)
            name, digest = os.fspath(src), file_sha256(src)
        image = scale_source(image, config=config.descriptor)
        images.append(image)
        infos.append(SourceInfo(name=name, sha256=digest, height=image.shape[0], width=image.shape[1]))
    return images, infos


#: A :class:`SynthesisConfig` from keyword options (:meth:`~multiscale.config.RunConfig.with_options`).
make_config = SynthesisConfig.with_options


def synthesize(
    sources: ImageSource | Sequence[ImageSource],
    *,
    width: int | None = SYNTHESIS_DEFAULTS.width,
    height: int | None = SYNTHESIS_DEFAULTS.height,
    octaves: int = DESCRIPTOR_DEFAULTS.octaves,
    layers: Sequence[str] = DESCRIPTOR_DEFAULTS.layers,
    coarse_layers: Sequence[str] = DESCRIPTOR_DEFAULTS.coarse_layers,
    coarse_from: int = DESCRIPTOR_DEFAULTS.coarse_from,
    layer_weights: Sequence[float] | None = DESCRIPTOR_DEFAULTS.layer_weights,
    octave_weights: Sequence[float] | None = DESCRIPTOR_DEFAULTS.octave_weights,
    pooling: str = DESCRIPTOR_DEFAULTS.pooling,
    padding: str = DESCRIPTOR_DEFAULTS.padding,
    source_scale: float = DESCRIPTOR_DEFAULTS.source_scale,
    source_width: int | None = DESCRIPTOR_DEFAULTS.source_width,
    weights: str | os.PathLike[str] | None = DESCRIPTOR_DEFAULTS.weights,
    statistics: Sequence[str] = DESCRIPTOR_DEFAULTS.statistics,
    init: str | os.PathLike[str] = SYNTHESIS_DEFAULTS.init,
    seed: int = SYNTHESIS_DEFAULTS.seed,
    max_iter: int = SYNTHESIS_DEFAULTS.max_iter,
    tol: float = SYNTHESIS_DEFAULTS.tol,
    time_limit: float | None = SYNTHESIS_DEFAULTS.time_limit,
    history: int = SYNTHESIS_DEFAULTS.history,
    bit_depth: int = SYNTHESIS_DEFAULTS.bit_depth,
    max_input_pixels: int = SYNTHESIS_DEFAULTS.max_input_pixels,
    optimizer: str = SYNTHESIS_DEFAULTS.optimizer,
    frames: int = SYNTHESIS_DEFAULTS.frames,
    frame_weight: float = SYNTHESIS_DEFAULTS.frame_weight,
    spectrum_weight: float | None = SYNTHESIS_DEFAULTS.spectrum_weight,
    spectrum_peaks: str = SYNTHESIS_DEFAULTS.spectrum_peaks,
    spectrum_long_waves: str = SYNTHESIS_DEFAULTS.spectrum_long_waves,
    spectrum_last_stage: float = SYNTHESIS_DEFAULTS.spectrum_last_stage,
    spectrum_taper: float = SYNTHESIS_DEFAULTS.spectrum_taper,
    stage_detail: bool | None = SYNTHESIS_DEFAULTS.stage_detail,
    loop: bool = SYNTHESIS_DEFAULTS.loop,
    max_memory: int | None = SYNTHESIS_DEFAULTS.max_memory,
    tile_size: int | None = SYNTHESIS_DEFAULTS.tile_size,
    precision: str = SYNTHESIS_DEFAULTS.precision,
    stages: int | None = SYNTHESIS_DEFAULTS.stages,
    callback: Callable[[Any], bool | None] | None = None,
) -> SynthesisResult:
    """Synthesize a texture whose multiscale Gram descriptor matches the sources'.

    Parameters
    ----------
    sources : path, array, or a sequence of them
        Source images: file paths, or float32 (H, W, 3) RGB arrays in
        [0, 1]. Their Grams are averaged.
    width, height : int or None
        Output size; ``None`` takes the first source's (scaled) size.
    octaves, layers, coarse_layers, coarse_from, layer_weights, octave_weights, pooling, padding,
    source_scale, source_width, weights, statistics
        What is measured: see :class:`multiscale.config.DescriptorConfig`.
    init, seed, max_iter, tol, time_limit, history, bit_depth, max_input_pixels,
    optimizer, frames, frame_weight, loop, spectrum_weight, spectrum_peaks, spectrum_long_waves,
    spectrum_last_stage, spectrum_taper, stage_detail, max_memory, tile_size, precision, stages
        How the run goes: see :class:`multiscale.config.SynthesisConfig`.
    callback : callable or None
        Called with a :class:`multiscale.optim.base.Progress` after every
        iteration (``progress.image`` is the current (H, W, 3) float64
        iterate); returning ``True`` stops the run.

    Returns
    -------
    SynthesisResult
        ``image`` float32 (H, W, 3) in [0, 1], quantised to ``bit_depth`` so
        that it equals what a file will hold; ``report`` with losses, stop
        reason and provenance. A run stopped by Ctrl-C, a time limit or a
        non-finite loss still returns its best image (see
        ``report.stop_reason``).

    Raises
    ------
    ConfigError, ImageError, WeightsError
        For options or inputs that cannot work, with a message naming them.
    """
    config = make_config(
        width=width, height=height, octaves=octaves, layers=layers, coarse_layers=coarse_layers, coarse_from=coarse_from, layer_weights=layer_weights,
        octave_weights=octave_weights, pooling=pooling, padding=padding, source_scale=source_scale,
        source_width=source_width, weights=None if weights is None else os.fspath(weights),
        statistics=statistics, init=init, seed=seed, max_iter=max_iter, tol=tol, time_limit=time_limit, history=history,
        bit_depth=bit_depth, max_input_pixels=max_input_pixels, optimizer=optimizer, frames=frames,
        frame_weight=frame_weight, loop=loop, spectrum_weight=spectrum_weight, spectrum_peaks=spectrum_peaks,
        spectrum_long_waves=spectrum_long_waves, spectrum_last_stage=spectrum_last_stage, spectrum_taper=spectrum_taper, stage_detail=stage_detail, max_memory=max_memory, tile_size=tile_size, precision=precision, stages=stages,
    )  # fmt: skip
    return run_synthesis(sources, config=config, callback=callback)


@dataclass
class Targets:
    """What a synthesis matches, however it was obtained.

    Attributes
    ----------
    grams : dict of (octave, layer) → np.ndarray float64 (C, C)
        The joined Gram descriptor to match.
    mean_color : np.ndarray float32 (3,)
        RGB mean of the sources in [0, 1] (start colour of the init).
    sources : list of SourceInfo
        Provenance recorded in the report.
    size : (height, width) or None
        Default output size (the first source's); ``None`` when there are
        no images (descriptor files), and then the size must be given.
    join : str or None
        Join method that made ``grams`` (``None``: plain mean of images).
    descriptors : list of dict
        Descriptor files behind ``grams``, for the report.
    skipped : list of dict
        Source files a streaming build skipped, for the report.
    exemplars : list of np.ndarray float32 (h, w, 3)
        The source images as measured, for the ``spectrum`` start; empty
        when the targets come from descriptor files or a checkpoint.
    sliced : SlicedTargets or QuantileBank or None
        What the sliced statistic matches (only when the descriptor config
        asks for it): the sources' features, or the quantile bank of
        descriptor files.
    means : dict of (octave, layer) → np.ndarray float64 (C,), or None
        The mean feature vectors the ``mean`` statistic matches (weighted
        like ``grams``); ``None`` when there are none (descriptor files
        built without them).
    """

    grams: dict[Any, np.ndarray]
    mean_color: np.ndarray
    sources: list[SourceInfo]
    size: tuple[int, int] | None
    join: str | None = None
    descriptors: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    exemplars: list[np.ndarray] = field(default_factory=list, repr=False)
    sliced: SlicedTargets | QuantileBank | None = field(default=None, repr=False)
    means: dict[Any, np.ndarray] | None = field(default=None, repr=False)


def targets_from_images(
    sources: ImageSource | Sequence[ImageSource], *, config: SynthesisConfig, network: Any
) -> Targets:
    """Load, scale and measure source images; their Grams are averaged.

    Raises
    ------
    ImageError, ImageTooSmallError
        For a source that cannot be read or is too small for the descriptor.
    """
    from ..measure.gram import check_image_size, image_moments

    if isinstance(sources, (str, os.PathLike, np.ndarray)):
        sources = [sources]
    if not sources:
        raise ConfigError("sources", "give at least one source image")
    images, infos = load_sources(list(sources), config=config)
    for image, info in zip(images, infos, strict=True):
        check_image_size(image.shape[0], image.shape[1], config=config.descriptor, name=info.name)
    moments = [image_moments(im, network=network, config=config.descriptor) for im in images]
    grams, means = average_grams([g for g, _ in moments]), average_grams([m for _, m in moments])
    mean_color = np.mean([im.reshape(-1, 3).mean(axis=0) for im in images], axis=0).astype(np.float32)
    return Targets(
        grams=grams, mean_color=mean_color, sources=infos, size=images[0].shape[:2], exemplars=images,
        sliced=measure_sliced(images, network=network, config=config.descriptor), means=means,
    )  # fmt: skip


def require_banks(config: DescriptorConfig, descriptors: Sequence[GramDescriptor]) -> None:
    """Raise :class:`ConfigError` when the sliced statistic is asked of descriptors without a quantile bank
    (or the mean statistic of descriptors without means)."""
    from ..descriptors.descriptor import require_means

    require_means(config, descriptors)
    if "sliced" not in config.statistics:
        return
    lacking = [_label(d) for d in descriptors if not d.has_bank]
    if lacking:
        raise ConfigError(
            "statistics",
            f"the sliced statistic needs a descriptor built with it, and {', '.join(lacking)} holds Gram "
            "matrices only: rebuild it with `multiscale grams build --statistics gram,sliced`, give the "
            "images with -s, or use --statistics gram",
        )


def targets_from_build(result: BuildResult, *, join: str = "mean") -> Targets:
    """Targets from a streaming build (see :func:`multiscale.descriptors.build.build_descriptor`).

    The default output size is the first used image's (scaled) size, as
    with named sources; skipped files go into the report.

    Raises
    ------
    ConfigError
        Unknown ``join``.
    DescriptorError
        ``affine-invariant`` without kept Grams.
    """
    d = result.descriptor
    first = result.used[0]
    mean_color = d.mean_color
    return Targets(
        sliced=d.bank,
        means=d.means,
        grams=d.join(join),
        mean_color=np.array(NEUTRAL_COLOR, np.float32) if mean_color is None else mean_color,
        sources=[
            SourceInfo(name=u.name, sha256=u.sha256, height=u.height, width=u.width) for u in result.used
        ],
        size=(first.height, first.width),
        join=join,
        skipped=[{"name": s.name, "reason": s.reason} for s in result.skipped],
    )


def config_for_descriptors(
    descriptors: Sequence[GramDescriptor],
    config: SynthesisConfig | None = None,
    *,
    explicit: Collection[str] = (),
) -> SynthesisConfig:
    """``config`` with its measurement fields taken from the descriptors.

    What a descriptor measured (octaves, layers, pooling, padding,
    source_scale, source_width) is fixed when it is built, so a synthesis
    from descriptors takes those fields from them; everything else (size,
    loss weights, run options, the weights file) comes from ``config``.

    Parameters
    ----------
    descriptors : sequence of GramDescriptor
        At least one; all must have measured the same way with the same
        backbone and weights.
    config : SynthesisConfig, optional
        The run's settings (default :data:`SYNTHESIS_DEFAULTS`).
    explicit : collection of str
        Measurement fields the user set on purpose: each must equal the
        descriptors' value (else :class:`ConfigError`); the others are
        replaced silently. ``statistics``, unless explicit, becomes
        ``("gram", "mean")`` when every descriptor holds means and
        ``("gram",)`` otherwise (what ``auto`` falls back to); ``sliced``
        can be asked of descriptors that hold a quantile bank (see
        :func:`prepare_targets`).

    Raises
    ------
    DescriptorError
        The descriptors disagree with one another (every difference listed).
    ConfigError
        An explicit field conflicts with the descriptors (field: the first
        conflicting one; message: all of them), the run's layer or octave
        weights do not fit the descriptors' layers or octaves, or ``sliced``
        is asked of a descriptor without a quantile bank.
    """
    from ..descriptors.descriptor import MEASUREMENT_FIELDS

    if not descriptors:
        raise ConfigError("grams", "give at least one descriptor")
    base = config or SYNTHESIS_DEFAULTS
    first = descriptors[0]
    for d in descriptors[1:]:
        diffs = first.differences(d.descriptor_config(), backbone=d.backbone, weights_sha256=d.weights_sha256)
        if diffs:
            listed = "; ".join(
                x.replace("(descriptor)", "(first)").replace("(run)", "(this one)") for x in diffs
            )
            raise DescriptorError(
                f"{_label(d)}: measured differently from {_label(first)}: {listed}; descriptors used "
                "together must share backbone, weights and measurement options"
            )
    measured = first.descriptor_config()
    conflicting = [
        n for n in MEASUREMENT_FIELDS if n in explicit and getattr(measured, n) != getattr(base.descriptor, n)
    ]
    if conflicting:
        listed = "; ".join(
            f"{n} {getattr(measured, n)!r} (descriptor) vs {getattr(base.descriptor, n)!r} (given)"
            for n in conflicting
        )
        raise ConfigError(
            conflicting[0],
            f"conflicts with the descriptor {_label(first)}: {listed}. What a descriptor measures is "
            "fixed when it is built: leave the option out to use the descriptor's value, or rebuild "
            "the descriptor with it",
        )
    desc = dataclasses.replace(base.descriptor, **{n: getattr(measured, n) for n in MEASUREMENT_FIELDS})
    if "statistics" not in explicit:  # every descriptor holds Grams; only some means or a quantile bank
        means = all(d.has_means for d in descriptors)
        desc = dataclasses.replace(desc, statistics=("gram", "mean") if means else ("gram",))
    require_banks(desc, descriptors)
    return dataclasses.replace(base, descriptor=desc)


def targets_from_descriptors(
    descriptors: Sequence[GramDescriptor],
    *,
    config: SynthesisConfig,
    backbone: str,
    weights_sha256: str,
    join: str = "mean",
    grams_weights: Sequence[float] | None = None,
) -> Targets:
    """Targets from descriptors alone; each is one texture, blended by ``grams_weights``.

    Each descriptor is joined on its own, then the joined Grams are
    averaged with ``grams_weights`` (default equal shares) in the same
    geometry: arithmetic for ``mean``, in the matrix-log domain for
    ``log-euclidean`` (exactly ``exp(Σ s_k · log_sum_k / total_k / Σ s_k)``),
    affine-invariant for ``affine-invariant``. A share therefore does not
    depend on how many photos a descriptor holds; to pool photo sets with
    equal weight per photo, merge them first (:meth:`GramDescriptor.merge`).
    With ``sliced`` among the config's statistics, the descriptors' quantile
    banks are blended with the same shares (a mean of quantile functions:
    the Wasserstein barycentre of the textures, whatever ``join`` does to
    the Grams).

    Parameters
    ----------
    descriptors : sequence of GramDescriptor
    config : SynthesisConfig
        The run's config; its measurement fields must match every descriptor
        (see :func:`config_for_descriptors`).
    backbone, weights_sha256 : str
        The run's backbone id and weights hash; must match too.
    join : {"mean", "log-euclidean", "affine-invariant"}
    grams_weights : sequence of float, optional
        One share per descriptor, finite and ≥ 0 with a positive sum.

    Returns
    -------
    Targets
        ``size`` is ``None``: the output size must be given. ``mean_color``
        is the share-weighted mean of the recorded source colours
        (:data:`NEUTRAL_COLOR` if a descriptor records none). ``descriptors``
        names each file with its SHA-256.

    Raises
    ------
    DescriptorError
        A descriptor does not match the run (every difference listed), or
        ``affine-invariant`` is asked of one without kept Grams.
    ConfigError
        Bad ``grams_weights`` or ``join``; ``sliced`` asked of a descriptor
        without a quantile bank.
    """
    from ..descriptors.joins import affine_invariant_mean, spd_exp, symmetrise

    if not descriptors:
        raise ConfigError("grams", "give at least one descriptor")
    shares = _shares(grams_weights, len(descriptors))
    for d in descriptors:
        d.check_compatible(config.descriptor, backbone=backbone, weights_sha256=weights_sha256)
    require_banks(config.descriptor, descriptors)
    active = [k for k, share in enumerate(shares) if share > 0]
    w = np.array([shares[k] for k in active]) / sum(shares[k] for k in active)
    joined = {k: descriptors[k].join(join) for k in active}
    if len(active) == 1:
        grams = joined[active[0]]
    else:
        grams = {}
        for key in descriptors[0].keys:
            if join == "mean":
                grams[key] = symmetrise(sum(wk * joined[k][key] for wk, k in zip(w, active, strict=True)))
            elif join == "log-euclidean":
                logs = [descriptors[k].log_sums[key] / descriptors[k].total_weight for k in active]
                grams[key] = spd_exp(sum(wk * lg for wk, lg in zip(w, logs, strict=True)))
            else:
                stack = np.stack([joined[k][key] for k in active])
                grams[key] = affine_invariant_mean(stack, w, eps=0.0)
    colors = [descriptors[k].mean_color for k in active]
    if any(c is None for c in colors):
        log.info("a descriptor records no source colour; starting from neutral grey")
        mean_color = np.array(NEUTRAL_COLOR, dtype=np.float32)
    else:
        mean_color = np.sum([wk * c for wk, c in zip(w, colors, strict=True)], axis=0).astype(np.float32)
    files = [
        {
            "path": None if d.path is None else os.fspath(d.path),
            "sha256": None if d.path is None else file_sha256(d.path),
            "count": d.count,
            "total_weight": d.total_weight,
            "weight": shares[k],
        }
        for k, d in enumerate(descriptors)
    ]
    sliced = None
    statistics = config.descriptor.statistics
    wants_bank = statistics == ("auto",) and all(descriptors[k].has_bank for k in active)
    if "sliced" in statistics or wants_bank:
        banks = [descriptors[k].bank for k in active]
        try:
            sliced = QuantileBank.blend(banks, w)
        except ValueError as exc:
            raise DescriptorError(f"{_label(descriptors[active[0]])} and the others: {exc}") from None
    means = None
    if all(descriptors[k].has_means for k in active):  # blended with the Grams' shares
        each = [descriptors[k].means for k in active]
        means = {key: sum(wk * m[key] for wk, m in zip(w, each, strict=True)) for key in grams}
    return Targets(
        grams=grams, mean_color=mean_color, sources=[], size=None, join=join, descriptors=files, sliced=sliced,
        means=means,
    )  # fmt: skip


def _shares(grams_weights: Sequence[float] | None, n: int) -> list[float]:
    if grams_weights is None:
        return [1.0] * n
    values = list(grams_weights)
    if len(values) != n:
        raise ConfigError("grams_weights", f"needs one weight per descriptor ({n}), got {len(values)}")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not (np.isfinite(v) and v >= 0):
            raise ConfigError("grams_weights", f"weights must be finite numbers ≥ 0, got {v!r}")
    if sum(values) <= 0:
        raise ConfigError("grams_weights", "at least one weight must be > 0")
    return [float(v) for v in values]


def _label(d: GramDescriptor) -> str:
    return "descriptor" if d.path is None else os.fspath(d.path)


def check_tileable_size(height: int, width: int, *, octaves: int) -> None:
    """With wrap padding every octave must have even sides to stay periodic."""
    step = 2 ** (octaves - 1)
    if height % step or width % step:
        fix_w, fix_h = -(-width // step) * step, -(-height // step) * step
        raise ConfigError(
            "padding",
            f"a tileable (wrap) output needs width and height divisible by {step} for {octaves} "
            f"octaves, got {width}×{height}; use -W {fix_w} -H {fix_h}",
        )


def prepare_targets(
    sources: ImageSource | Sequence[ImageSource] | None = None,
    *,
    config: SynthesisConfig,
    network: Any = None,
    descriptors: Sequence[GramDescriptor] | None = None,
    join: str = "mean",
    grams_weights: Sequence[float] | None = None,
) -> Targets:
    """The targets of a run from source images or descriptor files.

    Computed once, they can serve many runs (``--count`` variations, a
    checkpoint). ``network`` is built from ``config`` when not given.
    """
    from ..measure.backbone import load_weights

    d = config.descriptor
    if descriptors is not None:
        weights = load_weights(d.weights)
        if sources is not None:
            raise ConfigError("grams", "give source images or descriptors, not both")
        return targets_from_descriptors(
            descriptors, config=config, backbone=weights.backbone_id, weights_sha256=weights.sha256,
            join=join, grams_weights=grams_weights,
        )  # fmt: skip
    network = network or load_network(d)[1]
    return targets_from_images([] if sources is None else sources, config=config, network=network)


def output_size(config: SynthesisConfig, targets: Targets) -> tuple[int, int]:
    """(height, width) of the output: the config's, else the first source's; checked."""
    from ..measure.gram import check_image_size

    default_h, default_w = targets.size or (None, None)
    height, width = config.height or default_h, config.width or default_w
    if height is None or width is None:
        raise ConfigError("width", "give the output size (-W and -H) when synthesizing from descriptors")
    check_image_size(height, width, config=config.descriptor, name="output", is_output=True)
    if config.descriptor.padding == "wrap":
        check_tileable_size(height, width, octaves=config.descriptor.octaves)
    return height, width


def estimate_memory(
    config: SynthesisConfig,
    *,
    height: int,
    width: int,
    sources: Sequence[tuple[int, int]] = (),
    tile: int | None = None,
    bank: bool = False,
) -> Any:
    """Estimated peak memory of a run (:class:`multiscale.measure.memory.MemoryEstimate`), untiled or with ``tile``.

    ``bank``: the sliced statistic's targets are descriptor files' quantile bank.
    """
    from ..measure.memory import estimate_synthesis_memory

    return estimate_synthesis_memory(
        height=height, width=width, config=config.descriptor, history=config.history, sources=list(sources),
        optimizer=config.optimizer, frames=config.frames, tile=tile, bank=bank,
    )  # fmt: skip


def resolve_statistics(
    config: SynthesisConfig,
    *,
    height: int,
    width: int,
    sliced: bool,
    bank: bool = False,
    means: bool = True,
) -> SynthesisConfig:
    """``config`` with ``statistics=("auto",)`` made concrete for an H×W run (other values pass).

    ``("sliced",)`` when the sliced statistic has its targets (``sliced``: the
    sources' features, or with ``bank`` descriptor files' quantile bank), its
    projections' memory stays under :data:`~multiscale.config.AUTO_SLICED_MAX_BYTES`
    (they are ranked over the whole image, so tiles do not shrink them) and the
    run fits the memory limit with it (:func:`plan_run_memory`); otherwise
    ``("gram", "mean")``, or ``("gram",)`` when the targets have no means
    (``means``: descriptor files built without them). The choice is logged,
    and the report and checkpoints record it.
    """
    d = config.descriptor
    if d.statistics != ("auto",):
        return config
    chosen = ("gram", "mean") if means else ("gram",)
    reason = "the sliced statistic has no targets here (descriptor files without a quantile bank)"
    if sliced:
        trial = dataclasses.replace(config, descriptor=dataclasses.replace(d, statistics=("sliced",)))
        _, estimate, limit = plan_run_memory(trial, height=height, width=width, bank=bank)
        if estimate.sliced > AUTO_SLICED_MAX_BYTES:
            reason = f"its projections would take {estimate.sliced / 2**30:.1f} GiB at this size"
        elif limit is not None and estimate.total > limit:
            reason = f"with it the run would need {estimate.total / 2**30:.1f} GiB, over the limit"
        else:
            chosen, reason = ("sliced",), "it fits in memory"
    log.info("statistics auto: %s (%s)", ",".join(chosen), reason)
    return dataclasses.replace(config, descriptor=dataclasses.replace(d, statistics=chosen))


def plan_run_memory(
    config: SynthesisConfig,
    *,
    height: int,
    width: int,
    sources: Sequence[tuple[int, int]] = (),
    bank: bool = False,
) -> tuple[int | None, Any, int | None]:
    """Choose how the loss is evaluated, from the memory estimate, without allocating.

    See :func:`multiscale.measure.memory.choose_tile`: ``config.tile_size`` if
    given, else untiled when the estimate fits the limit
    (``config.max_memory``, default: a share of the available memory),
    else the largest tile that fits.

    Returns
    -------
    tile : int or None
        Tile size for :class:`multiscale.objectives.texture.TiledStyleObjective`; ``None``: untiled.
    estimate : multiscale.measure.memory.MemoryEstimate
        The estimate of that choice.
    limit : int or None
        The limit applied, in bytes.

    Raises
    ------
    ConfigError
        A tileable (wrap) output whose sizes cannot be cut exactly.
    """
    from ..measure.memory import choose_tile, default_max_memory
    from ..measure.tiles import plan_octaves

    def estimate(tile: int | None) -> Any:
        if tile is not None:
            plan_octaves(height, width, config=config.descriptor, tile=tile)  # refuses odd wrap sizes
        return estimate_memory(config, height=height, width=width, sources=sources, tile=tile, bank=bank)

    limit = config.max_memory if config.max_memory is not None else default_max_memory()
    tile, chosen = choose_tile(estimate, height=height, width=width, limit=limit, tile_size=config.tile_size)
    return tile, chosen, limit


def check_run_memory(
    config: SynthesisConfig,
    *,
    height: int,
    width: int,
    sources: Sequence[tuple[int, int]] = (),
    bank: bool = False,
) -> int | None:
    """Choose the tiling (:func:`plan_run_memory`) and refuse, before allocating, a run that will not fit.

    Returns
    -------
    int or None
        The tile size to use (``None``: untiled).

    Raises
    ------
    ResourceError
        With the estimate, the limit and which options bring it down.
    """
    from ..measure.memory import check_memory

    tile, estimate, limit = plan_run_memory(config, height=height, width=width, sources=sources, bank=bank)
    check_memory(estimate, max_memory=limit, what=f"a {width}×{height} run")
    return tile


def _initial_frames(config: SynthesisConfig, targets: Targets, height: int, width: int) -> np.ndarray:
    """Start point: one image, or ``frames`` images with seeds seed, seed+1, …"""
    images = [
        initial_image(
            config.init,
            height=height,
            width=width,
            mean_color=targets.mean_color,
            seed=config.seed + i,
            max_input_pixels=config.max_input_pixels,
            exemplars=targets.exemplars,
            long_waves=config.spectrum_long_waves,
        )  # fmt: skip
        for i in range(config.frames)
    ]
    return np.stack(images) if config.frames > 1 else images[0]


@dataclass(frozen=True)
class Stage:
    """One size of a synthesis in stages (:func:`plan_stages`).

    Attributes
    ----------
    index : int
        0 for the first (smallest) stage.
    shift : int
        Halvings below the output: the stage's octave j is the output's
        octave j + ``shift`` (0 for the last stage, the output itself).
    height, width : int
        The stage's image size.
    max_iter : int
        Its iterations at most: the config's ``max_iter`` for the first
        stage, half the previous stage's for each later one (the last
        stage's split between its two parts, with ``spectrum_taper``).
    border_taper : bool
        The first part of a last stage split by ``config.spectrum_taper``:
        the spectrum constraint sees the image through a border taper.
    continues : bool
        The second part of such a stage: it starts from the first part's
        result as it is (same size, no upsampling, no added detail).
    """

    index: int
    shift: int
    height: int
    width: int
    max_iter: int
    border_taper: bool = False
    continues: bool = False


def auto_stages(height: int, width: int, *, octaves: int) -> int:
    """The fewest stages whose first has a long side ≤ :data:`~multiscale.config.SYNTHESIS_FIRST_STAGE_MAX_SIDE`,
    and no more than ``octaves`` (each stage keeps one octave at least)."""
    limit = min(octaves, MAX_STAGES)
    stages = 1
    while max(height, width) / 2 ** (stages - 1) > SYNTHESIS_FIRST_STAGE_MAX_SIDE and stages < limit:
        stages += 1
    return stages


def plan_stages(config: SynthesisConfig, *, height: int, width: int) -> list[Stage]:
    """The stages of an H×W synthesis, smallest first (one stage: the output alone).

    ``config.stages``, or for ``None`` :func:`auto_stages` (fewer if the
    first stage of an odd shape would be too small for its octaves); see
    :class:`~multiscale.config.SynthesisConfig` for what a stage matches.

    Raises
    ------
    ConfigError
        Given ``stages`` whose first stage is too small for its octaves.
    """
    n = config.stages or auto_stages(height, width, octaves=config.descriptor.octaves)
    while True:
        stages = [
            Stage(index=i, shift=n - 1 - i, height=h, width=w, max_iter=max(1, -(-config.max_iter // 2**i)))
            for i, (h, w) in enumerate(stage_sizes(height, width, n))
        ]  # fmt: skip
        problem = _too_small(config, stages[0])
        if problem is None:
            return _split_last(config, stages)
        if config.stages is not None:
            raise ConfigError("stages", f"{problem}; use fewer --stages")
        n -= 1


def _split_last(config: SynthesisConfig, stages: list[Stage]) -> list[Stage]:
    """``stages`` with the last split in two parts by ``config.spectrum_taper`` (the first with
    the border taper), where that applies: a share above 0, several stages, the spectrum
    constraint not left out, not a tileable output (which has no border), and no stage detail
    (``config.stage_detail``, or for ``None`` the number of stages that turns it on, as
    :func:`resolve_stage_detail` decides): the detail gives the last stage's start a finest
    octave inside the image, which the constraint then follows."""
    share = config.spectrum_taper
    if share <= 0 or len(stages) < 2 or config.spectrum_weight == 0 or config.descriptor.padding == "wrap":
        return stages
    if _adds_detail(config, sizes=len(stages), exemplars=True):  # the constraint has its sources
        return stages
    last = stages[-1]
    first = min(max(1, round(share * last.max_iter)), last.max_iter - 1)
    if first < 1:
        return stages  # a last stage of one iteration has no two parts
    return [
        *stages[:-1],
        dataclasses.replace(last, max_iter=first, border_taper=True),
        dataclasses.replace(last, index=last.index + 1, max_iter=last.max_iter - first, continues=True),
    ]


def stage_sizes_count(stages: Sequence[Stage]) -> int:
    """How many sizes ``stages`` run (the two parts of a split last stage are one)."""
    return sum(not s.continues for s in stages)


def _too_small(config: SynthesisConfig, stage: Stage) -> str | None:
    """Why ``stage`` is too small for the octaves it keeps (``None``: it is not)."""
    from ..measure.gram import check_image_size

    if stage.shift == 0:
        return None  # the output itself, checked as such
    what = f"stage 1 would be {stage.width}×{stage.height} px"
    if min(stage.height, stage.width) < 8:
        return f"{what}, under 8 px"
    descriptor = config.descriptor.shifted(stage.shift)
    try:
        check_image_size(stage.height, stage.width, config=descriptor, name="stage 1", is_output=True)
    except MultiscaleError:
        return f"{what}, too small for {descriptor.octaves} octave(s) of these layers"
    return None


def stage_config(config: SynthesisConfig, stage: Stage) -> SynthesisConfig:
    """The config a stage runs with: its size, its iterations and the output's octaves from ``stage.shift`` on;
    the last of several stages weighs the spectrum constraint by ``config.spectrum_last_stage``."""
    if stage.shift == 0 and stage.index == 0:
        return config
    spectrum = config.spectrum_weight
    if stage.shift == 0 and spectrum is not None:
        spectrum *= config.spectrum_last_stage
    return dataclasses.replace(
        config, descriptor=config.descriptor.shifted(stage.shift), height=stage.height,
        width=stage.width, max_iter=stage.max_iter, stages=1, spectrum_weight=spectrum,
    )  # fmt: skip


def stage_targets(targets: Targets, stage: Stage) -> Targets:
    """The targets of a stage: the output's from octave ``stage.shift`` on, renumbered from 0
    (:func:`~multiscale.layers.shift_octaves`), and the source images halved ``shift`` times (for the
    spectrum start and constraint at the stage's scale)."""
    from ..io import resize_image

    t = stage.shift
    if t == 0:
        return targets
    f = 2**t
    return dataclasses.replace(
        targets,
        grams=shift_octaves(targets.grams, t),
        sliced=None if targets.sliced is None else targets.sliced.shifted(t),
        means=None if targets.means is None else shift_octaves(targets.means, t),
        exemplars=[
            resize_image(e, width=max(1, round(e.shape[1] / f)), height=max(1, round(e.shape[0] / f)))
            for e in targets.exemplars
        ],
    )


def _time_shares(stages: Sequence[Stage], time_limit: float | None) -> list[float | None]:
    """Each stage's share of ``time_limit``, in proportion to its work (iterations × pixels,
    :func:`~multiscale.jobs.runner.work_shares`; the time left when a stage starts is split again
    among it and the later ones; see :func:`run_synthesis`)."""
    if time_limit is None:
        return [None] * len(stages)
    shares = _work_shares(stages)
    return [share_of_rest(shares, i) for i in range(len(stages))]


def _work_shares(stages: Sequence[Stage]) -> list[float]:
    return work_shares([(s.max_iter, s.height, s.width) for s in stages])


@dataclass
class _StageOutcome:
    """What one stage's optimisation left: the driver's result, the objective that scores the
    saved image, the phase it ended in, the checkpoint it wrote last and the tile size it used."""

    result: Any
    style: Any
    phase: Phase
    checkpointed: int | None
    tile: int | None


def run_synthesis(
    sources: ImageSource | Sequence[ImageSource] | None = None,
    *,
    config: SynthesisConfig,
    callback: Callable[[Any], bool | None] | None = None,
    targets: Targets | None = None,
    descriptors: Sequence[GramDescriptor] | None = None,
    join: str = "mean",
    grams_weights: Sequence[float] | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    output: str | os.PathLike[str] | None = None,
    resume_state: Any = None,
    resume_float32_from: int | None = None,
    resume_sliced_draw: tuple[int, int] | None = None,
    resume_stage: int | None = None,
    on_result: Callable[[SynthesisResult], Any] | None = None,
) -> SynthesisResult:
    """:func:`synthesize` for a ready :class:`SynthesisConfig` (what the CLI calls).

    Give one of ``sources`` (images to measure), ready ``targets`` (e.g.
    :func:`prepare_targets`, :func:`targets_from_build`) or ``descriptors``
    (loaded :class:`~multiscale.descriptors.descriptor.GramDescriptor` objects, combined
    by :func:`targets_from_descriptors` with ``join`` and ``grams_weights``;
    ``config`` must then measure as they do — see
    :func:`config_for_descriptors` — and give the output size).

    A large output runs in stages (:func:`plan_stages`, ``config.stages``):
    each stage's best image, upsampled (:func:`upsample`), starts the next;
    the callback then receives a :class:`~multiscale.jobs.runner.StageProgress`
    counting over all stages. With ``time_limit``, each stage gets a share of
    the time left in proportion to its iterations × pixels; a stage before
    the last that uses up its share hands over to the next.

    With ``checkpoint`` (a folder) and the ``projected`` optimizer, a
    resumable checkpoint (:mod:`multiscale.jobs.checkpoint`) is written every
    ``config.checkpoint_every`` iterations and whenever the run stops early
    (Ctrl-C, time limit, callback); ``output`` is recorded in it as where the
    final image goes, and the stage it holds. ``resume_state`` continues a
    checkpointed run exactly (in stage ``resume_stage``, then the later ones;
    ``resume_float32_from``: in its float32 finish, which began at that
    iteration; see below).

    ``on_result`` is called with the result before the checkpoint of a stop
    is written, so that whoever saves the image (the CLI) has it on disk
    first: a scheduler's grace period after SIGTERM may not last a large
    checkpoint. A run stopped by Ctrl-C (KeyboardInterrupt) is not scored
    again: the report's ``loss`` is then the optimiser's best (before
    quantisation) and ``octave_losses`` is empty. A run stopped in a stage
    before the last returns that stage's best image upsampled to the output
    size, with ``loss`` ``None``. Ctrl-C while a periodic checkpoint is
    written stops the run the same way; the previous checkpoint stays
    complete (see :mod:`multiscale.jobs.checkpoint`).

    A bfloat16 run (``config.precision``, or ``auto`` choosing it) with the
    projected optimizer finishes in float32: when the bfloat16 driver stops
    on its own (``tol`` met, or no decrease found: bf16 rounding noise ends
    runs early) before ``max_iter``, the run goes on from its best point with
    the float32 objective and fresh L-BFGS memory
    (:func:`multiscale.optim.projected.switch_objective`). The report's ``precision``
    says at which iteration (``float32_from_iteration``, the last stage's).

    With ``config.frames > 1`` the result's ``image`` is (N, H, W, 3).
    """
    started = time.perf_counter()
    d = config.descriptor
    weights, network = load_network(d)
    if targets is None:
        targets = prepare_targets(
            sources, config=config, network=network, descriptors=descriptors, join=join,
            grams_weights=grams_weights,
        )  # fmt: skip
    height, width = output_size(config, targets)
    bank = isinstance(targets.sliced, QuantileBank)
    config = resolve_statistics(
        config, height=height, width=width, sliced=targets.sliced is not None, bank=bank,
        means=targets.means is not None,
    )  # fmt: skip
    if "sliced" not in config.descriptor.statistics and targets.sliced is not None:
        targets = dataclasses.replace(targets, sliced=None)  # measured for auto; gram was chosen
    # the spectrum weight (None: the default with source images, none without) resolved first:
    # whether the last stage runs in two parts depends on it
    config = dataclasses.replace(config, spectrum_weight=resolve_spectrum_weight(config, targets))
    stages = plan_stages(config, height=height, width=width)
    # every stage's tiling, chosen and checked before anything runs (the last is the largest)
    tiles = [
        check_run_memory(stage_config(config, s), height=s.height, width=s.width, bank=bank) for s in stages
    ]  # fmt: skip
    choice = resolve_precision(config, height=height, width=width, weights=weights)
    run_network = network if choice.compute_dtype is None else precision_network(network, choice)
    # the stage detail (None: by the number of stages) resolved; the resolved values are what the
    # report and a checkpoint record, so a resume runs as the run did
    config = dataclasses.replace(
        config, stage_detail=resolve_stage_detail(config, targets, stage_sizes_count(stages)),
    )  # fmt: skip

    def shape_of(stage: Stage) -> tuple[int, ...]:
        size = (stage.height, stage.width, 3)
        return (config.frames, *size) if config.frames > 1 else size

    checkpointer = (
        None
        if checkpoint is None
        else _Checkpointer(
            # the resolved precision: a resume must not measure again and choose otherwise
            checkpoint, config=dataclasses.replace(config, precision=choice.precision), output=output,
            targets=targets, shape=shape_of(stages[-1]), phase=Phase(),
            stage=None if len(stages) == 1 else stages[-1].index,
        )
    )  # fmt: skip
    first = 0 if resume_stage is None else resume_stage
    if not 0 <= first < len(stages):
        raise ConfigError("stages", f"the checkpoint is at stage {first + 1}, but the run has {len(stages)}")
    shares = _time_shares(stages, config.time_limit)
    planned = [s.max_iter for s in stages]
    x: np.ndarray | None = None
    history: list[float] = []
    iterations = evaluations = 0
    records: list[dict[str, Any]] = []
    for stage in stages[first:]:
        run_config = stage_config(config, stage)
        if config.time_limit is not None:
            left = max(config.time_limit - (time.perf_counter() - started), 1e-3)
            run_config = dataclasses.replace(run_config, time_limit=left * shares[stage.index])
        run_targets = stage_targets(targets, stage)
        shape = shape_of(stage)
        resumed = resume_state if stage.index == first else None
        if resumed is not None:
            if resumed.x.size != int(np.prod(shape)):
                raise ConfigError(
                    "stages", f"the checkpoint's image does not have the size of stage {first + 1} {shape}"
                )
            x0 = resumed.x
        elif x is not None and stage.continues:
            x0 = np.array(x, np.float64).reshape(-1)  # the first part's result, as it is
        elif x is not None:
            x0 = stage_start(
                x, height=stage.height, width=stage.width, wrap=d.padding == "wrap",
                exemplars=run_targets.exemplars if config.stage_detail else (),
                seed=config.seed + STAGE_SEED_STEP * stage.index, long_waves=config.spectrum_long_waves,
            ).reshape(-1)  # fmt: skip
        else:
            x0 = _initial_frames(run_config, run_targets, stage.height, stage.width).reshape(-1)
        # the float32 switch a resumed bfloat16 run had made (None: not yet; optimize() sets it)
        bf16 = run_network is not network
        phase = Phase(switched=resume_float32_from if resumed is not None and bf16 else None)
        if resumed is not None and resume_sliced_draw is not None:
            phase.draw, phase.draw_from = resume_sliced_draw
        if checkpointer is not None:
            checkpointer.shape, checkpointer.phase = shape, phase
            checkpointer.stage = None if len(stages) == 1 else stage.index
        stage_callback = callback
        if callback is not None and len(stages) > 1:
            stage_callback = _stage_callback(
                callback, stage, stages, offset=sum(planned[: stage.index]), started=started
            )
        stage_started = time.perf_counter()
        outcome = _run_stage(
            run_config, x0, targets=run_targets, stage=stage, tile=tiles[stage.index], network=network,
            run_network=run_network, phase=phase, shape=shape, callback=stage_callback, resume_state=resumed,
            checkpointer=checkpointer,
        )  # fmt: skip
        result = outcome.result
        iterations += result.iterations
        evaluations += result.evaluations
        history += list(result.history)
        records.append({
            "stage": stage.index + 1, "height": stage.height, "width": stage.width,
            "octaves": run_config.descriptor.octaves, "iterations": result.iterations,
            "loss": float(result.loss), "stop_reason": result.stop_reason,
            "spectrum_weight": run_config.spectrum_weight, "elapsed_s": time.perf_counter() - stage_started,
            **({"spectrum_border_taper": True} if stage.border_taper else {}),
        })  # fmt: skip
        last = stage is stages[-1]
        if not last and result.stop_reason in _HANDS_OVER:
            x = result.x.reshape(shape)
            if getattr(result, "state", None) is not None:
                result.state = None
            continue
        break
    return _finish(
        outcome, stage=stage, stages=stages, config=config, targets=targets, started=started, history=history,
        iterations=iterations, evaluations=evaluations, records=records, weights=weights, choice=choice,
        checkpoint=checkpoint, checkpointer=checkpointer, on_result=on_result,
        shape=shape_of(stages[-1]),
    )  # fmt: skip


def _stage_callback(
    callback: Callable[[Any], bool | None],
    stage: Stage,
    stages: Sequence[Stage],
    *,
    offset: int,
    started: float,
) -> Callable[[Any], bool | None]:
    """The user's callback for one stage: its progress counted over all stages (a :class:`StageProgress`;
    ``elapsed_s`` since the run ``started``, a :func:`time.perf_counter` reading)."""
    total = sum(s.max_iter for s in stages)
    shares = _work_shares(stages)

    def on_progress(p: Any) -> bool | None:
        return callback(
            StageProgress(
                iteration=offset + p.iteration, max_iter=total, evaluations=p.evaluations, loss=p.loss,
                best_loss=p.best_loss, elapsed_s=time.perf_counter() - started, octave_losses=p.octave_losses,
                image=p.image,
                best_image=p.best_image, stage=stage.index + 1, stages=len(stages), stage_iteration=p.iteration,
                height=stage.height, width=stage.width,
                work=work_done(shares, stage.index, p.iteration / max(stage.max_iter, 1)),
            )
        )  # fmt: skip

    return on_progress


def _run_stage(
    config: SynthesisConfig,
    x0: np.ndarray,
    *,
    targets: Targets,
    stage: Stage,
    tile: int | None,
    network: Any,
    run_network: Any,
    phase: Phase,
    shape: tuple[int, ...],
    callback: Callable[[Any], bool | None] | None,
    resume_state: Any,
    checkpointer: _Checkpointer | None,
) -> _StageOutcome:
    """Optimise one stage from ``x0`` (or ``resume_state``) with ``config`` (the stage's own)."""
    from ..objectives.base import WithImageTerms
    from ..objectives.image_terms import image_terms

    d = config.descriptor
    extra = image_terms(
        config, exemplars=targets.exemplars, height=stage.height, width=stage.width,
        border_taper=stage.border_taper,
    )  # fmt: skip

    def objective_for(net: Any) -> tuple[Any, Any]:
        """(what L-BFGS minimises, the style objective inside it) with ``net``."""
        style = make_objective(
            targets.grams, network=net, config=d, height=stage.height, width=stage.width, tile=tile,
            sliced=targets.sliced, seed=config.seed, means=targets.means,
        )  # fmt: skip
        if extra:
            style = WithImageTerms(style, extra)
        if config.frames == 1:
            return style, style
        from ..objectives.frames import FramesObjective

        frames_objective = FramesObjective(
            style, frames=config.frames, frame_weight=config.frame_weight, loop=config.loop,
            frame_size=stage.height * stage.width * 3,
        )  # fmt: skip
        return frames_objective, style

    objective, style = objective_for(run_network)
    finish = exact = None
    if run_network is not network:  # float32 finishes the run and scores the saved image
        finish, exact = objective_for(network)

    def octave_losses() -> np.ndarray | None:
        last = (style if phase.switched is None else exact).last
        return None if last is None else last.octave_losses

    result, checkpointed = optimize(
        objective, x0, limits=Limits.of(config), callback=callback, shape=shape, resume_state=resume_state,
        octave_losses=octave_losses if config.frames == 1 else None, on_checkpoint=checkpointer,
        finish=finish if config.optimizer == "projected" else None, phase=phase,
        redraw_every=objective.redraw_every,
    )  # fmt: skip
    return _StageOutcome(
        result=result, style=style if exact is None else exact, phase=phase, checkpointed=checkpointed, tile=tile
    )  # fmt: skip


def _finish(
    outcome: _StageOutcome,
    *,
    stage: Stage,
    stages: Sequence[Stage],
    config: SynthesisConfig,
    targets: Targets,
    started: float,
    history: list[float],
    iterations: int,
    evaluations: int,
    records: list[dict[str, Any]],
    weights: Any,
    choice: Any,
    checkpoint: str | os.PathLike[str] | None,
    checkpointer: _Checkpointer | None,
    on_result: Callable[[SynthesisResult], Any] | None,
    shape: tuple[int, ...],
) -> SynthesisResult:
    """The result of the stage the run ended in: its image at the output size, scored when it is the
    last stage's, the report, and the checkpoint of a stop (after ``on_result`` has the image)."""
    result = outcome.result
    stop_state = getattr(result, "state", None)
    if checkpointer is None or result.stop_reason not in STOPPED_EARLY or stop_state is None:
        stop_state = None
    if getattr(result, "state", None) is not None:
        result.state = None  # frees the driver's pairs (≈ 2(m+1) n float32) unless a checkpoint needs them
    last = stage is stages[-1]
    best = result.x.reshape(shape if last else (*shape[:-3], stage.height, stage.width, 3))
    if not last:  # stopped early in a smaller stage: its best image at the output size
        best = upsample(best, height=shape[-3], width=shape[-2], wrap=config.descriptor.padding == "wrap")
    image = quantize(best, bit_depth=config.bit_depth)
    frames = image if config.frames > 1 else image[None]
    stop_reason, message = result.stop_reason, result.message
    loss: float | None = float(result.loss)
    per_octave, spectrum_loss = np.zeros(0), None
    if not last:
        loss = None
        message = f"{message}; stopped in stage {stage.index + 1} of {len(stages)} ({stage.width}×{stage.height}): its image, upsampled"
    elif stop_reason != "interrupted":  # after Ctrl-C or SIGTERM, the image first
        try:
            scored = [outcome.style.evaluate(f) for f in frames]
            loss = float(np.mean([e.total for e in scored]))
            per_octave = np.mean([e.octave_losses for e in scored], axis=0)
            if "spectrum" in scored[0].terms:  # its weighted share: loss = sum(octave_losses) + spectrum_loss
                spectrum_loss = float(np.mean([e.weighted("spectrum") for e in scored]))
        except KeyboardInterrupt:
            stop_reason, message = "interrupted", f"{message}; interrupted while scoring the result"
    report = SynthesisReport(
        loss=loss,
        best_loss=result.loss,
        octave_losses=[float(v) for v in per_octave],
        iterations=iterations,
        evaluations=evaluations,
        stop_reason=stop_reason,
        message=message,
        elapsed_s=time.perf_counter() - started,
        history=history,
        config=config,
        sources=targets.sources,
        backbone=weights.backbone_id,
        weights_path=os.fspath(weights.path),
        weights_sha256=weights.sha256,
        versions=versions(),
        join=targets.join,
        descriptors=targets.descriptors,
        skipped=targets.skipped,
        checkpoint=(
            os.fspath(checkpoint)
            if checkpoint is not None and (outcome.checkpointed is not None or stop_state is not None)
            else None
        ),
        tile_size=outcome.tile,
        precision={**choice.to_dict(), "float32_from_iteration": outcome.phase.switched},
        spectrum_loss=spectrum_loss,
        stages=records if len(stages) > 1 else [],
    )
    from .checkpoint import save_then_checkpoint

    done = SynthesisResult(image=image, report=report)
    save_then_checkpoint(
        done, on_result,
        None if stop_state is None else lambda: checkpointer(stop_state),
    )  # fmt: skip
    return done


def resolve_spectrum_weight(config: SynthesisConfig, targets: Targets) -> float:
    """``config.spectrum_weight``, or for ``None`` :data:`~multiscale.config.DEFAULT_SPECTRUM_WEIGHT`
    when the targets have source images and 0 when they do not (descriptor files, a folder build)."""
    if config.spectrum_weight is not None:
        return float(config.spectrum_weight)
    return DEFAULT_SPECTRUM_WEIGHT if targets.exemplars else 0.0


def resolve_stage_detail(config: SynthesisConfig, targets: Targets, stages: int) -> bool:
    """Whether the run adds the finest octave at each later stage's start: never for an animation
    (``frames`` > 1) or without source images (descriptor files), where there is none to add;
    otherwise ``config.stage_detail``, or for ``None`` whether the run has
    :data:`~multiscale.config.STAGE_DETAIL_MIN_STAGES` stages or more."""
    return _adds_detail(config, sizes=stages, exemplars=bool(targets.exemplars))


def _adds_detail(config: SynthesisConfig, *, sizes: int, exemplars: bool) -> bool:
    """The rule of :func:`resolve_stage_detail`, for a run of ``sizes`` stage sizes; :func:`_split_last`
    decides by it too, so that a resume, which records the resolved value, plans the same stages."""
    if config.frames > 1 or not exemplars:
        return False
    if config.stage_detail is not None:
        return config.stage_detail
    return sizes >= STAGE_DETAIL_MIN_STAGES


def make_objective(
    grams: Mapping[Any, np.ndarray],
    *,
    network: Any,
    config: DescriptorConfig,
    height: int,
    width: int,
    tile: int | None,
    sliced: SlicedTargets | None = None,
    seed: int = 0,
    means: Mapping[Any, np.ndarray] | None = None,
) -> Any:
    """The texture objective for an H×W output: untiled, or tiled with ``tile`` (same values).

    ``sliced`` and ``seed``: the sliced statistic's source features and the
    seed of its directions, when ``config.statistics`` has ``sliced``;
    ``means``: the mean feature vectors, when it has ``mean``.
    """
    common = dict(
        targets=grams, network=network, config=config, height=height, width=width, sliced=sliced, seed=seed,
        means=means,
    )  # fmt: skip
    if tile is None:
        from ..objectives.texture import StyleObjective

        return StyleObjective(**common)
    from ..objectives.texture import TiledStyleObjective

    log.info("evaluating the loss in tiles of %d px (plus halo)", tile)
    return TiledStyleObjective(tile=tile, **common)


class _Checkpointer:
    """Writes a run's checkpoints; the targets only the first time."""

    def __init__(
        self,
        folder: str | os.PathLike[str],
        *,
        config: SynthesisConfig,
        output: Any,
        targets: Targets,
        shape: tuple[int, ...],
        phase: Phase,
        stage: int | None = None,
    ) -> None:
        # the float32 switch and the sliced draw are read from the phase at each write; a run in
        # stages sets the phase, the shape and the stage index anew for every stage
        self.phase, self.stage = phase, stage
        self.folder, self.config, self.output, self.targets, self.shape = (
            folder,
            config,
            output,
            targets,
            shape,
        )
        self.first = True

    def __call__(self, state: Any) -> None:
        from .checkpoint import write_checkpoint

        write_checkpoint(
            self.folder, config=self.config, output=self.output, grams=self.targets.grams,
            mean_color=self.targets.mean_color,
            sources=[dataclasses.asdict(s) if dataclasses.is_dataclass(s) else dict(s) for s in self.targets.sources],
            state=state, shape=self.shape, write_targets=self.first,
            float32_from_iteration=self.phase.switched, sliced=self.targets.sliced,
            exemplars=self.targets.exemplars if self.config.spectrum_weight > 0 or self.config.stage_detail else (),
            sliced_draw=None if self.phase.draw is None else (self.phase.draw, self.phase.draw_from),
            means=self.targets.means, stage=self.stage,
        )  # fmt: skip
        self.first = False


def resume_synthesis(
    checkpoint: str | os.PathLike[str] | Checkpoint,
    *,
    max_iter: int | None = None,
    time_limit: float | None = None,
    callback: Callable[[Any], bool | None] | None = None,
    on_result: Callable[[SynthesisResult], Any] | None = None,
) -> tuple[SynthesisResult, str]:
    """Continue a checkpointed run where it stopped; return the result and its output path.

    ``max_iter`` (total, counted from the run's start) and ``time_limit``
    (for this session) may be changed; everything else is the run's own.
    The continued run checkpoints into the same folder; ``on_result`` as in
    :func:`run_synthesis`. ``checkpoint`` is the folder, or the
    :class:`~multiscale.jobs.checkpoint.Checkpoint` read from it, whose optimiser
    state the run then takes over rather than copies (the resume holds its
    state once, as the original run did; the object is spent afterwards).
    """
    from .checkpoint import Checkpoint as Loaded
    from .checkpoint import read_checkpoint

    ck = checkpoint if isinstance(checkpoint, Loaded) else read_checkpoint(checkpoint)
    changes: dict[str, Any] = {"time_limit": time_limit}
    if max_iter is not None:
        changes["max_iter"] = max_iter
    config = dataclasses.replace(ck.config, **changes)
    size = config.height, config.width
    sources = [
        SourceInfo(**s) if set(s) == {f.name for f in dataclasses.fields(SourceInfo)} else s
        for s in ck.sources
    ]
    targets = Targets(
        grams=ck.grams, mean_color=ck.mean_color, sources=sources, size=size, sliced=ck.sliced,
        exemplars=list(ck.exemplars), means=ck.means,
    )  # fmt: skip
    result = run_synthesis(
        config=config, callback=callback, targets=targets, checkpoint=ck.folder, output=ck.output,
        resume_state=ck.state, resume_float32_from=ck.float32_from_iteration, on_result=on_result,
        resume_sliced_draw=ck.sliced_draw, resume_stage=ck.stage,
    )  # fmt: skip
    return result, ck.output


def average_grams(descriptors: Sequence[Mapping[Any, np.ndarray]]) -> dict[Any, np.ndarray]:
    """Element-wise mean of several images' Grams (same keys)."""
    keys = descriptors[0].keys()
    return {k: np.mean([d[k] for d in descriptors], axis=0) for k in keys}


__all__ = [
    "SourceInfo",
    "prepare_targets",
    "resume_synthesis",
    "SynthesisReport",
    "SynthesisResult",
    "Targets",
    "config_for_descriptors",
    "run_synthesis",
    "synthesize",
    "targets_from_build",
    "targets_from_descriptors",
]
