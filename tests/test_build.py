"""build_descriptor: streaming builds over photo sets, skipped files, weights, exact merges, Dask.

Also the pieces of synthesis from descriptors (config_for_descriptors,
targets_from_descriptors) and the mean colour a descriptor records.
Images are 40–64 px, 2 octaves, layers conv1_1 and pool1.
"""

from __future__ import annotations

import hashlib
import json
import sys
import weakref
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import multiscale.descriptors.build as build_module
from multiscale.config import DescriptorConfig, SynthesisConfig
from multiscale.descriptors.build import BuildProgress, build_descriptor, find_images, read_image_weights
from multiscale.descriptors.descriptor import GramDescriptor
from multiscale.descriptors.joins import spd_exp
from multiscale.errors import ConfigError, DescriptorError, ImageError, ResourceError
from multiscale.io import file_sha256, load_image
from multiscale.jobs.synthesize import (
    NEUTRAL_COLOR,
    config_for_descriptors,
    targets_from_build,
    targets_from_descriptors,
)
from multiscale.measure.backbone import VGG16, load_weights
from multiscale.measure.gram import image_grams

CONFIG = DescriptorConfig(octaves=2, layers=("conv1_1", "pool1"))


def write_photo(path: Path, seed: int, size: tuple[int, int] = (48, 56)) -> Path:
    """A smooth random colour texture (not white noise, so Grams differ between seeds)."""
    rng = np.random.default_rng(seed)
    h, w = size
    coarse = rng.random((h // 8 + 1, w // 8 + 1, 3))
    tint = rng.random(3)
    big = np.kron(coarse, np.ones((8, 8, 1)))[:h, :w] * 0.7 + tint * 0.3
    Image.fromarray((np.clip(big, 0, 1) * 255).astype(np.uint8)).save(path)
    return path


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    """A folder of 4 good photos p0…p3.png."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(4):
        write_photo(folder / f"p{i}.png", seed=i)
    return folder


@pytest.fixture(scope="module")
def network() -> VGG16:
    return VGG16(load_weights())


def reference_grams(path: Path, network: VGG16 | None, config: DescriptorConfig = CONFIG) -> dict:
    return image_grams(load_image(path), network=network or VGG16(load_weights()), config=config)


# ---------------------------------------------------------------------------- building


def test_build_over_a_folder_sums_every_image_in_order(photos, network):
    seen: list[BuildProgress] = []
    result = build_descriptor(photos, config=CONFIG, callback=seen.append)
    d = result.descriptor
    files = sorted(photos.glob("*.png"))
    assert [u.name for u in result.used] == [str(f) for f in files]
    assert [s["name"] for s in d.sources] == [str(f) for f in files]
    assert [s["sha256"] for s in d.sources] == [file_sha256(f) for f in files]
    assert result.skipped == [] and d.count == 4 and d.total_weight == 4.0
    assert [p.done for p in seen] == [1, 2, 3, 4] and all(p.total == 4 for p in seen)
    assert (result.used[0].height, result.used[0].width) == (48, 56)
    expected = [reference_grams(f, network) for f in files]
    for key in d.keys:
        np.testing.assert_allclose(d.sums[key], sum(g[key] for g in expected), rtol=1e-6)
    colours = [load_image(f).reshape(-1, 3).mean(axis=0) for f in files]
    np.testing.assert_allclose(d.mean_color, np.mean(colours, axis=0), rtol=1e-5)


def test_only_one_image_is_alive_at_a_time(photos, monkeypatch):
    alive: list[weakref.ref] = []
    real_load = build_module.load_image

    def tracking_load(path, **kwargs):
        image = real_load(path, **kwargs)
        alive.append(weakref.ref(image))
        return image

    most = []
    monkeypatch.setattr(build_module, "load_image", tracking_load)
    build_descriptor(
        photos, config=CONFIG, callback=lambda p: most.append(sum(r() is not None for r in alive))
    )
    assert len(alive) == 4 and max(most) == 0


def test_bad_files_are_skipped_with_their_reason(photos, bad_image_files):
    for name in ("zero_bytes", "text", "truncated_png", "bomb_png"):
        target = photos / f"{name}.png"
        target.write_bytes(bad_image_files[name].read_bytes())
    write_photo(photos / "tiny.png", seed=9, size=(9, 12))
    (photos / "notes.txt").write_text("not a photo")
    result = build_descriptor(photos, config=DescriptorConfig(octaves=3, layers=CONFIG.layers))
    assert result.descriptor.count == 4
    reasons = {Path(s.name).name: s.reason for s in result.skipped}
    assert set(reasons) == {"zero_bytes.png", "text.png", "truncated_png.png", "bomb_png.png", "tiny.png"}
    assert "empty file" in reasons["zero_bytes.png"]
    assert "decompression bomb" in reasons["bomb_png.png"]
    assert "--octaves 2" in reasons["tiny.png"]
    assert not any(r.startswith(str(photos)) for r in reasons.values()), "reasons do not repeat the path"
    summary = result.skipped_summary()
    assert summary.startswith("skipped 5 of 9 images:")
    assert all(name in summary for name in reasons)
    assert [Path(s.name).name for s in result.ignored] == ["notes.txt"]


def test_skipped_summary_names_the_first_files_and_counts_the_rest(tmp_path, photos):
    for i in range(25):
        (photos / f"bad{i:02d}.png").write_bytes(b"junk")
    summary = build_descriptor(photos, config=CONFIG).skipped_summary(limit=20)
    assert summary.splitlines()[0] == "skipped 25 of 29 images:"
    assert "bad19.png" in summary and "bad20.png" not in summary
    assert summary.splitlines()[-1] == "  … and 5 more"


def test_no_usable_image_is_an_error_listing_every_file(tmp_path):
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "a.png").write_bytes(b"")
    (folder / "b.jpg").write_text("text")
    with pytest.raises(ImageError, match=r"no usable images; skipped 2 of 2 images") as info:
        build_descriptor(folder, config=CONFIG)
    first, *rest = str(info.value).splitlines()
    assert first.startswith(f"{folder}: no usable images")
    assert [line.split(":")[0].strip() for line in rest] == [str(folder / "a.png"), str(folder / "b.jpg")]


def test_empty_folder_and_missing_path_are_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ImageError, match="contains no image files"):
        build_descriptor(tmp_path / "empty", config=CONFIG)
    with pytest.raises(ImageError, match="no such file or folder"):
        build_descriptor(tmp_path / "nowhere", config=CONFIG)


def test_patterns_and_recursive_folders(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    write_photo(tmp_path / "a" / "x.png", 1)
    write_photo(tmp_path / "a" / "b" / "y.png", 2)
    flat = build_descriptor(tmp_path / "a", config=CONFIG)
    deep = build_descriptor(tmp_path / "a", config=CONFIG, recursive=True)
    pattern = build_descriptor(str(tmp_path / "a" / "**" / "*.png"), config=CONFIG, recursive=True)
    assert [Path(u.name).name for u in flat.used] == ["x.png"]
    assert sorted(Path(u.name).name for u in deep.used) == ["x.png", "y.png"]
    assert sorted(Path(u.name).name for u in pattern.used) == ["x.png", "y.png"]


def test_source_width_scales_each_image_before_measuring(photos):
    config = DescriptorConfig(octaves=2, layers=CONFIG.layers, source_width=28)
    result = build_descriptor(photos / "p0.png", config=config)
    assert (result.used[0].height, result.used[0].width) == (24, 28)
    assert result.descriptor.measurement["source_width"] == 28


# ---------------------------------------------------------------------------- weights


def test_weights_file_sets_each_images_weight(photos, tmp_path):
    csv = photos / "weights.csv"
    csv.write_text("# weights for the oak set\npath,weight\np0.png,2\n\np2.png, 0.5\n")
    result = build_descriptor(photos, config=CONFIG, weights_file=csv)
    weights = {Path(s["name"]).name: s["weight"] for s in result.descriptor.sources}
    assert weights == {"p0.png": 2.0, "p1.png": 1.0, "p2.png": 0.5, "p3.png": 1.0}
    assert result.descriptor.total_weight == 4.5
    # The weighted mean equals the one of a build where p0 counts twice and p2 half.
    plain = {u.name: u for u in result.used}
    assert plain[str(photos / "p0.png")].weight == 2.0


def test_weights_paths_are_relative_to_the_csv_folder(photos, tmp_path):
    csv = tmp_path / "w.csv"
    csv.write_text(f"photos/p1.png,3\n{photos / 'p3.png'},4\n")
    weights = read_image_weights(csv, find_images(photos)[0])
    assert weights == [1.0, 3.0, 1.0, 4.0]


@pytest.mark.parametrize(
    "text, message",
    [
        ("p0.png,2\nelsewhere.png,1\nmissing.png,1\n", r"lists 2 path\(s\) .* elsewhere.png, missing.png"),
        ("p0.png,0\n", r"line 1: weight must be a finite number > 0"),
        ("p0.png,nan\n", r"line 1: weight must be a finite number > 0"),
        ("p0.png,1\np0.png,2\n", r"line 2: p0.png is already given a weight on line 1"),
        ("p0.png,1\np1.png,heavy\n", r"line 2: weight 'heavy' is not a number"),
        ("p0.png\n", r"line 1: expected PATH,WEIGHT, got 1 field"),
    ],
)
def test_bad_weights_files_are_refused_with_the_line(photos, text, message):
    csv = photos / "w.csv"
    csv.write_text(text)
    with pytest.raises(ConfigError, match=message) as info:
        read_image_weights(csv, find_images(photos)[0])
    assert info.value.field == "weights_file" and str(csv) in str(info.value)


def test_missing_or_binary_weights_file_is_refused(photos, tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        read_image_weights(tmp_path / "none.csv", [])
    (tmp_path / "bin.csv").write_bytes(b"\xff\xfe\x00\x81")
    with pytest.raises(ConfigError, match="not UTF-8"):
        read_image_weights(tmp_path / "bin.csv", [])


# ---------------------------------------------------------------------------- merge, joins, files


def test_merging_builds_of_two_halves_equals_building_the_whole(photos, tmp_path):
    files = sorted(photos.glob("*.png"))
    whole = build_descriptor(photos, config=CONFIG).descriptor
    a = build_descriptor(files[:2], config=CONFIG).descriptor
    b = build_descriptor(files[2:], config=CONFIG).descriptor
    a.save(tmp_path / "a.npz")
    b.save(tmp_path / "b.npz")
    merged = GramDescriptor.load(tmp_path / "a.npz").merge(GramDescriptor.load(tmp_path / "b.npz"))
    assert merged.sources == whole.sources and merged.count == 4
    for key in whole.keys:
        np.testing.assert_allclose(merged.sums[key], whole.sums[key], rtol=1e-12, atol=0)
        np.testing.assert_allclose(merged.log_sums[key], whole.log_sums[key], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(merged.mean_color, whole.mean_color, rtol=1e-12)


def test_keep_all_enables_the_affine_invariant_join(photos):
    # One well-conditioned layer keeps the Karcher iteration short.
    config = DescriptorConfig(octaves=2, layers=("conv1_1",))
    files = sorted(photos.glob("*.png"))[:2]
    kept = build_descriptor(files, config=config, keep_all=True).descriptor
    joined = kept.join("affine-invariant")
    assert set(joined) == set(kept.keys)
    np.testing.assert_allclose(
        kept.all_grams[(0, "conv1_1")][1], reference_grams(files[1], None, config)[(0, "conv1_1")], rtol=1e-6
    )
    plain = build_descriptor(files, config=config).descriptor
    with pytest.raises(DescriptorError, match="--keep-grams"):
        plain.join("affine-invariant")


def test_keep_all_that_would_not_fit_is_refused_before_reading(photos, monkeypatch):
    monkeypatch.setattr(build_module, "available_memory_bytes", lambda: 1000)
    monkeypatch.setattr(build_module, "load_image", pytest.fail)
    with pytest.raises(ResourceError, match=r"needs about .* GiB .* without --keep-grams"):
        build_descriptor(photos, config=CONFIG, keep_all=True)


def test_bad_options_are_refused(photos):
    with pytest.raises(ConfigError, match="not both"):
        build_descriptor(photos, config=CONFIG, dask="tcp://x:1", workers=2)
    with pytest.raises(ConfigError, match="workers"):
        build_descriptor(photos, config=CONFIG, workers=0)
    with pytest.raises(ConfigError, match="config"):
        build_descriptor(photos, config={"octaves": 2})


# ---------------------------------------------------------------------------- Dask


def test_dask_build_equals_the_local_build(photos):
    distributed = pytest.importorskip("distributed")
    (photos / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    local = build_descriptor(photos, config=CONFIG)
    progress: list[BuildProgress] = []
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        remote = build_descriptor(photos, config=CONFIG, dask=client, chunk_size=2, callback=progress.append)
        by_address = build_descriptor(photos, config=CONFIG, dask=cluster.scheduler_address)
    for result in (remote, by_address):
        d = result.descriptor
        assert d.sources == local.descriptor.sources
        assert [s.name for s in result.skipped] == [str(photos / "broken.png")]
        assert d.count == 4 and d.total_weight == local.descriptor.total_weight
        for key in d.keys:
            np.testing.assert_allclose(d.sums[key], local.descriptor.sums[key], rtol=1e-12, atol=0)
            np.testing.assert_allclose(
                d.log_sums[key], local.descriptor.log_sums[key], rtol=1e-12, atol=1e-12
            )
        np.testing.assert_allclose(d.mean_color, local.descriptor.mean_color, rtol=1e-12)
    assert progress[-1].done == 5 and progress[-1].used == 4 and progress[-1].skipped == 1


def test_dask_missing_is_a_clear_error(photos, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(build_module.ClusterError, match=r"pip install 'multiscale\[dask\]'"):
        build_descriptor(photos, config=CONFIG, workers=2)


def test_unreachable_scheduler_is_a_clear_error(photos, monkeypatch):
    pytest.importorskip("distributed")
    monkeypatch.setattr(build_module, "CONNECT_TIMEOUT_S", 0.5)
    with pytest.raises(
        build_module.ClusterError, match="cannot connect to the Dask scheduler at tcp://127.0.0.1:9"
    ):
        build_descriptor(photos, config=CONFIG, dask="tcp://127.0.0.1:9")


# ---------------------------------------------------------------------------- synthesis from descriptors

CHANNELS = {"conv1_1": 3, "pool1": 3}
WEIGHTS_SHA = hashlib.sha256(b"fake weights").hexdigest()


def fake(seeds: list[int], *, config: DescriptorConfig = CONFIG, colour: bool = True, keep_all=False):
    """A descriptor of fake 3×3 Grams (no network), one image per seed."""
    d = GramDescriptor.empty(
        config=config, backbone="vgg16-test", weights_sha256=WEIGHTS_SHA, channels=CHANNELS, keep_all=keep_all
    )
    for s in seeds:
        rng = np.random.default_rng(s)
        grams = {}
        for key in d.keys:
            f = rng.random((6, 3))
            grams[key] = f.T @ f
        d.add(
            grams,
            name=f"img{s}.png",
            sha256=hashlib.sha256(bytes([s])).hexdigest(),
            mean_color=rng.random(3) if colour else None,
        )
    return d


def run_config(**descriptor) -> SynthesisConfig:
    return SynthesisConfig(descriptor=DescriptorConfig(**descriptor), width=32, height=32)


def test_config_is_taken_from_the_descriptors_unless_given():
    d = fake(
        [1], config=DescriptorConfig(octaves=3, layers=("conv1_1", "pool1"), padding="wrap", source_scale=0.5)
    )
    config = config_for_descriptors([d], run_config())
    assert config.descriptor.octaves == 3 and config.descriptor.padding == "wrap"
    assert config.descriptor.layers == ("conv1_1", "pool1") and config.descriptor.source_scale == 0.5
    assert config.width == 32
    # Loss weights stay the run's, so they must fit the descriptor's octaves and layers.
    with pytest.raises(ConfigError, match="layer_weights"):
        config_for_descriptors([d], run_config(layer_weights=(1.0, 2.0, 3.0, 4.0)))


def test_given_options_that_conflict_with_the_descriptor_are_listed():
    d = fake([1])
    base = run_config(octaves=3, padding="wrap")
    with pytest.raises(
        ConfigError, match=r"octaves 2 \(descriptor\) vs 3 \(given\); padding 'reflect'"
    ) as info:
        config_for_descriptors([d], base, explicit={"octaves", "padding"})
    assert info.value.field == "octaves"
    same = config_for_descriptors([d], run_config(octaves=2), explicit={"octaves"})
    assert same.descriptor.octaves == 2


def test_descriptors_measured_differently_cannot_be_used_together():
    a, b = fake([1]), fake([2], config=DescriptorConfig(octaves=3, layers=CONFIG.layers))
    with pytest.raises(
        DescriptorError, match=r"measured differently .* octaves: 2 \(first\) vs 3 \(this one\)"
    ):
        config_for_descriptors([a, b], run_config())


def check(descriptors, **kwargs):
    config = config_for_descriptors(descriptors, run_config())
    return targets_from_descriptors(
        descriptors, config=config, backbone="vgg16-test", weights_sha256=WEIGHTS_SHA, **kwargs
    )


def test_one_descriptor_gives_its_own_join():
    d = fake([1, 2, 3])
    for join in ("mean", "log-euclidean"):
        targets = check([d], join=join)
        for key in d.keys:
            np.testing.assert_array_equal(targets.grams[key], d.join(join)[key])
    assert targets.size is None and targets.join == "log-euclidean"
    np.testing.assert_allclose(targets.mean_color, d.mean_color)


def test_descriptors_are_blended_by_their_shares_whatever_their_image_counts():
    a, b = fake([1, 2, 3]), fake([4])
    mean = check([a, b], grams_weights=[3, 1])
    log = check([a, b], join="log-euclidean", grams_weights=[3, 1])
    for key in a.keys:
        np.testing.assert_allclose(mean.grams[key], 0.75 * a.join()[key] + 0.25 * b.join()[key], rtol=1e-12)
        expected = spd_exp(0.75 * a.log_sums[key] / 3 + 0.25 * b.log_sums[key] / 1)
        np.testing.assert_allclose(log.grams[key], expected, rtol=1e-10)
    np.testing.assert_allclose(mean.mean_color, 0.75 * a.mean_color + 0.25 * b.mean_color, rtol=1e-6)
    assert [f["weight"] for f in mean.descriptors] == [3.0, 1.0]
    only_b = check([a, b], grams_weights=[0, 1])
    for key in a.keys:
        np.testing.assert_array_equal(only_b.grams[key], b.join()[key])


def test_affine_invariant_blend_of_equal_descriptors_is_their_join():
    a = fake([1, 2], keep_all=True)
    targets = check([a, a], join="affine-invariant")
    for key in a.keys:
        np.testing.assert_allclose(targets.grams[key], a.join("affine-invariant")[key], rtol=1e-8)
    with pytest.raises(DescriptorError, match="--keep-grams"):
        check([fake([1])], join="affine-invariant")


@pytest.mark.parametrize(
    "weights, message", [([1], "one weight per descriptor"), ([0, 0], "at least one"), ([1, -1], "≥ 0")]
)
def test_bad_grams_weights_are_refused(weights, message):
    with pytest.raises(ConfigError, match=message) as info:
        check([fake([1]), fake([2])], grams_weights=weights)
    assert info.value.field == "grams_weights"


def test_a_descriptor_from_other_weights_is_refused():
    d = fake([1])
    with pytest.raises(DescriptorError, match="weights_sha256"):
        targets_from_descriptors(
            [d], config=config_for_descriptors([d]), backbone="vgg16-test", weights_sha256="0" * 64
        )


def test_descriptors_without_colour_start_from_neutral_grey():
    targets = check([fake([1], colour=False)])
    np.testing.assert_array_equal(targets.mean_color, np.float32(NEUTRAL_COLOR))


def test_targets_from_a_build_keep_the_first_size_and_the_skipped(photos):
    (photos / "zz.png").write_bytes(b"")
    result = build_descriptor(photos, config=CONFIG)
    targets = targets_from_build(result, join="log-euclidean")
    assert targets.size == (48, 56) and targets.join == "log-euclidean"
    assert targets.skipped == [
        {"name": str(photos / "zz.png"), "reason": "empty file (0 bytes), not an image"}
    ]
    assert len(targets.sources) == 4


# ---------------------------------------------------------------------------- the recorded colour


def test_colour_survives_merge_save_and_load(tmp_path):
    a, b = fake([1, 2]), fake([3])
    merged = a.merge(b)
    expected = (a.mean_color * 2 + b.mean_color) / 3
    np.testing.assert_allclose(merged.mean_color, expected, rtol=1e-6)
    merged.save(tmp_path / "m.npz")
    loaded = GramDescriptor.load(tmp_path / "m.npz")
    np.testing.assert_array_equal(loaded.mean_color, merged.mean_color)
    assert loaded.info()["mean_color"] == pytest.approx(list(expected), rel=1e-6)
    assert a.merge(fake([4], colour=False)).mean_color is None


def test_bad_colour_is_refused_in_add_and_in_files(tmp_path):
    d = fake([1])
    with pytest.raises(DescriptorError, match="mean_color must be three numbers in"):
        d.add({k: np.eye(3) for k in d.keys}, name="x.png", sha256="a" * 64, mean_color=[0.1, 2.0, 0.3])
    assert d.count == 1
    d.save(tmp_path / "d.npz")
    raw = dict(np.load(tmp_path / "d.npz"))
    meta = json.loads(raw["meta"].tobytes())
    for bad in ([1, 2], [0.1, -0.2, 0.2], "red", [5.0, 0.0, 0.0]):
        meta["color_sum"] = bad
        raw["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
        np.savez(tmp_path / "bad.npz", **raw)
        with pytest.raises(DescriptorError, match="color_sum"):
            GramDescriptor.load(tmp_path / "bad.npz")
    del meta["color_sum"]
    raw["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    np.savez(tmp_path / "old.npz", **raw)
    assert GramDescriptor.load(tmp_path / "old.npz").mean_color is None


# ---------------------------------------------------------------------------- Ctrl-C


def _interrupt_at(monkeypatch, call: int) -> None:
    original = build_module._measure_into
    calls = {"n": 0}

    def measure(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == call:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(build_module, "_measure_into", measure)


def test_ctrl_c_keeps_the_images_measured_so_far(photos, monkeypatch):
    _interrupt_at(monkeypatch, 3)
    result = build_descriptor([photos], config=CONFIG)
    assert result.interrupted and result.descriptor.count == 2
    assert [Path(u.name).name for u in result.used] == ["p0.png", "p1.png"]


def test_ctrl_c_before_any_image_is_a_plain_interrupt(photos, monkeypatch):
    _interrupt_at(monkeypatch, 1)
    with pytest.raises(KeyboardInterrupt):
        build_descriptor([photos], config=CONFIG)


def test_cli_ctrl_c_writes_the_partial_descriptor_and_exits_130(photos, monkeypatch, tmp_path):
    from click.testing import CliRunner
    from multiscale_cli.main import cli

    _interrupt_at(monkeypatch, 3)
    out = tmp_path / "part.grams.npz"
    result = CliRunner().invoke(
        cli, ["grams", "build", str(photos), "-o", str(out), "--octaves", "2", "--layers", "conv1_1,pool1"]
    )
    assert result.exit_code == 130, result.output
    assert "interrupted after 2 image(s)" in result.output and "Traceback" not in result.output
    assert GramDescriptor.load(out).count == 2
