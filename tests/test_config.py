import pytest
import yaml
from pydantic import BaseModel

from conftest import ROOT
from ganforge.config import Params, load_params, parse_params
from ganforge.errors import ConfigError


def raw_params() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def test_params_yaml_is_valid():
    p = load_params(ROOT / "params.yaml")
    assert p.train.batch_size >= 1 and p.evaluate.n >= 10


def _models(model: type[BaseModel], prefix: str = ""):
    yield prefix, model
    for name, field in model.model_fields.items():
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            yield from _models(field.annotation, f"{prefix}{name}.")


def test_no_hyperparameter_has_a_default_outside_params_yaml():
    # params.yaml is the only home of a value: a key missing there must be an error, never a code default
    defaulted = [f"{prefix}{name}" for prefix, model in _models(Params)
                 for name, field in model.model_fields.items() if not field.is_required()]
    assert defaulted == []
    assert len(list(_models(Params))) >= 8  # the walk reached the nested sections (train.ema, ...)


@pytest.mark.parametrize("drop,needle", [
    ("train.g.lr", "train.g.lr: missing key"),
    ("train.ema.decay", "train.ema.decay: missing key"),
    ("evaluate", "evaluate: missing section"),
])
def test_a_missing_key_or_section_is_named(drop, needle):
    raw = raw_params()
    *parents, last = drop.split(".")
    node = raw
    for key in parents:
        node = node[key]
    del node[last]
    with pytest.raises(ConfigError, match=needle) as e:
        parse_params(raw)
    assert e.value.exit_code == 2


def test_an_empty_params_file_names_every_section(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("")
    with pytest.raises(ConfigError) as e:
        load_params(path)
    for section in Params.model_fields:
        assert f"{section}: missing section" in str(e.value)


def test_a_stage_validates_only_the_sections_it_reads():
    raw = raw_params()
    raw["evaluate"]["pr_k"] = 0  # broken, but not train's business
    p = parse_params(raw, sections=("base", "train"))
    assert p.train.g.lr == raw["train"]["g"]["lr"]
    with pytest.raises(ConfigError, match="evaluate.pr_k"):
        parse_params(raw)


def test_unknown_key_names_the_key_and_the_allowed_ones():
    raw = raw_params()
    raw["train"]["lrr"] = 0.1
    with pytest.raises(ConfigError) as e:
        parse_params(raw)
    msg = str(e.value)
    assert "train.lrr: unknown key" in msg and "batch_size" in msg and e.value.exit_code == 2


def test_nested_unknown_key_lists_allowed_keys_of_that_level():
    raw = raw_params()
    raw["train"]["ema"]["decy"] = 0.9
    with pytest.raises(ConfigError, match=r"train\.ema\.decy: unknown key \(allowed: enabled, decay\)"):
        parse_params(raw)


@pytest.mark.parametrize("section,key,value", [
    ("train", "kimg", -1.0), ("train", "batch_size", 0), ("evaluate", "n", "many"),
    ("train", "resume", "yes"),
])
def test_bad_values_are_rejected_with_the_key(section, key, value):
    raw = raw_params()
    raw[section][key] = value
    with pytest.raises(ConfigError, match=rf"{section}\.{key}"):
        parse_params(raw)


def test_allowed_names_come_from_the_registries():
    from ganforge.data.registry import registry
    from ganforge.losses import LOSSES

    raw = raw_params()
    raw["train"]["loss"] = "softmax"
    allowed = ", ".join(LOSSES)
    with pytest.raises(ConfigError, match=rf"train.loss: unknown loss 'softmax' \(allowed: {allowed}\)"):
        parse_params(raw)
    raw = raw_params()
    raw["base"]["dataset"] = "imagenet"
    with pytest.raises(ConfigError, match=rf"base.dataset: .*\(allowed: {', '.join(registry())}\)"):
        parse_params(raw)


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


@pytest.mark.parametrize("key,value,needle", [
    ("train.reg.weight", 0.0, "train.reg.weight: Input should be greater than 0"),
    ("train.reg.kind", "r2", "train.reg.kind: unknown regulariser 'r2' (allowed: none, r1, gp)"),
    ("train.arch", "vit",
     "train.arch: unknown architecture 'vit' (allowed: dcgan, resnet, mlp, mlp-pacgan, mlp-pacgan-paper)"),
    ("train.augment", "color,blur", "train.augment: unknown augmentation 'blur'"),
    ("train.d_steps", 0, "train.d_steps: Input should be greater than or equal to 1"),
])
def test_toolbox_params_are_checked_naming_the_key(key, value, needle):
    raw = raw_params()
    *parents, last = key.split(".")
    node = raw
    for k in parents:
        node = node[k]
    node[last] = value
    with pytest.raises(ConfigError) as e:
        parse_params(raw)
    assert needle in str(e.value) and e.value.exit_code == 2
