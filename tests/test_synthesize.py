"""End to end: the synthesize job through its Python API."""

import numpy as np
import pytest

from multiscale._tf import tf
from multiscale.config import DescriptorConfig
from multiscale.errors import ConfigError, ImageError, ImageTooSmallError
from multiscale.io import load_image, save_image
from multiscale.jobs.synthesize import synthesize
from multiscale.measure.backbone import VGG16, load_weights
from multiscale.measure.gram import image_grams
from multiscale.objectives.base import WithImageTerms
from multiscale.objectives.image_terms import image_terms
from multiscale.objectives.texture import StyleObjective

SMALL = dict(octaves=2, layers=("conv1_1", "pool1", "pool2"), max_iter=12)


@pytest.fixture(scope="module")
def source(samples_dir):
    """A 64×64 crop of the gravel sample, float32 RGB in [0, 1]."""
    return load_image(samples_dir / "gravel.png")[100:164, 200:264].copy()


def test_result_is_an_image_in_range_with_a_report(source):
    result = synthesize(source, width=48, height=40, **SMALL)
    assert result.image.shape == (40, 48, 3) and result.image.dtype == np.float32
    assert result.image.min() >= 0.0 and result.image.max() <= 1.0
    r = result.report
    assert r.iterations == 12 and r.stop_reason == "max_iter"
    assert r.history[-1] < r.history[0]
    assert len(r.octave_losses) == 2 and r.spectrum_loss > 0  # the default spectrum constraint
    assert sum(r.octave_losses) + r.spectrum_loss == pytest.approx(r.loss, rel=1e-4)
    assert len(r.weights_sha256) == 64 and r.versions["tensorflow"] == tf.__version__
    assert r.to_dict()["config"]["descriptor"]["octaves"] == 2


@pytest.mark.parametrize("optimizer", ["projected", "lbfgsb"])
def test_loss_of_the_image_as_saved_and_reloaded_is_within_2_percent_of_the_best(source, tmp_path, optimizer):
    # Gram statistics, so the objective rebuilt here is the run's (auto would choose sliced at 64²)
    result = synthesize(
        source, width=64, height=64, optimizer=optimizer, statistics=("gram",), **{**SMALL, "max_iter": 40}
    )
    path = save_image(tmp_path / "out.png", result.image)
    reloaded = load_image(path)
    cfg = DescriptorConfig(octaves=2, layers=SMALL["layers"])
    net = VGG16(load_weights())
    obj = StyleObjective(
        targets=image_grams(source, network=net, config=cfg), network=net, config=cfg, height=64, width=64
    )
    # the default objective: the Gram loss plus the spectrum constraint (weight 1 with a source image)
    assert result.report.config.spectrum_weight == 1.0
    obj = WithImageTerms(obj, image_terms(result.report.config, exemplars=[source], height=64, width=64))
    saved_loss = obj.evaluate(reloaded).total
    assert saved_loss == pytest.approx(result.report.best_loss, rel=0.02)
    assert saved_loss == pytest.approx(result.report.loss, rel=1e-4)


def test_same_seed_gives_identical_bytes_and_another_seed_differs(source, tmp_path):
    paths = []
    for i, seed in enumerate([7, 7, 8]):
        res = synthesize(source, width=40, height=40, seed=seed, **{**SMALL, "max_iter": 5})
        paths.append(save_image(tmp_path / f"{i}.png", res.image))
    a, b, c = (p.read_bytes() for p in paths)
    assert a == b
    assert a != c


@pytest.mark.slow
def test_default_padding_leaves_no_frame(samples_dir):
    """The outer 3 % band has the interior's mean and spread within a few grey levels.

    Measured at this size: reflect 127.5±35.7 (band) vs 127.0±37.8 (interior);
    ``valid`` padding gives a band std of 17.4 against 37.9 — the frame this
    test exists to catch.
    """
    src = load_image(samples_dir / "gravel.png")[:256, :256].copy()
    res = synthesize(src, width=224, height=224, octaves=3, max_iter=60)
    stats = band_and_interior(res.image)
    assert abs(stats["band_mean"] - stats["interior_mean"]) < 4.0
    assert abs(stats["band_std"] - stats["interior_std"]) < 4.0


def band_and_interior(image: np.ndarray, fraction: float = 0.03) -> dict[str, float]:
    """Grey-level (0–255) mean and std of the outer band and of the interior."""
    grey = image.mean(axis=2) * 255.0
    b = max(1, round(fraction * min(grey.shape)))
    mask = np.zeros(grey.shape, bool)
    mask[:b], mask[-b:], mask[:, :b], mask[:, -b:] = True, True, True, True
    return {
        "band_mean": float(grey[mask].mean()),
        "band_std": float(grey[mask].std()),
        "interior_mean": float(grey[~mask].mean()),
        "interior_std": float(grey[~mask].std()),
    }


def test_init_from_an_image_file_is_resized(source, tmp_path):
    init = save_image(tmp_path / "init.png", np.full((10, 20, 3), 0.25, np.float32))
    res = synthesize(source, width=40, height=40, init=init, **{**SMALL, "max_iter": 1})
    assert res.image.shape == (40, 40, 3)


def test_bad_options_and_sources_raise_clear_errors(source, tmp_path):
    with pytest.raises(ConfigError, match="octaves"):
        synthesize(source, octaves=0)
    with pytest.raises(ConfigError, match="layers: unknown layer"):
        synthesize(source, layers=("conv9_9",))
    with pytest.raises(ImageError, match="missing.png"):
        synthesize(tmp_path / "missing.png")
    with pytest.raises(ImageTooSmallError, match="output"):
        synthesize(source, width=8, height=8, octaves=2)
    with pytest.raises(ImageError, match=r"values must lie in \[0, 1\]"):
        synthesize(source * 3)


def test_nan_in_the_objective_ends_the_run_with_the_best_image(source, monkeypatch):
    calls = {"n": 0}
    original = StyleObjective.__call__

    def flaky(self, x):
        calls["n"] += 1
        loss, grad = original(self, x)
        return (float("nan"), grad) if calls["n"] == 6 else (loss, grad)

    monkeypatch.setattr(StyleObjective, "__call__", flaky)
    res = synthesize(source, width=40, height=40, **SMALL)
    assert res.report.stop_reason == "non_finite" and "non-finite" in res.report.message
    assert np.isfinite(res.image).all() and np.isfinite(res.report.best_loss)


def test_public_api_is_importable_without_tensorflow():
    """Importing the package (and the CLI) must not start TensorFlow: --help stays instant."""
    import subprocess
    import sys

    code = (
        "import sys, multiscale, multiscale_cli.main; import multiscale.jobs.synthesize as m; "
        "import multiscale.jobs.stylize; "
        "assert callable(multiscale.synthesize) and callable(multiscale.stylize), 'function shadowed by its module'; "
        "assert 'tensorflow' not in sys.modules, 'tensorflow imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_statistics_auto_takes_sliced_where_it_has_targets_and_fits_and_gram_with_means_otherwise():
    from multiscale.config import AUTO_SLICED_MAX_BYTES, StyleConfig
    from multiscale.jobs.synthesize import make_config, plan_run_memory, resolve_statistics

    config = make_config(octaves=2, layers=("conv1_1", "pool1"))
    assert config.descriptor.statistics == ("auto",)  # the default
    chosen = lambda c, **kw: resolve_statistics(c, **kw).descriptor.statistics  # noqa: E731
    assert chosen(config, height=64, width=64, sliced=True) == ("sliced",)
    assert chosen(config, height=64, width=64, sliced=False) == ("gram", "mean")  # e.g. descriptors, no bank
    assert chosen(config, height=64, width=64, sliced=False, means=False) == ("gram",)  # nor means
    # past AUTO_SLICED_MAX_BYTES of projections, whatever the machine has free
    big = make_config(octaves=2, layers=("conv1_1", "pool1"), max_memory=1 << 50)
    side = 4096
    sliced_big = make_config(
        octaves=2, layers=("conv1_1", "pool1"), statistics=("sliced",), max_memory=1 << 50
    )
    assert plan_run_memory(sliced_big, height=side, width=side)[1].sliced > AUTO_SLICED_MAX_BYTES
    assert chosen(big, height=side, width=side, sliced=True) == ("gram", "mean")
    # a limit the Gram run fits and the sliced one does not
    gram_total = plan_run_memory(make_config(octaves=2, layers=("conv1_1", "pool1"), statistics=("gram",)),
                                 height=256, width=256)[1].total  # fmt: skip
    tight = make_config(octaves=2, layers=("conv1_1", "pool1"), max_memory=gram_total + (1 << 20))
    assert chosen(tight, height=256, width=256, sliced=True) == ("gram", "mean")
    # an explicit choice is kept; style transfer refuses auto
    explicit = make_config(statistics=("gram", "sliced"))
    assert resolve_statistics(explicit, height=64, width=64, sliced=False) is explicit
    with pytest.raises(ConfigError, match="auto is for synthesize"):
        StyleConfig.with_options(statistics="auto")


def test_a_default_run_records_the_statistic_auto_chose(source):
    res = synthesize(source, width=40, height=40, **{**SMALL, "max_iter": 3})
    assert res.report.config.descriptor.statistics == ("sliced",)
    assert list(res.report.to_dict()["config"]["descriptor"]["statistics"]) == ["sliced"]
