import re

import pytest
import yaml
from pydantic import BaseModel, ConfigDict, Field

from conftest import ROOT
from ganforge.config import RECIPE_KEY, Choice, Params, Train, load_params, parse_params
from ganforge.errors import ConfigError
from ganforge.losses import LOSSES, REGULARIZERS
from ganforge.nets import ARCHITECTURES


def raw_params() -> dict:
    """params.yaml as written, without its recipe (recipes are tested elsewhere: here a key set by the test
    must be the key validated)."""
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw[RECIPE_KEY] = None
    return raw


def with_train(key: str, value) -> dict:
    """raw_params() with train.<key> (dotted) set to value."""
    raw = raw_params()
    *parents, last = key.split(".")
    node = raw["train"]
    for k in parents:
        node = node[k]
    node[last] = value
    return raw


def config_error(raw: dict) -> str:
    with pytest.raises(ConfigError) as e:
        parse_params(raw)
    assert e.value.exit_code == 2
    return str(e.value)


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
    ("train.reg.every", 0, "train.reg.every: Input should be greater than or equal to 1"),
    ("train.reg.kind", "r3", f"train.reg.kind: unknown regulariser 'r3' (allowed: {', '.join(REGULARIZERS)}"),
    ("train.arch", "vit", f"train.arch: unknown architecture 'vit' (allowed: {', '.join(ARCHITECTURES)})"),
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


# --- train.loss: a registry entry with its settings (config.Choice) ----------------------------------------

@pytest.mark.parametrize("name", list(LOSSES))
def test_every_loss_validates_by_name_or_as_a_mapping_and_dumps_back_to_its_name(name):
    for written in (name, {"kind": name}):
        train = parse_params(with_train("loss", written), sections=("base", "train")).train
        assert train.loss.kind == name and train.loss.settings == {}
        assert train.model_dump()["loss"] == name  # no settings: the name alone, as params.yaml writes it
        # the dump validates back to the same section
        assert Train.model_validate(train.model_dump()) == train


def test_an_unknown_loss_setting_is_a_config_error_naming_the_key():
    msg = config_error(with_train("loss", {"kind": "ns", "bogus": 1}))
    assert "train.loss: ns's settings (none): bogus: Extra inputs are not permitted" in msg


@pytest.mark.parametrize("written", ["softmax", {"kind": "softmax"}])
def test_an_unknown_loss_lists_the_registrys_names(written):
    msg = config_error(with_train("loss", written))
    assert f"train.loss: unknown loss 'softmax' (allowed: {', '.join(LOSSES)})" in msg


@pytest.mark.parametrize("written", [None, {}, {"bogus": 1}, {"kind": 3}, 3, True, ["hinge"]],
                         ids=["null", "empty", "no-kind", "kind-not-a-name", "int", "bool", "list"])
def test_a_loss_that_is_neither_a_name_nor_a_mapping_with_kind_is_a_config_error(written):
    msg = config_error(with_train("loss", written))
    assert "train.loss: give a loss name, or a mapping with `kind:` and its settings" in msg


class MarginSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    margin: float = Field(gt=0)
    scale: int = Field(ge=1)


class WithSettings:
    Settings = MarginSettings


class WithoutSettings:
    Settings = LOSSES["ns"].Settings


TOY_REGISTRY = {"toy": WithSettings, "plain": WithoutSettings}


def test_a_choice_validates_its_settings_by_the_entrys_own_model():
    choice = Choice.of({"kind": "toy", "margin": "2.5", "scale": 3}, TOY_REGISTRY, "widget")
    assert choice.kind == "toy" and choice.settings == {"margin": 2.5, "scale": 3}
    assert choice.model_dump() == {"kind": "toy", "margin": 2.5, "scale": 3}  # the params form, round trip
    assert Choice.of(choice.model_dump(), TOY_REGISTRY, "widget") == choice
    assert Choice.of("plain", TOY_REGISTRY, "widget").model_dump() == "plain"
    with pytest.raises(ValueError, match=r"toy's settings \(margin, scale\): margin: Input should be gr"):
        Choice.of({"kind": "toy", "margin": 0, "scale": 3}, TOY_REGISTRY, "widget")
    with pytest.raises(ValueError, match=r"toy's settings \(margin, scale\): scale: Field required"):
        Choice.of({"kind": "toy", "margin": 1.0}, TOY_REGISTRY, "widget")
    with pytest.raises(ValueError, match=r"plain's settings \(none\): margin: Extra inputs"):
        Choice.of({"kind": "plain", "margin": 1.0}, TOY_REGISTRY, "widget")
    with pytest.raises(ValueError, match=r"unknown widget 'nope' \(allowed: toy, plain\)"):
        Choice.of("nope", TOY_REGISTRY, "widget")


# --- train.reg.kind: one penalty, or several joined by + ----------------------------------------------------

def test_several_penalties_joined_by_plus_validate():
    names = [n for n in REGULARIZERS if n != "none"]
    for kind in ("r1+r2", "+".join(names), "+".join(reversed(names))):
        assert parse_params(with_train("reg.kind", kind), sections=("base", "train")).train.reg.kind == kind


@pytest.mark.parametrize("kind,needle", [
    ("r1+bogus", f"unknown regulariser 'bogus' (allowed: {', '.join(REGULARIZERS)}, or several joined by +"),
    ("none+r1", "'none+r1': none stands alone"),
    ("r1+none", "'r1+none': none stands alone"),
    ("r1+r1", "'r1+r1': each penalty once"),
])
def test_bad_penalty_combinations_are_refused_naming_the_key(kind, needle):
    msg = config_error(with_train("reg.kind", kind))
    assert re.search(rf"train\.reg\.kind: .*{re.escape(needle)}", msg), msg
