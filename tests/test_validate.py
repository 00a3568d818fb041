"""One validation before anything starts: every bad-params case of the train stage exits 2 with one line,
before a run is opened and before a torchrun launch, whatever train.nproc is. And the recipes: one key
chooses a named partial params file, whose merged result is what trains."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
import yaml

from conftest import ONE_THREAD, ROOT, copy_params, run_stage, set_params

sys.path.insert(0, str(ROOT / "bench"))  # bench/ is not a package

BAD = {  # one case per check of validate(): the overrides, and what its one line says
    "eval-on-points": ({"base.dataset": "ring8", "train.arch": "mlp", "train.conditional": False,
                        "train.eval.every_kimg": 50}, "train.eval.every_kimg: the in-training evaluation"),
    "label-matching-unconditional": ({"train.conditional": False, "train.label_matching": 1.0},
                                     "train.label_matching: the class term reads the projection D's classes"),
    "pack-conditional": ({"train.conditional": True, "train.pack": 2},
                         "train.pack: PacGAN packing does not combine with train.conditional"),
    "pack-divides": ({"train.conditional": False, "train.pack": 3}, "train.pack: 3 does not divide the"),
    "mbstd-divides": ({"train.conditional": False, "train.mbstd_group": 5},
                      "train.mbstd_group: 5 does not divide the"),
    "arch-on-points": ({"base.dataset": "ring8", "train.conditional": False, "train.eval.every_kimg": 0},
                       "train.arch: architecture 'dcgan' models images, but the data are 2-D points"),
    "augment-on-points": ({"base.dataset": "ring8", "train.arch": "mlp", "train.conditional": False,
                           "train.eval.every_kimg": 0, "train.augment": "translation"},
                          "train.augment: DiffAugment ('translation') transforms images"),
    "batch-split": ({"train.batch_size": 31, "train.conditional": False},
                    "does not divide among 2 processes"),
    "unknown-recipe": ({"recipe": "no-such-recipe"}, "recipe: unknown recipe 'no-such-recipe' (known: "),
}


@pytest.fixture(scope="module")
def ring8_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("data") / "ring8"
    params = copy_params(tmp_path_factory.mktemp("p") / "params.yaml")
    set_params(params, {"base.dataset": "ring8"})
    proc = run_stage("download", "--params", str(params), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.mark.parametrize("nproc", [1, 2])
@pytest.mark.parametrize("case", BAD)
def test_bad_params_exit_2_with_one_line_whatever_nproc(case, nproc, tmp_path, tiny_mnist_dir, ring8_dir):
    overrides, message = BAD[case]
    if case == "batch-split" and nproc == 1:
        overrides, message = {**overrides, "train.pack": 2}, "train.pack: 2 does not divide the 31"
    shutil.copytree(ROOT / "recipes", tmp_path / "recipes")
    params = copy_params(tmp_path / "params.yaml")
    set_params(params, {"train.device": "cpu", "train.nproc": nproc, **overrides})
    data = ring8_dir if overrides.get("base.dataset") == "ring8" else tiny_mnist_dir
    proc = run_stage("train", "--params", str(params), "--data", str(data), cwd=tmp_path, env=ONE_THREAD)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert "torchrun" not in proc.stdout + proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "results").exists() and not (tmp_path / "checkpoints").exists()


def merged(recipe: str, overrides: dict) -> dict:
    from conftest import apply_overrides
    from ganforge.config import parse_params

    raw = apply_overrides(yaml.safe_load((ROOT / "params.yaml").read_text()), {"recipe": recipe, **overrides})
    return parse_params(raw, ROOT / "params.yaml").model_dump()


def with_flags(flags: list[str]) -> dict:
    """params.yaml with `-S key=value` flags applied as dvc does (YAML values; a later flag wins)."""
    from conftest import apply_overrides
    from ganforge.config import parse_params

    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    apply_overrides(raw, {k: yaml.safe_load(v) for k, v in (f.split("=", 1) for f in flags)})
    return parse_params(raw, ROOT / "params.yaml").model_dump()


@pytest.mark.parametrize("recipe,row", [("ring8-pacgan-pack4", "ring8-pacgan-pack4"),
                                        ("grid25-wgan-gp-pack4", "grid25-wgan-gp-pack4"),
                                        ("stacked-hinge-sn-mbstd-64ch",
                                         "stacked-hinge-sn-mbstd-64ch-2000kimg")])
def test_a_recipe_is_its_measured_rows_flags(recipe, row):
    """The mode-collapse rows of bench/modes.py (20-30 -S flags each) are one recipe + dataset + budget."""
    from modes import RECIPES

    flags = RECIPES[row]
    fixed = {k: yaml.safe_load(v) for k, v in (f.split("=", 1) for f in flags) if k in ("base.dataset",
                                                                                         "train.kimg")}
    assert merged(recipe, fixed) == with_flags(flags)


README_ROWS = [  # the README's rows (1), (3), (4) as they were measured, flag by flag
    ("long", ["train.kimg=1000", "train.eval.every_kimg=100", "train.resume=never"]),
    ("long-decay", ["train.kimg=1200", "train.eval.every_kimg=100", "train.resume=never",
                    "train.lr_decay=linear"]),
    ("label-matching", ["train.label_matching=0.1", "train.kimg=1000", "train.lr_decay=linear",
                        "train.eval.every_kimg=100", "train.resume=never"]),
]


@pytest.mark.parametrize("recipe,flags", README_ROWS)
def test_a_readme_row_is_its_recipe_plus_budget(recipe, flags):
    budget = {k: yaml.safe_load(v) for k, v in (f.split("=", 1) for f in flags) if k == "train.kimg"}
    assert merged(recipe, budget) == with_flags(flags)


def test_seed_dcgan_recipe_is_the_tests_baseline():
    from conftest import TEST_BASELINE

    assert merged("seed-dcgan", {"train.eval.every_kimg": 0, "train.eval.n": 5000, "train.kimg": 200}) == \
        with_flags([f"{k}={yaml.safe_dump(v).strip().removesuffix('...').strip()}"
                    for k, v in TEST_BASELINE.items()])


@pytest.mark.parametrize("recipe,message", [
    ({"train": {"kimg": 5}}, "sets train.kimg, the budget"),
    ({"base": {"dataset": "ring8"}}, "sets the base section"),
    ({"train": {"no_such_key": 1}}, "train.no_such_key is not a params.yaml key"),
])
def test_a_recipe_may_not_set_the_budget_the_dataset_or_unknown_keys(tmp_path, recipe, message):
    from ganforge.config import load_params
    from ganforge.errors import ConfigError

    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes" / "mine.yaml").write_text(yaml.safe_dump(recipe))
    params = copy_params(tmp_path / "params.yaml")
    set_params(params, {"recipe": "mine"})
    with pytest.raises(ConfigError, match=message):
        load_params(params)
