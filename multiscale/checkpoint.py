"""Checkpoints of a synthesis run: stop it, continue it later, same result.

A checkpoint is a folder (``OUTPUT.ckpt/`` by default) holding:

``checkpoint.json``
    format version, the resolved config, the final output's path, the
    sources' provenance, and the sha256 of the two ``.npz`` files; written
    last, so a folder without it (or with stale hashes) is incomplete.
``targets.npz``
    the joined target Grams and the mean colour, so a resume needs neither
    the source photos nor the network pass over them.
``state.npz``
    the projected L-BFGS state (:mod:`multiscale.lbfgs`): iterate, pairs,
    counters, best point — a resumed run continues bit for bit.
``current.png``, ``best.png``
    the current and the best image, for looking at (16-bit PNG).

Every file is written atomically; a crash mid-checkpoint leaves the previous
complete checkpoint readable (the JSON still names the old hashes, so a
half-replaced folder is refused rather than silently mixed).
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .config import SynthesisConfig
from .errors import CheckpointError, ConfigError
from .io import PathLike, atomic_output, file_sha256, save_image, write_json_atomic
from .layers import layer_channels

CHECKPOINT_VERSION = 1
_MAX_MEMBER_BYTES = 1 << 30


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint read back from disk.

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
    state : multiscale.lbfgs.LBFGSState
    """

    folder: Path
    config: SynthesisConfig
    output: str
    grams: dict[tuple[int, str], np.ndarray]
    mean_color: np.ndarray
    sources: list[dict[str, Any]]
    state: Any


def default_folder(output: PathLike) -> Path:
    """``out.png`` → ``out.png.ckpt``."""
    p = Path(output)
    return p.with_name(p.name + ".ckpt")


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
) -> Path:
    """Write (or refresh) a checkpoint folder; return its path.

    ``shape`` is the image shape ((H, W, 3), or (N, H, W, 3) for frames) in
    which ``state.x`` and ``state.best_x`` are viewed for the PNGs. The
    targets never change during a run: later checkpoints of the same run
    pass ``write_targets=False``.
    """
    from .lbfgs import save_state

    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CheckpointError(
            f"{folder}: cannot create the checkpoint folder: {exc.strerror or exc}"
        ) from exc
    targets = folder / "targets.npz"
    if write_targets or not targets.exists():
        members = {f"gram/{k}/{layer}": np.asarray(g, np.float64) for (k, layer), g in grams.items()}
        members["mean_color"] = np.asarray(mean_color, np.float32)
        with atomic_output(targets, overwrite=True) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, **members)
    save_state(folder / "state.npz", state, overwrite=True)
    for name, x in (("current.png", state.x), ("best.png", state.best_x)):
        image = np.clip(np.reshape(x, shape), 0.0, 1.0)
        first = image if image.ndim == 3 else image[0]
        save_image(folder / name, first, bit_depth=16, overwrite=True)
    write_json_atomic(
        folder / "checkpoint.json",
        {
            "format": "multiscale-checkpoint",
            "version": CHECKPOINT_VERSION,
            "output": str(output),
            "iteration": int(state.iteration),
            "best_loss": float(state.best_loss),
            "config": config.to_dict(),
            "sources": sources,
            "sha256": {"targets.npz": file_sha256(targets), "state.npz": file_sha256(folder / "state.npz")},
        },
        overwrite=True,
    )
    return folder


def read_checkpoint(folder: PathLike) -> Checkpoint:
    """Read and check a checkpoint folder.

    Raises
    ------
    CheckpointError
        Missing or incomplete folder, another format or a newer version,
        files that changed since the JSON was written, hostile arrays. The
        message starts with the folder.
    """
    from .lbfgs import load_state

    folder = Path(folder)
    meta_path = folder / "checkpoint.json"
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: no such checkpoint folder")
    if not meta_path.is_file():
        raise CheckpointError(f"{folder}: checkpoint.json is missing; not a (complete) checkpoint")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{folder}: checkpoint.json is unreadable: {exc}") from exc
    if not isinstance(meta, dict) or meta.get("format") != "multiscale-checkpoint":
        raise CheckpointError(f"{folder}: checkpoint.json is not a multiscale checkpoint")
    version = meta.get("version")
    if not isinstance(version, int) or version > CHECKPOINT_VERSION:
        raise CheckpointError(
            f"{folder}: checkpoint version {version!r} is newer than this multiscale; upgrade"
        )
    try:
        config = SynthesisConfig.from_dict(meta["config"])
        output = str(meta["output"])
        sources = list(meta.get("sources", []))
        hashes = dict(meta["sha256"])
    except (KeyError, TypeError, ConfigError) as exc:
        raise CheckpointError(f"{folder}: checkpoint.json has a bad or missing field: {exc}") from exc
    for name in ("targets.npz", "state.npz"):
        path = folder / name
        if not path.is_file():
            raise CheckpointError(f"{folder}: {name} is missing")
        if file_sha256(path) != hashes.get(name):
            raise CheckpointError(
                f"{folder}: {name} changed after checkpoint.json was written; refusing to mix"
            )
    grams, mean_color = _read_targets(folder / "targets.npz", config)
    return Checkpoint(
        folder=folder, config=config, output=output, grams=grams, mean_color=mean_color,
        sources=sources, state=load_state(folder / "state.npz"),
    )  # fmt: skip


def _read_targets(
    path: Path, config: SynthesisConfig
) -> tuple[dict[tuple[int, str], np.ndarray], np.ndarray]:
    d = config.descriptor
    expected = {
        f"gram/{k}/{layer}": (layer_channels(layer),) * 2 for k in range(d.octaves) for layer in d.layers
    }
    expected["mean_color"] = (3,)
    try:
        with zipfile.ZipFile(path) as zf:
            names = {n.removesuffix(".npy") for n in zf.namelist()}
            if names != set(expected):
                raise CheckpointError(
                    f"{path}: members {sorted(names ^ set(expected))} do not fit the run's layers"
                )
            if sum(i.file_size for i in zf.infolist()) > _MAX_MEMBER_BYTES:
                raise CheckpointError(f"{path}: larger than any run's targets can be")
        with np.load(path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in expected}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise CheckpointError(f"{path}: unreadable targets file: {exc}") from exc
    for name, shape in expected.items():
        a = arrays[name]
        if a.shape != shape or a.dtype.kind != "f" or not np.isfinite(a).all():
            raise CheckpointError(f"{path}: {name} has shape {a.shape} {a.dtype}, expected finite {shape}")
    grams = {}
    for name, a in arrays.items():
        if name.startswith("gram/"):
            _, k, layer = name.split("/")
            grams[(int(k), layer)] = a.astype(np.float64)
    return grams, arrays["mean_color"].astype(np.float32)
