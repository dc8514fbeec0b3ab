"""Checkpoints of a long run: stop it, continue it later.

A checkpoint is a folder (``OUTPUT.ckpt/`` by default) holding:

``checkpoint.json``
    format name and version, ``kind`` (``"synthesize"`` or ``"stylize"``),
    the resolved config, the final output's path, the sources' provenance,
    where the run stands, and the sha256 of the two ``.npz`` files; written
    last, so a folder without it (or with stale hashes) is incomplete.
``targets.npz``
    what the run matches, so a resume needs neither the source photos nor
    the network pass over them. Synthesize: the joined target Grams and the
    mean colour (and, for the sliced statistic, the sources' features or a
    descriptor's quantile bank; for the mean statistic, the target mean
    feature vectors ``mean/{octave}/{layer}``, float64 (C,)). Stylize: for
    every stage, the content resized to the stage (float32) and the styles'
    blended Grams (and means) at the stage's style size; with the palette
    term, the styles' chroma quantiles ``palette/quantiles`` (float64
    (levels, directions)) and ``palette/variance`` (float64, a scalar).
``state.npz``
    Synthesize: the projected L-BFGS state (:mod:`multiscale.optim.projected`):
    iterate, pairs, counters, best point — a resumed run continues bit for
    bit. Stylize: the best image of the stage reached (float32, the
    optimiser's variables: 1 channel with ``preserve_color="luminance"``)
    and the loss history.
``driver.npz`` (stylize, projected optimizer)
    the projected L-BFGS state within the stage reached, as synthesize's
    ``state.npz``: a resumed stylize run continues it bit for bit. Without
    it (``lbfgsb``, a stage's start, a checkpoint from before it was kept)
    a resume restarts L-BFGS from the stage's best image.
``current.png``, ``best.png``
    the current and the best image, for looking at (16-bit PNG).

A checkpoint is replaced as a whole, so that at every instant one complete,
loadable checkpoint exists (``kill -9``, power loss, a full disk):

1. the new one is written into ``FOLDER.tmp-XXXX/`` beside the old, every
   file flushed to disk (fsync) and ``checkpoint.json`` last;
2. the old folder is renamed ``FOLDER.old-XXXX``, the new one ``FOLDER``,
   and the parent folder is flushed;
3. the old one is deleted, with any ``.tmp-``/``.old-`` leftovers of
   earlier crashes.

A crash before step 2 leaves the old ``FOLDER`` (and an incomplete
``.tmp-`` folder that is ignored); a crash between its two renames leaves
only ``FOLDER.old-XXXX``, which the readers here use when ``FOLDER`` is
missing. Two renames rather than one: POSIX renames a folder only onto an
empty one, and an atomic exchange (Linux ``renameat2``) or a symlink
swapped in by ``os.replace`` would not work on every platform and file
system, or would make ``FOLDER`` a link. The hashes in ``checkpoint.json``
still guard against files altered afterwards. Version 1 folders have no
``kind`` and are synthesize checkpoints.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..config import MAX_STAGES, StyleConfig, SynthesisConfig
from ..errors import CheckpointError, ConfigError, MultiscaleError, OutputError
from ..io import PathLike, file_sha256, fsync_dir, save_image, write_json_atomic
from ..layers import layer_channels
from ..measure.sliced import MAX_SOURCE_POSITIONS, QuantileBank, SlicedTargets
from ..npz import Member, read_npz, write_npz
from ..objectives.palette import PALETTE_LEVELS, PaletteTarget

#: Version 2 added ``kind`` and stylize checkpoints. Version 3: ``layer_weights`` of
#: ``None`` means each layer's default weight (``conv1_1`` 2), no longer all 1.
CHECKPOINT_VERSION = 3
KINDS = ("synthesize", "stylize")
_FORMAT = "multiscale-checkpoint"
_DATA_FILES = ("targets.npz", "state.npz")
#: Data files a checkpoint may hold: the projected driver's state of a stylize stage.
_OPTIONAL_DATA = ("driver.npz",)
#: Every file a checkpoint folder holds: only a folder of these is ever replaced.
_FILES = (*_DATA_FILES, *_OPTIONAL_DATA, "checkpoint.json", "current.png", "best.png")
#: Name parts of a new checkpoint being written and of the old one being swapped out.
_TMP, _OLD = ".tmp-", ".old-"
#: Most bytes of arrays, members and central directory a checkpoint's ``.npz`` may declare.
_MAX_DATA_BYTES = 1 << 30
_MAX_MEMBERS = 1 << 16
_MAX_DIRECTORY_BYTES = 16 * 1024**2
_FLOATS = (np.float32, np.float64)
#: Most draws and levels a checkpoint's quantile bank may declare.
_MAX_BANK_DRAWS = 1024
_MAX_BANK_LEVELS = 65536


@dataclass(frozen=True)
class Checkpoint:
    """A synthesize checkpoint read back from disk.

    Attributes
    ----------
    folder : Path
    config : SynthesisConfig
        The run's resolved config.
    output : str
        Where the final image goes.
    grams : dict of (octave, layer) → np.ndarray float64 (C, C)
    mean_color : np.ndarray float32 (3,)
    sources : list of dict
        Provenance of the targets, as in the run's report.
    state : multiscale.optim.projected.LBFGSState
    float32_from_iteration : int or None
        Set for a bfloat16 run that had switched to its float32 finish (at
        this iteration): the state's loss and gradient are float32 ones, and
        the run goes on in float32.
    sliced : SlicedTargets or QuantileBank or None
        The sources' features, or the descriptor files' quantile bank, for a
        run with the sliced statistic.
    sliced_draw : (int, int) or None
        That run's draw of directions and the iteration where it began.
    exemplars : list of np.ndarray float32 (h, w, 3)
        The source images, for a run with the spectrum constraint or ``stage_detail``.
    means : dict of (octave, layer) → np.ndarray float64 (C,) or None
        The target mean feature vectors, for a run with the mean statistic.
    stage : int or None
        For a run in stages, the stage (0-based) whose iterate ``state``
        holds, at that stage's size; ``None`` for a run of one stage.
    """

    folder: Path
    config: SynthesisConfig
    output: str
    grams: dict[tuple[int, str], np.ndarray]
    mean_color: np.ndarray
    sources: list[dict[str, Any]]
    state: Any
    float32_from_iteration: int | None = None
    sliced: SlicedTargets | QuantileBank | None = None
    sliced_draw: tuple[int, int] | None = None
    exemplars: list[np.ndarray] = field(default_factory=list)
    means: dict[tuple[int, str], np.ndarray] | None = None
    stage: int | None = None


@dataclass(frozen=True)
class StylePosition:
    """Where a stylize run stands: what a resume needs besides the targets.

    Attributes
    ----------
    stage : int
        0-based index of the stage to continue.
    stage_iterations, stage_evaluations : int
        Already done in that stage (0 when it had not started).
    stage_elapsed_s : float
        Seconds already spent optimising that stage.
    best_loss : float or None
        The stage's best loss so far (``None``: none evaluated, or not started).
    stages : list of dict
        The :class:`~multiscale.jobs.stylize.StageInfo` fields of the stages
        finished before ``stage``.
    image : np.ndarray
        float32 (h, w, c) at the stage's size, values in [0, 1]: the point
        to continue from (the stage's best so far, or the previous stage's
        result upsampled). ``c`` is 1 with ``preserve_color="luminance"``
        (the optimiser's variable is the luminance), 3 otherwise.
    history : np.ndarray
        float64 (iterations,): the loss after each iteration so far, all
        stages one after the other.
    state : LBFGSState or None
        The projected driver's state in the stage (``None`` at a stage's
        start, with ``lbfgsb``, or in a checkpoint written before it was
        kept): a resume continues the stage from it exactly. Its
        ``iteration`` counts the stage's iterations since the driver
        started, which is ``stage_iterations`` unless an earlier resume
        restarted the driver.
    """

    stage: int
    stage_iterations: int
    stage_evaluations: int
    stage_elapsed_s: float
    best_loss: float | None
    stages: list[dict[str, Any]]
    image: np.ndarray
    history: np.ndarray
    state: Any = None

    @property
    def iterations(self) -> int:
        """Iterations done so far, over all stages."""
        return sum(int(s["iterations"]) for s in self.stages) + self.stage_iterations


@dataclass(frozen=True)
class StyleCheckpoint:
    """A stylize checkpoint read back from disk.

    Attributes
    ----------
    folder : Path
    config : StyleConfig
        The run's resolved config.
    output : str
        Where the final image goes.
    content : dict
        The content's provenance (:class:`~multiscale.jobs.synthesize.SourceInfo` fields).
    styles : list of dict
        The styles' provenance.
    style_blend : list of float
        The styles' weights, normalised to sum to 1.
    stage_sizes : list of (height, width)
        Smallest first; the last is the output size.
    contents : list of np.ndarray
        float32 (h, w, 3) in [0, 1]: the content at each stage's size.
    grams : list of dict or None
        Per stage, (octave, layer) → float64 (C, C): the blended style
        Grams; ``None`` when ``style_weight`` is 0.
    position : StylePosition
    sliced : list of SlicedTargets
        Per stage, the styles' features, for a run with the sliced
        statistic (empty otherwise).
    means : list of dict
        Per stage, (octave, layer) → float64 (C,): the styles' blended mean
        feature vectors, for a run with the mean statistic (empty otherwise).
    palette : PaletteTarget or None
        The styles' blended colours, for a run with the palette term (the
        same at every stage).
    """

    folder: Path
    config: StyleConfig
    output: str
    content: dict[str, Any]
    styles: list[dict[str, Any]]
    style_blend: list[float]
    stage_sizes: list[tuple[int, int]]
    contents: list[np.ndarray]
    grams: list[dict[tuple[int, str], np.ndarray]] | None
    position: StylePosition
    sliced: list[SlicedTargets] = field(default_factory=list)
    means: list[dict[tuple[int, str], np.ndarray]] = field(default_factory=list)
    palette: PaletteTarget | None = None


def default_folder(output: PathLike) -> Path:
    """``out.png`` → ``out.png.ckpt``."""
    p = Path(output)
    return p.with_name(p.name + ".ckpt")


# --------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------


def find_checkpoint(folder: PathLike) -> Path | None:
    """Where the checkpoint named ``folder`` lies on disk; ``None`` if there is none.

    That is ``folder`` itself, or, after a crash between the two renames
    that swap a new checkpoint in, the previous one set aside as
    ``FOLDER.old-XXXX`` (the newest, if several).
    """
    folder = Path(folder)
    if folder.exists():
        return folder
    parent = folder.parent if str(folder.parent) else Path(".")
    olds = [p for p in parent.glob(glob.escape(folder.name) + _OLD + "*") if p.is_dir()]
    if not olds:
        return None
    return max(olds, key=lambda p: p.stat().st_mtime_ns)


def _check_replaceable(folder: Path) -> None:
    """Refuse to replace anything but a checkpoint folder (a user's folder given as --checkpoint)."""
    if not folder.exists():
        return
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: exists and is not a checkpoint folder; give another --checkpoint")
    own = set(_FILES)
    foreign = sorted(
        p.name
        for p in folder.iterdir()
        # .NAME.XXXX.tmp.EXT: atomic_output's temporary files, left by a crash of an older version
        if p.name not in own and not any(p.name.startswith(f".{f}.") for f in own)
    )
    if foreign:
        raise CheckpointError(
            f"{folder}: holds files that are not a checkpoint's ({', '.join(foreign[:3])}); "
            "not replacing it — give another --checkpoint"
        )


def _remove_leftovers(folder: Path) -> None:
    """Delete ``FOLDER.tmp-*`` and ``FOLDER.old-*``: swapped out, or left by a crash."""
    for tag in (_OLD, _TMP):
        for p in folder.parent.glob(glob.escape(folder.name) + tag + "*"):
            shutil.rmtree(p, ignore_errors=True)


def _failure(exc: BaseException) -> str:
    cause = exc.__cause__ if isinstance(exc, OutputError) and exc.__cause__ is not None else exc
    return getattr(cause, "strerror", None) or str(cause)


@contextlib.contextmanager
def _replacing(folder: Path) -> Iterator[tuple[Path, Path | None]]:
    """Yield (a new empty folder beside ``folder``, the current checkpoint or None); swap it in on success.

    See the module's docstring for the steps. On any failure or interrupt
    the new folder is deleted and the previous checkpoint is left as it was
    (renamed back into place if the interrupt fell between the renames).

    Raises
    ------
    OutputError
        If a file cannot be written (a full disk, a read-only folder): names
        ``folder`` and says the previous checkpoint is kept.
    CheckpointError
        If ``folder`` exists and is not a checkpoint folder.
    """
    _check_replaceable(folder)
    parent = folder.parent if str(folder.parent) else Path(".")
    tmp = parent / f"{folder.name}{_TMP}{uuid.uuid4().hex[:8]}"
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp.mkdir()
    except OSError as exc:
        raise OutputError(f"{folder}: cannot create the checkpoint folder: {exc.strerror or exc}") from exc
    old = None
    try:
        yield tmp, find_checkpoint(folder)
        fsync_dir(tmp)
        if folder.exists():
            old = parent / f"{folder.name}{_OLD}{uuid.uuid4().hex[:8]}"
            os.rename(folder, old)
        os.rename(tmp, folder)
        fsync_dir(parent)
    except BaseException as exc:
        if old is not None and old.exists() and not folder.exists():
            with contextlib.suppress(OSError):
                os.rename(old, folder)
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError):
            raise OutputError(
                f"{folder}: cannot write the checkpoint ({_failure(exc)}); the previous one, if any, is kept"
            ) from exc
        raise
    _remove_leftovers(folder)


def _write_targets(folder: Path, previous: Path | None, reuse: bool, members: Callable[[], dict]) -> None:
    """``targets.npz``: hard-linked from the previous checkpoint when ``reuse`` (they never change during
    a run, and files are only ever replaced, never rewritten in place), else written."""
    source = None if previous is None else previous / "targets.npz"
    if reuse and source is not None and source.is_file():
        try:
            os.link(source, folder / "targets.npz")
            return
        except OSError:  # a file system without hard links
            pass
    write_npz(folder / "targets.npz", members(), overwrite=True)


def save_then_checkpoint(
    result: Any, on_result: Callable[[Any], Any] | None, write_checkpoint: Callable[[], Any] | None
) -> None:
    """Hand a run's ``result`` to ``on_result`` (the CLI saves the image there), then write its checkpoint.

    The image comes first: after a stop signal a scheduler's grace period
    may end before a large checkpoint is written. If saving the result fails
    with a :class:`MultiscaleError` (a full disk), the checkpoint is still
    tried and the error then raised; anything else (a second interrupt)
    ends at once.
    """
    error = None
    if on_result is not None:
        try:
            on_result(result)
        except MultiscaleError as exc:
            error = exc
    if write_checkpoint is not None:
        write_checkpoint()
    if error is not None:
        raise error


def _write_previews(folder: Path, current: np.ndarray, best: np.ndarray) -> None:
    for name, image in (("current.png", current), ("best.png", best)):
        save_image(folder / name, np.clip(image, 0.0, 1.0), bit_depth=16, overwrite=True)


def _write_meta(folder: Path, kind: str, fields: dict[str, Any]) -> None:
    """Write ``checkpoint.json`` last, naming the data files' hashes."""
    write_json_atomic(
        folder / "checkpoint.json",
        {
            "format": _FORMAT,
            "version": CHECKPOINT_VERSION,
            "kind": kind,
            **fields,
            "sha256": {
                name: file_sha256(folder / name)
                for name in (*_DATA_FILES, *_OPTIONAL_DATA)
                if name in _DATA_FILES or (folder / name).is_file()
            },
        },
        overwrite=True,
    )


def _gram_members(
    prefix: str, grams: Mapping[tuple[int, str], np.ndarray], kind: str = "gram"
) -> dict[str, np.ndarray]:
    """``{prefix}{kind}/{octave}/{layer}``: Grams (``gram``) or mean feature vectors (``mean``), float64."""
    return {f"{prefix}{kind}/{k}/{layer}": np.asarray(g, np.float64) for (k, layer), g in grams.items()}


def _mean_members(prefix: str, means: Mapping[tuple[int, str], np.ndarray] | None, config: Any) -> dict:
    """The mean statistic's targets, for a run that matches it (none otherwise)."""
    if "mean" not in config.descriptor.statistics or means is None:
        return {}
    return _gram_members(prefix, means, "mean")


def _sliced_members(prefix: str, sliced: SlicedTargets | QuantileBank | None) -> dict[str, np.ndarray]:
    """``{prefix}sliced/{source}/{octave}/{layer}``: each source's feature vectors (n, C), float32;
    for a quantile bank ``{prefix}bank_levels`` (L,) float64 and ``{prefix}bank/{octave}/{layer}``
    (draws, L, C) float32, exactly as the run holds them."""
    if sliced is None:
        return {}
    if isinstance(sliced, QuantileBank):
        return {
            f"{prefix}bank_levels": np.asarray(sliced.levels, np.float64),
            **{
                f"{prefix}bank/{k}/{layer}": np.asarray(q, np.float32)
                for (k, layer), q in sliced.quantiles.items()
            },
        }
    return {
        f"{prefix}sliced/{i}/{k}/{layer}": np.asarray(f, np.float32)
        for (k, layer), feats in sliced.features.items()
        for i, f in enumerate(feats)
    }


def _sliced_meta(sliced: SlicedTargets | QuantileBank | None) -> dict[str, Any] | None:
    """What a reader needs to check the sliced members before loading them: weights and row counts,
    or a quantile bank's draws, levels and seed."""
    if sliced is None:
        return None
    if isinstance(sliced, QuantileBank):
        return {"bank": {"draws": sliced.draws, "levels": len(sliced.levels), "seed": int(sliced.seed)}}
    rows = {
        f"{i}/{k}/{layer}": int(f.shape[0])
        for (k, layer), feats in sliced.features.items()
        for i, f in enumerate(feats)
    }
    return {"weights": [float(w) for w in sliced.weights], "rows": rows}


def _sliced_expected(
    prefix: str, meta: Any, *, keys: Sequence[tuple[int, str]]
) -> dict[str, tuple[int, int]]:
    """Shapes of the sliced members that ``meta`` (from :func:`_sliced_meta`) announces, checked.

    Raises ``ValueError`` for a meta that does not describe every source at
    every (octave, layer) with a sane number of rows, or a sane quantile bank.
    (A reader from before quantile banks finds no ``weights`` in a bank's
    meta and refuses the checkpoint.)
    """
    if "bank" in meta:
        bank = meta["bank"]
        draws, levels = _count(bank["draws"], "bank draws", 1), _count(bank["levels"], "bank levels", 1)
        _count(bank["seed"], "bank seed")
        if draws > _MAX_BANK_DRAWS or levels > _MAX_BANK_LEVELS:
            raise ValueError(f"'sliced' bank of {draws} draws × {levels} levels is too large")
        return {
            f"{prefix}bank_levels": (levels,),
            **{f"{prefix}bank/{k}/{layer}": (draws, levels, layer_channels(layer)) for k, layer in keys},
        }
    weights = meta["weights"]
    if not isinstance(weights, list) or not weights or not all(isinstance(w, (int, float)) for w in weights):
        raise ValueError("'sliced' weights must be a list of numbers")
    wanted = {f"{i}/{k}/{layer}" for i in range(len(weights)) for k, layer in keys}
    rows = meta["rows"]
    if not isinstance(rows, dict) or set(rows) != wanted:
        raise ValueError("'sliced' rows do not cover every source, octave and layer")
    out = {}
    for key, n in rows.items():
        layer = key.rsplit("/", 1)[1]
        out[f"{prefix}sliced/{key}"] = (_count(n, "sliced rows", 1), layer_channels(layer))
        if n > MAX_SOURCE_POSITIONS:
            raise ValueError(f"'sliced' rows of {key} exceed {MAX_SOURCE_POSITIONS}")
    return out


def _sliced_from(arrays: Mapping[str, np.ndarray], prefix: str, meta: Any) -> SlicedTargets | QuantileBank:
    """The :class:`SlicedTargets` held by ``{prefix}sliced/…`` members, or the :class:`QuantileBank`
    of ``{prefix}bank…`` ones (shapes already checked)."""
    if "bank" in meta:
        levels = arrays[f"{prefix}bank_levels"].astype(np.float64)
        if levels[0] <= 0 or levels[-1] >= 1 or np.any(np.diff(levels) <= 0):
            raise ValueError("the quantile bank's levels must increase strictly within (0, 1)")
        head = f"{prefix}bank/"
        quantiles = {}
        for name in (n for n in arrays if n.startswith(head)):  # in the run's (octave, layer) order
            k, layer = name[len(head) :].split("/")
            quantiles[(int(k), layer)] = arrays[name].astype(np.float32)
        return QuantileBank(quantiles=quantiles, levels=levels, seed=int(meta["bank"]["seed"]))
    features: dict[tuple[int, str], list[np.ndarray]] = {}
    count = len(meta["weights"])
    for name in sorted(n for n in arrays if n.startswith(prefix + "sliced/")):
        i, k, layer = name[len(prefix) + len("sliced/") :].split("/")
        features.setdefault((int(k), layer), [None] * count)[int(i)] = arrays[name].astype(np.float32)
    return SlicedTargets(features=features, weights=[float(w) for w in meta["weights"]])


def write_checkpoint(
    folder: PathLike,
    *,
    config: SynthesisConfig,
    output: PathLike,
    grams: dict[tuple[int, str], np.ndarray],
    mean_color: np.ndarray,
    sources: list[dict[str, Any]],
    state: Any,
    shape: tuple[int, ...],
    write_targets: bool = True,
    float32_from_iteration: int | None = None,
    sliced: SlicedTargets | None = None,
    sliced_draw: tuple[int, int] | None = None,
    exemplars: Sequence[np.ndarray] = (),
    means: Mapping[tuple[int, str], np.ndarray] | None = None,
    stage: int | None = None,
) -> Path:
    """Write (or refresh) a synthesize checkpoint folder; return its path.

    ``shape`` is the image shape ((H, W, 3), or (N, H, W, 3) for frames) in
    which ``state.x`` and ``state.best_x`` are viewed for the PNGs. The
    targets never change during a run: later checkpoints of the same run
    pass ``write_targets=False``. ``float32_from_iteration``: see :class:`Checkpoint`.
    ``sliced``: the sources' features (or descriptor files' quantile bank) when the run uses the
    sliced statistic;
    ``sliced_draw``: its current draw of directions and the iteration it began at;
    ``exemplars``: the source images, for a run with the spectrum constraint or ``stage_detail``;
    ``means``: the target mean feature vectors, for a run with the mean statistic;
    ``stage``: see :class:`Checkpoint` (``shape`` is then that stage's).
    """
    from ..optim.projected import save_state

    folder = Path(folder)
    with _replacing(folder) as (tmp, previous):
        _write_targets(
            tmp, previous, not write_targets,
            lambda: {
                **_gram_members("", grams), **_sliced_members("", sliced), **_mean_members("", means, config),
                **{f"exemplar/{i}": np.asarray(e, np.float32) for i, e in enumerate(exemplars)},
                "mean_color": np.asarray(mean_color, np.float32),
            },
        )  # fmt: skip
        save_state(tmp / "state.npz", state, overwrite=True)
        current, best = (np.reshape(x, shape) for x in (state.x, state.best_x))
        _write_previews(tmp, *(x if x.ndim == 3 else x[0] for x in (current, best)))
        _write_meta(
            tmp,
            "synthesize",
            {
                "output": str(output),
                "iteration": int(state.iteration),
                "best_loss": float(state.best_loss),
                "config": config.to_dict(),
                "sources": sources,
                "float32_from_iteration": float32_from_iteration,
                "sliced": _sliced_meta(sliced),
                "sliced_draw": None if sliced_draw is None else [int(v) for v in sliced_draw],
                "exemplars": [[int(e.shape[0]), int(e.shape[1])] for e in exemplars],
                "stage": stage,
            },
        )
    return folder


def write_style_checkpoint(
    folder: PathLike,
    *,
    config: StyleConfig,
    output: PathLike,
    content: dict[str, Any],
    styles: list[dict[str, Any]],
    style_blend: Sequence[float],
    contents: Sequence[np.ndarray],
    grams: Sequence[Mapping[tuple[int, str], np.ndarray]] | None,
    position: StylePosition,
    current: np.ndarray,
    best: np.ndarray,
    write_targets: bool = True,
    sliced: Sequence[SlicedTargets | None] = (),
    means: Sequence[Mapping[tuple[int, str], np.ndarray] | None] = (),
    palette: PaletteTarget | None = None,
) -> Path:
    """Write (or refresh) a stylize checkpoint folder; return its path.

    Parameters
    ----------
    contents, grams, sliced, means, palette
        Every stage's targets (see :class:`StyleCheckpoint`); written only
        when ``write_targets`` (they never change during a run) or missing.
    position : StylePosition
        Where the run stands; ``position.image`` is what a resume starts from.
    current, best : np.ndarray
        float (h, w, 3) RGB in [0, 1]: the stage's current and best image,
        saved as 16-bit PNGs for looking at.
    """

    def target_members() -> dict[str, np.ndarray]:
        members = {f"stage{s + 1}/content": np.asarray(c, np.float32) for s, c in enumerate(contents)}
        for s, g in enumerate(grams or ()):
            members.update(_gram_members(f"stage{s + 1}/", g))
        for s, sl in enumerate(sliced):
            members.update(_sliced_members(f"stage{s + 1}/", sl))
        for s, m in enumerate(means):
            members.update(_mean_members(f"stage{s + 1}/", m, config))
        if palette is not None:
            members["palette/quantiles"] = np.asarray(palette.quantiles, np.float64)
            members["palette/variance"] = np.asarray(palette.variance, np.float64)
        return members

    folder = Path(folder)
    with _replacing(folder) as (tmp, previous):
        _write_targets(tmp, previous, not write_targets, target_members)
        write_npz(
            tmp / "state.npz",
            {
                "image": np.asarray(position.image, np.float32),
                "history": np.asarray(position.history, np.float64),
            },
            overwrite=True,
        )
        if position.state is not None:
            from ..optim.projected import save_state

            save_state(tmp / "driver.npz", position.state, overwrite=True)
        _write_previews(tmp, current, best)
        _write_meta(
            tmp,
            "stylize",
            {
                "output": str(output),
                "iteration": position.iterations,
                "best_loss": position.best_loss,
                "config": config.to_dict(),
                "content": content,
                "styles": styles,
                "style_blend": [float(w) for w in style_blend],
                "stage_sizes": [[int(h), int(w)] for h, w in (c.shape[:2] for c in contents)],
                "stage": position.stage + 1,
                "stage_iterations": position.stage_iterations,
                "stage_evaluations": position.stage_evaluations,
                "stage_elapsed_s": position.stage_elapsed_s,
                "stages": position.stages,
                "sliced": [_sliced_meta(sl) for sl in sliced],
                "palette_directions": None if palette is None else int(palette.quantiles.shape[1]),
                "driver_state": None if position.state is None else int(position.state.iteration),
            },
        )
    return folder


# --------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------


def _read_meta(
    folder: PathLike, *, kind: str | None = None, verify: bool = True
) -> tuple[Path, dict[str, Any]]:
    """Read ``checkpoint.json``; check the format, version, kind (``kind``, if given) and
    (``verify``) the data files' hashes."""
    folder = find_checkpoint(folder) or Path(folder)
    meta_path = folder / "checkpoint.json"
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: no such checkpoint folder")
    if not meta_path.is_file():
        raise CheckpointError(f"{folder}: checkpoint.json is missing; not a (complete) checkpoint")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{folder}: checkpoint.json is unreadable: {exc}") from exc
    if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
        raise CheckpointError(f"{folder}: checkpoint.json is not a multiscale checkpoint")
    version = meta.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise CheckpointError(f"{folder}: checkpoint.json has no valid version ({version!r})")
    if version > CHECKPOINT_VERSION:
        raise CheckpointError(
            f"{folder}: checkpoint version {version!r} is newer than this multiscale; upgrade"
        )
    meta.setdefault("kind", "synthesize")
    if meta["kind"] not in KINDS:
        raise CheckpointError(f"{folder}: checkpoint.json names an unknown kind of run {meta['kind']!r}")
    if kind is not None and meta["kind"] != kind:
        raise CheckpointError(
            f"{folder}: a {meta['kind']} checkpoint, not a {kind} one; continue it with "
            f"`multiscale resume {folder}`"
        )
    hashes = meta.get("sha256")
    if not verify:
        return folder, meta
    if not isinstance(hashes, dict):
        raise CheckpointError(f"{folder}: checkpoint.json has a bad or missing field: 'sha256'")
    for name in (*_DATA_FILES, *(n for n in _OPTIONAL_DATA if n in hashes)):
        path = folder / name
        if not path.is_file():
            raise CheckpointError(f"{folder}: {name} is missing")
        if file_sha256(path) != hashes.get(name):
            raise CheckpointError(
                f"{folder}: {name} changed after checkpoint.json was written; refusing to mix"
            )
    return folder, meta


def checkpoint_kind(folder: PathLike) -> str:
    """``"synthesize"`` or ``"stylize"``: which job wrote the checkpoint in ``folder``.

    Only ``checkpoint.json`` is read; :func:`read_checkpoint` and
    :func:`read_style_checkpoint` check the rest.

    Raises
    ------
    CheckpointError
        As :func:`read_checkpoint`, for the folder and its JSON.
    """
    return str(_read_meta(folder, verify=False)[1]["kind"])


def checkpoint_config(folder: PathLike) -> SynthesisConfig | StyleConfig:
    """The run's resolved config, from ``checkpoint.json`` alone (no data file is read).

    For planning a resume before its state is loaded, e.g. its memory.

    Raises
    ------
    CheckpointError
        As :func:`read_checkpoint`, for the folder and its JSON.
    """
    folder, meta = _read_meta(folder, verify=False)
    kind = StyleConfig if meta["kind"] == "stylize" else SynthesisConfig
    try:
        return kind.from_dict(meta["config"])
    except (KeyError, TypeError, ValueError, ConfigError) as exc:
        raise CheckpointError(f"{folder}: checkpoint.json has a bad or missing field: {exc}") from exc


def checkpoint_holds_bank(folder: PathLike) -> bool:
    """Whether a synthesize checkpoint's targets hold a descriptor's quantile bank, from
    ``checkpoint.json`` alone: for planning a resume's memory before its data is read.

    Raises
    ------
    CheckpointError
        As :func:`read_checkpoint`, for the folder and its JSON.
    """
    sliced = _read_meta(folder, kind="synthesize", verify=False)[1].get("sliced")
    return isinstance(sliced, dict) and "bank" in sliced


def style_checkpoint_sizes(folder: PathLike) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """A stylize checkpoint's stage sizes and its styles' sizes as loaded, (height, width) each,
    from ``checkpoint.json`` alone: for planning a resume's memory before its data is read.

    Raises
    ------
    CheckpointError
        As :func:`read_style_checkpoint`, for the folder and its JSON.
    """
    folder, meta = _read_meta(folder, kind="stylize", verify=False)
    try:
        sizes = [(_count(h, "stage_sizes", 1), _count(w, "stage_sizes", 1)) for h, w in meta["stage_sizes"]]
        styles = [(_count(s["height"], "styles", 1), _count(s["width"], "styles", 1)) for s in meta["styles"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{folder}: checkpoint.json has a bad or missing field: {exc}") from exc
    if not sizes:
        raise CheckpointError(f"{folder}: checkpoint.json has no stage sizes")
    return sizes, styles


def read_checkpoint(folder: PathLike) -> Checkpoint:
    """Read and check a synthesize checkpoint folder.

    After a crash between the two renames of a checkpoint swap, ``folder``
    is missing and the previous checkpoint (``FOLDER.old-XXXX``) is read; the
    returned ``folder`` is still ``folder``, where a resumed run writes.

    The optimiser state is read into the memory a resumed run takes over
    (:func:`multiscale.optim.projected.load_state` with the run's ``history``): give
    the :class:`Checkpoint` itself to
    :func:`~multiscale.jobs.synthesize.resume_synthesis` and the run holds its
    state once; the state's arrays are then the run's and change as it goes.

    Raises
    ------
    CheckpointError
        Missing or incomplete folder, another format or a newer version, a
        stylize checkpoint, files that changed since the JSON was written,
        hostile arrays. The message starts with the folder (or the file).
    """
    from ..optim.projected import load_state

    name = Path(folder)  # where later checkpoints go, even if this one is read from FOLDER.old-XXXX
    folder, meta = _read_meta(folder, kind="synthesize")
    try:
        config = SynthesisConfig.from_dict(_older_defaults(meta["config"], meta["version"]))
        output = str(meta["output"])
        sources = list(meta.get("sources", []))
        switched = meta.get("float32_from_iteration")
        if switched is not None:
            switched = _count(switched, "float32_from_iteration")
        draw = meta.get("sliced_draw")
        if draw is not None:
            draw = (_count(draw[0], "sliced_draw"), _count(draw[1], "sliced_draw"))
            if len(meta["sliced_draw"]) != 2 or draw[1] > _count(meta["iteration"], "iteration"):
                raise ValueError(f"'sliced_draw' {meta['sliced_draw']!r} does not fit the iteration")
        stage = meta.get("stage")
        if stage is not None:
            stage = _count(stage, "stage")
            if stage >= min(config.descriptor.octaves, MAX_STAGES):
                raise ValueError(f"'stage' {stage} is past the run's stages")
    except (KeyError, TypeError, ValueError, ConfigError) as exc:
        raise CheckpointError(f"{folder}: checkpoint.json has a bad or missing field: {exc}") from exc
    d = config.descriptor
    expected = {f"gram/{k}/{layer}": _gram_shape(layer) for k, layer in d.octave_layers()}
    expected["mean_color"] = (3,)
    sliced_meta = meta.get("sliced") if "sliced" in d.statistics else None
    try:
        sizes = [(_count(h, "exemplars", 1), _count(w, "exemplars", 1)) for h, w in meta.get("exemplars", [])]
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{folder}: checkpoint.json has a bad 'exemplars' field: {exc}") from exc
    if (config.spectrum_weight or 0.0) > 0 and not sizes:
        raise CheckpointError(
            f"{folder}: the run's spectrum constraint needs its source images, not saved here"
        )
    expected.update({f"exemplar/{i}": (h, w, 3) for i, (h, w) in enumerate(sizes)})
    expected.update(_mean_shapes("", d))
    try:
        if "sliced" in d.statistics:
            expected.update(_sliced_expected("", sliced_meta, keys=d.octave_layers()))
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(
            f"{folder}: checkpoint.json has a bad or missing 'sliced' field: {exc}"
        ) from exc
    arrays = _read_arrays(folder / "targets.npz", expected, fit="the run's layers")
    try:
        sliced = None if sliced_meta is None else _sliced_from(arrays, "", sliced_meta)
    except ValueError as exc:
        raise CheckpointError(f"{folder}: targets.npz: {exc}") from None
    return Checkpoint(
        folder=name, config=config, output=output, grams=_grams(arrays, ""),
        mean_color=arrays["mean_color"].astype(np.float32), sources=sources,
        sliced=sliced, sliced_draw=draw,
        exemplars=[arrays[f"exemplar/{i}"].astype(np.float32) for i in range(len(sizes))],
        means=_grams(arrays, "", "mean") if "mean" in d.statistics else None,
        state=load_state(folder / "state.npz", history=config.history), float32_from_iteration=switched,
        stage=stage,
    )  # fmt: skip


def read_style_checkpoint(folder: PathLike) -> StyleCheckpoint:
    """Read and check a stylize checkpoint folder.

    Every field of the JSON is checked for type and consistency (stage
    index within the plan, iterations matching the history), and every array
    against the shape the config and stage sizes give it.

    Raises
    ------
    CheckpointError
        As :func:`read_checkpoint`; the message starts with the folder or
        names the file at fault.
    """
    name = Path(folder)
    folder, meta = _read_meta(folder, kind="stylize")
    try:
        config = StyleConfig.from_dict(_older_defaults(meta["config"], meta["version"]))
        output = str(meta["output"])
        content = dict(meta["content"])
        styles = [dict(s) for s in meta["styles"]]
        blend = [float(w) for w in meta["style_blend"]]
        sizes = [(_count(h, "stage_sizes", 1), _count(w, "stage_sizes", 1)) for h, w in meta["stage_sizes"]]
        stage = _count(meta["stage"], "stage", 1) - 1
        stage_iterations = _count(meta["stage_iterations"], "stage_iterations")
        stage_evaluations = _count(meta["stage_evaluations"], "stage_evaluations")
        stage_elapsed_s = float(meta["stage_elapsed_s"])
        best_loss = None if meta["best_loss"] is None else float(meta["best_loss"])
        stages = [dict(s) for s in meta["stages"]]
        done = sum(_count(s["iterations"], "stages") for s in stages)
        # absent in older checkpoints, None where the run had no palette term
        raw_directions = meta.get("palette_directions")
        directions = (
            _OLDER_PALETTE_DIRECTIONS
            if raw_directions is None
            else _count(raw_directions, "palette_directions", 1)
        )
    except (KeyError, TypeError, ValueError, ConfigError) as exc:
        raise CheckpointError(f"{folder}: checkpoint.json has a bad or missing field: {exc}") from exc
    if not sizes or stage >= len(sizes) or len(stages) != stage or len(blend) != len(styles):
        raise CheckpointError(
            f"{folder}: checkpoint.json is inconsistent: stage {stage + 1} of {len(sizes)} with "
            f"{len(stages)} finished, {len(blend)} weights for {len(styles)} styles"
        )
    if meta.get("iteration") != done + stage_iterations:
        raise CheckpointError(
            f"{folder}: checkpoint.json is inconsistent: iteration {meta.get('iteration')!r}, "
            f"but its stages add up to {done + stage_iterations}"
        )
    d = config.descriptor
    expected = {f"stage{s + 1}/content": (h, w, 3) for s, (h, w) in enumerate(sizes)}
    if config.style_weight > 0:
        for s in range(len(sizes)):
            expected.update(
                {f"stage{s + 1}/gram/{k}/{layer}": _gram_shape(layer) for k, layer in d.octave_layers()}
            )
            expected.update(_mean_shapes(f"stage{s + 1}/", d))
    if config.uses_palette_term:
        expected.update({"palette/quantiles": (PALETTE_LEVELS, directions), "palette/variance": ()})
    sliced_meta: list[Any] = []
    if config.style_weight > 0 and "sliced" in d.statistics:
        try:
            sliced_meta = list(meta["sliced"])
            if len(sliced_meta) != len(sizes):
                raise ValueError("one entry per stage is needed")
            for s, m in enumerate(sliced_meta):
                expected.update(_sliced_expected(f"stage{s + 1}/", m, keys=d.octave_layers()))
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(
                f"{folder}: checkpoint.json has a bad or missing 'sliced' field: {exc}"
            ) from exc
    targets = _read_arrays(folder / "targets.npz", expected, fit="the run's stages and layers")
    channels = 1 if config.preserve_color == "luminance" else 3
    state = _read_arrays(
        folder / "state.npz",
        {"image": (*sizes[stage], channels), "history": (done + stage_iterations,)},
        fit="a stylize checkpoint",
    )
    position = StylePosition(
        stage=stage, stage_iterations=stage_iterations, stage_evaluations=stage_evaluations,
        stage_elapsed_s=stage_elapsed_s, best_loss=best_loss, stages=stages,
        image=np.clip(state["image"], 0.0, 1.0).astype(np.float32), history=state["history"].astype(np.float64),
        state=_driver_state(folder, meta, config, size=int(np.prod(state["image"].shape)), done=stage_iterations),
    )  # fmt: skip
    return StyleCheckpoint(
        folder=name, config=config, output=output, content=content, styles=styles, style_blend=blend,
        stage_sizes=sizes, contents=[targets[f"stage{s + 1}/content"].astype(np.float32) for s in range(len(sizes))],
        grams=[_grams(targets, f"stage{s + 1}/") for s in range(len(sizes))] if config.style_weight > 0 else None,
        position=position,
        sliced=[_sliced_from(targets, f"stage{s + 1}/", m) for s, m in enumerate(sliced_meta)],
        means=(
            [_grams(targets, f"stage{s + 1}/", "mean") for s in range(len(sizes))]
            if config.style_weight > 0 and "mean" in d.statistics
            else []
        ),
        palette=(
            PaletteTarget(
                quantiles=targets["palette/quantiles"].astype(np.float64),
                variance=float(targets["palette/variance"]),
            )
            if config.uses_palette_term
            else None
        ),
    )  # fmt: skip


def _driver_state(folder: Path, meta: dict[str, Any], config: StyleConfig, *, size: int, done: int) -> Any:
    """The projected driver's state of a stylize checkpoint, checked against its stage (``None``: none kept)."""
    iteration = meta.get("driver_state")
    if iteration is None:
        return None
    from ..optim.projected import load_state

    state = load_state(folder / "driver.npz", history=config.history)
    if state.size != size or state.iteration != iteration or state.iteration > done:
        raise CheckpointError(
            f"{folder}: driver.npz does not fit its stage ({state.size} variables at iteration "
            f"{state.iteration}; the stage has {size} and {done} iterations)"
        )
    return state


#: Settings that checkpoints written before they existed ran with (not today's defaults).
_OLDER_DESCRIPTOR = {"statistics": ["gram"]}
_OLDER_RUN = {
    "spectrum_weight": 0.0, "stages": 1, "spectrum_peaks": "spread", "spectrum_last_stage": 1.0,
    "spectrum_long_waves": "keep", "stage_detail": False, "spectrum_taper": 0.0,
}  # fmt: skip
_OLDER_STYLE = {"content_target": "content", "palette_weight": 0.0}
#: Directions of the palette term in checkpoints that do not record them (they had 16).
_OLDER_PALETTE_DIRECTIONS = 16


def _older_defaults(config: Any, version: int) -> Any:
    """A checkpoint's config with the settings its version did not record filled in as it ran."""
    if not isinstance(config, dict) or not isinstance(config.get("descriptor"), dict):
        return config  # from_dict says what is wrong
    descriptor = {**_OLDER_DESCRIPTOR, **config["descriptor"]}
    layers = descriptor.get("layers")
    if version < 3 and descriptor.get("layer_weights") is None and isinstance(layers, list):
        descriptor["layer_weights"] = [1.0] * len(layers)  # None meant all 1 then
    out = {**config, "descriptor": descriptor}
    if "frames" in config:  # a synthesis config
        out = {**_OLDER_RUN, **out}
    elif "content_layers" in config:  # a style config
        out = {**_OLDER_STYLE, **out}
    return out


def _count(value: Any, name: str, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name!r} must hold integers ≥ {minimum}, got {value!r}")
    return value


def _gram_shape(layer: str) -> tuple[int, int]:
    c = layer_channels(layer)
    return (c, c)


def _mean_shapes(prefix: str, d: Any) -> dict[str, tuple[int]]:
    """Shapes of the ``{prefix}mean/{octave}/{layer}`` members a run with the mean statistic holds."""
    if "mean" not in d.statistics:
        return {}
    return {f"{prefix}mean/{k}/{layer}": (layer_channels(layer),) for k, layer in d.octave_layers()}


def _grams(
    arrays: Mapping[str, np.ndarray], prefix: str, kind: str = "gram"
) -> dict[tuple[int, str], np.ndarray]:
    """The ``{prefix}{kind}/{octave}/{layer}`` members (Grams, or ``mean`` vectors), keyed by
    (octave, layer), float64."""
    grams = {}
    for name, a in arrays.items():
        if name.startswith(f"{prefix}{kind}/"):
            k, layer = name[len(prefix) + len(kind) + 1 :].split("/")
            grams[(int(k), layer)] = a.astype(np.float64)
    return grams


def _read_arrays(path: Path, expected: Mapping[str, tuple[int, ...]], *, fit: str) -> dict[str, np.ndarray]:
    """The float32 or float64 members of an ``.npz``, checked (:mod:`multiscale.npz`) before they are read.

    ``expected`` maps every member name to its shape; ``fit`` says what the
    members must fit, for the error message. Values must be finite.
    """
    schema = {name: Member(shape, _FLOATS, finite=True) for name, shape in expected.items()}
    return read_npz(
        path, schema, error=CheckpointError, what="a checkpoint file", fit=fit, max_bytes=_MAX_DATA_BYTES,
        max_members=_MAX_MEMBERS, max_directory_bytes=_MAX_DIRECTORY_BYTES,
    )  # fmt: skip


__all__ = [
    "CHECKPOINT_VERSION",
    "Checkpoint",
    "StyleCheckpoint",
    "StylePosition",
    "checkpoint_config",
    "checkpoint_holds_bank",
    "checkpoint_kind",
    "default_folder",
    "find_checkpoint",
    "read_checkpoint",
    "read_style_checkpoint",
    "save_then_checkpoint",
    "write_checkpoint",
    "write_style_checkpoint",
]
