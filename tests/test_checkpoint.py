"""Checkpoint folders: round trip, and every way a folder can be wrong."""

import json

import numpy as np
import pytest

from multiscale.config import DescriptorConfig, SynthesisConfig
from multiscale.errors import CheckpointError
from multiscale.jobs.checkpoint import checkpoint_kind, default_folder, read_checkpoint, write_checkpoint
from multiscale.optim.projected import minimize

CONFIG = SynthesisConfig(
    descriptor=DescriptorConfig(octaves=2, layers=("conv1_1", "pool1")),
    width=8, height=8, optimizer="projected", checkpoint_every=2,
)  # fmt: skip
GRAMS = {(k, layer): np.eye(64) * (k + 1) for k in range(2) for layer in ("conv1_1", "pool1")}


@pytest.fixture
def folder(tmp_path):
    target = np.linspace(0, 1, 8 * 8 * 3)
    res = minimize(
        lambda x: (float(((x - target) ** 2).sum()), 2 * (x - target)), np.full(target.size, 0.5), max_iter=3
    )
    return write_checkpoint(
        default_folder(tmp_path / "out.png"), config=CONFIG, output=tmp_path / "out.png", grams=GRAMS,
        mean_color=np.array([0.1, 0.2, 0.3]), sources=[{"name": "a.png", "sha256": "0" * 64}],
        state=res.state, shape=(8, 8, 3),
    )  # fmt: skip


def test_round_trip_gives_back_config_targets_and_state(folder, tmp_path):
    ck = read_checkpoint(folder)
    assert folder.name == "out.png.ckpt"
    assert ck.config == CONFIG and ck.output == str(tmp_path / "out.png")
    assert set(ck.grams) == set(GRAMS)
    for key, g in GRAMS.items():
        np.testing.assert_array_equal(ck.grams[key], g)
    np.testing.assert_allclose(ck.mean_color, [0.1, 0.2, 0.3], rtol=1e-6)
    assert ck.state.iteration == 3 and ck.sources[0]["name"] == "a.png"
    assert (folder / "best.png").is_file() and (folder / "current.png").is_file()


def test_missing_folder_or_json_is_refused(tmp_path, folder):
    with pytest.raises(CheckpointError, match="nope.ckpt: no such checkpoint folder"):
        read_checkpoint(tmp_path / "nope.ckpt")
    (folder / "checkpoint.json").unlink()
    with pytest.raises(CheckpointError, match="checkpoint.json is missing"):
        read_checkpoint(folder)


def test_a_state_file_changed_after_the_json_is_refused(folder):
    with open(folder / "state.npz", "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(CheckpointError, match="state.npz changed"):
        read_checkpoint(folder)


def test_a_newer_version_or_foreign_json_is_refused(folder):
    meta = json.loads((folder / "checkpoint.json").read_text())
    (folder / "checkpoint.json").write_text(json.dumps({**meta, "version": 99}))
    with pytest.raises(CheckpointError, match="newer than this multiscale"):
        read_checkpoint(folder)
    (folder / "checkpoint.json").write_text("[1, 2]")
    with pytest.raises(CheckpointError, match="not a multiscale checkpoint"):
        read_checkpoint(folder)
    (folder / "checkpoint.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="unreadable"):
        read_checkpoint(folder)


def test_targets_that_do_not_fit_the_config_are_refused(folder, tmp_path):
    meta = json.loads((folder / "checkpoint.json").read_text())
    meta["config"]["descriptor"]["layers"] = ["conv1_1", "pool2"]
    (folder / "checkpoint.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="do not fit the run's layers"):
        read_checkpoint(folder)


def test_a_version_1_folder_without_a_kind_reads_as_synthesize(folder):
    meta = json.loads((folder / "checkpoint.json").read_text())
    assert (meta["version"], meta["kind"]) == (3, "synthesize")
    del meta["kind"]
    (folder / "checkpoint.json").write_text(json.dumps({**meta, "version": 1}))
    assert checkpoint_kind(folder) == "synthesize"
    assert read_checkpoint(folder).config.descriptor.layers == CONFIG.descriptor.layers


@pytest.mark.parametrize("version", [1, 2])
def test_a_folder_from_before_per_layer_default_weights_resumes_with_the_weights_it_ran_with(folder, version):
    """Until version 3, no layer weights meant all 1; since, conv1_1 weighs 2 (DEFAULT_LAYER_WEIGHTS)."""
    assert CONFIG.descriptor.layer_weights is None and CONFIG.descriptor.resolved_layer_weights == (2.0, 1.0)
    assert read_checkpoint(folder).config == CONFIG  # today's folder: unchanged
    meta = json.loads((folder / "checkpoint.json").read_text())
    (folder / "checkpoint.json").write_text(json.dumps({**meta, "version": version}))
    descriptor = read_checkpoint(folder).config.descriptor
    assert descriptor.layer_weights == (1.0, 1.0)
    meta["config"]["descriptor"]["layer_weights"] = [3.0, 1.0]  # given weights stay as given
    (folder / "checkpoint.json").write_text(json.dumps({**meta, "version": version}))
    assert read_checkpoint(folder).config.descriptor.layer_weights == (3.0, 1.0)


@pytest.mark.parametrize(
    ("field", "today", "then"),
    [("spectrum_peaks", "gather", "spread"), ("spectrum_long_waves", "cut", "keep")],
    ids=["before-gathered-peaks", "before-long-waves-cut"],
)
def test_a_folder_from_before_a_spectrum_setting_resumes_with_the_spectrum_it_ran_with(
    folder, field, today, then
):
    assert getattr(read_checkpoint(folder).config, field) == today  # today's folder records it
    meta = json.loads((folder / "checkpoint.json").read_text())
    del meta["config"][field]
    (folder / "checkpoint.json").write_text(json.dumps(meta))
    assert getattr(read_checkpoint(folder).config, field) == then


def test_a_folder_from_before_the_stage_detail_resumes_without_it(folder):
    meta = json.loads((folder / "checkpoint.json").read_text())
    meta["config"]["stage_detail"] = True  # a run records what it resolved
    (folder / "checkpoint.json").write_text(json.dumps(meta))
    assert read_checkpoint(folder).config.stage_detail is True
    del meta["config"]["stage_detail"]
    (folder / "checkpoint.json").write_text(json.dumps(meta))
    assert read_checkpoint(folder).config.stage_detail is False


def test_a_folder_from_before_the_last_stages_share_resumes_with_the_whole_constraint_in_every_stage(folder):
    meta = json.loads((folder / "checkpoint.json").read_text())
    assert meta["config"]["spectrum_last_stage"] == SynthesisConfig().spectrum_last_stage
    del meta["config"]["spectrum_last_stage"]
    (folder / "checkpoint.json").write_text(json.dumps(meta))
    assert read_checkpoint(folder).config.spectrum_last_stage == 1.0


def test_a_folder_from_before_the_spectrum_taper_resumes_with_its_last_stage_in_one_part(folder):
    meta = json.loads((folder / "checkpoint.json").read_text())
    assert "spectrum_taper" in meta["config"]
    meta["config"]["spectrum_taper"] = 0.3
    (folder / "checkpoint.json").write_text(json.dumps(meta))
    assert read_checkpoint(folder).config.spectrum_taper == 0.3
    del meta["config"]["spectrum_taper"]
    (folder / "checkpoint.json").write_text(json.dumps(meta))
    assert read_checkpoint(folder).config.spectrum_taper == 0.0
