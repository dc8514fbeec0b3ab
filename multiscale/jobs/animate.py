"""Animated output: the frames of a ``--frames`` run written as a set (numbered
PNGs and an animated WebP/GIF/APNG), and their inter-frame change.

The objective that couples the frames is
:class:`multiscale.objectives.frames.FramesObjective`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import OutputError
from ..io import PathLike, atomic_outputs, save_image
from ..objectives.frames import frame_pairs

#: Extensions of the animated file written beside the numbered frames.
ANIMATION_FORMATS = {".webp": "WEBP", ".gif": "GIF", ".png": "PNG", ".apng": "PNG"}


def interframe_rms(frames: np.ndarray, *, loop: bool) -> np.ndarray:
    """RMS pixel difference of each coupled pair, for (N, H, W, 3) frames."""
    return np.array(
        [np.sqrt(np.mean((frames[b] - frames[a]) ** 2)) for a, b in frame_pairs(len(frames), loop=loop)]
    )


def frame_path(output: PathLike, index: int) -> Path:
    """``out.png`` → ``out.frame0003.png`` (1-based, zero-padded)."""
    p = Path(output)
    return p.with_name(f"{p.stem}.frame{index + 1:04d}{p.suffix}")


def save_frames(
    output: PathLike,
    frames: np.ndarray | Sequence[np.ndarray],
    *,
    animation: PathLike | None,
    bit_depth: int = 8,
    duration_ms: int = 80,
    overwrite: bool = False,
) -> list[Path]:
    """Write numbered frames and, if ``animation`` is given, one animated file.

    Parameters
    ----------
    output : path
        Pattern for the frames: ``out.png`` gives ``out.frame0001.png`` …
    frames : (N, H, W, 3) float array in [0, 1]
    animation : path or None
        ``.webp``, ``.gif`` or ``.apng``/``.png`` (8-bit, looping forever).
    duration_ms : int
        Display time of each frame in the animation.

    Returns
    -------
    list of Path
        Every file written (frames first, then the animation).

    The files appear as a set (:func:`multiscale.io.atomic_outputs`): all
    are written and flushed before any replaces an earlier one, so a full
    disk or an interrupt leaves the previous set whole.
    """
    if animation is not None:
        ext = Path(animation).suffix.lower()
        if ext not in ANIMATION_FORMATS:
            raise OutputError(f"{animation}: animations are written as {', '.join(ANIMATION_FORMATS)}")
    written = [frame_path(output, i) for i in range(len(frames))]
    if animation is not None:
        written.append(Path(animation))
    with atomic_outputs(written, overwrite=overwrite) as tmps:
        for target, tmp, frame in zip(written, tmps, frames, strict=False):
            try:
                save_image(tmp, frame, bit_depth=bit_depth, overwrite=True)
            except OutputError as exc:
                reason = getattr(exc.__cause__, "strerror", None) or exc
                raise OutputError(f"{target}: cannot write: {reason}") from exc
        if animation is not None:
            images = [Image.fromarray(np.round(np.clip(f, 0, 1) * 255).astype(np.uint8)) for f in frames]
            try:
                with open(tmps[-1], "wb") as fh:
                    images[0].save(
                        fh, format=ANIMATION_FORMATS[ext], save_all=True, append_images=images[1:],
                        duration=duration_ms, loop=0, **({"lossless": True} if ext == ".webp" else {}),
                    )  # fmt: skip
            except OSError as exc:
                raise OutputError(f"{animation}: cannot write: {exc.strerror or exc}") from exc
    return written
