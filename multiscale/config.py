"""The single source of defaults and validation.

:class:`SynthesisConfig` holds every option of a synthesis run. The Python
API builds one from its keyword arguments and the CLI reads its option
defaults from :data:`SYNTHESIS_DEFAULTS`, so the two cannot drift apart.
Constructing a config validates it: an invalid value raises
:class:`~multiscale.errors.ConfigError` naming the field.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar

from .errors import ConfigError
from .layers import LAYER_NAMES

if TYPE_CHECKING:
    from typing_extensions import Self

PADDINGS = ("reflect", "symmetric", "wrap", "same", "valid")
#: Texture statistics a descriptor can match (:mod:`multiscale.objectives.texture`, :mod:`multiscale.measure.sliced`);
#: ``auto``, alone, lets a synthesis choose (:data:`DEFAULT_STATISTICS`).
STATISTICS = ("gram", "sliced", "mean", "auto")
POOLINGS = ("avg", "max")
#: Generated starts (:mod:`multiscale.jobs.starts`); an image path is accepted too.
INITS = ("spectrum", "smooth", "noise", "mean")
BIT_DEPTHS = (8, 16)
OPTIMIZERS = ("projected", "lbfgsb")
#: What the network's convolutions run in: ``auto`` measures (see :mod:`multiscale.jobs.precision`).
PRECISIONS = ("auto", "float32", "bfloat16")

#: Layers matched by default. pool1 + conv3_2 stops the network after 6 of its 13
#: convolutions (benchmarks/defaults_study.py); the four octaves already cover the
#: large scales that pool3/pool4 would add. conv1_1 adds the only full-resolution
#: layer (Heitz et al. 2021 match every convolution from conv1_1 on): without it
#: nothing in the objective sees the finest octave's pixel-scale detail, and on the
#: standard textures of benchmarks/quality.py it brought the output closer to the
#: examples by every measure at little cost (benchmarks/RESULTS.md).
DEFAULT_LAYERS = ("conv1_1", "pool1", "conv3_2")
#: A layer's weight where ``layer_weights`` is not given (every other layer's is 1),
#: whatever the other layers are. conv1_1 at 2 (half the loss with the default layers)
#: brought 11 of the 12 standard textures of benchmarks/quality.py closer to their
#: examples by colour and gradients and 8 of 12 by the wavelet measure
#: (benchmarks/RESULTS.md, "conv1_1 at weight 2").
DEFAULT_LAYER_WEIGHTS: Mapping[str, float] = MappingProxyType({"conv1_1": 2.0})
#: A synthesis matches the sliced statistic where it has its targets (source images,
#: or descriptor files with a quantile bank) and its memory fits the run's limit, Gram
#: matrices and first moments otherwise (Grams alone from descriptor files without
#: means; :func:`multiscale.jobs.synthesize.resolve_statistics`): with Grams, the means
#: brought 5 or 6 of 6 textures closer by wavelet, colour and gradient measures
#: (benchmarks/RESULTS.md, "First moments"). On the 12
#: standard textures of benchmarks/quality.py sliced came closer to the examples by every
#: measure (README "Defaults"), but it ranks the N × C projections of the whole output per
#: (octave, layer), outside the tiled evaluation's bounded memory: about 1.4 GiB at 1024²,
#: 5.3 GiB at 2048² with the default layers (:func:`multiscale.measure.memory.sliced_bytes`).
DEFAULT_STATISTICS = ("auto",)
#: ``auto`` takes the sliced statistic only while its share of the memory estimate stays
#: under this (outputs up to about 2150² with the default layers), so that the choice
#: follows from the settings and the size, not from how much memory is free at the time;
#: and only if the whole run fits the memory limit with it.
AUTO_SLICED_MAX_BYTES = 6 * 1024**3
#: What style transfer matches by default: the settings its palette and schedule were
#: measured with (benchmarks/stylize_quality.py, stylize_schedule.py). The texture
#: defaults (conv1_1 and the sliced statistic), measured for style transfer too, came a
#: little further from the style's palette and kept less of the content's layout
#: (benchmarks/RESULTS.md, "Style transfer's texture and layout").
STYLE_LAYERS = ("pool1", "conv3_2")
STYLE_STATISTICS = ("gram",)
#: Weight of the spectrum constraint when source images are given: on the 12
#: standard textures of benchmarks/quality.py, 1 came closer to the examples than
#: none on 10–12 of them by every measure that does not score the spectrum itself.
DEFAULT_SPECTRUM_WEIGHT = 1.0
#: How the spectrum constraint extends a source's spectrum to an output larger than the
#: source (:func:`multiscale.objectives.spectrum.gather_peaks`): ``"gather"`` each isolated
#: peak into one frequency, so that a regular pattern's lattice holds across the whole
#: output, or leave it ``"spread"`` by the zero-padding, which holds it over one source-size.
SPECTRUM_PEAKS = ("gather", "spread")
#: What the spectrum constraint and the ``spectrum`` start put at wavelengths longer than a
#: source, in an output larger than it (:func:`multiscale.objectives.spectrum.longer_than_example`):
#: ``"cut"`` nothing (the source shows nothing that wide), or ``"keep"`` what the zero-padded
#: source's spectrum spreads there from its shading, which lays pale veils and colour patches
#: larger than the source out over a large output (benchmarks/RESULTS.md, "Wavelengths longer
#: than the example").
SPECTRUM_LONG_WAVES = ("cut", "keep")
#: The spectrum constraint's weight in the last stage of a run in stages, as a share of
#: its weight in the others (a run of one stage keeps the whole weight). The earlier
#: stages lay out the lattice and hold the colour speckle down; in the last, one phase per
#: frequency for all three channels mixes the colours of things that lie independently
#: (dots of three colours grew cyan halos), and the VGG statistics keep what the earlier
#: stages laid out (benchmarks/RESULTS.md, "The spectrum constraint in the last stage").
SPECTRUM_LAST_STAGE = 0.25
#: ``spectrum_taper``: the share of a run's last stage (of several) whose first iterations see
#: the spectrum constraint through a border taper, so that the finest octave, which the
#: upsampled start lacks inside the image, is not grown along the outermost pixels as a
#: dotted line (:mod:`multiscale.objectives.spectrum`, "The border"; benchmarks/RESULTS.md,
#: "The outermost pixel's dotted line comes from the last stage's start").
SPECTRUM_TAPER = 0.0
#: ``stage_detail=None`` adds the finest octave at the start of each later stage in runs
#: of at least this many stages (with the defaults, outputs over 512² on the long side:
#: 1024² runs four), and not in shorter ones (256²: two). At 1024² the later stages' few
#: iterations (88 at 512², 44 at 1024²) leave the upsampled start's empty finest octave
#: weak; at 256² the last stage's 175 iterations regrow it along the edges already there,
#: and the added octave moved the saved PNG away from the examples (benchmarks/RESULTS.md,
#: "The finest octave at a stage's start"); at 512² (three stages) it came out even, by
#: the PNG's wavelet measure behind.
STAGE_DETAIL_MIN_STAGES = 4
#: A synthesis with ``stages=None`` runs the fewest stages (each twice the size of the
#: one before, the last the output) that put the first stage's long side at or below
#: this. On the 12 standard textures of benchmarks/quality.py at 256², two stages
#: (128², then 256²) came closer to the examples than one stage of as many iterations
#: by every measure on the saved PNG (wavelet KL 0.74×, 11 of 12; gradients 0.78×,
#: 12 of 12) in less time (106 s against 122 s on quiet cores), and their regular
#: patterns (honeycomb, braids, knit) held together better;
#: three (from 64²) lost colour and gradients again (benchmarks/RESULTS.md,
#: "Coarse to fine at 256²").
SYNTHESIS_FIRST_STAGE_MAX_SIDE = 128
#: Default ``max_iter`` of a synthesis: the first stage's iterations (each later
#: stage runs half as many). 350 rather than 200 came closer to the examples by
#: every measure, alone and in stages (benchmarks/RESULTS.md); with the first stage
#: at 128² the extra iterations cost a quarter of what they would at 256².
SYNTHESIS_MAX_ITER = 350
#: At most this many stages, for either job.
MAX_STAGES = 8
#: Default ``tol`` of a synthesis (see :class:`SynthesisConfig`).
DEFAULT_TOL = 1e-9
#: Average pooling. Max pooling looked crisper in the same study, but the
#: optimiser learns to rely on which pixel wins each max, so rounding the
#: result to 8 bits raises its loss several-fold, while with average pooling
#: the saved image scores about as the optimiser left it
#: (benchmarks/RESULTS.md, "Defaults").
DEFAULT_POOLING = "avg"

#: Images larger than this (in pixels) are refused before decoding, as a
#: guard against decompression bombs. 16384² fits.
DEFAULT_MAX_INPUT_PIXELS = 16384 * 16384


def _positive_int(name: str, value: Any, *, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(name, f"must be an integer ≥ {minimum}, got {value!r}")


def _one_of(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(name, f"must be one of {', '.join(choices)}, got {value!r}")


def _positive_float(name: str, value: Any, *, allow_zero: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (value == 0 and not allow_zero):
        bound = "≥ 0" if allow_zero else "> 0"
        raise ConfigError(name, f"must be a finite number {bound}, got {value!r}")


def _weights(name: str, values: tuple[float, ...] | None, count: int, what: str) -> None:
    if values is None:
        return
    if len(values) != count:
        raise ConfigError(name, f"needs one weight per {what} ({count}), got {len(values)}")
    for v in values:
        _positive_float(name, v, allow_zero=True)
    if sum(values) <= 0:
        raise ConfigError(name, "at least one weight must be > 0")


#: Smallest tile (pixels): below it the halo is most of the work.
MIN_TILE_SIZE = 32


def parse_float_list(text: str | None) -> tuple[float, ...] | None:
    """Parse ``"1,0.5,2"`` into ``(1.0, 0.5, 2.0)``; ``None`` or ``""`` gives ``None``."""
    if text is None or not str(text).strip():
        return None
    try:
        return tuple(float(p) for p in str(text).split(","))
    except ValueError:
        raise ValueError(f"expected comma-separated numbers, got {text!r}") from None


def parse_name_list(text: str | None) -> tuple[str, ...] | None:
    """Parse ``"conv1_1, pool1"`` into ``("conv1_1", "pool1")``."""
    if text is None or not str(text).strip():
        return None
    return tuple(p.strip() for p in str(text).split(",") if p.strip())


@dataclass(frozen=True)
class DescriptorConfig:
    """Options that decide what a Gram descriptor measures.

    Two descriptors can be compared or merged only when these agree (plus
    the backbone weights' hash, which is recorded separately).

    Attributes
    ----------
    octaves : int
        Number of Gaussian-pyramid octaves; octave k is the image blurred and
        downsampled by 2**k.
    layers : tuple of str
        VGG16 layers whose Gram matrices form the descriptor (``conv1_1`` …
        ``conv5_3``, ``pool1`` … ``pool5``).
    coarse_layers : tuple of str
        Layers matched at the coarse octaves only, those from ``coarse_from``
        on, besides ``layers``: deep layers are cheap where the octave is
        small (``conv4_1`` at octave 2 of a 256² output costs what it costs
        at octave 0 of a 64² one), and see structure as large as the
        octave's image. Empty (default): every octave matches ``layers``.
        Each weighs its :data:`DEFAULT_LAYER_WEIGHTS` entry, else 1.
    coarse_from : int
        The first octave (0 = full size) that matches ``coarse_layers``;
        below ``octaves``.
    layer_weights, octave_weights : tuple of float or None
        Relative weight of each of ``layers`` / each octave in the loss.
        ``None``: each layer's :data:`DEFAULT_LAYER_WEIGHTS` entry (``conv1_1``
        2), every other layer and every octave 1.
    pooling : {"avg", "max"}
        Pooling in the VGG stack. Average (default) keeps the saved,
        8-bit image's loss within 2 % of the optimiser's; max does not.
    padding : {"reflect", "symmetric", "wrap", "same", "valid"}
        Border handling in the pyramid's blur and in every convolution.
        ``reflect`` (default) leaves no frame; ``symmetric`` mirrors
        repeating the edge pixel; ``wrap`` makes tileable output; ``same``
        pads with the mean colour; ``valid`` pads nothing and is known to
        leave a dark frame.
    source_scale : float
        Factor applied to each source image before its features are taken
        (0.5: features twice as large relative to the output).
    source_width : int or None
        If set, each source is resized to this width first (overrides
        ``source_scale``).
    weights : str or None
        Path of a VGG16 h5 weights file; ``None`` uses the embedded default.
    statistics : tuple of str
        What is matched at every (octave, layer): ``gram`` (Gram matrices,
        second moments) and/or ``sliced`` (sliced-Wasserstein distance of
        the whole feature distribution, :mod:`multiscale.measure.sliced`; from
        descriptor files, only those built with it, which hold a quantile
        bank) and/or ``mean`` (first moments: each layer's mean feature
        vector; from descriptor files, only those built with it). Several
        add up. ``auto`` (alone) lets a synthesis choose sliced
        where it has its targets and fits in memory, Gram matrices and means
        otherwise (Gram matrices alone from descriptor files without means).
        ``("gram",)`` here; synthesis defaults to :data:`DEFAULT_STATISTICS`
        (:func:`job_descriptor`), style transfer to :data:`STYLE_STATISTICS`.
    """

    octaves: int = 4
    layers: tuple[str, ...] = DEFAULT_LAYERS
    layer_weights: tuple[float, ...] | None = None
    octave_weights: tuple[float, ...] | None = None
    pooling: str = DEFAULT_POOLING
    padding: str = "reflect"
    source_scale: float = 1.0
    source_width: int | None = None
    weights: str | None = None
    statistics: tuple[str, ...] = ("gram",)
    coarse_layers: tuple[str, ...] = ()
    coarse_from: int = 1

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first invalid field."""
        if not self.statistics or any(s not in STATISTICS for s in self.statistics):
            raise ConfigError(
                "statistics",
                f"choose one or more of {', '.join(STATISTICS)}, got {', '.join(self.statistics)!r}",
            )
        if len(set(self.statistics)) != len(self.statistics):
            raise ConfigError("statistics", "a statistic is listed twice")
        if "auto" in self.statistics and len(self.statistics) > 1:
            raise ConfigError("statistics", "auto chooses between gram and sliced: give it alone")
        _positive_int("octaves", self.octaves)
        if self.octaves > 10:
            raise ConfigError("octaves", f"at most 10 are supported, got {self.octaves}")
        if not self.layers:
            raise ConfigError("layers", "select at least one layer")
        unknown = [n for n in self.layers if n not in LAYER_NAMES]
        if unknown:
            raise ConfigError(
                "layers",
                f"unknown layer(s) {', '.join(unknown)}; choose from {', '.join(LAYER_NAMES)}",
            )
        if len(set(self.layers)) != len(self.layers):
            raise ConfigError("layers", "a layer is listed twice")
        unknown = [n for n in self.coarse_layers if n not in LAYER_NAMES]
        if unknown:
            raise ConfigError(
                "coarse_layers",
                f"unknown layer(s) {', '.join(unknown)}; choose from {', '.join(LAYER_NAMES)}",
            )
        again = [n for n in self.coarse_layers if n in self.layers]
        if again or len(set(self.coarse_layers)) != len(self.coarse_layers):
            raise ConfigError(
                "coarse_layers",
                f"{', '.join(again)} already matched at every octave (--layers)"
                if again
                else "a layer is listed twice",
            )
        if (
            isinstance(self.coarse_from, bool)
            or not isinstance(self.coarse_from, int)
            or self.coarse_from < 0
        ):
            raise ConfigError("coarse_from", f"must be an octave number ≥ 0, got {self.coarse_from!r}")
        if self.coarse_layers and self.coarse_from >= self.octaves:
            raise ConfigError(
                "coarse_from",
                f"octave {self.coarse_from} does not exist with {self.octaves} octave(s) (0 … {self.octaves - 1}); "
                "lower it or add --octaves",
            )
        _weights("layer_weights", self.layer_weights, len(self.layers), "layer")
        _weights("octave_weights", self.octave_weights, self.octaves, "octave")
        _one_of("pooling", self.pooling, POOLINGS)
        _one_of("padding", self.padding, PADDINGS)
        _positive_float("source_scale", self.source_scale)
        if self.source_width is not None:
            _positive_int("source_width", self.source_width, minimum=8)

    @property
    def resolved_layer_weights(self) -> tuple[float, ...]:
        """Layer weights with ``None`` resolved to each layer's default (:data:`DEFAULT_LAYER_WEIGHTS`, else 1)."""
        return self.layer_weights or tuple(DEFAULT_LAYER_WEIGHTS.get(n, 1.0) for n in self.layers)

    def layers_at(self, octave: int) -> tuple[str, ...]:
        """The layers matched at ``octave``: ``layers``, and ``coarse_layers`` from ``coarse_from`` on."""
        return self.layers + self.coarse_layers if octave >= self.coarse_from else self.layers

    @property
    def all_layers(self) -> tuple[str, ...]:
        """Every layer matched at some octave: ``layers``, then ``coarse_layers``."""
        return self.layers + self.coarse_layers

    def octave_layers(self) -> list[tuple[int, str]]:
        """Every (octave, layer) matched, octave by octave, each octave's layers in :meth:`layers_at` order."""
        return [(k, layer) for k in range(self.octaves) for layer in self.layers_at(k)]

    def weight_of(self, layer: str) -> float:
        """A layer's weight: its ``layer_weights`` entry for one of ``layers``, else its default."""
        if layer in self.layers:
            return self.resolved_layer_weights[self.layers.index(layer)]
        return DEFAULT_LAYER_WEIGHTS.get(layer, 1.0)

    def shifted(self, shift: int) -> DescriptorConfig:
        """The descriptor of octaves ≥ ``shift`` renumbered from 0: what a stage ``shift`` halvings
        below the output matches (:func:`multiscale.layers.shift_octaves`)."""
        weights = None if self.octave_weights is None else self.octave_weights[shift:]
        return dataclasses.replace(
            self, octaves=self.octaves - shift, octave_weights=weights,
            coarse_from=max(0, self.coarse_from - shift),
        )  # fmt: skip

    @property
    def resolved_octave_weights(self) -> tuple[float, ...]:
        """Octave weights with ``None`` resolved to all ones."""
        return self.octave_weights or tuple(1.0 for _ in range(self.octaves))


def job_descriptor() -> DescriptorConfig:
    """The descriptor config a synthesis starts from: every default of :class:`DescriptorConfig`
    but the statistics, :data:`DEFAULT_STATISTICS` (a descriptor on its own — a file, a
    build — holds Gram matrices)."""
    return DescriptorConfig(statistics=DEFAULT_STATISTICS)


def style_descriptor() -> DescriptorConfig:
    """The descriptor config a style transfer starts from: :data:`STYLE_LAYERS` and :data:`STYLE_STATISTICS`."""
    return DescriptorConfig(layers=STYLE_LAYERS, statistics=STYLE_STATISTICS)


@dataclass(frozen=True, kw_only=True)
class RunConfig:
    """What every job's config shares: the descriptor, the start, the driver and its limits, the output.

    :class:`SynthesisConfig` and :class:`StyleConfig` add their own fields
    (and :class:`StyleConfig` its own ``init`` and ``tol`` defaults). Every
    config validates itself when built, so the API and the CLI refuse the
    same values with the same :class:`ConfigError`.

    Attributes
    ----------
    descriptor : DescriptorConfig
        What is measured (octaves, layers, padding, …).
    width : int or None
        Output width in pixels; ``None`` takes the source's.
    init : str
        Start image; the choices are the job's (see each config).
    seed : int
        Seed of every random choice; same seed and machine → same bytes.
    max_iter : int
        L-BFGS iterations at most: per stage for style transfer, of the first
        stage for a synthesis in stages (see :class:`SynthesisConfig`).
    tol : float
        Stop when the loss reduction of an iteration, divided by
        ``max(|f|, |f₊|, 1)``, falls below this (scipy's ``ftol``). The
        losses here are 1e-4–1e-2, so the floor of 1 makes it an absolute
        step, and too large a ``tol`` lets one short line-search step end a
        run far from converged (benchmarks/RESULTS.md, "Defaults").
    time_limit : float or None
        Stop after this many seconds (for style transfer: all stages
        together, shared in proportion to their pixels); the best image so
        far is the result.
    history : int
        L-BFGS memory: number of (s, y) correction pairs kept.
    save_every : int or None
        Write an intermediate image every N iterations (CLI only).
    bit_depth : {8, 16}
        Bits per channel of PNG/TIFF output.
    max_input_pixels : int
        Input images with more pixels are refused before decoding.
    max_memory : int or None
        Refuse a run whose estimated peak memory (bytes) exceeds this;
        ``None``: 80 % of the memory available when the run starts.
    checkpoint_every : int or None
        Write a resumable checkpoint every N iterations (counted over all
        stages for style transfer; see :mod:`multiscale.jobs.checkpoint`). With the
        projected optimizer it holds the driver's state and a resume
        continues exactly.
    optimizer : {"projected", "lbfgsb"}
        ``projected`` (default): the float32 projected L-BFGS of
        :mod:`multiscale.optim.projected` — far less driver time per
        iteration than scipy, as low a loss per iteration on the samples
        (benchmarks/RESULTS.md, "Optimiser's own time"), and resumable
        exactly (checkpoints, Ctrl-C). ``lbfgsb``: scipy's L-BFGS-B, the
        reference.
    tile_size : int or None
        Evaluate the loss tile by tile, tiles of this many pixels (of the
        octave they cut) plus a halo: the same loss and gradient in far less
        memory, for more time (:mod:`multiscale.measure.engine`). ``None``:
        untiled when the memory estimate fits ``max_memory``, else the
        largest tile that fits.
    stages : int or None
        Sizes optimised in turn, coarse to fine, each twice the one before
        (the last is the output) and started from its upsampled result;
        ``None``: as many as the job finds worth it (see each config).
    precision : {"float32", "bfloat16", "auto"}
        What the network's convolutions run in (Grams and losses stay
        float32). ``bfloat16`` is faster per evaluation on a CPU with native
        bf16 and reaches the same loss over the first hundred iterations
        (benchmarks/RESULTS.md, "Objective throughput" and "bfloat16 against
        float32"). float32 stays the default. ``auto`` measures both on a
        small probe and checks bf16's accuracy (:mod:`multiscale.jobs.precision`);
        the choice and its figures go into the output's JSON.
    """

    descriptor: DescriptorConfig = field(default_factory=job_descriptor)
    width: int | None = None
    init: str = "spectrum"
    seed: int = 0
    max_iter: int = 200
    tol: float = DEFAULT_TOL
    time_limit: float | None = None
    history: int = 10
    save_every: int | None = None
    bit_depth: int = 8
    max_input_pixels: int = DEFAULT_MAX_INPUT_PIXELS
    max_memory: int | None = None
    checkpoint_every: int | None = None
    optimizer: str = "projected"
    tile_size: int | None = None
    precision: str = "float32"
    stages: int | None = None

    #: The descriptor options :meth:`with_options` takes (``None``: every field of DescriptorConfig).
    descriptor_options: ClassVar[tuple[str, ...] | None] = None
    #: The job's name in messages ("is not an option of …").
    job: ClassVar[str] = "a run"

    def __post_init__(self) -> None:
        self.validate()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """Rebuild a config from :meth:`to_dict` output (lists become tuples).

        Raises
        ------
        ConfigError
            For unknown fields or invalid values.
        """
        return _config_from_dict(cls, data)  # type: ignore[no-any-return]

    @classmethod
    def with_options(cls, config: Self | None = None, **options: Any) -> Self:
        """The config ``config`` (default: the class's defaults) with keyword options changed.

        Descriptor options (``octaves``, ``layers``, …) and run options
        (``max_iter``, ``seed``, …) may be mixed; unknown names raise
        :class:`ConfigError`. Sequences become tuples and paths strings.
        """
        base = config if config is not None else cls()
        desc_names = {f.name for f in dataclasses.fields(DescriptorConfig)}
        if cls.descriptor_options is not None:
            desc_names &= set(cls.descriptor_options)
        fields = {f.name: f for f in dataclasses.fields(cls) if f.name != "descriptor"}
        unknown = set(options) - desc_names - set(fields)
        if unknown:
            raise ConfigError(sorted(unknown)[0], f"is not an option of {cls.job}")
        desc_fields = {f.name: f for f in dataclasses.fields(DescriptorConfig)}
        desc = {k: _option(v, desc_fields[k]) for k, v in options.items() if k in desc_names}
        run = {k: _option(v, fields[k]) for k, v in options.items() if k in fields}
        return dataclasses.replace(base, descriptor=dataclasses.replace(base.descriptor, **desc), **run)

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first invalid field."""
        if not isinstance(self.descriptor, DescriptorConfig):
            raise ConfigError("descriptor", "must be a DescriptorConfig")
        if self.width is not None:
            _positive_int("width", self.width, minimum=8)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError("seed", f"must be an integer ≥ 0, got {self.seed!r}")
        _positive_int("max_iter", self.max_iter)
        _positive_float("tol", self.tol, allow_zero=True)
        if self.time_limit is not None:
            _positive_float("time_limit", self.time_limit)
        _positive_int("history", self.history, minimum=1)
        if self.save_every is not None:
            _positive_int("save_every", self.save_every)
        if self.bit_depth not in BIT_DEPTHS:
            raise ConfigError("bit_depth", f"must be 8 or 16, got {self.bit_depth!r}")
        _positive_int("max_input_pixels", self.max_input_pixels, minimum=64)
        if self.max_memory is not None:
            _positive_int("max_memory", self.max_memory, minimum=1 << 20)
        _one_of("optimizer", self.optimizer, OPTIMIZERS)
        if self.tile_size is not None:
            _positive_int("tile_size", self.tile_size, minimum=MIN_TILE_SIZE)
        _one_of("precision", self.precision, PRECISIONS)
        if self.checkpoint_every is not None:
            _positive_int("checkpoint_every", self.checkpoint_every)
        if self.stages is not None:
            _positive_int("stages", self.stages)
            if self.stages > MAX_STAGES:
                raise ConfigError("stages", f"must be at most {MAX_STAGES}, got {self.stages}")

    def to_dict(self) -> dict[str, Any]:
        """The config as plain JSON-ready data (tuples become lists)."""
        return dataclasses.asdict(self)


def _option(value: Any, spec: dataclasses.Field[Any]) -> Any:
    """A keyword option as the config field ``spec`` holds it: any sequence as a tuple (a lone
    string as a one-element tuple) where the field is a tuple, a path as a string."""
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if value is not None and "tuple[" in str(spec.type):
        return (value,) if isinstance(value, str) else tuple(value)
    return value


@dataclass(frozen=True, kw_only=True)
class SynthesisConfig(RunConfig):
    """Every option of a texture synthesis run, with its default: :class:`RunConfig`'s and these.

    Attributes
    ----------
    width, height : int or None
        Output size in pixels; ``None`` takes the first source's (scaled) size.
    init : str
        Start image (:mod:`multiscale.jobs.starts`): ``"spectrum"`` (random-phase
        noise with the sources' colours and power spectrum; the mean colour
        plus smooth noise when there are no source images), ``"smooth"``,
        ``"noise"`` (the mean colour plus independent noise per channel: it
        leaves colour speckle), ``"mean"`` or the path of an image.
    max_iter : int
        The first stage's L-BFGS iterations at most (:data:`SYNTHESIS_MAX_ITER`
        by default; a one-stage run's all); see ``stages``.
    frames : int
        Number of frames; more than 1 makes an animation.
    frame_weight : float
        Pull between consecutive frames (see :mod:`multiscale.objectives.frames`).
    loop : bool
        Also pull the last frame toward the first (a seamless loop).
    spectrum_weight : float or None
        Weight of the spectrum constraint (:mod:`multiscale.objectives.spectrum`): the
        squared distance to the images with the sources' Fourier spectrum,
        which keeps quasi-periodic textures (bricks, tiles) in line; 0 leaves
        it out. It needs source images; ``None`` (the default) is
        :data:`DEFAULT_SPECTRUM_WEIGHT` with them and 0 without (descriptor
        files, folder builds). Reports and checkpoints record the resolved value.
    spectrum_peaks : {"gather", "spread"}
        How the constraint's spectrum reaches an output (or stage) larger than
        its source: see :data:`SPECTRUM_PEAKS`. Alike for outputs no larger than
        their source, and for sources without peaks.
    spectrum_long_waves : {"cut", "keep"}
        What the constraint's spectrum and the ``spectrum`` start hold at
        wavelengths longer than a source, in an output (or stage) larger than
        it: see :data:`SPECTRUM_LONG_WAVES`. Alike for outputs no larger than
        their source.
    spectrum_last_stage : float
        The constraint's weight in the last stage of a run in stages, as a
        share of ``spectrum_weight`` (:data:`SPECTRUM_LAST_STAGE`): 1 keeps it
        whole there too, 0 leaves it to the earlier stages. A run of one
        stage keeps the whole weight.
    spectrum_taper : float
        In [0, 1): in a run of several stages, this share of the last
        stage's iterations comes first with the spectrum constraint seen
        through a border taper (:func:`multiscale.objectives.spectrum.border_taper`),
        the rest with the plain constraint: the last stage runs in two
        parts, listed as two stages of one size in the report
        (:data:`SPECTRUM_TAPER`; 0: one part). Not in a tileable run (no
        border), nor with ``stage_detail`` (its added octave is what the
        constraint follows then).
    stage_detail : bool or None
        Start each stage after the first from the previous one's result
        upsampled *plus* the finest octave, which upsampling cannot carry,
        taken from random-phase noise of the sources at the stage's size
        (:func:`multiscale.jobs.starts.stage_start`). Needs source images
        and one frame: without them, and with ``False``, the upsampled
        result alone. ``None`` (the default): ``True`` in runs of
        :data:`STAGE_DETAIL_MIN_STAGES` stages or more. Resolved when the
        run starts (``False`` where it cannot apply); the report and a
        checkpoint record the resolved value.
    stages : int or None
        Sizes optimised in turn, coarse to fine, each twice the one before
        and the last the output; ``None`` chooses the fewest that put the
        first at ≤ :data:`SYNTHESIS_FIRST_STAGE_MAX_SIDE` px on the long side
        (one stage up to 128², two at 256², four at 1024²), never more than
        ``octaves``.
        A stage ``t`` halvings below the output matches the output's octaves
        ``t, t + 1, …`` only (its octave j is the output's octave j + t, so
        targets, descriptor files and quantile banks serve it unchanged);
        its result, upsampled, starts the next. The first stage runs
        ``max_iter`` iterations and each later one, with 4× the pixels, half
        as many as the one before: a large texture costs little more than
        its last stage's few iterations, which only refine the finest
        octaves (benchmarks/RESULTS.md, "Large textures in stages").
    checkpoint_every : int or None
        As :class:`RunConfig`'s; it needs ``optimizer="projected"``.
    precision : {"float32", "bfloat16", "auto"}
        As :class:`RunConfig`'s. On long runs bfloat16's rounding noise stops
        the driver early (it meets ``tol`` or finds no decrease): a synthesis
        then finishes in float32 from that point
        (:func:`multiscale.jobs.synthesize.run_synthesis`).
    """

    height: int | None = None
    max_iter: int = SYNTHESIS_MAX_ITER
    frames: int = 1
    frame_weight: float = 1.0
    loop: bool = False
    spectrum_weight: float | None = None
    spectrum_peaks: str = "gather"
    spectrum_long_waves: str = "cut"
    spectrum_last_stage: float = SPECTRUM_LAST_STAGE
    spectrum_taper: float = SPECTRUM_TAPER
    stage_detail: bool | None = None

    job: ClassVar[str] = "synthesize"

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first invalid field."""
        super().validate()
        if self.height is not None:
            _positive_int("height", self.height, minimum=8)
        if self.init not in INITS and not os.fspath(self.init):
            raise ConfigError("init", "must be noise, mean or an image path")
        _positive_int("frames", self.frames)
        _positive_float("frame_weight", self.frame_weight, allow_zero=True)
        if self.spectrum_weight is not None:
            _positive_float("spectrum_weight", self.spectrum_weight, allow_zero=True)
        _positive_float("spectrum_last_stage", self.spectrum_last_stage, allow_zero=True)
        _positive_float("spectrum_taper", self.spectrum_taper, allow_zero=True)
        if self.spectrum_taper >= 1.0:
            raise ConfigError(
                "spectrum_taper", f"must be below 1 (a share of the last stage), got {self.spectrum_taper}"
            )
        _one_of("spectrum_peaks", self.spectrum_peaks, SPECTRUM_PEAKS)
        _one_of("spectrum_long_waves", self.spectrum_long_waves, SPECTRUM_LONG_WAVES)
        if self.stage_detail is not None and not isinstance(self.stage_detail, bool):
            raise ConfigError(
                "stage_detail", f"must be true, false or None (auto), got {self.stage_detail!r}"
            )
        if self.stages is not None and self.stages > self.descriptor.octaves:
            raise ConfigError(
                "stages",
                f"must be at most the number of octaves ({self.descriptor.octaves}): a stage t halvings "
                f"below the output matches its octaves t and up, got {self.stages}",
            )
        if self.checkpoint_every is not None and self.optimizer != "projected":
            raise ConfigError(
                "checkpoint_every",
                "exact checkpoints need --optimizer projected (scipy's L-BFGS-B cannot hand out its state)",
            )


SYNTHESIS_DEFAULTS = SynthesisConfig()
DESCRIPTOR_DEFAULTS = SYNTHESIS_DEFAULTS.descriptor


# --------------------------------------------------------------------------
# Style transfer
# --------------------------------------------------------------------------

STYLE_INITS = ("palette", "content", "noise", "mean")
#: What the content term's features are taken of. ``palette`` (the default): the content
#: recoloured to the styles' palette, so the content term no longer asks for the content's own
#: colours while the style asks for the style's; on six pairs (256 px) it took the rainbow
#: rings out of the cat's eyes, thinned the maze of fine stripes the two terms painted between
#: them, and brought the palette closer (benchmarks/RESULTS.md, "The content term in the
#: style's palette").
CONTENT_TARGETS = ("content", "palette")
PRESERVE_COLORS = ("none", "luminance", "histogram")

#: Weight of the palette term (:mod:`multiscale.objectives.palette`): the output's chroma
#: matched to the styles' as a whole distribution. The style term barely sees single pixels'
#: colour, and without it the output invented hues no style has (rainbow eyes and fringes on
#: a grey style); at 10 those went on six pairs at 256 px (benchmarks/RESULTS.md, "The palette
#: term").
PALETTE_WEIGHT = 10.0

#: Content is matched on one deep layer: it keeps the arrangement of objects
#: and leaves their textures free for the style (Gatys et al. 2016).
DEFAULT_CONTENT_LAYERS = ("conv4_2",)

#: Largest output side of ``stylize`` (print sizes). Untiled, a 4096 × 4096
#: stage would need tens of GiB for the network's activations and their
#: gradients; it is evaluated in tiles (:mod:`multiscale.measure.engine`).
MAX_STYLIZE_SIDE = 4096

#: ``stages=None`` chooses the fewest stages (each twice the size of the one
#: before) that put the first stage's long side at or below this.
FIRST_STAGE_MAX_SIDE = 512


def _config_from_dict(cls: Any, data: Any, *, name: str = "config") -> Any:
    """Rebuild a frozen config dataclass from its ``to_dict()`` form.

    JSON lists become tuples and nested configs (fields whose default
    factory is a config class, such as ``descriptor``) are rebuilt the same
    way; the constructor then validates every value.

    Raises
    ------
    ConfigError
        For a field this version does not know, a nested config that is not
        a mapping, or an invalid value.
    """
    if not isinstance(data, dict):
        raise ConfigError(name, f"expected a mapping of settings, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(unknown[0], "is not a known setting")
    values = {}
    for key, value in data.items():
        factory = fields[key].default_factory
        sample = None if factory is dataclasses.MISSING else factory()
        if dataclasses.is_dataclass(sample):
            # a nested config: rebuilt as its own class; a field the dict lacks takes that
            # class's default (the value files written before the field existed ran with)
            value = _config_from_dict(type(sample), value, name=key)
        elif isinstance(value, list):
            value = tuple(value)
        values[key] = value
    return cls(**values)


@dataclass(frozen=True, kw_only=True)
class StyleConfig(RunConfig):
    """Every option of a style transfer run, with its default: :class:`RunConfig`'s and these.

    The objective is ``content_weight · L_content + style_weight · L_style +
    tv_weight · L_tv``; each term is normalised so that its scale does not
    depend on the image size, the layers or the stage (see
    :mod:`multiscale.objectives.style`).

    Attributes
    ----------
    descriptor : DescriptorConfig
        How the style is measured (octaves, style layers, padding, …). Its
        ``source_scale`` and ``source_width`` must stay at their defaults:
        ``style_scale`` sizes the styles here.
    content_layers : tuple of str
        VGG16 layers whose activations (at full resolution, octave 0) must
        match the content image's.
    content_target : {"content", "palette"}
        What the content's features are taken of: ``content``, the content
        image as it is; ``palette``, the content recoloured to the styles'
        colour mean and covariance (the ``palette`` start), so that the
        content term asks for the content's layout in the style's colours
        rather than for its own colours. With ``preserve_color`` both are
        the content as it is.
    content_weight, style_weight, tv_weight : float ≥ 0
        Weights of the three loss terms; at least one must be > 0.
    palette_weight : float ≥ 0
        Weight of the palette term (:mod:`multiscale.objectives.palette`):
        the output's chroma (hue and saturation, not lightness) matched to
        the styles' blended colours as a whole distribution, so that the
        output has no colour the styles lack. 0 leaves it out; it is also
        left out with ``preserve_color`` (the colours are then the
        content's) and with ``style_weight`` 0.
    style_weights : tuple of float or None
        Blend weight of each style image (``None``: equal). The target Gram
        matrices are the weighted mean of the styles' Grams.
    style_scale : float
        Each style image is resized to ``style_scale`` × the output width
        (at every stage, the stage's width), keeping its aspect ratio. Larger
        values make the style's features smaller in the output.
    preserve_color : {"none", "luminance", "histogram"}
        ``luminance``: the transfer acts on luminance only (YIQ Y channel)
        and the content's chroma (I, Q) is put back; ``histogram``: each
        style's colour mean and covariance are matched to the content's
        before the transfer.
    width : int or None
        Output width in pixels (≤ 4096); ``None`` takes the content's. The
        height follows the content's aspect ratio.
    stages : int or None
        Resolutions optimised in turn, each twice the size of the one before
        and started from its upsampled result; ``None`` chooses the fewest
        that put the first stage at ≤ 512 px on the long side.
    init : str
        ``"palette"`` (the content image recoloured to the styles' colour
        mean and covariance, :func:`multiscale.measure.color.match_palette`, so the
        style's palette is there from the start; with ``preserve_color`` the
        content as it is), ``"content"`` (the content image), ``"noise"``
        (the content's mean colour plus Gaussian noise), ``"mean"`` (that
        colour flat, with faint noise) or an image path.
    tol : float
        As :class:`RunConfig`'s, default 1e-7.
    precision : {"float32", "bfloat16", "auto"}
        As :class:`RunConfig`'s, except that stylize has no float32
        finish: its stages run wholly in the chosen precision (``auto``
        chooses once, at the last stage's size, and a checkpoint keeps the
        choice). The targets and the saved image's score are float32.
    """

    descriptor: DescriptorConfig = field(default_factory=style_descriptor)
    content_layers: tuple[str, ...] = DEFAULT_CONTENT_LAYERS
    content_target: str = "palette"
    # Both terms are relative errors, so weight 1 each balances them; TV 30 halves the
    # pixel-level ripples at no cost in style (benchmarks/RESULTS.md, "Defaults").
    content_weight: float = 1.0
    style_weight: float = 1.0
    tv_weight: float = 30.0
    palette_weight: float = PALETTE_WEIGHT
    style_weights: tuple[float, ...] | None = None
    style_scale: float = 1.0
    preserve_color: str = "none"
    init: str = "palette"
    tol: float = 1e-7

    descriptor_options: ClassVar[tuple[str, ...] | None] = (
        "octaves", "layers", "coarse_layers", "coarse_from", "layer_weights", "octave_weights", "pooling",
        "padding", "weights", "statistics",
    )  # fmt: skip
    job: ClassVar[str] = "stylize"

    @property
    def uses_palette_term(self) -> bool:
        """Whether the objective has the palette term: ``palette_weight`` > 0, a style term, and
        the styles' colours (not the content's, as with ``preserve_color``)."""
        return self.palette_weight > 0 and self.style_weight > 0 and self.preserve_color == "none"

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first invalid field."""
        super().validate()
        d = self.descriptor
        if "auto" in d.statistics:
            raise ConfigError(
                "statistics", "stylize matches gram, sliced and/or mean; auto is for synthesize"
            )
        if d.source_scale != 1.0 or d.source_width is not None:
            raise ConfigError(
                "source_scale", "is not used by stylize; size the styles with style_scale (--style-scale)"
            )
        if not self.content_layers:
            raise ConfigError("content_layers", "select at least one layer")
        unknown = [n for n in self.content_layers if n not in LAYER_NAMES]
        if unknown:
            raise ConfigError(
                "content_layers",
                f"unknown layer(s) {', '.join(unknown)}; choose from {', '.join(LAYER_NAMES)}",
            )
        if len(set(self.content_layers)) != len(self.content_layers):
            raise ConfigError("content_layers", "a layer is listed twice")
        for name in ("content_weight", "style_weight", "tv_weight", "palette_weight"):
            _positive_float(name, getattr(self, name), allow_zero=True)
        if self.content_weight + self.style_weight + self.tv_weight <= 0:
            raise ConfigError("style_weight", "content, style and TV weights are all 0; nothing to optimise")
        if self.style_weights is not None:
            _weights("style_weights", self.style_weights, len(self.style_weights), "style image")
        _positive_float("style_scale", self.style_scale)
        if self.style_scale > 4:
            raise ConfigError("style_scale", f"must be at most 4, got {self.style_scale!r}")
        _one_of("preserve_color", self.preserve_color, PRESERVE_COLORS)
        _one_of("content_target", self.content_target, CONTENT_TARGETS)
        if self.width is not None and self.width > MAX_STYLIZE_SIDE:
            raise ConfigError("width", f"must be at most {MAX_STYLIZE_SIDE}, got {self.width}")
        if not isinstance(self.init, str) or not self.init:
            raise ConfigError("init", "must be content, noise, mean or an image path")


STYLE_DEFAULTS = StyleConfig()
