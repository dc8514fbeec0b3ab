"""Style transfer: a content image painted with the multiscale statistics of styles.

The output x minimises (see :mod:`multiscale.objectives.style`)::

    content_weight · L_content(x) + style_weight · L_style(x) + tv_weight · L_tv(x)
        + palette_weight · L_palette(x)

where ``L_style`` is the same multiscale statistics loss as texture synthesis:
every octave of x's Gaussian pyramid against the same octave of the
(blended) styles', and ``L_palette`` asks for the styles' colours as a whole
distribution (:mod:`multiscale.objectives.palette`). The pixels are optimised with bounded L-BFGS, each stage
by the runner every job shares (:func:`multiscale.jobs.runner.optimize`).

Large outputs are made in stages: the first stage optimises a small version
(long side ≤ 512 px by default), each later stage doubles the size, starts
from the previous result upsampled, and recomputes the content and style
targets at its own size. Styles are resized at every stage to
``style_scale`` × the stage's width, so their features keep the same size
relative to the picture throughout.

Given a checkpoint folder, a run writes a resumable checkpoint
(:mod:`multiscale.jobs.checkpoint`) on Ctrl-C and every ``checkpoint_every``
iterations: the content at every stage's size, the styles' blended Grams,
the stage reached, its best image and the projected driver's state.
:func:`resume_stylize` continues it exactly to the end of the plan (with
``lbfgsb``, whose state scipy does not hand out, the stage reached restarts
the optimiser from its best image).

The job is a function of (config, images) → result; it loads nothing from
the command line and prints nothing. Progress goes to ``callback``.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..config import (
    FIRST_STAGE_MAX_SIDE,
    MAX_STAGES,
    MAX_STYLIZE_SIDE,
    STYLE_DEFAULTS,
    STYLE_INITS,
    DescriptorConfig,
    StyleConfig,
)
from ..errors import CheckpointError, ConfigError, ImageTooSmallError
from ..io import file_sha256, load_image, resize_image
from ..measure.color import grey_rgb, luminance, match_color, match_luminance, match_palette, recombine
from ..measure.memory import (
    MemoryEstimate,
    check_memory,
    choose_tile,
    default_max_memory,
    estimate_synthesis_memory,
)
from ..objectives.palette import PaletteTarget, palette_target
from ..optim.base import Progress
from .checkpoint import (
    StyleCheckpoint,
    StylePosition,
    read_style_checkpoint,
    save_then_checkpoint,
    write_style_checkpoint,
)
from .runner import (
    ImageSource,
    Limits,
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
from .starts import initial_image

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StageInfo:
    """What happened at one stage (recorded in the report).

    ``loss`` is the stage's best optimiser loss (``None`` if no evaluation
    finished); ``time_limit_s`` the share of ``--time-limit`` it was given;
    ``tile_size`` the tiles of its exact tiled evaluation (``None``: untiled);
    ``precision`` what its convolutions ran in and why
    (:meth:`multiscale.jobs.precision.PrecisionChoice.to_dict`; ``None``: float32,
    not asked for otherwise).
    """

    stage: int
    height: int
    width: int
    iterations: int
    evaluations: int
    loss: float | None
    stop_reason: str
    message: str
    elapsed_s: float
    time_limit_s: float | None
    tile_size: int | None = None
    precision: dict[str, Any] | None = None


@dataclass(kw_only=True)
class StylizeReport(RunReport):
    """Everything needed to understand and reproduce a style transfer:
    :class:`~multiscale.jobs.runner.RunReport`'s fields, read as below, and these.

    Attributes
    ----------
    loss : float or None
        Objective of the returned image as it will be saved (quantised),
        at the output size; ``None`` if the run stopped before the last
        stage (its image is then an earlier stage's, upsampled).
    content_loss, style_loss, tv_loss, palette_loss : float or None
        The unweighted terms of ``loss`` (``None`` where ``loss`` is, and
        for a term the run does not have, such as one whose weight is 0: it
        is not computed).
    octave_losses : list of float
        Each octave's share of ``style_loss``.
    best_loss : float or None
        Lowest loss the optimiser evaluated at the last stage it ran.
    iterations, evaluations : int
        Over all stages.
    stop_reason, message : str
        Why the last stage that ran ended.
    history : list of float
        Loss after each iteration, all stages one after the other (the
        stages' ``iterations`` split it).
    stages : list of StageInfo
    config : StyleConfig
    height, width : int
        Output size.
    content : SourceInfo
    styles : list of SourceInfo
    style_blend : list of float
        The styles' weights, normalised to sum to 1.
    resumed_from : str or None
        The checkpoint this run continued (:func:`resume_stylize`).
    """

    content_loss: float | None
    style_loss: float | None
    tv_loss: float | None
    palette_loss: float | None
    stages: list[StageInfo]
    config: StyleConfig
    height: int
    width: int
    content: SourceInfo
    styles: list[SourceInfo]
    style_blend: list[float]
    resumed_from: str | None = None


@dataclass
class StylizeResult:
    """A stylised image and its report.

    Attributes
    ----------
    image : np.ndarray
        float32 (H, W, 3), RGB in [0, 1], quantised to ``config.bit_depth``.
    report : StylizeReport
    """

    image: np.ndarray
    report: StylizeReport


@dataclass
class StylizePlan:
    """Inputs loaded and checked, sizes decided: everything before the first evaluation.

    Made by :func:`prepare_stylize`; :func:`run_plan` carries it out. The
    CLI makes the plan first so that bad inputs fail before any progress bar.

    Attributes
    ----------
    config : StyleConfig
    content : np.ndarray
        float32 (h, w, 3) RGB in [0, 1], at its own size.
    styles : list of np.ndarray
        float32 (h, w, 3) in [0, 1] at their own sizes, with the colour
        handling applied (grey for ``luminance``, colour-matched for
        ``histogram``).
    blend : tuple of float
        Style weights normalised to sum to 1.
    height, width : int
        Output size.
    stage_sizes : list of (height, width)
        Smallest first; the last is the output size.
    init_image : np.ndarray or None
        The ``init`` image file, loaded (``None`` for content/noise/mean).
    content_info, style_infos : SourceInfo
    """

    config: StyleConfig
    content: np.ndarray
    styles: list[np.ndarray]
    blend: tuple[float, ...]
    height: int
    width: int
    stage_sizes: list[tuple[int, int]]
    init_image: np.ndarray | None
    content_info: SourceInfo
    style_infos: list[SourceInfo]

    @property
    def stages(self) -> int:
        """Number of stages."""
        return len(self.stage_sizes)

    @functools.cached_property
    def recoloured(self) -> np.ndarray:
        """The content recoloured to the styles' blended palette (float32 (h, w, 3) in [0, 1], the
        content's size): the ``palette`` start and the ``palette`` content target; the content as
        it is with ``preserve_color``. Computed once a plan."""
        if self.config.preserve_color == "none":
            return match_palette(self.content, self.styles, self.blend)
        return self.content

    @functools.cached_property
    def palette(self) -> PaletteTarget | None:
        """The styles' blended colours for the palette term, the same at every stage; ``None``
        where the run has no such term (:attr:`~multiscale.config.StyleConfig.uses_palette_term`).
        Computed once a plan."""
        return palette_target(self.styles, self.blend) if self.config.uses_palette_term else None

    @property
    def total_iterations(self) -> int:
        """Iterations if no stage stops early (the progress bar's length)."""
        return self.stages * self.config.max_iter


# --------------------------------------------------------------------------
# Sizes
# --------------------------------------------------------------------------


def output_size(content_height: int, content_width: int, *, width: int | None) -> tuple[int, int]:
    """(height, width) of the output: ``width`` (or the content's) and the content's aspect ratio.

    Raises
    ------
    ConfigError
        If a side would exceed :data:`~multiscale.config.MAX_STYLIZE_SIDE`.
    """
    if width is None:
        if content_width > MAX_STYLIZE_SIDE:
            raise ConfigError(
                "width", f"the content is {content_width} px wide; give a width ≤ {MAX_STYLIZE_SIDE}"
            )
        width = content_width
    height = max(1, round(width * content_height / content_width))
    if height > MAX_STYLIZE_SIDE:
        widest = math.floor(MAX_STYLIZE_SIDE * content_width / content_height)
        raise ConfigError(
            "width",
            f"{width} px gives an output {height} px high (content {content_width}×{content_height}); "
            f"the height may be at most {MAX_STYLIZE_SIDE}: use a width ≤ {widest}",
        )
    return height, width


def auto_stages(height: int, width: int, *, config: DescriptorConfig) -> int:
    """The fewest stages whose first has a long side ≤ :data:`FIRST_STAGE_MAX_SIDE`.

    Never so many that the first stage's short side falls below what the
    descriptor needs (:func:`multiscale.measure.gram.min_image_side`).
    """
    from ..measure.gram import min_image_side

    need = min_image_side(config)
    stages = 1
    while max(height, width) / 2 ** (stages - 1) > FIRST_STAGE_MAX_SIDE and stages < MAX_STAGES:
        if min(stage_sizes(height, width, stages + 1)[0]) < need:
            break
        stages += 1
    return stages


def style_size(
    style_height: int, style_width: int, *, stage_width: int, style_scale: float
) -> tuple[int, int]:
    """(height, width) of a style at a stage: ``style_scale`` × the stage's width, aspect kept."""
    w = max(1, round(style_scale * stage_width))
    return max(1, round(w * style_height / style_width)), w


def stage_tiling(
    height: int, width: int, *, config: StyleConfig, style_sizes: Sequence[tuple[int, int]] = ()
) -> tuple[int | None, MemoryEstimate, int | None]:
    """Tile size for a stage of ``height`` × ``width`` (``None``: untiled), its estimate and the limit.

    As for synthesis (:func:`multiscale.measure.memory.choose_tile`): ``tile_size``
    if given, else untiled when the estimate fits ``max_memory`` (default: a
    share of the available memory), else the largest tile that fits.
    """
    limit = config.max_memory if config.max_memory is not None else default_max_memory()
    tile, estimate = choose_tile(
        lambda t: estimate_memory(height, width, config=config, style_sizes=style_sizes, tile=t),
        height=height, width=width, limit=limit, tile_size=config.tile_size,
    )  # fmt: skip
    return tile, estimate, limit


def estimate_memory(
    height: int,
    width: int,
    *,
    config: StyleConfig,
    style_sizes: Sequence[tuple[int, int]] = (),
    tile: int | None = None,
) -> MemoryEstimate:
    """Estimated peak memory of a run whose last stage is ``height`` × ``width``.

    The synthesis model of :mod:`multiscale.measure.memory` with the content layers
    counted as style layers (so at every octave, where they are only needed at
    octave 0: a slight overestimate) and the content image's forward pass
    counted like a style's. ``style_sizes`` are the styles' sizes at the last
    stage. Earlier stages are smaller and need less.
    """
    d = config.descriptor
    layers = d.layers + tuple(n for n in config.content_layers if n not in d.layers)
    coarse = tuple(n for n in d.coarse_layers if n not in layers)
    measured = dataclasses.replace(d, layers=layers, layer_weights=None, coarse_layers=coarse)
    channels = 1 if config.preserve_color == "luminance" else 3
    estimate = estimate_synthesis_memory(
        height=height, width=width, config=measured, history=config.history,
        sources=[*style_sizes, (height, width)], optimizer=config.optimizer, tile=tile,
    )  # fmt: skip
    if channels == 1:
        # The optimiser's vectors hold one channel instead of three.
        estimate = dataclasses.replace(
            estimate, lbfgs=estimate.lbfgs // 3, bounds=estimate.bounds // 3, images=estimate.images // 3
        )
    return estimate


# --------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------


#: A :class:`StyleConfig` from keyword options (:meth:`~multiscale.config.RunConfig.with_options`).
make_config = StyleConfig.with_options


# --------------------------------------------------------------------------
# Loading and checking
# --------------------------------------------------------------------------


def _load(src: ImageSource, *, label: str, max_pixels: int) -> tuple[np.ndarray, SourceInfo]:
    if isinstance(src, np.ndarray):
        image, name, digest = check_array(src, name=label), f"<array: {label}>", None
    else:
        image = load_image(src, max_pixels=max_pixels)
        name, digest = os.fspath(src), file_sha256(src)
    return image, SourceInfo(name=name, sha256=digest, height=image.shape[0], width=image.shape[1])


def _check_stage_sizes(plan_sizes: list[tuple[int, int]], config: StyleConfig) -> None:
    from ..measure.gram import min_image_side

    need = min_image_side(config.descriptor)
    h, w = plan_sizes[0]
    if min(h, w) >= need:
        return
    n = len(plan_sizes)
    fits = [s for s in range(n - 1, 0, -1) if min(plan_sizes[n - s]) >= need]
    hint = f"use --stages {fits[0]}" if fits else "use a larger --width or fewer --octaves"
    raise ImageTooSmallError(
        f"output: stage 1 of {n} would be {w}×{h} px, and {config.descriptor.octaves} octave(s) need at "
        f"least {need} px on the short side — {hint}"
    )


def _check_style_sizes(
    styles: list[np.ndarray], infos: list[SourceInfo], sizes: list[tuple[int, int]], config: StyleConfig
) -> None:
    from ..measure.gram import min_image_side

    need = min_image_side(config.descriptor)
    stage_w = sizes[0][1]
    for image, info in zip(styles, infos, strict=True):
        h, w = style_size(*image.shape[:2], stage_width=stage_w, style_scale=config.style_scale)
        if min(h, w) < need:
            raise ImageTooSmallError(
                f"{info.name}: resized to {w}×{h} px for the first stage ({stage_w} px wide, "
                f"--style-scale {config.style_scale:g}), but {config.descriptor.octaves} octave(s) need at "
                f"least {need} px on the short side — raise --style-scale, use fewer --stages or --octaves"
            )


def prepare_stylize(
    content: ImageSource, styles: ImageSource | Sequence[ImageSource], *, config: StyleConfig
) -> StylizePlan:
    """Load and check every input, decide the sizes, refuse runs that cannot fit in memory.

    Raises
    ------
    ConfigError, ImageError, ImageTooSmallError, ResourceError
        With a message naming the option or file to change.
    """
    if isinstance(styles, (str, os.PathLike, np.ndarray)):
        styles = [styles]
    styles = list(styles)
    if not styles:
        raise ConfigError("styles", "give at least one style image")
    if config.style_weights is not None and len(config.style_weights) != len(styles):
        raise ConfigError(
            "style_weights",
            f"needs one weight per style image ({len(styles)}), got {len(config.style_weights)}",
        )
    content_image, content_info = _load(content, label="content", max_pixels=config.max_input_pixels)
    loaded = [
        _load(s, label=f"style #{i + 1}", max_pixels=config.max_input_pixels) for i, s in enumerate(styles)
    ]
    style_images = [im for im, _ in loaded]
    style_infos = [info for _, info in loaded]
    init_image = None
    if config.init not in STYLE_INITS:
        init_image = load_image(config.init, max_pixels=config.max_input_pixels)

    from ..measure.gram import check_image_size

    height, width = output_size(*content_image.shape[:2], width=config.width)
    check_image_size(height, width, config=config.descriptor, name="output", is_output=True)
    stages = config.stages or auto_stages(height, width, config=config.descriptor)
    sizes = stage_sizes(height, width, stages)
    _check_stage_sizes(sizes, config)
    _check_style_sizes(style_images, style_infos, sizes, config)

    final_style_sizes = [
        style_size(*im.shape[:2], stage_width=width, style_scale=config.style_scale) for im in style_images
    ]
    _, estimate, limit = stage_tiling(height, width, config=config, style_sizes=final_style_sizes)
    check_memory(estimate, max_memory=limit, what=f"a {width}×{height} stylize run")

    raw = config.style_weights or tuple(1.0 for _ in styles)
    blend = tuple(w / sum(raw) for w in raw)
    if config.preserve_color == "luminance":
        content_y = luminance(content_image)
        style_images = [grey_rgb(match_luminance(luminance(s), content_y)) for s in style_images]
    elif config.preserve_color == "histogram":
        style_images = [match_color(s, content_image) for s in style_images]
    return StylizePlan(
        config=config,
        content=content_image,
        styles=style_images,
        blend=blend,
        height=height,
        width=width,
        stage_sizes=sizes,
        init_image=init_image,
        content_info=content_info,
        style_infos=style_infos,
    )


# --------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------


def _resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize an (H, W, 3) or (H, W, 1) image in [0, 1]."""
    if image.shape[-1] == 1:
        return resize_image(grey_rgb(image[..., 0]), width=width, height=height)[..., :1].copy()
    return resize_image(image, width=width, height=height)


def _start_image(plan: StylizePlan, height: int, width: int) -> np.ndarray:
    config = plan.config
    if config.init == "palette":
        return _resize(plan.recoloured, height, width)
    if config.init == "content":
        return _resize(plan.content, height, width)
    if plan.init_image is not None:
        return _resize(plan.init_image, height, width)
    mean_color = plan.content.reshape(-1, 3).mean(axis=0)
    return initial_image(
        config.init, height=height, width=width, mean_color=mean_color, seed=config.seed,
        max_input_pixels=config.max_input_pixels,
    )  # fmt: skip


def _stage_styles(plan: StylizePlan, stage_width: int) -> tuple[list[np.ndarray], list[float]]:
    """The styles with a weight, resized for a stage ``stage_width`` wide, and their weights."""
    config = plan.config
    images, weights = [], []
    for image, weight in zip(plan.styles, plan.blend, strict=True):
        if weight == 0:
            continue
        h, w = style_size(*image.shape[:2], stage_width=stage_width, style_scale=config.style_scale)
        images.append(_resize(image, h, w))
        weights.append(weight)
    return images, weights


def _blended_sliced(plan: StylizePlan, network: Any, stage_width: int) -> Any:
    """The styles' features for the sliced statistic (quantile barycentre with the blend), or ``None``."""
    if plan.config.style_weight <= 0:
        return None
    images, weights = _stage_styles(plan, stage_width)
    return measure_sliced(images, network=network, config=plan.config.descriptor, weights=weights)


def _blended_moments(
    plan: StylizePlan, network: Any, stage_width: int
) -> tuple[dict[Any, np.ndarray], dict[Any, np.ndarray]]:
    """The styles' Grams and mean feature vectors, each blended with the style weights (one pass a style)."""
    from ..measure.gram import image_moments

    grams: dict[Any, np.ndarray] = {}
    means: dict[Any, np.ndarray] = {}
    for image, weight in zip(*_stage_styles(plan, stage_width), strict=True):
        for total, measured in zip(
            (grams, means), image_moments(image, network=network, config=plan.config.descriptor), strict=True
        ):
            for key, value in measured.items():
                total[key] = total[key] + weight * value if key in total else weight * value
    return grams, means


def _content_target(plan: StylizePlan) -> np.ndarray:
    """The full-size image whose features the content term matches (``config.content_target``)."""
    return plan.recoloured if plan.config.content_target == "palette" else plan.content


def _stage_targets(plan: StylizePlan, network: Any, height: int, width: int) -> StageTargets:
    """One stage's :class:`StageTargets` at ``height`` × ``width``."""
    grams = means = None
    if plan.config.style_weight > 0:
        grams, means = _blended_moments(plan, network, width)
        if "mean" not in plan.config.descriptor.statistics:
            means = None
    return StageTargets(
        content=_resize(_content_target(plan), height, width), grams=grams,
        sliced=_blended_sliced(plan, network, width), means=means, palette=plan.palette,
    )  # fmt: skip


@dataclass(frozen=True)
class StageTargets:
    """What one stage is matched against.

    Attributes
    ----------
    content : np.ndarray
        float32 (h, w, 3) RGB in [0, 1]: the content resized to the stage.
    grams : dict of (octave, layer) → np.ndarray float64 (C, C), or None
        The styles' blended Gram matrices, the styles resized to
        ``style_scale`` × the stage's width; ``None`` when ``style_weight``
        is 0 (not computed).
    sliced : SlicedTargets or None
        The styles' features for the sliced statistic, when the descriptor
        config asks for it (and ``style_weight`` > 0).
    means : dict of (octave, layer) → np.ndarray float64 (C,), or None
        The styles' blended mean feature vectors (weighted like ``grams``),
        when the descriptor config asks for the mean statistic (and
        ``style_weight`` > 0).
    palette : PaletteTarget or None
        The styles' blended colours, for the palette term
        (:attr:`~multiscale.config.StyleConfig.uses_palette_term`); the
        same at every stage.
    """

    content: np.ndarray
    grams: dict[tuple[int, str], np.ndarray] | None
    sliced: Any = None
    means: dict[tuple[int, str], np.ndarray] | None = None
    palette: PaletteTarget | None = None


def stage_targets(plan: StylizePlan, network: Any) -> list[StageTargets]:
    """Every stage's :class:`StageTargets`, smallest stage first, computed with ``network``.

    :func:`run_plan` computes them all before the first stage, so that a
    checkpoint can hold them and a resume needs neither the source files nor
    their network passes (one forward pass per style and stage).
    """
    return [_stage_targets(plan, network, h, w) for h, w in plan.stage_sizes]


def build_objective(plan: StylizePlan, network: Any, height: int, width: int) -> Any:
    """The :class:`~multiscale.objectives.style.StylizeObjective` of ``plan`` at one size.

    The content is resized to ``height`` × ``width`` and the styles to
    ``style_scale`` × ``width``; their targets are computed with ``network``.
    With ``preserve_color="luminance"`` the objective's variables are one
    luminance channel and the content's targets are those of its grey version.
    """
    return _objective(plan.config, network, _stage_targets(plan, network, height, width))


def _objective(config: StyleConfig, network: Any, targets: StageTargets, *, choice: Any = None) -> Any:
    """The stage's objective: untiled, or tiled when the stage would not fit otherwise.

    ``network`` is the float32 network; the convolutions run in ``choice``'s
    precision (a :class:`~multiscale.jobs.precision.PrecisionChoice`; ``None``:
    resolve ``config.precision`` at the stage's size). The content targets
    are float32 measurements whatever the precision, as the style targets are.
    """
    from ..measure.gram import content_features
    from ..objectives.style import StylizeObjective

    lum = config.preserve_color == "luminance"
    content_s = grey_rgb(luminance(targets.content)) if lum else targets.content
    height, width = content_s.shape[:2]
    tile = stage_tiling(height, width, config=config)[0]
    content_targets = (
        content_features(content_s, network=network, layers=config.content_layers)
        if config.content_weight > 0
        else None
    )
    if config.precision != "float32":
        if choice is None:
            choice = resolve_precision(config, height=height, width=width, weights=network.weights)
        if choice.compute_dtype is not None:
            network = precision_network(network, choice)
    cls: Any = StylizeObjective
    extra: dict[str, Any] = {}
    if tile is not None:
        from ..objectives.style import TiledStylizeObjective

        log.info("stage %d×%d: evaluating the loss in tiles of %d px (plus halo)", width, height, tile)
        cls, extra = TiledStylizeObjective, {"tile": tile}
    objective = cls(
        **extra,
        style_targets=targets.grams,
        content_targets=content_targets,
        network=network,
        config=config.descriptor,
        content_weight=config.content_weight,
        style_weight=config.style_weight,
        tv_weight=config.tv_weight,
        height=height,
        width=width,
        channels=1 if lum else 3,
        sliced=targets.sliced,
        seed=config.seed,
        means=targets.means,
    )
    objective.precision = None if choice is None else choice.to_dict()  # for the stage's record
    from ..objectives.base import WithImageTerms
    from ..objectives.image_terms import style_image_terms

    extra = style_image_terms(config, palette=targets.palette)
    return WithImageTerms(objective, extra) if extra else objective


def _finite_or_none(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _to_variable(rgb: np.ndarray, config: StyleConfig) -> np.ndarray:
    """RGB (h, w, 3) → the optimiser's variables: (h, w, 1) luminance or (h, w, 3), float32."""
    if config.preserve_color == "luminance":
        return luminance(rgb)[..., None]
    return np.asarray(rgb, dtype=np.float32)


def _to_rgb(var: np.ndarray, content: np.ndarray, config: StyleConfig) -> np.ndarray:
    """The optimiser's variables → RGB in [0, 1] (luminance recombined with ``content``'s chroma)."""
    if config.preserve_color == "luminance":
        return recombine(var[..., 0], content)
    return np.clip(var, 0.0, 1.0)


@dataclass
class _Job:
    """What the stages of a run need, from a plan or from a checkpoint."""

    config: StyleConfig
    targets: list[StageTargets]
    content_info: SourceInfo
    style_infos: list[SourceInfo]
    blend: tuple[float, ...]
    #: ``precision="auto"`` resolved once for the run (at the last stage's size), so
    #: that every stage, and a resume, runs in one precision; ``None``: not ``auto``.
    precision: Any = None

    @property
    def stage_sizes(self) -> list[tuple[int, int]]:
        return [(t.content.shape[0], t.content.shape[1]) for t in self.targets]


class _StyleCheckpointer:
    """Writes a run's checkpoints into one folder; the targets only the first time."""

    def __init__(
        self, folder: str | os.PathLike[str], *, job: _Job, output: Any, targets_written: bool
    ) -> None:
        self.folder, self.job, self.output = folder, job, output
        self.write_targets = not targets_written
        self.written = False

    def __call__(self, position: StylePosition, *, current: np.ndarray) -> None:
        """Write ``position``; ``current`` is the stage's current iterate (optimiser variables)."""
        job, config = self.job, self.job.config
        content = job.targets[position.stage].content
        # the resolved precision: a resume must not measure again and choose otherwise
        saved = (
            config
            if job.precision is None
            else dataclasses.replace(config, precision=job.precision.precision)
        )
        write_style_checkpoint(
            self.folder, config=saved, output=self.output, content=dataclasses.asdict(job.content_info),
            styles=[dataclasses.asdict(s) for s in job.style_infos], style_blend=job.blend,
            contents=[t.content for t in job.targets],
            grams=None if config.style_weight == 0 else [t.grams or {} for t in job.targets],
            position=position, current=_to_rgb(current, content, config),
            best=_to_rgb(position.image, content, config), write_targets=self.write_targets,
            sliced=[t.sliced for t in job.targets if t.sliced is not None],
            means=[t.means for t in job.targets if t.means is not None], palette=job.targets[0].palette,
        )  # fmt: skip
        self.write_targets, self.written = False, True
        log.info(
            "checkpoint written to %s (stage %d, %d iterations in all)",
            self.folder, position.stage + 1, position.iterations,
        )  # fmt: skip


@dataclass
class _StageRun:
    """One stage's optimisation: the progress its callback reports and the checkpoints it writes.

    ``done``: iterations, evaluations and seconds of the stage before this
    driver run (a resume that restarted the driver); ``past``: the run's
    losses before them; ``offset`` and ``before``: iterations before this
    driver run, over the plan's budget (for progress) and as done (for the
    checkpoint cadence, counted over all stages).
    """

    index: int
    stages: int
    config: StyleConfig
    content: np.ndarray
    shape: tuple[int, int, int]
    offset: int
    before: int
    done: tuple[int, int, float]
    past: list[float]
    records: list[StageInfo]
    total_iterations: int
    shares: list[float]
    run_started: float
    callback: Callable[[Any], bool | None] | None
    checkpointer: _StyleCheckpointer | None
    started: float = field(default_factory=time.perf_counter)
    losses: list[float] = field(default_factory=list)
    latest_x: np.ndarray | None = None

    def position(
        self, iterations: int, evaluations: int, best: float, image: np.ndarray, losses: Sequence[float],
        driver: Any = None,
    ) -> StylePosition:  # fmt: skip
        """Where the stage stands after ``iterations`` of this driver run."""
        return StylePosition(
            stage=self.index, stage_iterations=self.done[0] + iterations,
            stage_evaluations=self.done[1] + evaluations,
            stage_elapsed_s=self.done[2] + time.perf_counter() - self.started, best_loss=_finite_or_none(best),
            stages=[dataclasses.asdict(r) for r in self.records], image=np.array(image, dtype=np.float32),
            history=np.array(self.past + list(losses)), state=driver,
        )  # fmt: skip

    def on_iteration(self, p: Progress) -> bool | None:
        """The driver's callback: the user's progress, and ``lbfgsb``'s checkpoints."""
        stop = None
        config = self.config
        if self.callback is not None:
            image = None if p.image is None else _to_rgb(p.image, self.content, config)
            stop = self.callback(
                StageProgress(
                    iteration=self.offset + p.iteration, max_iter=self.total_iterations,
                    evaluations=p.evaluations, loss=p.loss, best_loss=p.best_loss,
                    elapsed_s=time.perf_counter() - self.run_started, octave_losses=p.octave_losses, image=image,
                    stage=self.index + 1, stages=self.stages, stage_iteration=self.done[0] + p.iteration,
                    height=self.shape[0], width=self.shape[1],
                    work=work_done(self.shares, self.index, (self.done[0] + p.iteration) / max(config.max_iter, 1)),
                )
            )  # fmt: skip
        if self.checkpointer is None or config.optimizer != "lbfgsb":
            return stop
        # scipy's driver hands out no state: its checkpoints hold the best image, and a resume
        # restarts L-BFGS from it (the projected driver's come from optimize(), exactly resumable)
        self.losses.append(p.loss)
        self.latest_x = np.array(p.image, dtype=np.float32)
        if config.checkpoint_every and (self.before + p.iteration) % config.checkpoint_every == 0:
            self.checkpointer(
                self.position(p.iteration, p.evaluations, p.best_loss, p.best_image, self.losses),
                current=self.latest_x,
            )
        return stop

    def on_checkpoint(self, state: Any) -> None:
        """A checkpoint with the projected driver's state, at the end of a segment that reached a
        multiple of ``checkpoint_every`` over all stages (a stage's own end is not one: the run's
        end writes its checkpoint after the image)."""
        every = self.config.checkpoint_every
        if self.checkpointer is None or not every or (self.before + state.iteration) % every:
            return
        self.checkpointer(
            self.position(state.iteration, state.evaluations, state.best_loss,
                          state.best_x.reshape(self.shape), state.history, state),
            current=state.x.reshape(self.shape),
        )  # fmt: skip


def _octave_losses(objective: Any) -> np.ndarray | None:
    """The style term's share per octave at the objective's latest evaluation (``None``: none yet)."""
    return None if objective.last is None else objective.last.octave_losses


def _stage_start(
    stage: int, image: np.ndarray, records: list[StageInfo], history: list[float]
) -> tuple[StylePosition, np.ndarray]:
    """A checkpoint's (position, current image) at the start of ``stage``, from ``image`` at its size."""
    position = StylePosition(
        stage=stage, stage_iterations=0, stage_evaluations=0, stage_elapsed_s=0.0, best_loss=None,
        stages=[dataclasses.asdict(r) for r in records], image=image, history=np.array(history),
    )  # fmt: skip
    return position, image


def _worth_a_checkpoint(reason: str, *, last: bool, periodic: bool) -> bool:
    """Whether a stage that ended for ``reason`` leaves a checkpoint behind.

    A run stopped early (Ctrl-C, the callback, the time limit of the last
    stage) can be continued; so can, with periodic checkpoints, a finished
    one (with more iterations). A time limit in an earlier stage hands over
    to the next; a non-finite loss is not worth continuing.
    """
    if reason in ("interrupted", "callback"):
        return True
    return last and reason != "non_finite" and (periodic or reason == "time_limit")


def run_plan(
    plan: StylizePlan,
    *,
    callback: Callable[[Any], bool | None] | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    output: str | os.PathLike[str] | None = None,
    on_result: Callable[[StylizeResult], Any] | None = None,
) -> StylizeResult:
    """Carry out a :class:`StylizePlan`: optimise every stage, return the final image.

    A stage stopped by Ctrl-C, a non-finite loss or the callback ends the
    run; its best image, upsampled to the output size, is the result. A
    stage that reaches its share of the time limit hands over to the next.

    With ``checkpoint`` (a folder), a resumable checkpoint
    (:mod:`multiscale.jobs.checkpoint`) is written every ``config.checkpoint_every``
    iterations (counted over all stages) and whenever the run stops early
    (Ctrl-C, the callback, the time limit at the last stage); ``output`` is
    recorded in it as where the final image goes. :func:`resume_stylize`
    continues it. ``on_result`` is called with the result before the
    checkpoint of the run's end is written (the image first), as in
    :func:`multiscale.jobs.synthesize.run_synthesis`.

    Raises
    ------
    ConfigError
        If ``checkpoint`` is given without ``output``.
    """
    if checkpoint is not None and output is None:
        raise ConfigError("output", "a checkpoint must record the output it is for; give output=")
    started = time.perf_counter()
    config = plan.config
    weights, network = load_network(config.descriptor)
    job = _Job(
        config=config, targets=stage_targets(plan, network), content_info=plan.content_info,
        style_infos=plan.style_infos, blend=plan.blend,
    )  # fmt: skip
    if config.precision == "auto":
        height, width = plan.stage_sizes[-1]
        job.precision = resolve_precision(config, height=height, width=width, weights=weights)
    h, w = plan.stage_sizes[0]
    start = StylePosition(
        stage=0, stage_iterations=0, stage_evaluations=0, stage_elapsed_s=0.0, best_loss=None, stages=[],
        image=_to_variable(_start_image(plan, h, w), config), history=np.zeros(0),
    )  # fmt: skip
    checkpointer = (
        None
        if checkpoint is None
        else _StyleCheckpointer(checkpoint, job=job, output=output, targets_written=False)
    )
    return _run_stages(
        job, start=start, finished=[], weights=weights, network=network, started=started, callback=callback,
        checkpointer=checkpointer, on_result=on_result,
    )  # fmt: skip


def _run_stages(
    job: _Job,
    *,
    start: StylePosition,
    finished: list[StageInfo],
    weights: Any,
    network: Any,
    started: float,
    callback: Callable[[Any], bool | None] | None,
    checkpointer: _StyleCheckpointer | None,
    resumed_from: str | None = None,
    on_result: Callable[[StylizeResult], Any] | None = None,
) -> StylizeResult:
    """Optimise the stages from ``start`` (a :class:`~multiscale.jobs.checkpoint.StylePosition`) to the last.

    ``finished`` are the records of the stages before ``start.stage``. A
    stage with iterations already done goes on for the rest of its
    ``max_iter``: exactly from ``start.state``, the projected driver's state,
    when the checkpoint kept one; otherwise from ``start.image`` with fresh
    L-BFGS memory. Each stage runs through :func:`multiscale.jobs.runner.optimize`,
    in checkpointed segments. The checkpoint of the run's end is written
    after ``on_result`` has the image.
    """
    config = job.config
    channels = 1 if config.preserve_color == "luminance" else 3
    sizes = job.stage_sizes
    n = len(sizes)
    height, width = sizes[-1]
    shares = work_shares([(config.max_iter, h, w) for h, w in sizes])
    total_iterations = n * config.max_iter
    records = list(finished)
    history = [float(v) for v in start.history]
    current: np.ndarray | None = None
    objective: Any = None
    reason, message, best_loss = "max_iter", "", None
    optimise_start: float | None = None
    note = ""
    final_checkpoint: tuple[StylePosition, np.ndarray] | None = None  # written after the image
    if resumed_from is not None:
        s, k = start.stage + 1, start.stage_iterations
        if k == 0:
            note = f"resumed at the start of stage {s} of {n}"
        elif k >= config.max_iter:
            note = f"resumed after stage {s} of {n}, which had done its {k} iterations"
        elif start.state is not None:
            note = f"resumed stage {s} of {n} after {k} iteration(s), exactly where it stopped"
        else:
            note = (
                f"resumed stage {s} of {n} from its best image after {k} iteration(s); "
                "L-BFGS restarted from it (the checkpoint kept no driver state: lbfgsb)"
            )
        log.info("%s: %s", resumed_from, note)

    for i in range(start.stage, n):
        h, w = sizes[i]
        content_s = job.targets[i].content
        first = i == start.stage
        done_iters, done_evals, done_s = (
            (start.stage_iterations, start.stage_evaluations, start.stage_elapsed_s) if first else (0, 0, 0.0)
        )
        try:
            objective = _objective(config, network, job.targets[i], choice=job.precision)
            objective.redraw(i)  # sliced directions: one draw per stage (no-op without the sliced term)
            x0 = start.image if first else _resize(current, h, w)
        except KeyboardInterrupt:
            if current is None:
                raise
            objective = None
            reason, message = "interrupted", f"interrupted (Ctrl-C) while preparing stage {i + 1} of {n}"
            if checkpointer is not None:
                final_checkpoint = _stage_start(i, _resize(current, h, w), records, history)
            break

        if done_iters >= config.max_iter:
            # A checkpoint written at the stage's last iteration: the stage is done.
            current = x0
            records.append(
                StageInfo(
                    stage=i + 1, height=h, width=w, iterations=done_iters, evaluations=done_evals,
                    loss=start.best_loss, stop_reason="max_iter", message=f"reached {done_iters} iterations",
                    elapsed_s=done_s, time_limit_s=None,
                )
            )  # fmt: skip
            continue

        budget = None
        if config.time_limit is not None:
            optimise_start = optimise_start or time.perf_counter()
            remaining = config.time_limit - (time.perf_counter() - optimise_start)
            budget = max(remaining, 0.0) * share_of_rest(shares, i)
        # A resumed driver state holds the stage's iterations, evaluations and losses since the
        # driver started; done_* count only those before (an older resume that restarted it).
        state = start.state if first else None
        if state is not None:
            done_iters -= state.iteration
            done_evals -= state.evaluations
            del history[len(history) - state.iteration :]
        stage = _StageRun(
            index=i, stages=n, config=config, content=content_s, shape=(h, w, channels),
            offset=i * config.max_iter + done_iters, before=sum(r.iterations for r in records) + done_iters,
            done=(done_iters, done_evals, done_s), past=list(history), records=list(records),
            total_iterations=total_iterations, shares=shares, run_started=started, callback=callback,
            checkpointer=checkpointer,
        )  # fmt: skip
        stage_obj = objective
        try:
            result, _ = optimize(
                stage_obj, x0.reshape(-1),
                limits=Limits.of(
                    config, max_iter=config.max_iter - done_iters, time_limit=budget,
                    checkpoint_offset=stage.before,
                    checkpoint_every=config.checkpoint_every if checkpointer is not None else None,
                ),
                callback=stage.on_iteration, shape=stage.shape, resume_state=state,
                octave_losses=functools.partial(_octave_losses, stage_obj),
                on_checkpoint=stage.on_checkpoint if checkpointer is not None else None,
            )  # fmt: skip
        except KeyboardInterrupt:
            # Before the driver's first segment took over (its set-up): the stage's progress in
            # memory is lost. The run ends with the previous stage's image, as if interrupted while
            # preparing this stage; a checkpoint written during the stage stays.
            if current is None:
                raise
            objective = None
            reason, message = "interrupted", f"interrupted at the start or end of stage {i + 1} of {n}"
            if checkpointer is not None and not checkpointer.written:
                final_checkpoint = _stage_start(i, _resize(current, h, w), records, history)
            break
        stage_state = getattr(result, "state", None)  # the projected driver's; lbfgsb has none
        if stage_state is not None:
            result.state = None  # frees the driver's pairs unless a checkpoint needs them
        stage_s = time.perf_counter() - stage.started
        current = result.x.reshape(h, w, channels).astype(np.float32)
        history += result.history
        best_loss = _finite_or_none(result.loss)
        reason = result.stop_reason
        message = f"stage {i + 1} of {n}: {result.message}"
        record = StageInfo(
            stage=i + 1, height=h, width=w, iterations=done_iters + result.iterations,
            evaluations=done_evals + result.evaluations, loss=best_loss, stop_reason=result.stop_reason,
            message=result.message, elapsed_s=done_s + stage_s, time_limit_s=budget,
            tile_size=stage_obj.tile, precision=stage_obj.precision,
        )  # fmt: skip
        log.info("stage %d of %d (%d×%d): %s", i + 1, n, w, h, result.message)
        if checkpointer is not None and _worth_a_checkpoint(
            reason, last=i == n - 1, periodic=config.checkpoint_every is not None
        ):
            # only ever at the run's last stage (see _worth_a_checkpoint): written after the image;
            # with the driver's state when it handed one out, so a resume goes on exactly
            final_checkpoint = (
                StylePosition(
                    stage=i, stage_iterations=record.iterations, stage_evaluations=record.evaluations,
                    stage_elapsed_s=record.elapsed_s, best_loss=best_loss,
                    stages=[dataclasses.asdict(r) for r in records], image=current, history=np.array(history),
                    state=stage_state,
                ),
                (stage.latest_x if stage.latest_x is not None else current)
                if stage_state is None
                else stage_state.x.reshape(stage.shape),
            )  # fmt: skip
        del stage_state
        records.append(record)
        if reason in ("interrupted", "non_finite", "callback"):
            break

    if current is None:  # a bug: the checkpoint reader refuses a start past the last stage
        raise RuntimeError(f"no stage was run: the start, stage {start.stage + 1}, is past the last ({n})")
    finished_all = len(records) == n and reason not in ("interrupted", "non_finite", "callback")
    if current.shape[:2] != (height, width):
        current = _resize(current, height, width)
        message += f"; the image is stage {len(records)}'s result upsampled to the output size"
    if note:
        message += f" ({note})"
    image = quantize(_to_rgb(current, job.targets[-1].content, config), bit_depth=config.bit_depth)
    loss = content_loss = style_loss = tv_loss = palette_term = None
    octave_losses: list[float] = []
    if finished_all and objective is not None:
        try:
            if objective.precision is not None and objective.precision["precision"] != "float32":
                # the saved image is scored in float32, as a synthesis scores it
                objective = None  # frees the bfloat16 one first
                float32 = dataclasses.replace(config, precision="float32")
                objective = _objective(float32, network, job.targets[-1])
            scored = objective.evaluate(_to_variable(image, config))
            loss, tv_loss = scored.total, scored.terms["tv"]
            content_loss = scored.terms["content"] if config.content_weight > 0 else None
            style_loss = scored.terms["style"] if config.style_weight > 0 else None
            palette_term = scored.terms.get("palette")
            octave_losses = [float(v) for v in scored.octave_losses]
        except KeyboardInterrupt:
            reason, message = "interrupted", f"{message}; interrupted while scoring the result"

    report = StylizeReport(
        loss=loss,
        content_loss=content_loss,
        style_loss=style_loss,
        tv_loss=tv_loss,
        palette_loss=palette_term,
        octave_losses=octave_losses,
        best_loss=best_loss,
        iterations=sum(s.iterations for s in records),
        evaluations=sum(s.evaluations for s in records),
        stop_reason=reason,
        message=message,
        elapsed_s=time.perf_counter() - started,
        history=history,
        stages=records,
        config=config,
        height=height,
        width=width,
        content=job.content_info,
        styles=job.style_infos,
        style_blend=list(job.blend),
        backbone=weights.backbone_id,
        weights_path=os.fspath(weights.path),
        weights_sha256=weights.sha256,
        versions=versions(),
        checkpoint=os.fspath(checkpointer.folder)
        if checkpointer is not None and (checkpointer.written or final_checkpoint is not None)
        else None,
        resumed_from=resumed_from,
    )
    result = StylizeResult(image=image, report=report)
    pending = final_checkpoint
    save_then_checkpoint(
        result, on_result,
        None if checkpointer is None or pending is None else lambda: checkpointer(pending[0], current=pending[1]),
    )  # fmt: skip
    return result


def check_resume_memory(folder: str | os.PathLike[str]) -> None:
    """Refuse a resume whose last stage will not fit in memory, before its checkpoint is loaded.

    The estimate and the limit are a fresh run's (:func:`stage_tiling`): the
    resumed driver takes over the loaded state, so a resume holds what the
    original run held.

    Raises
    ------
    MemoryLimitError
        As a fresh run would be refused.
    CheckpointError
        For a folder whose ``checkpoint.json`` is not a stylize checkpoint's.
    """
    from .checkpoint import checkpoint_config, style_checkpoint_sizes

    config = checkpoint_config(folder)
    sizes, styles = style_checkpoint_sizes(folder)
    height, width = sizes[-1]
    final_style_sizes = [
        style_size(h, w, stage_width=width, style_scale=config.style_scale) for h, w in styles
    ]
    _, estimate, limit = stage_tiling(height, width, config=config, style_sizes=final_style_sizes)
    check_memory(estimate, max_memory=limit, what=f"resuming a {width}×{height} stylize run")


def resume_stylize(
    checkpoint: str | os.PathLike[str] | StyleCheckpoint,
    *,
    max_iter: int | None = None,
    time_limit: float | None = None,
    callback: Callable[[Any], bool | None] | None = None,
    on_result: Callable[[StylizeResult], Any] | None = None,
) -> tuple[StylizeResult, str]:
    """Continue a checkpointed stylize run to the end of its plan; return the result and its output path.

    The run goes on from the stage it reached with its own settings and
    targets (the checkpoint holds the content at every stage's size and the
    styles' Grams, so no source file is read). With the projected driver
    (the default) the checkpoint holds its state, and a stage stopped
    part-way goes on exactly: the result is the uninterrupted run's, bit
    for bit. scipy's L-BFGS-B (``optimizer="lbfgsb"``) cannot hand out its
    state, so such a stage restarts the optimiser from its best image, for
    the rest of its ``max_iter``: close to, not the same as, an
    uninterrupted run. The log, the report's ``message`` and
    ``resumed_from`` say which. ``max_iter`` (per stage) and
    ``time_limit`` (for this session, shared among the remaining stages) may
    be changed. The continued run checkpoints into the same folder;
    ``on_result`` as in :func:`run_plan`. ``checkpoint`` is the folder or
    the :class:`~multiscale.jobs.checkpoint.StyleCheckpoint` read from it (not
    read twice).

    Raises
    ------
    CheckpointError
        For a missing, incomplete, altered or foreign checkpoint (names the
        folder or the file).
    """
    started = time.perf_counter()
    ck = checkpoint if isinstance(checkpoint, StyleCheckpoint) else read_style_checkpoint(checkpoint)
    changes: dict[str, Any] = {"time_limit": time_limit}
    if max_iter is not None:
        changes["max_iter"] = max_iter
    config = dataclasses.replace(ck.config, **changes)
    try:
        content_info = SourceInfo(**ck.content)
        style_infos = [SourceInfo(**s) for s in ck.styles]
        finished = [StageInfo(**s) for s in ck.position.stages]
    except TypeError as exc:
        raise CheckpointError(f"{ck.folder}: checkpoint.json has a malformed record: {exc}") from exc
    grams = ck.grams or [None] * len(ck.contents)
    sliced = ck.sliced or [None] * len(ck.contents)
    means = ck.means or [None] * len(ck.contents)
    job = _Job(
        config=config,
        targets=[
            StageTargets(content=c, grams=g, sliced=sl, means=m, palette=ck.palette)
            for c, g, sl, m in zip(ck.contents, grams, sliced, means, strict=True)
        ],
        content_info=content_info, style_infos=style_infos, blend=tuple(ck.style_blend),
    )  # fmt: skip
    weights, network = load_network(config.descriptor)
    result = _run_stages(
        job, start=ck.position, finished=finished, weights=weights, network=network, started=started,
        callback=callback, checkpointer=_StyleCheckpointer(ck.folder, job=job, output=ck.output, targets_written=True),
        resumed_from=os.fspath(ck.folder), on_result=on_result,
    )  # fmt: skip
    return result, ck.output


def run_stylize(
    content: ImageSource,
    styles: ImageSource | Sequence[ImageSource],
    *,
    config: StyleConfig,
    callback: Callable[[Any], bool | None] | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    output: str | os.PathLike[str] | None = None,
) -> StylizeResult:
    """:func:`stylize` for a ready :class:`StyleConfig`; ``checkpoint`` and ``output`` as in :func:`run_plan`."""
    plan = prepare_stylize(content, styles, config=config)
    return run_plan(plan, callback=callback, checkpoint=checkpoint, output=output)


def stylize(
    content: ImageSource,
    styles: ImageSource | Sequence[ImageSource],
    *,
    width: int | None = STYLE_DEFAULTS.width,
    content_layers: Sequence[str] = STYLE_DEFAULTS.content_layers,
    content_target: str = STYLE_DEFAULTS.content_target,
    content_weight: float = STYLE_DEFAULTS.content_weight,
    style_weight: float = STYLE_DEFAULTS.style_weight,
    tv_weight: float = STYLE_DEFAULTS.tv_weight,
    palette_weight: float = STYLE_DEFAULTS.palette_weight,
    style_weights: Sequence[float] | None = STYLE_DEFAULTS.style_weights,
    style_scale: float = STYLE_DEFAULTS.style_scale,
    preserve_color: str = STYLE_DEFAULTS.preserve_color,
    stages: int | None = STYLE_DEFAULTS.stages,
    octaves: int = STYLE_DEFAULTS.descriptor.octaves,
    layers: Sequence[str] = STYLE_DEFAULTS.descriptor.layers,
    coarse_layers: Sequence[str] = STYLE_DEFAULTS.descriptor.coarse_layers,
    coarse_from: int = STYLE_DEFAULTS.descriptor.coarse_from,
    layer_weights: Sequence[float] | None = STYLE_DEFAULTS.descriptor.layer_weights,
    octave_weights: Sequence[float] | None = STYLE_DEFAULTS.descriptor.octave_weights,
    pooling: str = STYLE_DEFAULTS.descriptor.pooling,
    padding: str = STYLE_DEFAULTS.descriptor.padding,
    weights: str | os.PathLike[str] | None = STYLE_DEFAULTS.descriptor.weights,
    statistics: Sequence[str] = STYLE_DEFAULTS.descriptor.statistics,
    init: str | os.PathLike[str] = STYLE_DEFAULTS.init,
    seed: int = STYLE_DEFAULTS.seed,
    max_iter: int = STYLE_DEFAULTS.max_iter,
    tol: float = STYLE_DEFAULTS.tol,
    time_limit: float | None = STYLE_DEFAULTS.time_limit,
    history: int = STYLE_DEFAULTS.history,
    bit_depth: int = STYLE_DEFAULTS.bit_depth,
    max_input_pixels: int = STYLE_DEFAULTS.max_input_pixels,
    max_memory: int | None = STYLE_DEFAULTS.max_memory,
    optimizer: str = STYLE_DEFAULTS.optimizer,
    tile_size: int | None = STYLE_DEFAULTS.tile_size,
    precision: str = STYLE_DEFAULTS.precision,
    callback: Callable[[Any], bool | None] | None = None,
) -> StylizeResult:
    """Repaint ``content`` with the multiscale texture statistics of ``styles``.

    Parameters
    ----------
    content : path or array
        The photo whose layout is kept: a file path or a float32 (H, W, 3)
        RGB array in [0, 1].
    styles : path, array, or a sequence of them
        Style images; their Gram matrices are blended by ``style_weights``.
    width : int or None
        Output width (≤ 4096); the height follows the content's aspect.
    content_layers, content_target, content_weight, style_weight, tv_weight, palette_weight, style_weights,
    style_scale, preserve_color, stages, init, seed, max_iter, tol,
    time_limit, history, bit_depth, max_input_pixels, max_memory, optimizer, tile_size,
    precision
        See :class:`multiscale.config.StyleConfig`.
    octaves, layers, coarse_layers, coarse_from, layer_weights, octave_weights, pooling, padding, weights, statistics
        How the style is measured: see :class:`multiscale.config.DescriptorConfig`.
    callback : callable or None
        Called with a :class:`StageProgress` after every iteration of every
        stage; returning ``True`` stops the run.

    Returns
    -------
    StylizeResult
        ``image`` float32 (H, W, 3) in [0, 1], quantised to ``bit_depth``;
        ``report`` with losses, stages, stop reason and provenance. A run
        stopped by Ctrl-C, a time limit or a non-finite loss still returns
        its best image.

    Raises
    ------
    ConfigError, ImageError, WeightsError, ResourceError
        For options or inputs that cannot work, with a message naming them.
    """
    config = make_config(
        width=width, content_layers=content_layers, content_target=content_target,
        content_weight=content_weight,
        style_weight=style_weight, tv_weight=tv_weight, palette_weight=palette_weight, style_weights=style_weights,
        style_scale=style_scale, preserve_color=preserve_color, stages=stages, octaves=octaves,
        layers=layers, coarse_layers=coarse_layers, coarse_from=coarse_from, layer_weights=layer_weights, octave_weights=octave_weights, pooling=pooling,
        padding=padding, weights=weights, statistics=statistics, init=init, seed=seed, max_iter=max_iter, tol=tol,
        time_limit=time_limit, history=history, bit_depth=bit_depth, max_input_pixels=max_input_pixels,
        max_memory=max_memory, optimizer=optimizer, tile_size=tile_size, precision=precision,
    )  # fmt: skip
    return run_stylize(content, styles, config=config, callback=callback)


__all__ = [
    "StageInfo",
    "StageProgress",
    "StageTargets",
    "StylizePlan",
    "StylizeReport",
    "StylizeResult",
    "auto_stages",
    "build_objective",
    "estimate_memory",
    "make_config",
    "stage_tiling",
    "prepare_stylize",
    "resume_stylize",
    "run_plan",
    "run_stylize",
    "stage_sizes",
    "stage_targets",
    "stylize",
]
