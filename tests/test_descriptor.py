"""GramDescriptor: streaming sums, exact merges, and a file format that refuses hostile input.

Small fake Grams (random SPD) and a fake channel map stand in for the network.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import time
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.lib import format as npy_format

from multiscale.config import DescriptorConfig
from multiscale.descriptors import joins
from multiscale.descriptors.descriptor import (
    FORMAT_VERSION,
    GRAMS_ONLY_VERSION,
    GramDescriptor,
    keep_all_nbytes,
    measurement_of,
)
from multiscale.errors import ConfigError, DescriptorError, OutputError

CHANNELS = {"conv1_1": 4, "pool1": 4, "pool2": 8}
CONFIG = DescriptorConfig(octaves=2, layers=("conv1_1", "pool1", "pool2"))
BACKBONE = "vgg16-test"
WEIGHTS_SHA = hashlib.sha256(b"fake weights").hexdigest()


def sha(i: int) -> str:
    return hashlib.sha256(f"image {i}".encode()).hexdigest()


def image_grams(i: int, config: DescriptorConfig = CONFIG) -> dict[tuple[int, str], np.ndarray]:
    """Deterministic Grams of fake image ``i``: F·Fᵀ of random non-negative features."""
    rng = np.random.default_rng(1000 + i)
    out = {}
    for octave in range(config.octaves):
        for layer in config.layers:
            c = CHANNELS[layer]
            features = np.maximum(rng.standard_normal((2 * c, c)) + 0.5, 0)
            out[(octave, layer)] = features.T @ features / (2 * c)
    return out


def weight(i: int) -> float:
    return 0.5 + (i % 3)


def build(
    images: range | list[int],
    *,
    keep_all: bool = False,
    config: DescriptorConfig = CONFIG,
    backbone: str = BACKBONE,
    eps: float = joins.DEFAULT_EPS,
) -> GramDescriptor:
    d = GramDescriptor.empty(
        config=config,
        backbone=backbone,
        weights_sha256=WEIGHTS_SHA,
        channels=CHANNELS,
        keep_all=keep_all,
        eps=eps,
    )
    for i in images:
        d.add(image_grams(i, config), name=f"img{i}.png", sha256=sha(i), weight=weight(i))
    return d


# ================================================================ building and joining


def test_sums_count_and_sources_follow_the_added_images():
    d = build(range(3))
    assert d.count == 3
    assert d.total_weight == weight(0) + weight(1) + weight(2)
    assert [s["name"] for s in d.sources] == ["img0.png", "img1.png", "img2.png"]
    assert d.keys == tuple((o, layer) for o in range(2) for layer in CONFIG.layers)
    key = (1, "pool2")
    expected = sum(weight(i) * image_grams(i)[key] for i in range(3))
    np.testing.assert_allclose(d.sums[key], expected, rtol=1e-14)
    assert d.sums[key].dtype == np.float64 and d.sums[key].shape == (8, 8)
    expected_log = sum(weight(i) * joins.spd_log(image_grams(i)[key], eps=d.eps) for i in range(3))
    np.testing.assert_allclose(d.log_sums[key], expected_log, rtol=1e-12, atol=1e-12)


def test_arrays_handed_out_are_read_only():
    d = build(range(2))
    with pytest.raises(ValueError):
        d.sums[(0, "pool1")][0, 0] = 1.0


def test_joins_agree_with_the_join_functions():
    d = build(range(4), keep_all=True)
    w = np.array([weight(i) for i in range(4)])
    for key in d.keys:
        stack = np.stack([image_grams(i)[key] for i in range(4)])
        np.testing.assert_allclose(
            d.join("mean")[key], np.einsum("i,ijk->jk", w, stack) / w.sum(), rtol=1e-13
        )
        np.testing.assert_allclose(
            d.join("log-euclidean")[key], joins.log_euclidean_mean(stack, w, eps=d.eps), rtol=1e-10
        )
        np.testing.assert_allclose(
            d.join("affine-invariant")[key], joins.affine_invariant_mean(stack, w, eps=d.eps), rtol=1e-8
        )


def test_join_of_one_image_is_its_gram_or_its_regularised_gram():
    d = build([7], keep_all=True)
    g = image_grams(7)
    for key in d.keys:
        c = g[key].shape[0]
        np.testing.assert_allclose(d.join("mean")[key], g[key], rtol=1e-15)
        regularised = g[key] + d.eps * np.trace(g[key]) / c * np.eye(c)
        np.testing.assert_allclose(d.join("log-euclidean")[key], regularised, rtol=1e-11, atol=1e-13)
        np.testing.assert_allclose(d.join("affine-invariant")[key], regularised, rtol=1e-11, atol=1e-13)


def test_affine_invariant_join_needs_kept_grams():
    d = build(range(2))
    with pytest.raises(DescriptorError, match="--keep-grams"):
        d.join("affine-invariant")


def test_join_refuses_unknown_methods_and_empty_descriptors():
    with pytest.raises(ConfigError, match="join"):
        build(range(1)).join("median")
    with pytest.raises(DescriptorError, match="no images"):
        build([]).join("mean")


def test_keep_all_cost_is_as_documented():
    vgg = {"conv1_1": 64, "pool1": 64, "pool2": 128, "pool3": 256}
    assert keep_all_nbytes(count=500, octaves=4, channels=vgg) == 1_441_792_000
    d = build(range(3), keep_all=True)
    assert d.nbytes == 2 * keep_all_nbytes(count=1, octaves=2, channels=CHANNELS) + keep_all_nbytes(
        count=3, octaves=2, channels=CHANNELS
    )


# ---------------------------------------------------------------- add() refuses bad Grams, atomically


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda g: g.pop((1, "pool2")), r"img\.png: .*missing octave 1, pool2"),
        (lambda g: g.__setitem__((2, "pool2"), np.eye(8)), "unexpected"),
        (
            lambda g: g.__setitem__((0, "pool1"), np.eye(5)),
            r"octave 0, pool1 has shape \(5, 5\), expected \(4, 4\)",
        ),
        (lambda g: g[(0, "pool1")].__setitem__((1, 1), np.nan), "NaN"),
        (lambda g: g[(0, "pool1")].__setitem__((0, 1), 5.0), "not symmetric"),
        (lambda g: g.__setitem__((0, "pool1"), -np.eye(4)), "not positive semidefinite"),
        (lambda g: g.__setitem__((0, "pool1"), np.zeros((4, 4))), "all-zero"),
        (lambda g: g.__setitem__((0, "pool1"), np.eye(4).astype(complex)), "dtype"),
    ],
)
def test_add_refuses_bad_grams_and_leaves_the_descriptor_unchanged(mutate, message):
    d = build(range(2), keep_all=True)
    before = {k: v.copy() for k, v in d.sums.items()}
    grams = image_grams(9)
    mutate(grams)
    with pytest.raises(DescriptorError, match=message):
        d.add(grams, name="img.png", sha256=sha(9))
    assert d.count == 2 and len(d.sources) == 2
    assert all(np.array_equal(d.sums[k], before[k]) for k in d.keys)
    assert all(len(v) == 2 for v in d.all_grams.values())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"weight": 0.0}, "weight"),
        ({"weight": float("nan")}, "weight"),
        ({"sha256": "not-a-hash"}, "sha256"),
        ({"name": ""}, "name"),
    ],
)
def test_add_refuses_bad_metadata(kwargs, message):
    d = build([])
    args = {"name": "img.png", "sha256": sha(1), "weight": 1.0, **kwargs}
    with pytest.raises(DescriptorError, match=message):
        d.add(image_grams(1), **args)
    assert d.count == 0


def test_add_accepts_float32_grams_symmetric_to_round_off():
    d = build([])
    grams = {k: v.astype(np.float32) for k, v in image_grams(1).items()}
    g = grams[(0, "pool2")]
    g[0, 1] *= 1 + 1e-6
    d.add(grams, name="a.png", sha256=sha(1))
    stored = d.sums[(0, "pool2")]
    assert stored.dtype == np.float64 and np.array_equal(stored, stored.T)


def test_empty_refuses_bad_arguments():
    with pytest.raises(DescriptorError, match="pool2"):
        GramDescriptor.empty(
            config=CONFIG, backbone=BACKBONE, weights_sha256=WEIGHTS_SHA, channels={"conv1_1": 4, "pool1": 4}
        )
    with pytest.raises(DescriptorError, match="weights_sha256"):
        GramDescriptor.empty(config=CONFIG, backbone=BACKBONE, weights_sha256="abc", channels=CHANNELS)
    with pytest.raises(DescriptorError, match="backbone"):
        GramDescriptor.empty(config=CONFIG, backbone="", weights_sha256=WEIGHTS_SHA, channels=CHANNELS)


# ================================================================ merging


def assert_same_descriptor(a: GramDescriptor, b: GramDescriptor, *, rtol: float) -> None:
    assert a.count == b.count
    assert a.total_weight == pytest.approx(b.total_weight, rel=1e-15)
    assert a.sources == b.sources
    for key in a.keys:
        np.testing.assert_allclose(a.sums[key], b.sums[key], rtol=rtol, atol=rtol * np.abs(b.sums[key]).max())
        scale = np.abs(b.log_sums[key]).max()
        np.testing.assert_allclose(a.log_sums[key], b.log_sums[key], rtol=rtol, atol=rtol * scale)


def test_merging_disjoint_sets_equals_building_on_the_union():
    a, b = build(range(0, 5), keep_all=True), build(range(5, 11), keep_all=True)
    union = build(range(11), keep_all=True)
    merged = a.merge(b)
    assert_same_descriptor(merged, union, rtol=1e-14)
    for method in ("mean", "log-euclidean", "affine-invariant"):
        got, expected = merged.join(method), union.join(method)
        for key in union.keys:
            np.testing.assert_allclose(got[key], expected[key], rtol=1e-10, atol=1e-12)
    # The inputs are untouched.
    assert a.count == 5 and b.count == 6


def test_merge_all_of_several_shards_and_of_one():
    shards = [build(range(i, i + 2)) for i in (0, 2, 4)]
    assert_same_descriptor(GramDescriptor.merge_all(shards), build(range(6)), rtol=1e-14)
    assert_same_descriptor(GramDescriptor.merge_all(shards[:1]), shards[0], rtol=0)
    with pytest.raises(DescriptorError, match="no descriptors"):
        GramDescriptor.merge_all([])


@settings(deadline=None, max_examples=15)
@given(n=st.integers(2, 6), data=st.data())
def test_merge_is_exact_for_any_split(n, data):
    split = data.draw(st.integers(1, n - 1))
    merged = build(range(split)).merge(build(range(split, n)))
    assert_same_descriptor(merged, build(range(n)), rtol=1e-14)


def test_merge_refuses_incompatible_descriptors_listing_every_difference():
    a = build(range(2))
    other_config = DescriptorConfig(octaves=2, layers=CONFIG.layers, padding="wrap", source_scale=0.5)
    b = build(range(2, 4), config=other_config, backbone="vgg16-other", eps=1e-3)
    with pytest.raises(DescriptorError) as info:
        a.merge(b)
    message = str(info.value)
    for expected in (
        "backbone: 'vgg16-test' vs 'vgg16-other'",
        "padding: 'reflect' vs 'wrap'",
        "source_scale: 1.0 vs 0.5",
        "eps: 0.0001 vs 0.001",
    ):
        assert expected in message
    assert "octaves" not in message and "pooling" not in message


def test_merge_refuses_other_layers_octaves_and_weights():
    a = build(range(1))
    b = build(range(1), config=DescriptorConfig(octaves=1, layers=("conv1_1", "pool1")))
    c = GramDescriptor.empty(
        config=CONFIG,
        backbone=BACKBONE,
        weights_sha256=hashlib.sha256(b"other").hexdigest(),
        channels=CHANNELS,
    )
    c.add(image_grams(0), name="x.png", sha256=sha(0))
    with pytest.raises(DescriptorError, match=r"octaves: 2 vs 1.*layers: \['conv1_1', 'pool1', 'pool2'\] vs"):
        a.merge(b)
    with pytest.raises(DescriptorError, match="weights_sha256"):
        GramDescriptor.merge_all([a, c])


def test_merge_names_loaded_files(tmp_path):
    pa = build(range(1)).save(tmp_path / "a.npz")
    pb = build(range(1), backbone="vgg16-other").save(tmp_path / "b.npz")
    with pytest.raises(DescriptorError, match=r"a\.npz and .*b\.npz differ in backbone"):
        GramDescriptor.load(pa).merge(GramDescriptor.load(pb))


def test_merging_with_and_without_kept_grams_keeps_none(caplog):
    with caplog.at_level(logging.WARNING, logger="multiscale.descriptors.descriptor"):
        merged = build(range(2), keep_all=True).merge(build(range(2, 3)))
    assert not merged.keep_all and merged.count == 3
    assert "--keep-grams" in caplog.text


def test_merging_a_descriptor_with_itself_warns_about_double_counting(caplog):
    d = build(range(2))
    with caplog.at_level(logging.WARNING, logger="multiscale.descriptors.descriptor"):
        merged = d.merge(d)
    assert merged.count == 4
    assert "more than once" in caplog.text


# ================================================================ compatibility with a run


def test_check_compatible_accepts_the_same_measurement():
    d = build(range(1))
    # Loss weights and the weights path do not change what is measured.
    run = DescriptorConfig(octaves=2, layers=CONFIG.layers, layer_weights=(1, 2, 3), weights="/x.h5")
    d.check_compatible(run, backbone=BACKBONE, weights_sha256=WEIGHTS_SHA.upper())
    assert d.compatible_with(run, backbone=BACKBONE, weights_sha256=WEIGHTS_SHA)


def test_check_compatible_lists_what_differs_and_names_the_file(tmp_path):
    path = build(range(1)).save(tmp_path / "tex.npz")
    d = GramDescriptor.load(path)
    run = DescriptorConfig(octaves=3, layers=CONFIG.layers, padding="wrap")
    other_sha = hashlib.sha256(b"x").hexdigest()
    with pytest.raises(DescriptorError) as info:
        d.check_compatible(run, backbone="vgg19", weights_sha256=other_sha)
    message = str(info.value)
    assert message.startswith(str(path))
    for field in (
        "backbone: 'vgg16-test' (descriptor) vs 'vgg19' (run)",
        "weights_sha256",
        "octaves: 2",
        "padding",
    ):
        assert field in message
    assert (
        d.differences(run, backbone=BACKBONE, weights_sha256=WEIGHTS_SHA, ignore={"octaves", "padding"}) == []
    )


def test_descriptor_config_round_trips():
    d = build(range(1))
    assert measurement_of(d.descriptor_config()) == measurement_of(CONFIG)


# ================================================================ files


@pytest.mark.parametrize("keep_all", [False, True])
def test_save_load_round_trip_is_exact(tmp_path, keep_all):
    d = build(range(5), keep_all=keep_all)
    path = d.save(tmp_path / "tex.npz")
    e = GramDescriptor.load(path)
    assert e.version == GRAMS_ONLY_VERSION  # no quantile bank: the format older readers read
    assert (e.backbone, e.weights_sha256, e.eps, e.keep_all) == (
        d.backbone,
        d.weights_sha256,
        d.eps,
        keep_all,
    )
    assert e.measurement == d.measurement and e.channels == d.channels
    assert (e.count, e.total_weight, e.sources) == (d.count, d.total_weight, d.sources)
    assert e.path == path
    for key in d.keys:
        assert np.array_equal(e.sums[key], d.sums[key])
        assert np.array_equal(e.log_sums[key], d.log_sums[key])
    if keep_all:
        for key in d.keys:
            assert np.array_equal(e.all_grams[key], d.all_grams[key])
        methods = ("mean", "log-euclidean", "affine-invariant")
    else:
        methods = ("mean", "log-euclidean")
    for method in methods:
        for key, value in d.join(method).items():
            assert np.array_equal(e.join(method)[key], value)


def test_saved_file_is_a_plain_npz_with_json_meta(tmp_path):
    path = build(range(2), keep_all=True).save(tmp_path / "tex.npz")
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(z["meta"].tobytes().decode("utf-8"))
        assert z["sum/1/pool2"].dtype == np.float64 and z["sum/1/pool2"].shape == (8, 8)
        assert z["all/0/conv1_1"].shape == (2, 4, 4)
        assert set(z.files) == {"meta"} | {
            f"{k}/{o}/{layer}" for k in ("sum", "log_sum", "all") for o, layer in build([]).keys
        }
    assert meta["version"] == GRAMS_ONLY_VERSION and meta["count"] == 2
    # without coarse layers, the measurement fields that format versions 1–3 hold, and only those
    assert meta["descriptor"] == {
        "octaves": 2, "layers": ["conv1_1", "pool1", "pool2"], "pooling": CONFIG.pooling, "padding": CONFIG.padding,
        "source_scale": 1.0, "source_width": None,
    }  # fmt: skip
    assert meta["sources"][1] == {"name": "img1.png", "sha256": sha(1), "weight": weight(1)}
    assert "multiscale" in meta["created"]


def test_save_is_deterministic_atomic_and_keeps_the_name(tmp_path):
    d = build(range(3))
    a = d.save(tmp_path / "a.npz")
    b = d.save(tmp_path / "b-no-suffix")
    assert b == tmp_path / "b-no-suffix" and b.exists()
    assert a.read_bytes() == b.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npz", "b-no-suffix"]


def test_save_does_not_overwrite_without_permission(tmp_path):
    path = build(range(1)).save(tmp_path / "tex.npz")
    before = path.read_bytes()
    with pytest.raises(OutputError, match="overwrite"):
        build(range(2)).save(path)
    assert path.read_bytes() == before
    build(range(2)).save(path, overwrite=True)
    assert GramDescriptor.load(path).count == 2


def test_save_refuses_an_empty_descriptor(tmp_path):
    with pytest.raises(DescriptorError, match="no images"):
        build([]).save(tmp_path / "x.npz")
    assert not (tmp_path / "x.npz").exists()


def test_info_is_json_ready(tmp_path):
    path = build(range(2), keep_all=True).save(tmp_path / "tex.npz")
    info = GramDescriptor.load(path).info()
    json.dumps(info, allow_nan=False)
    assert info["path"] == str(path) and info["file_bytes"] == path.stat().st_size
    assert info["count"] == 2 and info["version"] == GRAMS_ONLY_VERSION and info["keep_all"] is True
    assert {"octave": 1, "layer": "pool2", "shape": [8, 8]} in info["keys"]
    assert info["weights_sha256"] == WEIGHTS_SHA and info["backbone"] == BACKBONE
    assert build([]).info()["path"] is None


def test_big_endian_and_fortran_members_from_other_writers_load(tmp_path):
    path = build(range(2)).save(tmp_path / "tex.npz")
    members = read_members(path)
    key = "sum/0/pool2.npy"
    original = np.load(io.BytesIO(members[key]))
    members[key] = npy_bytes(np.asfortranarray(original.astype(">f8")))
    write_members(path, members)
    assert np.array_equal(GramDescriptor.load(path).sums[(0, "pool2")], original)


# ================================================================ hostile and broken files
#
# Each case is crafted on the fly. The loader must answer with a DescriptorError
# whose message starts with the path, within a second, without big allocations.


def npy_bytes(arr: np.ndarray, *, allow_pickle: bool = False) -> bytes:
    buf = io.BytesIO()
    npy_format.write_array(buf, arr, allow_pickle=allow_pickle)
    return buf.getvalue()


def npy_header(shape: tuple[int, ...], descr: str = "<f8", payload: bytes = b"") -> bytes:
    buf = io.BytesIO()
    npy_format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False, "shape": shape})
    return buf.getvalue() + payload


def read_members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def write_members(path: Path, members: dict[str, bytes], *, compression: int = zipfile.ZIP_STORED) -> Path:
    with zipfile.ZipFile(path, "w", compression=compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def get_meta(members: dict[str, bytes]) -> dict:
    return json.loads(np.load(io.BytesIO(members["meta.npy"])).tobytes())


def set_meta(members: dict[str, bytes], meta: dict | bytes) -> None:
    raw = meta if isinstance(meta, bytes) else json.dumps(meta).encode()
    members["meta.npy"] = npy_bytes(np.frombuffer(raw, dtype=np.uint8))


def assert_refused(path: Path, match: str, **load_kwargs) -> DescriptorError:
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(DescriptorError, match=match) as info:
            GramDescriptor.load(path, **load_kwargs)
        elapsed = time.perf_counter() - start
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert str(info.value).startswith(f"{path}: "), str(info.value)
    assert elapsed < 1.0
    assert peak < 8 * 1024**2, f"loader allocated {peak} bytes"
    return info.value


@pytest.fixture
def small(tmp_path) -> Path:
    """A valid one-octave, one-layer descriptor of 3 images that keeps its Grams (a few KB)."""
    config = DescriptorConfig(octaves=1, layers=("conv1_1",))
    return build(range(3), keep_all=True, config=config).save(tmp_path / "small.npz")


def test_the_small_fixture_is_valid(small):
    assert GramDescriptor.load(small).count == 3


def test_member_header_claiming_a_terabyte_array_is_refused_before_allocation(tmp_path, small):
    members = read_members(small)
    members["sum/0/conv1_1.npy"] = npy_header((1000000, 1000000), payload=b"\0" * 8)
    path = write_members(tmp_path / "bomb.npz", members)
    assert_refused(path, r"sum/0/conv1_1 has shape \(1000000, 1000000\), expected \(4, 4\)")


def test_tiny_npz_claiming_a_huge_array_everywhere_is_refused(tmp_path, small):
    # The meta agrees with the bomb: it is the byte budget that refuses it.
    members = read_members(small)
    meta = get_meta(members)
    meta["channels"] = {"conv1_1": 60000}
    meta["keep_all"] = False
    set_meta(members, meta)
    for kind in ("sum", "log_sum"):
        members[f"{kind}/0/conv1_1.npy"] = npy_header((60000, 60000))
    del members["all/0/conv1_1.npy"]
    path = write_members(tmp_path / "bomb.npz", members)
    assert path.stat().st_size < 2000
    assert_refused(path, r"declares 57600000000 bytes .* more than max_bytes")


def test_meta_header_claiming_a_huge_text_is_refused(tmp_path):
    path = write_members(tmp_path / "bomb.npz", {"meta.npy": npy_header((10**12,), descr="|u1")})
    assert path.stat().st_size < 400
    assert_refused(path, "meta has dtype uint8 and shape|meta declares")


def test_header_and_archive_disagreeing_on_size_is_refused(tmp_path, small):
    members = read_members(small)
    members["log_sum/0/conv1_1.npy"] = npy_header((4, 4), payload=b"\0" * 8)
    assert_refused(
        write_members(tmp_path / "short.npz", members), "declares 128 bytes of data but the archive"
    )


def test_float32_member_is_refused(tmp_path, small):
    members = read_members(small)
    members["sum/0/conv1_1.npy"] = npy_bytes(np.eye(4, dtype=np.float32))
    assert_refused(write_members(tmp_path / "f32.npz", members), "dtype float32, expected float64")


class _Trap:
    """Unpickling this records that the loader ran pickle code."""

    triggered: list[int] = []

    def __reduce__(self):
        return (_Trap.triggered.append, (1,))


def test_pickled_object_member_is_refused_without_unpickling(tmp_path, small):
    members = read_members(small)
    trap = np.empty((4, 4), dtype=object)
    trap[:] = _Trap()
    members["sum/0/conv1_1.npy"] = npy_bytes(trap, allow_pickle=True)
    _Trap.triggered.clear()
    assert_refused(write_members(tmp_path / "pickle.npz", members), "dtype object")
    assert _Trap.triggered == []


def test_nan_values_are_refused(tmp_path, small):
    members = read_members(small)
    g = np.eye(4)
    g[2, 2] = np.nan
    members["log_sum/0/conv1_1.npy"] = npy_bytes(g)
    assert_refused(write_members(tmp_path / "nan.npz", members), "log_sum/0/conv1_1 has NaN")


def test_asymmetric_gram_is_refused(tmp_path, small):
    members = read_members(small)
    stack = np.load(io.BytesIO(members["all/0/conv1_1.npy"]))
    stack[1, 0, 3] += 0.1
    members["all/0/conv1_1.npy"] = npy_bytes(stack)
    assert_refused(write_members(tmp_path / "asym.npz", members), "all/0/conv1_1 is not symmetric")


def test_negative_diagonal_is_refused(tmp_path, small):
    members = read_members(small)
    members["sum/0/conv1_1.npy"] = npy_bytes(-np.eye(4))
    assert_refused(write_members(tmp_path / "neg.npz", members), "negative diagonal")


def test_missing_member_is_refused(tmp_path, small):
    members = read_members(small)
    del members["log_sum/0/conv1_1.npy"]
    assert_refused(write_members(tmp_path / "missing.npz", members), r"missing member\(s\) log_sum/0/conv1_1")


def test_unexpected_member_is_refused(tmp_path, small):
    members = read_members(small)
    members["extra.npy"] = npy_bytes(np.zeros(3))
    assert_refused(write_members(tmp_path / "extra.npz", members), r"unexpected member\(s\) extra.npy")


def test_duplicate_member_is_refused(tmp_path, small):
    members = read_members(small)
    path = write_members(tmp_path / "dup.npz", members)
    with pytest.warns(UserWarning, match="Duplicate"), zipfile.ZipFile(path, "a") as zf:
        zf.writestr("sum/0/conv1_1.npy", members["sum/0/conv1_1.npy"])
    assert_refused(path, "twice")


def test_archive_listing_too_many_members_is_refused_before_parsing(tmp_path):
    path = tmp_path / "many.npz"
    with zipfile.ZipFile(path, "w") as zf:
        for i in range(5000):
            zf.writestr(f"{i}", b"")
    assert_refused(path, "lists 5000 members")


def test_future_version_asks_for_an_upgrade(tmp_path, small):
    members = read_members(small)
    meta = get_meta(members)
    meta["version"] = FORMAT_VERSION + 1
    meta["something_new"] = {"we": "cannot know"}
    set_meta(members, meta)
    assert_refused(write_members(tmp_path / "future.npz", members), "newer multiscale.*upgrade")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"\xff\xfe not json", "not valid JSON"),
        (b"{not json", "not valid JSON"),
        (b"[1, 2, 3]", "not a JSON object"),
        (b'{"format": "something-else"}', "not a multiscale descriptor"),
        (b'{"format": "multiscale-gram-descriptor", "version": NaN}', "not valid JSON"),
        (b'{"format": "multiscale-gram-descriptor", "version": "1"}', "version must be an integer"),
        (b"[" * 100000 + b"]" * 100000, "not valid JSON"),
    ],
)
def test_meta_that_is_not_descriptor_json_is_refused(tmp_path, small, raw, message):
    members = read_members(small)
    set_meta(members, raw)
    assert_refused(write_members(tmp_path / "meta.npz", members), message)


def test_meta_of_the_wrong_dtype_is_refused(tmp_path, small):
    members = read_members(small)
    members["meta.npy"] = npy_bytes(np.zeros(4))
    assert_refused(write_members(tmp_path / "meta.npz", members), "meta has dtype float64")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m: m.update(count=5), "count 5 but lists 3 sources"),
        (lambda m: m.update(count=0), "count must be ≥ 1"),
        (
            lambda m: (m.update(count=2), m["sources"].pop(), m.update(total_weight=1.5 + 0.5)),
            r"all/0/conv1_1 has shape \(3, 4, 4\), expected \(2, 4, 4\)",
        ),
        (lambda m: m.update(total_weight=100.0), "total_weight 100.0 disagrees"),
        (
            lambda m: (m["sources"][0].update(weight=2.5), m.update(total_weight=2.5 + 1.5 + 2.5)),
            "disagrees with the kept Grams",
        ),
        (lambda m: m["sources"][0].update(weight=-1), r"sources\[0\].weight"),
        (lambda m: m["sources"][1].update(sha256="x"), r"sources\[1\].sha256"),
        (lambda m: m["channels"].update(conv1_1=8), r"shape \(4, 4\), expected \(8, 8\)"),
        (lambda m: m["channels"].update(pool5=512), "channels lists layers"),
        (lambda m: m["descriptor"].update(layers=["conv9_9"]), "descriptor.layers: unknown layer"),
        (lambda m: m["descriptor"].update(octaves=2), r"missing member\(s\) sum/1/conv1_1"),
        (lambda m: m["descriptor"].update(padding="zeros"), "descriptor.padding"),
        (lambda m: m.pop("backbone"), "no 'backbone'"),
        (lambda m: m.update(eps=-1), "eps must be finite"),
        (lambda m: m.update(keep_all="yes"), "keep_all has the wrong type"),
        (lambda m: m.update(weights_sha256="ABC"), "weights_sha256"),
    ],
)
def test_meta_that_lies_or_is_malformed_is_refused(tmp_path, small, edit, message):
    members = read_members(small)
    meta = get_meta(members)
    edit(meta)
    set_meta(members, meta)
    assert_refused(write_members(tmp_path / "lies.npz", members), message)


def test_zero_byte_file_is_refused(tmp_path):
    path = tmp_path / "empty.npz"
    path.write_bytes(b"")
    assert_refused(path, "empty file")


def test_random_bytes_are_refused(tmp_path):
    path = tmp_path / "random.npz"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    assert_refused(path, "not a descriptor file")


def test_a_plain_npz_is_refused(tmp_path):
    path = tmp_path / "plain.npz"
    np.savez(path, x=np.zeros(3))
    assert_refused(path, "member 'meta' is missing")


@pytest.mark.parametrize("keep", [0.5, 0.99])
def test_truncated_file_is_refused(tmp_path, small, keep):
    data = small.read_bytes()
    path = tmp_path / "cut.npz"
    path.write_bytes(data[: int(len(data) * keep)])
    assert_refused(path, "not a descriptor file|truncated")


def test_corrupted_member_data_fails_its_checksum(tmp_path, small):
    data = bytearray(small.read_bytes())
    with np.load(small) as z:
        needle = z["sum/0/conv1_1"].tobytes()
    at = bytes(data).index(needle) + 3  # a low mantissa byte: the value stays plausible
    data[at] ^= 0x01
    path = tmp_path / "crc.npz"
    path.write_bytes(bytes(data))
    assert_refused(path, "corrupted|CRC")


def test_deflated_members_load(tmp_path, small):
    path = write_members(tmp_path / "deflated.npz", read_members(small), compression=zipfile.ZIP_DEFLATED)
    assert GramDescriptor.load(path).count == 3


def test_max_bytes_limits_a_valid_file(small):
    assert_refused(small, "more than max_bytes=100", max_bytes=100)


def test_missing_file_and_directory_are_refused(tmp_path):
    assert_refused(tmp_path / "nope.npz", "no such file")
    assert_refused(tmp_path, "is a directory")


def test_unreadable_file_is_refused(small, monkeypatch):
    import multiscale.npz as module

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    # Shadows the built-in open() inside the module: works even when tests run as root.
    monkeypatch.setattr(module, "open", denied, raising=False)
    assert_refused(small, "cannot read: Permission denied")
