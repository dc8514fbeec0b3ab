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

from collections.abc import Callable

import numpy as np

Objective = Callable[[np.ndarray], tuple[float, np.ndarray]]


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
