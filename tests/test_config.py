"""The configs: one base (RunConfig) holds every field the jobs share, with one way to build
them from options and from their JSON."""

import dataclasses
from pathlib import Path

import pytest

from multiscale.config import RunConfig, StyleConfig, SynthesisConfig
from multiscale.errors import ConfigError

SHARED = {f.name for f in dataclasses.fields(RunConfig)}


@pytest.mark.parametrize("cls", [SynthesisConfig, StyleConfig])
def test_the_jobs_share_the_run_fields_and_declare_only_their_own(cls):
    own = {f.name for f in dataclasses.fields(cls)} - SHARED
    assert {"max_iter", "tol", "seed", "checkpoint_every", "precision", "optimizer"} <= SHARED
    assert {"max_iter", "stages"} <= SHARED
    assert own == ({"height", "frames", "frame_weight", "loop", "spectrum_weight", "spectrum_peaks", "spectrum_long_waves", "spectrum_last_stage", "spectrum_taper", "stage_detail"} if cls is SynthesisConfig else
                   {"content_layers", "content_target", "content_weight", "style_weight", "tv_weight", "palette_weight", "style_weights", "style_scale",
                    "preserve_color"})  # fmt: skip


def test_a_layer_without_a_given_weight_takes_its_default_whatever_the_other_layers():
    from multiscale.config import DEFAULT_LAYER_WEIGHTS, DescriptorConfig

    assert DEFAULT_LAYER_WEIGHTS == {"conv1_1": 2.0}
    assert DescriptorConfig().layers == ("conv1_1", "pool1", "conv3_2")
    assert DescriptorConfig().resolved_layer_weights == (2.0, 1.0, 1.0)
    assert DescriptorConfig(layers=("pool2", "conv1_1")).resolved_layer_weights == (1.0, 2.0)
    assert DescriptorConfig(layers=("pool1", "conv3_2")).resolved_layer_weights == (1.0, 1.0)
    given = DescriptorConfig(layer_weights=(1.0, 1.0, 1.0))
    assert given.resolved_layer_weights == (1.0, 1.0, 1.0)


def test_each_job_keeps_its_own_defaults_where_they_differ():
    assert SynthesisConfig().init == "spectrum" and StyleConfig().init == "palette"
    assert SynthesisConfig().tol == 1e-9 and StyleConfig().tol == 1e-7


@pytest.mark.parametrize("cls", [SynthesisConfig, StyleConfig])
def test_options_mix_descriptor_and_run_fields_and_normalise_their_types(cls):
    c = cls.with_options(
        octaves=2, layers="pool1", statistics=["gram", "sliced"], max_iter=7, init=Path("a.png")
    )
    assert c.descriptor.octaves == 2 and c.descriptor.layers == ("pool1",)
    assert c.descriptor.statistics == ("gram", "sliced") and c.max_iter == 7 and c.init == "a.png"
    assert cls.with_options(c, seed=3) == dataclasses.replace(c, seed=3)  # starts from the given config
    with pytest.raises(ConfigError, match=f"frobnicate: is not an option of {cls.job}"):
        cls.with_options(frobnicate=1)


def test_stylize_takes_no_source_sizing_options():
    assert SynthesisConfig.with_options(source_scale=0.5).descriptor.source_scale == 0.5
    with pytest.raises(ConfigError, match="source_scale: is not an option of stylize"):
        StyleConfig.with_options(source_scale=0.5)


@pytest.mark.parametrize("cls", [SynthesisConfig, StyleConfig])
def test_a_config_survives_its_json_and_refuses_unknown_or_invalid_settings(cls):
    c = cls.with_options(octaves=3, layers=("conv1_1", "pool2"), max_iter=9, checkpoint_every=2)
    assert cls.from_dict(c.to_dict()) == c
    with pytest.raises(ConfigError, match="is not a known setting"):
        cls.from_dict({**c.to_dict(), "colour": "blue"})
    with pytest.raises(ConfigError, match="max_iter"):
        cls.from_dict({**c.to_dict(), "max_iter": 0})


@pytest.mark.parametrize("cls", [SynthesisConfig, StyleConfig])
def test_shared_checks_are_made_once_for_every_job(cls):
    for bad in ({"seed": -1}, {"history": 0}, {"bit_depth": 12}, {"optimizer": "adam"}, {"width": 4}):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            cls(**bad)


def test_the_python_api_takes_every_option_of_its_config_but_the_cli_only_ones():
    """``synthesize()`` and ``stylize()`` mirror the CLI: a config field missing from their keywords
    would be an option the API cannot set. Checkpoints and intermediate images need files (CLI)."""
    import inspect

    from multiscale.config import DescriptorConfig
    from multiscale.jobs.stylize import stylize
    from multiscale.jobs.synthesize import synthesize

    cli_only = {"descriptor", "checkpoint_every", "save_every"}
    descriptor = {f.name for f in dataclasses.fields(DescriptorConfig)}
    for job, cls, measured in ((synthesize, SynthesisConfig, descriptor), (stylize, StyleConfig, None)):
        fields = {f.name for f in dataclasses.fields(cls)} | set(measured or cls.descriptor_options)
        assert fields - cli_only <= set(inspect.signature(job).parameters), job.__name__


def test_stage_detail_is_true_false_or_none_for_by_the_number_of_stages():
    for value in (None, True, False):
        assert SynthesisConfig(stage_detail=value).stage_detail is value
    with pytest.raises(ConfigError, match="stage_detail: must be true, false or None"):
        SynthesisConfig(stage_detail="on")
