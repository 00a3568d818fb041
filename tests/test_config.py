import pytest
import yaml

from conftest import ROOT
from ganforge.config import Params, load_params, parse_params
from ganforge.errors import ConfigError


def test_params_yaml_is_valid_and_matches_code_defaults():
    # params.yaml is the single home of hyperparameters: the code defaults must not drift from it
    assert load_params(ROOT / "params.yaml") == Params()


def test_unknown_key_names_the_key_and_the_allowed_ones():
    with pytest.raises(ConfigError) as e:
        parse_params({"train": {"lrr": 0.1}})
    msg = str(e.value)
    assert "train.lrr: unknown key" in msg and "batch_size" in msg and e.value.exit_code == 2


def test_nested_unknown_key_lists_allowed_keys_of_that_level():
    with pytest.raises(ConfigError, match=r"train\.ema\.decy: unknown key \(allowed: enabled, decay\)"):
        parse_params({"train": {"ema": {"decy": 0.9}}})


@pytest.mark.parametrize("section,key,value", [
    ("train", "lr", -1.0), ("train", "batch_size", 0), ("train", "loss", "wgan"), ("sample", "n", "many"),
])
def test_bad_values_are_rejected_with_the_key(section, key, value):
    with pytest.raises(ConfigError, match=rf"{section}\.{key}"):
        parse_params({section: {key: value}})


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_params(tmp_path / "nope.yaml")
    bad = tmp_path / "p.yaml"
    bad.write_text("train: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(bad)
    bad.write_text(yaml.safe_dump([1, 2]))
    with pytest.raises(ConfigError, match="mapping"):
        load_params(bad)
