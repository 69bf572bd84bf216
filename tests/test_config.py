"""Configuration: defaults in one place, unknown keys refused with their names."""

import pytest

from evaluation.config import ConfigError, StudyConfig, load_config


def test_defaults_are_the_primary_design():
    config = load_config()
    assert config.matching.k == 4
    assert config.matching.caliper == 0.2
    assert config.matching.replace is False
    assert config.matching.exact == ("region",)
    assert config.gap_days == 30


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("matching:\n  calliper: 0.3\n", "unknown key 'matching.calliper'"),
        ("seeed: 3\n", "unknown key 'seeed'"),
        ("gap_days: -1\n", "key 'gap_days'"),
        ("matching:\n  k: many\n", "key 'matching.k'"),
        ("covariates: [age, shoe_size]\n", "shoe_size"),
        ("- a\n- b\n", "top level must be a mapping"),
        ("seed: [1\n", "not valid YAML"),
    ],
)
def test_bad_config_names_the_key(tmp_path, text, message):
    path = tmp_path / "study.yml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("[", r"\[")):
        load_config(path)


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "nope.yml")


def test_overrides_and_hash(tmp_path):
    path = tmp_path / "study.yml"
    path.write_text("seed: 3\nmatching:\n  k: 2\n")
    config = load_config(path, seed=11, scenario=None)
    assert config.seed == 11 and config.matching.k == 2
    assert config.hash() == load_config(path, seed=11).hash()
    assert config.hash() != load_config(path).hash()


def test_config_is_frozen():
    config = StudyConfig()
    with pytest.raises(Exception, match="frozen"):
        config.seed = 3


def test_calendar_time_is_in_the_propensity_model_by_default(tmp_path):
    config = load_config()
    assert config.calendar_time is True
    assert config.propensity_covariates == (*config.covariates, "calendar_years")
    path = tmp_path / "c.yml"
    path.write_text("calendar_time: false\n")
    off = load_config(path)
    assert off.propensity_covariates == off.covariates
    assert off.hash() != config.hash()
