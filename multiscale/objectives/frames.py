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

import numpy as np

from .base import Evaluation, Objective, Wrapping


def frame_pairs(frames: int, *, loop: bool) -> list[tuple[int, int]]:
    """Index pairs coupled by the inter-frame term."""
    pairs = [(i, i + 1) for i in range(frames - 1)]
    if loop and frames > 2:
        pairs.append((frames - 1, 0))
    return pairs


class FramesObjective(Wrapping):
    """Loss and gradient of N frames: mean style loss plus inter-frame coupling.

    Parameters
    ----------
    style : Objective
        The objective of one frame (its flat pixels).
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
        self.inner = style
        self.shape = (frames, *style.shape[1:])
        self.size = frames * frame_size
        self.config = style.config
        self.redraw_every = style.redraw_every
        self.frames = frames
        self.frame_weight = frame_weight
        self.frame_size = frame_size
        self.pairs = frame_pairs(frames, loop=loop)

    def __call__(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        """Loss and gradient at the flat float64 vector of all frames (frame-major)."""
        f = x.reshape(self.frames, self.frame_size)
        grad = np.empty_like(f)
        evaluations = []
        for i in range(self.frames):
            _, grad_i = self.inner(f[i])
            if self.inner.last is None:
                raise RuntimeError("the frame objective recorded no evaluation")
            evaluations.append(self.inner.last)
            grad[i] = grad_i / self.frames
        total, squares = self._coupled(f, float(np.mean([e.total for e in evaluations])), grad)
        self.last = self._combined(evaluations, squares, total)
        return total, grad.reshape(-1)

    def evaluate(self, image: np.ndarray) -> Evaluation:
        """Value of (frames, H, W, 3) frames: each frame's terms averaged, plus ``frames``
        (the inter-frame term, unweighted)."""
        f = np.reshape(image, (self.frames, -1)).astype(np.float64)
        evaluations = [self.inner.evaluate(np.reshape(fi, self.shape[1:])) for fi in f]
        total, squares = self._coupled(f, float(np.mean([e.total for e in evaluations])))
        return self._combined(evaluations, squares, total)

    def _coupled(self, f: np.ndarray, total: float, grad: np.ndarray | None = None) -> tuple[float, float]:
        """``total`` plus the inter-frame term of the frames ``f`` (frames, n), and ``Σ ‖f_b − f_a‖²``
        over the pairs; with ``grad`` (frames, n), the term's gradient is added into it."""
        squares = 0.0
        if self.pairs and self.frame_weight > 0:
            scale = self.frame_weight / (len(self.pairs) * self.frame_size)
            for a, b in self.pairs:
                d = f[b] - f[a]
                square = float(d @ d)
                total += scale * square
                squares += square
                if grad is not None:
                    grad[b] += 2 * scale * d
                    grad[a] -= 2 * scale * d
        return total, squares

    def _combined(self, evaluations: list[Evaluation], squares: float, total: float) -> Evaluation:
        """Each frame's terms averaged, plus ``frames``: the mean squared inter-frame difference."""
        terms = {n: float(np.mean([e.terms[n] for e in evaluations])) for n in evaluations[0].terms}
        weights = dict(evaluations[0].weights)
        terms["frames"] = squares / (len(self.pairs) * self.frame_size) if self.pairs else 0.0
        weights["frames"] = self.frame_weight
        octave_losses = np.mean([e.octave_losses for e in evaluations], axis=0)
        return Evaluation(total=total, terms=terms, weights=weights, octave_losses=octave_losses)
