"""Quantile banks: the sliced statistic from descriptor files.

Known answers for the levels and the interpolation, exact merges, the file
format (versions, hostile members), the build (local and Dask), the CLI, and
a run from a descriptor resumed bit for bit.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import zipfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from multiscale_cli.main import cli
from PIL import Image
from scipy.special import ndtri

from multiscale.config import DescriptorConfig
from multiscale.descriptors import descriptor as descriptor_module
from multiscale.descriptors.descriptor import BANK_VERSION, GRAMS_ONLY_VERSION, GramDescriptor
from multiscale.errors import ConfigError, DescriptorError
from multiscale.measure.backbone import VGG16, load_weights
from multiscale.measure.gram import image_grams, image_sliced_features
from multiscale.measure.sliced import (
    BANK_DRAWS,
    BANK_LEVELS,
    BANK_SEED,
    QuantileBank,
    SlicedTargets,
    bank_levels,
    interpolate_quantiles,
    measure_bank,
    quantiles,
    quantiles_at,
)

from .test_sliced import assert_tiled_equals_untiled

CHANNELS = {"conv1_1": 4, "pool1": 6}
CONFIG = DescriptorConfig(octaves=2, layers=("conv1_1", "pool1"))
WEIGHTS_SHA = hashlib.sha256(b"fake weights").hexdigest()
KEYS = [(o, layer) for o in range(2) for layer in CONFIG.layers]


def features(i: int, n: int = 300) -> dict[tuple[int, str], np.ndarray]:
    """Fake feature vectors of image ``i``: skewed, non-negative, like ReLU features."""
    rng = np.random.default_rng(50 + i)
    return {
        k: np.maximum(rng.standard_normal((n, CHANNELS[k[1]])) + 0.3 * i, 0).astype(np.float32) for k in KEYS
    }


def grams(i: int) -> dict[tuple[int, str], np.ndarray]:
    return {
        k: f.T.astype(np.float64) @ f / len(f) + 1e-3 * np.eye(f.shape[1]) for k, f in features(i).items()
    }


def build(images, *, bank: bool = True) -> GramDescriptor:
    d = GramDescriptor.empty(
        config=CONFIG, backbone="vgg16-test", weights_sha256=WEIGHTS_SHA, channels=CHANNELS, bank=bank
    )
    for i in images:
        d.add(
            grams(i), name=f"img{i}.png", sha256=hashlib.sha256(f"{i}".encode()).hexdigest(),
            weight=0.5 + i % 3, bank=measure_bank(features(i)) if bank else None,
        )  # fmt: skip
    return d


# ---------------------------------------------------------------------------- the bank itself


def test_levels_increase_symmetrically_and_reach_far_into_the_tails():
    levels = bank_levels()
    assert levels.shape == (BANK_LEVELS,) and np.all(np.diff(levels) > 0)
    np.testing.assert_allclose(levels + levels[::-1], 1.0, atol=1e-15)
    assert (
        0 < levels[0] < 1e-6
    )  # the extreme ranks of an output of up to 10⁶ positions are read off stored values
    np.testing.assert_allclose(bank_levels(8, stretch=1.0), (np.arange(8) + 0.5) / 8, atol=1e-15)


def test_quantiles_at_mid_point_levels_equal_quantiles():
    s = np.sort(np.random.default_rng(1).standard_normal((37, 3)), axis=0)
    for count in (5, 37, 100):
        np.testing.assert_allclose(
            quantiles_at(s, (np.arange(count) + 0.5) / count), quantiles(s, count), atol=1e-15
        )


def test_interpolation_of_a_known_quantile_function_is_close_at_any_output_size():
    """The normal distribution's quantile function Φ⁻¹, stored at the bank's levels, read at N levels."""
    levels = bank_levels()
    stored = ndtri(levels)[:, None]
    for count in (64, 1000, 16384, 262144):
        exact = ndtri((np.arange(count) + 0.5) / count)[:, None]
        got = interpolate_quantiles(levels, stored, count)
        assert np.mean((got - exact) ** 2) / np.mean(exact**2) < 2e-5
        assert np.all(np.diff(got[:, 0]) >= 0)


def test_a_draw_matches_the_exact_targets_of_the_same_features_and_directions():
    """Bank entry j has the directions of an exact draw seeded BANK_SEED; the targets agree closely."""
    rng = np.random.default_rng(3)
    feats = {k: rng.standard_normal((4000, CHANNELS[k[1]])).astype(np.float32) for k in KEYS}
    bank = QuantileBank(
        quantiles={k: q.astype(np.float32) for k, q in measure_bank(feats).items()}, levels=bank_levels()
    )
    exact = SlicedTargets(features={k: [f] for k, f in feats.items()}, weights=[1.0])
    counts = {k: 500 + 100 * k[0] for k in KEYS}
    for seed, draw in ((0, 3), (5, 2), (1, BANK_DRAWS + 1)):
        j = (seed + draw) % BANK_DRAWS
        got = bank.draw(seed=seed, draw=draw, counts=counts)
        want = exact.draw(seed=BANK_SEED, draw=j, counts=counts)
        for k in KEYS:
            np.testing.assert_array_equal(got[k][0], want[k][0])
            g, w = got[k][1].array(), want[k][1].array()
            assert g.shape == (counts[k], CHANNELS[k[1]]) and g.dtype == np.float32
            err = np.mean((g - w) ** 2) / np.mean(w**2)
            assert err < 1e-4
    assert bank.channels == {k: CHANNELS[k[1]] for k in KEYS} and bank.draws == BANK_DRAWS


def test_blending_banks_is_the_weighted_mean_of_quantile_functions():
    a, b = (QuantileBank(quantiles=build([i]).bank.quantiles, levels=bank_levels()) for i in (0, 1))
    mix = QuantileBank.blend([a, b], [3, 1])
    for k in KEYS:
        np.testing.assert_allclose(
            mix.quantiles[k], 0.75 * a.quantiles[k] + 0.25 * b.quantiles[k], rtol=1e-6, atol=1e-6
        )
    other = QuantileBank(quantiles=a.quantiles, levels=bank_levels(), seed=7)
    with pytest.raises(ValueError, match="cannot be blended"):
        QuantileBank.blend([a, other], [1, 1])


# ---------------------------------------------------------------------------- descriptors


def test_merging_banks_equals_the_bank_of_the_union():
    union = build(range(5))
    merged = build(range(3)).merge(build(range(3, 5)))
    for k in KEYS:
        scale = np.abs(union.bank_sums[k]).max()
        np.testing.assert_allclose(merged.bank_sums[k], union.bank_sums[k], rtol=1e-14, atol=1e-14 * scale)
        np.testing.assert_allclose(merged.bank.quantiles[k], union.bank.quantiles[k], rtol=1e-6)
    # the bank is the mean of the images' quantile functions with their weights
    w = np.array([0.5 + i % 3 for i in range(5)])
    for k in KEYS:
        mean = sum(wi * measure_bank(features(i))[k] for i, wi in enumerate(w)) / w.sum()
        np.testing.assert_allclose(union.bank.quantiles[k], mean, rtol=1e-6, atol=1e-7)


def test_merging_saved_files_equals_the_union_to_float32_rounding(tmp_path):
    a = build(range(3)).save(tmp_path / "a.npz")
    b = build(range(3, 5)).save(tmp_path / "b.npz")
    merged = GramDescriptor.load(a).merge(GramDescriptor.load(b))
    union = build(range(5))
    for k in KEYS:
        np.testing.assert_allclose(merged.bank.quantiles[k], union.bank.quantiles[k], rtol=3e-7, atol=1e-7)


def test_a_merge_with_a_descriptor_without_a_bank_keeps_none_and_says_so(caplog):
    with caplog.at_level(logging.WARNING):
        merged = build(range(2)).merge(build(range(2, 3), bank=False))
    assert not merged.has_bank and merged.bank is None and "quantile bank" in caplog.text
    assert merged.version == GRAMS_ONLY_VERSION


def test_add_checks_the_bank():
    d = build([])
    g = grams(0)
    with pytest.raises(DescriptorError, match="give the image's"):
        d.add(g, name="x.png", sha256="a" * 64)
    bad = measure_bank(features(0))
    bad[(0, "pool1")] = bad[(0, "pool1")][:, ::-1]
    with pytest.raises(DescriptorError, match="decreases along the levels"):
        d.add(g, name="x.png", sha256="a" * 64, bank=bad)
    with pytest.raises(DescriptorError, match="holds none"):
        build([], bank=False).add(g, name="x.png", sha256="a" * 64, bank=measure_bank(features(0)))
    assert d.count == 0


def test_round_trip_through_a_file(tmp_path):
    d = build(range(3))
    path = d.save(tmp_path / "t.grams.npz")
    e = GramDescriptor.load(path)
    assert e.version == BANK_VERSION == 2 and e.has_bank and e.bank_draws == BANK_DRAWS
    np.testing.assert_array_equal(e.bank.levels, bank_levels())
    for k in KEYS:
        np.testing.assert_allclose(e.bank.quantiles[k], d.bank.quantiles[k], rtol=2e-7, atol=1e-7)
        np.testing.assert_array_equal(e.sums[k], d.sums[k])
    info = e.info()
    json.dumps(info, allow_nan=False)
    assert info["bank"] == {"draws": BANK_DRAWS, "levels": BANK_LEVELS, "seed": BANK_SEED}
    with np.load(path, allow_pickle=False) as z:
        assert z["bank_sum/1/pool1"].dtype == np.float32 and z["bank_sum/1/pool1"].shape == (
            BANK_DRAWS,
            BANK_LEVELS,
            6,
        )
    # a file without a bank is version 1, as before
    plain = GramDescriptor.load(build(range(2), bank=False).save(tmp_path / "plain.npz"))
    assert plain.version == GRAMS_ONLY_VERSION and plain.bank is None and plain.info()["bank"] is None


def test_an_older_reader_refuses_a_file_with_a_bank_asking_for_an_upgrade(tmp_path, monkeypatch):
    path = build(range(2)).save(tmp_path / "t.npz")
    monkeypatch.setattr(descriptor_module, "FORMAT_VERSION", GRAMS_ONLY_VERSION)
    with pytest.raises(DescriptorError, match="newer multiscale.*upgrade"):
        GramDescriptor.load(path)


def _rewrite(src: Path, dst: Path, change) -> Path:
    with zipfile.ZipFile(src) as z:
        members = {n: z.read(n) for n in z.namelist()}
    change(members)
    with zipfile.ZipFile(dst, "w") as z:
        for n, data in members.items():
            z.writestr(n, data)
    return dst


def _npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def _meta(members: dict, edit) -> None:
    meta = json.loads(np.load(io.BytesIO(members["meta.npy"])).tobytes())
    edit(meta)
    members["meta.npy"] = _npy(np.frombuffer(json.dumps(meta).encode(), np.uint8))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: m.pop("bank_sum/0/pool1.npy"), "bank_sum/0/pool1"),
        (lambda m: m.update({"bank_levels.npy": _npy(np.linspace(0.9, 0.1, BANK_LEVELS))}), "bank_levels"),
        (
            lambda m: m.update(
                {"bank_sum/0/conv1_1.npy": _npy(-np.ones((BANK_DRAWS, BANK_LEVELS, 4), np.float32).cumsum(1))}
            ),
            "decreases along the levels",
        ),
        (
            lambda m: m.update({"bank_sum/0/conv1_1.npy": _npy(np.ones((BANK_DRAWS, BANK_LEVELS, 4)))}),
            "float",
        ),
        (lambda m: _meta(m, lambda d: d["bank"].update(draws=10**6)), "bank draws"),
        (lambda m: _meta(m, lambda d: d.update(version=1)), "format version 1 does not have"),
    ],
)
def test_a_damaged_bank_is_refused_with_one_clear_message(tmp_path, change, message):
    path = build(range(2)).save(tmp_path / "t.npz")
    bad = _rewrite(path, tmp_path / "bad.npz", change)
    with pytest.raises(DescriptorError, match=message) as info:
        GramDescriptor.load(bad)
    assert str(info.value).startswith(str(bad))


def test_a_huge_bank_is_refused_before_allocation(tmp_path):
    path = build(range(2)).save(tmp_path / "t.npz")
    bad = _rewrite(path, tmp_path / "bad.npz", lambda m: _meta(m, lambda d: d["bank"].update(levels=65536)))
    with pytest.raises(DescriptorError, match="declares .* bytes"):
        GramDescriptor.load(bad, max_bytes=10**6)


# ---------------------------------------------------------------------------- runs (network)


def _photo(path: Path, seed: int, size=(48, 56)) -> Path:
    rng = np.random.default_rng(seed)
    h, w = size
    coarse = np.kron(rng.random((h // 8 + 1, w // 8 + 1, 3)), np.ones((8, 8, 1)))[:h, :w]
    Image.fromarray((coarse * 255).astype(np.uint8)).save(path)
    return path


@pytest.fixture
def photos(tmp_path: Path) -> list[Path]:
    folder = tmp_path / "photos"
    folder.mkdir()
    return [_photo(folder / f"p{i}.png", seed=i) for i in range(3)]


REAL = DescriptorConfig(octaves=2, layers=("conv1_1", "pool1"), statistics=("gram", "sliced"))
CONFIG_REAL_GRAMS = DescriptorConfig(octaves=2, layers=("conv1_1", "pool1"))


def test_a_build_measures_the_bank_of_each_photo_and_a_dask_build_equals_it(photos):
    from multiscale.descriptors.build import build_descriptor
    from multiscale.io import load_image

    local = build_descriptor(photos, config=REAL).descriptor
    assert local.has_bank and not build_descriptor(photos[:1], config=CONFIG_REAL_GRAMS).descriptor.has_bank
    net = VGG16(load_weights())
    banks = [measure_bank(image_sliced_features(load_image(p), network=net, config=REAL)) for p in photos]
    expected = sum(b[KEYS[0]] for b in banks) / len(banks)
    np.testing.assert_allclose(local.bank.quantiles[KEYS[0]], expected, rtol=1e-5, atol=1e-5)
    distributed = pytest.importorskip("distributed")
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
        ) as c,
        distributed.Client(c) as client,
    ):
        remote = build_descriptor(photos, config=REAL, dask=client, chunk_size=1).descriptor
    for k in local.keys:
        np.testing.assert_allclose(remote.bank_sums[k], local.bank_sums[k], rtol=1e-12, atol=1e-12)


def _invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_cli_builds_a_bank_and_synthesizes_from_it_with_the_sliced_statistic(photos, tmp_path):
    measure = ["--octaves", "2", "--layers", "conv1_1,pool1"]
    banked, plain = tmp_path / "b.grams.npz", tmp_path / "p.grams.npz"
    result = _invoke("grams", "build", *photos, "-o", banked, *measure, "--statistics", "gram,sliced", "-q")
    assert result.exit_code == 0, result.output
    assert _invoke("grams", "build", *photos, "-o", plain, *measure, "-q").exit_code == 0
    info = _invoke("grams", "info", banked)
    assert f"quantile bank of {BANK_DRAWS} draws × {BANK_LEVELS} levels" in info.output
    out = tmp_path / "t.png"
    result = _invoke(
        "synthesize", "--grams", banked, "--statistics", "gram,sliced", "-W", "32", "-H", "32", "-o", out,
        "--max-iter", "3",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    meta = json.loads((tmp_path / "t.png.json").read_text())
    assert meta["config"]["descriptor"]["statistics"] == ["gram", "sliced"]
    refused = _invoke(
        "synthesize",
        "--grams",
        plain,
        "--statistics",
        "sliced",
        "-W",
        "32",
        "-H",
        "32",
        "-o",
        tmp_path / "x.png",
    )
    assert refused.exit_code != 0 and "Traceback" not in refused.output
    assert "rebuild it with `multiscale grams build --statistics gram,sliced`" in refused.stderr
    assert str(plain) in refused.stderr and not (tmp_path / "x.png").exists()
    # a folder streamed into a descriptor can be matched by the sliced statistic too
    folder_out = tmp_path / "f.png"
    result = _invoke(
        "synthesize", "-s", photos[0].parent, "--statistics", "sliced", *measure, "-o", folder_out,
        "--max-iter", "2",
    )  # fmt: skip
    assert result.exit_code == 0, result.output


def test_sliced_without_a_bank_is_refused_before_the_network_loads():
    from multiscale.jobs.synthesize import config_for_descriptors, make_config, targets_from_descriptors

    config = make_config(width=32, height=32, statistics=("sliced",), octaves=2, layers=CONFIG.layers)
    plain = build(range(1), bank=False)
    with pytest.raises(ConfigError, match="holds Gram matrices only"):
        config_for_descriptors([plain], config, explicit={"statistics"})
    assert config_for_descriptors([plain], config).descriptor.statistics == ("gram",)
    with pytest.raises(ConfigError, match="holds Gram matrices only"):
        targets_from_descriptors([plain], config=config, backbone="vgg16-test", weights_sha256=WEIGHTS_SHA)
    targets = targets_from_descriptors(
        [build(range(1)), build(range(1, 3))], config=config, backbone="vgg16-test", weights_sha256=WEIGHTS_SHA,
        grams_weights=[1, 3],
    )  # fmt: skip
    assert isinstance(targets.sliced, QuantileBank)


def test_the_memory_estimate_counts_the_bank():
    from multiscale.measure.memory import BANK_BYTES_PER_VALUE, bank_bytes, estimate_synthesis_memory

    config = DescriptorConfig(layers=("pool1", "conv3_2"), statistics=("gram", "sliced"))
    kwargs = dict(height=256, width=256, config=config, history=5, sources=[], optimizer="projected")
    with_bank = estimate_synthesis_memory(bank=True, **kwargs)
    assert with_bank.total - estimate_synthesis_memory(**kwargs).total == bank_bytes(config)
    assert bank_bytes(config) == BANK_BYTES_PER_VALUE * BANK_DRAWS * BANK_LEVELS * 4 * (64 + 256)


@pytest.mark.slow
def test_a_run_from_a_descriptor_with_a_bank_resumes_bit_for_bit(photos, tmp_path, stopped_run):
    from multiscale.descriptors.build import build_descriptor
    from multiscale.jobs.checkpoint import checkpoint_holds_bank, read_checkpoint
    from multiscale.jobs.synthesize import (
        config_for_descriptors,
        make_config,
        resume_synthesis,
        run_synthesis,
    )
    from multiscale.measure.sliced import REDRAW_EVERY

    d = build_descriptor(photos, config=REAL).descriptor
    base = make_config(width=32, height=32, statistics=("gram", "sliced"), max_iter=REDRAW_EVERY + 5, seed=3)
    config = config_for_descriptors([d], base, explicit={"statistics"})
    whole = run_synthesis(config=config, descriptors=[d])
    assert whole.report.iterations == REDRAW_EVERY + 5
    stop = REDRAW_EVERY + 2
    first = stopped_run(config=config, descriptors=[d], stop_at=stop)
    assert first.report.stop_reason == "callback"
    assert checkpoint_holds_bank(tmp_path / "ck")  # the resume's memory check counts the bank
    ck = read_checkpoint(tmp_path / "ck")
    assert isinstance(ck.sliced, QuantileBank) and ck.sliced_draw[0] == 1
    for k, q in d.bank.quantiles.items():
        np.testing.assert_array_equal(ck.sliced.quantiles[k], q)
    resumed, _ = resume_synthesis(ck)
    assert resumed.report.iterations == whole.report.iterations
    np.testing.assert_array_equal(resumed.image, whole.image)
    assert resumed.report.loss == whole.report.loss


def test_tiled_evaluation_with_a_bank_equals_the_untiled_one():
    """The objectives only call draw(): tiles ranked together give the untiled values, as with images."""
    from multiscale._tf import tf
    from multiscale.objectives.texture import StyleObjective, TiledStyleObjective

    config = DescriptorConfig(octaves=2, layers=("conv1_1", "pool1"), statistics=("gram", "sliced"))
    rng = np.random.default_rng(9)
    source = rng.uniform(size=(40, 40, 3)).astype(np.float32)
    net32 = VGG16(load_weights())
    bank = QuantileBank(
        quantiles={
            k: q.astype(np.float32)
            for k, q in measure_bank(image_sliced_features(source, network=net32, config=config)).items()
        },
        levels=bank_levels(),
    )
    net = VGG16(load_weights(), dtype=tf.float64)
    common = dict(
        targets=image_grams(source, network=net32, config=config), network=net, config=config, height=36,
        width=32, sliced=bank, seed=4,
    )  # fmt: skip
    whole, tiled = StyleObjective(**common), TiledStyleObjective(tile=16, **common)
    x = rng.uniform(0.05, 0.95, size=36 * 32 * 3)
    assert_tiled_equals_untiled(whole, tiled, x, draws=(0, BANK_DRAWS + 3))
