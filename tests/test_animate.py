"""Animated textures: the joint objective of N frames and the files written."""

import numpy as np
import pytest
from PIL import Image

from multiscale.errors import OutputError
from multiscale.jobs.animate import interframe_rms, save_frames
from multiscale.objectives.base import Objective, texture_evaluation
from multiscale.objectives.frames import FramesObjective, frame_pairs
from multiscale.optim.lbfgsb import minimize

N, SIZE = 4, 12


class Toy(Objective):
    """A stand-in frame objective with the protocol of every objective: ``fn(x) -> (loss, grad)``."""

    def __init__(self, fn):
        self.fn, self.shape, self.size, self.config = fn, (1, 1, SIZE, 1), SIZE, None

    def __call__(self, x):
        loss, grad = self.fn(np.reshape(x, -1))
        self.last = texture_evaluation(loss, np.array([loss]))
        return loss, grad

    def evaluate(self, image):
        return texture_evaluation(self.fn(np.reshape(image, -1))[0], np.zeros(1))


def _toy_style(x):
    """A per-frame loss with a known minimum (0.3 everywhere)."""
    d = x - 0.3
    return float(d @ d), 2 * d


toy_style = Toy(_toy_style)


def test_pairs_are_consecutive_and_loop_closes_the_cycle():
    assert frame_pairs(4, loop=False) == [(0, 1), (1, 2), (2, 3)]
    assert frame_pairs(4, loop=True) == [(0, 1), (1, 2), (2, 3), (3, 0)]
    assert frame_pairs(1, loop=True) == []


@pytest.mark.parametrize("loop", [False, True])
def test_gradient_matches_central_differences(loop):
    obj = FramesObjective(toy_style, frames=N, frame_weight=2.5, loop=loop, frame_size=SIZE)
    rng = np.random.default_rng(0)
    x = rng.uniform(size=N * SIZE)
    _, g = obj(x)
    h = 1e-6
    for i in rng.choice(x.size, 6, replace=False):
        e = np.zeros_like(x)
        e[i] = h
        assert g[i] == pytest.approx((obj(x + e)[0] - obj(x - e)[0]) / (2 * h), rel=1e-6, abs=1e-9)


def test_zero_frame_weight_is_the_mean_style_loss():
    obj = FramesObjective(toy_style, frames=N, frame_weight=0.0, loop=True, frame_size=SIZE)
    x = np.random.default_rng(1).uniform(size=N * SIZE)
    expected = np.mean([toy_style(f)[0] for f in x.reshape(N, SIZE)])
    assert obj(x)[0] == pytest.approx(expected)


def test_the_breakdown_adds_up_to_the_total():
    """``evaluate`` and the breakdown of a call agree; total = Σ weight · term."""
    obj = FramesObjective(toy_style, frames=N, frame_weight=2.5, loop=True, frame_size=SIZE)
    x = np.random.default_rng(3).uniform(size=N * SIZE)
    total, _ = obj(x)
    scored = obj.evaluate(x.reshape(obj.shape))
    assert scored.total == pytest.approx(total, rel=1e-12) and obj.last.total == total
    assert scored.terms["frames"] > 0 and set(scored.terms) == {"style", "frames"}
    assert sum(scored.weighted(n) for n in scored.terms) == pytest.approx(total, rel=1e-12)


def test_interframe_difference_falls_as_the_frame_weight_rises():
    """Each frame is pulled to its own target; coupling pulls them together."""
    rng = np.random.default_rng(2)
    targets = rng.uniform(size=(N, SIZE))

    def style_for(i):
        return lambda f: (float(((f - targets[i]) ** 2).sum()), 2 * (f - targets[i]))

    rms = []
    for weight in (0.0, 10.0, 1000.0):
        obj = FramesObjective(
            Toy(lambda f: (0.0, np.zeros_like(f))), frames=N, frame_weight=weight, loop=True, frame_size=SIZE
        )
        styles = [style_for(i) for i in range(N)]

        def total(x, obj=obj, styles=styles):
            loss, grad = obj(x)
            parts = [styles[i](x.reshape(N, SIZE)[i]) for i in range(N)]
            return loss + sum(p[0] for p in parts), grad + np.concatenate([p[1] for p in parts])

        res = minimize(total, np.full(N * SIZE, 0.5), tol=0.0, max_iter=200)
        rms.append(interframe_rms(res.x.reshape(N, 1, SIZE, 1), loop=True).mean())
    assert rms[0] > rms[1] > rms[2]


@pytest.mark.parametrize("ext", [".gif", ".webp", ".apng"])
def test_frames_and_animation_are_written(tmp_path, ext):
    frames = np.random.default_rng(3).uniform(size=(3, 8, 10, 3)).astype(np.float32)
    written = save_frames(tmp_path / "out.png", frames, animation=tmp_path / f"anim{ext}")
    assert [p.name for p in written[:3]] == ["out.frame0001.png", "out.frame0002.png", "out.frame0003.png"]
    with Image.open(written[-1]) as im:
        assert getattr(im, "n_frames", 1) == 3 and im.size == (10, 8)


def test_animation_refuses_an_unknown_format_and_existing_files(tmp_path):
    frames = np.zeros((2, 8, 8, 3), np.float32)
    with pytest.raises(OutputError, match="anim.bmp"):
        save_frames(tmp_path / "a.png", frames, animation=tmp_path / "anim.bmp")
    assert not list(tmp_path.iterdir()), "nothing is written when the animation cannot be"
    save_frames(tmp_path / "a.png", frames, animation=None)
    with pytest.raises(OutputError, match="already exists"):
        save_frames(tmp_path / "a.png", frames, animation=None)
