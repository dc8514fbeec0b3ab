"""Animated textures: N frames that each match the source, pulled toward each other.

The frames are optimised jointly. The objective is

    L = (1/N) Σᵢ S(fᵢ)  +  λ · (1/P) Σᵢ ‖fᵢ₊₁ − fᵢ‖² / (H·W·3)

where S is the multiscale style loss of one frame, λ is ``frame_weight``,
and the pairs run over consecutive frames (P = N − 1), plus the pair
(last, first) when ``loop`` is set (P = N). The inter-frame term is a mean
squared pixel difference (pixels in [0, 1]), so λ ≈ 1 balances a style loss
of 0.01 against a frame-to-frame RMS change of 0.1.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from .errors import OutputError
from .io import PathLike, atomic_outputs, save_image

Objective = Callable[[np.ndarray], tuple[float, np.ndarray]]

#: Extensions of the animated file written beside the numbered frames.
ANIMATION_FORMATS = {".webp": "WEBP", ".gif": "GIF", ".png": "PNG", ".apng": "PNG"}


def frame_pairs(frames: int, *, loop: bool) -> list[tuple[int, int]]:
    """Index pairs coupled by the inter-frame term."""
    pairs = [(i, i + 1) for i in range(frames - 1)]
    if loop and frames > 2:
        pairs.append((frames - 1, 0))
    return pairs


class FramesObjective:
    """Loss and gradient of N frames: mean style loss plus inter-frame coupling.

    Parameters
    ----------
    style : callable
        ``style(x) -> (loss, grad)`` for one frame's flat float64 pixels.
    frames : int ≥ 1
    frame_weight : float ≥ 0
        λ in the module formula.
    loop : bool
        Also couple the last frame to the first.
    frame_size : int
        H·W·3, the length of one frame's pixel vector.
    """

    def __init__(
        self, style: Objective, *, frames: int, frame_weight: float, loop: bool, frame_size: int
    ) -> None:
        self.style = style
        self.frames = frames
        self.frame_weight = frame_weight
        self.frame_size = frame_size
        self.pairs = frame_pairs(frames, loop=loop)
        self.last_frame_losses: np.ndarray | None = None

    def __call__(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        """Loss and gradient at the flat float64 vector of all frames (frame-major)."""
        f = x.reshape(self.frames, self.frame_size)
        grad = np.empty_like(f)
        style_losses = np.empty(self.frames)
        for i in range(self.frames):
            loss_i, grad_i = self.style(f[i])
            style_losses[i] = loss_i
            grad[i] = grad_i / self.frames
        self.last_frame_losses = style_losses
        total = float(style_losses.mean())
        if self.pairs and self.frame_weight > 0:
            scale = self.frame_weight / (len(self.pairs) * self.frame_size)
            for a, b in self.pairs:
                d = f[b] - f[a]
                total += scale * float(d @ d)
                grad[b] += 2 * scale * d
                grad[a] -= 2 * scale * d
        return total, grad.reshape(-1)


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
