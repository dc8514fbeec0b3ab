"""``multiscale grams build|merge|info`` and ``synthesize --grams / -s FOLDER --join`` through CliRunner.

Failures must exit non-zero with one ``Error:`` line naming the file or
option and no traceback. Images are 48×56 px, 2 octaves, conv1_1 and pool1.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result
from multiscale_cli.main import cli
from PIL import Image

from multiscale.descriptors.descriptor import GramDescriptor
from multiscale.io import file_sha256

MEASURE = ["--octaves", "2", "--layers", "conv1_1,pool1"]
RUN = ["--max-iter", "3"]


def write_photo(path: Path, seed: int, size: tuple[int, int] = (48, 56)) -> Path:
    """A smooth random colour texture."""
    rng = np.random.default_rng(seed)
    h, w = size
    coarse = np.kron(rng.random((h // 8 + 1, w // 8 + 1, 3)), np.ones((8, 8, 1)))[:h, :w]
    Image.fromarray((coarse * 255).astype(np.uint8)).save(path)
    return path


def invoke(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args])


def assert_clean_failure(result: Result, code: int, *needles: str) -> str:
    """Exit ``code``, one ``Error:`` line holding every needle, no traceback."""
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit)
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(4):
        write_photo(folder / f"p{i}.png", seed=i)
    return folder


@pytest.fixture
def built(photos: Path, tmp_path: Path) -> Path:
    out = tmp_path / "oak.grams.npz"
    result = invoke("grams", "build", photos, "-o", out, *MEASURE, "-q")
    assert result.exit_code == 0, result.output
    return out


# ---------------------------------------------------------------------------- build


def test_build_skips_a_bad_file_among_good_ones_and_names_it(photos, tmp_path):
    (photos / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this JPEG stops here")
    (photos / "README.txt").write_text("photos of oak bark")
    out = tmp_path / "oak.grams.npz"
    result = invoke("grams", "build", photos, "-o", out, *MEASURE)
    assert result.exit_code == 0, result.output
    assert "skipped 1 of 5 images:" in result.stderr
    assert f"{photos / 'broken.jpg'}: cannot decode image" in result.stderr
    assert "README.txt: not an image file extension" in result.stderr
    assert f"{out}: 4 image(s), 2 octave(s) × 2 layer(s)" in result.stderr
    d = GramDescriptor.load(out)
    assert d.count == 4 and d.measurement["octaves"] == 2


def test_build_with_no_usable_image_exits_1_and_writes_nothing(tmp_path):
    folder = tmp_path / "junk"
    folder.mkdir()
    (folder / "a.png").write_bytes(b"")
    (folder / "b.png").write_text("not a png")
    out = tmp_path / "none.grams.npz"
    result = invoke("grams", "build", folder, "-o", out, *MEASURE)
    error = assert_clean_failure(result, 1, f"{folder}: no usable images; skipped 2 of 2 images")
    assert "a.png: empty file" in result.stderr and "b.png: not a recognised image" in result.stderr
    assert result.output.splitlines()[0] == error, "the error is the first line: no progress label before it"
    assert not out.exists()


def test_build_refuses_an_existing_output_before_reading_photos(built, photos):
    result = invoke("grams", "build", photos, "-o", built, *MEASURE)
    assert_clean_failure(result, 1, str(built), "--overwrite")


def test_build_option_errors_are_usage_errors(photos, tmp_path):
    out = tmp_path / "x.grams.npz"
    assert_clean_failure(invoke("grams", "build", photos, "-o", out, "--layers", "conv9_9"), 2, "--layers")
    assert_clean_failure(
        invoke("grams", "build", photos, "-o", out, "--dask", "tcp://h:1", "--workers", "2"), 2, "not both"
    )
    assert_clean_failure(invoke("grams", "build", photos, "-o", out, "--chunk-size", "4"), 2, "--chunk-size")
    assert_clean_failure(
        invoke("grams", "build", tmp_path / "nothing", "-o", out), 1, "no such file or folder"
    )


def test_build_with_a_weights_file(photos, tmp_path):
    (photos / "w.csv").write_text("path,weight\np1.png,3\n")
    out = tmp_path / "w.grams.npz"
    result = invoke("grams", "build", photos, "-o", out, *MEASURE, "--weights-file", photos / "w.csv", "-q")
    assert result.exit_code == 0, result.output
    assert [s["weight"] for s in GramDescriptor.load(out).sources] == [1.0, 3.0, 1.0, 1.0]
    (photos / "w.csv").write_text("p9.png,3\n")
    result = invoke(
        "grams", "build", photos, "-o", out, *MEASURE, "--weights-file", photos / "w.csv", "--overwrite"
    )
    assert_clean_failure(result, 2, "--weights-file", "p9.png")


def test_dask_build_from_the_cli_equals_the_local_build(photos, built, tmp_path):
    distributed = pytest.importorskip("distributed")
    out = tmp_path / "dask.grams.npz"
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
    ) as c:
        result = invoke(
            "grams",
            "build",
            photos,
            "-o",
            out,
            *MEASURE,
            "--dask",
            c.scheduler_address,
            "--chunk-size",
            "1",
            "-q",
        )
    assert result.exit_code == 0, result.output
    local, remote = GramDescriptor.load(built), GramDescriptor.load(out)
    assert remote.sources == local.sources
    for key in local.keys:
        np.testing.assert_allclose(remote.sums[key], local.sums[key], rtol=1e-12, atol=0)
        np.testing.assert_allclose(remote.log_sums[key], local.log_sums[key], rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------- merge


def test_merge_is_exact(photos, built, tmp_path):
    files = sorted(photos.glob("*.png"))
    a, b, merged = tmp_path / "a.grams.npz", tmp_path / "b.grams.npz", tmp_path / "ab.grams.npz"
    assert invoke("grams", "build", *files[:3], "-o", a, *MEASURE, "-q").exit_code == 0
    assert invoke("grams", "build", files[3], "-o", b, *MEASURE, "-q").exit_code == 0
    result = invoke("grams", "merge", a, b, "-o", merged)
    assert result.exit_code == 0, result.output
    assert f"{merged}: 4 image(s) from 2 descriptor(s)" in result.stderr
    whole, m = GramDescriptor.load(built), GramDescriptor.load(merged)
    assert m.sources == whole.sources and m.count == whole.count
    for key in whole.keys:
        np.testing.assert_allclose(m.sums[key], whole.sums[key], rtol=1e-12, atol=0)
        np.testing.assert_allclose(m.log_sums[key], whole.log_sums[key], rtol=1e-12, atol=1e-12)


def test_merge_of_incompatible_descriptors_lists_every_difference(photos, built, tmp_path):
    other = tmp_path / "other.grams.npz"
    args = ["--octaves", "3", "--layers", "conv1_1", "--padding", "wrap", "-q"]
    assert invoke("grams", "build", photos / "p0.png", "-o", other, *args).exit_code == 0
    out = tmp_path / "m.grams.npz"
    result = invoke("grams", "merge", built, other, "-o", out)
    assert_clean_failure(
        result,
        1,
        "cannot merge incompatible descriptors",
        f"{built} and {other}",
        "octaves: 2 vs 3",
        "layers: ['conv1_1', 'pool1'] vs ['conv1_1']",
        "padding: 'reflect' vs 'wrap'",
    )
    assert not out.exists()


# ---------------------------------------------------------------------------- info


def test_info_is_readable(built, photos):
    result = invoke("grams", "info", built)
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert "images       4 (total weight 4)" in text
    assert "layers       conv1_1 (64 ch), pool1 (64 ch)" in text
    assert "joins        mean, log-euclidean\n" in text
    assert "rebuild with --keep-grams" in text
    assert str(photos / "p3.png") in text


def test_info_json_is_machine_readable(built):
    result = invoke("grams", "info", built, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["count"] == 4 and data["descriptor"]["layers"] == ["conv1_1", "pool1"]
    assert data["path"] == str(built) and len(data["sources"]) == 4
    assert len(data["mean_color"]) == 3


def hostile_files(tmp_path: Path, built: Path) -> dict[str, Path]:
    """Descriptor files that must be refused with one line."""
    valid = built.read_bytes()
    raw = dict(np.load(built))
    meta = json.loads(raw["meta"].tobytes())
    meta["count"] = 10**9
    raw["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    lying = tmp_path / "lying.grams.npz"
    np.savez(lying, **raw)
    files = {
        "empty": b"",
        "text": b"just some text\n",
        "truncated": valid[: len(valid) // 2],
        "random": np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes(),
    }
    out = {"lying": lying}
    for name, data in files.items():
        out[name] = tmp_path / f"{name}.grams.npz"
        out[name].write_bytes(data)
    plain = tmp_path / "plain.npz"
    np.savez(plain, x=np.zeros(3))
    out["plain npz"] = plain
    out["missing"] = tmp_path / "missing.grams.npz"
    return out


@pytest.mark.parametrize("command", ["info", "synthesize"])
def test_hostile_descriptor_files_give_one_clear_line(built, tmp_path, command):
    for name, path in hostile_files(tmp_path, built).items():
        if command == "info":
            result = invoke("grams", "info", path)
        else:
            result = invoke("synthesize", "--grams", path, "-W", "32", "-H", "32", "-o", tmp_path / "x.png")
        assert_clean_failure(result, 1, str(path))
        assert not (tmp_path / "x.png").exists(), name


# ---------------------------------------------------------------------------- synthesize


def test_synthesize_from_a_descriptor_alone(built, tmp_path):
    out = tmp_path / "oak.png"
    result = invoke("synthesize", "--grams", built, "-W", "32", "-H", "40", "-o", out, *RUN)
    assert result.exit_code == 0, result.output
    assert Image.open(out).size == (32, 40)
    meta = json.loads((tmp_path / "oak.png.json").read_text())
    assert meta["descriptors"] == [
        {"path": str(built), "sha256": file_sha256(built), "count": 4, "total_weight": 4.0, "weight": 1.0}
    ]
    assert meta["join"] == "mean"
    assert meta["config"]["descriptor"]["octaves"] == 2
    assert meta["config"]["descriptor"]["layers"] == ["conv1_1", "pool1"]


def test_synthesize_blends_several_descriptors(built, photos, tmp_path):
    other = tmp_path / "one.grams.npz"
    assert invoke("grams", "build", photos / "p0.png", "-o", other, *MEASURE, "-q").exit_code == 0
    out = tmp_path / "mix.png"
    result = invoke(
        "synthesize", "--grams", built, "--grams", other, "--grams-weights", "3,1",
        "--join", "log-euclidean", "-W", "32", "-H", "32", "-o", out, *RUN,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    meta = json.loads((tmp_path / "mix.png.json").read_text())
    assert [d["weight"] for d in meta["descriptors"]] == [3.0, 1.0] and meta["join"] == "log-euclidean"


def test_synthesize_from_a_folder_with_a_join(photos, tmp_path):
    (photos / "zz_bad.png").write_bytes(b"")
    out = tmp_path / "folder.png"
    result = invoke("synthesize", "-s", photos, "--join", "log-euclidean", "-o", out, *MEASURE, *RUN)
    assert result.exit_code == 0, result.output
    assert "skipped 1 of 5 images:" in result.stderr and "zz_bad.png: empty file" in result.stderr
    assert Image.open(out).size == (56, 48)  # the first photo's size
    meta = json.loads((tmp_path / "folder.png.json").read_text())
    assert meta["join"] == "log-euclidean" and len(meta["sources"]) == 4
    assert meta["skipped"] == [
        {"name": str(photos / "zz_bad.png"), "reason": "empty file (0 bytes), not an image"}
    ]


def test_synthesize_with_grams_refuses_conflicting_or_missing_options(built, photos, tmp_path):
    out = ["-o", tmp_path / "x.png"]
    size = ["-W", "32", "-H", "32"]
    assert_clean_failure(
        invoke("synthesize", "--grams", built, *size, "--octaves", "3", "--layers", "conv1_1", *out),
        2,
        "--octaves",
        "octaves 2 (descriptor) vs 3 (given)",
        "layers ('conv1_1', 'pool1') (descriptor) vs ('conv1_1',) (given)",
    )
    assert_clean_failure(invoke("synthesize", "--grams", built, *out), 2, "-W and -H")
    assert_clean_failure(invoke("synthesize", "--grams", built, "-s", photos, *size, *out), 2, "not both")
    assert_clean_failure(invoke("synthesize", *size, *out), 2, "--grams")
    assert_clean_failure(
        invoke("synthesize", "--grams", built, "--tileable", *size, *out), 2, "--padding wrap"
    )
    assert_clean_failure(
        invoke("synthesize", "--grams", built, "--grams-weights", "1,2", *size, *out), 2, "--grams-weights"
    )
    assert_clean_failure(
        invoke("synthesize", "--grams", built, "--join", "affine-invariant", *size, *out), 1, "--keep-grams"
    )
    assert not (tmp_path / "x.png").exists()


def test_a_pattern_source_names_the_default_output_after_its_folder(photos, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke("synthesize", "-s", "photos/p[01].png", *MEASURE, *RUN, "-q")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "photos_texture.png").exists()
    assert [s["name"] for s in json.loads((tmp_path / "photos_texture.png.json").read_text())["sources"]] == [
        "photos/p0.png",
        "photos/p1.png",
    ]
